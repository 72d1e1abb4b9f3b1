"""The items folder as a sequence of immutable snapshots.

`Store.reload()` scans the folder (a `stat` per file; only new or changed files are read
and parsed), builds a new `Snapshot` beside the current one and swaps one reference.
`Store.snapshot()` is what a request reads: one attribute read, so a request never sees
half of a reload. The clock is a parameter, so scheduled items are testable.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from feedsvc import config, faults, feeds, scanning
from feedsvc.bodies import Bodies
from feedsvc.cache import Cache
from feedsvc.config import Settings
from feedsvc.index import Index
from feedsvc.loading import Loader, Progress, Seen
from feedsvc.model import Intro, Problem, Snapshot
from feedsvc.scanning import Entry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

#: Seconds before the cache's pages were read that a forked worker reads them again from.
RECALL_MARGIN = 60.0


def system_clock() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reload builds its objects.

    A first load makes millions of objects (items, dates, tuples), none in a cycle, and
    the collector would walk the growing heap again and again. Reloads hold the store's
    lock, so pauses never nest; other threads' garbage is collected once the reload is
    done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclasses.dataclass(frozen=True, slots=True)
class _Look:
    """The result of looking at the folder (or some files of it) before a reload."""

    entries: list[Entry]  # every file looked at
    changed: list[Entry]  # new, or size or mtime differ
    removed: set[str]
    problems: dict[str, Problem]  # about names (links out, stray files), by path
    folders: tuple[str, ...]  # the category folders
    anything: bool  # whether a reload would change anything


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadFailure:
    """A reload that failed as a whole (a fault outside any one file: a bug)."""

    since: datetime  # the first of the failures in a row
    at: datetime  # the latest
    message: str


def _digest(seen: Seen | None) -> str | None:
    """The digest of the bytes a file's item or introduction was read from, if any."""
    if seen is None:
        return None
    source = seen.parsed.item.source if seen.parsed.item else seen.intro and seen.intro.source
    return source.digest if source else None


class Store:
    """Holds the current snapshot of one items folder and rebuilds it on demand."""

    def __init__(self, settings: Settings, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.root = settings.items_dir
        self.clock = clock
        self.reloads = 0
        #: The latest reload that failed as a whole, until one succeeds (for /healthz).
        self.failure: ReloadFailure | None = None
        self.cache = Cache(settings.cache_dir, settings)
        self.loader = Loader(settings, self.cache)
        self.bodies = Bodies(self.root, settings, self.cache, self.report, self.loader.last_good)
        self._folders: tuple[str, ...] = ()
        self._scan_problems: dict[str, Problem] = {}
        self._gone_since: dict[str, float] = {}  # path -> when a look first missed it
        #: Problems found while rendering a file's body, by path (the barrier's, later).
        self._render_problems: dict[str, Problem] = {}
        self._gathered: list[Problem] | None = None  # while render_bodies reports
        self._reload_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._index = Index(settings)
        #: When the index took in the pages earlier processes published (`_new_pages`),
        #: less a margin; None until its first load.
        self._recalled_at: float | None = None
        self._file_problems: dict[str, tuple[Problem, ...]] = {}
        self._intros: dict[str, Intro] = {}  # path -> intro

    # -- forking (a preloading server loads once, then forks its workers) ----------------

    def before_fork(self) -> None:
        """No reload may be half done in the copy, and no SQLite connection may cross."""
        self._reload_lock.acquire()
        self.cache.close()

    def after_fork(self, child: bool) -> None:
        self.bodies.after_fork(child)
        # A worker forked later than the others learns the pages they saw go meanwhile.
        if child and self._recalled_at is not None:
            noted = self.cache.published_pages(since=self._recalled_at)
            if self._index.recall(noted) and self._snapshot is not None:
                self._snapshot = self._build()
        self._reload_lock.release()

    @property
    def parse_count(self) -> int:
        """Files parsed since start: a reload reuses unchanged ones."""
        return self.loader.parse_count

    def current(self) -> Snapshot | None:
        """The snapshot published now, without a look at the clock (None before a load)."""
        return self._snapshot

    # -- reading -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current snapshot, rebuilt first if a scheduled item or a week has come due.

        A request never waits for a reload: while one runs (it builds with the clock as it
        stands, so it publishes what came due too), the current snapshot answers.
        """
        current = self._snapshot
        if current is None:
            return self.reload()
        if current.changes_at is None or self.clock() < current.changes_at:
            return current
        if not self._reload_lock.acquire(blocking=False):
            return current
        try:
            latest = self._snapshot
            if latest is current or latest is None:  # no other thread rebuilt it meanwhile
                latest = self._snapshot = self._build()
                self._succeeded()
            return latest
        except Exception as error:  # a bug: keep serving what is published
            self._failed(error)
            return current
        finally:
            self._reload_lock.release()

    def reload(self, progress: Progress | None = None) -> Snapshot:
        """Scan the folder, reparse what changed, and swap in a new snapshot.

        `progress(done, total)` is called after each file parsed (for `feedsvc check`).
        If the first load fails as a whole (a bug, not a file: files fail alone), the
        store starts from an empty snapshot that says so, and the next reload tries again.
        """
        snapshot = self.reload_settled(0.0, progress)
        if snapshot is None:  # only a failure gives none without a settle time
            assert self.failure is not None
            problem = Problem(".", None, "error", f"the items could not be loaded: "
                              f"{self.failure.message}; see the server's log")  # fmt: skip
            snapshot = self._snapshot = self._build(Index(self.settings), (problem,))
        return snapshot

    def reload_settled(
        self, settle: float, progress: Progress | None = None, paths: set[str] | None = None
    ) -> Snapshot | None:
        """`reload()`, unless a file changed (or went away) less than `settle` seconds ago:
        then None.

        Such a file may still be being written, or an editor may be saving it by removing
        the old file and writing a new one; waiting for the whole folder to settle
        publishes a burst of files (a `git pull`) whole, in one snapshot, and an editor's
        save as one change. With `paths` (relative, from file events) only those files are
        looked at, not the folder.

        A reload never raises: one that fails as a whole (a bug; a file's faults stay with
        that file) is logged once, leaves the current snapshot published and the store
        ready to load afresh on the next try (`failure` says since when).
        """
        with self._reload_lock:
            try:
                snapshot = self._reload(settle, progress, paths)
            except Exception as error:
                self._failed(error)
                return self._snapshot
            if snapshot is not None:
                self._succeeded()
            return snapshot

    def _reload(
        self, settle: float, progress: Progress | None, paths: set[str] | None
    ) -> Snapshot | None:
        started, cpu_started = time.perf_counter(), time.thread_time()
        look = self._look(paths)
        if settle and not self._settled(look, settle):
            return None
        if self._snapshot is not None and not look.anything:
            return self._snapshot  # nothing changed: keep the snapshot and its memo
        with _collector_paused():
            new_problems, new_names = self._apply(look, progress)
            snapshot = self._snapshot = self._build()
        if look.changed or look.removed or self.reloads == 0:
            log.info(
                "reload: %d files changed, %d removed; %d items published; "
                "%d problems; %.0f ms (%.1f ms CPU)",
                len(look.changed), len(look.removed), len(snapshot.items),
                len(snapshot.problems), (time.perf_counter() - started) * 1000,
                (time.thread_time() - cpu_started) * 1000,
            )  # fmt: skip
        faults.log_problems(new_problems)
        faults.log_each(new_names)
        self.reloads += 1
        return snapshot

    def _settled(self, look: _Look, settle: float) -> bool:
        """Whether no changed file was written, and no file went away, within `settle`
        seconds. A file that went away is timed from the first look that missed it."""
        now = time.time()
        for entry in look.entries:
            self._gone_since.pop(entry.path, None)
        for path in look.removed:
            self._gone_since.setdefault(path, now)
        return not any(now - entry.mtime_ns / 1e9 < settle for entry in look.changed) and not any(
            now - self._gone_since[path] < settle for path in look.removed
        )

    def _failed(self, error: Exception) -> None:
        """Record a reload that failed as a whole; log it once, not on every retry. The
        next reload starts afresh (from the cache): the half-applied state is dropped."""
        now = self.clock()
        message = faults.describe(error)
        if self.failure is None:
            log.error("reload failed (%s); the previous snapshot stays published, and the "
                      "next change or re-scan loads the folder afresh", message,
                      exc_info=error)  # fmt: skip
            self.failure = ReloadFailure(now, now, message)
        else:
            log.debug("reload failed again", exc_info=error)
            self.failure = dataclasses.replace(self.failure, at=now, message=message)
        self.loader.reset()
        self._folders, self._scan_problems = (), {}
        self._index, self._recalled_at = Index(self.settings), None
        self._file_problems, self._intros = {}, {}

    def _succeeded(self) -> None:
        if self.failure is not None:
            log.info("reload works again (it failed from %s)", self.failure.since.isoformat())
            self.failure = None

    def _look(self, paths: set[str] | None) -> _Look:
        """What changed on disk: in the named files, or (None, or a folder-level change)
        in the whole folder. Only `stat`s; nothing is read."""
        targeted = None
        seen = self.loader.seen
        if paths is not None and seen:
            targeted = scanning.look_at(self.root, self._folders, paths)
        if targeted is None:
            listing, folders = scanning.scan(self.root)
            removed = seen.keys() - {entry.path for entry in listing.entries}
            problems = {**listing.problems, **self._unconfigured(folders)}
        else:
            listing, folders = targeted, self._folders
            looked_at = {e.path for e in listing.entries} | listing.gone | listing.problems.keys()
            problems = {p: v for p, v in self._scan_problems.items() if p not in looked_at}
            problems.update(listing.problems)
            removed = (listing.gone | listing.problems.keys()) & seen.keys()
        changed = self.loader.changed(listing.entries)
        other = problems != self._scan_problems or folders != self._folders
        anything = bool(changed or removed or other)
        return _Look(listing.entries, changed, removed, problems, folders, anything)

    def _unconfigured(self, folders: tuple[str, ...]) -> dict[str, Problem]:
        """A warning for each category folder that `categories`, when set, does not list:
        a typo such as `retial` would otherwise publish a category of its own."""
        configured = [slug for slug, _ in self.settings.categories]
        if not configured:
            return {}
        problems = {}
        for folder in folders:
            if folder in configured:
                continue
            close = config.nearest(folder, configured)
            hint = f"did you mean '{close}'? Else add" if close else "add"
            problems[folder] = Problem(
                folder, None, "warning",
                f"category folder not in the configured categories: its items are published "
                f"as '{self.settings.category_name(folder)}'; {hint} it to [categories] in "
                "feedsvc.toml",
            )  # fmt: skip
        return problems

    def _apply(
        self, look: _Look, progress: Progress | None
    ) -> tuple[list[Problem], list[Problem]]:
        """Parse the changed files (or take them from the cache) and update the index;
        the problems that are new: those the files gave, and those with names in the
        folder (a link out, a nested folder, an unconfigured category)."""
        found = self.loader.load(look.changed, progress)
        new_problems = [
            problem
            for path, seen in found.items()
            for problem in seen.parsed.problems
            if problem not in self._file_problems.get(path, ())
        ]
        known = self._problem_set()
        new_names = [p for p in look.problems.values() if p not in known]
        self._index_changes(found, {entry.path for entry in look.changed}, look.removed)
        self.cache.note_pages(self._new_pages())
        self.loader.commit(found, look.removed, look.entries)
        for path in look.removed:
            self._gone_since.pop(path, None)
        self._scan_problems = look.problems
        self._folders = look.folders
        return new_problems, new_names

    def _new_pages(self) -> dict[tuple[str, str], datetime]:
        """The pages placed since the last call that the cache has yet to note.

        After the index's first load it first recalls the pages that earlier processes
        published (a page whose item went while no server ran is gone), and only then:
        read before the items, the 100,000 rows' keys and times would be freed between
        them, a heap a forked worker would keep (about 35 MB at 100,000 items)."""
        placed = self._index.take_placed()
        if self._recalled_at is None:
            # Rows another process writes while these are read may be missed: a forked
            # worker reads again from a little before.
            self._recalled_at = time.time() - RECALL_MARGIN
            noted = self.cache.published_pages()
            self._index.recall(noted)
            placed = {key: when for key, when in placed.items() if noted.get(key) != when}
        return placed

    def _problem_set(self) -> set[Problem]:
        return set(self._scan_problems.values())

    # -- building ------------------------------------------------------------------------

    def _index_changes(self, found: dict[str, Seen], changed: set[str], removed: set[str]) -> None:
        """Tell the index, the problem list and the intros what these files now give
        (`found`: the changed files; the removed give nothing)."""
        self._index.update(
            {
                path: found[path].parsed.item if path in found else None
                for path in changed | removed
            }
        )
        for path in changed | removed:
            result = found.get(path)
            self._file_problems.pop(path, None)
            # A body's problems follow its bytes: a file saved unchanged (or touched) keeps
            # them, though its body may not be rendered again (its documents are unchanged).
            if _digest(result) is None or _digest(result) != _digest(self.loader.seen.get(path)):
                self._render_problems.pop(path, None)
            self._intros.pop(path, None)
            if result is not None and result.parsed.problems:
                self._file_problems[path] = result.parsed.problems
            if result is not None and result.intro is not None:
                self._intros[path] = result.intro

    def _build(self, index: Index | None = None, extra: tuple[Problem, ...] = ()) -> Snapshot:
        """A snapshot of the index at the clock's time: slices, not a pass over every item."""
        now = self.clock()
        intros = {intro.week: intro for intro in self._intros.values()}
        view = (index or self._index).view(now, self._folders, intros)
        problems = [*extra, *self._scan_problems.values(), *view.problems]
        for file_problems in self._file_problems.values():
            problems.extend(file_problems)
        problems.extend(self._render_problems.values())
        return Snapshot(
            now=now,
            items=view.items,
            categories=view.categories,
            weeks=view.weeks,
            current_week=view.current_week,
            problems=tuple(sorted(problems, key=lambda p: (p.path, p.line or 0))),
            file_count=len(self.loader.seen),
            changes_at=view.changes_at,
            pages=view.pages,
            tags=view.tags,
            gone=view.gone,
            feeds=feeds.registry(
                view.items, view.weeks, view.categories, view.tags, self.settings
            ),
        )

    # -- problems found after the load ------------------------------------------------

    def report(self, path: str, problem: Problem) -> None:
        """A problem found after the load (rendering a file's body): logged once, and
        listed until the file changes."""
        if self._render_problems.get(path) != problem:
            self._render_problems[path] = problem
            if self._gathered is not None:
                self._gathered.append(problem)
            else:
                faults.log_problems([problem])

    def render_bodies(self, progress: Progress | None = None) -> None:
        """Render every body the folder's items have (those the cache holds are taken from
        it) and every weekly introduction, so that what only rendering finds (a script the
        sanitiser removed, a body that cannot be read) is reported: `feedsvc check`. A
        server renders a body when a feed or page first shows it."""
        # As published where it is: a slug taken earlier gives the item another page, the
        # base its body's URLs resolve against, and so another body (`bodies.body_key`).
        items = [
            self._index.published(path) or seen.parsed.item
            for path, seen in self.loader.seen.items()
            if seen.parsed.item
        ]
        # Thousands of bodies may each have markup removed: one log line per severity.
        self._gathered = []
        try:
            self.bodies.render_all(items, progress)
            for intro in list(self._intros.values()):
                self.bodies.intro(intro)
        finally:
            gathered, self._gathered = self._gathered, None
        faults.log_summary(f"rendering {len(items):,} bodies", gathered)

    def problems(self, snapshot: Snapshot) -> tuple[Problem, ...]:
        """The snapshot's problems and those found since it was built."""
        known = set(snapshot.problems)
        later = [p for p in list(self._render_problems.values()) if p not in known]
        return (*snapshot.problems, *later) if later else snapshot.problems
