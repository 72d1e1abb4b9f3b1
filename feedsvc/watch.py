"""Live publishing: reload the store when files change, in every worker, without a restart.

File-system events (watchdog) wake a reload thread; bursts are debounced into one
reload, and a reload waits until the changed files have settled (are no longer being
written). A periodic re-scan is the safety net for lost events (network filesystems).
Its interval grows with the cost of a scan, so a large folder is not scanned hot.
"""

from __future__ import annotations

import logging
import threading
import time

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

#: Event kinds that can change what is published; opening and reading a file cannot.
_CHANGES = {"created", "deleted", "modified", "moved", "closed"}


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _CHANGES:
            self.event.set()


class Watcher:
    """Keeps one store's snapshot in step with its folder, from a daemon thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._rescan_every = RESCAN_MIN
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None

    def start(self) -> Watcher:
        observer = Observer()
        try:
            observer.schedule(_Wake(self._changed), str(self.store.root), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as error:  # e.g. out of inotify watches: the re-scan still works
            log.warning("file events unavailable (%s); re-scanning every few seconds", error)
        self._thread = threading.Thread(target=self._run, name="feedsvc-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._changed.wait(self._rescan_every):
                self._quiet()
            if self._stop.is_set():
                return
            self._reload()

    def _quiet(self) -> None:
        """Debounce: wait until no event has come for DEBOUNCE seconds."""
        self._changed.clear()
        while self._changed.wait(DEBOUNCE) and not self._stop.is_set():
            self._changed.clear()

    def _reload(self) -> None:
        waited = 0.0
        started = time.perf_counter()
        try:
            while self.store.reload_settled(SETTLE if waited < MAX_SETTLE_WAIT else 0) is None:
                if self._stop.wait(SETTLE / 2):
                    return
                waited += SETTLE / 2
        except Exception:  # a reload must never kill the thread that keeps feeds fresh
            log.exception("reload failed; the previous snapshot stays published")
        cost = time.perf_counter() - started - waited
        self._rescan_every = min(RESCAN_MAX, max(RESCAN_MIN, cost * RESCAN_COST_FACTOR))
