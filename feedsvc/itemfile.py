"""One item file's bytes to an `Item` and its problems (the format: README.md, "Writing an item").

Only the front matter is read here; the body is rendered later, and only for items
that are shown (`render_body`). Pure: no file system, no clock.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, ClassVar, Literal, NoReturn
from zoneinfo import ZoneInfo

import pyromark
import yaml
from dateutil import parser as dateparser

from feedsvc import sanitize
from feedsvc.config import Settings
from feedsvc.model import (
    RESERVED_NAMES,
    Content,
    Intro,
    Item,
    ParsedFile,
    Problem,
    Source,
    is_valid_name,
    item_path,
)

MAX_FILE_BYTES = 1024 * 1024
MAX_TITLE_LENGTH = 300
#: Years a date may have. Beyond them a week's bounds, a time zone's offset or a date's
#: conversion to UTC would leave the range Python's dates can hold.
YEARS = range(1000, 9000)
FIELDS = frozenset(
    {"title", "date", "updated", "author", "tags", "summary", "link", "id", "draft", "image"}
)
ITEM_NAME = re.compile(r"(?P<date>\d{4}-\d{2}-\d{2})-(?P<slug>.+)\.(?P<ext>md|html)\Z")
INTRO_NAME = re.compile(r"(?P<year>\d{4})-W(?P<week>\d{2})\.md\Z")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")

#: CommonMark with GitHub's tables, by pulldown-cmark (Rust, through pyromark): every body
#: is converted on a cold start, so a compiled parser (docs/architecture.md, Libraries).
#: Raw HTML is passed through, because bleach, which sees all of the output, is the
#: sanitiser (`feedsvc.sanitize`).
_MARKDOWN_OPTIONS = pyromark.Options.ENABLE_TABLES
#: What turning Markdown into HTML depends on besides the text; cached renderings carry it.
MARKDOWN_VERSION = f"pyromark {importlib.metadata.version('pyromark')}"

# The C loader when PyYAML was built with libyaml: front matter of every file is read on a
# cold start.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_RESOLVERS: dict[Any, list[tuple[str, re.Pattern[str]]]] = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _FrontMatterLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loading, but dates stay text: they are read by one rule, in `_parse_when`."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, re.Pattern[str]]]]] = _RESOLVERS


class _Scalars(yaml.resolver.Resolver, yaml.constructor.SafeConstructor):
    """The loader's rules for one plain scalar (which type `yes`, `12` or `~` is), alone."""

    yaml_implicit_resolvers = _RESOLVERS

    def value(self, text: str) -> tuple[bool, Any]:
        """(True, what YAML makes of `text` as a plain scalar), or (False, None) for a
        type other than text, null, bool, int or float."""
        tag = self.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        if tag not in _SIMPLE_TAGS:
            return False, None
        return True, self.yaml_constructors[tag](self, yaml.ScalarNode(tag, text))


_SIMPLE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "null", "bool", "int", "float")
)
_scalars = _Scalars()
#: `key: value` on one line: a lowercase key, then nothing or a space and a value.
_SIMPLE_LINE = re.compile(r"([a-z][a-z0-9_]*):(?: +(.*?))? *")
#: Characters that make YAML read a line in some other way than it looks (tabs, line
#: breaks YAML has beyond LF, characters it refuses): the loader must see those.
_YAML_SUBTLE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]"
)
_QUOTED = re.compile(r'"[^"\\]*"|\'[^\']*\'')
#: What a plain scalar may not start with, or contain, to be read as the text it is.
_PLAIN_START = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW = frozenset("[]{},")


def _simple_scalar(text: str, *, in_list: bool) -> tuple[bool, Any]:
    if _QUOTED.fullmatch(text):
        return True, text[1:-1]
    if (
        not text
        or text[0] in _PLAIN_START
        or text.endswith(":")
        or ": " in text
        or " #" in text
        or (in_list and not _FLOW.isdisjoint(text))
    ):
        return False, None
    return _scalars.value(text)


@functools.lru_cache(maxsize=256)
def _is_text_key(key: str) -> bool:
    """Whether YAML reads `key` as that text (not `yes` as true, say). Keys repeat."""
    return _scalars.value(key) == (True, key)


def _simple_front_matter(front: str) -> dict[str, Any] | None:
    """What `yaml.load` gives for front matter made only of `key: value` lines (values
    plain, quoted without escapes, or a one-line list of such), or None for anything
    else. Constructing through PyYAML is a large share of parsing a file; this is a small
    fraction of it, with the loader's own rules for each value's type."""
    if _YAML_SUBTLE.search(front):
        return None
    values: dict[str, Any] = {}
    for line in front.split("\n"):
        if not line:
            continue
        match = _SIMPLE_LINE.fullmatch(line)
        if match is None:
            return None
        key, raw = match[1], match[2] or ""
        if not _is_text_key(key) or key in values:
            return None
        if not raw:
            values[key] = None
        elif raw[0] == "[" and raw[-1] == "]":
            inner = raw[1:-1].strip()
            elements = [_simple_scalar(e.strip(), in_list=True) for e in inner.split(",")]
            if inner and not all(known for known, _ in elements):
                return None
            values[key] = [element for _, element in elements] if inner else []
        else:
            known, values[key] = _simple_scalar(raw, in_list=False)
            if not known:
                return None
    return values


def ignored(name: str) -> bool:
    """Editor and upload leftovers that are skipped without a word."""
    return name.startswith((".", "_")) or name.endswith(("~", ".swp", ".tmp", ".part"))


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class _Reject(Exception):
    """Unwinds the parser for a problem that stops the file; caught once in `parse_item`."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _reject(line: int | None, message: str) -> NoReturn:
    raise _Reject(line, message)


@dataclass(slots=True)
class _Split:
    front: str | None  # the YAML text, without the --- lines
    body: str
    body_line: int  # the body's first line number in the file


def _decode(data: bytes) -> tuple[str, list[tuple[int | None, str]]]:
    """Bytes to text with LF line ends and no XML-forbidden characters, plus warnings."""
    notes: list[tuple[int | None, str]] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        _reject(1, "not UTF-8 text (UTF-16); save the file as UTF-8")
    if b"\x00" in data:
        _reject(
            data[: data.index(b"\x00")].count(b"\n") + 1, "binary file (NUL bytes); not an item"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        _reject(line, f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if sanitize.utf8_has_forbidden(data):
        first = next(
            i for i, line in enumerate(text.split("\n"), 1) if sanitize.has_forbidden(line)
        )
        notes.append((first, "removed characters that XML cannot carry (control characters)"))
        text = sanitize.remove_forbidden(text)
    return text, notes


def _split(text: str, *, required: bool) -> _Split:
    """Separate the front matter (between a first line `---` and the next `---`) from the body."""
    if not text.strip():
        _reject(None, "empty file")
    # Line by line with `find`: only the front matter's lines are looked at, not the body's.
    end = _line_end(text, 0)
    if text[:end].rstrip() != "---":
        if required:
            _reject(
                1, "no front matter: start the file with a '---' line, a 'title:' line, and '---'"
            )
        return _Split(None, text, 1)
    front_start = start = end + 1
    number = 2
    while start <= len(text):
        end = _line_end(text, start)
        if text[start:end].rstrip() == "---":
            front = text[front_start : start - 1] if number > 2 else ""
            return _Split(front, text[end + 1 :], number + 1)
        start, number = end + 1, number + 1
    _reject(1, "front matter is never closed: add a '---' line after the last field")


def _line_end(text: str, start: int) -> int:
    """Where the line that begins at `start` ends: its LF, or the end of the text."""
    end = text.find("\n", start)
    return len(text) if end < 0 else end


def _load_yaml(front: str) -> dict[str, Any]:
    simple = _simple_front_matter(front)
    if simple is not None:
        return simple
    _refuse_aliases(front)
    try:
        value = yaml.load(front, Loader=_FrontMatterLoader)
    except yaml.constructor.ConstructorError as error:
        line = error.problem_mark.line + 2 if error.problem_mark else None
        _reject(line, f"front matter: YAML tag not allowed ({error.problem})")
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        _reject(_yaml_line(error), f"front matter is not valid YAML: {problem}")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        _reject(2, f"front matter must be 'field: value' lines, not a {type(value).__name__}")
    return value


#: What YAML says it was reading when a construct it opened was never closed.
_LEFT_OPEN = (
    "while scanning a quoted scalar",
    "while parsing a flow",
    "while scanning a simple key",
)


def _yaml_line(error: yaml.YAMLError) -> int | None:
    """The file's line of a YAML error. A construct left open (a `[`, `{` or a quote
    never closed) is noticed later, where the text stops making sense or where the front
    matter ends (at the end of its last line, which YAML is given without its line break),
    so the line it was opened on is the one to fix. Any other error is where YAML says:
    an enclosing block mapping's start (its context) is not where the mistake is."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return None
    context = getattr(error, "context_mark", None)
    opened = str(getattr(error, "context", "") or "").startswith(_LEFT_OPEN)
    if opened and context is not None and context.line < mark.line:
        mark = context
    return int(mark.line) + 2  # the front matter starts on the file's second line


def _refuse_aliases(front: str) -> None:
    """YAML aliases build graphs that expand without end when walked (and a short file can
    repeat a long string thousands of times): refuse any alias before constructing."""
    if "*" not in front:  # no alias can be written without one
        return
    try:
        for event in yaml.parse(front, Loader=_FrontMatterLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 2 if event.start_mark else None
                _reject(line, "front matter uses YAML aliases (*name); write the values out")
    except yaml.YAMLError:
        return  # yaml.load reports the syntax error with its line


def _parse_when(text: str, zone: ZoneInfo, day: date) -> datetime:
    """A date in any form python-dateutil reads; no timezone means the site's."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = _parse_loose(text, day)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    try:
        # One representation for every date: the site's zone (the instant is unchanged).
        when = when.astimezone(zone)
        when.astimezone(UTC)  # what HTTP dates and RSS need
    except OverflowError:
        raise ValueError(f'"{text}" is out of range') from None
    _check_year(when.year, f'"{text}"')
    return when


def _check_year(year: int, what: str) -> None:
    if year not in YEARS:
        raise ValueError(f"{what} is out of range: the year must be from {YEARS.start} to "
                         f"{YEARS.stop - 1}")  # fmt: skip


def _parse_loose(text: str, day: date) -> datetime:
    """Read a non-ISO date every way dateutil can; refuse one that reads two ways."""
    readings = set()
    for dayfirst, yearfirst in ((False, False), (True, False), (False, True)):
        try:
            with warnings.catch_warnings():
                # "10:00 PST" would otherwise be read silently as site time.
                warnings.simplefilter("error", dateparser.UnknownTimezoneWarning)
                default = datetime.combine(day, time())
                readings.add(
                    dateparser.parse(text, default=default, dayfirst=dayfirst, yearfirst=yearfirst)
                )
        except dateparser.UnknownTimezoneWarning:
            raise ValueError(f'"{text}" has a time zone name that cannot be read; '
                             "write an offset like +02:00") from None  # fmt: skip
        except (ValueError, OverflowError):
            continue
    if not readings:
        raise ValueError(f'"{text}" is not a date; write it like {day.isoformat()} 09:30')
    if len(readings) > 1:
        raise ValueError(f'"{text}" is ambiguous; write {min(readings).date().isoformat()}')
    return readings.pop()


class _Fields:
    """Typed access to front-matter values, with line numbers for messages."""

    def __init__(self, values: dict[str, Any], front: str) -> None:
        self.values = values
        self.front_lines = front.split("\n")
        self.warnings: list[tuple[int | None, str]] = []
        # The file's text has no forbidden characters left (`_decode`): only a YAML
        # escape ("\a" in a quoted value) can bring one back.
        self.escapes = "\\" in front

    def line(self, key: str) -> int | None:
        pattern = re.compile(rf"\s*['\"]?{re.escape(key)}['\"]?\s*:")
        for number, text in enumerate(self.front_lines, start=2):
            if pattern.match(text):
                return number
        return None

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.values.get(key)
        if value is None:
            if required:
                _reject(None, f"missing '{key}:' in the front matter")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            _reject(self.line(key), f"'{key}' must be text, not a {type(value).__name__}")
        self.check_characters(key, str(value))
        return str(value)

    def check_characters(self, key: str, text: str) -> None:
        """YAML escapes ("\\a") can bring characters XML forbids; they are removed later."""
        if self.escapes and sanitize.has_forbidden(text):
            self.warn(key, f"removed characters that XML cannot carry from '{key}'")

    def warn(self, key: str, message: str) -> None:
        self.warnings.append((self.line(key), message))


def _item_fields(
    fields: _Fields, settings: Settings, category: str, slug: str, day: date
) -> dict[str, Any]:
    for key in sorted(set(fields.values) - FIELDS, key=str):
        fields.warn(str(key), f"unknown field '{key}' is ignored")

    with sanitize.noting() as removed:
        title = sanitize.plain_text(fields.text("title", required=True) or "")
    if removed:
        fields.warn("title", f"removed markup from 'title' (titles are plain text): "
                    f"{removed.describe()}")  # fmt: skip
    if not title:
        _reject(fields.line("title"), "'title' is empty")
    if len(title) > MAX_TITLE_LENGTH:
        length = len(title)
        title = sanitize.shorten(title, MAX_TITLE_LENGTH)
        fields.warn("title", f"title is {length} characters; shortened to {len(title)}")

    def when(key: str, default: datetime) -> datetime:
        text = fields.text(key)
        if text is None:
            return default
        try:
            return _parse_when(text.strip(), settings.zone, day)
        except ValueError as error:
            _reject(fields.line(key), f"'{key}': {error}")

    published = when("date", datetime.combine(day, time(), tzinfo=settings.zone))
    updated = when("updated", published)
    if updated < published:
        fields.warn("updated", "'updated' is before 'date'; using 'date'")
        updated = published

    page_url = settings.base_url + item_path(category, slug)

    def url(key: str) -> str | None:
        text = fields.text(key)
        if text is None:
            return None
        safe = sanitize.safe_url(text, page_url)
        if safe is None:
            fields.warn(key, f"'{key}' is not an http(s) or mailto URL; ignored")
        return safe

    item_id = fields.text("id")
    if item_id is not None:
        item_id = sanitize.remove_forbidden(item_id).strip()
        if not _URI.match(item_id):
            _reject(
                fields.line("id"),
                f"'id' must be a URI such as tag:example.com,2020:x, not {item_id!r}",
            )
    draft = fields.values.get("draft", False)
    if not isinstance(draft, bool):
        _reject(fields.line("draft"), "'draft' must be true or false")

    summary = fields.text("summary")
    return {
        "title": title,
        "published": published,
        "updated": updated,
        "author": sanitize.plain_text(fields.text("author") or "") or settings.author,
        "tags": _tags(fields),
        "summary": sanitize.plain_text(summary) if summary else None,
        "link": url("link"),
        "id": item_id or f"tag:{settings.domain},{day.isoformat()}:{category}/{slug}",
        "image": url("image"),
        "draft": draft,
    }


def _tags(fields: _Fields) -> tuple[str, ...]:
    value = fields.values.get("tags")
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(t, str | int | float) for t in value):
        _reject(fields.line("tags"), "'tags' must be a list of words, like [retail, china]")
    for tag in value:
        fields.check_characters("tags", str(tag))
    tags = (sanitize.plain_text(str(tag)) for tag in value)
    # Interned: a few words, shared by thousands of items.
    return tuple(dict.fromkeys(sys.intern(tag) for tag in tags if tag))


def _guard(path: str, parse: Callable[[list[Problem]], ParsedFile]) -> ParsedFile:
    """Run a parser, turning the `_Reject` that stops a file into its error `Problem`."""
    problems: list[Problem] = []
    try:
        return parse(problems)
    except _Reject as reject:
        problems.append(Problem(path, reject.line, "error", reject.message))
        return ParsedFile(None, tuple(problems))


def _path_parts(path: str) -> tuple[str, str, date, Literal["markdown", "html"]]:
    parts = path.split("/")
    if len(parts) != 2:
        _reject(None, "item files go directly in a category folder: items/<category>/<file>")
    category, name = parts
    if category in RESERVED_NAMES or not is_valid_name(category):
        _reject(None, f"'{category}' cannot be a category: use lowercase a-z, 0-9 and '-'"
                " (not 'all' or 'weekly')")  # fmt: skip
    match = ITEM_NAME.match(name)
    if not match:
        _reject(None, "file name must be YYYY-MM-DD-<slug>.md or .html")
    if not is_valid_name(match["slug"]):
        _reject(None, f"slug '{match['slug']}' must be lowercase a-z, 0-9 and '-'")
    try:
        day = date.fromisoformat(match["date"])
    except ValueError:
        _reject(None, f"'{match['date']}' in the file name is not a real date")
    try:
        _check_year(day.year, f"'{match['date']}' in the file name")
    except ValueError as error:
        _reject(None, str(error))
    return category, match["slug"], day, "markdown" if match["ext"] == "md" else "html"


def _check_size(data: bytes) -> None:
    if len(data) > MAX_FILE_BYTES:
        _reject(None, f"file is {len(data):,} bytes, over the limit of {MAX_FILE_BYTES:,}")


def parse_item(path: str, data: bytes, settings: Settings, mtime_ns: int = 0) -> ParsedFile:
    """Read one item file (`path` relative to the items folder, with '/')."""

    def parse(problems: list[Problem]) -> ParsedFile:
        category, slug, day, markup = _path_parts(path)
        _check_size(data)
        text, notes = _decode(data)
        split = _split(text, required=True)
        fields = _Fields(_load_yaml(split.front or ""), split.front or "")
        values = _item_fields(fields, settings, category, slug, day)
        if not split.body.strip():
            notes.append((split.body_line, "the body is empty; the feeds show the title only"))
        problems.extend(
            Problem(path, line, "warning", message) for line, message in notes + fields.warnings
        )
        source = Source(path, len(data), mtime_ns, digest(data), markup)
        # Interned: a category or author name is shared by thousands of items.
        values["author"] = sys.intern(values["author"])
        item = Item(
            category=sys.intern(category), slug=slug, file_date=day, source=source, **values
        )
        return ParsedFile(item, tuple(problems))

    return _guard(path, parse)


def parse_intro(path: str, data: bytes, mtime_ns: int = 0) -> tuple[Intro | None, list[Problem]]:
    """Read a weekly introduction, `_weekly/<YYYY>-W<ww>.md`: optional title, Markdown body."""
    intro: Intro | None = None

    def parse(problems: list[Problem]) -> ParsedFile:
        nonlocal intro
        match = INTRO_NAME.match(path.rsplit("/", 1)[-1])
        if not match or not _is_iso_week(int(match["year"]), int(match["week"])):
            _reject(None, "a weekly introduction is named _weekly/YYYY-Www.md, e.g. 2020-W40.md")
        _check_size(data)
        text, notes = _decode(data)
        split = _split(text, required=False)
        fields = _Fields(
            _load_yaml(split.front) if split.front is not None else {}, split.front or ""
        )
        for key in sorted(set(fields.values) - {"title"}, key=str):
            fields.warn(str(key), f"unknown field '{key}' is ignored (only 'title' is read)")
        title = fields.text("title")
        problems.extend(Problem(path, line, "warning", m) for line, m in notes + fields.warnings)
        week = f"{match['year']}-W{match['week']}"
        source = Source(path, len(data), mtime_ns, digest(data), "markdown")
        intro = Intro(week, sanitize.plain_text(title) if title else None, source)
        return ParsedFile(None, tuple(problems))

    parsed = _guard(path, parse)
    return intro, list(parsed.problems)


def _is_iso_week(year: int, week: int) -> bool:
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        return False
    return True


def body_of(data: bytes) -> str:
    """The body text of a file's bytes (front matter removed), as `parse_item` saw it."""
    try:
        text, _ = _decode(data)
        split = _split(text, required=False)
    except _Reject:
        return ""
    return split.body


def markdown_html(text: str) -> str:
    """Markdown to HTML, unsanitised: `render_markup` is what gives it to bleach."""
    return pyromark.html(text, options=_MARKDOWN_OPTIONS)


def render_markup(body: str, markup: Literal["markdown", "html"], base: str) -> str:
    """Markdown (CommonMark with tables) or HTML to sanitised HTML with absolute URLs."""
    if markup == "markdown":
        body = markdown_html(body)
    return sanitize.clean_html(body, base)


def render_body(item: Item, data: bytes, base_url: str) -> Content:
    """The expensive part, done only for items that are shown: Markdown, bleach, summary."""
    html = render_markup(body_of(data), item.source.markup, base_url + item.path)
    return Content(html, item.summary or sanitize.summarise(html))
