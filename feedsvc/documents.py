"""Rendered documents: the one place a feed page, an HTML page or the OPML is kept once
rendered, and the only way to ask for one.

    documents.feed(snapshot, FeedKey(name, format, page)) -> Document | None
    documents.page(snapshot, key, content_type, build) -> Document
    documents.warm(snapshot)

Where a document is found, in order:

1. the snapshot's memo (`_State.memo`, typed keys: `FeedKey`, `PageKey`, `_ShownKey`,
   `_ViewKey`, `_ArchivesKey`), which lives as long as the snapshot does (a
   `WeakKeyDictionary`);
2. by signature (a hash of everything its bytes follow from: `signature`), in a
   bounded LRU that outlives snapshots, so a change renders again only the feeds it
   touched;
3. by signature in the persistent cache (SQLite, shared by the workers and kept across
   restarts), first pages only; another worker rendering the same signature is waited
   for (`Cache.claim`), so the workers render it once;
4. rendered now. A document larger than SPILL_BYTES keeps its bytes in the cache only
   and streams them from there for each 200.

After a change, a server's documents (`refresh_off_requests`) render a feed's first
page off the request path, in a thread of their own; a request waits for it at most
`patience` seconds, then is answered with the bytes served before the change (the
previous snapshot's first pages, carried over as `_State.stale`).

Locking: `_lock` guards the map of states and the newest state; each `_State.memo` and
the signature LRU have a lock of their own, held only to read or write one entry, never
while rendering, so two requests may render the same document at once (the memo keeps
one: both are the same bytes). The refresher has its own lock and condition (below).
Before a fork no render may be half done: `before_fork` holds the refresher's `busy`
lock across it, and closes nothing (the cache closes itself: `Cache.close`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache
from typing import Any

from isal import igzip

from feedsvc import archives, render, sanitize
from feedsvc.bodies import Bodies
from feedsvc.cache import Cache, code_digest
from feedsvc.config import Settings
from feedsvc.feeds import feed_path
from feedsvc.memo import Memo
from feedsvc.model import Feed, FeedKey, History, Item, Snapshot, Stream, Week

log = logging.getLogger(__name__)

SPILL_BYTES = 8 * 1024 * 1024  # a rendered document larger than this stays on disk
MEMO_BYTES = 256 * 1024 * 1024  # per snapshot: first pages stay, a crawl evicts the oldest
SIGNATURE_BYTES = 64 * 1024 * 1024  # documents by signature, across snapshots
#: Seconds a request waits for a feed a change made out of date before it is answered
#: with the previous bytes: a feed of everything renders well within it, so every worker
#: serves a new item as soon as it has reloaded, while a dense weekly feed does not hold
#: a request for the whole of its render.
REFRESH_PATIENCE = 0.25


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


#: ISA-L's level 2: about twelve times zlib's level 6 in speed, for output about an eighth
#: larger (docs/benchmarks.md, "gzip"); a static export compresses gigabytes.
GZIP_LEVEL = 2


def compress(body: bytes) -> bytes:
    """gzip, reproducibly (`mtime=0`): the same body always gives the same bytes, in the
    server and in a static export."""
    return igzip.compress(body, GZIP_LEVEL, mtime=0)


def make_document(
    body: bytes,
    content_type: str,
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
        content_type=content_type,
        last_modified=last_modified,
        http_last_modified=(
            format_datetime(last_modified.astimezone(UTC), usegmt=True) if last_modified else ""
        ),
    )


@dataclass(frozen=True, slots=True)
class PageKey:
    """A document that is not a feed page: an HTML page or the OPML, by a name of the
    caller's choosing (its path, say)."""

    name: str


@dataclass(frozen=True, slots=True)
class _ShownKey:
    feed: str
    page: int
    archive: str = ""


@dataclass(frozen=True, slots=True)
class _ArchivesKey:
    feed: str


@dataclass(frozen=True, slots=True)
class _Shown:
    """What one page of one feed shows, shared by its formats: the entries, what they
    follow from (each format's signature is made from it) and their newest update."""

    entries: Sequence[Item] | Sequence[Week]
    versions: str  # what the entries follow from (`versions`)
    last_modified: datetime | None
    history: History = field(default_factory=History)  # its archive links (feedsvc.archives)


@dataclass(frozen=True, slots=True)
class _ViewKey:
    feed: str
    page: int
    archive: str = ""


@dataclass(frozen=True, slots=True)
class _View:
    """A page's entries with their bodies, shared by its formats while they render."""

    view: render.FeedView

    @property
    def size(self) -> int:
        return sum(len(entry.html) for entry in self.view.entries)


@dataclass(eq=False)
class _State:
    """The documents of one snapshot."""

    memo: Memo
    stale: dict[FeedKey, Document]  # first pages served before it, until its own are ready
    renders: Counter[Any] = field(default_factory=Counter)


class Documents:
    """Every rendered document of a store's snapshots (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        cache: Cache,
        bodies: Bodies,
        current: Callable[[], Snapshot | None],
        *,
        refresh_off_requests: bool = False,
        patience: float = REFRESH_PATIENCE,
        memo_bytes: int = MEMO_BYTES,
        spill_bytes: int = SPILL_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[FeedKey, Document], None] | None = None,
    ) -> None:
        """`current` is the store's newest snapshot: only its documents are rendered off
        the request path. With `refresh_off_requests` (a server's documents) a request
        for a first page a change made out of date waits at most `patience` seconds."""
        self.settings = settings
        self.cache = cache
        self.bodies = bodies
        self.current = current
        self.render_count = 0  # feed pages actually rendered (not found by signature)
        self.memo_bytes = memo_bytes
        self.spill_bytes = spill_bytes
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[Snapshot, _State] = weakref.WeakKeyDictionary()
        self._newest: _State | None = None
        self._signatures = Memo(SIGNATURE_BYTES)
        self._hold = True  # keep documents to answer again (`asked_once` turns it off)
        #: Seconds a request waits for a render off the request path (may be changed).
        self.patience = patience
        self._refresher = _Refresher(self) if refresh_off_requests else None
        self.clock = clock
        #: Told of each live feed's first page whose bytes this process saw change first
        #: (of all the workers over one persistent cache): the WebSub publisher.
        self.on_change = on_change
        #: When each path took its bytes, for a process without a persistent cache.
        self._modified: dict[str, tuple[str, int]] = {}
        #: Whether `dated` records when each path's bytes changed (HTTP Last-Modified). A
        #: static export sends no headers (a host dates a file by its mtime), so it turns
        #: this off rather than have its processes queue for the cache's write lock.
        self.track_modified = True
        self._published: dict[FeedKey, str] = {}  # first pages' signatures (render_changed)

    # -- forking ---------------------------------------------------------------------------

    def before_fork(self) -> None:
        """No render may be half done in the copy."""
        if self._refresher is not None:
            self._refresher.busy.acquire()

    def after_fork(self, child: bool) -> None:
        if self._refresher is not None:
            self._refresher.after_fork(child)

    # -- the interface ---------------------------------------------------------------------

    def feed(self, snapshot: Snapshot, key: FeedKey) -> Document | None:
        """One page of one feed in one format; None for no such feed, page or format."""
        state = self._state(snapshot)
        missing = object()
        found = state.memo.get(key, missing)
        if found is not missing:
            return found  # type: ignore[no-any-return]
        previous = state.stale.get(key)
        if self._refresher is not None and previous is not None:
            if self._refresher.ask(snapshot, key, lambda: self._fill(snapshot, state, key)):
                found = state.memo.get(key, missing)
            return previous if found is missing else found
        return self._fill(snapshot, state, key)

    def page(
        self,
        snapshot: Snapshot,
        key: PageKey,
        content_type: str,
        build: Callable[[], tuple[bytes, datetime | None]],
        *,
        dated: bool = False,
    ) -> Document:
        """A document that is not a feed page, built at most once per snapshot by
        `build() -> (body, last_modified)`; with `dated`, its Last-Modified is when its
        bytes changed (`dated`), as a feed's is, rather than what `build` says."""
        state = self._state(snapshot)
        found: Document | None = state.memo.get(key)
        if found is None:
            state.renders[key] += 1
            body, last_modified = build()
            found = make_document(body, content_type, last_modified)
            if dated:
                found, _ = self.dated(key.name, found)
            if self._hold:
                state.memo.put(key, found)
        return found

    def dated(self, path: str, document: Document) -> tuple[Document, bool]:
        """`document` with the Last-Modified of its bytes at `path`: when they were first
        served (the persistent cache's answer, the same in every worker and after a
        restart), always later than that of any bytes served there before. So it moves
        whenever the bytes do (an edit, an item added with an earlier date, a removal, an
        item coming due), never goes back, and If-Modified-Since alone never matches
        bytes a client has not seen. Also whether this process saw that change first."""
        if not self.track_modified:
            return document, False
        now = int(self.clock().timestamp())
        answer = self.cache.modified(path, document.etag, now)
        if answer is None:  # no persistent cache: this process's own record
            with self._lock:
                etag, before = self._modified.get(path, ("", -1))
                at = before if etag == document.etag else max(now, before + 1)
                changed = etag not in ("", document.etag)
                self._modified[path] = (document.etag, at)
        else:
            at, changed = answer
        when = datetime.fromtimestamp(at, UTC)
        if document.last_modified == when:
            return document, changed
        http_date = format_datetime(when, usegmt=True)
        return replace(document, last_modified=when, http_last_modified=http_date), changed

    def asked_once(self, memo_bytes: int) -> None:
        """From now on each document is asked for once (a static export writes it and
        moves on): none is held to answer again, per snapshot or by signature, and only
        what a page's formats share while they render (what it shows, its bodies) is
        kept, in at most `memo_bytes` per snapshot."""
        self.memo_bytes = memo_bytes
        with self._lock:
            self._hold = False
            for state in list(self._states.values()):
                state.memo.max_bytes = memo_bytes

    def renders(self, snapshot: Snapshot) -> Counter[Any]:
        """How many times each document of `snapshot` was built (found by signature or
        rendered), for /healthz and the tests."""
        return self._state(snapshot).renders

    def signature(self, snapshot: Snapshot, key: FeedKey) -> str | None:
        """The signature `key`'s document is kept under (None: no such document)."""
        shown = self._shown(snapshot, self._state(snapshot), key)
        return None if shown is None else self._signature(snapshot, key, shown)

    def feed_signature(self, snapshot: Snapshot, name: str) -> str:
        """What every document of one feed (each page and archive, in each format)
        follows from, hashed: while it stays the same, so does each of their signatures.
        It stands for the inputs of each of them (`signature`): all of the feed's entries,
        its pages and the week in progress (which settle its archives and links)."""
        feed = snapshot.feeds[name]
        parts = (
            code_digest(),
            name,
            feed.last_page,
            feed.page_size,
            archives.open_week_start(snapshot, self.settings),
            _output_key(self.settings),
            versions(feed.entries),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def held(self, snapshot: Snapshot) -> Counter[str]:
        """Bytes `snapshot`'s memo holds, by kind: "feeds", "pages" (HTML, OPML) and
        "views" (a page's entries with their bodies, kept while its formats render)."""
        kinds = {FeedKey: "feeds", PageKey: "pages", _ViewKey: "views"}
        held: Counter[str] = Counter()
        for key, value in self._state(snapshot).memo.items():
            kind = kinds.get(type(key))
            if kind is not None:
                held[kind] += getattr(value, "size", 0)
        return held

    def stale(self, snapshot: Snapshot) -> set[FeedKey]:
        """The first pages `snapshot` can answer with from before it, until its own are
        ready."""
        return set(self._state(snapshot).stale)

    def warm(self, snapshot: Snapshot) -> None:
        """Render the first page of every listed feed in every format now, before any request
        asks. The bodies they need are rendered first, all together (spread over the
        cores), rather than one by one inside each feed's render."""
        state = self._state(snapshot)
        # The feeds the site lists; a tag's feeds (there may be thousands) on first ask.
        listed = [name for name, feed in snapshot.feeds.items() if feed.listed]
        keys = [FeedKey(name, format) for name in listed for format in render.FORMATS]
        needed: dict[str, Item] = {}
        to_view: dict[str, _Shown] = {}
        for key in keys:
            shown = self._shown(snapshot, state, key)
            if shown is None or key in state.memo:
                continue
            signature = self._signature(snapshot, key, shown)
            if signature in self._signatures or self.cache.has_document(signature):
                continue
            to_view[key.name] = shown
            for entry in shown.entries:
                for item in entry.items if isinstance(entry, Week) else (entry,):
                    needed[item.source.path] = item
        with self.bodies.at_hand(needed.values()):
            # A page's formats share its view (a weekly page's roundups): built once first.
            for name, shown in to_view.items():
                self._view(state, snapshot.feeds[name], FeedKey(name, "", 1), shown)
            # gzip, hashing and SQLite release the GIL: with two threads, one feed is
            # compressed while the next is written. The threads end before anything forks.
            with ThreadPoolExecutor(2, thread_name_prefix="warm") as pool:
                for _ in pool.map(lambda key: self._warm_one(snapshot, key), keys):
                    pass
        # The views (with the roundups' HTML) were kept for a page's formats to share; in
        # a preloading master those megabytes would sit in every worker.
        for name in snapshot.feeds:
            state.memo.discard(_ViewKey(name, 1))
        sanitize.prepare()  # a preloading master's thread becomes each worker's serving thread

    def render_changed(self, snapshot: Snapshot) -> None:
        """Render every live feed's first page whose signature changed since the last
        call, so that a change is seen (and told: `on_change`) without waiting for a
        request. The first call only takes note of the signatures. Off the request path:
        the watcher calls it after each reload and when a scheduled change comes due."""
        state = self._state(snapshot)
        first = not self._published
        for name in snapshot.feeds:
            for format in render.FORMATS:
                key = FeedKey(name, format)
                shown = self._shown(snapshot, state, key)
                if shown is None:
                    continue
                signature = self._signature(snapshot, key, shown)
                if self._published.get(key) == signature:
                    continue
                self._published[key] = signature
                if not first and state.memo.get(key, None) is None:
                    try:
                        self._fill(snapshot, state, key)
                    except Exception:
                        log.exception("rendering %s after a change failed", path_of(key))
        for key in self._published.keys() - {
            FeedKey(name, format) for name in snapshot.feeds for format in render.FORMATS
        }:
            del self._published[key]

    def wait_for_refresh(self) -> None:
        """Until the documents requests asked for so far are rendered (for tests)."""
        if self._refresher is not None:
            self._refresher.wait()

    # -- inside ----------------------------------------------------------------------------

    def _state(self, snapshot: Snapshot) -> _State:
        with self._lock:
            state = self._states.get(snapshot)
            if state is None:
                state = _State(Memo(self.memo_bytes), self._carried_over())
                self._states[snapshot] = state
                self._newest = state
            return state

    def _carried_over(self) -> dict[FeedKey, Document]:
        """The newest state's first pages of feeds (and those it still carries), for the
        next snapshot to answer with while its own are rendered.

        First pages only: they are what aggregators poll, a few per feed, whereas a
        crawler's walk through later pages, carried from snapshot to snapshot outside the
        memo's budget, would grow without bound.
        """
        previous = self._newest
        if self._refresher is None or previous is None:
            return {}
        stale = dict(previous.stale)
        for key, document in previous.memo.items():
            if isinstance(key, FeedKey) and key.page == 1 and document is not None:
                stale[key] = document
        return stale

    def _warm_one(self, snapshot: Snapshot, key: FeedKey) -> None:
        """Render one feed ahead of requests; a failure (a bug: files fail alone) is
        logged and left to the first request, and never stops a start-up."""
        try:
            self.feed(snapshot, key)
        except Exception:
            log.exception("rendering %s ahead of requests failed", path_of(key))

    def _fill(self, snapshot: Snapshot, state: _State, key: FeedKey) -> Document | None:
        state.renders[key] += 1
        document = self._build(snapshot, state, key)
        if document is not None:
            document, changed = self.dated(path_of(key), document)
            if changed and key.page == 1 and not key.archive and self.on_change is not None:
                self.on_change(key, document)
        if self._hold or document is None:  # "no such document" weighs nothing
            state.memo.put(key, document)
        return document

    def _build(self, snapshot: Snapshot, state: _State, key: FeedKey) -> Document | None:
        format = render.FORMATS.get(key.format)
        shown = self._shown(snapshot, state, key)
        if shown is None or format is None:
            return None
        feed = snapshot.feeds[key.name]

        def rendered() -> tuple[bytes, bytes]:
            started, cpu_started = time.perf_counter(), time.thread_time()
            view = self._view(state, feed, key, shown)
            body = render.render_view(format.name, view, self.settings, self.bodies.report)
            gzipped = compress(body)
            # First pages render at start-up and after a change; a static export renders
            # thousands of later pages, which would drown the log.
            log.log(
                logging.INFO if key.page == 1 else logging.DEBUG,
                "rendered %s: %d bytes; %.0f ms (%.1f ms CPU)",
                path_of(key), len(body),
                (time.perf_counter() - started) * 1000, (time.thread_time() - cpu_started) * 1000,
            )  # fmt: skip
            return body, gzipped

        # Only live first pages are kept here: they are what a restart serves at once.
        # Later pages and archives would fill the cache with gigabytes (a static export
        # keeps every document in files of its own: `static.STORE`).
        return self._by_signature(
            self._signature(snapshot, key, shown),
            rendered,
            lambda body, gzipped, load: make_document(
                body, format.content_type, shown.last_modified, gzipped, load
            ),
            persist=key.page == 1 and not key.archive,
        )

    def _shown(self, snapshot: Snapshot, state: _State, key: FeedKey) -> _Shown | None:
        """What a feed document shows (a page, or an archive), worked out once per
        snapshot for all of its formats; None for no such feed, page or archive."""
        name, page, week = key.name, key.page, key.archive
        memo_key = _ShownKey(name, page, week)
        found: _Shown | None = state.memo.get(memo_key)
        if found is None and memo_key not in state.memo:
            feed = snapshot.feeds.get(name)
            entries: Sequence[Item] | Sequence[Week] = ()
            history = History()
            if feed is None:
                pass
            elif week:
                archive = self._archives(snapshot, state, feed).archive(feed, week)
                if archive is not None:
                    entries, history = archive
            elif 1 <= page <= feed.last_page:
                entries = feed.entries[(page - 1) * feed.page_size : page * feed.page_size]
                if page == 1:
                    history = archives.live_history(feed, snapshot, self.settings)
            if entries or (feed is not None and not week and page == 1):
                newest = max((entry.updated for entry in entries), default=None)
                found = _Shown(entries, versions(entries), newest, history)
            state.memo.put(memo_key, found)
        return found

    def _archives(self, snapshot: Snapshot, state: _State, feed: Feed) -> archives.Archives:
        """A feed's archives, worked out once per snapshot for all of them."""
        memo_key = _ArchivesKey(feed.name)
        found: archives.Archives | None = state.memo.get(memo_key)
        if found is None:
            found = archives.archives_of(feed, snapshot, self.settings)
            state.memo.put(memo_key, found)
        return found

    def _signature(self, snapshot: Snapshot, key: FeedKey, shown: _Shown) -> str:
        last_page = snapshot.feeds[key.name].last_page
        return signature(key, (last_page, shown.history), shown.versions, self.settings)

    def _view(self, state: _State, feed: Feed, key: FeedKey, shown: _Shown) -> render.FeedView:
        """The document's view with its bodies, built once for all of its formats."""
        memo_key = _ViewKey(feed.name, key.page, key.archive)
        found: _View | None = state.memo.get(memo_key)
        if found is None:
            view = render.feed_view(
                feed, key.page, shown.entries, self.settings, self.bodies, shown.history
            )
            found = _View(view)
            state.memo.put(memo_key, found)
        return found.view

    def _by_signature(
        self,
        signature: str,
        rendered: Callable[[], tuple[bytes, bytes]],
        finish: Callable[[bytes, bytes, Callable[[bool], Stream] | None], Document],
        persist: bool,
    ) -> Document:
        """A document by signature: from memory (one a change did not touch), or from the
        persistent cache, or `rendered()` and stored there if `persist`. A document to
        persist is claimed first (`Cache.claim`), so that the workers render it once."""
        document: Document | None = self._signatures.get(signature)
        if document is not None:
            return document
        found = self.cache.document(signature) if persist else None
        if found is None and persist:  # another worker may be rendering it right now
            found = self.cache.claim(signature)
        stored = found is not None
        if found is None:
            stale_before = self.bodies.stale_reads
            try:
                found = rendered()
                self.render_count += 1
                if self.bodies.stale_reads != stale_before:  # a body newer than its version
                    return finish(*found, None)
                stored = persist and self.cache.store_document(signature, *found)
            finally:
                if persist:
                    self.cache.release(signature)
        load = None
        if stored and len(found[0]) + len(found[1]) > self.spill_bytes:

            def load(gzipped: bool) -> Stream:
                stream = self.cache.document_stream(signature, gzipped=gzipped)
                if stream is not None:
                    return stream
                again = rendered()[gzipped]
                return len(again), (again,)

        document = finish(*found, load)
        if self._hold:
            self._signatures.put(signature, document)
        return document


def path_of(key: FeedKey) -> str:
    return feed_path(key.name, key.format, key.page, key.archive)


def signature(key: FeedKey, links: object, versions: str, settings: Settings) -> str:
    """Everything a feed page's bytes follow from, hashed: its key in the persistent cache.

    `versions` stands for the items or weeks shown (`versions`), `links` for what its
    links follow from (the feed's last page, its archives); the code digest covers the
    code that turns them into bytes, and `output_key` the settings that can.
    """
    parts = (code_digest(), key, links, _output_key(settings), versions)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@lru_cache(maxsize=16)
def _output_key(settings: Settings) -> str:
    return settings.output_key()  # a build asks it for each of thousands of signatures


def item_page_signature(item: Item, settings: Settings) -> str:
    """What an item's page follows from: the item (its file and page name) and the code
    and settings that write it."""
    return page_signature("item " + _version(item), settings)


def item_pages_signature(folder: str, items: Sequence[Item], settings: Settings) -> str:
    """What the pages of a folder's items follow from (each of their `item_page_signature`
    inputs)."""
    return page_signature("\n".join(["items " + folder, *map(_version, items)]), settings)


def page_signature(shown: str, settings: Settings) -> str:
    """A page's signature: `shown`, the text of everything the page shows, with the code
    and the settings that write it."""
    hasher = _page_hasher(settings).copy()  # a build signs thousands of pages
    hasher.update(shown.encode())
    signature: str = hasher.hexdigest()
    return signature


@lru_cache(maxsize=16)
def _page_hasher(settings: Settings) -> Any:
    """A hash of the code and the settings that write pages, for `page_signature` to
    copy and go on with (never to update itself). A tuple's repr closes itself, so no
    other code or settings can run on into the text of a page."""
    return hashlib.sha256(repr((code_digest(), _output_key(settings))).encode())


def _version(item: Item) -> str:
    source = item.source
    return f"{source.path}\0{source.digest}\0{source.mtime_ns}\0{item.page}"


def versions(entries: Sequence[Item] | Sequence[Week]) -> str:
    """A digest of what the shown items and weeks follow from, shared by a page's formats.

    An item is a function of its file (path, content digest, mtime: `Source`), the
    settings and the page name the index gives it (`itemfile.parse_item`), so those
    stand for it: hashing them is a fraction of hashing every field's repr.
    """
    lines = []
    for entry in entries:
        if isinstance(entry, Week):
            lines.append(repr((entry.name, entry.end, entry.complete, entry.intro)))
            lines.extend(map(_version, entry.items))
        else:
            lines.append(_version(entry))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


class _Refresher:
    """A thread that renders the first pages requests found out of date, one at a time,
    newest snapshot only; a request waits for its document at most `patience`, then is
    answered from the stale first pages. The thread lives while there is work: idle
    documents hold no thread.

    `lock` guards `jobs`, `asked` and `thread`; `idle` (on `lock`) is notified when the
    thread ends; `busy` is held while a job runs, and across a fork.
    """

    def __init__(self, documents: Documents) -> None:
        self.documents = documents
        self._reset()

    def _reset(self) -> None:
        self.jobs: deque[tuple[Snapshot, FeedKey, Callable[[], object], threading.Event]] = deque()
        # key -> the snapshot it is rendered for, and set when that is done
        self.asked: dict[FeedKey, tuple[Snapshot, threading.Event]] = {}
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.busy = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def after_fork(self, child: bool) -> None:
        if child:  # the parent's thread stays behind: requests here ask again
            self._reset()
        else:
            self.busy.release()

    def ask(self, snapshot: Snapshot, key: FeedKey, job: Callable[[], object]) -> bool:
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
        return asked[1].wait(self.documents.patience)

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
                    if snapshot is self.documents.current():
                        job()
            except Exception:  # a failed render must not stop the others
                log.exception("rendering %s failed; requests render it themselves", path_of(key))
                self.documents._state(snapshot).stale.pop(key, None)
            finally:
                with self.lock:
                    asked = self.asked.get(key)
                    if asked is not None and asked[0] is snapshot:
                        del self.asked[key]
                done.set()  # also when a newer snapshot asked meanwhile
