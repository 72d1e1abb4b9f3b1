"""Snapshot + feed key → the bytes of RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML 2.0.

feedgen is used here and nowhere else. Output depends on the snapshot alone (never on
the clock or the request), so the same items give the same bytes in every worker.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Any
from xml.etree import ElementTree

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedsvc import __version__, faults, itemfile, sanitize, weekly
from feedsvc.config import Settings
from feedsvc.model import FeedKey, Format, Item, Problem, Snapshot, Stream, Week

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
    "opml": "text/x-opml; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
ATOM = "http://www.w3.org/2005/Atom"
DC = "http://purl.org/dc/elements/1.1/"
DCTERMS = "http://purl.org/dc/terms/"
MEDIA = "http://search.yahoo.com/mrss/"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
#: The `updated` of a feed with no items: fixed, because it must never come from the clock.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Document:
    """A response body as served: plain and gzip bytes, strong ETags, freshness data.

    A very large document (a dense weekly feed) can leave its bytes in the persistent
    cache and hold only `load`, which streams the one representation a 200 sends (plain
    or gzip); a 304 needs the ETag alone.
    """

    held: tuple[bytes, bytes] | None  # (body, gzipped), or None: ask `load`
    etag: str
    content_type: str
    last_modified: datetime | None
    http_last_modified: str  # the same as an HTTP-date, formatted once
    load: Callable[[bool], Stream] | None = None  # gzipped? -> those bytes, in pieces

    @property
    def body(self) -> bytes:
        return b"".join(self.open(gzipped=False)[1])

    @property
    def gzipped(self) -> bytes:
        return b"".join(self.open(gzipped=True)[1])

    def open(self, *, gzipped: bool) -> Stream:
        """One representation as sent: its length, and its bytes in one piece or more."""
        if self.held is not None:
            chosen = self.held[gzipped]
            return len(chosen), (chosen,)
        assert self.load is not None
        return self.load(gzipped)

    @property
    def size(self) -> int:
        """Bytes held in memory, for the memo's budget."""
        return len(self.held[0]) + len(self.held[1]) if self.held is not None else 0

    @property
    def gzip_etag(self) -> str:
        """The gzip representation is different bytes, so it gets a different strong ETag."""
        return self.etag + "-gz"


def compress(body: bytes) -> bytes:
    """gzip, reproducibly (`mtime=0`): the same body always gives the same bytes."""
    return gzip.compress(body, compresslevel=6, mtime=0)


def make_document(
    body: bytes,
    kind: str,
    last_modified: datetime | None,
    gzipped: bytes | None = None,
    load: Callable[[bool], Stream] | None = None,
) -> Document:
    """Compress (unless given the gzip bytes) and hash, once per content change; with
    `load`, keep only what a conditional request needs and let `load` fetch the bytes."""
    held = (body, compress(body) if gzipped is None else gzipped)
    return Document(
        held=None if load is not None else held,
        load=load,
        etag=hashlib.sha256(body).hexdigest()[:32],
        content_type=CONTENT_TYPES[kind],
        last_modified=last_modified,
        http_last_modified=(
            format_datetime(last_modified.astimezone(UTC), usegmt=True) if last_modified else ""
        ),
    )


def memoised(
    snapshot: Snapshot, key: Any, build: Callable[[], Document | None]
) -> Document | None:
    """The document for `key`, built at most once per snapshot (None: no such document).

    After a change, where the snapshot allows, the new document is built off the request
    path (`refresh`); if it is not ready within a short patience, the document served for
    `key` before the change answers (`stale`).
    """
    missing = object()
    found = snapshot.memo.get(key, missing)
    if found is not missing:
        return found  # type: ignore[no-any-return]
    if snapshot.refresh is not None and (previous := snapshot.stale.get(key)) is not None:
        if snapshot.refresh(snapshot, key, lambda: _fill(snapshot, key, build)):
            found = snapshot.memo.get(key, missing)
        return previous if found is missing else found  # type: ignore[no-any-return]
    return _fill(snapshot, key, build)


def _fill(snapshot: Snapshot, key: Any, build: Callable[[], Document | None]) -> Document | None:
    snapshot.renders[key] += 1
    document = build()
    snapshot.memo.put(key, document)
    return document


# -- the neutral shape every format is written from --------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    title: str
    url: str  # the canonical link (external `link`, else the page)
    page_url: str  # this site's page for the entry, also the base of relative URLs
    published: datetime
    updated: datetime
    author: str
    categories: tuple[tuple[str, str], ...]  # (term, label)
    summary: str
    html: str
    image: str | None
    source: str = ""  # the file it comes from, to report a fault with it


@dataclass(frozen=True, slots=True)
class FeedView:
    name: str
    title: str
    description: str
    html_url: str
    entries: tuple[Entry, ...]
    page: int
    last_page: int
    feed_urls: dict[str, str] = field(default_factory=dict)  # format -> URL of this page

    @property
    def updated(self) -> datetime:
        """From the newest entry, never from the clock; fixed for an empty feed."""
        return max((e.updated for e in self.entries), default=EMPTY_FEED_UPDATED)


def feed_path(name: str, format: str, page: int = 1) -> str:
    query = f"?page={page}" if page > 1 else ""
    return f"/feeds/{name}.{format}{query}"


def feed_url(settings: Settings, name: str, format: str, page: int = 1) -> str:
    return settings.base_url + feed_path(name, format, page)


def _item_entry(item: Item, snapshot: Snapshot, settings: Settings) -> Entry:
    content = snapshot.content_of(item)
    page_url = settings.base_url + item.path
    labels = [(item.category, settings.category_name(item.category))]
    return Entry(
        id=item.id,
        title=item.title,
        url=item.link or page_url,
        page_url=page_url,
        published=item.published,
        updated=item.updated,
        author=item.author,
        categories=tuple(labels + [(tag, tag) for tag in item.tags]),
        summary=content.summary,
        html=content.html,
        image=item.image,
        source=item.source.path,
    )


@dataclass(frozen=True, slots=True)
class _Roundup:
    html: str

    @property
    def size(self) -> int:  # its weight in the snapshot's memo
        return len(self.html)


def week_html(snapshot: Snapshot, week: Week, settings: Settings) -> str:
    """The roundup's body: the introduction, every story, the footer.

    Built once per snapshot and week, and shared by its RSS, Atom and JSON entries and
    its page: a dense week's bodies need not pass through the body cache three times.
    """
    key = ("roundup", week.name)
    found = snapshot.memo.get(key)
    if found is None:
        intro = snapshot.intro_of(week.intro) if week.intro else None
        found = _Roundup(weekly.roundup_html(week, settings, snapshot.content_of, intro))
        snapshot.memo.put(key, found)
    html: str = found.html
    return html


def _week_entry(week: Week, snapshot: Snapshot, settings: Settings) -> Entry:
    html = week_html(snapshot, week, settings)
    url = settings.base_url + week.path
    return Entry(
        id=weekly.week_id(week, settings),
        title=weekly.week_title(week, settings),
        url=url,
        page_url=url,
        published=max(item.published for item in week.items),
        updated=week.updated,
        author=settings.author,
        categories=(),
        summary=sanitize.summarise(html),
        html=html,
        image=None,
        source=week.intro.source.path if week.intro else f"_weekly/{week.name}.md",
    )


def _sources(
    snapshot: Snapshot, name: str, settings: Settings
) -> tuple[Sequence[Item] | Sequence[Week], int, str, str] | None:
    """What a feed lists, its page size, title and description; None for no such feed."""
    if name == "all":
        return snapshot.items, settings.feed_size, settings.title, settings.description
    if name == "weekly":
        description = f"One digest a week of everything published on {settings.title}."
        return (
            snapshot.weeks,
            settings.weekly_size,
            f"{settings.title}: weekly roundup",
            description,
        )
    category = snapshot.category(name)
    if category is None:
        return None
    title = f"{settings.title}: {category.name}"
    return (
        category.items,
        settings.feed_size,
        title,
        f"{category.name}: the latest from {settings.title}.",
    )


def page_count(snapshot: Snapshot, name: str, settings: Settings) -> int:
    """How many pages a feed has (at least one, even when empty); 0 for no such feed."""
    found = _sources(snapshot, name, settings)
    if found is None:
        return 0
    return max(1, math.ceil(len(found[0]) / found[1]))


def feed_view(snapshot: Snapshot, name: str, settings: Settings, page: int = 1) -> FeedView | None:
    """The entries and links of one page of a feed; None for an unknown feed or page."""
    found = _sources(snapshot, name, settings)
    if found is None:
        return None
    sources, size, title, description = found
    last_page = page_count(snapshot, name, settings)
    if not 1 <= page <= last_page:
        return None
    shown = sources[(page - 1) * size : page * size]
    entries = tuple(
        _week_entry(s, snapshot, settings)
        if isinstance(s, Week)
        else _item_entry(s, snapshot, settings)
        for s in shown
    )
    return FeedView(
        name=name,
        title=title,
        description=description,
        html_url=settings.base_url + html_path(name),
        entries=entries,
        page=page,
        last_page=last_page,
    )


# -- RSS and Atom through feedgen ---------------------------------------------------------


class _FeedExtension(BaseExtension):  # type: ignore[misc]
    """What feedgen cannot write: deterministic RSS dates and RFC 5005 paging links."""

    def __init__(self) -> None:
        self.updated: datetime = EMPTY_FEED_UPDATED
        self.paging: list[tuple[str, str]] = []  # (rel, href)

    def extend_ns(self) -> dict[str, str]:
        return {"dc": DC, "dcterms": DCTERMS, "media": MEDIA}

    def extend_rss(self, rss: Any) -> Any:
        channel = rss[0]
        # Written here rather than by feedgen, whose date helper switches the process-wide
        # locale around strftime (a race between threads).
        etree.SubElement(channel, "lastBuildDate").text = format_datetime(self.updated)
        for rel, href in self.paging:
            etree.SubElement(channel, f"{{{ATOM}}}link", rel=rel, href=href)
        return rss

    def extend_atom(self, feed: Any) -> Any:
        # feedgen writes Atom elements without a namespace under an xmlns attribute;
        # a namespaced element here would come out with an ns0: prefix.
        for rel, href in self.paging:
            etree.SubElement(feed, "link", rel=rel, href=href)
        return feed


class _EntryExtension(BaseEntryExtension):  # type: ignore[misc]
    """Per entry: RSS pubDate and dc:creator, Atom xml:base, and the lead image."""

    entry: Entry

    def extend_rss(self, item: Any) -> Any:
        etree.SubElement(item, "pubDate").text = format_datetime(self.entry.published)
        etree.SubElement(item, f"{{{DC}}}creator").text = self.entry.author
        etree.SubElement(item, f"{{{DCTERMS}}}modified").text = self.entry.updated.isoformat()
        self._image(item)
        return item

    def extend_atom(self, element: Any) -> Any:
        # The page's folder, not the page itself: relative references resolve the same,
        # and the entry's alternate link is not a same-document reference.
        element.set(XML_BASE, self.entry.page_url.rsplit("/", 1)[0] + "/")
        self._image(element)
        return element

    def _image(self, element: Any) -> None:
        # media:content outside a media:group is valid in both formats, where an
        # enclosure would become a second alternate link in feedgen's Atom.
        if self.entry.image:
            etree.SubElement(element, f"{{{MEDIA}}}content", url=self.entry.image, medium="image")


def _paging_links(view: FeedView, settings: Settings, format: str) -> list[tuple[str, str]]:
    """RFC 5005 §3 links; none for a feed that fits on one page."""
    if view.last_page == 1:
        return []
    links = [
        ("first", feed_url(settings, view.name, format)),
        ("last", feed_url(settings, view.name, format, view.last_page)),
    ]
    if view.page > 1:
        links.append(("previous", feed_url(settings, view.name, format, view.page - 1)))
    if view.page < view.last_page:
        links.append(("next", feed_url(settings, view.name, format, view.page + 1)))
    return links


def _generator(view: FeedView, settings: Settings, format: str) -> FeedGenerator:
    fg = FeedGenerator()
    fg.register_extension("feedsvc", _FeedExtension, _EntryExtension)
    fg.id(feed_url(settings, view.name, "atom"))
    fg.title(view.title)
    fg.subtitle(view.description)
    fg.description(view.description)
    fg.language(settings.language)
    fg.author({"name": settings.author})
    fg.generator("feedsvc", version=__version__)
    # feedgen's RSS <link> is the href of the last link() call, so the alternate goes last.
    fg.link(href=feed_url(settings, view.name, format, view.page), rel="self")
    fg.link(href=view.html_url, rel="alternate", type="text/html")
    fg.updated(view.updated)
    fg._FeedGenerator__rss_lastBuildDate = None  # written by _FeedExtension instead
    fg.feedsvc.updated = view.updated
    fg.feedsvc.paging = _paging_links(view, settings, format)
    for entry in view.entries:
        fe = fg.add_entry(order="append")
        fe.feedsvc.entry = entry
        fe.id(entry.id)
        fe.title(entry.title)
        fe.link(href=entry.url, rel="alternate", type="text/html")
        fe.updated(entry.updated)
        if format == "atom":
            fe.published(entry.published)  # feedgen's RSS pubDate is written by the extension
        fe.author({"name": entry.author})
        if entry.categories:
            scheme = settings.base_url + "/categories/"
            fe.category(
                [
                    {"term": term, "label": label, "scheme": scheme}
                    for term, label in entry.categories
                ]
            )
        fe.summary(entry.summary or entry.title)
        if entry.html:
            fe.content(entry.html, type="html")
    return fg


def render_rss(view: FeedView, settings: Settings) -> bytes:
    return bytes(_generator(view, settings, "rss").rss_str(pretty=True))


def render_atom(view: FeedView, settings: Settings) -> bytes:
    return bytes(_generator(view, settings, "atom").atom_str(pretty=True))


def _iso(when: datetime) -> str:
    return when.isoformat()


def render_json(view: FeedView, settings: Settings) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": view.title,
        "home_page_url": view.html_url,
        "feed_url": feed_url(settings, view.name, "json", view.page),
        "description": view.description,
        "language": settings.language,
        "authors": [{"name": settings.author}],
    }
    if view.page < view.last_page:
        feed["next_url"] = feed_url(settings, view.name, "json", view.page + 1)
    items = []
    for entry in view.entries:
        item: dict[str, Any] = {
            "id": entry.id,
            "url": entry.page_url,
            "title": entry.title,
            "content_html": entry.html,
            "summary": entry.summary,
            "date_published": _iso(entry.published),
            "date_modified": _iso(entry.updated),
            "authors": [{"name": entry.author}],
        }
        if entry.url != entry.page_url:
            item["external_url"] = entry.url
        if entry.categories:
            item["tags"] = list(dict.fromkeys(label for _term, label in entry.categories))
        if entry.image:
            item["image"] = entry.image
        items.append(item)
    feed["items"] = items
    text: str = json.dumps(feed, ensure_ascii=False, indent=2)
    return text.encode("utf-8") + b"\n"


RENDERERS: dict[Format, Callable[[FeedView, Settings], bytes]] = {
    "rss": render_rss,
    "atom": render_atom,
    "json": render_json,
}


def render_view(format: Format, view: FeedView, settings: Settings, snapshot: Snapshot) -> bytes:
    """One page of a feed in one format, behind the fault barrier: if it cannot be
    written, each entry is tried alone, those that fail are reported as their files'
    problems and left out, and the page is written with the rest."""
    renderer = RENDERERS[format]
    try:
        return renderer(view, settings)
    except Exception as error:
        log.debug("rendering %s failed; trying its entries one by one", view.name, exc_info=error)
    kept = []
    for entry in view.entries:
        alone = replace(view, entries=(entry,))
        found = faults.attempt(
            entry.source, f"rendering its {format} entry", partial(renderer, alone, settings)
        )
        if isinstance(found, Problem):
            snapshot.report(entry.source, found)
        else:
            kept.append(entry)
    return renderer(replace(view, entries=tuple(kept)), settings)


@dataclass(frozen=True, slots=True)
class _Page:
    """What one page of one feed shows, and the signature of its bytes."""

    shown: Sequence[Item] | Sequence[Week]
    signature: str


def _page(snapshot: Snapshot, key: FeedKey, settings: Settings) -> _Page | None:
    """The page `key` names, worked out once per snapshot; None for no such page."""
    memo_key = ("page", key)
    found: _Page | None = snapshot.memo.get(memo_key)
    if found is None and memo_key not in snapshot.memo:
        sources = _sources(snapshot, key.name, settings)
        last_page = page_count(snapshot, key.name, settings)
        if sources is not None and key.format in RENDERERS and 1 <= key.page <= last_page:
            size = sources[1]
            shown = sources[0][(key.page - 1) * size : key.page * size]
            versions = _versions_shown(snapshot, key, shown)
            found = _Page(shown, signature(key, last_page, versions, settings))
        snapshot.memo.put(memo_key, found)
    return found


def feed_document(snapshot: Snapshot, key: FeedKey, settings: Settings) -> Document | None:
    """One page of one feed in one format, rendered once per snapshot; None if unknown."""

    def build() -> Document | None:
        page = _page(snapshot, key, settings)
        if page is None:
            return None

        def render() -> tuple[bytes, bytes]:
            started, cpu_started = time.perf_counter(), time.thread_time()
            view = feed_view(snapshot, key.name, settings, key.page)
            assert view is not None  # _page made the same checks
            body = render_view(key.format, view, settings, snapshot)  # type: ignore[arg-type]
            gzipped = compress(body)
            # First pages render at start-up and after a change; a static export renders
            # thousands of later pages, which would drown the log.
            log.log(
                logging.INFO if key.page == 1 else logging.DEBUG,
                "rendered %s: %d bytes; %.0f ms (%.1f ms CPU)",
                feed_path(key.name, key.format, key.page), len(body),
                (time.perf_counter() - started) * 1000, (time.thread_time() - cpu_started) * 1000,
            )  # fmt: skip
            return body, gzipped

        def finish(body: bytes, gzipped: bytes, load: Callable[[bool], Stream] | None) -> Document:
            return make_document(body, key.format, last_modified, gzipped, load)

        last_modified = max((source.updated for source in page.shown), default=None)
        # Only first pages are kept on disk: they are what a restart serves at once; a
        # static export of every page would otherwise fill the cache with gigabytes.
        document: Document = snapshot.document_of(
            page.signature, render, finish, persist=key.page == 1
        )
        return document

    return memoised(snapshot, key, build)


def warm(snapshot: Snapshot, settings: Settings) -> None:
    """Render the first page of every feed in every format now, before any request asks.

    The bodies they need are rendered first, all together (spread
    over the cores), rather than one by one inside each feed's render."""
    keys = [FeedKey(name, format) for name, _ in feed_names(snapshot) for format in RENDERERS]
    needed: list[Item] = []
    weeks: dict[str, Week] = {}  # of the weekly pages to render
    for key in keys:
        page = _page(snapshot, key, settings)
        if page is None or key in snapshot.memo or snapshot.has_document(page.signature):
            continue
        for source in page.shown:
            if isinstance(source, Week):
                weeks[source.name] = source
                needed.extend(source.items)
            else:
                needed.append(source)
    with snapshot.bodies(needed):
        # The weekly feed's formats share each week's HTML: built once, before they are.
        for week in weeks.values():
            week_html(snapshot, week, settings)
        # gzip, hashing and SQLite release the GIL: with two threads, one feed is
        # compressed while the next is written. The threads are gone before anything forks.
        with ThreadPoolExecutor(2, thread_name_prefix="warm") as pool:
            for _ in pool.map(lambda key: _warm_one(snapshot, key, settings), keys):
                pass
    # The roundups' HTML was kept to build the weekly feed's three formats; they are
    # built now, and in a preloading master those megabytes would sit in every worker.
    for week in snapshot.weeks[: settings.weekly_size]:
        snapshot.memo.discard(("roundup", week.name))
    sanitize.prepare()  # a preloading master's thread becomes each worker's serving thread


def _warm_one(snapshot: Snapshot, key: FeedKey, settings: Settings) -> None:
    """Render one feed ahead of requests; a failure (a bug: files fail alone) is logged
    and left to the first request, and never stops a start-up."""
    try:
        feed_document(snapshot, key, settings)
    except Exception:
        log.exception("rendering %s ahead of requests failed", feed_path(key.name, key.format))


def _version(item: Item) -> str:
    source = item.source
    return f"{source.path}\0{source.digest}\0{source.mtime_ns}\0{item.page}"


def signature(key: FeedKey, last_page: int, versions: str, settings: Settings) -> str:
    """Everything a feed page's bytes follow from, hashed: its key in a persistent cache.

    `versions` stands for the items or weeks shown (`_versions_shown`); the code
    versions cover the code that turns them into bytes.
    """
    parts = (_CODE_VERSIONS, key, last_page, settings, versions)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _versions_shown(
    snapshot: Snapshot, key: FeedKey, shown: Sequence[Item] | Sequence[Week]
) -> str:
    """A digest of what the shown items and weeks follow from, shared by a page's formats.

    An item is a function of its file (path, content digest, mtime: `Source`), the
    settings and the page name the index gives it (`itemfile.parse_item`), so those
    stand for it: hashing them is a fraction of hashing every field's repr, which at
    100,000 items took ~185 ms for a weekly page of ~11,500 stories.
    """
    memo_key = ("versions", key.name, key.page)
    found: str | None = snapshot.memo.get(memo_key)
    if found is None:
        lines = []
        for source in shown:
            if isinstance(source, Week):
                lines.append(repr((source.name, source.end, source.complete, source.intro)))
                lines.extend(map(_version, source.items))
            else:
                lines.append(_version(source))
        found = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        snapshot.memo.put(memo_key, found)
    return found


_CODE_VERSIONS = (
    __version__,
    sanitize.RULES_VERSION,
    importlib.metadata.version("feedgen"),
    itemfile.MARKDOWN_VERSION,
)


def html_path(name: str) -> str:
    """The HTML page a feed is the alternate of."""
    return {"all": "/", "weekly": "/weekly/"}.get(name, f"/categories/{name}")


def feed_names(snapshot: Snapshot) -> list[tuple[str, str]]:
    """(name, title) of every feed, in the order the index and the OPML list them."""
    return [
        ("all", "All items"),
        ("weekly", "Weekly roundup"),
        *((c.slug, c.name) for c in snapshot.categories),
    ]


def render_opml(snapshot: Snapshot, settings: Settings) -> bytes:
    """OPML 2.0 listing every feed, RSS and Atom and JSON, for a reader to import at once."""
    opml = ElementTree.Element("opml", version="2.0")
    head = ElementTree.SubElement(opml, "head")
    ElementTree.SubElement(head, "title").text = f"{settings.title} feeds"
    newest = max((i.updated for i in snapshot.items), default=EMPTY_FEED_UPDATED)
    ElementTree.SubElement(head, "dateModified").text = format_datetime(newest.astimezone(UTC))
    ElementTree.SubElement(head, "ownerName").text = settings.author
    body = ElementTree.SubElement(opml, "body")
    # One outline per feed (Atom), so that importing the list subscribes to each feed once.
    for name, label in feed_names(snapshot):
        ElementTree.SubElement(
            body,
            "outline",
            type="rss",
            text=f"{settings.title}: {label}",
            title=f"{settings.title}: {label}",
            xmlUrl=feed_url(settings, name, "atom"),
            htmlUrl=settings.base_url + html_path(name),
        )
    ElementTree.indent(opml)
    document: bytes = ElementTree.tostring(opml, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def opml_document(snapshot: Snapshot, settings: Settings) -> Document:
    def build() -> Document:
        newest = max((i.updated for i in snapshot.items), default=None)
        return make_document(render_opml(snapshot, settings), "opml", newest)

    document = memoised(snapshot, FeedKey("feeds", "opml"), build)
    assert document is not None
    return document
