"""Live publishing: reload the store when files change, in every worker, without a restart.

File-system events (watchdog) wake a reload thread; bursts are debounced into one
reload, and a reload waits until the changed files have settled (are no longer being
written). A periodic re-scan is the safety net for lost events (network filesystems).
Its interval grows with the cost of a scan, so a large folder is not scanned hot.

The time the watcher keeps (`Timing`) and where its events come from (`Observe`) are
parameters, so a test can feed it events and move its time by hand.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from feedsvc import lifecycle
from feedsvc.model import Snapshot
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


class Signal(Protocol):
    """What the watcher waits on: `threading.Event`'s interface."""

    def set(self) -> None: ...
    def clear(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Timing(Protocol):
    """The watcher's time: `now()` in seconds (for measuring), and the signals whose
    `wait(timeout)` times its debounce, settle and re-scan waits. One object gives both,
    so a clock a test moves by hand can also wake those waits when a signal is set."""

    def now(self) -> float: ...
    def signal(self) -> Signal: ...


class SystemTiming:
    """Real time: `time.perf_counter` and `threading.Event`."""

    def now(self) -> float:
        return time.perf_counter()

    def signal(self) -> Signal:
        return threading.Event()


class Observation(Protocol):
    """A running source of file events, as `Observe` started it."""

    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


#: Starts delivering the events under a folder (recursively) to a handler; raises OSError
#: when it cannot (the periodic re-scan then keeps the feeds fresh on its own).
Observe = Callable[[FileSystemEventHandler, str], Observation]


def watchdog_observe(handler: FileSystemEventHandler, folder: str) -> Observation:
    observer = Observer()
    observer.schedule(handler, folder, recursive=True)
    observer.daemon = True
    observer.start()
    return observer


class _Changes(FileSystemEventHandler):
    """Collects the files that events name, relative to the items folder; a folder event,
    or a path outside the folder, asks for a full scan.

    `roots` are the forms of the folder's path that events may start with: resolved
    (links followed; what the observer is given) and as configured (an observer may
    report paths through a link). A path is never resolved itself: a link inside the
    folder is an item of its own, not its target.
    """

    def __init__(self, roots: tuple[str, ...], wake: Signal) -> None:
        self.prefixes = tuple(os.path.join(root, "") for root in dict.fromkeys(roots))
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
                    if not path:
                        continue
                    relative = self._relative(os.fsdecode(path))
                    if relative is None:
                        self.paths = None
                        break
                    self.paths.add(relative)
                if self.paths is not None and len(self.paths) > MAX_TARGETED:
                    self.paths = None
        self.wake.set()

    def _relative(self, path: str) -> str | None:
        """`path` relative to the items folder, or None when it is not inside it."""
        path = os.path.abspath(path)
        for prefix in self.prefixes:
            if path.startswith(prefix) and len(path) > len(prefix):
                return path[len(prefix) :]
        return None

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

    Threads do not survive a fork. A started watcher is registered with
    `feedsvc.lifecycle`: when its process forks (gunicorn's master with `--preload`: it
    loads the items once, then forks the workers), each child starts its own watcher,
    which first re-scans the folder to catch up, and the parent, which serves nothing,
    stops watching (and stays registered, so a worker forked later watches too). The
    store's own fork hooks are registered apart from these, after the watcher, so that
    they have run when the child's re-scan begins.

    The waits are parameters (the module's constants by default): `debounce` seconds of
    quiet before a reload; files changed less than `settle` seconds ago hold a reload
    back, for `max_settle_wait` seconds at most; a full re-scan every `rescan_min` to
    `rescan_max` seconds (RESCAN_COST_FACTOR times the cost of the last).
    """

    def __init__(
        self,
        store: Store,
        *,
        debounce: float = DEBOUNCE,
        settle: float = SETTLE,
        max_settle_wait: float = MAX_SETTLE_WAIT,
        rescan_min: float = RESCAN_MIN,
        rescan_max: float = RESCAN_MAX,
        timing: Timing | None = None,
        observe: Observe = watchdog_observe,
        after_reload: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.store = store
        #: Called with the published snapshot after each reload, and when a scheduled
        #: change (an item, a week's end) comes due: what must follow a change at once
        #: (the WebSub publisher's renders), here, off the request path.
        self.after_reload = after_reload
        self.debounce = debounce
        self.settle = settle
        self.max_settle_wait = max_settle_wait
        self.rescan_min, self.rescan_max = rescan_min, rescan_max
        self.timing: Timing = timing or SystemTiming()
        self.observe = observe
        self._rescan_every = rescan_min
        self._reset()

    def _reset(self) -> None:
        self._changed = self.timing.signal()
        self._root = os.path.realpath(self.store.root)
        roots = (self._root, os.path.abspath(self.store.root))
        self._changes = _Changes(roots, self._changed)
        self._stop = self.timing.signal()
        self._thread: threading.Thread | None = None
        self._observer: Observation | None = None

    def start(self, *, scan_first: bool = False) -> Watcher:
        """Watch from now on; with `scan_first`, re-scan the whole folder at once (a forked
        child's snapshot is the parent's, as old as the parent's last reload)."""
        lifecycle.register(self)
        try:
            # The resolved folder: events then name files under the path the store's
            # scan resolves links against, whether or not `items_dir` is a link.
            self._observer = self.observe(self._changes, self._root)
        except OSError as error:  # e.g. out of inotify watches: the re-scan still works
            log.warning("file events unavailable (%s); re-scanning every few seconds", error)
        self._thread = threading.Thread(
            target=self._run, args=(scan_first,), name="feedsvc-watch", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        lifecycle.unregister(self)
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

    # -- forking (lifecycle.ForkAware) -------------------------------------------------------

    def before_fork(self) -> None:
        """Nothing to prepare: the store's own hook holds reloads off across the fork."""

    def after_fork(self, child: bool) -> None:
        if child:
            self._reset()
            self.start(scan_first=True)
        elif not self._stop.is_set():
            self._halt(wait=False)

    # -- the watching thread -----------------------------------------------------------------

    def _run(self, scan_first: bool) -> None:
        if scan_first:
            self._reload(None)
        while not self._stop.is_set():
            if self._changed.wait(self._next_wait()):
                self._quiet()
                paths = self._changes.take()
            else:
                paths = None  # the periodic safety re-scan looks at everything
            if self._stop.is_set():
                return
            self._reload(paths)
            self._after_reload()

    def _next_wait(self) -> float:
        """Until the next re-scan, or sooner when a scheduled change comes due and
        something must follow it (`after_reload`)."""
        current = self.store.current()
        if self.after_reload is None or current is None or current.changes_at is None:
            return self._rescan_every
        until = (current.changes_at - self.store.clock()).total_seconds()
        return max(0.05, min(self._rescan_every, until))

    def _after_reload(self) -> None:
        if self.after_reload is None:
            return
        try:  # the snapshot as of now: a scheduled change that came due is built here
            self.after_reload(self.store.snapshot())
        except Exception:
            log.exception("after a reload")

    def _quiet(self) -> None:
        """Debounce: wait until no event has come for `debounce` seconds."""
        self._changed.clear()
        # `stop` sets _stop before _changed: seen here, it ends the wait at once.
        while not self._stop.is_set() and self._changed.wait(self.debounce):
            self._changed.clear()

    def _reload(self, paths: set[str] | None) -> None:
        now = self.timing.now
        waited = 0.0
        started = now()
        try:
            while True:
                settle = self.settle if waited < self.max_settle_wait else 0
                if self.store.reload_settled(settle, paths=paths) is not None:
                    break
                pause = now()
                if self._stop.wait(self.settle / 2):
                    return
                waited += now() - pause
                # Events that came meanwhile join this reload, so a burst stays whole.
                more = self._changes.take()
                paths = None if paths is None or more is None else paths | more
        except Exception:  # a reload must never kill the thread that keeps feeds fresh
            log.exception("reload failed; the previous snapshot stays published")
            self._changes.give_back(paths)
        if paths is None:  # the cost of a full scan spaces the periodic re-scans
            cost = now() - started - waited
            self._rescan_every = min(
                self.rescan_max, max(self.rescan_min, cost * RESCAN_COST_FACTOR)
            )
