"""A watching process that forks (gunicorn --preload) hands watching to its children."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import feedparser
import pytest

from feedsvc import lifecycle
from feedsvc.documents import Documents
from feedsvc.model import FeedKey
from feedsvc.store import Store
from feedsvc.watch import Watcher
from tests.conftest import Site, hold_atom_renders


def watching() -> bool:
    return any(t.name == "feedsvc-watch" and t.is_alive() for t in threading.enumerate())


def test_a_forked_child_watches_and_the_parent_stops(site: Site) -> None:
    site.write_item("news", "2020-09-29-first.md", {"title": "First"})
    store = Store(site.settings(cache_dir=site.root / "cache"), site.clock)
    store.reload()
    watcher = Watcher(store).start()
    assert watching()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees through the pipe, then leave at once
        verdict = b"no"
        try:
            site.write_item("news", "2020-09-30-second.md", {"title": "Second"})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(store.snapshot().items) < 2:
                time.sleep(0.05)
            store.cache.document("any")  # a connection of its own, not the parent's
            if len(store.snapshot().items) == 2 and watching():
                verdict = b"ok"
        finally:
            os.write(write, verdict)
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok", "the child watched the folder and saw the new file"
    assert status == 0
    for thread in threading.enumerate():  # the parent's watching thread is ending
        if thread.name == "feedsvc-watch":
            thread.join(timeout=5)
    assert not watching(), "the parent stopped watching"
    assert [i.title for i in store.snapshot().items] == ["First"]
    assert store.cache.document("any") is None  # the parent's cache opens again on use
    watcher.stop()


def test_memory_a_load_freed_goes_back_to_the_system_before_workers_fork() -> None:
    """A preloading master's resident pages are every worker's starting RSS. Pages freed
    between objects that stay are resident until the C heap is trimmed, which the hook
    that runs before a fork does; measured in a fresh process, whose heap is its own."""
    code = """
from feedsvc.memory import trim

def anon_mb():
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssAnon:"))
    return int(line.split()[1]) // 1024

rows = [bytes(2048) + str(n).encode() for n in range(100_000)]  # ~200 MB of C-heap blocks
kept = rows[::64]
del rows
before = anon_mb()
trim()
print(before, anon_mb())
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    assert before - after > 150, f"{before} MB resident before, {after} MB after"


def serving(site: Site, patience: float) -> tuple[Store, Documents]:
    """A server's store and documents (renders off requests), as create_app pairs them."""
    store = Store(site.settings(), site.clock)
    documents = Documents(
        store.settings, store.cache, store.bodies, store.current,
        refresh_off_requests=True, patience=patience,
    )  # fmt: skip
    return store, documents


def titles(store: Store, documents: Documents) -> list[str]:
    document = documents.feed(store.snapshot(), FeedKey("news", "atom"))
    assert document is not None
    return [entry.title for entry in feedparser.parse(document.body).entries]


def child_renders_three(store: Store, documents: Documents) -> bool:
    """In a forked child: after a reload, the request gets the new feed, which only the
    child's own render thread can have rendered within the patience."""
    store.reload()
    if titles(store, documents) != ["Three"]:
        return False
    documents.wait_for_refresh()  # the thread is the child's own: it ends
    return True


def in_a_child(check: Callable[[], bool]) -> bool:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # report through the pipe, then leave at once
        ok = False
        try:
            ok = check()
        finally:
            os.write(write, b"ok" if ok else b"no")
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    return os.read(read, 2) == b"ok" and status == 0


@pytest.mark.parametrize("hooks", [True, False], ids=["with the fork hooks", "without them"])
def test_a_forked_child_renders_out_of_date_feeds_in_a_thread_of_its_own(
    site: Site, hooks: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's store forks with its hooks; a bare fork must work too."""
    site.write_item("news", "2020-09-29-a.md", {"title": "One"})
    store, documents = serving(site, patience=5.0)  # not a timing test
    store.reload()
    titles(store, documents)
    site.write_item("news", "2020-09-29-a.md", {"title": "Two"})
    store.reload()
    titles(store, documents)
    documents.wait_for_refresh()  # the parent's render thread has run
    assert titles(store, documents) == ["Two"]
    if hooks:
        watcher = Watcher(store).start()
        lifecycle.register(documents)
        lifecycle.register(store)
    site.write_item("news", "2020-09-29-a.md", {"title": "Three"})
    try:
        assert in_a_child(lambda: child_renders_three(store, documents))
    finally:
        if hooks:
            watcher.stop()
            lifecycle.unregister(documents)
            lifecycle.unregister(store)


def test_a_child_forked_while_the_parent_renders_renders_on_its_own(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked (without the hooks) while the parent's render thread is busy: that thread,
    its queue and its locks stay behind, and the child must not wait for them."""
    site.write_item("news", "2020-09-29-a.md", {"title": "One"})
    store, documents = serving(site, patience=0.05)
    store.reload()
    titles(store, documents)
    go_on = hold_atom_renders(monkeypatch, in_process=os.getpid())  # the parent's only
    site.write_item("news", "2020-09-29-a.md", {"title": "Two"})
    store.reload()
    assert titles(store, documents) == ["One"]
    assert go_on.started.wait(timeout=30), "the parent's thread is held in the render"
    documents.patience = 5.0  # not a timing test
    site.write_item("news", "2020-09-29-a.md", {"title": "Three"})
    try:
        assert in_a_child(lambda: child_renders_three(store, documents))
    finally:
        go_on.set()
    documents.wait_for_refresh()
