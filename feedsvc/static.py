"""`feedsvc build`: every URL the server answers, written as static files (plus .gz).

The files are made from what the server sends from (feed documents from `Documents`,
the other pages through the application), so they are byte for byte what the server
sends. Every URL is the path of its file (`file_for`), so any static host serves the
folder as it is, with no rewrites; beside the documents go the site's 404 page, the style
sheet and icons, and a `_headers` file with the content types a host cannot guess from
the suffix (docs/deploy.md). The work is spread over the cores (`parallel`);
every body is sanitised once, before, into the cache a server shares.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from flask import Flask
from flask.testing import FlaskClient

from feedsvc import archives, memory, parallel, render
from feedsvc.config import Settings
from feedsvc.documents import (
    Documents,
    compress,
    item_page_signature,
    item_pages_signature,
    page_signature,
    versions,
)
from feedsvc.feeds import TAG_PREFIX, feed_path, list_page_path
from feedsvc.model import FeedKey, Item, Snapshot, Week
from feedsvc.store import Store
from feedsvc.web import CORS, DocumentResponse

#: What a document's signature is worked out from: a feed document's key, an item page's
#: (folder, name), the text of what an HTML list shows (`Shown`), or None for a document
#: that is rendered every build (the OPML, the tags' index).
Source = FeedKey | tuple[str, str] | str | None


def urls(snapshot: Snapshot, settings: Settings) -> Iterator[str]:
    """Every document of the site: feeds (every page), pages (every page of a list), the
    OPML."""
    return (url for url, _ in documents_of(snapshot, settings))


def documents_of(
    snapshot: Snapshot, settings: Settings, skip: Collection[str] = ()
) -> Iterator[tuple[str, Source]]:
    """Every document's URL with what its signature follows from (but those of the
    groups in `skip`: `group_of`); the formats of one feed page come together (they
    share the page's entries)."""
    yield "/feeds.opml", None
    yield "/tags/", None
    # The roundups' documents first, with the weeks' pages: each holds every body of a
    # week, so they are the largest by far (tens of megabytes a page at 100,000 items)
    # and share no entry with another feed. Together at the front of the work, they go
    # to one process (`parallel` hands out work from the front and the back), so no two
    # processes hold one at once. The rest newest first, feeds and pages alike: the
    # documents that show the same items (a week's in the feed of everything, its
    # archive, their categories' and tags', the lists and the items' own pages) come
    # one after another, so each entry is written once while they are rendered
    # (`render`), and each body read once while it is held (`Bodies.hold_at_most`).
    documents: list[tuple[bool, float, str, Source]] = []
    for feed in snapshot.feeds.values():
        if _feed_group(feed.name) in skip:
            continue
        roundups = feed.kind == "weekly"
        entries, size = feed.entries, feed.page_size
        for page in range(1, feed.last_page + 1):
            newest = _newest(entries[(page - 1) * size]) if entries else math.inf
            for format in render.FORMATS:
                key = FeedKey(feed.name, format, page)
                documents.append((not roundups, -newest, feed_path(feed.name, format, page), key))
        found = archives.archives_of(feed, snapshot, settings)
        for archive in found.weeks:
            newest = _newest(entries[found.spans[archive][0]])
            for format in render.FORMATS:
                key = FeedKey(feed.name, format, archive=archive)
                path = feed_path(feed.name, format, archive=archive)
                documents.append((not roundups, -newest, path, key))
    weeks = [*snapshot.weeks, *([snapshot.current_week] if snapshot.current_week else [])]
    for week in dict.fromkeys(weeks):
        documents.append((False, -_newest(week), week.path, "week " + versions([week])))
    for url, shown, newest in _lists(snapshot, settings):
        documents.append((True, -newest, url, shown))
    for folder, name in snapshot.pages:
        item = snapshot.page(folder, name)
        if item is not None and _items_group(folder) not in skip:
            documents.append((True, -_newest(item), item.path, (folder, name)))
    documents.sort(key=lambda document: document[:2])  # stable: a page's formats together
    for _, _, url, source in documents:
        yield url, source


def _newest(entry: Item | Week) -> float:
    """When an entry of a feed (an item, or a week's roundup) was published."""
    return (entry.items[-1] if isinstance(entry, Week) else entry).published.timestamp()


def _lists(snapshot: Snapshot, settings: Settings) -> Iterator[tuple[str, str, float]]:
    """Every page of every HTML list, each with the text of everything it shows besides
    the settings and the code: its place among the pages, its entries' versions and the
    counts and names its template writes (the templates in `feedsvc/templates`; a value
    a list template shows must be here too, or a rebuild could keep a stale page); and
    when its newest entry was published."""

    def weeks_shown(weeks: Sequence[Week]) -> str:
        return repr([(week.name, len(week.items), week.complete) for week in weeks])

    front = repr(
        (
            [(c.slug, c.name, len(c.items)) for c in snapshot.categories],
            snapshot.current_week not in snapshot.weeks and snapshot.current_week,
            weeks_shown(snapshot.weeks[:5]),
            len(snapshot.weeks) > 5,
        )
    )
    lists: list[tuple[str, Sequence[Item] | Sequence[Week], str]] = [
        ("/", snapshot.items, ""),
        ("/weekly/", snapshot.weeks, ""),
        *((c.path, c.items, repr((c.name, len(c.items)))) for c in snapshot.categories),
        *(
            (t.path, t.items, repr((t.name, len(t.items), TAG_PREFIX + t.slug in snapshot.feeds)))
            for t in snapshot.tags.values()
        ),
    ]
    size = settings.page_size
    for first, entries, about in lists:
        last = max(1, -(-len(entries) // size))
        for page in range(1, last + 1):
            shown = entries[(page - 1) * size : page * size]
            weekly = first == "/weekly/"
            listed = weeks_shown(shown) if weekly else versions(shown)  # type: ignore[arg-type]
            extra = front if first == "/" and page == 1 else about
            text = f"list {first} {page}/{last} {listed} {extra}"
            yield list_page_path(first, page), text, _newest(shown[0]) if shown else math.inf


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


#: Under `cache_dir`: every signed document a build rendered, plain and gzip, named by its
#: signature. A build links a document's files from here into its folder (a hard link,
#: so the bytes are on disk once; a copy across file systems), which makes a build into
#: an empty folder with a warm cache a matter of links. The exported files are therefore
#: the stored ones: edit them in place and the next build would link the edited bytes
#: (replacing a file, as rsync and every deploy tool do, is fine). After each build the
#: store keeps only what that build or another folder (a second link) still uses.
STORE = "documents"
#: What the last build wrote, a line a file: "signature<TAB>path", and "<TAB>group
#: signature" after it for a document of a group (`group_of`). A group whose signature
#: is unchanged keeps its documents and their signatures without working them out again.
MANIFEST = ".feedsvc-build"
#: Bytes of what a feed page's formats share while they render (its entries' bodies) that
#: each exporting process holds: a dense weekly page's are tens of megabytes.
EXPORT_MEMO_BYTES = 64 * 1024 * 1024
#: Written entries (bytes) and rendered bodies that each exporting process holds for the
#: documents that show them: fewer than a server holds, for the documents come newest
#: first (`documents_of`), so those that share an entry or a body come close together.
EXPORT_ENTRY_BYTES = 16 * 1024 * 1024
EXPORT_BODIES = 2048


@dataclass(frozen=True)
class Written:
    """What a build did to its folder."""

    changed: int  # files written (new, or with other bytes than before)
    kept: int  # files already there with the same bytes: not touched, mtime and all
    removed: int  # files an earlier build wrote whose document is gone
    rendered: int = 0  # documents rendered; the others were known unchanged by signature
    #: Seconds each part took: "bodies" (sanitising), "documents" (rendering, writing,
    #: and removing what the store holds that no build uses any more).
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Outcome:
    file: str
    signature: str  # "" when the document has none (rendered every build)
    changed: int
    kept: int
    rendered: bool
    group_signature: str = ""  # the signature of its group (`group_of`), if it has one


@dataclass(frozen=True)
class _Job:
    """What every exporting process shares (inherited through fork, never pickled)."""

    app: Flask
    out_dir: Path
    before: dict[str, str]  # file -> signature, from the last build's manifest
    before_groups: dict[str, str]  # file -> its group's signature, from the same
    stored: Path | None  # the rendered documents by signature (`STORE`), if there is a cache
    group_signatures: dict[str, str]  # each group's, now
    present: set[str]  # the documents of `before` whose two files the folder has


_job: _Job | None = None


def export(app: Flask, out_dir: Path) -> Written:
    """Write every document and its gzip sibling under `out_dir`.

    The bodies are rendered first, each once, spread over the cores (and kept in the
    cache); then the documents are written, spread over the cores. A document whose
    signature (what its bytes follow from) is the one the last build wrote is not
    rendered again, nor one the store (`STORE`) holds, which is linked from there. A
    rebuild into the same folder leaves a file whose bytes did not change untouched,
    writes each changed one atomically (a reader of the folder never sees half a file),
    and removes the files an earlier build wrote that no document has now (and only
    those: the manifest lists them, so other files are left alone).
    """
    global _job
    memory.map_large_blocks()  # documents of megabytes come and go by the thousand
    store: Store = app.extensions["feedsvc"]
    snapshot = store.snapshot()
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    before, before_groups = _read_manifest(manifest)
    started = time.perf_counter()
    store.render_bodies()
    seconds = {"bodies": time.perf_counter() - started}
    started = time.perf_counter()
    documents: Documents = app.extensions["feedsvc.documents"]
    documents.track_modified = False
    documents.asked_once(EXPORT_MEMO_BYTES)
    render.hold_entries(EXPORT_ENTRY_BYTES)
    store.bodies.hold_at_most(EXPORT_BODIES)
    store.cache.close()  # an SQLite connection must not be used on both sides of a fork
    cache_dir = store.settings.cache_dir
    stored = cache_dir / STORE if cache_dir is not None else None
    now = group_signatures(documents, snapshot, store.settings)
    present = _present(out_dir, before)
    unchanged = _unchanged_groups(present, before_groups, now)
    _job = _Job(app, out_dir, before, before_groups, stored, now, present)
    try:
        tasks = list(documents_of(snapshot, store.settings, skip=unchanged.keys()))
        outcomes: list[_Outcome] = []
        if present:  # a rebuild: most documents are known unchanged by signature alone
            outcomes, tasks = _sorted_out(tasks)
        outcomes += parallel.map_in_processes(_export_one, tasks)
    finally:
        _job = None
    files = {outcome.file: outcome.signature for outcome in outcomes}
    files |= {outcome.file + ".gz": outcome.signature for outcome in outcomes}
    groups = {o.file: o.group_signature for o in outcomes if o.group_signature}
    changed = sum(o.changed for o in outcomes)
    kept = sum(o.kept for o in outcomes)
    for group, names in unchanged.items():  # kept whole, as the manifest lists them
        for name in names:
            files[name] = files[name + ".gz"] = before[name]
            groups[name] = now[group]
        kept += 2 * len(names)
    for relative, data in site_files(app.test_client(), store.settings):
        files[relative] = ""
        if _write(out_dir / relative, data):
            changed += 1
        else:
            kept += 1
    removed = 0
    for relative in sorted(before.keys() - files.keys()):
        gone = out_dir / relative
        if gone.is_file() and out_dir.resolve() in gone.resolve().parents:
            gone.unlink()
            removed += 1
            _prune_folders(gone.parent, out_dir)
    if stored is not None:
        used = set(files.values())
        if before:  # what this folder's last build used that this one does not
            replaced = {(before[name], name) for name in before.keys() - files.keys()}
            # Of the documents kept, only those signed anew (the rest are in `used`).
            replaced |= {
                (before[o.file], o.file)
                for o in outcomes
                if before.get(o.file, o.signature) != o.signature
            }
            _prune_store(stored, used, {(sig, name) for sig, name in replaced if sig})
        else:  # a first build into this folder: look at the whole store
            _prune_store(stored, used)
    lines = "".join(
        f"{signature}\t{relative}\t{groups[relative]}\n"
        if relative in groups
        else f"{signature}\t{relative}\n"
        for relative, signature in sorted(files.items())
    )
    _write(manifest, lines.encode())
    seconds["documents"] = time.perf_counter() - started  # the store's pruning with them
    return Written(
        changed=changed,
        kept=kept,
        removed=removed,
        rendered=sum(o.rendered for o in outcomes),
        seconds=seconds,
    )


def _read_manifest(manifest: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What the last build into this folder wrote: file -> signature ("" for none), and
    file -> its group's signature (for a document of a group)."""
    try:
        text = manifest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, {}
    before, groups = {}, {}
    distinct: dict[str, str] = {}  # a group's signature once, not once per document
    for line in text.splitlines():
        signature, tab, rest = line.partition("\t")
        if not tab:  # a manifest of paths alone
            before[line] = ""
            continue
        relative, tab, group = rest.partition("\t")
        before[relative] = signature
        if group:
            groups[relative] = distinct.setdefault(group, group)
    return before, groups


def group_of(source: Source) -> str:
    """The group a document is kept with: a feed's documents (its pages and archives in
    every format), and the item pages of a folder. A group's signature covers what
    each of its documents' does (`group_signatures`): while it stays the same, so do
    they. "" for a document of no group."""
    if isinstance(source, FeedKey):
        return _feed_group(source.name)
    if isinstance(source, tuple):
        return _items_group(source[0])
    return ""


def _feed_group(name: str) -> str:
    return "feed " + name


def _items_group(folder: str) -> str:
    return "items " + folder


def group_signatures(
    documents: Documents, snapshot: Snapshot, settings: Settings
) -> dict[str, str]:
    """Every group's signature (`group_of`), by group."""
    signatures = {
        _feed_group(name): documents.feed_signature(snapshot, name) for name in snapshot.feeds
    }
    folders: dict[str, list[Item]] = {}
    for folder, name in snapshot.pages:
        item = snapshot.page(folder, name)
        if item is not None:
            folders.setdefault(folder, []).append(item)
    for folder, items in folders.items():
        signatures[_items_group(folder)] = item_pages_signature(folder, items, settings)
    return signatures


def _unchanged_groups(
    present: set[str], before_groups: dict[str, str], now: dict[str, str]
) -> dict[str, list[str]]:
    """The documents (files) of each group whose signature (`now`) is the one the last
    build recorded, if all of their files are there: the same documents with the same
    signatures, kept as they are without a look at each one. By group."""
    recorded: dict[str, list[str]] = {}  # group signature -> its documents' files
    for name, group in before_groups.items():
        recorded.setdefault(group, []).append(name)
    unchanged = {}
    for group, signature in now.items():
        names = recorded.get(signature, [])
        if names and all(name in present for name in names):
            unchanged[group] = names
    return unchanged


def _present(folder: Path, before: dict[str, str]) -> set[str]:
    """The documents the last build wrote (`before`) whose file and gzip are both in the
    folder; the manifest's own strings, not the listing's, which are a third of a
    million at 100,000 items and go as soon as this returns (a helper process would
    start with them resident)."""
    if not before:
        return set()
    files = _files_in(folder)
    return {name for name in before if name in files and name + ".gz" in files}


def _files_in(folder: Path) -> set[str]:
    """The files under `folder`, by path relative to it: one listing of each folder,
    where asking after each file would cost a call each (tens of thousands)."""
    found: set[str] = set()
    for top, _, names in os.walk(folder):
        relative = Path(top).relative_to(folder).as_posix()  # as the manifest names them
        prefix = "" if relative == "." else relative + "/"
        found.update(prefix + name for name in names)
    return found


def _sorted_out(
    tasks: list[tuple[str, Source]],
) -> tuple[list[_Outcome], list[tuple[str, Source]]]:
    """The outcomes of the documents known unchanged, found here, and the documents left
    to render or link. Telling them apart is quick next to rendering, and after one edit
    it is nearly all a rebuild does: a helper process would cost more to start than it
    saves, and would start with all of this process's memory as its own (at 100,000
    items, half a gigabyte more)."""
    outcomes, left = [], []
    for url, source in tasks:
        known = _known_unchanged(file_for(url), source)
        if known is None:
            left.append((url, source))
        else:
            outcomes.append(known)
    return outcomes, left


def _known_unchanged(name: str, source: Source) -> _Outcome | None:
    """The outcome of the document stored as `name` if it is known unchanged without
    rendering it: its files are there, and its group's signature or its own is the one
    the last build recorded; else None."""
    assert _job is not None
    if name not in _job.present:
        return None
    group = _job.group_signatures.get(group_of(source), "")
    if group and _job.before_groups.get(name) == group:
        return _Outcome(name, _job.before[name], 0, 2, rendered=False, group_signature=group)
    signature = _signature(_job.app, source)
    if signature and _job.before.get(name) == signature:
        return _Outcome(name, signature, 0, 2, rendered=False, group_signature=group)
    return None


def _export_one(document: tuple[str, Source]) -> _Outcome:
    """One document of the export not known unchanged (`export` sorts those out first):
    linked from the store (rendered into it first if it is not there), or without a
    store rendered and written if its bytes changed."""
    assert _job is not None, "export() sets the job before the processes start"
    url, source = document
    name = file_for(url)
    app, out_dir = _job.app, _job.out_dir
    group = _job.group_signatures.get(group_of(source), "")
    signature = _signature(app, source)
    changed = kept = 0
    if signature and _job.stored is not None:
        kept_files, rendered = _place(_job.stored, signature, out_dir, name, url, source)
        return _Outcome(name, signature, 2 - kept_files, kept_files, rendered, group)
    body, gzipped = _fetch(app, url, source)
    for relative, data in ((name, body), (name + ".gz", gzipped)):
        if _write(out_dir / relative, data):
            changed += 1
        else:
            kept += 1
    return _Outcome(name, signature, changed, kept, rendered=True, group_signature=group)


def _store_path(stored: Path, signature: str, name: str) -> Path:
    """A document's plain file in the store (its gzip: the same + ".gz"); the suffix is
    the document's, so that two formats of one page never share a name."""
    return stored / signature[:2] / (signature + Path(name).suffix)


def _place(
    stored: Path, signature: str, out_dir: Path, name: str, url: str, source: Source
) -> tuple[int, bool]:
    """Put a signed document's two files in the folder from the store, rendering them
    into the store first if it does not hold them; (files already there, rendered?)."""
    assert _job is not None
    plain = _store_path(stored, signature, name)
    pairs = ((plain, out_dir / name), (Path(f"{plain}.gz"), out_dir / (name + ".gz")))
    rendered = False
    if not all(source_file.is_file() for source_file, _ in pairs):
        body, gzipped = _fetch(_job.app, url, source)
        _write(plain, body)
        _write(pairs[1][0], gzipped)
        rendered = True
    kept = 0
    for source_file, target in pairs:
        if _same(source_file, target):
            kept += 1
        else:
            _link(source_file, target)
    return kept, rendered


def _same(stored: Path, target: Path) -> bool:
    """Whether `target` already has `stored`'s bytes (the same file, or equal bytes)."""
    try:
        there, ours = target.stat(), stored.stat()
    except OSError:
        return False
    if os.path.samestat(there, ours):
        return True
    return there.st_size == ours.st_size and target.read_bytes() == stored.read_bytes()


def _link(stored: Path, target: Path) -> None:
    """`target` made the stored file at once (a reader sees the old file or the new):
    a hard link, made under a temporary name and moved over `target` if there is one;
    a copy across file systems."""
    try:
        _link_new(stored, target)  # nothing there yet: the link is the file
        return
    except FileExistsError:
        pass
    except OSError:  # another file system, or links not allowed: copy
        _write(target, stored.read_bytes())
        return
    temporary = _temporary(target)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    try:
        os.link(stored, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _link_new(stored: Path, target: Path) -> None:
    """A hard link at `target`, where there is nothing yet, creating its folders if they
    are missing (asked only then: most files of a build go to folders that are there)."""
    try:
        os.link(stored, target)
    except FileNotFoundError:
        if not stored.exists():
            raise
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(stored, target)


def _temporary(target: str | Path) -> str:
    """The name a file is written under before it is moved to `target`: hidden, and of
    this process (two processes never write the same file; `os.replace` moves it)."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def _prune_store(
    stored: Path, used: set[str], candidates: set[tuple[str, str]] | None = None
) -> None:
    """Remove the stored documents this build did not use and no folder links to: of
    `candidates` ((signature, file name) pairs this folder used before), or of the whole
    store when there are none to go by."""
    if candidates is not None:
        for signature, name in candidates:
            if signature not in used:
                plain = _store_path(stored, signature, name)
                _unlink_unlinked(plain)
                _unlink_unlinked(Path(f"{plain}.gz"))
        return
    if not stored.is_dir():
        return
    for folder in os.scandir(stored):
        for entry in os.scandir(folder.path):
            if entry.name.split(".", 1)[0] not in used:
                _unlink_unlinked(Path(entry.path))


def _unlink_unlinked(file: Path) -> None:
    """Remove a stored file no folder has a link to."""
    with contextlib.suppress(OSError):
        if file.stat().st_nlink == 1:
            file.unlink()


def _fetch(app: Flask, url: str, source: Source) -> tuple[bytes, bytes]:
    """A document's bytes and their gzip, as the server sends them: a feed document is
    taken from the documents the feed route serves (which hold both representations),
    any other is asked of the application: its routing, view and request hooks, without
    a client and WSGI around them (a fifth of the cost of an item's page)."""
    if isinstance(source, FeedKey):
        store: Store = app.extensions["feedsvc"]
        documents: Documents = app.extensions["feedsvc.documents"]
        document = documents.feed(store.snapshot(), source)
        if document is not None:
            return document.body, document.gzipped
    with app.test_request_context(url):
        answer = app.full_dispatch_request()
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answered {answer.status_code}; nothing can be exported")
    if isinstance(answer, DocumentResponse):  # both representations, made once
        return answer.document.body, answer.document.gzipped
    body = answer.get_data()
    return body, compress(body)


def _signature(app: Flask, source: Source) -> str:
    """What a document follows from, hashed, when that is known without rendering it
    (feed documents and item pages); "" otherwise."""
    store: Store = app.extensions["feedsvc"]
    snapshot = store.snapshot()
    if isinstance(source, FeedKey):
        documents: Documents = app.extensions["feedsvc.documents"]
        return documents.signature(snapshot, source) or ""
    if isinstance(source, str):
        return page_signature(source, store.settings)
    if source is not None:
        item = snapshot.page(*source)
        return "" if item is None else item_page_signature(item, store.settings)
    return ""


def _write(target: str | Path, data: bytes) -> bool:
    """Put `data` at `target` unless it is there already; whether it wrote."""
    try:
        if os.stat(target).st_size == len(data) and Path(target).read_bytes() == data:
            return False
    except OSError:
        pass  # not there (or unreadable): write it
    temporary = _temporary(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    try:
        fd = os.open(temporary, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(temporary), exist_ok=True)
        fd = os.open(temporary, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # whatever the umask: a web server reads it
            file.write(data)
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
