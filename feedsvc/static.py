"""`feedsvc build`: every URL the server answers, written as static files (plus .gz).

The files are fetched through the application itself, so they are byte for byte what
the server sends. Every URL is the path of its file (`file_for`), so any static host
serves the folder as it is, with no rewrites; beside the documents go the site's 404
page, the style sheet and icons, and a `_headers` file with the content types a host
cannot guess from the suffix (docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from flask import Flask
from flask.testing import FlaskClient

from feedsvc import archives, render
from feedsvc.config import Settings
from feedsvc.documents import compress
from feedsvc.feeds import feed_path, list_page_path
from feedsvc.model import Snapshot
from feedsvc.store import Store
from feedsvc.web import CORS


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
        *((c.path, len(c.items)) for c in snapshot.categories),
        *((tag.path, len(tag.items)) for tag in snapshot.tags.values()),
    ]
    for first, count in lists:
        for page in range(1, max(1, -(-count // settings.page_size)) + 1):
            yield list_page_path(first, page)
    for folder, name in snapshot.pages:
        item = snapshot.page(folder, name)
        if item is not None:
            yield item.path
    weeks = [*snapshot.weeks, *([snapshot.current_week] if snapshot.current_week else [])]
    for week in dict.fromkeys(weeks):
        yield week.path


def file_for(url: str) -> str:
    """Where a URL is stored: the file its path names (every document's URL is a file's
    name), a folder's URL (`/`, `/weekly/`) its index.html, as a static host looks."""
    path = unquote(url).lstrip("/")  # a tag's slug may hold letters of any script
    return path + "index.html" if path.endswith("/") or not path else path


#: The site's 404 page in the export: what the server sends for an unknown address, which
#: static hosts send for theirs (GitHub Pages, Netlify and Cloudflare Pages by this name;
#: nginx and S3 as configured in docs/deploy.md).
NOT_FOUND = "/404.html"
#: Netlify's and Cloudflare Pages' file of response headers, by URL pattern.
HEADERS = "_headers"


def asset_urls(settings: Settings) -> list[str]:
    """The files the server sends as they are: the feeds' style sheet and the icon (at
    /favicon.ico and its own name; none of the site's when `icon` is a URL elsewhere)."""
    urls = [render.FEED_CSS_PATH]
    if settings.icon_url.startswith(settings.base_url + "/"):
        urls += ["/favicon.ico", settings.icon_url.removeprefix(settings.base_url)]
    return urls


def site_files(client: FlaskClient, settings: Settings) -> Iterator[tuple[str, bytes]]:
    """What a static host needs besides the documents, as (file, bytes): the 404 page,
    the assets, each text file with its .gz, and `_headers`."""
    missing = client.get(NOT_FOUND)
    if missing.status_code != 404:
        raise RuntimeError(f"{NOT_FOUND} answered {missing.status_code}, not the 404 page")
    sent = [(NOT_FOUND, missing)]
    types: dict[str, str] = {}
    for url in asset_urls(settings):
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}; nothing can be exported")
        sent.append((url, response))
        types[url] = response.content_type or ""
    for url, response in sent:
        yield file_for(url), response.data
        if (response.content_type or "").startswith("text/"):
            yield file_for(url) + ".gz", compress(response.data)
    yield HEADERS, headers_file(types).encode()


def headers_file(assets: dict[str, str]) -> str:
    """`_headers`: the content types the server sends, for the feeds and the OPML by
    suffix (hosts know none of them, or `.json` as another) and for each asset by its
    URL (`/favicon.ico` is whatever image the icon is); the header the server sends on
    everything (nosniff) and the ones on feeds (CORS, `feedsvc.web`). Each header is set
    by at most one rule that matches a path: hosts join the values of all that match."""
    cors = [f"{name}: {value}" for name, value in CORS]
    rules = [
        ("/*", ["X-Content-Type-Options: nosniff"]),
        ("/feeds/*", cors),
        ("/feeds.opml", cors),
    ]
    types = {f"/*.{f.name}": f.content_type for f in render.FORMATS.values()}
    types["/*.opml"] = render.OPML_TYPE
    rules += [
        (pattern, [f"Content-Type: {kind}"]) for pattern, kind in {**types, **assets}.items()
    ]
    lines = ["# Response headers for Netlify and Cloudflare Pages, written by `feedsvc build`."]
    for pattern, headers in rules:
        lines += [pattern, *(f"  {header}" for header in headers)]
    return "\n".join(lines) + "\n"


MANIFEST = ".feedsvc-build"  # the files the last build wrote, one path a line


@dataclass(frozen=True)
class Written:
    """What a build did to its folder."""

    changed: int  # files written (new, or with other bytes than before)
    kept: int  # files already there with the same bytes: not touched, mtime and all
    removed: int  # files an earlier build wrote whose document is gone


def export(app: Flask, out_dir: Path) -> Written:
    """Write every document and its gzip sibling under `out_dir`.

    A rebuild into the same folder leaves a file whose bytes did not change untouched,
    writes each changed one atomically (a reader of the folder never sees half a file),
    and removes the files an earlier build wrote that no document has now (and only
    those: the manifest lists them, so other files in the folder are left alone).
    """
    store: Store = app.extensions["feedsvc"]
    client = app.test_client()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    try:
        before = set(manifest.read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        before = set()
    files: set[str] = set()
    changed = kept = 0
    for url in urls(store.snapshot(), store.settings):
        # One request: the gzip representation the server sends, and the plain bytes it
        # was compressed from (decompressing gives them back exactly).
        zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
        if zipped.status_code != 200:
            raise RuntimeError(f"{url} answered {zipped.status_code}; nothing can be exported")
        name = file_for(url)
        for relative, data in ((name, gzip.decompress(zipped.data)), (name + ".gz", zipped.data)):
            files.add(relative)
            if _write(out_dir / relative, data):
                changed += 1
            else:
                kept += 1
    for relative, data in site_files(client, store.settings):
        files.add(relative)
        if _write(out_dir / relative, data):
            changed += 1
        else:
            kept += 1
    removed = 0
    for relative in sorted(before - files):
        gone = out_dir / relative
        if gone.is_file() and out_dir.resolve() in gone.resolve().parents:
            gone.unlink()
            removed += 1
            _prune_folders(gone.parent, out_dir)
    _write(manifest, "".join(f"{relative}\n" for relative in sorted(files)).encode())
    return Written(changed, kept, removed)


def _write(target: Path, data: bytes) -> bool:
    """Put `data` at `target` unless it is there already; whether it wrote."""
    try:
        if target.stat().st_size == len(data) and target.read_bytes() == data:
            return False
    except OSError:
        pass  # not there (or unreadable): write it
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return True


def _prune_folders(folder: Path, top: Path) -> None:
    """Remove `folder` and its parents up to `top` while they are empty."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
