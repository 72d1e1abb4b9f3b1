"""Last-Modified moves whenever a feed's bytes move, never goes back, and is the same in
every worker and after a restart: a client that sends only If-Modified-Since never gets
a 304 for bytes it has not seen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import Site
from tests.server import everywhere, feedsvc_serve, running_server

FEEDS = ["/feeds/all.atom", "/feeds/all.rss", "/feeds/all.json", "/feeds/news.atom"]
START = datetime(2030, 1, 1, 12, tzinfo=UTC)


def polled(app: Flask, url: str, since: str | None = None) -> tuple[int, str, bytes]:
    headers = {"If-Modified-Since": since} if since else {}
    response = app.test_client().get(url, headers=headers)
    return response.status_code, response.headers.get("Last-Modified", ""), response.data


def cached_app(site: Site) -> Flask:
    return site.app(cache_dir=site.root / "cache")


def base(site: Site) -> None:
    site.clock.now = START
    site.write_item("news", "2020-09-10-a.md", {"title": "A", "date": "2020-09-10 10:00Z"})
    site.write_item("news", "2020-09-20-b.md", {"title": "B", "date": "2020-09-20 10:00Z"})


def edit(site: Site) -> None:  # the body only: `updated` stays as it was
    site.write_item("news", "2020-09-10-a.md", {"title": "A", "date": "2020-09-10 10:00Z"}, "New.")


def back_dated_add(site: Site) -> None:  # older than the newest item
    site.write_item("news", "2020-09-01-old.md", {"title": "Old", "date": "2020-09-01 10:00Z"})


def delete(site: Site) -> None:
    (site.items / "news" / "2020-09-10-a.md").unlink()


def unpublish(site: Site) -> None:
    site.write_item("news", "2020-09-10-a.md", {"title": "A", "date": "2020-09-10", "draft": True})


CHANGES: dict[str, Callable[[Site], None]] = {
    "edit": edit,
    "back-dated add": back_dated_add,
    "delete": delete,
    "unpublish": unpublish,
}


@pytest.mark.parametrize("url", FEEDS)
@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("later", [0, 90], ids=["same second", "later"])
def test_a_client_with_only_if_modified_since_sees_every_change(
    site: Site, url: str, change: str, later: int
) -> None:
    base(site)
    app = cached_app(site)
    status, seen, before = polled(app, url)
    assert (status, polled(app, url, seen)[0]) == (200, 304)
    site.clock.now = START + timedelta(seconds=later)
    CHANGES[change](site)
    app.extensions["feedsvc"].reload()
    status, moved, after = polled(app, url, seen)
    assert status == 200 and after != before, "the new bytes, not a 304"
    assert parsedate_to_datetime(moved) > parsedate_to_datetime(seen)
    assert polled(app, url, moved)[0] == 304


def test_a_scheduled_item_going_live_moves_it(site: Site) -> None:
    base(site)
    site.write_item("news", "2030-01-02-due.md", {"title": "Due", "date": "2030-01-02 09:00Z"})
    app = cached_app(site)
    _, seen, before = polled(app, "/feeds/all.atom")
    site.clock.now = datetime(2030, 1, 2, 9, 0, 1, tzinfo=UTC)
    status, moved, after = polled(app, "/feeds/all.atom", seen)
    assert status == 200 and b"Due" in after and b"Due" not in before
    assert moved == "Wed, 02 Jan 2030 09:00:01 GMT", "when the new bytes were first served"


def test_it_never_goes_back_even_when_bytes_come_back(site: Site) -> None:
    base(site)
    app = cached_app(site)
    times = []
    for step in range(4):  # the edit, undone, done, undone: each a change
        site.clock.now = START + timedelta(seconds=step // 2)  # two changes a second
        (edit if step % 2 == 0 else base)(site)
        app.extensions["feedsvc"].reload()
        times.append(parsedate_to_datetime(polled(app, "/feeds/all.atom")[1]))
    assert times == sorted(set(times)), times


def test_every_worker_and_a_restart_give_the_same_time(site: Site) -> None:
    base(site)
    first = cached_app(site)
    _, seen, body = polled(first, "/feeds/all.atom")
    site.clock.now = START + timedelta(hours=5)
    other = cached_app(site)  # another worker, or the server started again
    assert polled(other, "/feeds/all.atom")[1:] == (seen, body)
    edit(site)
    for app in (first, other):
        app.extensions["feedsvc"].reload()
    assert polled(first, "/feeds/all.atom")[1] == polled(other, "/feeds/all.atom")[1]


def test_without_a_cache_it_still_moves_with_the_bytes(site: Site) -> None:
    base(site)
    app = site.app(cache_dir=None)
    _, seen, _ = polled(app, "/feeds/all.rss")
    delete(site)
    app.extensions["feedsvc"].reload()
    status, moved, _ = polled(app, "/feeds/all.rss", seen)
    assert status == 200 and parsedate_to_datetime(moved) > parsedate_to_datetime(seen)


def test_the_opml_moves_with_its_bytes(site: Site) -> None:
    base(site)
    app = cached_app(site)
    _, seen, _ = polled(app, "/feeds.opml")
    site.write_item("sport", "2020-09-05-match.md", {"title": "Match"})  # a new feed listed
    app.extensions["feedsvc"].reload()
    assert polled(app, "/feeds.opml", seen)[0] == 200


def test_the_workers_of_a_real_server_agree(tmp_path: Path) -> None:
    items = tmp_path / "items"
    (items / "news").mkdir(parents=True)
    (items / "news" / "2020-09-10-a.md").write_text("---\ntitle: A\n---\nBody.\n")
    env = {
        "FEEDSVC_ITEMS_DIR": str(items),
        "FEEDSVC_CACHE_DIR": str(tmp_path / "cache"),
        "FEEDSVC_BASE_URL": "https://news.example.org",
    }
    with running_server(env=env, argv=feedsvc_serve()) as server:
        (items / "news" / "2020-09-01-old.md").write_text("---\ntitle: Old\n---\nBody.\n")

        everywhere(server, lambda s: b"Old" in s.request("/feeds/all.atom")[2])
        dates = {server.request("/feeds/all.atom")[1]["Last-Modified"] for _ in range(32)}
        assert len(dates) == 1, dates
        assert len(server.worker_pids()) == 2, "both workers answered"
