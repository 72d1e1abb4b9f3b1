"""Live publishing through a real `feedsvc serve` (gunicorn, 2 workers, 127.0.0.1).

Files are created, edited, broken, fixed, renamed and deleted while the server runs;
every change must reach every worker with no restart. How fast is measured in the
benchmarks; here a generous deadline only keeps a broken build from hanging.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import feedparser
import pytest

from tests.server import Server, everywhere, feedsvc_serve, running_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    items = tmp_path / "items"
    (items / "news").mkdir(parents=True)
    env = {"FEEDSVC_ITEMS_DIR": str(items), "FEEDSVC_BASE_URL": "https://live.example.org"}
    with running_server(env=env, argv=feedsvc_serve()) as server:
        yield server, items


def titles(server: Server) -> list[str]:
    status, _, body = server.request("/feeds/all.atom")
    assert status == 200
    parsed = feedparser.parse(body)
    assert not parsed.bozo
    return [entry.title for entry in parsed.entries]


def health(server: Server) -> dict[str, int]:
    return json.loads(server.request("/healthz")[2])  # type: ignore[no-any-return]


def write(items: Path, name: str, title: str, body: str = "Body.", extra: str = "") -> Path:
    path = items / "news" / name
    path.write_text(f"---\ntitle: {title}\n{extra}---\n{body}\n", encoding="utf-8")
    return path


def test_changes_reach_every_worker_without_a_restart(live: tuple[Server, Path]) -> None:
    server, items = live
    assert titles(server) == []

    path = write(items, "2020-09-30-first.md", "First")
    everywhere(server, lambda s: titles(s) == ["First"])

    write(items, "2020-09-30-first.md", "First, edited")
    everywhere(server, lambda s: titles(s) == ["First, edited"])

    path.write_text("---\ntitle: [unclosed\n---\nBroken.\n", encoding="utf-8")
    everywhere(server, lambda s: health(s)["errors"] == 1)
    assert titles(server) == ["First, edited"], "a broken edit keeps the last good version"

    write(items, "2020-09-30-first.md", "First, fixed")
    everywhere(server, lambda s: titles(s) == ["First, fixed"] and health(s)["errors"] == 0)

    path.rename(items / "news" / "2020-09-30-renamed.md")
    everywhere(server, lambda s: s.request("/items/news/renamed.html")[0] == 200)
    # Its old page was published: every worker says it is gone, not that it never was.
    everywhere(server, lambda s: s.request("/items/news/first.html")[0] == 410)

    (items / "news" / "2020-09-30-renamed.md").unlink()
    everywhere(server, lambda s: titles(s) == [])
    assert len(server.worker_pids()) == 2


def test_a_page_gone_while_the_server_was_stopped_is_410_on_every_worker(
    tmp_path: Path,
) -> None:
    items = tmp_path / "items"
    (items / "news").mkdir(parents=True)
    env = {"FEEDSVC_ITEMS_DIR": str(items), "FEEDSVC_BASE_URL": "https://live.example.org"}
    first = write(items, "2020-09-30-first.md", "First")
    write(items, "2020-09-29-second.md", "Second")
    with running_server(env=env, argv=feedsvc_serve()) as server:
        everywhere(server, lambda s: s.request("/items/news/first.html")[0] == 200)
    first.unlink()
    with running_server(env=env, argv=feedsvc_serve()) as server:
        everywhere(
            server,
            lambda s: (
                s.request("/items/news/first.html")[0] == 410
                and s.request("/items/news/second.html")[0] == 200
            ),
        )
        assert len(server.worker_pids()) == 2


def test_workers_forked_later_know_the_pages_gone_since_the_fork(
    live: tuple[Server, Path],
) -> None:
    server, items = live
    path = write(items, "2020-09-30-first.md", "First")
    everywhere(server, lambda s: s.request("/items/news/first.html")[0] == 200)
    path.unlink()
    everywhere(server, lambda s: s.request("/items/news/first.html")[0] == 410)
    first_workers = server.worker_pids()
    for pid in first_workers:
        os.kill(int(pid.strip("<>")), signal.SIGKILL)
    # The master loaded the folder before "First" existed: the new workers learn of its
    # page from the cache.
    everywhere(server, lambda s: s.request("/items/news/first.html")[0] == 410)
    assert server.worker_pids() - first_workers, "the new workers answered"


def test_workers_forked_later_catch_up_with_the_folder(live: tuple[Server, Path]) -> None:
    server, items = live
    write(items, "2020-09-30-first.md", "First")
    everywhere(server, lambda s: titles(s) == ["First"])
    first_workers = server.worker_pids()
    for pid in first_workers:
        os.kill(int(pid.strip("<>")), signal.SIGKILL)
    # gunicorn forks new workers from its master, which loaded the folder before "First"
    # existed (--preload) and stopped watching once it had forked.
    everywhere(server, lambda s: titles(s) == ["First"])
    assert server.worker_pids() - first_workers, "the new workers answered"


def test_a_burst_of_files_arrives_as_one_snapshot(
    live: tuple[Server, Path], tmp_path: Path
) -> None:
    server, items = live
    seen: set[int] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.02):
            seen.add(health(server)["items"])

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # Like a `git pull`: many files land in the folder one after another.
        for n in range(500):
            write(items, f"2020-09-{n % 28 + 1:02d}-story-{n}.md", f"Story {n}")
        everywhere(server, lambda s: health(s)["items"] == 500)
    finally:
        stop.set()
        poller.join()
    assert seen <= {0, 500}, f"a partial burst was published: {sorted(seen)}"


def test_broken_saves_by_editors_never_unpublish_an_item(live: tuple[Server, Path]) -> None:
    """Editors and `sed -i` save a file by writing a new one and renaming it over the old,
    or by moving the old one away first; a broken save keeps the last good version, and
    at no moment does either worker answer 404 for the item."""
    server, items = live
    path = write(items, "2020-09-30-alpha.md", "Alpha", extra="tags: [x, y]\n")
    good, broken = path.read_text(), path.read_text().replace("[x, y]", "[x, y")
    everywhere(server, lambda s: titles(s) == ["Alpha"])
    statuses: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            statuses.append(server.request("/items/news/alpha.html")[0])

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for poller in pollers:
        poller.start()
    try:
        for text, errors in ((broken, 1), (good, 0), (broken, 1), (good, 0)):
            # sed -i: a new file under another name, renamed over the old one
            temporary = path.with_name("sedX4fQ2a")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)
            everywhere(server, lambda s, errors=errors: health(s)["errors"] == errors)
            # an editor that moves the old file away, then writes the new one
            backup = path.with_name(path.name + "~")
            os.rename(path, backup)
            time.sleep(0.6)  # long enough for a reload to look while the name is free
            path.write_text(text, encoding="utf-8")
            backup.unlink()
            everywhere(server, lambda s, errors=errors: health(s)["errors"] == errors)
    finally:
        stop.set()
        for poller in pollers:
            poller.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert titles(server) == ["Alpha"]
