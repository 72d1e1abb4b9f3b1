"""A persistent cache (SQLite) that makes a restart cheap: parsed front matter per file
version, rendered bodies per content digest, and the feeds' rendered first pages. It also
keeps what a restart must not forget: when each document's bytes were first served, and
which item pages were ever published (a deleted item's page answers 410 after a restart).

Entries are keyed by what decides them: a parsed file by path, size and mtime; a body by
the file's content digest and its page; a feed page by its signature. A page being
rendered is claimed in the `claims` table, so that the workers render it once. The
whole cache is dropped when its fingerprint changes: feedsvc's own code and templates,
the libraries that shape output (`code_digest`), or a setting that parsing reads
(`Settings.parsing_key`). A cache that cannot be opened is rebuilt, never trusted; a
read or write that fails is a miss or is skipped, and the next one tries again. All
values are JSON or bytes, never pickles, so a tampered cache file cannot run code.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import sys
import threading
import time
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from feedsvc.config import Settings
from feedsvc.model import Content, Intro, Item, ParsedFile, Stream

log = logging.getLogger(__name__)

FILE_NAME = "feedsvc-cache.sqlite3"
CONTENTS_PER_QUERY = 500  # bound parameters in one query: SQLite allows 999 at the least
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parsed (
    path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content (
    digest TEXT NOT NULL, page TEXT NOT NULL, html TEXT NOT NULL, summary TEXT NOT NULL,
    removed TEXT NOT NULL, PRIMARY KEY (digest, page)
);
CREATE TABLE IF NOT EXISTS documents (
    signature TEXT PRIMARY KEY, body BLOB NOT NULL, gzipped BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    signature TEXT PRIMARY KEY, pid INTEGER NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS modified (
    path TEXT PRIMARY KEY, etag TEXT NOT NULL, at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    category TEXT NOT NULL, page TEXT NOT NULL, published INTEGER NOT NULL,
    noted REAL NOT NULL, PRIMARY KEY (category, page)
) WITHOUT ROWID;
"""
SCHEMA_VERSION = 8  # part of the fingerprint: a new schema replaces the old tables
#: Emptied when the fingerprint changes. Not `modified`: a document's bytes and the time
#: they were first served mean the same whatever the code (see `modified`); nor `pages`:
#: a page once public was public, whatever the code (see `published_pages`).
TABLES = ("parsed", "content", "documents", "claims")
#: Rows kept when the cache is opened; older ones (by insertion) are pruned.
KEEP_DOCUMENT_BYTES = 1024**3  # rendered feeds, newest first (a dense weekly feed is 40 MB)
KEEP_CONTENT = 250_000
STREAM_CHUNK = 256 * 1024  # bytes per read of a document sent from the cache
CLAIM_POLL = 0.005  # seconds between looks for a document another process is rendering
CLAIM_PATIENCE = 600.0  # seconds after which a claim is taken over, its process stuck
BUSY_TIMEOUT = 10.0  # seconds to wait for another process's write to finish
#: Libraries whose versions can change a cached value: writing feeds (feedgen, lxml),
#: sanitising (bleach), Markdown (pyromark), front matter and its dates (PyYAML,
#: python-dateutil) and the zone rules dates are resolved by (tzdata).
OUTPUT_LIBRARIES = ("feedgen", "lxml", "bleach", "pyromark", "PyYAML", "python-dateutil", "tzdata")
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _is_text(name: str) -> bool:
    """Whether SQLite can store `name` as text: it encodes (no lone surrogates)."""
    if name.isascii():
        return True
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


@functools.cache
def code_digest() -> str:
    """A digest of the code that turns item files into cached values: every module and
    template of this package (by relative path and bytes), the versions of the libraries
    in OUTPUT_LIBRARIES and Python's. An upgrade or an edit changes it, whatever
    `__version__` says, so nothing a previous version of the code made is served.
    Computed once per process, on first use.
    """
    package = Path(__file__).resolve().parent
    templates = package / "templates"
    files = {*package.rglob("*.py"), *(p for p in templates.rglob("*") if p.is_file())}
    digest = hashlib.sha256()
    for relative, path in sorted((p.relative_to(package).as_posix(), p) for p in files):
        name, data = relative.encode(), path.read_bytes()
        digest.update(b"%d %s %d\n" % (len(name), name, len(data)))  # unambiguous framing
        digest.update(data)
    for library in OUTPUT_LIBRARIES:
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library} {version}\n".encode())
    digest.update(f"{platform.python_implementation()} {platform.python_version()}".encode())
    return digest.hexdigest()[:32]


def fingerprint(settings: Settings) -> str:
    """Everything a cached value depends on besides the file itself."""
    parts = (SCHEMA_VERSION, code_digest(), settings.parsing_key())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


# -- JSON codec for parse results ----------------------------------------------------------
#
# A row is a JSON array, by position: a first load decodes one per file, and arrays
# decode in half the time of objects and take a third less room. The positions are the
# dataclasses' fields in their order, read from `dataclasses.fields` and their types:
#
#   row      = [parsed, intro or null]
#   parsed   = ParsedFile's fields: [item or null, [problem, ...]]
#   item     = Item's fields, `source` a nested Source row, and a datetime after the
#              first null when it is the same time (`updated` as parsing gives it)
#   problem  = Problem's fields; intro = Intro's fields
#
# A date is ISO text; a datetime its ISO text with the offset, then "F" if its `fold` is
# 1: it comes back in the site's zone with the same wall time, offset and fold.
#
# Each class's encoder and decoder are generated once, at import, as `dataclasses`
# generates `__init__`: a loop calling a converter per field would make every first
# load markedly slower.

#: Fields whose values many items share: held once (`sys.intern`) after decoding.
_INTERNED = frozenset({(Item, "category"), (Item, "author"), (Item, "tags")})
#: What the generated code refers to, besides the classes and the generated functions.
_NAMESPACE: dict[str, Any] = {"_intern": sys.intern, "_date": date.fromisoformat}


def _encode_when(when: datetime) -> str:
    return when.isoformat() + "F" if when.fold else when.isoformat()


def _decode_when(text: str, zone: ZoneInfo) -> datetime:
    fold = text.endswith("F")
    written = datetime.fromisoformat(text[:-1] if fold else text)
    local = written.astimezone(zone)
    if local.fold == fold and local.utcoffset() == written.utcoffset():
        return local  # the same instant, wall time and fold: every time parsing gives but
    # a wall time in a gap (a day's midnight skipped by a change of offset) in the
    # site's zone, kept as written; a time of another zone keeps its instant.
    kept = written.replace(tzinfo=zone, fold=fold)
    return kept if kept.utcoffset() == written.utcoffset() else local


_NAMESPACE.update(_encode_when=_encode_when, _decode_when=_decode_when)


def _converters(hint: Any, owner: str) -> tuple[str, str]:
    """Expressions writing a value of type `hint` as JSON and reading it back, with
    `{}` for the value (a plain name: it may be evaluated twice); `owner` names the
    field, for the names of helpers in the namespace."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint in (str, int, bool, float, type(None)):
        return "{}", "{}"
    if hint is datetime:  # before date: a datetime is a date
        return "_encode_when({})", "_decode_when({}, zone)"
    if hint is date:
        return "{}.isoformat()", "_date({})"
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        _generate(hint)
        return f"_encode_{hint.__name__}({{}})", f"_decode_{hint.__name__}({{}}, zone)"
    if origin is Literal:
        known = f"_known_{owner}"
        _NAMESPACE[known] = {value: value for value in arguments}  # back as the constant
        return "{}", f"{known}[{{}}]"
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis:
        encode, decode = (e.format("_v") for e in _converters(arguments[0], owner))
        return (
            "{}" if encode == "_v" else f"[{encode} for _v in {{}}]",  # JSON writes a tuple
            "tuple({})" if decode == "_v" else f"tuple([{decode} for _v in {{}}])",
        )
    if origin in (typing.Union, types.UnionType) and type(None) in arguments:
        (inner,) = (argument for argument in arguments if argument is not type(None))
        encode, decode = _converters(inner, owner)
        return (
            "{}" if encode == "{}" else f"(None if {{0}} is None else {encode.format('{0}')})",
            "{}" if decode == "{}" else f"(None if {{0}} is None else {decode.format('{0}')})",
        )
    raise TypeError(f"no JSON form for the type {hint!r} of {owner}")


def _generate(cls: type) -> None:
    """Define `_encode_<Class>(value) -> list` and `_decode_<Class>(row, zone)` in the
    namespace, for `cls` and the dataclasses its fields hold."""
    name = cls.__name__
    if f"_decode_{name}" in _NAMESPACE:
        return
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    _NAMESPACE[f"_make_{name}"] = cls
    encoded, decoded, pre_encode, pre_decode = [], [], [], []
    first_when = None
    for n, field in enumerate(fields):
        encode, decode = _converters(hints[field], f"{name}_{field}")
        if (cls, field) in _INTERNED:
            decode = {str: "_intern({})", tuple[str, ...]: "tuple(map(_intern, {}))"}[hints[field]]
        if hints[field] is datetime and first_when is None:
            first_when = n
            pre_encode.append(f"e{n} = {encode.format(f'f{n}')}")
            pre_decode.append(f"d{n} = {decode.format(f'f{n}')}")
            encoded.append(f"e{n}")
            decoded.append(f"d{n}")
        elif hints[field] is datetime:  # never None: null is free to mean "the same time"
            pre_encode.append(f"e{n} = {encode.format(f'f{n}')}")
            encoded.append(f"None if e{n} == e{first_when} else e{n}")
            decoded.append(f"d{first_when} if f{n} is None else {decode.format(f'f{n}')}")
        else:
            encoded.append(encode.format(f"f{n}"))
            decoded.append(decode.format(f"f{n}"))
    values = ", ".join(f"f{n}" for n in range(len(fields))) + ","
    source = "\n".join(
        [
            f"def _encode_{name}(value):",
            f"    {values} = {', '.join(f'value.{field}' for field in fields)},",
            *(f"    {line}" for line in pre_encode),
            f"    return [{', '.join(encoded)}]",
            f"def _decode_{name}(row, zone):",
            "    if type(row) is not list:",
            f"        raise ValueError('a {name} row is not an array')",
            f"    {values} = row",
            *(f"    {line}" for line in pre_decode),
            f"    return _make_{name}({', '.join(decoded)})",
        ]
    )
    exec(compile(source, f"<feedsvc.cache codec for {name}>", "exec"), _NAMESPACE)


_generate(ParsedFile)  # and Item, its Source, and Problem
_generate(Intro)
_encode_parsed: Callable[[ParsedFile], list[Any]] = _NAMESPACE["_encode_ParsedFile"]
_decode_parsed: Callable[[Any, ZoneInfo], ParsedFile] = _NAMESPACE["_decode_ParsedFile"]
_encode_intro: Callable[[Intro], list[Any]] = _NAMESPACE["_encode_Intro"]
_decode_intro: Callable[[Any, ZoneInfo], Intro] = _NAMESPACE["_decode_Intro"]


def encode(parsed: ParsedFile, intro: Intro | None) -> str:
    row = [_encode_parsed(parsed), None if intro is None else _encode_intro(intro)]
    return json.dumps(row, ensure_ascii=False)


def decode(text: str, zone: ZoneInfo) -> tuple[ParsedFile, Intro | None]:
    """The inverse of `encode`; datetimes come back in the site's zone, as parsed."""
    parsed_row, intro_row = json.loads(text)
    intro = None if intro_row is None else _decode_intro(intro_row, zone)
    return _decode_parsed(parsed_row, zone), intro


class Cache:
    """One SQLite file shared by every worker (WAL mode); a no-op when `folder` is None.

    A read or write that fails (another process holds the file longer than
    `busy_timeout`, a full disk, a damaged page) is a miss or is not written, and the
    next one tries again; each kind of failure is logged once. Only a database that
    cannot be opened at all leaves the cache off, for this process.
    """

    def __init__(
        self,
        folder: Path | None,
        settings: Settings,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        keep_document_bytes: int = KEEP_DOCUMENT_BYTES,
    ) -> None:
        self.zone = settings.zone
        self._busy_timeout = busy_timeout
        self._keep_document_bytes = keep_document_bytes
        #: Bytes per read of a document streamed to a client.
        self.stream_chunk = STREAM_CHUNK
        self._lock = threading.Lock()
        self._reported: set[str] = set()  # kinds of failure logged already
        self._db: sqlite3.Connection | None = None
        self._path: Path | None = None  # set while the cache is usable
        # Every parsed row, read at once for a first load (`preload`); None after it.
        self._preloaded: dict[str, tuple[int, int, str]] | None = None
        if folder is not None:
            self._db = self._open(folder / FILE_NAME, fingerprint(settings))
            self._path = folder / FILE_NAME if self._db is not None else None

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=self._busy_timeout, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Close the connection; the next use opens a new one. Called before a fork: an
        SQLite connection must not be used on both sides of one."""
        with self._lock:
            self._close()

    def _connection(self) -> sqlite3.Connection | None:
        """The open connection (opened again after `close`); None: no cache. Under the lock."""
        if self._db is None and self._path is not None:
            self._db = self._connect(self._path)
        return self._db

    def _failed(self, what: str, error: sqlite3.Error) -> None:
        """Report a failed operation, whose caller goes on as if the cache had no answer
        (or took no row). Under the lock; the connection is kept for the next try."""
        busy = (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _BUSY
        self._report(f"{what} {'busy' if busy else 'failed'}", error)
        db = self._db
        if db is not None and db.in_transaction:
            try:
                db.rollback()
            except sqlite3.Error:
                self._close()

    def _report(self, kind: str, error: Exception, subject: str = "") -> None:
        """Log a kind of failure once per process at warning level, later ones at debug
        level: a cache held by another process fails every request meanwhile."""
        if kind in self._reported:
            log.debug("cache %s%s (%s)", kind, subject, error)
            return
        self._reported.add(kind)
        log.warning("cache %s%s (%s); going on without it, and trying it again next time "
                    "(further failures of this kind are logged at debug level)",
                    kind, subject, error)  # fmt: skip

    def _close(self) -> None:
        """`close`, for a caller that holds the lock."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self, path: Path, expected: str) -> sqlite3.Connection | None:
        """A connection to a cache with the expected fingerprint (emptied if it had
        another), pruned; None, logged, if it cannot be had now."""
        for attempt in (1, 2):
            db = None
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = self._connect(path)
                db.executescript(SCHEMA)
                row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
                with db:
                    if row is None or row[0] != expected:
                        for table in TABLES:
                            db.execute(f"DROP TABLE {table}")
                        db.executescript(SCHEMA)
                        db.execute(
                            "INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (expected,)
                        )
                    newest = "SELECT max(rowid) FROM content"
                    db.execute(
                        f"DELETE FROM content WHERE rowid <= ({newest}) - ?", (KEEP_CONTENT,)
                    )
                    _prune_documents(db, self._keep_document_bytes)
                return db
            except sqlite3.Error as error:
                if db is not None:
                    db.close()
                if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _BUSY:
                    # Another process holds it (opening or pruning it): busy, not broken.
                    log.warning("cache %s busy (%s); running without it", path, error)
                    return None
                log.warning("cache %s unusable (%s); %s", path, error,
                            "rebuilding it" if attempt == 1 else "running without it")  # fmt: skip
                for stale in (
                    path,
                    path.with_name(path.name + "-wal"),
                    path.with_name(path.name + "-shm"),
                ):
                    stale.unlink(missing_ok=True)
            except OSError as error:
                log.warning(
                    "cache folder %s unusable (%s); running without it", path.parent, error
                )
                return None
        return None

    def _run(self, query: str, arguments: tuple[Any, ...] = ()) -> list[Any]:
        """The rows a query gives; none when it fails (a miss)."""
        with self._lock:
            try:
                db = self._connection()
                return [] if db is None else db.execute(query, arguments).fetchall()
            except sqlite3.Error as error:
                self._failed("read", error)
                return []

    # Paths are keyed by their bytes (`os.fsencode`): a file's name may be any bytes, and
    # a name that is not UTF-8 cannot be stored as SQLite text.

    def preload(self) -> None:
        """Read every parsed row at once: one query is much cheaper than one per file."""
        rows = self._run("SELECT path, size, mtime_ns, data FROM parsed")
        self._preloaded = {
            os.fsdecode(path): (size, mtime, data) for path, size, mtime, data in rows
        }

    def forget(self, keep: set[str]) -> None:
        """Drop the preloaded rows, and the stored rows of files that are gone."""
        gone = [(os.fsencode(path),) for path in (self._preloaded or {}).keys() - keep]
        self._preloaded = None
        self._write("DELETE FROM parsed WHERE path = ?", gone)

    def parsed(
        self, path: str, size: int, mtime_ns: int
    ) -> tuple[ParsedFile, Intro | None] | None:
        """What parsing this version of the file gave, if stored."""
        row = self._row(path)
        return (
            self._decoded(path, row[2])
            if row is not None and row[:2] == (size, mtime_ns)
            else None
        )

    def stored_item(self, path: str) -> Item | None:
        """The item the latest stored version of the file at `path` gave, whatever that
        version was: a file broken while the server was stopped keeps its last good item."""
        row = self._row(path)
        found = self._decoded(path, row[2]) if row is not None else None
        return found[0].item if found is not None else None

    def _row(self, path: str) -> tuple[int, int, str] | None:
        if self._preloaded is not None:  # a first load: what is not there is not stored
            return self._preloaded.get(path)
        rows = self._run(
            "SELECT size, mtime_ns, data FROM parsed WHERE path = ?", (os.fsencode(path),)
        )
        return (int(rows[0][0]), int(rows[0][1]), str(rows[0][2])) if rows else None

    def _decoded(self, path: str, text: str) -> tuple[ParsedFile, Intro | None] | None:
        try:
            return decode(text, self.zone)
        except Exception as error:  # a damaged row: parse again
            self._report("entry unreadable", error, f" for {path}")
            return None

    @property
    def enabled(self) -> bool:
        return self._path is not None

    def store_parsed(self, rows: list[tuple[str, int, int, str]]) -> None:
        """Rows of (path, size, mtime_ns, `encode(parsed, intro)`)."""
        if rows:
            self._write(
                "INSERT OR REPLACE INTO parsed VALUES (?, ?, ?, ?)",
                [(os.fsencode(path), size, mtime, data) for path, size, mtime, data in rows],
            )

    def content(self, digest: str, page: str) -> tuple[Content, str] | None:
        """A rendered body, and what the sanitiser removed from it ("" for nothing): a
        warning that stays true for as long as the body does."""
        rows = self._run(
            "SELECT html, summary, removed FROM content WHERE digest = ? AND page = ?",
            (digest, page),
        )
        return (Content(rows[0][0], rows[0][1]), rows[0][2]) if rows else None

    def contents(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[Content, str]]:
        """`content` for many (digest, page) keys at once, those held: a query per few
        hundred rather than one per body."""
        rows = self._content_rows(keys, "html, summary, removed")
        return {key: (Content(html, summary), removed) for key, (html, summary, removed) in rows}

    def removed(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """What the sanitiser removed from each of these bodies the cache holds ("" for
        nothing), without the bodies: all that a check of the folder needs of them."""
        return {key: removed for key, (removed,) in self._content_rows(keys, "removed")}

    def _content_rows(
        self, keys: Sequence[tuple[str, str]], columns: str
    ) -> list[tuple[tuple[str, str], tuple[Any, ...]]]:
        wanted = set(keys)
        digests = sorted({digest for digest, _ in wanted})
        found = []
        for start in range(0, len(digests), CONTENTS_PER_QUERY):
            chosen = digests[start : start + CONTENTS_PER_QUERY]
            rows = self._run(
                f"SELECT digest, page, {columns} FROM content WHERE digest IN "
                f"({', '.join('?' * len(chosen))})",
                tuple(chosen),
            )
            found += [
                ((digest, page), rest) for digest, page, *rest in rows if (digest, page) in wanted
            ]
        return found

    def store_content(self, digest: str, page: str, content: Content, removed: str = "") -> None:
        self.store_contents([(digest, page, content, removed)])

    def store_contents(self, rows: list[tuple[str, str, Content, str]]) -> None:
        if rows:
            self._write(
                "INSERT OR REPLACE INTO content VALUES (?, ?, ?, ?, ?)",
                [(digest, page, c.html, c.summary, removed) for digest, page, c, removed in rows],
            )

    def modified(self, path: str, etag: str, now: int) -> tuple[int, bool] | None:
        """When the document at `path` took the bytes `etag` names, in whole seconds since
        the epoch, and whether this call recorded that change (True in one process only,
        whichever asked first; False for bytes seen before, and for a path's first bytes).

        The time is when the bytes were first asked for here (`now` if they are new), and
        always at least a second after the time of the bytes before, so a client's
        If-Modified-Since never matches bytes it has not seen. One answer for every
        worker and across restarts; None when the cache has none to give."""
        with self._lock:
            try:
                db = self._connection()
                if db is None:
                    return None
                with db:
                    # One statement each, so that of two workers only one flips the row.
                    changed = db.execute(
                        "UPDATE modified SET etag = ?, at = max(?, at + 1)"
                        " WHERE path = ? AND etag != ?",
                        (etag, now, path, etag),
                    ).rowcount
                    if not changed:
                        db.execute(
                            "INSERT OR IGNORE INTO modified VALUES (?, ?, ?)", (path, etag, now)
                        )
                    row = db.execute("SELECT at FROM modified WHERE path = ?", (path,)).fetchone()
                return int(row[0]), changed == 1
            except sqlite3.Error as error:
                self._failed("write", error)
                return None

    def published_pages(self, since: float = 0.0) -> dict[tuple[str, str], datetime]:
        """The item pages (category, page name) `note_pages` was told of, at or after
        `since` (a `time.time()`), with when their items were published: what a restarted
        server needs to answer 410, not 404, for a page whose item went while it was
        stopped. {} without a cache."""
        rows = self._run("SELECT category, page, published FROM pages WHERE noted >= ?", (since,))
        return {
            (category, page): _EPOCH + timedelta(microseconds=at) for category, page, at in rows
        }

    def note_pages(self, pages: dict[tuple[str, str], datetime]) -> None:
        """Record item pages and when their items were published (`published_pages`).
        A name SQLite cannot hold as text (not UTF-8) is left out: its page is forgotten."""
        now = time.time()
        rows = [
            (category, page, (when - _EPOCH) // _MICROSECOND, now)
            for (category, page), when in pages.items()
            if _is_text(category) and _is_text(page)
        ]
        if rows:
            self._write("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?)", rows)

    def document(self, signature: str) -> tuple[bytes, bytes] | None:
        """A rendered document: its body and the body gzipped."""
        rows = self._run("SELECT body, gzipped FROM documents WHERE signature = ?", (signature,))
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    def document_stream(self, signature: str, *, gzipped: bool) -> Stream | None:
        """One representation of a rendered document, as its length and its bytes in
        chunks: a dense weekly feed (40 MB) goes to the client without being held whole.

        The chunks come from a connection of their own, in one read transaction, so they
        are one version of the row however other workers write meanwhile; it is closed
        when the chunks are used up or the server closes them (WSGI `close`).
        """
        if self._path is None:
            return None
        column = "gzipped" if gzipped else "body"
        db = None
        try:
            db = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("BEGIN")
            row = db.execute("SELECT rowid FROM documents WHERE signature = ?", (signature,))
            found = row.fetchone()
            if found is None:
                db.close()
                return None
            blob = db.blobopen("documents", column, found[0], readonly=True)
        except sqlite3.Error as error:
            if db is not None:
                db.close()
            with self._lock:
                self._failed("read", error)
            return None
        return len(blob), _Chunks(db, blob, self.stream_chunk)

    def claim(self, signature: str) -> tuple[bytes, bytes] | None:
        """Claim a document for this process to render, or wait for the process that has.

        Workers see a change at the same moment and are asked for the same feed at once;
        without this each would render it. None: the claim is this process's now (or
        there is no cache): render, `store_document`, then `release`. Otherwise the
        bytes the claiming process stored. A claim whose process is gone, or older than
        CLAIM_PATIENCE, or released without bytes (a body changed while rendering) is
        taken over.
        """
        waited = False
        while (holder := self._claim(signature)) is not None:
            waited = True
            time.sleep(CLAIM_POLL)
            found = self.document(signature)
            if found is not None:
                return found
            log.debug("waiting for process %d to render %s", holder, signature[:12])
        if waited and (found := self.document(signature)) is not None:
            self.release(signature)  # stored and released between our two looks
            return found
        return None

    def _claim(self, signature: str) -> int | None:
        """Take the claim (None), or the live process id that holds it."""
        me, now = os.getpid(), time.time()
        with self._lock:
            try:
                db = self._connection()
                if db is None:
                    return None
                db.execute("BEGIN IMMEDIATE")  # the look and the take, as one
                try:
                    row = db.execute(
                        "SELECT pid, at FROM claims WHERE signature = ?", (signature,)
                    ).fetchone()
                    if row is not None and _holds(row[0], row[1], me, now):
                        return int(row[0])
                    db.execute(
                        "INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (signature, me, now)
                    )
                finally:
                    db.commit()
            except sqlite3.Error as error:  # render here
                self._failed("claim", error)
            return None

    def release(self, signature: str) -> None:
        """Give up this process's claim on a document (stored or not)."""
        self._write(
            "DELETE FROM claims WHERE signature = ? AND pid = ?", [(signature, os.getpid())]
        )

    def has_document(self, signature: str) -> bool:
        return bool(self._run("SELECT 1 FROM documents WHERE signature = ?", (signature,)))

    def store_document(self, signature: str, body: bytes, gzipped: bytes) -> bool:
        return self._write(
            "INSERT OR REPLACE INTO documents VALUES (?, ?, ?)", [(signature, body, gzipped)]
        )

    def _write(self, query: str, values: list[tuple[Any, ...]]) -> bool:
        """Whether the rows were written. A row SQLite refuses (text it cannot encode)
        costs that row alone: the batch is written again row by row without it."""
        with self._lock:
            try:
                db = self._connection()
                if db is None:
                    return False
                with db:
                    db.executemany(query, values)
                return True
            except sqlite3.Error as error:  # e.g. another worker holds the lock too long
                self._failed("write", error)
                return False
            except Exception as error:  # a value SQLite cannot take
                if len(values) == 1:
                    log.debug("cache row not written", exc_info=error)
                    return False
        written = [self._write(query, [row]) for row in values]
        return all(written)


class _Chunks:
    """A stored blob read in pieces of `size`; closes its connection when done."""

    def __init__(self, db: sqlite3.Connection, blob: sqlite3.Blob, size: int) -> None:
        self._db = db
        self._blob = blob
        self._size = size
        self._open = True

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self._blob.read(self._size):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._blob.close()
            self._db.close()  # ends the read transaction


def _holds(pid: int, at: float, me: int, now: float) -> bool:
    """Whether a claim made by `pid` at `at` still stands against this process's."""
    if pid == me or now - at >= CLAIM_PATIENCE:
        return False
    try:
        os.kill(pid, 0)  # is it running? (the cache is on this machine: WAL mode)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _prune_documents(db: sqlite3.Connection, keep: int) -> None:
    """Keep the newest rendered documents within `keep` bytes (SQLite reads a blob's
    length from the record header, not the blob)."""
    sizes = db.execute(
        "SELECT rowid, length(body) + length(gzipped) FROM documents ORDER BY rowid DESC"
    ).fetchall()
    total = 0
    for rowid, size in sizes:
        total += size
        if total > keep:
            db.execute("DELETE FROM documents WHERE rowid <= ?", (rowid,))
            return
