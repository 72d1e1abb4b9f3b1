"""The Flask blueprint: routes, HTTP semantics and the HTML pages.

A request reads the current snapshot once and asks `Documents` for its document, which
is rendered at most once per snapshot. Polls of a feed's first page, the request
aggregators repeat all day, are answered by `FeedPolls` ahead of Flask's routing, with
the same `answer` the routes use. Templates do no I/O: a view hands each one what it
shows (an item's body, a week's roundup).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from flask import Blueprint, Flask, Request, Response, abort, current_app, render_template, request
from werkzeug.datastructures import Accept
from werkzeug.http import (
    HTTP_STATUS_CODES,
    http_date,
    is_resource_modified,
    parse_accept_header,
    parse_etags,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

from feedsvc import archives, faults, render, weekly
from feedsvc import hub as hub_module
from feedsvc.config import Settings, icon_type
from feedsvc.documents import Document, Documents, PageKey
from feedsvc.feeds import TAG_PREFIX, feed_path, feed_url, list_page_path, split_page
from feedsvc.model import (
    Content,
    FeedKey,
    Item,
    Snapshot,
    Week,
    category_path,
    tag_path,
    tag_slug,
)
from feedsvc.store import Clock, Store

bp = Blueprint("feedsvc", __name__)
PAGE_MAX_AGE = 60
PLAIN = "text/plain; charset=utf-8"
NOSNIFF = [("X-Content-Type-Options", "nosniff")]  # on every response, set where it is made


def store() -> Store:
    return current_app.extensions["feedsvc"]  # type: ignore[no-any-return]


def documents() -> Documents:
    return current_app.extensions["feedsvc.documents"]  # type: ignore[no-any-return]


def settings() -> Settings:
    return store().settings


# -- HTTP semantics ---------------------------------------------------------------------


def accepts_gzip(encodings: Accept) -> bool:
    """True when gzip is acceptable: named with q > 0, or covered by `*` with q > 0."""
    qualities = {value.lower(): quality for value, quality in encodings}
    for name in ("gzip", "x-gzip", "*"):
        if name in qualities:
            return qualities[name] > 0
    return False


def max_age(snapshot: Snapshot, longest: int, clock: Clock) -> int:
    """Never cache past the moment the next scheduled item or roundup goes live."""
    if snapshot.changes_at is None:
        return longest
    return max(0, min(longest, int((snapshot.changes_at - clock()).total_seconds())))


Answer = tuple[int, list[tuple[str, str]], Iterable[bytes]]


def answer(
    environ: WSGIEnvironment, document: Document, cache_seconds: int, link: str = ""
) -> Answer:
    """(status, headers, body) for a GET or HEAD of a memoised document: gzip when the
    client accepts it, 304 (or 412 under If-Match) by Werkzeug's RFC 9110 rules.

    Header values are ready-made strings: this is the path of every poll, so it builds
    no Werkzeug header or response objects (the same rules as `make_conditional`).
    """
    offered = environ.get("HTTP_ACCEPT_ENCODING", "")
    gzipped = ("gzip" in offered or "*" in offered) and accepts_gzip(parse_accept_header(offered))
    etag = f'"{document.gzip_etag}"' if gzipped else f'"{document.etag}"'
    content_type = document.content_type
    vary = "Accept-Encoding"
    if content_type in render.BROWSER_TYPES:
        vary = "Accept-Encoding, Sec-Fetch-Dest"
        if environ.get("HTTP_SEC_FETCH_DEST") == "document":  # a person, in a browser
            content_type = render.BROWSER_TYPES[content_type]
    headers = [
        *NOSNIFF,
        *(CORS if document.content_type in OPEN_TYPES else ()),
        ("Vary", vary),
        *([("Link", link)] if link else []),
        ("Cache-Control", f"public, max-age={cache_seconds}"),
        ("ETag", etag),
        ("Date", http_date()),
    ]
    last_modified = document.http_last_modified or None
    if not is_resource_modified(environ, etag, last_modified=last_modified):
        if not parse_etags(environ.get("HTTP_IF_MATCH")):
            return 304, headers, ()
        failed = b"Precondition failed\n"  # If-Match on a read: Werkzeug's rule
        plain = [("Content-Type", PLAIN), ("Content-Length", str(len(failed)))]
        return 412, headers + plain, (failed,)
    length, body = document.open(gzipped=gzipped)
    headers += [
        *([("Content-Encoding", "gzip")] if gzipped else []),
        *([("Last-Modified", document.http_last_modified)] if last_modified else []),
        ("Content-Type", content_type),
        ("Content-Length", str(length)),
    ]
    return 200, headers, body  # the server leaves it out for HEAD (Werkzeug, FeedPolls)


#: Feeds and the OPML are public documents: a reader in a web page (another origin's
#: script) may fetch them, poll them conditionally and read their validators.
OPEN_TYPES = frozenset({*(f.content_type for f in render.FORMATS.values()), render.OPML_TYPE})
CORS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Expose-Headers", "ETag, Last-Modified, Link"),
]
#: The answer to a preflight: the conditional headers a poll sends are not safelisted.
PREFLIGHT = [
    *CORS,
    ("Access-Control-Allow-Methods", "GET, HEAD"),
    ("Access-Control-Allow-Headers", "If-None-Match, If-Modified-Since, Cache-Control"),
    ("Access-Control-Max-Age", "86400"),
]


def is_open(path: str) -> bool:
    """Whether `path` is a feed or the OPML (what CORS opens to every origin)."""
    return path.startswith("/feeds/") or path == "/feeds.opml"


class DocumentResponse(Response):
    """A response made from a memoised document, which it names: a static export takes
    both of the document's representations from it rather than compressing the body
    again (`static`)."""

    document: Document


def send(document: Document | None, req: Request, cache_seconds: int, link: str = "") -> Response:
    """`answer` as a Flask response; 404 if there is no such document."""
    if document is None:
        abort(404)
    status, headers, body = answer(req.environ, document, cache_seconds, link)
    response = DocumentResponse(body, status, headers)
    response.document = document
    return response


class FeedPolls:
    """WSGI middleware for the request aggregators repeat all day: GET or HEAD of a
    feed's first page (`/feeds/<name>.<format>`, no query). It answers from the memo
    with `answer`, as the `feed` route would, without Flask's request and response
    objects; anything else, an unknown feed included, goes on to Flask."""

    def __init__(self, app: WSGIApplication, feeds: Store, documents: Documents) -> None:
        self.app = app
        self.feeds = feeds
        self.documents = documents

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if (
            path.startswith("/feeds/")
            and environ["REQUEST_METHOD"] in ("GET", "HEAD")
            and not environ.get("QUERY_STRING")
        ):
            key = feed_key(wsgi_text(path[7:]))
            if key is not None:
                snapshot = self.feeds.snapshot()
                document = self.documents.feed(snapshot, key)
                if document is not None:
                    seconds = feed_max_age(snapshot, key, self.feeds)
                    link = link_header(self.feeds.settings, key)
                    status, headers, body = answer(environ, document, seconds, link)
                    start_response(_STATUS[status], headers)
                    if environ["REQUEST_METHOD"] != "HEAD":
                        return body
                    _close(body)
                    return ()
        return self.app(environ, start_response)


def wsgi_text(path: str) -> str:
    """A WSGI path (its bytes as Latin-1 characters) as the text its UTF-8 spells ("" if
    it is not UTF-8: Flask's routing then answers it)."""
    if path.isascii():
        return path
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return ""


def _close(body: Iterable[bytes]) -> None:
    """Close a body that will not be sent (WSGI: the server would have closed it)."""
    close = getattr(body, "close", None)
    if close is not None:
        close()


_STATUS = {code: f"{code} {HTTP_STATUS_CODES[code]}" for code in (200, 304, 412)}


def send_page(
    snapshot: Snapshot,
    template: str,
    page: Callable[[], dict[str, object]] | None = None,
    updated: datetime | None = None,
    **context: object,
) -> Response:
    """An HTML page, rendered once per snapshot like the feeds: `template` with `context`,
    and with what `page()` gives (what it shows that takes work to get, such as a body)."""

    def build() -> tuple[bytes, datetime | None]:
        shown = page() if page is not None else {}
        body = render_template(template, snapshot=snapshot, site=settings(), **context, **shown)
        return body.encode("utf-8"), updated

    key = PageKey(request.path)
    document = documents().page(snapshot, key, render.HTML_TYPE, build)
    return send(document, request, max_age(snapshot, PAGE_MAX_AGE, store().clock))


# -- routes -----------------------------------------------------------------------------


def feed_key(filename: str) -> FeedKey | None:
    """The feed document a path under /feeds/ names: a page (`all.atom`,
    `all/page/2.atom`) or an archive (`all/2020-W40.atom`); None if it names no format
    or no page (a page 1 of its own, `all/page/1.atom`, is not one: `all.atom` is)."""
    name, _, format = filename.rpartition(".")
    if format not in render.FORMATS:
        return None
    feed, page = split_page(name)
    if page is not None:
        return FeedKey(feed, format, page) if page > 1 else None
    feed, week = archives.split(name)
    return FeedKey(feed, format, 1, week)


@lru_cache(maxsize=4096)  # on the path of every poll; the same few feeds, over and over
def link_header(settings: Settings, key: FeedKey) -> str:
    """A feed document's `Link` header: its WebSub hubs and itself (the topic a
    subscriber names)."""
    own = feed_url(settings, key.name, key.format, key.page, key.archive)
    hubs = (f'<{hub}>; rel="hub"' for hub in settings.advertised_hubs)
    return ", ".join([*hubs, f'<{own}>; rel="self"'])


def feed_max_age(snapshot: Snapshot, key: FeedKey, feeds: Store) -> int:
    """How long a feed document may be cached: an archive changes only with its week."""
    longest = archives.ARCHIVE_MAX_AGE if key.archive else feeds.settings.cache_max_age
    return max_age(snapshot, longest, feeds.clock)


@bp.get("/feeds/<path:filename>")
def feed(filename: str) -> Response:
    feeds = store()
    key = feed_key(filename)
    if key is None:
        abort(404)
    if request.query_string:  # `?page=N`, as feed pages were once named: their path now
        asked = request.args.get("page", "1")
        if key.page != 1 or key.archive or not asked.isascii() or not asked.isdigit():
            abort(404)
        return redirect_to(feed_path(key.name, key.format, max(1, int(asked))))
    snapshot = feeds.snapshot()
    document = documents().feed(snapshot, key)
    link = link_header(feeds.settings, key)
    return send(document, request, feed_max_age(snapshot, key, feeds), link)


@bp.get("/feeds.opml")
def opml() -> Response:
    snapshot = store().snapshot()

    def build() -> tuple[bytes, datetime | None]:
        newest = max((i.updated for i in snapshot.items), default=None)
        return render.render_opml(snapshot, settings()), newest

    key = PageKey("/feeds.opml")
    document = documents().page(snapshot, key, render.OPML_TYPE, build, dated=True)
    return send(document, request, max_age(snapshot, settings().cache_max_age, store().clock))


@dataclass(frozen=True, slots=True)
class Pager:
    """Where one page of a paged list stands: newer entries are on the page before
    (`rel="prev"`), older ones on the page after (`rel="next"`)."""

    first_path: str  # the list's own URL, its first page
    page: int
    last_page: int

    def path(self, page: int) -> str:
        return list_page_path(self.first_path, page)

    @property
    def prev_path(self) -> str | None:
        return self.path(self.page - 1) if self.page > 1 else None

    @property
    def next_path(self) -> str | None:
        return self.path(self.page + 1) if self.page < self.last_page else None


def redirect_to(path: str) -> Response:
    """A permanent redirect to one of the site's own URLs (from `base_url`, never from the
    request's Host)."""
    response = Response(status=301, headers=NOSNIFF)
    response.headers["Location"] = settings().base_url + path
    return response


def send_list(
    snapshot: Snapshot,
    template: str,
    first_path: str,
    entries: Sequence[Item] | Sequence[Week],
    page: int | None,
    moved: bool = False,
    **context: object,
) -> Response:
    """A paged list, `page_size` entries a page: page 1 at the list's URL, later pages at
    `…/page/N.html`, 404 past the end. The other spellings of a page (`?page=N`,
    `…/page/1.html`, and with `moved` the address the page had before: `MOVED`)
    redirect to that one. The template gets the page's entries as `shown`, and `pager`."""
    if page is None:
        asked = request.args.get("page")
        if asked is not None:
            if not asked.isascii() or not asked.isdigit() or int(asked) < 1:
                abort(404)
            return redirect_to(list_page_path(first_path, int(asked)))
        page = 1
    elif page == 1:
        return redirect_to(first_path)
    size = settings().page_size
    pager = Pager(first_path, page, max(1, -(-len(entries) // size)))
    if page > pager.last_page:
        abort(404)
    if moved:
        return redirect_to(pager.path(page))
    shown = entries[(page - 1) * size : page * size]
    newest = max((entry.updated for entry in shown), default=None)
    return send_page(snapshot, template, None, newest, shown=shown, pager=pager, **context)


@bp.get("/")
@bp.get("/page/<int(min=1):page>.html")
def index(page: int | None = None, moved: bool = False) -> Response:
    snapshot = store().snapshot()
    listed = [name for name, feed in snapshot.feeds.items() if feed.listed]
    return send_list(snapshot, "index.html", "/", snapshot.items, page, moved, alternates=listed)


@bp.get("/categories/<slug>.html")
@bp.get("/categories/<slug>/page/<int(min=1):page>.html")
def category(slug: str, page: int | None = None, moved: bool = False) -> Response:
    snapshot = store().snapshot()
    found = snapshot.category(slug)
    if found is None:
        abort(404)
    return send_list(
        snapshot, "category.html", found.path, found.items, page, moved,
        category=found, alternates=[slug, "all"],
    )  # fmt: skip


@bp.get("/tags/", strict_slashes=False)  # no redirect: Location would use Host
def tags() -> Response:
    snapshot = store().snapshot()
    newest = max((t.items[0].updated for t in snapshot.tags.values()), default=None)
    return send_page(snapshot, "tags.html", updated=newest, alternates=["all"])


@bp.get("/tags/<slug>.html")
@bp.get("/tags/<slug>/page/<int(min=1):page>.html")
def tag(slug: str, page: int | None = None, moved: bool = False) -> Response:
    snapshot = store().snapshot()
    found = snapshot.tags.get(slug)
    if found is None:
        canonical = tag_slug(slug)  # another spelling of a tag: its one address
        if canonical in snapshot.tags and canonical != slug:
            return redirect_to(tag_path(canonical))
        abort(404)

    return send_list(
        snapshot, "tag.html", found.path, found.items, page, moved,
        tag=found, alternates=[TAG_PREFIX + found.slug, "all"],
    )  # fmt: skip


@bp.get("/items/<category>/<page>.html")
def item(category: str, page: str, moved: bool = False) -> Response:
    feeds = store()
    snapshot = feeds.snapshot()
    found = snapshot.page(category, page)
    if found is None:
        if (category, page) in snapshot.gone:
            abort(410)
        abort(404)
    if moved:
        return redirect_to(found.path)

    def item_page() -> str:
        """The page behind the fault barrier: if it cannot be written with the item's body,
        it is written without, and the file's problem says why."""
        context = {
            "snapshot": snapshot, "site": feeds.settings, "item": found,
            "alternates": [found.category, "all"],
        }  # fmt: skip
        try:
            content = feeds.bodies.content(found)
            return render_template("item.html", content=content, **context)
        except Exception as error:
            path = found.source.path
            feeds.report(path, faults.problem(path, "rendering its page", error))
            return render_template("item.html", content=Content("", ""), **context)

    def build() -> tuple[bytes, datetime | None]:
        return item_page().encode("utf-8"), found.updated

    document = documents().page(snapshot, PageKey(request.path), render.HTML_TYPE, build)
    return send(document, request, max_age(snapshot, PAGE_MAX_AGE, feeds.clock))


@bp.get("/weekly/", strict_slashes=False)  # no redirect: Location would use Host
@bp.get("/weekly/page/<int(min=1):page>.html")
def weeks(page: int | None = None, moved: bool = False) -> Response:
    snapshot = store().snapshot()
    return send_list(
        snapshot, "weeks.html", "/weekly/", snapshot.weeks, page, moved,
        alternates=["weekly", "all"],
    )  # fmt: skip


@bp.get("/weekly/<name>.html")
def week(name: str, moved: bool = False) -> Response:
    snapshot = store().snapshot()
    found = snapshot.week(name)
    if found is None:
        abort(404)
    if moved:
        return redirect_to(found.path)
    bodies = store().bodies

    def roundup() -> dict[str, object]:
        return {"roundup": render.week_html(found, settings(), bodies)}

    return send_page(
        snapshot, "week.html", roundup, updated=found.updated, week=found,
        alternates=["weekly", "all"],
    )  # fmt: skip


#: The addresses the HTML pages had before each page's URL became the name of its file
#: in a static export (`feedsvc.model`): each answers 301 to the page's URL, the
#: `?page=N` forms too, for as long as the page exists; another answers 404 as before.
MOVED: tuple[tuple[str, Callable[..., Response]], ...] = (
    ("/page/<int(min=1):page>", index),
    ("/categories/<slug>", category),
    ("/categories/<slug>/page/<int(min=1):page>", category),
    ("/tags/<slug>", tag),
    ("/tags/<slug>/page/<int(min=1):page>", tag),
    ("/items/<category>/<page>", item),
    ("/weekly/page/<int(min=1):page>", weeks),
    ("/weekly/<name>", week),
)
for _rule, _view in MOVED:  # each under an endpoint of its own: `item_moved`…
    bp.add_url_rule(
        _rule, f"{_view.__name__}_moved", _view, methods=["GET"], defaults={"moved": True}
    )


@dataclass(frozen=True, slots=True)
class Icon:
    """The site's icon as served: read once, at start."""

    data: bytes
    content_type: str

    @classmethod
    def of(cls, settings: Settings) -> Icon | None:
        """The `icon` file, feedsvc's own when none is set; None for an icon elsewhere (a
        URL), which /favicon.ico redirects to."""
        if settings.icon.startswith(("http://", "https://")):
            return None
        if settings.icon:
            path = Path(settings.icon)
            return cls(path.read_bytes(), icon_type(path))
        return cls((resources.files("feedsvc") / "assets" / "icon.png").read_bytes(), "image/png")


ASSET_MAX_AGE = 86_400


def send_asset(data: bytes, content_type: str) -> Response:
    """A file that changes only with a new release or a restart (icon, style sheet)."""
    response = Response(data, content_type=content_type, headers=NOSNIFF)
    response.cache_control.public = True
    response.cache_control.max_age = ASSET_MAX_AGE
    response.set_etag(hashlib.sha256(data).hexdigest()[:32])
    response.make_conditional(request)
    return response


@bp.get("/favicon.ico")
@bp.get("/icon.<suffix>")
def icon(suffix: str = "ico") -> Response:
    site = settings()
    if suffix != "ico" and not site.icon_url.endswith(f"/icon.{suffix}"):
        abort(404)
    found: Icon | None = current_app.extensions["feedsvc.icon"]
    if found is None:
        response = Response(status=302, headers=NOSNIFF)
        response.headers["Location"] = site.icon_url
        return response
    return send_asset(found.data, found.content_type)


FEED_CSS = (resources.files("feedsvc") / "assets" / "feed.css").read_bytes()


@bp.get(render.FEED_CSS_PATH)
def feed_css() -> Response:
    return send_asset(FEED_CSS, "text/css; charset=utf-8")


def is_topic(url: str) -> bool:
    """Whether `url` is a live feed of the current snapshot (what the hub serves)."""
    base = settings().base_url + "/feeds/"
    if not url.startswith(base) or "?" in url or "#" in url:
        return False
    key = feed_key(unquote(url[len(base) :]))
    return key is not None and not key.archive and key.name in store().snapshot().feeds


@bp.post(hub_module.PATH)
def websub_hub() -> Response:
    """The built-in WebSub hub's subscription endpoint (feedsvc.hub)."""
    hub: hub_module.Hub | None = current_app.extensions.get("feedsvc.hub")
    if hub is None:
        abort(404)
    if (request.content_length or 0) > HUB_FORM_BYTES:
        abort(413)
    form = hub_module.parse_form(request.get_data(cache=False)[:HUB_FORM_BYTES])
    status, text = hub.request(form)
    return Response(text, status=status, content_type=PLAIN, headers=NOSNIFF)


HUB_FORM_BYTES = 16 * 1024


@bp.get("/healthz")
def healthz() -> Response:
    feeds = store()
    snapshot = feeds.snapshot()
    problems = feeds.problems(snapshot)
    errors = [p for p in problems if p.severity == "error"]
    failure = feeds.failure
    body: dict[str, object] = {
        # "failing": the last reload failed as a whole, so changes to the folder are not
        # published; what was published before is still served.
        "status": "ok" if failure is None else "failing",
        "items": len(snapshot.items),
        "categories": len(snapshot.categories),
        "weeks": len(snapshot.weeks),
        "files": snapshot.file_count,
        "refused": len({p.path for p in errors}),  # files with an error: not published as is
        "errors": len(errors),
        "warnings": len(problems) - len(errors),
        "documents_rendered": sum(documents().renders(snapshot).values()),
        "reload": {
            "ok": failure is None,
            "failing_since": failure.since.isoformat() if failure else None,
            "last_failure": failure.at.isoformat() if failure else None,
            "error": failure.message if failure else None,
        },
    }
    own_hub: hub_module.Hub | None = current_app.extensions.get("feedsvc.hub")
    if own_hub is not None:
        body["hub"] = {"subscriptions": own_hub.count()}
    response = Response(json.dumps(body) + "\n", content_type="application/json", headers=NOSNIFF)
    response.cache_control.no_store = True
    return response


def register(app: Flask, store_: Store, documents_: Documents) -> None:
    """Attach the store and its documents, the blueprint, the template helpers and the
    common headers."""
    app.extensions["feedsvc"] = store_
    app.extensions["feedsvc.documents"] = documents_
    app.extensions["feedsvc.icon"] = Icon.of(store_.settings)
    app.register_blueprint(bp)
    app.wsgi_app = FeedPolls(app.wsgi_app, store_, documents_)  # type: ignore[method-assign]

    default_options = app.make_default_options_response

    def options_with_nosniff() -> Response:
        response = default_options()
        response.headers.extend(NOSNIFF)
        if is_open(request.path):
            response.headers.extend(PREFLIGHT)
        return response

    app.make_default_options_response = options_with_nosniff  # type: ignore[method-assign]

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(410)
    def error_page(error: Exception) -> Response:
        """The site's own page, with a way home, for an address it has nothing at."""
        code = getattr(error, "code", 404)
        body = render_template(
            "error.html", code=code, site=store_.settings, snapshot=store_.current(),
            alternates=["all"],
        )  # fmt: skip
        response = Response(body, status=code, content_type=render.HTML_TYPE, headers=NOSNIFF)
        if code == 405:
            valid = getattr(error, "valid_methods", None) or ["GET", "HEAD"]
            response.headers["Allow"] = ", ".join(valid)
        return response

    app.jinja_env.globals.update(
        feed_url=lambda name, fmt: feed_url(store_.settings, name, fmt),
        category_path=category_path,
        tag_path=tag_path,
        tag_slug=tag_slug,
        week_title=lambda w: weekly.week_title(w, store_.settings),
        formats=tuple(render.FORMATS.values()),
    )
