"""The product's values: items, problems, weeks, feeds and the snapshot that holds them.

Everything here is immutable and imports only the standard library. The paths of the
HTML pages are made here, one function per kind (`item_path`, `category_path`,
`tag_path`, `week_path`; a list's later pages by `feeds.list_page_path`): a page's URL
is the name of its file in a static export, `….html`, so any static host serves it
without rewrites; the folders (`/`, `/tags/`, `/weekly/`) are their index.html.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Literal
from urllib.parse import quote

Severity = Literal["error", "warning"]
Format = Literal["rss", "atom", "json"]
#: A response body sent in pieces: its length in bytes, and the pieces (which the WSGI
#: server closes, if they have a `close`, once sent).
Stream = tuple[int, Iterable[bytes]]

_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
#: Names under items/ that can never be categories (they are feed names or private folders).
RESERVED_NAMES = frozenset({"all", "weekly"})


def is_valid_name(name: str) -> bool:
    """Category and slug rule: lowercase letters, digits and inner hyphens."""
    return bool(_NAME.match(name))


@lru_cache(maxsize=65_536)  # a site has far fewer spellings; archives ask per entry
def tag_slug(name: str) -> str:
    """The one slug every spelling of a tag comes to: compatibility forms and case folded
    (`Café`, `CAFE\u0301` and `café` meet), each run of characters other than letters,
    marks and digits made one hyphen (`New York`, `new_york`, `new-york`). Letters of any
    script stay: a URL carries them percent-encoded. "" for a tag of punctuation alone."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    words, word = [], []
    for character in folded:
        if unicodedata.category(character)[0] in "LMN":
            word.append(character)
        elif word:
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return "-".join(words)


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

    The body is not held here: it is rendered when a feed or page shows it, from `source`
    (feedsvc.bodies), so that a large folder loads without rendering every body.
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
        return item_path(self.category, self.page_name)

    @property
    def tag_slugs(self) -> dict[str, str]:
        """Its tags by slug (`tag_slug`), each with its first spelling here; a tag of
        punctuation alone has no slug and is left out."""
        slugs: dict[str, str] = {}
        for tag in self.tags:
            slug = tag_slug(tag)
            if slug and slug not in slugs:
                slugs[slug] = tag
        return slugs


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
        return week_path(self.name)

    @property
    def updated(self) -> datetime:
        return max(item.updated for item in self.items)


@dataclass(frozen=True, slots=True)
class Category:
    """A category folder and its published items, newest first."""

    slug: str
    name: str
    items: Sequence[Item]

    @property
    def path(self) -> str:
        return category_path(self.slug)


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag and the published items that carry it (in any spelling), newest first."""

    slug: str  # `tag_slug` of its spellings
    name: str  # its most used spelling
    items: Sequence[Item]

    @property
    def path(self) -> str:
        return tag_path(self.slug)


PAGE_SUFFIX = ".html"


def item_path(category: str, page_name: str) -> str:
    """An item's page, relative to `base_url`. A relative link in its body resolves as it
    would against the same path without the suffix (the page is in the same folder)."""
    return f"/items/{category}/{page_name}{PAGE_SUFFIX}"


def week_path(name: str) -> str:
    """A week's roundup page, relative to `base_url`."""
    return f"/weekly/{name}{PAGE_SUFFIX}"


def category_path(slug: str) -> str:
    """A category's page (the first of its list), relative to `base_url`."""
    return f"/categories/{slug}{PAGE_SUFFIX}"


def tag_path(slug: str) -> str:
    """A tag's page (the first of its list), relative to `base_url` (a slug may hold
    letters of any script: the path carries them percent-encoded)."""
    return f"/tags/{quote(slug)}{PAGE_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Feed:
    """One feed the site publishes, in every format: what it lists and how it is named.

    `name` is its place under /feeds/ (`all`, `weekly`, a category's slug, `tags/` and a
    tag's slug), so its URLs are `/feeds/<name>.<format>` and, for later pages,
    `/feeds/<name>/page/<N>.<format>` (`feeds.feed_path`).
    """

    name: str
    label: str  # how the site lists it: "All items", a category's name
    title: str  # the feed's own title
    description: str
    html_path: str  # the page it is the alternate of
    entries: Sequence[Item] | Sequence[Week]  # newest first
    page_size: int
    #: Tag feeds are many: the site lists them on /tags/, not on every list of feeds.
    kind: Literal["all", "weekly", "category", "tag"] = "category"

    @property
    def listed(self) -> bool:
        """Whether the front page and the OPML name it."""
        return self.kind != "tag"

    @property
    def last_page(self) -> int:
        """How many pages it has: at least one, even when empty."""
        return max(1, -(-len(self.entries) // self.page_size))


@dataclass(frozen=True, slots=True)
class FeedKey:
    """One document of a feed: the feed's name, a format and a page, or an archive."""

    name: str
    format: str  # a name of `render.FORMATS`; any other is no document
    page: int = 1
    archive: str = ""  # a closed week's name: that week's archive (feedsvc.archives)


@dataclass(frozen=True, slots=True)
class History:
    """A feed document's place in the feed's history (RFC 5005): a complete feed, a
    live feed and its newest archive, or an archive (of a week) and its neighbours."""

    complete: bool = False
    archive: str = ""  # the week this archive holds; "" for the live feed
    prev_archive: str = ""  # the week of the next older archive, if any
    next_archive: str = ""  # the week of the next newer archive, if any


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class Snapshot:
    """What the items folder publishes at one moment: a value, built at once and never
    changed; a reload builds another. Documents rendered from it are kept elsewhere
    (feedsvc.documents), by snapshot."""

    now: datetime
    items: Sequence[Item]  # published, newest first
    categories: tuple[Category, ...]
    weeks: tuple[Week, ...]  # published roundups, newest first
    current_week: Week | None  # the week in progress, for the index page
    problems: tuple[Problem, ...]
    file_count: int
    changes_at: datetime | None  # next time the published set changes without a file event
    pages: Mapping[tuple[str, str], Item] = field(default_factory=dict)  # scheduled too
    tags: Mapping[str, Tag] = field(default_factory=dict)  # by slug, sorted, published only
    #: Item pages once published whose item is gone (410): those this process saw go,
    #: and those the cache remembers from earlier processes.
    gone: AbstractSet[tuple[str, str]] = frozenset()
    feeds: Mapping[str, Feed] = field(default_factory=dict)  # by name, in listing order

    def category(self, slug: str) -> Category | None:
        for category in self.categories:
            if category.slug == slug:
                return category
        return None

    def page(self, category: str, name: str) -> Item | None:
        """The item published at `item_path(category, name)`, if any (not yet a scheduled
        one)."""
        item = self.pages.get((category, name))
        return item if item is not None and item.published <= self.now else None

    def week(self, name: str) -> Week | None:
        for week in self.weeks:
            if week.name == name:
                return week
        if self.current_week is not None and self.current_week.name == name:
            return self.current_week
        return None
