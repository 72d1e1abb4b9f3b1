"""A grammar of hazards for an items folder, as Hypothesis strategies, and its materialiser.

Maintainers drop anything into `items/`: files saved in the wrong encoding, names a
shell mangled, front matter in every YAML type, FIFOs and sockets, links that lead
nowhere or outside, folders where files belong. The strategies here describe such a
folder (`Folder`: the site's settings, a few known-good items and a list of `Hazard`s)
without touching the disk; `materialise` creates it. The property tests and the live
server test share the one grammar, so a hazard added here is tried everywhere.

Every hazard says what `feedsvc check` must report about it (`Hazard.expect`), and
claims only what follows from the maintainer's guide ("a bad file is left out and
reported", "every problem names the file"): an item file that can never be published
(a bad name, no title) is an error; an entry that is left out for another reason (a
FIFO, a link to outside, a folder in a category, a file that is not UTF-8) is named,
as an error or a warning; anything else (a strange but readable front-matter value)
carries no claim, because either answer could be right. Large values are built from small draws, so
that Hypothesis's examples stay small and shrink to a readable hazard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

#: The file size limit of an item file (the maintainer's guide's "1 MiB").
MAX_FILE_BYTES = 1024 * 1024
#: Good items' categories; hazards land in them too.
GOOD_CATEGORIES = ("news", "tech")
#: Text that only the file outside the items folder holds: it must never be published.
OUTSIDE_TITLE = "Outside secret zq7"
RUNNING_AS_ROOT = os.geteuid() == 0

Expect = Literal["error", "problem"] | None
_RANK = {None: 0, "problem": 1, "error": 2}


def _stronger(a: Expect, b: Expect) -> Expect:
    return a if _RANK[a] >= _RANK[b] else b


def _short(data: bytes | str, limit: int = 72) -> str:
    """A repr that stays readable in a falsifying example, however large the value."""
    text = repr(data[:limit])
    return text if len(data) <= limit else f"{text}...({len(data):,} in all)"


# -- what a folder is made of ----------------------------------------------------------------


class Blob(bytes):
    """Bytes that print short: a falsifying example shows a 900 kB body as its start."""

    def __repr__(self) -> str:
        return _short(bytes(self))


@dataclass(frozen=True)
class Node:
    """One directory entry to create, at `path` (components) under the items folder."""

    path: tuple[bytes, ...]
    kind: Literal["file", "dir", "fifo", "socket", "symlink"]
    data: bytes = b""
    target: bytes = b""  # a symlink's target, as written
    outside: bool = False  # the target is relative to the folder beside `items/`
    mode: int | None = None  # chmod once everything exists

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", tuple(Blob(part) for part in self.path))
        object.__setattr__(self, "data", Blob(self.data))


@dataclass(frozen=True)
class Hazard:
    """Some entries that together make one hazard, and what `check` must say about it."""

    label: str
    nodes: tuple[Node, ...]
    expect: Expect = None
    #: the path `check` names for it (default: the first node's)
    reported: tuple[bytes, ...] | None = None

    @property
    def path(self) -> tuple[bytes, ...]:
        return self.reported if self.reported is not None else self.nodes[0].path

    def __repr__(self) -> str:
        nodes = "; ".join(f"{n.kind} {_short(b'/'.join(n.path), 100)}" for n in self.nodes)
        return f"<{self.label} [{self.expect or 'no claim'}]: {nodes}>"


@dataclass(frozen=True)
class Good:
    """A known-good item: its title and page are what the tests look for."""

    number: int
    batch: int = 0

    @property
    def category(self) -> str:
        return GOOD_CATEGORIES[self.number % len(GOOD_CATEGORIES)]

    @property
    def slug(self) -> str:
        return f"good-{self.batch}-{self.number}"

    @property
    def title(self) -> str:
        return f"Good item {self.batch}-{self.number} zq"

    @property
    def ext(self) -> str:
        return ("md", "html")[self.number % 2]

    @property
    def path(self) -> tuple[bytes, ...]:
        name = f"2020-09-{10 + self.number:02d}-{self.slug}.{self.ext}"
        return (self.category.encode(), name.encode())

    @property
    def page(self) -> str:
        return f"/items/{self.category}/{self.slug}.html"

    @property
    def data(self) -> bytes:
        body = "Good body." if self.ext == "md" else "<p>Good body.</p>"
        when = f"2020-09-{10 + self.number:02d} 12:00"
        return f"---\ntitle: {self.title}\ndate: {when}\n---\n{body}\n".encode()


@dataclass(frozen=True)
class SiteShape:
    """The settings a folder is served with: time zones at the ends of the offsets, the
    week's first day and small pages, so that extreme dates and paging are reached."""

    timezone: str = "UTC"
    week_starts_on: str = "monday"
    feed_size: int = 50
    weekly_size: int = 12
    weekly_publish: str = "end"

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def toml(self) -> str:
        """The same settings as a feedsvc.toml, for the command line."""
        lines = []
        for key, value in self.settings().items():
            lines.append(f"{key} = {value}" if isinstance(value, int) else f'{key} = "{value}"')
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Folder:
    site: SiteShape
    goods: tuple[Good, ...]
    hazards: tuple[Hazard, ...]

    def __repr__(self) -> str:
        hazards = "".join(f"\n    {hazard!r}" for hazard in self.hazards)
        return f"Folder({self.site}, goods={len(self.goods)}, hazards:{hazards})"


# -- pieces of text ------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A fragment of a file (front matter line, value, body) and what it does to the file."""

    text: str
    label: str
    expect: Expect = None  # for an item file
    expect_intro: Expect = None  # for a weekly introduction


def _p(text: str, label: str = "", expect: Expect = None, expect_intro: Expect = None) -> Piece:
    return Piece(text, label or _short(text, 40), expect, expect_intro)


def _mostly(choices: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    """The first (ordinary) choice half of the time, else any: a file is then often
    ordinary but for one or two hazards, which reach the code behind the first check
    that would have stopped the file (a date is only read in a file with a good name)."""
    return st.one_of(st.just(choices[0]), st.sampled_from(choices))


BENIGN_TITLE = _p("title: Hazard title", "title ok")

#: A front-matter value in each YAML type and form; the first is ordinary text.
VALUES = (
    _p("plain text", "text"),
    _p("~", "null"),
    _p("null", "null"),
    _p("", "empty"),
    _p("true", "bool"),
    _p("yes", "yes (YAML 1.1 bool)"),
    _p("123", "int"),
    _p("-0x1F", "hex int"),
    _p("0o17", "octal int"),
    _p("1e999", "float overflowing to inf"),
    _p(".nan", "NaN"),
    _p("-.inf", "-inf"),
    _p("'single ''quoted'''", "single-quoted"),
    _p('"tab\\tbell\\a nul\\0 esc\\e del\\x7f"', "escaped control characters"),
    _p('"\\ud800 lone surrogate"', "escaped lone surrogate"),
    _p('"\\uFFFE\\uFFFF non-characters"', "escaped non-characters"),
    _p('"\\U0001F600 \\u202E rtl"', "emoji and RTL override"),
    _p("[a, b, [c, d]]", "list"),
    _p("[]", "empty list"),
    _p("{a: 1, b: [2]}", "map"),
    _p("{}", "empty map"),
    _p("\n  - a\n  - b", "block list"),
    _p("\n  a: 1\n  b: 2", "block map"),
    _p("!!binary aGVsbG8=", "!!binary"),
    _p("!!binary |\n  R0lGODlhAQABAAAAACw=", "!!binary block"),
    _p("!!set {a, b}", "!!set"),
    _p("!!omap [a: 1, b: 2]", "!!omap"),
    _p("!!pairs [a: 1, a: 2]", "!!pairs"),
    _p("!!timestamp 2020-09-30", "!!timestamp"),
    _p("!!python/object/apply:os.system ['true']", "!!python/object"),
    _p("!custom x", "local tag"),
    _p("!!int not-a-number", "!!int on text"),
    _p("!!str 12", "!!str"),
    _p("!!null ''", "!!null"),
    _p("&anchor value", "anchor"),
    _p("*undefined", "undefined alias"),
    _p("|\n  block\n  text", "literal block"),
    _p(">-\n  folded\n  text", "folded block"),
    _p("'" + "x" * 100_000 + "'", "100 kB quoted string"),
    _p("y" * 100_000, "100 kB plain string"),
    _p("[" * 50 + "]" * 50, "50-deep list"),
    _p("{a: " * 50 + "1" + "}" * 50, "50-deep map"),
    _p("".join(f"\n{'  ' * (depth + 1)}a:" for depth in range(50)) + " 1", "50-deep block map"),
    _p("\ttabbed", "tab"),
    _p("a: b: c", "nested colon"),
    _p("- item", "dash"),
    _p("[unclosed", "unclosed list"),
    _p("'unclosed", "unclosed quote"),
    _p("{a: 1", "unclosed map"),
    _p("@reserved", "reserved indicator"),
    _p("`backtick", "backtick"),
    _p("% percent", "percent"),
    _p("text #comment", "comment"),
    _p("\u2028line separator", "U+2028"),
    _p("\ufeffBOM inside", "BOM"),
    _p("<script>alert(1)</script>", "<script> text"),
    _p("javascript:alert(1)", "javascript: URL"),
    _p("https://example.org/path?q=1#f", "URL"),
    _p("//evil.example/x", "protocol-relative URL"),
    _p("data:text/html,<script>alert(1)</script>", "data: URL"),
    _p("http://[::1", "broken URL"),
    _p("mailto:someone@example.org", "mailto"),
    _p("tag:hazard.example,2020:x", "tag URI"),
    _p("https://" + "a" * 100_000, "100 kB URL"),
)

#: Title lines: only those that certainly leave the file without a title are errors.
TITLE_LINES = (
    BENIGN_TITLE,
    _p("", "no title", "error"),
    _p("title: ~", "null title", "error"),
    _p("title:", "empty title", "error"),
    _p("title: ''", "empty string title", "error"),
    _p("title: [a, b]", "list title", "error"),
    _p("title: {a: 1}", "map title", "error"),
    _p("title: [unclosed", "unclosed title", "error"),
    _p("title: *undefined", "undefined alias title", "error"),
    _p("title: " + "t" * 100_000, "100 kB title"),
    _p("title: <b>Bold</b> & <script>x</script>", "markup title"),
    _p("title: Bell\x07 and \x1b[31mred", "control characters in title", "problem", "problem"),
    _p("title: |\n  two\n  lines", "multi-line title"),
    _p("title: 12", "numeric title"),
    _p("title: \u0430\u0441\u0435", "Cyrillic title"),
)

#: Known fields (and a few unknown) for a front-matter line `key: VALUE`.
KEYS = (
    "date",
    "updated",
    "author",
    "tags",
    "summary",
    "link",
    "id",
    "image",
    "draft",
    "colour",
    "Title",
    "t\u00edtle",
    "'date'",
    "1",
    "null",
    "true",
    "k" * 300,
)

#: Front matter as a whole: duplicate keys, alias graphs, odd keys and structure.
STRUCTURES = (
    _p("", "nothing more"),
    _p("title: First\ntitle: Second", "duplicate title"),
    _p("date: 2020-09-01\ndate: 2020-09-02", "duplicate date"),
    _p("tags: &t [a, b]\nsummary: *t", "alias"),
    _p(
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
        "alias bomb",
    ),
    _p("base: &b {author: X}\n<<: *b", "merge key"),
    _p("? [a, b]\n: complex key", "complex key"),
    _p("[a]: flow key", "flow sequence key"),
    _p("{a: 1}: flow map key", "flow map key"),
    _p("~: null key", "null key"),
    _p("1.5: float key", "float key"),
    _p("title:\tTabbed", "tab after colon"),
    _p("  indented: x", "indented key"),
    _p("%YAML 1.1", "YAML directive"),
    _p("...", "document end marker"),
    _p("- a\n- b", "list, not a map"),
    _p("plain scalar", "scalar, not a map"),
    _p("k" * 100_000 + ": v", "100 kB key"),
    _p("".join(f"{'  ' * depth}n{depth}:\n" for depth in range(50)) + "  " * 50 + "x", "50 deep"),
    _p("draft: true", "draft"),
    _p("draft: 'yes'", "draft as text"),
)


@st.composite
def date_texts(draw: st.DrawFn) -> Piece:
    """Dates from year 1 to 9999 with any offset, impossible days, and loose forms."""
    edges = st.sampled_from(
        (
            "2020-09-30 14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59+23:59",
            "0001-01-01",
            "9999-12-31",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999+00:00",
            "2021-02-29",
            "1900-02-29 10:00",
            "2100-02-29T00:00:00+01:00",
            "2020-02-30",
            "0000-01-01",
            "10000-01-01",
            "2020-13-01",
            "2020-09-30T24:00:00",
            "2020-09-30T10:00:00+24:00",
            "2020-W53-7",
            "2021-W53-1",
            "2021-366",
            "30/09/20",
            "Sep 31 2020",
            "1 Jan 0001 00:00 +1400",
            "31 Dec 9999 23:59 -1200",
            "2020-09-30 10:00 PST",
            "yesterday",
            "9" * 30,
        )
    )
    built = st.builds(
        lambda year, month, day, clock, offset, sep: (
            f"{year:04d}-{month:02d}-{day:02d}{sep}{clock}{offset}"
        ),
        st.integers(1, 9999),
        st.integers(1, 12),
        st.integers(1, 31),
        st.sampled_from(("00:00:00", "23:59:59", "12:00")),
        st.one_of(
            st.just(""),
            st.just("Z"),
            st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
                lambda m: f"{'+-'[m < 0]}{abs(m) // 60:02d}:{abs(m) % 60:02d}"
            ),
        ),
        st.sampled_from(("T", " ")),
    )
    text = draw(st.one_of(edges, built))
    quoted = draw(st.booleans())
    return _p(f'"{text}"' if quoted else text, f"date {text!r}")


@st.composite
def field_lines(draw: st.DrawFn) -> Piece:
    key = draw(st.sampled_from(KEYS))
    if key in ("date", "updated") and draw(st.booleans()):
        value = draw(date_texts())
    else:
        value = draw(st.sampled_from(VALUES))
    separator = "" if value.text.startswith("\n") else " "
    return _p(f"{key}:{separator}{value.text}", f"{_short(key, 12)}={value.label}")


@st.composite
def front_matters(draw: st.DrawFn) -> Piece:
    """Front-matter text (without the --- lines): a title line, fields, a structure."""
    first = draw(_mostly(TITLE_LINES))
    dates = []
    for key in ("date", "updated"):  # the fields with the most to go wrong get a line each
        if draw(st.booleans()):
            value = draw(date_texts())
            dates.append(_p(f"{key}: {value.text}", f"{key}={value.label}"))
    fields = [*dates, *draw(st.lists(field_lines(), max_size=3))]
    structure = draw(_mostly(STRUCTURES))
    if any(line.lstrip().startswith("title") for line in structure.text.split("\n")):
        # A second title line (a duplicate key) may supply the title the first lacks.
        first = dataclasses.replace(first, expect=None)
    parts = [piece for piece in (first, *fields, structure) if piece.text]
    labels = [piece.label for piece in (first, *fields, structure) if piece.label]
    expect: Expect = None
    expect_intro: Expect = None
    for piece in (first, *fields, structure):
        expect = _stronger(expect, piece.expect)
        expect_intro = _stronger(expect_intro, piece.expect_intro)
    return Piece("\n".join(p.text for p in parts), ", ".join(labels), expect, expect_intro)


#: Bodies: deep nesting in HTML and Markdown, huge attributes, scripts, control characters.
BODIES = (
    _p("Body text.", "body ok"),
    _p("", "empty body"),
    _p("<div><p><b>unclosed <i>tags", "unclosed tags"),
    _p("<div>" * 5000 + "deep", "<div>*5000"),
    _p("<div>" * 5000 + "deep" + "</div>" * 5000, "<div>*5000 closed"),
    _p("> " * 5000 + "deep", "> *5000"),
    _p("*" * 5000 + "deep" + "*" * 5000, "**5000"),
    _p("[" * 5000 + "deep", "[*5000"),
    _p("[" * 2500 + "x" + "](y)" * 2500, "nested links *2500"),
    _p("- " * 2500 + "deep", "list *2500"),
    _p("`" * 5000, "backticks *5000"),
    _p("|a" * 5000 + "|\n" + "|-" * 5000 + "|\n", "5000-column table"),
    _p('<img alt="' + "a" * 900_000 + '">', "900 kB attribute"),
    _p('<a href="javascript:alert(1)">click</a>', "javascript: link"),
    _p("[click](javascript:alert(1))", "javascript: Markdown link"),
    _p('<a href="JaVaScRiPt&#58;alert(1)">x</a>', "encoded javascript: link"),
    _p('<img src="x" onerror="alert(1)">', "event handler"),
    _p("<script>alert(1)</script>", "<script>"),
    _p("<scr<script>ipt>alert(1)</script>", "nested <script>"),
    _p("<svg><script>alert(1)</script></svg>", "<svg><script>"),
    _p("<style>body{}</style><iframe src=x>", "style and iframe"),
    _p("<![CDATA[ ]]> ]]> <!-- unclosed comment", "CDATA and comments"),
    _p("&#0; &#x1; &#xD800; &#xFFFE; &#1114112;", "references to forbidden characters"),
    _p("Bell\x07 escape\x1b \x0b\x0c del\x7f", "control characters", "problem", "problem"),
    _p("non-characters \ufffe \uffff", "U+FFFE and U+FFFF", "problem", "problem"),
    _p("C1 \x85 \x9f", "C1 controls"),
    _p("\u202e override \u2028 separators \u2029", "bidi and separators"),
)

#: How the text becomes bytes: (name, encoder, what check must say, whether the bytes
#: still hold the text's lines as written). An encoding that adds to the text (Latin-1's
#: accent, NULs, surrogates, padding) or joins its lines (NEL is no line end for feedsvc)
#: voids what the text's shape alone would make of the file: an empty file is no longer
#: empty, say.
ENCODINGS: tuple[tuple[str, Callable[[str], bytes], Expect, bool], ...] = (
    ("utf-8", lambda text: text.encode(), None, True),
    ("utf-8 with BOM", lambda text: b"\xef\xbb\xbf" + text.encode(), None, True),
    ("utf-16 with BOM", lambda text: text.encode("utf-16"), "problem", True),
    ("utf-16-le without BOM", lambda text: text.encode("utf-16-le"), "problem", True),
    ("utf-16-be without BOM", lambda text: text.encode("utf-16-be"), "problem", True),
    ("latin-1", lambda text: (text + " caf\u00e9").encode("latin-1", "replace"), "problem", False),
    ("NUL bytes", lambda text: text.encode() + b"\x00\x00", "problem", False),
    (
        "NUL in front matter",
        lambda text: (text[:4] + "\x00" + text[4:]).encode(),
        "problem",
        False,
    ),
    (
        "CESU-8 surrogate",
        lambda text: text.encode() + b" \xed\xa0\x80 \xed\xbf\xbf",
        "problem",
        False,
    ),
    ("CR line ends", lambda text: text.replace("\n", "\r").encode(), None, True),
    ("CRLF line ends", lambda text: text.replace("\n", "\r\n").encode(), None, True),
    ("NEL line ends", lambda text: text.replace("\n", "\x85").encode(), None, False),
    ("just over 1 MiB", lambda text: _padded(text, MAX_FILE_BYTES + 1), "error", True),
    ("exactly 1 MiB", lambda text: _padded(text, MAX_FILE_BYTES), None, False),
)


def _padded(text: str, size: int) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    return data + b"x" * max(0, size - len(data))


@st.composite
def contents(draw: st.DrawFn) -> tuple[bytes, str, Expect, Expect]:
    """A file's bytes: front matter (or none, or unclosed), body, then an encoding."""
    front = draw(front_matters())
    shape = draw(
        _mostly(
            (
                ("---\n{front}\n---\n{body}\n", "", None, None),
                ("{body}\n", "no front matter", "error", None),
                ("---\n{front}\n{body}\n", "unclosed front matter", "error", "error"),
                ("---   \n{front}\n---\t\n{body}\n", "--- with trailing blanks", None, None),
                ("", "empty file", "error", "error"),
                ("  \n\n", "blank file", "error", "error"),
                ("---\n---\n{body}\n", "empty front matter", "error", None),
            )
        )
    )
    body = draw(_mostly(BODIES))
    name, encode, encoding_expect, faithful = draw(_mostly(ENCODINGS))
    template, shape_label, shape_expect, shape_expect_intro = shape
    text = template.format(front=front.text, body=body.text)
    data = encode(text)
    uses_front = "{front}" in template
    uses_body = "{body}" in template
    expect = encoding_expect
    expect_intro = encoding_expect
    if faithful:
        expect = _stronger(expect, shape_expect)
        expect_intro = _stronger(expect_intro, shape_expect_intro)
    if uses_front:
        expect = _stronger(expect, front.expect)
        expect_intro = _stronger(expect_intro, front.expect_intro)
    if uses_body:
        expect = _stronger(expect, body.expect)
        expect_intro = _stronger(expect_intro, body.expect_intro)
    labels = [
        shape_label,
        front.label if uses_front else "",
        body.label if uses_body else "",
        name if name != "utf-8" else "",
    ]
    return data, "; ".join(label for label in labels if label), expect, expect_intro


# -- names -------------------------------------------------------------------------------------

_ITEM_NAME = re.compile(rb"(\d{4}-\d{2}-\d{2})-([a-z0-9]+(?:-[a-z0-9]+)*)\.(md|html)\Z")
#: Names that look like an item file's in every way a hyphen could disagree about.
_ITEM_NAME_LOOSE = re.compile(rb"\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.(md|html)\Z")
_CATEGORY = re.compile(rb"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_CATEGORY_LOOSE = re.compile(rb"[a-z0-9-]+\Z")
_INTRO_NAME = re.compile(rb"(\d{4})-W(\d{2})\.md\Z")


def ignored(name: bytes) -> bool:
    """Editor and upload leftovers, skipped without a word (the maintainer's guide)."""
    return name.startswith((b".", b"_")) or name.endswith((b"~", b".swp", b".tmp", b".part"))


def item_name_expect(name: bytes) -> Expect:
    """An item file name that can never be published is an error; a doubtful one, no claim."""
    match = _ITEM_NAME.match(name)
    if match is not None:
        try:
            date.fromisoformat(match[1].decode())
        except ValueError:
            return "error"
        return None
    return None if _ITEM_NAME_LOOSE.match(name) else "error"


def category_expect(name: bytes) -> Expect:
    if name in (b"all", b"weekly"):
        return "error"
    if _CATEGORY.match(name):
        return None
    return None if _CATEGORY_LOOSE.match(name) else "error"


def intro_name_expect(name: bytes) -> Expect:
    match = _INTRO_NAME.match(name)
    if match is None:
        return "error"
    try:
        date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        return "error"
    return None


def _no_slash(data: bytes) -> bytes:
    cleaned = data.replace(b"/", b"%").replace(b"\x00", b"%")
    return cleaned if cleaned not in (b"", b".", b"..") else b"x" + cleaned


#: Arbitrary bytes as a name: not UTF-8, control characters, newlines.
any_name = st.binary(min_size=1, max_size=24).map(_no_slash)

#: File-name dates: real, impossible and extreme.
FILE_DATES = (
    b"2020-09-30",
    b"0001-01-01",
    b"9999-12-31",
    b"2021-02-29",
    b"2100-02-29",
    b"2020-02-30",
    b"0000-01-01",
    b"2020-13-01",
    b"2020-9-30",
    b"1999-12-31",
)

#: Slugs, from valid to look-alike: Cyrillic '\u0430', full-width, decomposed accents.
SLUGS = (
    b"hz",
    b"hz-2",
    b"HZ",
    b"-hz",
    b"hz-",
    b"hz--x",
    b"h\xd0\xb0z",  # Cyrillic a
    b"h\xef\xbd\x9a",  # full-width z
    b"cafe\xcc\x81",  # e + combining acute
    b"caf\xe9",  # Latin-1
    b"h\xed\xa0\x80z",  # CESU-8 surrogate
    b"h\xffz",
    b"h z",
    b"h\nz",
    b"h\tz",
    b"h\x1b[31mz",
    b"h\rz",
    b"",
    b"a" * 241,  # the longest name a file system takes (255 bytes in all)
    b"\xd0\xb0" * 120,  # 255 bytes of Cyrillic
    b"a" * 242,  # one byte too many: the file system refuses it
)
EXTENSIONS = (b"md", b"html", b"MD", b"txt", b"md.bak", b"")


@st.composite
def item_names(draw: st.DrawFn) -> bytes:
    """An item file name from its parts, or arbitrary bytes, or a classic trap."""
    built = st.builds(
        lambda day, slug, ext: day + b"-" + slug + (b"." + ext if ext else b""),
        st.sampled_from(FILE_DATES),
        st.sampled_from(SLUGS),
        st.sampled_from(EXTENSIONS),
    )
    traps = st.sampled_from(
        (
            b"-2020-09-30-hz.md",
            b"--help",
            b"2020-09-30-hz.md\n",
            b"2020-09-30-hz.md ",
            b" 2020-09-30-hz.md",
            b"2020-09-30-hz.md.md",
            b"2020-09-30-hz.html.md",
            b"2020-09-30-.md",
            b"2020-09-30.md",
            b"\xff\xfe.md",
            b"README.md",
            b".hidden.md",
            b"_draft.md",
            b"2020-09-30-hz.md~",
            b"2020-09-30-hz.md.swp",
        )
    )
    ordinary = st.integers(0, 99).map(lambda n: b"2020-09-30-hz-%d.md" % n)
    return draw(st.one_of(ordinary, built, traps, any_name))


CATEGORIES = (
    b"news",
    b"tech",
    b"hz-cat",
    b"all",
    b"weekly",
    b"feeds",
    b"News",
    b"n\xd0\xb5ws",  # Cyrillic e
    b"caf\xe9",
    b"\xff",
    b"-news",
    b"news-",
    b"a b",
    b"x\ny",
    b".hidden",
    b"_private",
    b"c" * 255,
)

categories = st.one_of(
    st.just(b"news"), st.sampled_from(CATEGORIES), any_name.filter(lambda n: n != b"_weekly")
)


# -- hazards -----------------------------------------------------------------------------------


@st.composite
def item_files(draw: st.DrawFn) -> Hazard:
    """A file in a category folder: any name, any content, any category."""
    category = draw(categories)
    name = draw(item_names())
    data, label, content_expect, _ = draw(contents())
    expect: Expect = None
    if not ignored(category) and not ignored(name):
        expect = _stronger(category_expect(category), item_name_expect(name))
        expect = _stronger(expect, content_expect)
    return Hazard(f"item file: {label or 'ok'}", (Node((category, name), "file", data),), expect)


@st.composite
def odd_items(draw: st.DrawFn) -> Hazard:
    """An item that is published, or nearly: a good name, front matter and encoding, and
    any dates, field values and body. It takes the hazards past parsing, into the
    index, the weekly roundup and every renderer."""
    category = draw(st.sampled_from((b"news", b"tech", b"hz-cat")))
    number = draw(st.integers(0, 99))
    ext = draw(st.sampled_from(("md", "html")))
    dates = [draw(date_texts()) for _ in range(draw(st.integers(0, 2)))]
    fields = draw(st.lists(field_lines(), max_size=3))
    body = draw(st.sampled_from(BODIES))
    lines = [
        BENIGN_TITLE.text,
        *(f"{key}: {value.text}" for key, value in zip(("date", "updated"), dates, strict=False)),
        *(field.text for field in fields),
    ]
    name = f"2020-09-30-odd-{number}.{ext}".encode()
    front = "\n".join(lines)
    data = f"---\n{front}\n---\n{body.text}\n".encode()
    labels = [*(piece.label for piece in (*dates, *fields)), body.label]
    return Hazard(f"odd item: {', '.join(labels)}", (Node((category, name), "file", data),))


@st.composite
def intro_files(draw: st.DrawFn) -> Hazard:
    """A weekly introduction: week 53 of a year without one, impossible weeks, any content."""
    name = draw(
        st.one_of(
            st.sampled_from(
                (
                    b"2020-W53.md",
                    b"2021-W53.md",
                    b"2020-W40.md",
                    b"2020-W00.md",
                    b"2020-W54.md",
                    b"0000-W01.md",
                    b"0001-W01.md",
                    b"9999-W52.md",
                    b"2020-W5.md",
                    b"2020-w40.md",
                    b"2020-W40.markdown",
                )
            ),
            any_name,
        )
    )
    data, label, _, content_expect = draw(contents())
    expect: Expect = None
    if not ignored(name):
        expect = _stronger(intro_name_expect(name), content_expect)
    node = Node((b"_weekly", name), "file", data)
    return Hazard(f"weekly intro: {label or 'ok'}", (node,), expect)


@st.composite
def top_level_files(draw: st.DrawFn) -> Hazard:
    """A file directly in items/, where only category folders belong."""
    name = draw(st.one_of(item_names(), any_name))
    data, _, _, _ = draw(contents())
    expect: Expect = None if ignored(name) else "problem"
    return Hazard("file at the top level", (Node((name,), "file", data),), expect)


#: Where a special entry goes: a category folder, the top level, or the intro folder.
PLACES = ((b"news",), (), (b"_weekly",), (b"hz-cat",))
SPECIAL_KINDS = (
    "fifo",
    "socket",
    "dangling link",
    "link loop",
    "self link",
    "link to a file outside",
    "link to a folder outside",
    "link to a FIFO",
    "folder named like a file",
    "nested folders",
    "link to the items folder",
    "link to a good item",
    "unreadable file",
    "unreadable folder",
)


def special_expect(kind: str, place: tuple[bytes, ...], name: bytes) -> Expect:
    """What check must say about a special entry: each is left out, so it is named.

    Exceptions: an ignored name; at the top level a folder, which is a category like any
    (empty, or holding only folders, it has nothing to report by itself); a link that
    stays inside the folder; and an unreadable entry when the tests run as root, for
    whom nothing is unreadable.
    """
    if ignored(name):
        return None
    if kind == "link to a good item" and place:
        return None
    if kind == "unreadable file" and place and RUNNING_AS_ROOT:
        return None
    if kind == "unreadable folder":
        return None if RUNNING_AS_ROOT else "problem"
    top_folders = ("folder named like a file", "nested folders", "link to the items folder")
    if not place and kind in top_folders:
        return None
    return "problem"


@st.composite
def special_entries(draw: st.DrawFn) -> Hazard:
    """Every kind of entry that is not a plain file, where files are expected."""
    place = draw(st.sampled_from(PLACES))
    name = draw(st.one_of(st.just(b"2020-09-30-hz.md"), item_names()))
    kind = draw(st.sampled_from(SPECIAL_KINDS))
    path = (*place, name)
    good = Good(0).data
    nodes: tuple[Node, ...]
    reported = None
    if kind == "fifo":
        nodes = (Node(path, "fifo"),)
    elif kind == "socket":
        nodes = (Node(path, "socket"),)
    elif kind == "dangling link":
        nodes = (Node(path, "symlink", target=b"does-not-exist.md"),)
    elif kind == "link loop":
        other = b"2020-09-29-loop.md"
        nodes = (
            Node(path, "symlink", target=other),
            Node((*place, other), "symlink", target=name),
        )
    elif kind == "self link":
        nodes = (Node(path, "symlink", target=name),)
    elif kind == "link to a file outside":
        nodes = (Node(path, "symlink", target=b"secret.md", outside=True),)
    elif kind == "link to a folder outside":
        nodes = (Node(path, "symlink", target=b".", outside=True),)
    elif kind == "link to a FIFO":
        fifo = b"2020-09-29-fifo.md"
        nodes = (Node((*place, fifo), "fifo"), Node(path, "symlink", target=fifo))
        reported = path
    elif kind == "folder named like a file":
        nodes = (Node(path, "dir"),)
    elif kind == "nested folders":
        nodes = (
            Node(path, "dir"),
            Node((*path, b"deeper"), "dir"),
            Node((*path, b"deeper", b"2020-09-30-nested.md"), "file", good),
        )
    elif kind == "link to the items folder":
        nodes = (Node(path, "symlink", target=b"../" * len(place) or b"."),)
    elif kind == "link to a good item":
        target = b"../" * len(place) + b"/".join(Good(0).path)
        nodes = (Node(path, "symlink", target=target),)
    elif kind == "unreadable file":
        nodes = (Node(path, "file", good, mode=0),)
    else:  # an unreadable category folder, with a good item inside
        nodes = (
            Node((b"locked",), "dir", mode=0),
            Node((b"locked", b"2020-09-30-locked.md"), "file", good),
        )
        name = b"locked"
    return Hazard(kind, nodes, special_expect(kind, place, name), reported)


#: Every hazard, simplest kinds first (Hypothesis shrinks towards the first); item files,
#: where most can go wrong, and special entries, which have many kinds, come up more often.
hazards = st.one_of(
    item_files(),
    special_entries(),
    odd_items(),
    intro_files(),
    special_entries(),
    item_files(),
    odd_items(),
    top_level_files(),
)

site_shapes = st.builds(
    SiteShape,
    timezone=st.sampled_from(("UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/St_Johns")),
    week_starts_on=st.sampled_from(("monday", "sunday")),
    feed_size=st.sampled_from((50, 2)),
    weekly_size=st.sampled_from((12, 1)),
    weekly_publish=st.sampled_from(("end", "rolling")),
)


def folders(max_hazards: int = 6, batch: int = 0) -> st.SearchStrategy[Folder]:
    """A site: its settings, one to three good items and some hazards."""
    return st.builds(
        Folder,
        site=site_shapes,
        goods=st.integers(1, 3).map(lambda n: tuple(Good(i, batch) for i in range(n))),
        hazards=st.lists(hazards, min_size=1, max_size=max_hazards).map(tuple),
    )


# -- onto the disk -----------------------------------------------------------------------------


@dataclass
class Built:
    """What `materialise` made: the hazards the OS accepted (the rest were skipped)."""

    root: Path
    items: Path
    goods: tuple[Good, ...]
    hazards: list[Hazard] = field(default_factory=list)
    skipped: list[Hazard] = field(default_factory=list)

    @property
    def fifos(self) -> list[bytes]:
        return [
            self.full(node.path)
            for hazard in self.hazards
            for node in hazard.nodes
            if node.kind == "fifo"
        ]

    def full(self, path: tuple[bytes, ...]) -> bytes:
        return os.path.join(os.fsencode(self.items), *path)

    def shown(self, path: tuple[bytes, ...]) -> str:
        """The path as `feedsvc check` run in `root` names it: items/<path>."""
        return os.fsdecode(os.path.join(b"items", *path))


def materialise(folder: Folder, root: Path, *, goods_last: bool = False) -> Built:
    """Create the folder under `root/items` (and the file outside it, `root/outside`).

    Existing entries are kept: a hazard that would replace one, or that the OS refuses
    (a name too long, a socket path too long), is skipped whole. Modes are set last, so
    that an unreadable folder can be filled first. With `goods_last` the good items are
    written after the hazards, as a maintainer's next file would be.
    """
    items = root / "items"
    items.mkdir(parents=True, exist_ok=True)
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.md"
    if not secret.exists():
        secret.write_text(f"---\ntitle: {OUTSIDE_TITLE}\n---\nOutside.\n", encoding="utf-8")
    built = Built(root, items, folder.goods)
    if not goods_last:
        _write_goods(built)
    modes: list[tuple[bytes, int]] = []
    for hazard in folder.hazards:
        if _create(built, hazard, modes):
            built.hazards.append(hazard)
        else:
            built.skipped.append(hazard)
    if goods_last:
        _write_goods(built)
    for full, mode in sorted(modes, key=lambda pair: -len(pair[0])):
        os.chmod(full, mode)
    return built


def _write_goods(built: Built) -> None:
    for good in built.goods:
        full = built.full(good.path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(good.data)


def _create(built: Built, hazard: Hazard, modes: list[tuple[bytes, int]]) -> bool:
    made: list[bytes] = []
    wanted: list[tuple[bytes, int]] = []
    try:
        for node in hazard.nodes:
            full = built.full(node.path)
            if os.path.lexists(full):
                raise FileExistsError(full)
            for depth in range(1, len(node.path)):
                # Never through a link another hazard made: the entry would land
                # somewhere else (outside, say) than the path its claim names.
                if os.path.islink(built.full(node.path[:depth])):
                    raise FileExistsError(full)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            _make(built, node, full)
            made.append(full)
            if node.mode is not None:
                wanted.append((full, node.mode))
    except OSError:
        for full in reversed(made):
            _remove(full)
        return False
    modes.extend(wanted)
    return True


def _make(built: Built, node: Node, full: bytes) -> None:
    if node.kind == "file":
        descriptor = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(descriptor, node.data)
        finally:
            os.close(descriptor)
    elif node.kind == "dir":
        os.mkdir(full)
    elif node.kind == "fifo":
        os.mkfifo(full)
    elif node.kind == "socket":
        # A socket's path is limited to about 107 bytes: bind by the short name inside.
        folder, name = os.path.split(full)
        with contextlib.chdir(folder), socket.socket(socket.AF_UNIX) as listener:
            listener.bind(name)
    else:
        target = node.target
        if node.outside:
            target = os.path.join(os.fsencode(built.root / "outside"), target)
        os.symlink(target, full)


def _remove(full: bytes) -> None:
    with contextlib.suppress(OSError):
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)


def dispose(root: Path) -> None:
    """Remove a materialised folder, unreadable folders and all."""
    for folder, names, _ in os.walk(root):
        for name in names:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, stat.S_IRWXU)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fifo_readers(fifos: list[bytes]) -> Iterator[list[bytes]]:
    """Notice, and release, any process that opens one of these FIFOs for reading.

    Opening a FIFO to read blocks until a writer comes, forever if none does. While the
    block runs, a thread opens each FIFO to write without blocking, which succeeds only
    when a reader is waiting; closing it again gives that reader end-of-file. The list
    yielded collects the FIFOs found open, for the test to assert on afterwards.
    """
    opened: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            for fifo in fifos:
                try:
                    descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    continue  # no reader (ENXIO), or gone
                os.close(descriptor)
                if fifo not in opened:
                    opened.append(fifo)

    watcher = threading.Thread(target=watch, name="fifo-readers", daemon=True)
    watcher.start()
    try:
        yield opened
    finally:
        stop.set()
        watcher.join()
