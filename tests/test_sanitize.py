"""Sanitising, one rule per case: the allow-list, removed elements, URLs, characters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import bleach
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc import sanitize
from feedsvc.sanitize import (
    RULES_VERSION,
    SUMMARY_LENGTH,
    clean_html,
    plain_text,
    remove_forbidden,
    safe_url,
    shorten,
    summarise,
)

#: The page an item body belongs to: relative URLs in the body resolve against it.
PAGE = "https://news.example.org/items/retail/dunhill.html"
SITE = "https://news.example.org"


# --- the allow-list -----------------------------------------------------------------------

ALLOWED = [
    pytest.param("<p>A paragraph.</p>", id="p"),
    pytest.param("<p>Line one<br>line two</p>", id="br"),
    pytest.param("<h2>Two</h2>", id="h2"),
    pytest.param("<h3>Three</h3>", id="h3"),
    pytest.param("<h4>Four</h4>", id="h4"),
    pytest.param("<h5>Five</h5>", id="h5"),
    pytest.param("<h6>Six</h6>", id="h6"),
    pytest.param("<p><em>soft</em> and <strong>loud</strong></p>", id="em-strong"),
    pytest.param(
        '<a href="https://example.com/story" title="The story">read</a>', id="a-href-title"
    ),
    pytest.param("<ul><li>one</li><li>two</li></ul>", id="ul-li"),
    pytest.param("<ol><li>first</li><li>second</li></ol>", id="ol-li"),
    pytest.param("<blockquote><p>Quoted.</p></blockquote>", id="blockquote"),
    pytest.param("<p>Run <code>make</code></p>", id="code"),
    pytest.param("<pre><code>print(1)\n</code></pre>", id="pre-code"),
    pytest.param(
        '<img src="https://example.com/a.png" alt="A shop" title="Shop" width="640" height="480">',
        id="img-src-alt-title-width-height",
    ),
    pytest.param(
        '<figure><img src="https://example.com/a.png" alt="A"><figcaption>Caption</figcaption>'
        "</figure>",
        id="figure-figcaption",
    ),
    pytest.param(
        "<table><caption>Sales</caption><thead><tr><th>Year</th></tr></thead>"
        "<tbody><tr><td>2020</td></tr></tbody><tfoot><tr><td>Total</td></tr></tfoot></table>",
        id="table-caption-thead-tbody-tfoot-tr-th-td",
    ),
    pytest.param("<p>x<sup>2</sup> and H<sub>2</sub>O</p>", id="sup-sub"),
    pytest.param('<p><abbr title="Hypertext Markup Language">HTML</abbr></p>', id="abbr-title"),
    pytest.param("<p>above</p><hr><p>below</p>", id="hr"),
    pytest.param("<dl><dt>Term</dt><dd>Definition</dd></dl>", id="dl-dt-dd"),
]


@pytest.mark.parametrize("markup", ALLOWED)
def test_allowed_element_survives_unchanged(markup: str) -> None:
    assert clean_html(markup, PAGE) == markup


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        pytest.param("<h1>Headline</h1>", "Headline", id="h1-is-not-allowed-text-stays"),
        pytest.param("<p><span>inner</span></p>", "<p>inner</p>", id="span-unwrapped"),
        pytest.param("<div><p>inside</p></div>", "<p>inside</p>", id="div-unwrapped"),
        pytest.param("<p>kept<!-- a comment --></p>", "<p>kept</p>", id="comment-removed"),
    ],
)
def test_element_outside_allow_list_loses_tag_keeps_text(markup: str, expected: str) -> None:
    assert clean_html(markup, PAGE) == expected


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        pytest.param('<p onclick="steal()">hi</p>', "<p>hi</p>", id="onclick"),
        pytest.param('<p style="color: red">hi</p>', "<p>hi</p>", id="style"),
        pytest.param('<p class="lead">hi</p>', "<p>hi</p>", id="class"),
        pytest.param('<p id="top">hi</p>', "<p>hi</p>", id="id"),
        pytest.param(
            '<a href="https://example.com/" target="_blank" rel="opener">l</a>',
            '<a href="https://example.com/">l</a>',
            id="a-target-rel",
        ),
        pytest.param(
            '<img src="https://example.com/a.png" onerror="steal()">',
            '<img src="https://example.com/a.png">',
            id="img-onerror",
        ),
    ],
)
def test_disallowed_attribute_removed(markup: str, expected: str) -> None:
    assert clean_html(markup, PAGE) == expected


# --- elements removed with their contents -------------------------------------------------


@pytest.mark.parametrize(
    "element",
    ["script", "style", "iframe", "object", "template", "svg", "noscript", "textarea"],
)
def test_dangerous_element_removed_with_its_contents(element: str) -> None:
    markup = f"<p>before</p><{element}>SECRET</{element}><p>after</p>"

    cleaned = clean_html(markup, PAGE)

    assert cleaned == "<p>before</p><p>after</p>"
    assert "SECRET" not in cleaned


@pytest.mark.parametrize(
    "markup",
    [
        pytest.param("<script>alert('x')</script>", id="script"),
        pytest.param("<SCRIPT>alert('x')</SCRIPT>", id="uppercase-script"),
        pytest.param("<p>a<script>alert('x')</script>b</p>", id="script-inside-paragraph"),
        pytest.param("<svg><script>alert('x')</script></svg>", id="script-inside-svg"),
    ],
)
def test_script_text_survives_nowhere(markup: str) -> None:
    assert "alert" not in clean_html(markup, PAGE)
    assert "alert" not in plain_text(markup)


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        pytest.param("<p>before</p><svg/><p>after</p>", "<p>before</p><p>after</p>", id="svg"),
        pytest.param("<p>before</p><math/><p>after</p>", "<p>before</p><p>after</p>", id="math"),
        pytest.param(
            "<p>before</p><embed src=x><p>after</p>", "<p>before</p><p>after</p>", id="embed"
        ),
    ],
)
def test_self_closing_removed_element_does_not_swallow_what_follows(
    markup: str, expected: str
) -> None:
    assert clean_html(markup, PAGE) == expected


# --- URL schemes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "href",
    [
        pytest.param("http://example.com/a", id="http"),
        pytest.param("https://example.com/a", id="https"),
        pytest.param("mailto:desk@example.org", id="mailto"),
    ],
)
def test_allowed_scheme_kept(href: str) -> None:
    assert clean_html(f'<a href="{href}">x</a>', PAGE) == f'<a href="{href}">x</a>'


@pytest.mark.parametrize(
    "href",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("javascript:123", id="javascript-read-as-host-port-bleach-611"),
        pytest.param("java\tscript:alert(1)", id="tab-inside-javascript"),
        pytest.param("JaVaScRiPt:alert(1)", id="mixed-case-javascript"),
        pytest.param("&#106;avascript:alert(1)", id="entity-encoded-javascript"),
        pytest.param(" javascript:alert(1)", id="leading-space-javascript"),
        pytest.param("data:text/html;base64,PHNjcmlwdD4=", id="data"),
        pytest.param("vbscript:msgbox(1)", id="vbscript"),
        pytest.param("ftp://example.com/file", id="ftp"),
        pytest.param("file:///etc/passwd", id="file"),
    ],
)
def test_other_scheme_removed(href: str) -> None:
    assert clean_html(f'<a href="{href}">x</a>', PAGE) == "<a>x</a>"


# --- relative URLs ------------------------------------------------------------------------

RELATIVE = [
    pytest.param("../img/a.png", f"{SITE}/items/img/a.png", id="parent-folder"),
    pytest.param("/x", f"{SITE}/x", id="root-relative"),
    pytest.param("#frag", f"{PAGE}#frag", id="fragment"),
    pytest.param("?q=1", f"{PAGE}?q=1", id="query"),
    pytest.param("pic.png", f"{SITE}/items/retail/pic.png", id="sibling"),
    pytest.param("//cdn.example.org/a.png", "https://cdn.example.org/a.png", id="scheme-relative"),
]


@pytest.mark.parametrize(("url", "absolute"), RELATIVE)
def test_relative_href_made_absolute_against_page(url: str, absolute: str) -> None:
    assert clean_html(f'<a href="{url}">x</a>', PAGE) == f'<a href="{absolute}">x</a>'


@pytest.mark.parametrize(("url", "absolute"), RELATIVE)
def test_relative_img_src_made_absolute_against_page(url: str, absolute: str) -> None:
    assert clean_html(f'<img src="{url}" alt="A">', PAGE) == f'<img src="{absolute}" alt="A">'


def test_srcset_is_not_allowed_so_it_is_dropped() -> None:
    markup = '<img src="a.png" srcset="a.png 1x, b.png 2x">'

    assert clean_html(markup, PAGE) == f'<img src="{SITE}/items/retail/a.png">'


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        pytest.param(
            '<p>x<img src="javascript:alert(1)" alt="A">y</p>', "<p>xy</p>", id="js-src-with-alt"
        ),
        pytest.param('<p>x<img src="javascript:alert(1)">y</p>', "<p>xy</p>", id="js-src-alone"),
        pytest.param(
            '<p>x<img src="data:image/png;base64,AAAA">y</p>', "<p>xy</p>", id="data-src-alone"
        ),
        pytest.param('<p>x<img alt="no source">y</p>', "<p>xy</p>", id="no-src-with-alt"),
        pytest.param("<p>x<img>y</p>", "<p>xy</p>", id="bare-img"),
        pytest.param('<p>x<img src="">y</p>', "<p>xy</p>", id="empty-src"),
    ],
)
def test_img_without_safe_src_dropped(markup: str, expected: str) -> None:
    assert clean_html(markup, PAGE) == expected


# --- characters XML 1.0 forbids -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a\x00b", "ab", id="nul"),
        pytest.param("a\x08b", "ab", id="backspace"),
        pytest.param("a\x0bb", "ab", id="vertical-tab"),
        pytest.param("a\x0cb", "ab", id="form-feed"),
        pytest.param("a\x1fb", "ab", id="unit-separator"),
        pytest.param("a\ufffeb", "ab", id="u-fffe"),
        pytest.param("a\uffffb", "ab", id="u-ffff"),
        pytest.param("a\ud800b", "ab", id="lone-high-surrogate"),
        pytest.param("a\udfffb", "ab", id="lone-low-surrogate"),
        pytest.param("a\tb\nc\rd", "a\tb\nc\rd", id="tab-newline-cr-kept"),
        pytest.param("caf\u00e9 \U0001f600", "caf\u00e9 \U0001f600", id="accent-and-emoji-kept"),
        pytest.param("a\ufffdb", "a\ufffdb", id="replacement-character-kept"),
    ],
)
def test_remove_forbidden(text: str, expected: str) -> None:
    assert remove_forbidden(text) == expected


def test_clean_html_removes_forbidden_characters_keeps_emoji() -> None:
    markup = "<p>a\x00b\x08c\x0bd\ufffee\ud800f\tg\nh \U0001f600</p>"

    assert clean_html(markup, PAGE) == "<p>abcdef\tg\nh \U0001f600</p>"


def test_plain_text_removes_forbidden_characters_keeps_emoji() -> None:
    assert plain_text("a\x00b\x08c\x0bd\ufffee\ud800f \U0001f600") == "abcdef \U0001f600"


# --- plain text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        pytest.param(
            "<p>Dunhill <b>opens</b> in Shanghai</p>",
            "Dunhill opens in Shanghai",
            id="markup-stripped",
        ),
        pytest.param("<script>alert('x')</script>Title", "Title", id="script-contents-gone"),
        pytest.param("<style>p { color: red }</style>Title", "Title", id="style-contents-gone"),
        pytest.param("Fish &amp; Chips", "Fish & Chips", id="entity-decoded"),
        pytest.param("a < b", "a < b", id="bare-less-than-stays"),
        pytest.param("a &lt; b", "a < b", id="escaped-less-than-decoded"),
        pytest.param(
            "&eacute;t&eacute; &#8230;", "\u00e9t\u00e9 \u2026", id="named-and-numeric-entities"
        ),
        pytest.param("  one\n\n two\t three  ", "one two three", id="whitespace-collapsed"),
        pytest.param("a&nbsp;b", "a b", id="nbsp-collapsed"),
        pytest.param("<p>One</p><p>Two</p>", "One Two", id="paragraphs-separated"),
        pytest.param("", "", id="empty"),
    ],
)
def test_plain_text(markup: str, expected: str) -> None:
    assert plain_text(markup) == expected


# --- shorten and summarise ----------------------------------------------------------------


def words(count: int) -> str:
    return " ".join(f"word{n}" for n in range(count))


def test_shorten_leaves_short_text_unchanged() -> None:
    assert shorten("A short summary.") == "A short summary."


def test_shorten_leaves_text_of_exactly_the_limit_unchanged() -> None:
    text = "x" * SUMMARY_LENGTH

    assert shorten(text) == text


def test_shorten_cuts_at_a_word_boundary_near_the_limit_with_an_ellipsis() -> None:
    text = words(100)  # about 590 characters

    short = shorten(text)

    assert short.endswith("\u2026")
    kept = short[:-1]
    assert text.startswith(kept)
    assert text[len(kept)] == " "  # the cut falls between two words
    assert SUMMARY_LENGTH - 10 <= len(kept) <= SUMMARY_LENGTH


def test_shorten_drops_punctuation_before_the_ellipsis() -> None:
    text = "word " * 59 + "end, and then many more words after the limit"

    assert shorten(text) == "word " * 59 + "end\u2026"


def test_shorten_cuts_a_single_long_word_at_the_limit() -> None:
    assert shorten("x" * 400) == "x" * SUMMARY_LENGTH + "\u2026"


def test_shorten_honours_a_smaller_limit() -> None:
    assert shorten("one two three four", 10) == "one two\u2026"


@pytest.mark.parametrize(
    ("clean", "expected"),
    [
        pytest.param(
            "<p>First para.</p><p>Second para.</p>", "First para.", id="first-paragraph-only"
        ),
        pytest.param(
            "<h2>Heading</h2><p>Para.</p>", "Para.", id="heading-before-paragraph-skipped"
        ),
        pytest.param("<p>Hello <em>world</em>!</p>", "Hello world!", id="inline-markup-joined"),
        pytest.param("<p>Fish &amp; Chips</p>", "Fish & Chips", id="entities-decoded"),
        pytest.param(
            "<p>Line one\nline   two</p>", "Line one line two", id="whitespace-collapsed"
        ),
        pytest.param(
            "<p>Roses are red,<br>violets are blue.</p>",
            "Roses are red, violets are blue.",
            id="line-break-becomes-a-space",
        ),
        pytest.param(
            "<ul><li>one</li><li>two</li></ul>",
            "one two",
            id="no-paragraph-falls-back-to-all-text",
        ),
        pytest.param("", "", id="empty"),
    ],
)
def test_summarise(clean: str, expected: str) -> None:
    assert summarise(clean) == expected


def test_summarise_shortens_a_long_first_paragraph() -> None:
    text = words(100)

    assert summarise(f"<p>{text}</p><p>Second.</p>") == shorten(text)
    assert summarise(f"<p>{text}</p>").endswith("\u2026")


# --- safe_url -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("../a.png", f"{SITE}/items/a.png", id="relative-joined"),
        pytest.param("/feeds/all.rss", f"{SITE}/feeds/all.rss", id="root-relative-joined"),
        pytest.param("https://example.com/x", "https://example.com/x", id="absolute-https-kept"),
        pytest.param("http://example.com/x", "http://example.com/x", id="absolute-http-kept"),
        pytest.param("mailto:desk@example.org", "mailto:desk@example.org", id="mailto-kept"),
        pytest.param(
            "  https://example.com/x  ", "https://example.com/x", id="surrounding-space-stripped"
        ),
        pytest.param(
            "\x00https://example.com/x", "https://example.com/x", id="forbidden-character-removed"
        ),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("javascript:123", None, id="javascript-read-as-host-port"),
        pytest.param("JaVaScRiPt:alert(1)", None, id="mixed-case-javascript"),
        pytest.param("java\tscript:alert(1)", None, id="tab-inside-javascript"),
        pytest.param("data:text/html,hi", None, id="data"),
        pytest.param("vbscript:msgbox(1)", None, id="vbscript"),
        pytest.param("ftp://example.com/", None, id="ftp"),
        pytest.param("http:no-host", None, id="http-without-host"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
    ],
)
def test_safe_url(url: str, expected: str | None) -> None:
    assert safe_url(url, PAGE) == expected


# --- rules version ------------------------------------------------------------------------


def test_rules_version_is_a_non_empty_hex_string() -> None:
    assert isinstance(RULES_VERSION, str)
    assert re.fullmatch(r"[0-9a-f]+", RULES_VERSION)


def test_rules_version_is_the_same_in_every_process() -> None:
    # Workers must agree on cached renderings, whatever their string hash seed.
    root = Path(__file__).resolve().parent.parent
    code = "from feedsvc.sanitize import RULES_VERSION; print(RULES_VERSION)"
    seen = set()
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        seen.add(result.stdout.strip())

    assert seen == {RULES_VERSION}


def test_prepare_builds_this_threads_cleaners_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bleach.Cleaner] = []
    make = bleach.Cleaner

    def counting(*args: Any, **kwargs: Any) -> bleach.Cleaner:
        built.append(make(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(bleach, "Cleaner", counting)
    cleaned: list[str] = []

    def in_a_new_thread() -> None:  # a thread starts with no Cleaners of its own
        sanitize.prepare()
        assert len(built) == 2, "one for HTML, one for plain text"
        sanitize.prepare()
        cleaned.append(sanitize.clean_html("<p onclick='x()'>Hi</p>", "https://a.example/"))
        cleaned.append(sanitize.plain_text("<b>Hi</b>"))

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert cleaned == ["<p>Hi</p>", "Hi"] and len(built) == 2


def test_utf8_check_finds_exactly_the_forbidden_characters() -> None:
    edges = [chr(c) for c in (*range(0x00, 0x21), 0x7F, 0x85, 0xD7FF, 0xE000, 0xFFFD)]
    edges += ["\ufffe", "\uffff", "\U00010000", "\U0010ffff", "é", "日"]
    for character in edges:
        text = f"abc{character}def"
        assert sanitize.utf8_has_forbidden(text.encode()) == sanitize.has_forbidden(text), hex(
            ord(character)
        )
    assert sanitize.utf8_has_forbidden(b"a\x07b")
    assert not sanitize.utf8_has_forbidden(b"a\tb\r\nc")


# --- what a cleaning removed, for a warning -------------------------------------------------


def removed_by(markup: str) -> str:
    with sanitize.noting() as removed:
        clean_html(markup, PAGE)
    return removed.describe()


@pytest.mark.parametrize(
    ("markup", "described"),
    [
        pytest.param(
            "<p>a</p><script>alert(1)</script>", "<script> (with its content)", id="script"
        ),
        pytest.param(
            "<style>p{}</style><IFRAME src=x></IFRAME>",
            "<style>, <iframe> (with their content)",
            id="style-iframe",
        ),
        pytest.param(
            "<svg onload=x()><script>y()</script><a onclick=z()>t</a></svg>",
            "<svg> (with its content)",
            id="inside-a-removed-element-only-the-element",
        ),
        pytest.param('<p onclick="x()">Hi</p>', "the event handler onclick", id="on-allowed"),
        pytest.param(
            "<div onMouseOver=x()>Hi</div><body onload=y()>",
            "the event handlers onmouseover, onload",
            id="on-unwrapped",
        ),
        pytest.param(
            '<a href="javascript:alert(1)">x</a>',
            "the URL javascript:alert(1) (not http, https or mailto)",
            id="javascript",
        ),
        pytest.param(
            '<a href="&#106;avascript:alert(1)">x</a><a href="java\tscript:y">z</a>',
            "the URLs javascript:alert(1), java\tscript:y (not http, https or mailto)",
            id="disguised",
        ),
        pytest.param(
            '<img src="data:image/png;base64,AAAA" alt="A">',
            "the URL data:image/png;base64,AAAA (not http, https or mailto)",
            id="data-image",
        ),
        pytest.param(
            '<p onclick="a()">x</p><script>b</script><a href="vbscript:c">d</a>',
            "<script> (with its content); the event handler onclick; the URL vbscript:c "
            "(not http, https or mailto)",
            id="all-three",
        ),
        pytest.param(
            "".join(f"<p on{n}=x>y</p>" for n in "abcdefg"),
            "the event handlers ona, onb, onc, ond, one and 2 more",
            id="long-lists-counted",
        ),
    ],
)
def test_noting_names_what_a_writer_would_miss(markup: str, described: str) -> None:
    assert removed_by(markup) == described


@pytest.mark.parametrize(
    "markup",
    [
        pytest.param("<div><span class='x' style='color:red'>text</span></div>", id="unwrapped"),
        pytest.param('<a href="/relative">a</a><a href="#top">b</a>', id="relative"),
        pytest.param('<a href="mailto:a@example.org">a</a>', id="mailto"),
        pytest.param("<p>5 &lt; 6 and <code>&lt;script&gt;</code></p>", id="escaped"),
        pytest.param("<!-- a comment -->", id="comment"),
        pytest.param('<a href="">empty</a>', id="empty-url"),
    ],
)
def test_noting_keeps_quiet_about_what_loses_nothing(markup: str) -> None:
    assert removed_by(markup) == ""


def test_plain_text_notes_any_markup() -> None:
    with sanitize.noting() as removed:
        text = plain_text("<b>Bold</b> move<br>now <script>x()</script>A < B &amp; C")
    assert text == "Bold move now A < B & C"
    assert removed.describe() == "<script> (with its content); <br>, <b>"
    with sanitize.noting() as removed:
        plain_text("A < B & C, AT&amp;T")
    assert not removed


def test_without_noting_nothing_is_collected() -> None:
    with sanitize.noting() as removed:
        pass
    clean_html("<script>x</script>", PAGE)
    assert not removed


#: Pieces of markup, harmless and not, for the properties below.
PIECES = st.sampled_from(
    [
        "<p>", "</p>", "text", "<div>", "</div>", "<script>x()</script>", "<style>", "<b>",
        "<a href='javascript:x'>", "<a href='/ok'>", "</a>", "<img src=data:x onerror=y>",
        "<svg><a onclick=z>", "</svg>", "<p onclick=w>", "&lt;", "<!--", "-->", "<br/>",
        "<textarea>", "</textarea>", "<table><td>", "<math>", "<iframe srcdoc=x>", "<",
        ">", "'", '"', "=", " onclick=", "<img src='https://e.example/a.png'>",
    ]
)  # fmt: skip


@given(st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=20).map("".join))
def test_noting_changes_nothing_of_what_is_cleaned(markup: str) -> None:
    """The notes are taken by a subclass of bleach's tokenizer: the output must stay
    exactly what bleach's own parser and the same allow-list give."""
    import bleach

    plain = clean_html(markup, PAGE)
    with sanitize.noting():
        noted = clean_html(markup, PAGE)
    assert noted == plain
    stock = bleach.Cleaner(
        tags=sanitize.ALLOWED_TAGS | sanitize.REMOVED_WITH_CONTENT,
        attributes=sanitize.ALLOWED_ATTRIBUTES,
        protocols=sanitize.ALLOWED_SCHEMES,
        strip=True,
        strip_comments=True,
        filters=[lambda source: sanitize._FinishFilter(source, PAGE)],
    )
    assert plain == remove_forbidden(stock.clean(remove_forbidden(markup)))
    with sanitize.noting():
        assert plain_text(markup) == plain_text(markup)


#: Balanced, harmless markup to put around a dangerous piece.
HARMLESS = st.lists(
    st.sampled_from(
        ["text", "<p>a</p>", "<b>b</b>", "<div>c</div>", "<a href='/ok'>d</a>", "&lt;x&gt;",
         "<table><tr><td>e</td></tr></table>", "<br>", "<img src='/f.png' alt='f'>"]
    ),
    max_size=6,
).map("".join)  # fmt: skip
DANGERS = [
    ("<script>x()</script>", "<script> (with its content)"),
    ("<iframe src='https://e.example/'></iframe>", "<iframe> (with its content)"),
    ("<p onclick='x()'>p</p>", "the event handler onclick"),
    ("<span onfocus='x()'>s</span>", "the event handler onfocus"),
    ("<a href='javascript:x()'>a</a>", "the URL javascript:x() (not http, https or mailto)"),
    ("<img src='vbscript:x' alt='i'>", "the URL vbscript:x (not http, https or mailto)"),
]


@given(HARMLESS, st.sampled_from(DANGERS), HARMLESS)
def test_a_danger_in_any_harmless_surroundings_is_named(
    before: str, danger: tuple[str, str], after: str
) -> None:
    markup, described = danger
    assert removed_by(before + markup + after) == described


@given(
    st.one_of(
        st.text(max_size=30),
        st.tuples(
            st.sampled_from(["", "http://", "https://", "//", "/", "#", "?", "a:", "mailto:"]),
            st.text(max_size=20),
        ).map("".join),
    )
)
def test_a_url_passed_over_by_the_notes_is_one_the_sanitiser_keeps(url: str) -> None:
    """The notes skip joining a URL that plainly stays (most links of a body): any such
    URL must be one `safe_url` keeps, or a removal would go unnoted."""
    url = remove_forbidden(url).strip()  # as the notes see it
    if url and sanitize._PLAINLY_SAFE.match(url):
        assert safe_url(url, PAGE) is not None
