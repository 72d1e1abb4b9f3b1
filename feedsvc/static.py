"""`feedsvc build`: every URL the server answers, written as static files (plus .gz).

The files are fetched through the application itself, so they are byte for byte what
the server sends; docs/deploy.md has the nginx configuration that serves them.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from flask import Flask

from feedsvc import archives, render
from feedsvc.config import Settings
from feedsvc.feeds import feed_path, list_page_path
from feedsvc.model import Snapshot
from feedsvc.store import Store


def urls(snapshot: Snapshot, settings: Settings) -> Iterator[str]:
    """Every document of the site: feeds (every page), pages (every page of a list), the
    OPML."""
    yield from ("/feeds.opml", "/tags/")
    for feed in snapshot.feeds.values():
        for page in range(1, feed.last_page + 1):
            for format in render.FORMATS:
                yield feed_path(feed.name, format, page)
        for archive in archives.weeks(feed, snapshot, settings):
            for format in render.FORMATS:
                yield feed_path(feed.name, format, archive=archive)
    lists = [
        ("/", len(snapshot.items)),
        ("/weekly/", len(snapshot.weeks)),
        *((f"/categories/{c.slug}", len(c.items)) for c in snapshot.categories),
        *((tag.path, len(tag.items)) for tag in snapshot.tags.values()),
    ]
    for first, count in lists:
        for page in range(1, max(1, -(-count // settings.page_size)) + 1):
            yield list_page_path(first, page)
    for folder, name in snapshot.pages:
        if snapshot.page(folder, name) is not None:
            yield f"/items/{folder}/{name}"
    weeks = [*snapshot.weeks, *([snapshot.current_week] if snapshot.current_week else [])]
    for week in dict.fromkeys(weeks):
        yield week.path


def file_for(url: str) -> str:
    """Where a URL is stored: `/` is index.html, `?page=N` goes into the name, pages get .html."""
    path, _, query = url.partition("?")
    path = unquote(path)  # a tag's slug may hold letters of any script
    if path.endswith("/"):
        return path.lstrip("/") + "index.html"
    if query.startswith("page="):
        stem, _, extension = path.rpartition(".")
        return f"{stem.lstrip('/')}.page-{query.removeprefix('page=')}.{extension}"
    if path.startswith("/feeds"):
        return path.lstrip("/")
    return path.lstrip("/") + ".html"


def export(app: Flask, out_dir: Path) -> int:
    """Write every document and its gzip sibling under `out_dir`; return the file count."""
    store: Store = app.extensions["feedsvc"]
    client = app.test_client()
    written = 0
    for url in urls(store.snapshot(), store.settings):
        # One request: the gzip representation the server sends, and the plain bytes it
        # was compressed from (decompressing gives them back exactly).
        zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
        if zipped.status_code != 200:
            raise RuntimeError(f"{url} answered {zipped.status_code}; nothing can be exported")
        target = out_dir / file_for(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.decompress(zipped.data))
        target.with_name(target.name + ".gz").write_bytes(zipped.data)
        written += 2
    return written
