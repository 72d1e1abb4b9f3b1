"""A feed view → the bytes of RSS 2.0, Atom 1.0 or JSON Feed 1.1; the snapshot's feeds →
OPML 2.0. Pure: no I/O, no clock.

feedgen is used here and nowhere else. Output depends on its inputs alone (never on
the clock or the request), so the same items give the same bytes in every worker. A
renderer is given the bodies it shows: `feed_view` takes them from a `Bodies` the
caller hands in (feedsvc.bodies), and the formats are functions of the view.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial
from typing import Any, Protocol

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feedsvc import __version__, faults, sanitize, weekly
from feedsvc.config import Settings
from feedsvc.feeds import feed_url
from feedsvc.memo import Memo
from feedsvc.model import Content, Feed, Format, History, Intro, Item, Problem, Snapshot, Week

log = logging.getLogger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
DC = "http://purl.org/dc/elements/1.1/"
DCTERMS = "http://purl.org/dc/terms/"
FH = "http://purl.org/syndication/history/1.0"
MEDIA = "http://search.yahoo.com/mrss/"
XHTML = "http://www.w3.org/1999/xhtml"
XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
#: The style sheet a browser applies to a feed or the OPML opened as a page.
FEED_CSS_PATH = "/feed.css"
#: The `updated` of a feed with no items: fixed, because it must never come from the clock.
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
HTML_TYPE = "text/html; charset=utf-8"
OPML_TYPE = "text/x-opml; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"


class Bodies(Protocol):
    """Where a renderer takes the bodies it shows (feedsvc.bodies.Bodies)."""

    def content(self, item: Item) -> Content: ...

    def intro(self, intro: Intro) -> str: ...


Report = Callable[[str, Problem], None]


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
    #: (term, label, scheme): the scheme names the site's categories or its tags
    #: (`…/categories/`, `…/tags/`); the page that lists one is scheme + term + ".html".
    #: scheme + term is that page's earlier address: the server redirects it, a static
    #: export has no such file.
    categories: tuple[tuple[str, str, str], ...]
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
    history: History = field(default_factory=History)  # RFC 5005

    @property
    def updated(self) -> datetime:
        """From the newest entry, never from the clock; fixed for an empty feed."""
        return max((e.updated for e in self.entries), default=EMPTY_FEED_UPDATED)


def _item_entry(item: Item, settings: Settings, bodies: Bodies) -> Entry:
    content = bodies.content(item)
    page_url = settings.base_url + item.path
    category = (
        item.category,
        settings.category_name(item.category),
        settings.base_url + "/categories/",
    )
    tags = settings.base_url + "/tags/"
    return Entry(
        id=item.id,
        title=item.title,
        url=item.link or page_url,
        page_url=page_url,
        published=item.published,
        updated=item.updated,
        author=item.author,
        categories=(category, *((slug, tag, tags) for slug, tag in item.tag_slugs.items())),
        summary=content.summary,
        html=content.html,
        image=item.image,
        source=item.source.path,
    )


def week_html(week: Week, settings: Settings, bodies: Bodies) -> str:
    """The roundup's body: the introduction, every story, the footer."""
    intro = bodies.intro(week.intro) if week.intro else None
    return weekly.roundup_html(week, settings, bodies.content, intro)


def _week_entry(week: Week, settings: Settings, bodies: Bodies) -> Entry:
    html = week_html(week, settings, bodies)
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


def feed_view(
    feed: Feed,
    page: int,
    shown: Sequence[Item] | Sequence[Week],
    settings: Settings,
    bodies: Bodies,
    history: History | None = None,
) -> FeedView:
    """The entries and links of one page (or archive) of a feed, `shown` being its
    entries."""
    entries = tuple(
        _week_entry(s, settings, bodies)
        if isinstance(s, Week)
        else _item_entry(s, settings, bodies)
        for s in shown
    )
    return FeedView(
        name=feed.name,
        title=feed.title,
        description=feed.description,
        html_url=settings.base_url + feed.html_path,
        entries=entries,
        page=page,
        last_page=feed.last_page,
        history=history or History(),
    )


# -- RSS and Atom through feedgen ---------------------------------------------------------


def preview(
    title: str, about: str, links: Sequence[tuple[str, str, str]], settings: Settings
) -> Any:
    """What a person who opens a feed in a browser reads: an XHTML block
    that `feed.css` shows while it hides the feed's own elements. Readers skip it (an
    extension element of the channel or feed, which the W3C validator accepts there), so
    no XSLT is needed and the bytes stay a plain feed. `links` are (URL, text, note).

    Written as text, escaped, and parsed: the same elements as made one by one, in half
    the time (a list of fifty entries heads every feed document)."""
    parts = [
        f'<div xmlns="{XHTML}" id="feedsvc-preview">',
        f'<h1><a href="{_quoted(settings.base_url + "/")}">{_quoted(title)}</a></h1>',
        f'<p class="about">{_quoted(about)}</p><ul>',
    ]
    for href, text, meta in links:
        note = f'<span class="meta">{_quoted(meta)}</span>' if meta else ""
        parts.append(f'<li><a href="{_quoted(href)}">{_quoted(text)}</a>{note}</li>')
    parts.append("</ul></div>")
    return etree.fromstring("".join(parts))  # with no DTD, no entity but XML's own


def _quoted(text: str) -> str:
    """`text` as XML character data or an attribute's value in double quotes, to be
    parsed back as it is: a parser would read a CR as a line feed, and white space in
    an attribute as spaces, where a character reference is read as itself."""
    for character, reference in _REFERENCES:
        text = text.replace(character, reference)
    return text


_REFERENCES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"),
               ("\t", "&#9;"), ("\n", "&#10;"), ("\r", "&#13;"))  # fmt: skip


def _feed_preview(view: FeedView, settings: Settings, format: str) -> Any:
    label = FORMATS[format].label
    address = feed_url(settings, view.name, format, view.page)
    about = (
        f"This is a web feed ({label}): {view.description} A feed reader subscribed to "
        f"it shows what is new here as it is published. To subscribe, copy its address "
        f"into your reader: {address}"
    )
    links = [(e.url, e.title, e.published.date().isoformat()) for e in view.entries]
    return preview(view.title, about, links, settings)


def stylesheet_instruction(settings: Settings) -> bytes:
    """The processing instruction that points a browser at `feed.css`."""
    href = settings.base_url + FEED_CSS_PATH
    return f'<?xml-stylesheet type="text/css" href="{href}"?>\n'.encode()


def _styled(document: bytes, settings: Settings) -> bytes:
    """`document` with the style sheet instruction after its XML declaration."""
    declaration, newline, rest = document.partition(b"\n")
    return declaration + newline + stylesheet_instruction(settings) + rest


class _FeedExtension(BaseExtension):  # type: ignore[misc]
    """What feedgen cannot write: deterministic RSS dates, RFC 5005 links, the WebSub
    hubs and the preview a browser shows."""

    def __init__(self) -> None:
        self.updated: datetime = EMPTY_FEED_UPDATED
        self.paging: list[tuple[str, str]] = []  # (rel, href)
        self.history: History = History()
        self.preview: Any = None

    def _history(self, parent: Any) -> None:
        if self.history.complete:
            etree.SubElement(parent, f"{{{FH}}}complete")
        elif self.history.archive:
            etree.SubElement(parent, f"{{{FH}}}archive")

    def extend_ns(self) -> dict[str, str]:
        return {"dc": DC, "dcterms": DCTERMS, "media": MEDIA, "fh": FH}

    def extend_rss(self, rss: Any) -> Any:
        channel = rss[0]
        # Written here rather than by feedgen, whose date helper switches the process-wide
        # locale around strftime (a race between threads).
        etree.SubElement(channel, "lastBuildDate").text = format_datetime(self.updated)
        for rel, href in self.paging:
            etree.SubElement(channel, f"{{{ATOM}}}link", rel=rel, href=href)
        self._history(channel)
        channel.insert(0, self.preview)
        return rss

    def extend_atom(self, feed: Any) -> Any:
        # feedgen writes Atom elements without a namespace under an xmlns attribute;
        # a namespaced element here would come out with an ns0: prefix.
        for rel, href in self.paging:
            etree.SubElement(feed, "link", rel=rel, href=href)
        self._history(feed)
        feed.insert(0, self.preview)
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


def self_url(view: FeedView, settings: Settings, format: str) -> str:
    return feed_url(settings, view.name, format, view.page, view.history.archive)


def _paging_links(view: FeedView, settings: Settings, format: str) -> list[tuple[str, str]]:
    """RFC 5005 links: paging (§3) on the live feed's pages, with the newest archive on
    its first; on an archive (§4), its neighbours and the live feed. None for a feed
    that fits on one page (it is complete)."""
    history = view.history

    def archive(week: str) -> str:
        return feed_url(settings, view.name, format, archive=week)

    if history.archive:
        links = [("current", feed_url(settings, view.name, format))]
        links += [("prev-archive", archive(history.prev_archive))] if history.prev_archive else []
        links += [("next-archive", archive(history.next_archive))] if history.next_archive else []
        return links
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
    if history.prev_archive:
        links.append(("prev-archive", archive(history.prev_archive)))
    return links


def _generator(
    view: FeedView, settings: Settings, format: str, written: Sequence[Entry] | None = None
) -> FeedGenerator:
    """The feed of `view`, with the entries `written` (by default the view's own: the
    rest of the document, its preview and dates included, is always the view's)."""
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
    fg.link(href=self_url(view, settings, format), rel="self")
    fg.link(href=view.html_url, rel="alternate", type="text/html")
    fg.updated(view.updated)
    fg.icon(settings.icon_url)
    fg.logo(settings.icon_url)  # also RSS's <image>, titled and linked as the channel
    fg._FeedGenerator__rss_lastBuildDate = None  # written by _FeedExtension instead
    fg.feedsvc.updated = view.updated
    fg.feedsvc.paging = [*(("hub", hub) for hub in settings.advertised_hubs),
                         *_paging_links(view, settings, format)]  # fmt: skip
    fg.feedsvc.history = view.history
    fg.feedsvc.preview = _feed_preview(view, settings, format)
    for entry in view.entries if written is None else written:
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
            fe.category(
                [
                    {"term": term, "label": label, "scheme": scheme}
                    for term, label, scheme in entry.categories
                ]
            )
        fe.summary(entry.summary or entry.title)
        if entry.html:
            fe.content(entry.html, type="html")
    return fg


def _whole_rss(view: FeedView, settings: Settings, written: Sequence[Entry] | None) -> bytes:
    fg = _generator(view, settings, "rss", written)
    return _styled(bytes(fg.rss_str(pretty=True)), settings)


def _whole_atom(view: FeedView, settings: Settings, written: Sequence[Entry] | None) -> bytes:
    fg = _generator(view, settings, "atom", written)
    return _styled(bytes(fg.atom_str(pretty=True)), settings)


# -- entries written once, put in each document that shows them --------------------------
#
# An item is shown by a page of the feed of everything, that feed's archive of its week,
# and the same of its category and of each of its tags: writing its entry once per format
# and putting those bytes in each document is most of the work of a feed document saved.
# An entry's bytes follow from it alone (the namespaces are declared on the root, the
# indentation is its depth's), and a document ends with its entries, so a document is
# its head, written with no entry, with its entries' bytes put before the head's closing
# tag: the very bytes of writing it whole, which the tests check for any entries.

#: Bytes of written entries kept per process (`_written_key`): enough for the
#: documents that show the same weeks' entries, rendered one after another, to share them.
ENTRY_BYTES = 32 * 1024 * 1024
_entries = Memo(ENTRY_BYTES, weigh=len)


def hold_entries(max_bytes: int) -> None:
    """Hold at most `max_bytes` of written entries in this process from now on."""
    _entries.max_bytes = max_bytes


#: Characters of bodies written into one document at most when entries are written anew.
WRITE_BATCH_BYTES = 4 * 1024 * 1024

#: Where an entry starts and ends in a pretty-printed document: its opening tag at its
#: depth and its closing tag. Markup in text and attributes is escaped, so neither can
#: appear inside an entry but as its own element's tag.
_ENTRY_TAGS = {"rss": (b"    <item>", b"</item>\n"), "atom": (b"  <entry", b"</entry>\n")}
#: What the entries come before: the closing tag of the element that holds them, which a
#: pretty-printed document has on a line of its own.
_ENTRIES_END = {"rss": b"  </channel>\n", "atom": b"</feed>\n"}


def _written_key(format: str, entry: Entry) -> tuple[object, ...]:
    """What an entry's bytes in a format follow from: the entry, and its dates' offsets
    (two dates in other zones are equal if they are the same instant, yet are written
    apart)."""
    return format, entry, entry.published.utcoffset(), entry.updated.utcoffset()


def _spans(document: bytes, format: str, count: int) -> list[tuple[int, int]]:
    """Where each of a document's `count` entries is, in order."""
    opening, closing = _ENTRY_TAGS[format]
    spans, at = [], 0
    for _ in range(count):
        start = document.index(opening, at)
        at = document.index(closing, start) + len(closing)
        spans.append((start, at))
    return spans


def _spliced(
    format: str,
    view: FeedView,
    settings: Settings,
    whole: Callable[[FeedView, Settings, Sequence[Entry] | None], bytes],
) -> bytes:
    """`whole(view, settings, None)`, made of the entries' bytes as written before."""
    if not view.entries:
        return whole(view, settings, None)
    keys = [_written_key(format, entry) for entry in view.entries]
    written: dict[tuple[object, ...], bytes] = {}
    missing: dict[tuple[object, ...], Entry] = {}
    for key, entry in zip(keys, view.entries, strict=True):
        found = _entries.get(key)
        if found is None:
            missing[key] = entry
        else:
            written[key] = found
    for batch in _batches(missing):  # a feed's head is written once a batch, not an entry
        document = whole(replace(view, entries=tuple(batch.values())), settings, None)
        for key, (start, end) in zip(batch, _spans(document, format, len(batch)), strict=True):
            written[key] = document[start:end]
            _entries.put(key, written[key])
    head = whole(view, settings, ())
    end = head.rindex(_ENTRIES_END[format])
    # One join, not three concatenations: a dense weekly page is tens of megabytes.
    return b"".join([head[:end], *(written[key] for key in keys), head[end:]])


def _batches(
    entries: dict[tuple[object, ...], Entry],
) -> Iterator[dict[tuple[object, ...], Entry]]:
    """`entries` in batches of at most WRITE_BATCH_BYTES of bodies (an entry larger than
    that alone): a week's roundup is megabytes, and a document of ten of them, written
    whole, would be held twice over (the tree, the bytes) beside their slices."""
    batch: dict[tuple[object, ...], Entry] = {}
    size = 0
    for key, entry in entries.items():
        if batch and size + len(entry.html) > WRITE_BATCH_BYTES:
            yield batch
            batch, size = {}, 0
        batch[key] = entry
        size += len(entry.html)
    if batch:
        yield batch


def render_rss(view: FeedView, settings: Settings) -> bytes:
    return _spliced("rss", view, settings, _whole_rss)


def render_atom(view: FeedView, settings: Settings) -> bytes:
    return _spliced("atom", view, settings, _whole_atom)


def _iso(when: datetime) -> str:
    return when.isoformat()


def _json_document(view: FeedView, settings: Settings, items: list[Any]) -> bytes:
    """JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/) with these items."""
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": view.title,
        "home_page_url": view.html_url,
        "feed_url": self_url(view, settings, "json"),
        "description": view.description,
        "language": settings.language,
        "authors": [{"name": settings.author}],
        "icon": settings.icon_url,
        "favicon": settings.icon_url,
        **({"hubs": [{"type": "WebSub", "url": hub} for hub in settings.advertised_hubs]}
           if settings.advertised_hubs else {}),
    }  # fmt: skip
    if view.page < view.last_page and not view.history.archive:
        feed["next_url"] = feed_url(settings, view.name, "json", view.page + 1)
    history = {
        **({"complete": True} if view.history.complete else {}),
        **({"archive": True} if view.history.archive else {}),
        **{rel.replace("-", "_"): href for rel, href in _paging_links(view, settings, "json")
           if rel in ("current", "prev-archive", "next-archive")},
    }  # fmt: skip
    if history:  # RFC 5005's links and marks, as a JSON Feed extension
        feed["_feed_history"] = {"about": "https://www.rfc-editor.org/rfc/rfc5005", **history}
    feed["items"] = items  # last: the entries end the document, as in the XML formats
    text: str = json.dumps(feed, ensure_ascii=False, indent=2)
    return text.encode("utf-8") + b"\n"


def _json_item(entry: Entry) -> dict[str, Any]:
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
        item["tags"] = list(dict.fromkeys(label for _term, label, _ in entry.categories))
    if entry.image:
        item["image"] = entry.image
    return item


def _whole_json(view: FeedView, settings: Settings) -> bytes:
    return _json_document(view, settings, [_json_item(entry) for entry in view.entries])


#: The stand-in item of a JSON document's head: a string no item can be (JSON escapes
#: the control character), where the items' bytes go.
_JSON_STAND_IN = "\x00feedsvc-items"
_JSON_MARK = json.dumps(_JSON_STAND_IN).encode()
_JSON_INDENT = "\n    "  # an item's lines in the document: two levels deep


def render_json(view: FeedView, settings: Settings) -> bytes:
    """JSON Feed 1.1, each item written once (`_spliced`): JSON strings hold no line
    breaks, so an item written alone and indented two levels is its bytes in any feed."""
    if not view.entries:
        return _whole_json(view, settings)
    items = []
    for entry in view.entries:
        found: bytes | None = _entries.get(_written_key("json", entry))
        if found is None:
            text = json.dumps(_json_item(entry), ensure_ascii=False, indent=2)
            found = text.replace("\n", _JSON_INDENT).encode("utf-8")
            _entries.put(_written_key("json", entry), found)
        items.append(found)
    head, mark, tail = _json_document(view, settings, [_JSON_STAND_IN]).rpartition(_JSON_MARK)
    assert mark, "the stand-in is in the head"
    between = b"," + _JSON_INDENT.encode()
    pieces = [head]
    for item in items:
        pieces += (item, between)
    pieces[-1] = tail  # the last item's separator
    return b"".join(pieces)


@dataclass(frozen=True, slots=True)
class FeedFormat:
    """One format every feed is published in: how it is served, named and written."""

    name: Format  # also the file suffix: /feeds/<feed>.<name>
    label: str  # its name for people, as in a link's title: "JSON Feed"
    link_text: str  # its name in a list of links: "JSON"
    content_type: str  # as served
    link_type: str  # in a page's <link rel="alternate" type=…>
    render: Callable[[FeedView, Settings], bytes]
    #: What a browser's own navigation to it is sent as (see BROWSER_TYPES), if not the
    #: content type.
    browser_type: str | None = None


#: The formats, in the order pages list them.
FORMATS: dict[str, FeedFormat] = {
    format.name: format
    for format in (
        FeedFormat("atom", "Atom", "Atom", "application/atom+xml; charset=utf-8",
                   "application/atom+xml", render_atom, XML_TYPE),
        FeedFormat("rss", "RSS", "RSS", "application/rss+xml; charset=utf-8",
                   "application/rss+xml", render_rss, XML_TYPE),
        FeedFormat("json", "JSON Feed", "JSON", "application/feed+json; charset=utf-8",
                   "application/feed+json", render_json),
    )
}  # fmt: skip


#: Browsers show a document served as a feed type (or OPML) as plain text, and never
#: apply its style sheet; served as generic XML, the same bytes are laid out by
#: `feed.css`. So a browser's own navigation (`Sec-Fetch-Dest: document`, which feed
#: readers never send) gets that type, and every other request the feed type.
BROWSER_TYPES = {
    **{f.content_type: f.browser_type for f in FORMATS.values() if f.browser_type},
    OPML_TYPE: XML_TYPE,
}


def render_view(format: str, view: FeedView, settings: Settings, report: Report) -> bytes:
    """One page of a feed in one format, behind the fault barrier: if it cannot be
    written, each entry is tried alone, those that fail are reported as their files'
    problems and left out, and the page is written with the rest."""
    renderer = FORMATS[format].render
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
            report(entry.source, found)
        else:
            kept.append(entry)
    return renderer(replace(view, entries=tuple(kept)), settings)


def render_opml(snapshot: Snapshot, settings: Settings) -> bytes:
    """OPML 2.0 listing every feed the site lists (Atom), for a reader to import at once;
    a browser shows it as a list of those feeds and their addresses (`feed.css`: OPML
    has no place for a preview block that validators accept)."""
    opml = etree.Element("opml", version="2.0")
    head = etree.SubElement(opml, "head")
    etree.SubElement(head, "title").text = f"{settings.title} feeds"
    newest = max((i.updated for i in snapshot.items), default=EMPTY_FEED_UPDATED)
    etree.SubElement(head, "dateModified").text = format_datetime(newest.astimezone(UTC))
    etree.SubElement(head, "ownerName").text = settings.author
    listed = [feed for feed in snapshot.feeds.values() if feed.listed]
    body = etree.SubElement(opml, "body")
    # One outline per feed (Atom), so that importing the list subscribes to each feed once.
    for feed in listed:
        etree.SubElement(
            body,
            "outline",
            type="rss",
            text=f"{settings.title}: {feed.label}",
            title=f"{settings.title}: {feed.label}",
            xmlUrl=feed_url(settings, feed.name, "atom"),
            htmlUrl=settings.base_url + feed.html_path,
        )
    document = etree.tostring(opml, encoding="utf-8", xml_declaration=True, pretty_print=True)
    return _styled(document, settings)
