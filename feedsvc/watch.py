"""Live publishing: reload the store when files change, in every worker, without a restart.

File-system events (watchdog) wake a reload thread; bursts are debounced into one
reload, and a reload waits until the changed files have settled (are no longer being
written). A periodic re-scan is the safety net for lost events (network filesystems).
Its interval grows with the cost of a scan, so a large folder is not scanned hot.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import threading
import time
import weakref

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from feedsvc.store import Store

log = logging.getLogger(__name__)

DEBOUNCE = 0.3  # seconds of quiet after the last event before reloading
SETTLE = 1.0  # a file changed more recently than this may still be being written
MAX_SETTLE_WAIT = 5.0  # after this long, publish what has settled even if writes go on
RESCAN_MIN, RESCAN_MAX = 2.0, 60.0
RESCAN_COST_FACTOR = 50  # re-scan at most every 50 x the last scan's duration (<= 2% busy)
MAX_TARGETED = 2_000  # more changed files than this in one burst: scan the folder instead

#: Event kinds that can change what is published; opening and reading a file cannot.
_CHANGES = {"created", "deleted", "modified", "moved", "closed"}


class _Changes(FileSystemEventHandler):
    """Collects the files that events name; a folder event asks for a full scan."""

    def __init__(self, root: str, wake: threading.Event) -> None:
        self.root = root
        self.wake = wake
        self.lock = threading.Lock()
        self.paths: set[str] | None = set()  # None: scan everything

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGES:
            return
        if event.is_directory and event.event_type == "modified":
            return  # its files' own events say what changed
        with self.lock:
            if event.is_directory:
                self.paths = None
            elif self.paths is not None:
                for path in (event.src_path, getattr(event, "dest_path", "")):
                    if path:
                        self.paths.add(os.path.relpath(os.fsdecode(path), self.root))
                if len(self.paths) > MAX_TARGETED:
                    self.paths = None
        self.wake.set()

    def take(self) -> set[str] | None:
        with self.lock:
            paths, self.paths = self.paths, set()
        return paths

    def give_back(self, paths: set[str] | None) -> None:
        """Paths not reloaded yet (their files had not settled) wait for the next try."""
        with self.lock:
            self.paths = None if paths is None or self.paths is None else self.paths | paths


class Watcher:
    """Keeps one store's snapshot in step with its folder, from a daemon thread.

    Threads do not survive a fork. When a process that watches forks (gunicorn's master
    with `--preload`: it loads the items once, then forks the workers), each child starts
    its own watcher, which first re-scans the folder to catch up, and the parent, which
    serves nothing, stops watching.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rescan_every = RESCAN_MIN
        self._reset()

    def _reset(self) -> None:
        self._changed = threading.Event()
        self._changes = _Changes(str(self.store.root.resolve()), self._changed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None

    def start(self, *, scan_first: bool = False) -> Watcher:
        """Watch from now on; with `scan_first`, re-scan the whole folder at once (a forked
        child's snapshot is the parent's, as old as the parent's last reload)."""
        _watching.add(self)
        observer = Observer()
        try:
            observer.schedule(self._changes, str(self.store.root), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as error:  # e.g. out of inotify watches: the re-scan still works
            log.warning("file events unavailable (%s); re-scanning every few seconds", error)
        self._thread = threading.Thread(
            target=self._run, args=(scan_first,), name="feedsvc-watch", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        _watching.discard(self)
        self._halt(wait=True)

    def _halt(self, *, wait: bool) -> None:
        self._stop.set()
        self._changed.set()
        if self._observer is not None:
            self._observer.stop()
            if wait:
                self._observer.join(timeout=5)
        if self._thread is not None and wait:
            self._thread.join(timeout=5)

    def _before_fork(self) -> None:
        self.store.before_fork()

    def _after_fork(self, child: bool) -> None:
        self.store.after_fork(child)
        if child:
            self._reset()
            self.start(scan_first=True)
        elif not self._stop.is_set():
            self._halt(wait=False)  # it stays in _watching: the next child watches too

    def _run(self, scan_first: bool) -> None:
        if scan_first:
            self._reload(None)
        while not self._stop.is_set():
            if self._changed.wait(self._rescan_every):
                self._quiet()
                paths = self._changes.take()
            else:
                paths = None  # the periodic safety re-scan looks at everything
            if self._stop.is_set():
                return
            self._reload(paths)

    def _quiet(self) -> None:
        """Debounce: wait until no event has come for DEBOUNCE seconds."""
        self._changed.clear()
        while self._changed.wait(DEBOUNCE) and not self._stop.is_set():
            self._changed.clear()

    def _reload(self, paths: set[str] | None) -> None:
        waited = 0.0
        started = time.perf_counter()
        try:
            while True:
                settle = SETTLE if waited < MAX_SETTLE_WAIT else 0
                if self.store.reload_settled(settle, paths=paths) is not None:
                    break
                if self._stop.wait(SETTLE / 2):
                    return
                waited += SETTLE / 2
                # Events that came meanwhile join this reload, so a burst stays whole.
                more = self._changes.take()
                paths = None if paths is None or more is None else paths | more
        except Exception:  # a reload must never kill the thread that keeps feeds fresh
            log.exception("reload failed; the previous snapshot stays published")
            self._changes.give_back(paths)
        if paths is None:  # the cost of a full scan spaces the periodic re-scans
            cost = time.perf_counter() - started - waited
            self._rescan_every = min(RESCAN_MAX, max(RESCAN_MIN, cost * RESCAN_COST_FACTOR))


#: Watchers started and not stopped (in this process, or handed over to its children).
_watching: weakref.WeakSet[Watcher] = weakref.WeakSet()
_forking: list[Watcher] = []  # those prepared for the fork under way: the same set after it


def _before_fork() -> None:
    _forking[:] = list(_watching)
    for watcher in _forking:
        watcher._before_fork()
    if _forking:
        # Objects loaded so far are shared with the child copy-on-write; the collector
        # must not touch them there (Python's gc.freeze documentation).
        gc.freeze()
        _give_back_free_memory()


def _give_back_free_memory() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim), so that a child does
    not start with the parent's start-up garbage in its resident memory."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


def _after_fork(child: bool) -> None:
    for watcher in _forking:
        watcher._after_fork(child)
    _forking.clear()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere nothing forks
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=lambda: _after_fork(child=False),
        after_in_child=lambda: _after_fork(child=True),
    )
