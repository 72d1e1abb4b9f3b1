"""Loading files: reading them safely, parsing the changed ones (over the cores for
many), taking unchanged ones from the cache, and keeping each item's last good version.

`Loader.seen` is what every file gave when last looked at, by path. A file whose item
breaks (a typo in its front matter) keeps the item it gave last time it was good (from
memory, else from the cache's row, which survives a restart), with a warning, so that a
typo never unpublishes an item; `last_good(path)` says which items stand in so.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from feedsvc import faults, itemfile, parallel
from feedsvc.cache import Cache, decode, encode
from feedsvc.config import Settings
from feedsvc.model import Intro, Item, ParsedFile, Problem
from feedsvc.scanning import Entry

Progress = Callable[[int, int], None]


# Seen is made once per file per scan (100,000 at a time): a tuple, whose construction
# costs a fraction of a frozen dataclass's.


class Seen(NamedTuple):
    """A file as last looked at: its stat key and what parsing it gave."""

    size: int
    mtime_ns: int
    parsed: ParsedFile
    intro: Intro | None = None


class Loader:
    """What the files of one folder gave, and the parsing of those that changed."""

    def __init__(self, settings: Settings, cache: Cache) -> None:
        self.settings = settings
        self.cache = cache
        self.parse_count = 0  # files parsed since start: a reload reuses unchanged ones
        self.seen: dict[str, Seen] = {}
        #: Items served from their last good version (their file is broken now), by path.
        self._last_good: set[str] = set()
        self._rows: list[tuple[str, int, int, str]] = []  # cache rows to write

    def reset(self) -> None:
        """Forget everything: the next load starts afresh (from the cache)."""
        self.seen = {}

    def last_good(self, path: str) -> bool:
        """Whether the item of the file at `path` is a last good version standing in."""
        return path in self._last_good

    def changed(self, entries: Iterable[Entry]) -> list[Entry]:
        """The entries that are new, or whose size or mtime differ from the last look."""
        seen = self.seen
        return [
            entry
            for entry in entries
            if (old := seen.get(entry.path)) is None
            or (old.size, old.mtime_ns) != (entry.size, entry.mtime_ns)
        ]

    def load(self, changed: list[Entry], progress: Progress | None) -> dict[str, Seen]:
        """What the changed files give now: from the cache, else parsed (spread over the
        cores when there are many); their cache rows are written."""
        if not self.seen:
            self.cache.preload()
        found: dict[str, Seen] = {}
        to_parse = []
        for entry in changed:
            cached = self.cache.parsed(entry.path, entry.size, entry.mtime_ns)
            if cached is None:
                to_parse.append(entry)
            else:
                found[entry.path] = self._record(entry, Parsed(*cached, True, None), fresh=False)
        parse = partial(read_and_parse, self.settings, self.cache.enabled)
        results = parallel.map_in_processes(parse, to_parse, progress)
        for entry, result in zip(to_parse, results, strict=True):
            found[entry.path] = self._record(entry, result)
        self.cache.store_parsed(self._rows)
        self._rows = []
        return found

    def commit(self, found: dict[str, Seen], removed: set[str], present: list[Entry]) -> None:
        """Make `found` (from `load`) and the removals what was seen. A first load
        (nothing seen before) also drops the cache's rows of files no longer there."""
        if not self.seen:
            self.cache.forget({entry.path for entry in present})
            self.seen = found
            return
        for path in removed:
            del self.seen[path]
            self._last_good.discard(path)
        # Updated in place: a copy per reload would be 100,000 entries for one new file,
        # and a young container that large costs the next garbage collection as much again.
        self.seen.update(found)

    def _record(self, entry: Entry, result: Parsed, *, fresh: bool = True) -> Seen:
        """What one file gave (parsed now if `fresh`, else from the cache): keep its last
        good version, and the cache row to write."""
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
                row = encoded(parsed, intro) if self.cache.enabled and result.read else None
        item = parsed.item
        # An item read from another version of its file than the one there now is a last
        # good version standing in: its body cannot be read back from the file.
        if item is not None and (item.source.size, item.source.mtime_ns) != entry[3:]:
            self._last_good.add(entry.path)
        else:
            self._last_good.discard(entry.path)
        if row is not None:
            self._rows.append((entry.path, entry.size, entry.mtime_ns, row))
        # A file that could not be read is looked at again on every look: making it
        # readable (chmod) changes no size or mtime.
        mtime_ns = entry.mtime_ns if result.read else -1
        return Seen(entry.size, mtime_ns, parsed, intro)

    def _last_good_item(self, path: str) -> Item | None:
        """The item the file at `path` gave last time it was good: from this process's
        memory, else from the cache (what it read before a restart)."""
        old = self.seen.get(path)
        if old is not None:
            return old.parsed.item
        return self.cache.stored_item(path)


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
            # It grew while being read (a copy still being written), and the read stopped
            # one byte past the limit: the size to report is the file's, as it is now.
            size = os.fstat(descriptor).st_size
            raise TooLarge(size, limit) if size >= len(data) else TooLarge(limit, limit)
        return data
    finally:
        os.close(descriptor)


class TooLarge(ValueError):
    """A file over the limit, by its size; at the limit itself, one whose size the file
    system does not tell (it reads larger than its stat says)."""

    def __init__(self, size: int, limit: int) -> None:
        if size > limit:
            super().__init__(f"file is {size:,} bytes, over the limit of {limit:,}")
        else:
            super().__init__(f"file is over the limit of {limit:,} bytes")


class Parsed(NamedTuple):
    parsed: ParsedFile
    intro: Intro | None
    read: bool  # False: the file could not be read (nothing to cache)
    row: str | None  # the cache's row for it, when cached
    zone: str = "UTC"  # the site's time zone, which `decode` needs

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """A helper process sends the cache's JSON row, not the objects: encoding and
        decoding it cost a third of pickling and unpickling the `Item` (a slots
        dataclass, pickled field by field in Python), and the row is made anyway."""
        row = self.row if self.row is not None else encoded(self.parsed, self.intro)
        if row is None:  # it cannot be encoded: as objects, then
            return Parsed, (self.parsed, self.intro, self.read, None, self.zone)
        return _from_row, (row, self.read, self.row is not None, self.zone)


def _from_row(row: str, read: bool, keep_row: bool, zone: str) -> Parsed:
    parsed, intro = decode(row, ZoneInfo(zone))
    return Parsed(parsed, intro, read, row if keep_row else None, zone)


def encoded(parsed: ParsedFile, intro: Intro | None) -> str | None:
    """The cache row for a parse result, or None if it cannot be made (then the file is
    parsed again next time rather than cached)."""
    found = faults.attempt("", "encoding its cache row", lambda: encode(parsed, intro))
    return None if isinstance(found, Problem) else found


def read_and_parse(settings: Settings, cached: bool, entry: Entry) -> Parsed:
    """Read and parse one file behind the fault barrier, and encode its cache row
    (`cached`) while at it. Never raises: helper processes run it (`parallel`), and one
    file must not fail the others of its batch."""
    try:
        data = read_file(entry.full)
    except TooLarge as error:  # the file is fine to look at, just too large to publish
        problem = Problem(entry.path, None, "error", str(error))
        return Parsed(ParsedFile(None, (problem,)), None, True, None, settings.timezone)
    except Exception as error:
        problem = faults.problem(entry.path, "reading it", error)
        return Parsed(ParsedFile(None, (problem,)), None, False, None, settings.timezone)

    def parse() -> tuple[ParsedFile, Intro | None]:
        if entry.kind == "intro":
            intro, problems = itemfile.parse_intro(entry.path, data, entry.mtime_ns)
            return ParsedFile(None, tuple(problems)), intro
        return itemfile.parse_item(entry.path, data, settings, entry.mtime_ns), None

    found = faults.attempt(entry.path, "parsing it", parse)
    if isinstance(found, Problem):
        return Parsed(ParsedFile(None, (found,)), None, True, None, settings.timezone)
    parsed, intro = found
    row = encoded(parsed, intro) if cached else None
    return Parsed(parsed, intro, True, row, settings.timezone)
