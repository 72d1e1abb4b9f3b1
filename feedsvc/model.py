"""The product's values: items, problems, weeks, feed keys and the snapshot that holds them.

Everything here is immutable and imports only the standard library.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Severity = Literal["error", "warning"]
Format = Literal["rss", "atom", "json"]
FORMATS: tuple[Format, ...] = ("rss", "atom", "json")
#: A response body sent in pieces: its length in bytes, and the pieces (which the WSGI
#: server closes, if they have a `close`, once sent).
Stream = tuple[int, Iterable[bytes]]

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
#: Names under items/ that can never be categories (they are feed names or private folders).
RESERVED_NAMES = frozenset({"all", "weekly"})


def is_valid_name(name: str) -> bool:
    """Category and slug rule: lowercase letters, digits and inner hyphens."""
    return bool(_NAME.match(name))


def printable(path: str) -> str:
    """`path` as text that every terminal, log line, JSON document and SQLite row can carry.

    A name the file system allows may be any bytes but "/" and NUL: bytes that are not
    UTF-8 (which Python holds as lone surrogates), control characters, line breaks. Such
    a name is shown with escapes: an undecodable byte as `\\xNN`, another unprintable
    character as `\\xNN` (below 0x80) or `\\uNNNN`, a backslash doubled, so that two
    names never print alike. A printable name is returned as it is.
    """
    if path.isprintable():  # False for surrogates, controls and line breaks
        return path
    shown = []
    for character in path:
        code = ord(character)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            shown.append(f"\\x{code - 0xDC00:02x}")
        elif character == "\\":
            shown.append("\\\\")
        elif character.isprintable():
            shown.append(character)
        elif code < 0x80:
            shown.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            shown.append(f"\\u{code:04x}")
        else:
            shown.append(f"\\U{code:08x}")
    return "".join(shown)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one file, for the log and `feedsvc check`.

    `path` is always printable (`printable`), whatever the file's name: a problem is
    written to logs, terminals, JSON and the cache, none of which can carry every name.
    """

    path: str
    line: int | None
    severity: Severity
    message: str

    def __post_init__(self) -> None:
        if not self.path.isprintable():
            object.__setattr__(self, "path", printable(self.path))
        if not self.message.isprintable():
            object.__setattr__(self, "message", printable(self.message))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class Source:
    """The version of a file an item was read from: enough to find and verify its body later."""

    path: str  # relative to items_dir, with forward slashes
    size: int
    mtime_ns: int
    digest: str  # of the whole file's bytes
    markup: Literal["markdown", "html"]


@dataclass(frozen=True, slots=True)
class Item:
    """A published (or scheduled, or draft) item: the front matter, resolved and checked.

    The body is not held here; it is rendered lazily from `source` (DESIGN §Cost model).
    """

    category: str
    slug: str
    file_date: date
    title: str
    published: datetime
    updated: datetime
    author: str
    tags: tuple[str, ...]
    summary: str | None  # from front matter; else derived from the body when rendered
    link: str | None  # external canonical URL; None means the item's own page
    id: str
    image: str | None
    draft: bool
    source: Source
    page: str = ""  # set by the snapshot builder when the slug is taken: "<date>-<slug>"

    @property
    def page_name(self) -> str:
        """The last segment of the item's page URL."""
        return self.page or self.slug

    @property
    def path(self) -> str:
        """The item's page, relative to `base_url`."""
        return f"/items/{self.category}/{self.page_name}"


@dataclass(frozen=True, slots=True)
class Content:
    """An item's rendered body: sanitised HTML and its plain-text summary."""

    html: str
    summary: str


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What one item file gave: an item (or None) and every problem found on the way."""

    item: Item | None
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class Intro:
    """A weekly roundup's introduction, from `items/_weekly/<YYYY>-W<ww>.md`."""

    week: str
    title: str | None
    source: Source


@dataclass(frozen=True, slots=True)
class Week:
    """One roundup: the published items of a week, oldest first."""

    name: str  # ISO style, "2020-W40"
    start: date
    end: date  # inclusive
    items: Sequence[Item]
    intro: Intro | None
    complete: bool  # False while the week is still in progress (rolling publication)

    @property
    def path(self) -> str:
        return f"/weekly/{self.name}"

    @property
    def updated(self) -> datetime:
        return max(item.updated for item in self.items)


@dataclass(frozen=True, slots=True)
class Category:
    """A category folder and its published items, newest first."""

    slug: str
    name: str
    items: Sequence[Item]


@dataclass(frozen=True, slots=True)
class FeedKey:
    """Which document: a feed name (`all`, `weekly` or a category) and format, or a page."""

    name: str
    format: Format | Literal["html", "opml"]
    page: int = 1


class Memo:
    """A thread-safe LRU of rendered documents with a budget in bytes.

    Feeds' first pages stay hot; a crawler walking every item page or every old feed
    page evicts only the least recently used documents instead of growing without end.
    A value's weight is its `size` attribute (0 for None, the "no such page" answer).
    """

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._values: OrderedDict[Any, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._values:
                return default
            self._values.move_to_end(key)
            return self._values[key]

    def __getitem__(self, key: Any) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            raise KeyError(key)
        return value

    def items(self) -> list[tuple[Any, Any]]:
        """What it holds now, oldest use first (a copy)."""
        with self._lock:
            return list(self._values.items())

    def discard(self, key: Any) -> None:
        with self._lock:
            if key in self._values:
                self._bytes -= getattr(self._values.pop(key), "size", 0)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if key in self._values:
                self._bytes -= getattr(self._values.pop(key), "size", 0)
            self._values[key] = value
            self._bytes += getattr(value, "size", 0)
            while self._bytes > self.max_bytes and len(self._values) > 1:
                _, evicted = self._values.popitem(last=False)
                self._bytes -= getattr(evicted, "size", 0)


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Everything a request needs, built at once and never changed; a reload swaps it whole.

    `memo` caches documents rendered from this snapshot (bytes, gzip, ETag); it only ever
    gains entries whose values follow from the snapshot, so sharing it is safe. `renders`
    counts the renders behind it, per document, for /healthz and the tests. `stale`
    holds what was served before it, for the moments until its own documents are ready.
    """

    now: datetime
    items: Sequence[Item]  # published, newest first
    categories: tuple[Category, ...]
    weeks: tuple[Week, ...]  # published roundups, newest first
    current_week: Week | None  # the week in progress, for the index page
    problems: tuple[Problem, ...]
    file_count: int
    changes_at: datetime | None  # next time the published set changes without a file event
    content_of: Callable[[Item], Content]
    intro_of: Callable[[Intro], str]
    pages: Mapping[tuple[str, str], Item] = field(default_factory=dict)  # scheduled too
    #: (signature, render, finish) -> finish(body, gzipped, load): documents by signature;
    #: `load` (or None) fetches the bytes again for a document too large to hold.
    document_of: Callable[..., Any] = lambda _, render, finish, persist=True: finish(
        *render(), None
    )
    has_document: Callable[[str], bool] = lambda _: False
    #: items -> a context in which their bodies are at hand (rendered together, up front).
    bodies: Callable[[Iterable[Item]], AbstractContextManager[None]] = lambda _: nullcontext()
    memo: Memo = field(default_factory=Memo)
    renders: Counter[Any] = field(default_factory=Counter)
    #: The first pages of feeds served before, by key: with `refresh`, a request this
    #: snapshot has no document for yet has `refresh(snapshot, key, job)` run `job` off
    #: the request path, and is answered from here if that has not finished (True) within
    #: a short patience, so no request waits long for a render after a change. The
    #: runner drops a key whose job failed.
    stale: dict[Any, Any] = field(default_factory=dict)
    refresh: Callable[[Snapshot, Any, Callable[[], object]], bool] | None = None
    #: (path, problem): a fault found while rendering a file's part of a document.
    report: Callable[[str, Problem], None] = lambda path, problem: None

    def category(self, slug: str) -> Category | None:
        for category in self.categories:
            if category.slug == slug:
                return category
        return None

    def page(self, category: str, name: str) -> Item | None:
        """The item published at /items/<category>/<name>, if any (not yet a scheduled one)."""
        item = self.pages.get((category, name))
        return item if item is not None and item.published <= self.now else None

    def week(self, name: str) -> Week | None:
        for week in self.weeks:
            if week.name == name:
                return week
        if self.current_week is not None and self.current_week.name == name:
            return self.current_week
        return None
