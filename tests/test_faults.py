"""The fault barrier: a file that cannot be named, read, parsed, cached or rendered is a
problem for that file alone, and nothing of the kind stops a load, a reload or a request.

Each test builds the hazard on disk and goes through the public ways in: a store's load
and reloads, the Flask app, `feedsvc check`. The generated hazards are in test_hazards.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import threading
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from feedsvc import itemfile, loading
from feedsvc.cli import main
from feedsvc.index import Index
from feedsvc.model import Problem, printable
from feedsvc.store import Store
from tests.conftest import Site


def published(store: Store) -> list[str]:
    return [item.title for item in store.snapshot().items]


def problems_of(store: Store) -> dict[str, str]:
    return {p.path: p.message for p in store.snapshot().problems}


def load_in_a_thread(store: Store) -> None:
    """Load, failing the test rather than hanging it if something blocks for good."""
    done = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            store.reload()
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    threading.Thread(target=load, daemon=True).start()
    assert done.wait(timeout=60), "the load blocked"
    assert not errors, errors


def test_a_loop_of_links_in_a_category_is_reported_and_the_rest_published(site: Site) -> None:
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    os.symlink("b.md", site.items / "news" / "a.md")
    os.symlink("a.md", site.items / "news" / "b.md")
    os.symlink("loop", site.items / "loop")
    store = Store(site.settings(cache_dir=site.root / "cache"))
    store.reload()
    assert published(store) == ["Good"]
    found = problems_of(store)
    assert found["news/a.md"] == found["news/b.md"] == "is a loop of symbolic links"
    assert found["loop"] == "is a loop of symbolic links"


def test_special_files_never_block_a_load(site: Site) -> None:
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    os.mkfifo(site.items / "news" / "2020-09-02-fifo.md")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(site.items / "news" / "2020-09-03-socket.md"))
    unix.close()
    os.symlink("nowhere.md", site.items / "news" / "2020-09-04-dangling.md")
    store = Store(site.settings())
    load_in_a_thread(store)
    assert published(store) == ["Good"]
    found = problems_of(store)
    assert "not a regular file" in found["news/2020-09-02-fifo.md"]
    assert "not a regular file" in found["news/2020-09-03-socket.md"]
    assert "link to nothing" in found["news/2020-09-04-dangling.md"]


def test_a_file_swapped_for_a_fifo_after_the_scan_is_not_read_blocking(site: Site) -> None:
    path = site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    os.unlink(path)
    os.mkfifo(path)
    done = threading.Event()
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(loading.read_file(str(path)))
        except OSError as error:
            outcome.append(error)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout=60), "reading a FIFO blocked"
    assert isinstance(outcome[0], OSError)


def test_names_that_are_not_utf8_are_reported_escaped_and_cached_safely(site: Site) -> None:
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    folder = os.fsencode(site.items / "news")
    for name in (b"2020-09-02-\xff\xfe.md", b"2020-09-03-bell\x07\n.md", b"-leading.md"):
        with open(folder + b"/" + name, "wb") as handle:
            handle.write(b"---\ntitle: Bad name\n---\nBody.\n")
    settings = site.settings(cache_dir=site.root / "cache")
    first = Store(settings)
    first.reload()
    again = Store(settings)  # from the cache this time
    again.reload()
    assert again.parse_count == 0
    for store in (first, again):
        assert published(store) == ["Good"]
        paths = set(problems_of(store))
        assert {"news/2020-09-02-\\xff\\xfe.md", "news/2020-09-03-bell\\x07\\x0a.md"} <= paths
        assert "news/-leading.md" in paths
        assert all(path.isprintable() for path in paths)


def test_printable_escapes_every_name_the_same_way_twice() -> None:
    name = os.fsdecode(b"a\\b\xff\x07\n\xc2\xa0.md")
    shown = printable(name)
    assert shown == "a\\\\b\\xff\\x07\\x0a\\u00a0.md"
    assert printable(shown) == shown
    assert str(Problem(name, 3, "error", "bad")) == f"{shown}:3: error: bad"


@pytest.mark.parametrize(
    "date",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-12:00",
        "0999-12-31",
        "9000-01-01 10:00",
    ],
)
def test_dates_out_of_range_are_refused_with_the_line(site: Site, date: str) -> None:
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    site.write_item("news", "2020-09-02-odd.md", f"title: Odd\ndate: {date}")
    client = site.client()
    feed = feedparser.parse(client.get("/feeds/all.atom").data)
    assert [entry.title for entry in feed.entries] == ["Good"]
    health = json.loads(client.get("/healthz").data)
    assert (health["refused"], health["errors"]) == (1, 1)


@pytest.mark.parametrize("name", ["0001-01-01-early.md", "9999-12-31-late.md"])
def test_file_name_dates_out_of_range_are_refused(site: Site, name: str) -> None:
    site.write_item("news", name, {"title": "Odd"})
    store = Store(site.settings())
    store.reload()
    assert published(store) == []
    assert "out of range" in problems_of(store)[f"news/{name}"]


def test_a_body_that_cannot_be_rendered_costs_that_body_alone(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"}, "Good body.")
    site.write_item("news", "2020-09-02-deep.md", {"title": "Deep"}, "Deep body.")
    render_body = itemfile.render_body

    def deep(item: itemfile.Item, data: bytes, base_url: str) -> itemfile.Content:
        if item.title == "Deep":
            raise RecursionError("maximum recursion depth exceeded")
        return render_body(item, data, base_url)

    monkeypatch.setattr(itemfile, "render_body", deep)
    client = site.client()
    feed = feedparser.parse(client.get("/feeds/all.atom").data)
    assert not feed.bozo
    entries = {entry.title: entry for entry in feed.entries}
    assert "Good body." in entries["Good"].content[0].value
    assert "content" not in entries["Deep"]  # shown with its title only
    page = client.get("/items/news/deep.html")
    assert page.status_code == 200 and b"Deep" in page.data
    health = json.loads(client.get("/healthz").data)
    assert health["errors"] == 1


def test_an_entry_that_cannot_be_written_is_left_out_of_its_feed(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feedsvc import render

    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    site.write_item("news", "2020-09-02-bad.md", {"title": "Bad"})
    atom = render.FORMATS["atom"]

    def refuses_bad(view: render.FeedView, settings: object) -> bytes:
        if any(entry.title == "Bad" for entry in view.entries):
            raise ValueError("All strings must be XML compatible")
        return atom.render(view, settings)  # type: ignore[arg-type]

    monkeypatch.setitem(render.FORMATS, "atom", dataclasses.replace(atom, render=refuses_bad))
    client = site.client()
    feed = feedparser.parse(client.get("/feeds/all.atom").data)
    assert [entry.title for entry in feed.entries] == ["Good"]
    rss = feedparser.parse(client.get("/feeds/all.rss").data)
    assert [entry.title for entry in rss.entries] == ["Bad", "Good"]  # other formats: whole
    health = json.loads(client.get("/healthz").data)
    assert health["errors"] == 1


def test_a_failed_reload_keeps_serving_is_logged_once_and_the_next_one_catches_up(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    app = site.app()
    store: Store = app.extensions["feedsvc"]
    client = app.test_client()
    update = Index.update
    broken = threading.Event()
    broken.set()

    def fails(self: Index, changes: object) -> None:
        if broken.is_set():
            raise RuntimeError("a bug in the index")
        update(self, changes)  # type: ignore[arg-type]

    monkeypatch.setattr(Index, "update", fails)
    site.write_item("news", "2020-09-02-b.md", {"title": "B"})
    with caplog.at_level(logging.DEBUG, logger="feedsvc"):
        store.reload_settled(0.0, paths={"news/2020-09-02-b.md"})
        store.reload_settled(0.0, paths={"news/2020-09-02-b.md"})
    assert published(store) == ["A"]
    assert caplog.text.count("reload failed (") == 1
    health = json.loads(client.get("/healthz").data)
    assert health["status"] == "failing" and not health["reload"]["ok"]
    assert "a bug in the index" in health["reload"]["error"]
    assert health["reload"]["failing_since"]
    broken.clear()
    site.write_item("news", "2020-09-03-c.md", {"title": "C"})
    store.reload_settled(0.0, paths={"news/2020-09-03-c.md"})  # the next event
    assert published(store) == ["C", "B", "A"]
    health = json.loads(client.get("/healthz").data)
    assert health["status"] == "ok" and health["reload"]["ok"]


def test_a_first_load_that_fails_as_a_whole_still_boots(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    monkeypatch.setattr(Index, "update", lambda self, changes: 1 / 0)
    client = site.client()
    assert client.get("/feeds/all.atom").status_code == 200
    health = json.loads(client.get("/healthz").data)
    assert health["status"] == "failing" and health["errors"] == 1


def test_a_broken_published_item_survives_a_restart_from_its_last_good_version(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = site.write_item("news", "2020-09-01-a.md", "title: Alpha\ntags: [x, y]", "Alpha body.")
    settings = site.settings(cache_dir=site.root / "cache")
    app = site.app(cache_dir=site.root / "cache")
    assert b"Alpha body." in app.test_client().get("/items/news/a.html").data
    path.write_text(path.read_text().replace("[x, y]", "[x, y"))  # the server is stopped
    for restarted in (Store(settings), Store(settings)):  # and again, from its own row
        restarted.reload()
        assert published(restarted) == ["Alpha"]
    client = site.client(cache_dir=site.root / "cache")
    page = client.get("/items/news/a.html")
    assert page.status_code == 200 and b"Alpha body." in page.data
    monkeypatch.chdir(site.root)  # no feedsvc.toml there
    result = CliRunner().invoke(main, ["check", str(site.items)], env={"FEEDSVC_CACHE_DIR": ""})
    assert result.exit_code == 1  # without a cache there is no last good version
    same_settings = {  # what the cache's rows depend on
        "FEEDSVC_CACHE_DIR": str(site.root / "cache"),
        "FEEDSVC_BASE_URL": settings.base_url,
        "FEEDSVC_AUTHOR": settings.author,
    }
    with_cache = CliRunner().invoke(main, ["check", str(site.items)], env=same_settings)
    assert "served from its last good version ('Alpha')" in with_cache.output
    assert "2020-09-01-a.md:3: error: front matter is not valid YAML" in with_cache.output


def test_without_a_cache_a_broken_item_is_left_out_after_a_restart(site: Site) -> None:
    path = site.write_item("news", "2020-09-01-a.md", "title: Alpha\ntags: [x, y]")
    Store(site.settings()).reload()
    path.write_text(path.read_text().replace("[x, y]", "[x, y"))
    store = Store(site.settings())
    store.reload()
    assert published(store) == []
    assert "not valid YAML" in problems_of(store)["news/2020-09-01-a.md"]


def test_an_editor_saving_by_remove_and_create_never_unpublishes_the_item(site: Site) -> None:
    """Some editors save by moving the old file away and writing a new one: between the
    two the file is gone. A removal settles like a write, so the two are one change."""
    path = site.write_item("news", "2020-09-01-a.md", "title: Alpha\ntags: [x, y]")
    store = Store(site.settings())  # no cache: the settling alone keeps it
    store.reload()
    os.rename(path, f"{path}~")
    events = {"news/2020-09-01-a.md", "news/2020-09-01-a.md~"}
    assert store.reload_settled(3600.0, paths=events) is None  # gone just now: not yet
    assert published(store) == ["Alpha"]
    path.write_text("---\ntitle: Alpha\ntags: [x, y\n---\nBody.\n")  # the broken save
    assert store.reload_settled(0.0, paths=events) is not None
    assert published(store) == ["Alpha"]
    assert "last good version" in problems_of(store)["news/2020-09-01-a.md"] or any(
        "last good version" in p.message for p in store.snapshot().problems
    )


def test_a_removal_is_published_once_it_has_settled(site: Site) -> None:
    path = site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    store = Store(site.settings())
    store.reload()
    path.unlink()
    assert store.reload_settled(3600.0, paths={"news/2020-09-01-a.md"}) is None
    assert store.reload_settled(0.0, paths={"news/2020-09-01-a.md"}) is not None
    assert published(store) == []


def test_many_files_with_one_problem_make_one_log_line(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    for number in range(1, 31):
        site.write_item("news", f"2020-09-{number:02d}-a.md", f"title: A{number}\ncolour: red")
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        store = Store(site.settings())
        store.reload()
    lines = [r.getMessage() for r in caplog.records if "colour" in r.getMessage()]
    assert len(lines) == 1
    assert "30 files" in lines[0] and "news/2020-09-01-a.md:3" in lines[0]
    assert len(store.snapshot().problems) == 30  # check lists every one
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        site.write_item("news", "2020-09-01-a.md", "title: A1, edited\ncolour: red")
        store.reload()
    assert "colour" not in caplog.text  # not new


def test_check_lists_hazards_without_a_traceback(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(site.root)
    site.write_item("news", "2020-09-01-good.md", {"title": "Good"})
    os.symlink("b.md", site.items / "news" / "a.md")
    os.symlink("a.md", site.items / "news" / "b.md")
    os.mkfifo(site.items / "news" / "2020-09-02-fifo.md")
    with open(os.fsencode(site.items / "news") + b"/2020-09-03-\xff.md", "wb") as handle:
        handle.write(b"---\ntitle: x\n---\n")
    site.write_item("news", "2020-09-04-early.md", "title: E\ndate: 0001-01-01T00:00:00+14:00")
    result = CliRunner().invoke(main, ["check", str(site.items), "--format", "json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["items"] == 1
    shown = {Path(p["path"]).name for p in report["problems"]}
    assert shown == {"a.md", "b.md", "2020-09-02-fifo.md", "2020-09-03-\\xff.md",
                     "2020-09-04-early.md"}  # fmt: skip
    assert "Traceback" not in result.output


SIZE = 5_024_825  # bytes, the size of the file a copy is writing


def test_a_file_that_grows_past_the_limit_while_read_is_reported_by_its_real_size(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy still being written: `fstat` sees the first bytes, the read finds more, and
    stops one byte past the limit. The size reported is the file's, not what was read."""
    monkeypatch.chdir(site.root)
    path = site.write("news/2020-09-01-copy.md", b"---\ntitle: Copy\n---\n")
    fstat = os.fstat
    grown = threading.Event()

    def fstat_then_grow(descriptor: int) -> os.stat_result:
        seen = fstat(descriptor)
        if not grown.is_set():  # the writer goes on right after the first look
            grown.set()
            with path.open("ab") as handle:
                handle.write(b"x" * (SIZE - seen.st_size))
        return seen

    monkeypatch.setattr(loading.os, "fstat", fstat_then_grow)
    result = CliRunner().invoke(main, ["check", str(site.items)])
    assert grown.is_set()
    assert result.exit_code == 1
    assert path.stat().st_size == SIZE
    assert (
        f"news/2020-09-01-copy.md: error: file is {SIZE:,} bytes, over the limit of 1,048,576"
        in result.output
    )


def test_a_file_over_the_limit_is_reported_by_its_size(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(site.root)
    site.write("news/2020-09-01-big.md", b"---\ntitle: Big\n---\n" + b"x" * (SIZE - 19))
    result = CliRunner().invoke(main, ["check", str(site.items)])
    assert result.exit_code == 1
    assert f"file is {SIZE:,} bytes, over the limit of 1,048,576" in result.output


def test_problems_with_names_are_logged_each_up_to_a_bound(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    from feedsvc import faults

    for n in range(faults.NAMED + 5):
        (site.items / "news" / f"folder-{n:03d}").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        Store(site.settings()).reload()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[: faults.NAMED] == [
        f"news/folder-{n:03d}: warning: folders inside a category are not read; move its files up"
        for n in range(faults.NAMED)
    ]
    assert lines[faults.NAMED :] == [
        "and 5 more problems with names in the items folder; `feedsvc check` lists them all"
    ]
