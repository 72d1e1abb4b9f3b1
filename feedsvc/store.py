"""The items folder as a sequence of immutable snapshots.

`Store.reload()` scans the folder (a `stat` per file; only new or changed files are read
and parsed), builds a new `Snapshot` beside the current one and swaps one reference.
`Store.snapshot()` is what a request reads: one attribute read, so a request never sees
half of a reload. The clock is a parameter, so scheduled items are testable.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import logging
import os
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from feedsvc import faults, itemfile, parallel, scanning
from feedsvc.cache import Cache, decode, encode
from feedsvc.config import Settings
from feedsvc.index import Index
from feedsvc.model import (
    Content,
    FeedKey,
    Intro,
    Item,
    Memo,
    ParsedFile,
    Problem,
    Snapshot,
    Stream,
)
from feedsvc.scanning import Entry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
CONTENT_CACHE_SIZE = 4096
SPILL_BYTES = 8 * 1024 * 1024  # a rendered document larger than this stays on disk


def system_clock() -> datetime:
    return datetime.now(UTC)


# _Seen is made once per file per scan (100,000 at a time): a tuple, whose construction
# costs a fraction of a frozen dataclass's.


class _Seen(NamedTuple):
    """A file as last scanned: its stat key and what parsing it gave."""

    size: int
    mtime_ns: int
    parsed: ParsedFile
    intro: Intro | None = None


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


class Store:
    """Holds the current snapshot of one items folder and rebuilds it on demand."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = system_clock,
        *,
        refresh_off_requests: bool = False,
    ) -> None:
        """With `refresh_off_requests` (a server's store), a document a change made out of
        date is rendered again by a thread of the store, and a request that would wait
        for it longer than REFRESH_PATIENCE gets the previous one; otherwise the first
        request for it renders it."""
        self.settings = settings
        self.root = settings.items_dir
        self.clock = clock
        self.parse_count = 0  # files parsed since start: a reload reuses unchanged ones
        self.reloads = 0
        #: The latest reload that failed as a whole, until one succeeds (for /healthz).
        self.failure: ReloadFailure | None = None
        self._seen: dict[str, _Seen] = {}
        self._folders: tuple[str, ...] = ()
        self._scan_problems: dict[str, Problem] = {}
        self._gone_since: dict[str, float] = {}  # path -> when a look first missed it
        #: Items served from their last good version (their file is broken now), by path.
        self._last_good: set[str] = set()
        #: Problems found while rendering a file's body, by path (the barrier's, later).
        self._render_problems: dict[str, Problem] = {}
        self._contents: OrderedDict[tuple[str, str], Content] = OrderedDict()
        self._held: dict[tuple[str, str], Content] = {}  # bodies a start-up render needs
        self._reload_lock = threading.Lock()
        self._content_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._index = Index(settings)
        self._file_problems: dict[str, tuple[Problem, ...]] = {}
        self._intros: dict[str, Intro] = {}  # path -> intro
        self.cache = Cache(settings.cache_dir, settings)
        self._parsed_now: list[tuple[str, int, int, str]] = []  # cache rows to write
        self._stale_reads = 0  # bodies read from a file newer than its scanned version
        self._documents = Memo(max_bytes=64 * 1024 * 1024)  # rendered feeds by signature
        self.render_count = 0  # feed pages actually rendered (not found by signature)
        self._refresher = _Refresher(self) if refresh_off_requests else None

    # -- forking (a preloading server loads once, then forks its workers) ----------------

    def before_fork(self) -> None:
        """No reload or render may be half done in the copy, and no SQLite connection may
        cross."""
        self._reload_lock.acquire()
        if self._refresher is not None:
            self._refresher.busy.acquire()
        self.cache.close()

    def after_fork(self, child: bool) -> None:
        if child:  # a lock another thread of the parent held would stay held here
            self._content_lock = threading.Lock()
        if self._refresher is not None:
            self._refresher.after_fork(child)
        self._reload_lock.release()

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
            new_problems = self._apply(look, progress)
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
        self._seen, self._folders, self._scan_problems = {}, (), {}
        self._index = Index(self.settings)
        self._file_problems, self._intros = {}, {}

    def _succeeded(self) -> None:
        if self.failure is not None:
            log.info("reload works again (it failed from %s)", self.failure.since.isoformat())
            self.failure = None

    def _look(self, paths: set[str] | None) -> _Look:
        """What changed on disk: in the named files, or (None, or a folder-level change)
        in the whole folder. Only `stat`s; nothing is read."""
        targeted = None
        if paths is not None and self._seen:
            targeted = scanning.look_at(self.root, self._folders, paths)
        if targeted is None:
            listing, folders = scanning.scan(self.root)
            removed = self._seen.keys() - {entry.path for entry in listing.entries}
            problems = listing.problems
        else:
            listing, folders = targeted, self._folders
            looked_at = {e.path for e in listing.entries} | listing.gone | listing.problems.keys()
            problems = {p: v for p, v in self._scan_problems.items() if p not in looked_at}
            problems.update(listing.problems)
            removed = (listing.gone | listing.problems.keys()) & self._seen.keys()
        changed = [
            entry
            for entry in listing.entries
            if (old := self._seen.get(entry.path)) is None
            or (old.size, old.mtime_ns) != (entry.size, entry.mtime_ns)
        ]
        other = problems != self._scan_problems or folders != self._folders
        anything = bool(changed or removed or other)
        return _Look(listing.entries, changed, removed, problems, folders, anything)

    def _apply(self, look: _Look, progress: Progress | None) -> list[Problem]:
        """Parse the changed files (or take them from the cache) and update the index;
        the problems that are new."""
        first = not self._seen
        if first:
            self.cache.preload()
        # What the changed files give now. `_seen` is updated in place once the index
        # has them: a copy of it per reload was 100,000 entries for one new file, and a
        # young container that large costs the next garbage collection as much again.
        found: dict[str, _Seen] = {}
        to_parse = []
        for entry in look.changed:
            cached = self.cache.parsed(entry.path, entry.size, entry.mtime_ns)
            if cached is None:
                to_parse.append(entry)
            else:
                found[entry.path] = self._parsed(entry, _Parsed(*cached, True, None), fresh=False)
        # The first load of a large folder is spread over the cores; a reload is a few files.
        parse = partial(_read_and_parse, self.settings, self.cache.enabled)
        results = parallel.map_in_processes(parse, to_parse, progress)
        for entry, result in zip(to_parse, results, strict=True):
            found[entry.path] = self._parsed(entry, result)
        new_problems = [
            problem
            for path, seen in found.items()
            for problem in seen.parsed.problems
            if problem not in self._file_problems.get(path, ())
        ]
        new_problems += [p for p in look.problems.values() if p not in self._problem_set()]
        self._index_changes(found, {entry.path for entry in look.changed}, look.removed)
        self.cache.store_parsed(self._parsed_now)
        self._parsed_now = []
        if first:
            self.cache.forget({entry.path for entry in look.entries})
            self._seen = found
        else:
            for path in look.removed:
                del self._seen[path]
                self._last_good.discard(path)
            self._seen.update(found)
        for path in look.removed:
            self._gone_since.pop(path, None)
        self._scan_problems = look.problems
        self._folders = look.folders
        return new_problems

    def _problem_set(self) -> set[Problem]:
        return set(self._scan_problems.values())

    def _parsed(self, entry: Entry, result: _Parsed, *, fresh: bool = True) -> _Seen:
        """Record what one file gave (parsed now if `fresh`, else from the cache): keep
        its last good version, and the cache row to write."""
        parsed, intro, row = result.parsed, result.intro, result.row
        if fresh:
            self.parse_count += 1
        if entry.kind == "item" and parsed.item is None:
            last_good = self._last_good_item(entry.path)
            if last_good is not None:
                # A typo must not make a published item vanish from readers' feeds, not
                # even after a restart: the cache's row for the file carries it on.
                note = Problem(
                    entry.path, None, "warning",
                    f"served from its last good version ({last_good.title!r}) until the "
                    "errors are fixed",
                )  # fmt: skip
                parsed = ParsedFile(last_good, (*parsed.problems, note))
                row = _encoded(parsed, intro) if self.cache.enabled and result.read else None
        item = parsed.item
        # An item read from another version of its file than the one there now is a last
        # good version standing in: its body cannot be read back from the file.
        if item is not None and (item.source.size, item.source.mtime_ns) != entry[3:]:
            self._last_good.add(entry.path)
        else:
            self._last_good.discard(entry.path)
        if row is not None:
            self._parsed_now.append((entry.path, entry.size, entry.mtime_ns, row))
        # A file that could not be read is looked at again on every scan: making it
        # readable (chmod) changes no size or mtime.
        mtime_ns = entry.mtime_ns if result.read else -1
        return _Seen(entry.size, mtime_ns, parsed, intro)

    def _last_good_item(self, path: str) -> Item | None:
        """The item the file at `path` gave last time it was good: from this process's
        memory, else from the cache (what it read before a restart)."""
        old = self._seen.get(path)
        if old is not None:
            return old.parsed.item
        return self.cache.stored_item(path)

    # -- building ------------------------------------------------------------------------

    def _index_changes(
        self, found: dict[str, _Seen], changed: set[str], removed: set[str]
    ) -> None:
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
            file_count=len(self._seen),
            changes_at=view.changes_at,
            content_of=self.content_of,
            document_of=self.document_of,
            has_document=self.has_document,
            bodies=self.bodies,
            intro_of=self.intro_of,
            pages=view.pages,
            stale=self._carried_over(),
            refresh=self._refresher.ask if self._refresher is not None else None,
            report=self.report,
        )

    def _carried_over(self) -> dict[Any, Any]:
        """The current snapshot's first pages of feeds (and those it still carries), for the
        next one to answer with while its own are rendered.

        First pages only: they are what aggregators poll, a few per feed, whereas a
        crawler's walk through later pages, carried from snapshot to snapshot outside the
        memo's budget, would grow without bound.
        """
        current = self._snapshot
        if self._refresher is None or current is None:
            return {}
        stale = dict(current.stale)
        for key, document in current.memo.items():
            if isinstance(key, FeedKey) and key.page == 1 and document is not None:
                stale[key] = document
        return stale

    def wait_for_refresh(self) -> None:
        """Until the documents requests asked for so far are rendered (for tests)."""
        if self._refresher is not None:
            self._refresher.wait()

    # -- lazy bodies ---------------------------------------------------------------------

    def content_of(self, item: Item) -> Content:
        """An item's rendered body, memoised per file version.

        Never raises: a body that cannot be read or rendered (behind the fault barrier)
        is reported as its file's problem, and the item is shown without it (its title,
        and its summary if the front matter has one).
        """
        key = (item.source.digest, item.path)
        held = self._held.get(key)
        if held is not None:
            return held
        with self._content_lock:
            cached = self._contents.get(key)
            if cached is not None:
                self._contents.move_to_end(key)
                return cached
        content = self.cache.content(item.source.digest, item.path)
        if content is None:
            found = faults.attempt(
                item.source.path, "rendering its body", partial(self._render, item)
            )
            if isinstance(found, Problem):
                self.report(item.source.path, found)
                content = Content("", item.summary or "")
            else:
                content = found
        with self._content_lock:
            self._contents[key] = content
            while len(self._contents) > CONTENT_CACHE_SIZE:
                self._contents.popitem(last=False)
        return content

    def _render(self, item: Item) -> Content:
        data, current = self._read_version(item.source.path, item.source.digest)
        content = itemfile.render_body(item, data, self.settings.base_url)
        # A last good version's own bytes are gone: its body is the one its file gives
        # now, kept under its version for good, so that it stays the same across renders.
        if current or item.source.path in self._last_good:
            self.cache.store_content(item.source.digest, item.path, content)
        else:  # never file a newer body under an older version's digest
            self._stale_reads += 1
        return content

    def report(self, path: str, problem: Problem) -> None:
        """A problem found after the load (rendering a file's body): logged once, and
        listed until the file changes."""
        if self._render_problems.get(path) != problem:
            self._render_problems[path] = problem
            faults.log_problems([problem])

    def problems(self, snapshot: Snapshot) -> tuple[Problem, ...]:
        """The snapshot's problems and those found since it was built."""
        known = set(snapshot.problems)
        later = [p for p in list(self._render_problems.values()) if p not in known]
        return (*snapshot.problems, *later) if later else snapshot.problems

    @contextmanager
    def bodies(self, items: Iterable[Item]) -> Iterator[None]:
        """Have these items' bodies at hand while the block runs: from memory, from the
        cache, or rendered now, all at once and spread over the cores when there are many
        (start-up renders every body the first pages of the feeds show)."""
        wanted: dict[tuple[str, str], Item] = {}
        for item in items:
            key = (item.source.digest, item.path)
            if key not in self._contents and key not in wanted:
                wanted[key] = item
        held: dict[tuple[str, str], Content] = {}
        missing = []
        for key, item in wanted.items():
            content = self.cache.content(*key)
            if content is None:
                missing.append(item)
            else:
                held[key] = content
        render = partial(_render_scanned, self.root, self.settings.base_url)
        rendered = parallel.map_in_processes(render, missing)
        fresh = [(i, c) for i, c in zip(missing, rendered, strict=True) if c is not None]
        self.cache.store_contents([(i.source.digest, i.path, c) for i, c in fresh])
        held.update(((i.source.digest, i.path), c) for i, c in fresh)
        self._held = held
        try:
            yield
        finally:
            self._held = {}

    def document_of(
        self,
        signature: str,
        render: Callable[[], tuple[bytes, bytes]],
        finish: Callable[[bytes, bytes, Callable[[bool], Stream] | None], Any],
        persist: bool = True,
    ) -> Any:
        """A document by signature: from memory (one a change did not touch, carried over
        from the previous snapshot), or `finish(body, gzipped, load)` with the bytes from
        the persistent cache, or with `render()`'s, stored there if `persist`. A document
        to persist is claimed first (`Cache.claim`), so that the workers render it once.

        A document larger than SPILL_BYTES keeps its bytes in the cache only: `load`
        streams them from there for each 200 (re-rendering if the cache lost them), so a
        dense weekly feed is never whole in a worker's memory, not even while it is sent.
        """
        document = self._documents.get(signature)
        if document is not None:
            return document
        found = self.cache.document(signature) if persist else None
        if found is None and persist:  # another worker may be rendering it right now
            found = self.cache.claim(signature)
        stored = found is not None
        if found is None:
            stale_before = self._stale_reads
            try:
                found = render()
                self.render_count += 1
                if self._stale_reads != stale_before:  # a body newer than its scanned version
                    return finish(*found, None)
                stored = persist and self.cache.store_document(signature, *found)
            finally:
                if persist:
                    self.cache.release(signature)
        load = None
        if stored and len(found[0]) + len(found[1]) > SPILL_BYTES:

            def load(gzipped: bool) -> Stream:
                stream = self.cache.document_stream(signature, gzipped=gzipped)
                if stream is not None:
                    return stream
                again = render()[gzipped]
                return len(again), (again,)

        document = finish(*found, load)
        self._documents.put(signature, document)
        return document

    def has_document(self, signature: str) -> bool:
        """Whether `document_of` would find this document without rendering it."""
        return signature in self._documents or self.cache.has_document(signature)

    def intro_of(self, intro: Intro) -> str:
        """A weekly introduction's HTML; "" (the roundup writes its own) if it fails."""

        def render() -> str:
            data, _ = self._read_version(intro.source.path, intro.source.digest)
            base = f"{self.settings.base_url}/weekly/{intro.week}"
            return itemfile.render_markup(itemfile.body_of(data), "markdown", base)

        found = faults.attempt(intro.source.path, "rendering it", render)
        if isinstance(found, Problem):
            self.report(intro.source.path, found)
            return ""
        return found

    def _read_version(self, path: str, digest: str) -> tuple[bytes, bool]:
        """A file's bytes, and whether they are still the version scanned (`digest`).

        If the file changed since the scan, its newer bytes: a reload follows.
        """
        data = read_file(os.path.join(self.root, path))
        if itemfile.digest(data) != digest:
            if path not in self._last_good:
                log.info("%s changed since the last scan; rendering its newer body", path)
            return data, False
        return data, True


#: Seconds a request waits for a feed a change made out of date before it is answered
#: with the previous bytes: a feed of everything renders well within it, so every worker
#: serves a new item as soon as it has reloaded; a dense weekly feed (over a second at
#: 100,000 items) does not hold a sync worker's requests for the whole render.
REFRESH_PATIENCE = 0.25


class _Refresher:
    """A store's thread that renders the documents requests found out of date, one at a
    time, newest snapshot only; a request waits for its document at most
    REFRESH_PATIENCE, then is answered from `Snapshot.stale`. The thread lives while
    there is work: an idle store holds no thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._reset()

    def _reset(self) -> None:
        self.jobs: deque[tuple[Snapshot, Any, Callable[[], object], threading.Event]] = deque()
        # key -> the snapshot it is rendered for, and set when that is done
        self.asked: dict[Any, tuple[Snapshot, threading.Event]] = {}
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)  # notified when the thread ends
        self.busy = threading.Lock()  # held while a job runs (and across a fork)
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def after_fork(self, child: bool) -> None:
        if child:  # the parent's thread stays behind: requests here ask again
            self._reset()
        else:
            self.busy.release()

    def ask(self, snapshot: Snapshot, key: Any, job: Callable[[], object]) -> bool:
        """Have `job` render `key` for `snapshot`; whether it is done within the patience."""
        if self.pid != os.getpid():  # forked without the hooks: the thread stayed behind
            self._reset()
        with self.lock:
            asked = self.asked.get(key)
            if asked is None or asked[0] is not snapshot:  # not on its way yet
                asked = self.asked[key] = (snapshot, threading.Event())
                self.jobs.append((snapshot, key, job, asked[1]))
                if self.thread is None:
                    self.thread = threading.Thread(
                        target=self._run, name="feedsvc-render", daemon=True
                    )
                    self.thread.start()
        return asked[1].wait(REFRESH_PATIENCE)

    def wait(self) -> None:
        with self.lock:
            thread = self.thread
            while self.thread is not None:
                self.idle.wait()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            with self.lock:
                if not self.jobs:
                    self.thread = None
                    self.idle.notify_all()
                    return
                snapshot, key, job, done = self.jobs.popleft()
            try:
                with self.busy:
                    # A newer snapshot's requests ask for their own document.
                    if snapshot is self.store._snapshot:
                        job()
            except Exception:  # a failed render must not stop the others
                log.exception("rendering %s failed; requests render it themselves", key)
                snapshot.stale.pop(key, None)
            finally:
                with self.lock:
                    asked = self.asked.get(key)
                    if asked is not None and asked[0] is snapshot:
                        del self.asked[key]
                done.set()  # also when a newer snapshot asked meanwhile


def read_file(full: str, limit: int = itemfile.MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, refusing one over `limit` bytes before reading it.

    Opened without blocking and checked after opening: a name that became a FIFO since
    the scan would otherwise block the reading thread for good, and the size is the
    file's own, not what was read of it.
    """
    descriptor = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.ENXIO, "not a regular file")
        if info.st_size > limit:
            raise TooLarge(info.st_size, limit)
        data = os.read(descriptor, info.st_size + 1)
        while len(data) > info.st_size and len(data) <= limit:  # it grew since the fstat
            more = os.read(descriptor, limit + 1 - len(data))
            if not more:
                break
            data += more
        if len(data) > limit:
            raise TooLarge(len(data), limit)
        return data
    finally:
        os.close(descriptor)


class TooLarge(ValueError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"file is {size:,} bytes, over the limit of {limit:,}")


def _render_scanned(root: Path, base_url: str, item: Item) -> Content | None:
    """An item's body, rendered; None if its file changed since the scan, or anything
    failed (`content_of` then deals with it, and reports it). Pure but for the read, for
    helper processes (`parallel`)."""
    try:
        data = read_file(os.path.join(root, item.source.path))
        if itemfile.digest(data) != item.source.digest:
            return None
        return itemfile.render_body(item, data, base_url)
    except Exception:  # the barrier is content_of's, which does it again in the open
        return None


class _Parsed(NamedTuple):
    parsed: ParsedFile
    intro: Intro | None
    read: bool  # False: the file could not be read (nothing to cache)
    row: str | None  # the cache's row for it, when cached
    zone: str = "UTC"  # the site's time zone, which `decode` needs

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """A helper process sends the cache's JSON row, not the objects: encoding and
        decoding it cost a third of pickling and unpickling the `Item` (a slots
        dataclass, pickled field by field in Python), and the row is made anyway."""
        row = self.row if self.row is not None else _encoded(self.parsed, self.intro)
        if row is None:  # it cannot be encoded: as objects, then
            return _Parsed, (self.parsed, self.intro, self.read, None, self.zone)
        return _from_row, (row, self.read, self.row is not None, self.zone)


def _from_row(row: str, read: bool, keep_row: bool, zone: str) -> _Parsed:
    parsed, intro = decode(row, ZoneInfo(zone))
    return _Parsed(parsed, intro, read, row if keep_row else None, zone)


def _encoded(parsed: ParsedFile, intro: Intro | None) -> str | None:
    """The cache row for a parse result, or None if it cannot be made (then the file is
    parsed again next time rather than cached)."""
    found = faults.attempt("", "encoding its cache row", lambda: encode(parsed, intro))
    return None if isinstance(found, Problem) else found


def _read_and_parse(settings: Settings, cached: bool, entry: Entry) -> _Parsed:
    """Read and parse one file behind the fault barrier, and encode its cache row
    (`cached`) while at it. Never raises: helper processes run it (`parallel`), and one
    file must not fail the others of its batch."""
    try:
        data = read_file(entry.full)
    except TooLarge as error:  # the file is fine to look at, just too large to publish
        problem = Problem(entry.path, None, "error", str(error))
        return _Parsed(ParsedFile(None, (problem,)), None, True, None, settings.timezone)
    except Exception as error:
        problem = faults.problem(entry.path, "reading it", error)
        return _Parsed(ParsedFile(None, (problem,)), None, False, None, settings.timezone)

    def parse() -> tuple[ParsedFile, Intro | None]:
        if entry.kind == "intro":
            intro, problems = itemfile.parse_intro(entry.path, data, entry.mtime_ns)
            return ParsedFile(None, tuple(problems)), intro
        return itemfile.parse_item(entry.path, data, settings, entry.mtime_ns), None

    found = faults.attempt(entry.path, "parsing it", parse)
    if isinstance(found, Problem):
        return _Parsed(ParsedFile(None, (found,)), None, True, None, settings.timezone)
    parsed, intro = found
    row = _encoded(parsed, intro) if cached else None
    return _Parsed(parsed, intro, True, row, settings.timezone)
