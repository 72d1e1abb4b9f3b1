"""feedsvc: publish a folder of dated item files as RSS, Atom and JSON feeds."""

from __future__ import annotations

__version__ = "0.1.0"

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from feedsvc.config import Settings, load_settings

if TYPE_CHECKING:  # imported by create_app: `feedsvc serve` needs none of it (feedsvc.cli)
    from flask import Flask

    from feedsvc.store import Clock

log = logging.getLogger(__name__)

__all__ = ["Settings", "__version__", "create_app", "load_settings"]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    watch: bool = True,
    warm: bool = True,
    listening: tuple[str, int] | None = None,
) -> Flask:
    """Application factory: one app, one store, one snapshot loaded before the first request.

    `settings` defaults to `feedsvc.toml` plus `FEEDSVC_*`; `clock` to the system clock.
    With `watch`, a thread in this process reloads the items when files change, so each
    gunicorn worker (each builds its own app) stays live without a restart, and a feed a
    change made out of date is rendered again by another thread; a request waits for it
    a quarter of a second at most, then gets the previous bytes. With `warm`, the first
    page of every listed feed is rendered before the first request (a static build, which
    renders every document itself, goes without).

    `listening` is the (host, port) the server will listen on: `feedsvc serve` passes its
    own, and under `flask run` it is read from that command's options. Without `base_url`
    in the configuration, links and ids are made from it; the address is known before the
    first render, and every gunicorn worker gets the same (the same call's arguments).
    """
    from flask import Flask

    from feedsvc import config, hub, lifecycle, web, websub
    from feedsvc.documents import Document, Documents
    from feedsvc.feeds import feed_url
    from feedsvc.model import FeedKey
    from feedsvc.store import Store, system_clock
    from feedsvc.watch import Watcher

    if not logging.getLogger().handlers:  # under gunicorn or flask run: log to stderr
        logging.basicConfig(level=logging.INFO, format="[%(process)d] %(levelname)s %(message)s")
    scheme = "http"
    if listening is None and (flask_run := _flask_run()) is not None:
        listening, scheme = flask_run
    if settings is None:
        for unknown in config.unknown_variables():
            log.warning("%s", unknown)
        url = config.listening_url(*listening, scheme) if listening else None
        settings = load_settings(listening=url)
    log.info("base_url: %s", settings.base_url)
    loopback = config.loopback_warning(settings, listening[0]) if listening else None
    if loopback:
        log.warning("%s", loopback)
    store = Store(settings, clock or system_clock)
    documents = Documents(
        settings,
        store.cache,
        store.bodies,
        store.current,
        refresh_off_requests=watch,
        clock=store.clock,
    )
    snapshot = store.reload()
    if warm:
        started = time.perf_counter()
        documents.warm(snapshot)  # so that no request waits for a first render
        log.info(
            "first pages of every feed ready in %.0f ms", (time.perf_counter() - started) * 1e3
        )
    app = Flask(__name__, static_folder=None)
    web.register(app, store, documents)
    after_reload = None
    told: list[Callable[[str, Document], None]] = []  # of each first page that changes
    if settings.websub_hubs:
        publisher = websub.Publisher(settings.websub_hubs)
        told.append(lambda topic, _: publisher.changed(topic))
        app.extensions["feedsvc.publisher"] = publisher
    if settings.websub_hub:
        own = hub.Hub(settings, topics=lambda url: _is_topic(app, url))
        told.append(lambda topic, doc: own.changed(topic, doc.body, doc.content_type))
        app.extensions["feedsvc.hub"] = own
    if told:

        def on_change(key: FeedKey, document: Document) -> None:
            topic = feed_url(settings, key.name, key.format)
            for tell in told:
                tell(topic, document)

        documents.on_change = on_change
        documents.render_changed(snapshot)  # the signatures changes are told against
        after_reload = documents.render_changed
    if watch:
        app.extensions["feedsvc.watcher"] = Watcher(store, after_reload=after_reload).start()
    # Fork hooks (feedsvc.lifecycle) run in registration order before a fork and in
    # reverse after it: the watcher (registered as it starts) restarts in a child only
    # once the store's reloads are allowed again, and no render is under way while the
    # store closes its cache connection.
    lifecycle.register(documents)
    lifecycle.register(store)
    return app


def _is_topic(app: Flask, url: str) -> bool:
    from feedsvc import web

    with app.app_context():
        return web.is_topic(url)


def _flask_run() -> tuple[tuple[str, int], str] | None:
    """The address `flask run` is about to listen on, and its scheme, from that command's
    own options (--host, --port, --cert, or FLASK_RUN_HOST and FLASK_RUN_PORT): Flask
    loads the app inside the command, before its server opens the socket, and tells the
    app neither. Not the Host header of a request, which a client chooses; and known
    before the first render, which a request's WSGI environ would not be."""
    import click
    from flask.cli import run_command

    context = click.get_current_context(silent=True)
    if context is None or context.command is not run_command:
        return None
    host, port = context.params.get("host"), context.params.get("port")
    if not isinstance(host, str) or not isinstance(port, int) or not 0 < port < 65536:
        return None  # port 0: the system picks one, after this
    return (host, port), "https" if context.params.get("cert") else "http"
