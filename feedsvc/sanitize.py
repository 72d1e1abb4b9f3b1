"""The one place that decides which HTML, URLs and characters reach a feed.

Every call to bleach lives in this module, so the sanitiser could be replaced in one place
(docs/decisions.md, "Sanitising in one place", gives the reasons for its rules).
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import bleach
from bleach import html5lib_shim
from bleach.html5lib_shim import Filter  # type: ignore[attr-defined]

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "h2", "h3", "h4", "h5", "h6", "em", "strong", "b", "i", "u", "s",
        "mark", "small", "a", "ul", "ol", "li", "blockquote", "code", "pre", "kbd",
        "samp", "img", "figure", "figcaption", "table", "thead", "tbody", "tfoot", "tr",
        "th", "td", "caption", "sup", "sub", "abbr", "hr", "dl", "dt", "dd",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, list[str]] = {
    "a": ["href", "title"],
    "img": ["src", "alt", "title", "width", "height"],
    "abbr": ["title"],
    "th": ["colspan", "rowspan", "scope"],
    "td": ["colspan", "rowspan"],
    "ol": ["start"],
}
ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})

#: Removed together with everything inside them: bleach's strip=True alone keeps the text
#: of a removed element, so a <script> body would survive as visible text.
REMOVED_WITH_CONTENT = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet",
        "template", "noscript", "noembed", "noframes", "svg", "math", "head", "title",
        "textarea", "select", "button", "canvas", "audio", "video", "form",
    }
)  # fmt: skip
URL_ATTRIBUTES = frozenset({"href", "src", "poster"})

#: Changes whenever the rules above (or bleach) change; cached renderings carry it.
RULES_VERSION = hashlib.sha256(
    repr(
        (
            sorted(ALLOWED_TAGS),
            sorted(ALLOWED_ATTRIBUTES.items()),
            sorted(ALLOWED_SCHEMES),
            sorted(REMOVED_WITH_CONTENT),
            bleach.__version__,
        )
    ).encode()
).hexdigest()[:16]

# Characters XML 1.0 forbids: C0 controls but tab, LF and CR; surrogates; U+FFFE, U+FFFF.
_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACE = re.compile(r"\s+")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
SUMMARY_LENGTH = 300


def remove_forbidden(text: str) -> str:
    """Remove the characters XML 1.0 cannot carry, so one bad character never breaks a feed."""
    return _FORBIDDEN.sub("", text)


def has_forbidden(text: str) -> bool:
    return _FORBIDDEN.search(text) is not None


#: Every byte but the C0 controls XML forbids, for `bytes.translate` to delete.
_NOT_C0 = bytes(b for b in range(256) if b >= 0x20 or b in b"\t\n\r")


def utf8_has_forbidden(data: bytes) -> bool:
    """`has_forbidden` of valid UTF-8 `data`, decoded (in which surrogates cannot occur),
    more cheaply: deleting every allowed byte leaves the C0 controls, and U+FFFE and
    U+FFFF are two fixed byte sequences."""
    nonchars = b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data
    return nonchars or bool(data.translate(None, _NOT_C0))


def safe_url(url: str, base: str) -> str | None:
    """`url` made absolute against `base`, or None unless its scheme is allowed.

    Checked after joining, because bleach reads `javascript:123` as host and port
    (mozilla/bleach#611) and front-matter URLs never pass through bleach at all.
    """
    url = remove_forbidden(url).strip()
    if not url:
        return None
    try:
        absolute = urljoin(base, url)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return None
    if parts.scheme.lower() != "mailto" and not parts.netloc:
        return None
    return absolute


def _safe_srcset(value: str, base: str) -> str | None:
    candidates = []
    for candidate in value.split(","):
        url, _, descriptor = candidate.strip().partition(" ")
        absolute = safe_url(url, base)
        if absolute is None:
            return None
        candidates.append(f"{absolute} {descriptor.strip()}".strip())
    return ", ".join(candidates)


class _FinishFilter(Filter):  # type: ignore[misc]
    """Runs after bleach's allow-list: drops dangerous elements whole, fixes URLs."""

    def __init__(self, source: Any, base: str) -> None:
        super().__init__(source)
        self.base = base

    def __iter__(self) -> Iterator[dict[str, Any]]:
        depth = 0  # inside how many elements that go with their content
        for token in super().__iter__():
            kind = token["type"]
            if (
                kind in {"StartTag", "EndTag", "EmptyTag"}
                and token["name"] in REMOVED_WITH_CONTENT
            ):
                if kind == "StartTag":
                    depth += 1
                elif kind == "EndTag":
                    depth = max(depth - 1, 0)
                continue
            if depth:
                continue
            if kind in {"StartTag", "EmptyTag"} and not self._fix_urls(token):
                continue
            yield token

    def _fix_urls(self, token: dict[str, Any]) -> bool:
        """Absolutise URL attributes, drop unsafe ones; False drops an <img> left without src."""
        attributes: dict[tuple[str | None, str], str] = token["data"]
        for key in list(attributes):
            name = key[1]
            if name in URL_ATTRIBUTES:
                fixed = safe_url(attributes[key], self.base)
            elif name == "srcset":
                fixed = _safe_srcset(attributes[key], self.base)
            else:
                continue
            if fixed is None:
                del attributes[key]
            else:
                attributes[key] = fixed
        return not (token["name"] == "img" and (None, "src") not in attributes)


#: The page URL that relative URLs are resolved against, for the filter of this call.
_base: ContextVar[str] = ContextVar("base", default="http://localhost/")
_cleaners = threading.local()  # bleach Cleaners are not thread-safe: one set per thread


class Removed:
    """What the cleanings of a `noting` block removed that a writer would miss: elements
    removed with their content, event handlers, URLs of schemes that are not allowed, and
    (in plain text) any markup at all. Markup that is only unwrapped or dropped without
    loss of text (a `<div>`, a `class`) is not noted."""

    #: Names shown per kind; the rest are counted.
    SHOWN = 5

    def __init__(self) -> None:
        self.elements: dict[str, None] = {}  # "<script>", in order of appearance
        self.handlers: dict[str, None] = {}  # "onclick"
        self.urls: dict[str, None] = {}  # "javascript:alert(1)"
        self.markup: dict[str, None] = {}  # tags in plain text: "<b>"

    def __bool__(self) -> bool:
        return bool(self.elements or self.handlers or self.urls or self.markup)

    def describe(self) -> str:
        """The notes as one clause: "<script> (with its content); the event handler
        onclick; the URL javascript:x (not http, https or mailto)"."""
        parts = []
        if self.elements:
            content = "its content" if len(self.elements) == 1 else "their content"
            parts.append(f"{_listed(self.elements)} (with {content})")
        if self.handlers:
            kind = "event handler" if len(self.handlers) == 1 else "event handlers"
            parts.append(f"the {kind} {_listed(self.handlers)}")
        if self.urls:
            kind = "URL" if len(self.urls) == 1 else "URLs"
            parts.append(f"the {kind} {_listed(self.urls)} (not http, https or mailto)")
        if self.markup:
            parts.append(_listed(self.markup))
        return "; ".join(parts)


def _listed(names: dict[str, None]) -> str:
    shown = list(names)[: Removed.SHOWN]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


#: The notes of the `noting` block a cleaning runs in, if any.
_removed: ContextVar[Removed | None] = ContextVar("removed", default=None)
_URL_SHOWN = 60  # characters of a removed URL shown in a note


@contextmanager
def noting() -> Iterator[Removed]:
    """Note what `clean_html` and `plain_text` remove within the block (`Removed`).

    The notes are taken by the sanitiser's own tokenizer as it reads the markup, so a
    body is read once whether its notes are wanted or not."""
    removed = Removed()
    token = _removed.set(removed)
    try:
        yield removed
    finally:
        _removed.reset(token)


class _NotingTokenizer(html5lib_shim.BleachHTMLTokenizer):
    """bleach's tokenizer, noting each tag as it is read, before bleach strips those the
    allow-list does not name: only here is every tag seen with its attributes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.removed_depth = 0  # inside how many elements that go with their content

    def emitCurrentToken(self) -> None:
        removed = _removed.get()
        token = self.currentToken
        if removed is not None and token and token["type"] in html5lib_shim.TAG_TOKEN_TYPES:
            self._note(removed, token)
        super().emitCurrentToken()

    def _note(self, removed: Removed, token: Any) -> None:
        name = str(token["name"]).lower()
        start = token["type"] == html5lib_shim.TAG_TOKEN_TYPE_START
        if name in REMOVED_WITH_CONTENT:
            if not start:
                self.removed_depth = max(self.removed_depth - 1, 0)
                return
            if not self.removed_depth:
                removed.elements.setdefault(f"<{name}>")
            if not token.get("selfClosing"):
                self.removed_depth += 1
            return
        if not start or self.removed_depth:
            return
        if not getattr(self.parser, "html_allowed", True):
            removed.markup.setdefault(f"<{name}>")
            return
        data = token["data"]
        if not data:
            return
        allowed = ALLOWED_ATTRIBUTES.get(name, ())
        for attribute, value in data.items() if isinstance(data, dict) else data:
            attribute = str(attribute[1] if isinstance(attribute, tuple) else attribute).lower()
            if attribute.startswith("on"):
                removed.handlers.setdefault(attribute)
            elif attribute in URL_ATTRIBUTES and attribute in allowed and name in ALLOWED_TAGS:
                url = remove_forbidden(html.unescape(str(value))).strip()
                if url and not _PLAINLY_SAFE.match(url) and safe_url(url, _base.get()) is None:
                    removed.urls.setdefault(shorten(url, _URL_SHOWN))


#: URLs `safe_url` keeps whatever the page, told apart without joining them to it: most
#: links of a body (the sanitiser checks each URL again itself).
_PLAINLY_SAFE = re.compile(
    r"(?:https?:)?//[a-z0-9.-]+(?::[0-9]*)?(?:[/?#]|\Z)|/(?!/)|#|\?|[^:/?#\s]+(?:[/?#]|\Z)",
    re.IGNORECASE,
)


#: html5lib's signal to parse again (bleach's parser catches it; the stubs omit it).
_Reparse: type[Exception] = html5lib_shim.ReparseException  # type: ignore[attr-defined]


class _NotingParser(html5lib_shim.BleachHTMLParser):
    """bleach's parser with the noting tokenizer; `html_allowed` says which cleaner."""

    html_allowed = True

    def _parse(
        self,
        stream: Any,
        innerHTML: bool = False,
        container: str = "div",
        scripting: bool = True,
        **kwargs: Any,
    ) -> None:
        # As BleachHTMLParser._parse, but for the tokenizer's class.
        self.innerHTMLMode = innerHTML
        self.container = container
        self.scripting = scripting
        self.tokenizer = _NotingTokenizer(
            stream=stream, consume_entities=self.consume_entities, parser=self, **kwargs
        )
        self.reset()
        try:
            self.mainLoop()
        except _Reparse:
            self.reset()
            self.mainLoop()


def _cleaner(html_allowed: bool) -> bleach.Cleaner:
    """This thread's Cleaner (building one costs more than a short clean)."""
    name = "html" if html_allowed else "text"
    cleaner: bleach.Cleaner | None = getattr(_cleaners, name, None)
    if cleaner is None:
        cleaner = bleach.Cleaner(
            # The elements removed with their content must pass the allow-list first, or
            # strip=True would already have unwrapped their text before the filter runs.
            tags=(ALLOWED_TAGS if html_allowed else frozenset()) | REMOVED_WITH_CONTENT,
            attributes=ALLOWED_ATTRIBUTES if html_allowed else {},
            protocols=ALLOWED_SCHEMES,
            strip=True,
            strip_comments=True,
            filters=[lambda source: _FinishFilter(source, _base.get())],
        )
        # The parser bleach built, made the noting one: its class adds only `_parse`.
        cleaner.parser.__class__ = _NotingParser
        setattr(cleaner.parser, "html_allowed", html_allowed)  # noqa: B010
        setattr(_cleaners, name, cleaner)
    return cleaner


def prepare() -> None:
    """Build this thread's Cleaners now: each is costly to build (html5lib's parser), so a
    start-up pays for them once rather than the first request, in each forked worker, after
    it."""
    _cleaner(True)
    _cleaner(False)


def clean_html(markup: str, base: str) -> str:
    """Sanitise an HTML body: the allow-list, no scripts, absolute URLs, XML-safe characters."""
    token = _base.set(base)
    try:
        return remove_forbidden(_cleaner(True).clean(remove_forbidden(markup)))
    finally:
        _base.reset(token)


def plain_text(markup: str) -> str:
    """Text with all markup removed, entities decoded and white space collapsed."""
    if "<" in markup or "&" in markup:  # else there is no markup to parse (the common case)
        removed = _removed.get()
        if removed is not None and _BREAK.search(markup):
            removed.markup.setdefault("<br>")
        markup = _BREAK.sub(" ", markup)  # "One<br>Two" reads "One Two", not "OneTwo"
        markup = html.unescape(_cleaner(False).clean(remove_forbidden(markup)))
    return _SPACE.sub(" ", remove_forbidden(markup)).strip()


def shorten(text: str, limit: int = SUMMARY_LENGTH) -> str:
    """`text` cut at a word boundary near `limit` characters, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit + 1)
    cut = text[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:.-\u2013\u2014") + "\u2026"


class _FirstParagraph(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraph: list[str] = []
        self.everything: list[str] = []
        self.state = "before"  # before, inside, done

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "p" and self.state == "before":
            self.state = "inside"
        elif tag == "br":
            self.handle_data(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self.state == "inside":
            self.state = "done"

    def handle_data(self, data: str) -> None:
        self.everything.append(data)
        if self.state == "inside":
            self.paragraph.append(data)


def summarise(clean: str, limit: int = SUMMARY_LENGTH) -> str:
    """The first paragraph of sanitised HTML as plain text, cut near `limit` characters."""
    end = clean.find("</p>")  # parse no further than needed: a roundup is megabytes long
    parser = _FirstParagraph()
    parser.feed(clean[: end + 4] if end >= 0 else clean[: limit * 20])
    parser.close()
    text = _SPACE.sub(" ", "".join(parser.paragraph)).strip()
    if not text:
        text = _SPACE.sub(" ", " ".join(parser.everything)).strip()
    return shorten(text, limit)
