"""The watcher's promises, each held by a test that fails without its mechanism.

A watcher here runs on a clock the test moves by hand (`ManualTiming`) and sees only the
file events the test sends (`Events`), over a real `Store` and a real items folder; no
test waits for time to pass. A file's mtime decides whether the store counts it as
settled, so the tests set it an hour back (written long ago) or an hour ahead (being
written as we speak), whatever the speed of the machine. Every wait for another thread
is bounded (`PATIENCE`) only so that a broken build fails instead of hanging.
"""

from __future__ import annotations

import gc
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import (
    DirCreatedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from feedsvc import lifecycle
from feedsvc.model import Snapshot
from feedsvc.store import Store
from feedsvc.watch import Watcher
from tests.conftest import Site

PATIENCE = 30.0  # seconds: a failure guard, never a measure
HOUR = 3600.0
#: The README promises that a change shows "within about two seconds"; a change whose
#: file event was lost is caught by the periodic re-scan, which must run within this.
LOST_CHANGE_DEADLINE = 5.0


# -- a clock the test moves, and file events the test sends --------------------------------


class ManualTiming:
    """Watcher time that passes only in `advance`; its signals wake the watcher's waits."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._now = 0.0
        self._moves = 0  # advances and signals set so far
        self._resting: int | None = None  # _moves as a blocked wait last saw it
        self._deadline: float | None = None  # of the blocked wait

    def now(self) -> float:
        with self._condition:
            return self._now

    def signal(self) -> ManualSignal:
        return ManualSignal(self)

    def advance(self, seconds: float) -> None:
        with self._condition:
            self._now += seconds
            self._moved()

    def rest(self) -> None:
        """Wait until the watcher is blocked in a wait that no advance or signal so far
        ends: it has done everything there is to do until time passes or an event comes."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._resting == self._moves, PATIENCE):
                raise AssertionError("the watcher did not come to rest")

    def run_out(self) -> None:
        """Once the watcher rests, move time to the end of the wait it is in."""
        self.rest()
        with self._condition:
            assert self._deadline is not None, "the watcher waits for an event, not for time"
            self._now = self._deadline
            self._moved()

    def _moved(self) -> None:
        self._moves += 1
        self._condition.notify_all()


class ManualSignal:
    """`threading.Event` on a `ManualTiming`: a wait ends when the signal is set or when
    the test has moved the time past its timeout."""

    def __init__(self, timing: ManualTiming) -> None:
        self._timing = timing
        self._set = False

    def set(self) -> None:
        with self._timing._condition:
            self._set = True
            self._timing._moved()

    def clear(self) -> None:
        with self._timing._condition:
            self._set = False

    def is_set(self) -> bool:
        with self._timing._condition:
            return self._set

    def wait(self, timeout: float | None = None) -> bool:
        timing = self._timing
        with timing._condition:
            deadline = None if timeout is None else timing._now + timeout
            while not self._set and (deadline is None or timing._now < deadline):
                timing._resting, timing._deadline = timing._moves, deadline
                timing._condition.notify_all()
                timing._condition.wait()
            timing._resting = timing._deadline = None
            return self._set


class Events:
    """A source of file events that sends only what the test emits."""

    def __init__(self) -> None:
        self.handlers: list[FileSystemEventHandler] = []
        self.folders: list[str] = []

    def observe(self, handler: FileSystemEventHandler, folder: str) -> Events._Observation:
        self.handlers.append(handler)
        self.folders.append(folder)
        return Events._Observation(self, handler)

    def emit(self, *events: FileSystemEvent) -> None:
        for event in events:
            for handler in list(self.handlers):
                handler.dispatch(event)

    def written(self, path: Path) -> None:
        """What an editor's save sends."""
        self.emit(FileCreatedEvent(str(path)), FileModifiedEvent(str(path)))
        self.emit(FileClosedEvent(str(path)))

    @dataclass
    class _Observation:
        events: Events
        handler: FileSystemEventHandler

        def stop(self) -> None:
            if self.handler in self.events.handlers:
                self.events.handlers.remove(self.handler)

        def join(self, timeout: float | None = None) -> None:
            pass


class RecordingStore(Store):
    """A store that tells the test each reload asked of it (the paths, what it gave) and
    the order of its fork hooks and reloads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: queue.Queue[tuple[set[str] | None, Snapshot | None]] = queue.Queue()
        self.calls: list[str] = []

    def reload_settled(
        self,
        settle: float,
        progress: Callable[[int, int], None] | None = None,
        paths: set[str] | None = None,
    ) -> Snapshot | None:
        self.calls.append("reload")
        given = None if paths is None else set(paths)
        snapshot = super().reload_settled(settle, progress, paths)
        self.asked.put((given, snapshot))
        return snapshot

    def before_fork(self) -> None:
        self.calls.append("before_fork")
        super().before_fork()

    def after_fork(self, child: bool) -> None:
        self.calls.append(f"after_fork({'child' if child else 'parent'})")
        super().after_fork(child)

    def next_asked(self) -> tuple[set[str] | None, Snapshot | None]:
        return self.asked.get(timeout=PATIENCE)


def settled(path: Path, *, ago: float = HOUR) -> Path:
    """Date the file's last write `ago` seconds back (negative: in the future)."""
    when = time.time() - ago
    os.utime(path, (when, when))
    return path


def being_written(path: Path) -> Path:
    return settled(path, ago=-HOUR)


def titles(store: Store) -> list[str]:
    return [item.title for item in store.snapshot().items]


@dataclass
class Watched:
    site: Site
    store: RecordingStore
    watcher: Watcher
    timing: ManualTiming
    events: Events


@dataclass
class Watching:
    """Starts watchers over `site` on manual time; stops them when the test ends."""

    site: Site
    started: list[Watcher] = field(default_factory=list)

    def __call__(self, **parameters: Any) -> Watched:
        self.site.items.mkdir(parents=True, exist_ok=True)
        settings = self.site.settings(**parameters.pop("settings", {}))
        store = RecordingStore(settings, self.site.clock)
        store.reload()
        timing, events = ManualTiming(), Events()
        watcher = Watcher(store, timing=timing, observe=events.observe, **parameters)
        self.started.append(watcher.start())
        timing.rest()
        while not store.asked.empty():  # the load above
            store.asked.get()
        return Watched(self.site, store, watcher, timing, events)


@pytest.fixture
def watching(site: Site) -> Iterator[Watching]:
    watching = Watching(site)
    yield watching
    for watcher in watching.started:
        watcher.stop()


# -- what the README promises ----------------------------------------------------------------


def test_a_half_written_file_is_published_only_once_written(watching: Watching) -> None:
    """A reload waits until the changed files have settled (SETTLE): a file still being
    written is not published, not even the part of it that parses."""
    w = watching()
    settled(w.site.write_item("news", "2020-09-29-before.md", {"title": "Before"}))
    w.events.written(w.site.items / "news" / "2020-09-29-before.md")
    w.timing.run_out()  # the debounce
    w.timing.rest()
    assert titles(w.store) == ["Before"]

    path = w.site.write_item("news", "2020-09-30-slow.md", {"title": "Slow"}, "The first ha")
    being_written(path)
    w.events.written(path)
    w.timing.run_out()  # the debounce: the watcher looks, and waits for the file to settle
    w.timing.rest()
    assert titles(w.store) == ["Before"], "a file still being written was published"

    w.timing.run_out()  # still being written when the watcher looks again
    w.timing.rest()
    assert titles(w.store) == ["Before"]

    with path.open("a", encoding="utf-8") as handle:
        handle.write("lf of the body, and the second half.\n")
    settled(path)
    w.events.emit(FileModifiedEvent(str(path)), FileClosedEvent(str(path)))
    w.timing.run_out()  # the next look at it
    w.timing.rest()
    assert titles(w.store) == ["Slow", "Before"]
    source = w.store.snapshot().items[0].source
    assert source.size == path.stat().st_size, "the whole file was read"


def test_a_file_written_to_without_end_is_published_after_max_settle_wait(
    watching: Watching,
) -> None:
    w = watching(debounce=0.3, settle=1.0, max_settle_wait=5.0)
    path = being_written(w.site.write_item("news", "2020-09-30-log.md", {"title": "Log"}))
    w.events.written(path)
    started = w.timing.now()
    while titles(w.store) == []:
        assert w.timing.now() - started < 60, "never published"
        w.timing.run_out()
        w.timing.rest()
    assert w.timing.now() - started == pytest.approx(0.3 + 5.0)


def test_an_upload_through_a_part_file_is_published_once_renamed(watching: Watching) -> None:
    """`.part` files are upload leftovers: skipped without a word (no item, no problem),
    by the reload an event asks for and by the periodic re-scan alike."""
    settled(watching.site.write_item("news", "2020-09-29-before.md", {"title": "Before"}))
    w = watching()
    upload = w.site.items / "news" / "2020-09-30-upload.md.part"
    upload.write_text("---\ntitle: Uploaded\n---\nDone.\n", encoding="utf-8")
    settled(upload)
    w.events.written(upload)
    w.timing.run_out()  # the debounce
    w.timing.rest()
    paths, snapshot = w.store.next_asked()
    assert paths == {"news/2020-09-30-upload.md.part"}
    assert snapshot is not None and snapshot.problems == ()
    assert titles(w.store) == ["Before"]

    w.timing.run_out()  # the periodic re-scan
    w.timing.rest()
    paths, snapshot = w.store.next_asked()
    assert paths is None
    assert snapshot is not None and snapshot.problems == ()
    assert titles(w.store) == ["Before"]

    done = upload.with_name("2020-09-30-upload.md")
    upload.rename(done)
    w.events.emit(FileMovedEvent(str(upload), str(done)))
    w.timing.run_out()
    w.timing.rest()
    assert titles(w.store) == ["Uploaded", "Before"]
    assert w.store.snapshot().problems == ()


def test_a_change_whose_event_was_lost_is_published_by_the_periodic_rescan(
    watching: Watching,
) -> None:
    w = watching()
    settled(w.site.write_item("news", "2020-09-30-quiet.md", {"title": "Quiet"}))
    # No event: a network file system, or an inotify queue that overflowed.
    w.timing.advance(LOST_CHANGE_DEADLINE)
    w.timing.rest()
    assert titles(w.store) == ["Quiet"]


def test_a_burst_of_events_is_one_reload(watching: Watching) -> None:
    w = watching()
    paths = [
        settled(w.site.write_item("news", f"2020-09-{day:02d}-story.md", {"title": str(day)}))
        for day in range(1, 11)
    ]
    for path in paths:
        w.events.written(path)
    w.timing.run_out()
    w.timing.rest()
    asked, snapshot = w.store.next_asked()
    assert asked == {f"news/{path.name}" for path in paths}
    assert snapshot is not None and len(snapshot.items) == 10
    assert w.store.asked.empty()


def test_a_folder_event_asks_for_a_full_scan(watching: Watching) -> None:
    w = watching()
    folder = w.site.items / "culture"
    settled(w.site.write_item("culture", "2020-09-30-new.md", {"title": "New category"}))
    w.events.emit(DirCreatedEvent(str(folder)))
    w.timing.run_out()
    w.timing.rest()
    asked, _ = w.store.next_asked()
    assert asked is None
    assert titles(w.store) == ["New category"]


@pytest.mark.parametrize("waiting_for", ["quiet", "a file to settle", "the next re-scan"])
def test_stop_ends_the_watcher_at_once_whatever_it_waits_for(
    watching: Watching, waiting_for: str
) -> None:
    """No wait of the watcher's outlasts `stop`: here no time passes at all."""
    others = set(threading.enumerate())
    w = watching()
    (thread,) = set(threading.enumerate()) - others
    if waiting_for != "the next re-scan":
        path = w.site.write_item("news", "2020-09-30-slow.md", {"title": "Slow"})
        being_written(path)
        w.events.written(path)
        if waiting_for == "a file to settle":
            w.timing.run_out()
    w.timing.rest()
    w.watcher.stop()
    assert not thread.is_alive()


# -- a linked items folder -------------------------------------------------------------------


@pytest.fixture
def linked(site: Site) -> Path:
    """`site.items` reached through a link, as a deployment that switches releases has it."""
    (site.items / "news").mkdir(parents=True)
    link = site.root / "live"
    link.symlink_to(site.items, target_is_directory=True)
    return link


@pytest.mark.parametrize("form", ["as configured", "resolved"])
def test_event_paths_are_relative_to_a_linked_items_folder(
    watching: Watching, linked: Path, form: str
) -> None:
    settled(watching.site.write_item("news", "2020-09-29-first.md", {"title": "First"}))
    w = watching(settings={"items_dir": linked})
    assert w.events.folders == [str(watching.site.items.resolve())]
    path = settled(w.site.write_item("news", "2020-09-30-second.md", {"title": "Second"}))
    folder = linked if form == "as configured" else watching.site.items.resolve()
    w.events.written(folder / "news" / path.name)
    w.timing.run_out()
    w.timing.rest()
    assert w.store.next_asked()[0] == {"news/2020-09-30-second.md"}
    assert titles(w.store) == ["Second", "First"]


@pytest.mark.parametrize("where", ["elsewhere/news", "items-old/news", "items/../news"])
def test_an_event_outside_the_items_folder_asks_for_a_full_scan(
    watching: Watching, where: str
) -> None:
    w = watching()
    w.events.written(w.site.root / where / "2020-09-30-stray.md")
    w.timing.run_out()
    w.timing.rest()
    assert w.store.next_asked()[0] is None


def test_a_real_watcher_over_a_linked_items_folder_reloads_only_the_changed_file(
    site: Site, linked: Path
) -> None:
    """Real file events (watchdog) and real time: the paths the store is asked to look at
    are the changed file's, relative to the folder, and no full scan is needed."""
    settled(site.write_item("news", "2020-09-29-first.md", {"title": "First"}))
    store = RecordingStore(site.settings(items_dir=linked), site.clock)
    store.reload()
    store.next_asked()
    watcher = Watcher(store, rescan_min=HOUR, rescan_max=HOUR).start()  # no periodic scan
    try:
        settled(site.write_item("news", "2020-09-30-second.md", {"title": "Second"}))
        asked: list[set[str] | None] = []
        while True:
            paths, snapshot = store.next_asked()
            asked.append(paths)
            if snapshot is not None and len(snapshot.items) == 2:
                break
    finally:
        watcher.stop()
    assert asked and all(paths == {"news/2020-09-30-second.md"} for paths in asked), asked
    assert titles(store) == ["Second", "First"]


# -- forking ---------------------------------------------------------------------------------


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the collector back what a fork's hooks froze in this (long-lived) process."""
    yield
    gc.unfreeze()


def in_a_child(check: Callable[[], Any]) -> Any:
    """`check()` in a forked child; its JSON result, sent back through a pipe."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # report, then leave at once: no test teardown in the child
        result: Any = {"error": "the check raised"}
        try:
            result = check()
        finally:
            os.write(write, json.dumps(result).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    return json.loads(data)


@dataclass
class Hooks:
    name: str
    calls: list[str]
    fails: bool = False

    def before_fork(self) -> None:
        if self.fails:
            raise RuntimeError("cannot prepare")
        self.calls.append(f"{self.name}.before")

    def after_fork(self, child: bool) -> None:
        self.calls.append(f"{self.name}.after({'child' if child else 'parent'})")


def test_fork_hooks_run_like_a_stack(unfrozen: None) -> None:
    calls: list[str] = []
    outer, middle, inner = Hooks("outer", calls), Hooks("middle", calls), Hooks("inner", calls)
    gone, broken = Hooks("gone", calls), Hooks("broken", calls, fails=True)
    try:
        for hooks in (outer, middle, gone, broken, inner, outer):
            assert lifecycle.register(hooks) is hooks
        lifecycle.unregister(gone)
        child = in_a_child(lambda: {"calls": calls, "frozen": gc.get_freeze_count() > 0})
    finally:
        for hooks in (outer, middle, broken, inner):
            lifecycle.unregister(hooks)
    before = ["outer.before", "middle.before", "inner.before"]
    after = ["inner.after({})", "middle.after({})", "outer.after({})"]
    assert child == {"calls": before + [a.format("child") for a in after], "frozen": True}
    assert calls == before + [a.format("parent") for a in after]


def test_the_registry_keeps_nothing_alive(unfrozen: None) -> None:
    calls: list[str] = []
    lifecycle.register(Hooks("dropped", calls))
    gc.collect()
    assert in_a_child(lambda: calls) == []
    assert calls == []


def test_a_fork_without_hooks_runs_none(unfrozen: None) -> None:
    """What a reload that forks helper processes relies on: it holds the store's reload
    lock, which the store's before_fork would wait for."""
    calls: list[str] = []
    hooks = lifecycle.register(Hooks("hooks", calls))
    try:
        with lifecycle.without_hooks():
            assert in_a_child(lambda: calls) == []
        assert calls == []
        assert in_a_child(lambda: calls) == ["hooks.before", "hooks.after(child)"]
        assert calls == ["hooks.before", "hooks.after(parent)"]
    finally:
        lifecycle.unregister(hooks)


def test_a_forked_child_rescans_once_its_store_is_ready(site: Site, unfrozen: None) -> None:
    """As create_app wires it: the watcher registers itself when started, the store after
    it, so the store's after_fork has run when the child's watcher re-scans; the parent
    stops watching."""
    settled(site.write_item("news", "2020-09-29-first.md", {"title": "First"}))
    store = RecordingStore(site.settings(), site.clock)
    store.reload()
    events = Events()
    others = set(threading.enumerate())
    watcher = Watcher(store, observe=events.observe, rescan_min=HOUR, rescan_max=HOUR).start()
    lifecycle.register(store)
    (watching_thread,) = set(threading.enumerate()) - others
    try:
        # Lands with no event: only the child's re-scan can find it.
        settled(site.write_item("news", "2020-09-30-second.md", {"title": "Second"}))
        del store.calls[:]

        def child() -> dict[str, Any]:
            paths, snapshot = store.next_asked()  # the parent's load is in the queue
            while paths is not None or snapshot is None or len(snapshot.items) != 2:
                paths, snapshot = store.next_asked()
            return {"calls": store.calls, "titles": titles(store), "observed": len(events.folders)}

        seen = in_a_child(child)
        watching_thread.join(timeout=PATIENCE)
        assert not watching_thread.is_alive(), "the parent stopped watching"
    finally:
        lifecycle.unregister(store)
        watcher.stop()
    assert seen == {
        "calls": ["before_fork", "after_fork(child)", "reload"],
        "titles": ["Second", "First"],
        "observed": 2,
    }
    assert store.calls == ["before_fork", "after_fork(parent)"]
    assert titles(store) == ["First"]
