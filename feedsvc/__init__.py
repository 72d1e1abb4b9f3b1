"""feedsvc: publish a folder of dated item files as RSS, Atom and JSON feeds."""

from __future__ import annotations

__version__ = "0.1.0"

import logging
import time
from typing import TYPE_CHECKING

from feedsvc.config import Settings, load_settings

if TYPE_CHECKING:  # imported by create_app: `feedsvc serve` needs none of it (feedsvc.cli)
    from flask import Flask

    from feedsvc.store import Clock

log = logging.getLogger(__name__)

__all__ = ["Settings", "__version__", "create_app", "load_settings"]


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, watch: bool = True
) -> Flask:
    """Application factory: one app, one store, one snapshot loaded before the first request.

    `settings` defaults to `feedsvc.toml` plus `FEEDSVC_*`; `clock` to the system clock.
    With `watch`, a thread in this process reloads the items when files change, so each
    gunicorn worker (each builds its own app) stays live without a restart, and a feed a
    change made out of date is rendered again by another thread; a request waits for it
    a quarter of a second at most, then gets the previous bytes.
    """
    from flask import Flask

    from feedsvc import lifecycle, web
    from feedsvc.documents import Documents
    from feedsvc.store import Store, system_clock
    from feedsvc.watch import Watcher

    if not logging.getLogger().handlers:  # under gunicorn or flask run: log to stderr
        logging.basicConfig(level=logging.INFO, format="[%(process)d] %(levelname)s %(message)s")
    settings = settings or load_settings()
    store = Store(settings, clock or system_clock)
    documents = Documents(
        settings, store.cache, store.bodies, store.current, refresh_off_requests=watch
    )
    snapshot = store.reload()
    started = time.perf_counter()
    documents.warm(snapshot)  # so that no request waits for a first render
    log.info("first pages of every feed ready in %.0f ms", (time.perf_counter() - started) * 1e3)
    app = Flask(__name__, static_folder=None)
    web.register(app, store, documents)
    if watch:
        app.extensions["feedsvc.watcher"] = Watcher(store).start()
    # Fork hooks (feedsvc.lifecycle) run in registration order before a fork and in
    # reverse after it: the watcher (registered as it starts) restarts in a child only
    # once the store's reloads are allowed again, and no render is under way while the
    # store closes its cache connection.
    lifecycle.register(documents)
    lifecycle.register(store)
    return app
