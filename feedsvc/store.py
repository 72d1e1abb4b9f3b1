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
import os
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

from feedsvc import itemfile, parallel
from feedsvc.cache import Cache, decode, encode
from feedsvc.config import Settings
from feedsvc.index import Index
from feedsvc.model import (
    RESERVED_NAMES,
    Content,
    FeedKey,
    Intro,
    Item,
    Memo,
    ParsedFile,
    Problem,
    Snapshot,
    Stream,
    is_valid_name,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]
INTRO_FOLDER = "_weekly"
CONTENT_CACHE_SIZE = 4096
SPILL_BYTES = 8 * 1024 * 1024  # a rendered document larger than this stays on disk


def system_clock() -> datetime:
    return datetime.now(UTC)


# _Seen and _Entry are made once per file per scan (100,000 at a time): tuples, whose
# construction costs a fraction of a frozen dataclass's.


class _Seen(NamedTuple):
    """A file as last scanned: its stat key and what parsing it gave."""

    size: int
    mtime_ns: int
    parsed: ParsedFile
    intro: Intro | None = None


class _Stat(NamedTuple):
    """What a scan keeps of a file's stat: about 140 bytes against an `os.stat_result`'s
    640, and a full scan of 100,000 files holds one per file until the reload is done."""

    size: int
    mtime_ns: int


def _stat(path: str) -> _Stat:
    result = os.stat(path)
    return _Stat(result.st_size, result.st_mtime_ns)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a reload builds its objects.

    A first load makes millions of objects (items, dates, tuples), none in a cycle, and
    the collector would walk the growing heap again and again: 8 of 34 s at 100,000
    items. Reloads hold the store's lock, so pauses never nest; other threads' garbage
    is collected once the reload is done.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Entry(NamedTuple):
    """One directory entry the scan found: an item file, an intro, or a problem."""

    path: str  # relative to the items folder, with "/"
    kind: str  # "item", "intro" or "problem"
    problem: Problem | None = None
    full: str = ""  # the path to open


@dataclasses.dataclass(frozen=True, slots=True)
class _Look:
    """The result of looking at the folder (or some files of it) before a reload."""

    listed: list[tuple[_Entry, _Stat]]
    changed: list[tuple[_Entry, _Stat]]  # new, or size or mtime differ
    removed: set[str]
    problems: tuple[Problem, ...]  # about paths (links out, stray files), sorted
    anything: bool  # whether a reload would change anything


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
        self._seen: dict[str, _Seen] = {}
        self._folders: tuple[str, ...] = ()
        self._scan_problems: tuple[Problem, ...] = ()
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
            return latest
        finally:
            self._reload_lock.release()

    def reload(self, progress: Progress | None = None) -> Snapshot:
        """Scan the folder, reparse what changed, and swap in a new snapshot.

        `progress(done, total)` is called after each file parsed (for `feedsvc check`).
        """
        snapshot = self.reload_settled(0.0, progress)
        assert snapshot is not None  # without a settle time a reload always swaps
        return snapshot

    def reload_settled(
        self, settle: float, progress: Progress | None = None, paths: set[str] | None = None
    ) -> Snapshot | None:
        """`reload()`, unless a file changed less than `settle` seconds ago: then None.

        Such a file may still be being written; waiting for the whole folder to settle
        publishes a burst of files (a `git pull`) whole, in one snapshot. With `paths`
        (relative, from file events) only those files are looked at, not the folder.
        """
        with self._reload_lock:
            started, cpu_started = time.perf_counter(), time.thread_time()
            look = self._look(paths)
            if settle and any(time.time() - s.mtime_ns / 1e9 < settle for _, s in look.changed):
                return None
            if self._snapshot is not None and not look.anything:
                return self._snapshot  # nothing changed: keep the snapshot and its memo
            with _collector_paused():
                self._apply(look, progress)
                snapshot = self._snapshot = self._build()
            if look.changed or look.removed or self.reloads == 0:
                log.info(
                    "reload: %d files changed, %d removed; %d items published; "
                    "%d problems; %.0f ms (%.1f ms CPU)",
                    len(look.changed), len(look.removed), len(snapshot.items),
                    len(snapshot.problems), (time.perf_counter() - started) * 1000,
                    (time.thread_time() - cpu_started) * 1000,
                )  # fmt: skip
            self.reloads += 1
            return snapshot

    def _look(self, paths: set[str] | None) -> _Look:
        """What changed on disk: in the named files, or (None, or a folder-level change)
        in the whole folder. Only `stat`s; nothing is read."""
        folders_before = self._folders
        targeted = self._list_paths(paths) if paths is not None and self._seen else None
        if targeted is None:
            listed, problems = self._list()
            removed = self._seen.keys() - {entry.path for entry, _ in listed}
        else:
            listed, problems, gone = targeted
            looked_at = {entry.path for entry, _ in listed} | gone | {p.path for p in problems}
            problems += [p for p in self._scan_problems if p.path not in looked_at]
            removed = (gone | {p.path for p in problems}) & self._seen.keys()
        changed = [
            (entry, stat)
            for entry, stat in listed
            if (old := self._seen.get(entry.path)) is None or (old.size, old.mtime_ns) != stat
        ]
        problems.sort(key=lambda p: (p.path, p.line or 0))
        other = problems != [*self._scan_problems] or folders_before != self._folders
        return _Look(listed, changed, removed, tuple(problems), bool(changed or removed or other))

    def _apply(self, look: _Look, progress: Progress | None) -> None:
        """Parse the changed files (or take them from the cache) and update the index."""
        first = not self._seen
        if first:
            self.cache.preload()
        # What the changed files give now. `_seen` is updated in place once the index
        # has them: a copy of it per reload was 100,000 entries for one new file, and a
        # young container that large costs the next garbage collection as much again.
        found: dict[str, _Seen] = {}
        to_parse = []
        for entry, stat in look.changed:
            cached = self.cache.parsed(entry.path, *stat)
            if cached is None:
                to_parse.append((entry, *stat))
            else:
                found[entry.path] = _Seen(*stat, *cached)
        # The first load of a large folder is spread over the cores; a reload is a few files.
        parse = partial(_read_and_parse, self.settings, self.cache.enabled)
        results = parallel.map_in_processes(parse, to_parse, progress)
        for (entry, size, mtime_ns), result in zip(to_parse, results, strict=True):
            found[entry.path] = self._parsed(entry, size, mtime_ns, result)
        self._index_changes(found, {entry.path for entry, _ in look.changed}, look.removed)
        self.cache.store_parsed(self._parsed_now)
        self._parsed_now = []
        if first:
            self.cache.forget({entry.path for entry, _ in look.listed})
            self._seen = found
        else:
            for path in look.removed:
                del self._seen[path]
            self._seen.update(found)
        self._scan_problems = look.problems

    # -- scanning ------------------------------------------------------------------------

    def _list(self) -> tuple[list[tuple[_Entry, _Stat]], list[Problem]]:
        """Every file to read, with its stat (cheap: no file is opened), and path problems."""
        listed, problems = [], []
        for entry in self._walk():
            if entry.problem is not None:
                problems.append(entry.problem)
                continue
            try:
                listed.append((entry, _stat(entry.full)))
            except OSError:
                continue  # deleted between listing and stat
        return listed, problems

    def _parsed(self, entry: _Entry, size: int, mtime_ns: int, result: _Parsed) -> _Seen:
        """Record what parsing one file gave: keep its last good version, log, cache."""
        parsed, intro, row = result.parsed, result.intro, result.row
        if not result.read:
            return _Seen(size, mtime_ns, parsed)
        self.parse_count += 1
        last_good = old.parsed.item if (old := self._seen.get(entry.path)) is not None else None
        if entry.kind == "item" and parsed.item is None and last_good is not None:
            # A typo must not make a published item vanish from readers' feeds.
            note = Problem(entry.path, None, "warning", "the last good version stays published")
            parsed = ParsedFile(last_good, (*parsed.problems, note))
            row = encode(parsed, intro) if self.cache.enabled else None
        for problem in parsed.problems:
            log.warning("%s", problem)
        if row is not None:
            self._parsed_now.append((entry.path, size, mtime_ns, row))
        return _Seen(size, mtime_ns, parsed, intro)

    def _walk(self) -> Iterator[_Entry]:
        """Every file that is meant to be read, and a problem for each that must not be."""
        root = self.root.resolve()
        folders: list[str] = []
        try:
            top = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError as error:
            message = f"cannot read the items folder: {error.strerror}"
            yield _Entry(".", "problem", Problem(str(self.root), None, "error", message))
            self._folders = ()
            return
        for folder in top:
            if folder.name == INTRO_FOLDER and folder.is_dir(follow_symlinks=False):
                yield from self._walk_folder(root, folder, "intro")
            elif itemfile.ignored(folder.name):
                continue
            elif not folder.is_dir():
                message = "item files go in a category folder: items/<category>/<file>"
                yield _Entry(folder.name, "problem", Problem(folder.name, None, "error", message))
            elif not _inside(root, folder.path):
                yield _Entry(folder.name, "problem", _outside(folder.name))
            else:
                if folder.name not in RESERVED_NAMES and is_valid_name(folder.name):
                    folders.append(folder.name)
                # parse_item reports a bad folder name once for each file in it
                yield from self._walk_folder(root, folder, "item")
        self._folders = tuple(folders)

    def _walk_folder(self, root: Path, folder: os.DirEntry[str], kind: str) -> Iterator[_Entry]:
        try:
            entries = sorted(os.scandir(folder.path), key=lambda e: e.name)
        except OSError as error:
            message = f"cannot read the folder: {error.strerror}"
            yield _Entry(folder.name, "problem", Problem(folder.name, None, "error", message))
            return
        for entry in entries:
            found = _classify(root, folder.name, kind, entry.name, entry.path,
                              entry.is_symlink, entry.is_dir, entry.is_file)  # fmt: skip
            if found is not None:
                yield found

    def _list_paths(
        self, paths: set[str]
    ) -> tuple[list[tuple[_Entry, _Stat]], list[Problem], set[str]] | None:
        """`_list` for a few files named by file events; None when only a full scan will do
        (a path outside a known folder, such as a new category)."""
        root = self.root.resolve()
        listed, problems, gone = [], [], set()
        for path in paths:
            folder, _, name = path.partition("/")
            if "/" in name or not name:
                return None
            if folder == INTRO_FOLDER:
                kind = "intro"
            elif folder in self._folders:
                kind = "item"
            else:
                return None
            full = os.path.join(root, folder, name)
            tests = (
                partial(test, full) for test in (os.path.islink, os.path.isdir, os.path.isfile)
            )
            found = _classify(root, folder, kind, name, full, *tests)
            try:
                if found is None:
                    gone.add(path)
                elif found.problem is not None:
                    problems.append(found.problem)
                else:
                    listed.append((found, _stat(full)))
            except OSError:
                gone.add(path)
        return listed, problems, gone

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
            self._intros.pop(path, None)
            if result is not None and result.parsed.problems:
                self._file_problems[path] = result.parsed.problems
            if result is not None and result.intro is not None:
                self._intros[path] = result.intro

    def _build(self) -> Snapshot:
        """A snapshot of the index at the clock's time: slices, not a pass over every item."""
        now = self.clock()
        intros = {intro.week: intro for intro in self._intros.values()}
        view = self._index.view(now, self._folders, intros)
        problems = [*self._scan_problems, *view.problems]
        for file_problems in self._file_problems.values():
            problems.extend(file_problems)
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
        """An item's rendered body, memoised per file version (DESIGN §Cost model)."""
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
            data, current = self._read_version(item.source.path, item.source.digest)
            content = itemfile.render_body(item, data, self.settings.base_url)
            if current:  # never file a newer body under an older version's digest
                self.cache.store_content(item.source.digest, item.path, content)
        with self._content_lock:
            self._contents[key] = content
            while len(self._contents) > CONTENT_CACHE_SIZE:
                self._contents.popitem(last=False)
        return content

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
        data, _ = self._read_version(intro.source.path, intro.source.digest)
        base = f"{self.settings.base_url}/weekly/{intro.week}"
        return itemfile.render_markup(itemfile.body_of(data), "markdown", base)

    def _read_version(self, path: str, digest: str) -> tuple[bytes, bool]:
        """A file's bytes, and whether they are still the version scanned (`digest`).

        If the file changed since the scan, its newer bytes: a reload follows.
        """
        try:
            data = (self.root / path).read_bytes()
        except OSError as error:
            log.warning("%s: cannot read the body: %s", path, error.strerror)
            return b"", False
        if itemfile.digest(data) != digest:
            log.info("%s changed since the last scan; rendering its newer body", path)
            self._stale_reads += 1
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


def _render_scanned(root: Path, base_url: str, item: Item) -> Content | None:
    """An item's body, rendered; None if its file changed since the scan (`content_of`
    then deals with it). Pure but for the read, for helper processes (`parallel`)."""
    try:
        data = (root / item.source.path).read_bytes()
    except OSError:
        return None
    if itemfile.digest(data) != item.source.digest:
        return None
    return itemfile.render_body(item, data, base_url)


class _Parsed(NamedTuple):
    parsed: ParsedFile
    intro: Intro | None
    read: bool  # False: the file could not be read (nothing to cache)
    row: str | None  # the cache's row for it, when cached
    zone: str = "UTC"  # the site's time zone, which `decode` needs

    def __reduce__(self) -> tuple[Callable[..., _Parsed], tuple[Any, ...]]:
        """A helper process sends the cache's JSON row, not the objects: encoding and
        decoding it cost a third of pickling and unpickling the `Item` (a slots
        dataclass, pickled field by field in Python), and the row is made anyway."""
        row = self.row if self.row is not None else encode(self.parsed, self.intro)
        return _from_row, (row, self.read, self.row is not None, self.zone)


def _from_row(row: str, read: bool, keep_row: bool, zone: str) -> _Parsed:
    parsed, intro = decode(row, ZoneInfo(zone))
    return _Parsed(parsed, intro, read, row if keep_row else None, zone)


def _read_and_parse(settings: Settings, cached: bool, task: tuple[_Entry, int, int]) -> _Parsed:
    """Read and parse one file, and encode the cache row (`cached`) while at it.

    Pure but for the read, so that helper processes can run it (`parallel`).
    """
    entry, size, mtime_ns = task
    try:
        with open(entry.full, "rb") as handle:
            # Enough to see the file is too large; a 1 MiB buffer per read is not free.
            data = handle.read(min(size, itemfile.MAX_FILE_BYTES) + 1)
    except OSError as error:
        problem = Problem(entry.path, None, "error", f"cannot read: {error.strerror}")
        return _Parsed(ParsedFile(None, (problem,)), None, False, None, settings.timezone)
    intro = None
    if entry.kind == "intro":
        intro, problems = itemfile.parse_intro(entry.path, data, mtime_ns)
        parsed = ParsedFile(None, tuple(problems))
    else:
        parsed = itemfile.parse_item(entry.path, data, settings, mtime_ns)
    row = encode(parsed, intro) if cached else None
    return _Parsed(parsed, intro, True, row, settings.timezone)


def _classify(
    root: Path,
    folder: str,
    kind: str,
    name: str,
    full: str,
    is_symlink: Callable[[], bool],
    is_dir: Callable[[], bool],
    is_file: Callable[[], bool],
) -> _Entry | None:
    """What one name in a category (or the intro) folder is: a file to read, a problem, or
    nothing (an editor leftover, or gone). The scan and file events share this rule."""
    path = f"{folder}/{name}"
    if itemfile.ignored(name):
        return None
    # Only a link can lead out of a folder that is itself inside (checked by the scan).
    if is_symlink() and not _inside(root, full):
        return _Entry(path, "problem", _outside(path))
    if is_dir():
        message = "folders inside a category are not read; move its files up"
        return _Entry(path, "problem", Problem(path, None, "warning", message))
    if is_file():
        return _Entry(path, kind, full=full)
    return None


def _inside(root: Path, path: str) -> bool:
    """Whether `path`, with every link followed, is still under `root`."""
    return Path(os.path.realpath(path)).is_relative_to(root)


def _outside(path: str) -> Problem:
    return Problem(path, None, "error", "is a link to outside the items folder; refused")
