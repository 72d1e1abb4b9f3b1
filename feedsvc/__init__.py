"""feedsvc: publish a folder of dated item files as RSS, Atom and JSON feeds."""

from __future__ import annotations

__version__ = "0.1.0"

from flask import Flask

from feedsvc.config import Settings, load_settings
from feedsvc.store import Clock, Store, system_clock

__all__ = ["Settings", "__version__", "create_app", "load_settings"]


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> Flask:
    """Application factory: one app, one store, one snapshot loaded before the first request.

    `settings` defaults to `feedsvc.toml` plus `FEEDSVC_*`; `clock` to the system clock.
    """
    from feedsvc import web

    settings = settings or load_settings()
    store = Store(settings, clock or system_clock)
    store.reload()
    app = Flask(__name__)
    web.register(app, store)
    return app
