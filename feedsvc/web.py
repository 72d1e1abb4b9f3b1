"""The Flask blueprint: routes, HTTP semantics and the HTML pages.

A request reads the current snapshot once and asks `Documents` for its document, which
is rendered at most once per snapshot. Polls of a feed's first page, the request
aggregators repeat all day, are answered by `FeedPolls` ahead of Flask's routing, with
the same `answer` the routes use. Templates do no I/O: a view hands each one what it
shows (an item's body, a week's roundup).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

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

from feedsvc import faults, render, weekly
from feedsvc.config import Settings
from feedsvc.documents import Document, Documents, PageKey
from feedsvc.feeds import feed_url
from feedsvc.model import Content, FeedKey, Snapshot
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


def answer(environ: WSGIEnvironment, document: Document, cache_seconds: int) -> Answer:
    """(status, headers, body) for a GET or HEAD of a memoised document: gzip when the
    client accepts it, 304 (or 412 under If-Match) by Werkzeug's RFC 9110 rules.

    Header values are ready-made strings: this is the path of every poll, so it builds
    no Werkzeug header or response objects (the same rules as `make_conditional`).
    """
    offered = environ.get("HTTP_ACCEPT_ENCODING", "")
    gzipped = ("gzip" in offered or "*" in offered) and accepts_gzip(parse_accept_header(offered))
    etag = f'"{document.gzip_etag}"' if gzipped else f'"{document.etag}"'
    headers = [
        *NOSNIFF,
        ("Vary", "Accept-Encoding"),
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
        ("Content-Type", document.content_type),
        ("Content-Length", str(length)),
    ]
    return 200, headers, body  # the server leaves it out for HEAD (Werkzeug, FeedPolls)


def send(document: Document | None, req: Request, cache_seconds: int) -> Response:
    """`answer` as a Flask response; 404 if there is no such document."""
    if document is None:
        abort(404)
    status, headers, body = answer(req.environ, document, cache_seconds)
    return Response(body, status, headers)


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
            name, _, format = path[7:].rpartition(".")
            if format in render.FORMATS:
                snapshot = self.feeds.snapshot()
                settings = self.feeds.settings
                document = self.documents.feed(snapshot, FeedKey(name, format))
                if document is not None:
                    seconds = max_age(snapshot, settings.cache_max_age, self.feeds.clock)
                    status, headers, body = answer(environ, document, seconds)
                    start_response(_STATUS[status], headers)
                    if environ["REQUEST_METHOD"] != "HEAD":
                        return body
                    _close(body)
                    return ()
        return self.app(environ, start_response)


def _close(body: Iterable[bytes]) -> None:
    """Close a body that will not be sent (WSGI: the server would have closed it)."""
    close = getattr(body, "close", None)
    if close is not None:
        close()


_STATUS = {code: f"{code} {HTTP_STATUS_CODES[code]}" for code in (200, 304, 412)}


def page_number() -> int:
    """`?page=N` with N a positive whole number; anything else is 404."""
    if not request.query_string:  # the common case: skip parsing the query
        return 1
    value = request.args.get("page", "1")
    if not value.isdigit() or not value.isascii() or int(value) < 1:
        abort(404)
    return int(value)


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


@bp.get("/feeds/<path:filename>")
def feed(filename: str) -> Response:
    name, _, format = filename.rpartition(".")
    if format not in render.FORMATS:
        abort(404)
    feeds = store()
    snapshot = feeds.snapshot()
    document = documents().feed(snapshot, FeedKey(name, format, page_number()))
    return send(document, request, max_age(snapshot, feeds.settings.cache_max_age, feeds.clock))


@bp.get("/feeds.opml")
def opml() -> Response:
    snapshot = store().snapshot()

    def build() -> tuple[bytes, datetime | None]:
        newest = max((i.updated for i in snapshot.items), default=None)
        return render.render_opml(snapshot, settings()), newest

    document = documents().page(snapshot, PageKey("/feeds.opml"), render.OPML_TYPE, build)
    return send(document, request, max_age(snapshot, settings().cache_max_age, store().clock))


@bp.get("/")
def index() -> Response:
    snapshot = store().snapshot()
    newest = max((i.updated for i in snapshot.items), default=None)
    return send_page(snapshot, "index.html", updated=newest)


@bp.get("/categories/<slug>")
def category(slug: str) -> Response:
    snapshot = store().snapshot()
    found = snapshot.category(slug)
    if found is None:
        abort(404)
    newest = max((i.updated for i in found.items), default=None)
    return send_page(snapshot, "category.html", category=found, updated=newest)


@bp.get("/items/<category>/<page>")
def item(category: str, page: str) -> Response:
    feeds = store()
    snapshot = feeds.snapshot()
    found = snapshot.page(category, page)
    if found is None:
        abort(404)

    def item_page() -> str:
        """The page behind the fault barrier: if it cannot be written with the item's body,
        it is written without, and the file's problem says why."""
        context = {"snapshot": snapshot, "site": feeds.settings, "item": found}
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
def weeks() -> Response:
    snapshot = store().snapshot()
    newest = max((w.updated for w in snapshot.weeks), default=None)
    return send_page(snapshot, "weeks.html", updated=newest)


@bp.get("/weekly/<name>")
def week(name: str) -> Response:
    snapshot = store().snapshot()
    found = snapshot.week(name)
    if found is None:
        abort(404)
    bodies = store().bodies

    def roundup() -> dict[str, object]:
        return {"roundup": render.week_html(found, settings(), bodies)}

    return send_page(snapshot, "week.html", roundup, updated=found.updated, week=found)


@bp.get("/healthz")
def healthz() -> Response:
    feeds = store()
    snapshot = feeds.snapshot()
    problems = feeds.problems(snapshot)
    errors = [p for p in problems if p.severity == "error"]
    failure = feeds.failure
    body = {
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
    response = Response(json.dumps(body) + "\n", content_type="application/json", headers=NOSNIFF)
    response.cache_control.no_store = True
    return response


def register(app: Flask, store_: Store, documents_: Documents) -> None:
    """Attach the store and its documents, the blueprint, the template helpers and the
    common headers."""
    app.extensions["feedsvc"] = store_
    app.extensions["feedsvc.documents"] = documents_
    app.register_blueprint(bp)
    app.wsgi_app = FeedPolls(app.wsgi_app, store_, documents_)  # type: ignore[method-assign]

    default_options = app.make_default_options_response

    def options_with_nosniff() -> Response:
        response = default_options()
        response.headers.extend(NOSNIFF)
        return response

    app.make_default_options_response = options_with_nosniff  # type: ignore[method-assign]

    @app.errorhandler(404)
    @app.errorhandler(405)
    def plain_error(error: Exception) -> Response:
        code = getattr(error, "code", 404)
        text = {404: "Not found", 405: "Method not allowed"}[code]
        response = Response(f"{text}\n", status=code, content_type=PLAIN, headers=NOSNIFF)
        if code == 405:
            valid = getattr(error, "valid_methods", None) or ["GET", "HEAD"]
            response.headers["Allow"] = ", ".join(valid)
        return response

    app.jinja_env.globals.update(
        feed_url=lambda name, fmt: feed_url(store_.settings, name, fmt),
        week_title=lambda w: weekly.week_title(w, store_.settings),
        formats=tuple(render.FORMATS.values()),
    )
