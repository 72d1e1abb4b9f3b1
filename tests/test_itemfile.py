"""Item files and bad input, one file at a time: `parse_item`, `render_body`, `parse_intro`."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc.config import Settings
from feedsvc.itemfile import (
    MAX_FILE_BYTES,
    MAX_TITLE_LENGTH,
    ignored,
    parse_intro,
    parse_item,
    render_body,
)
from feedsvc.model import Item, ParsedFile, Problem

SETTINGS = Settings(
    base_url="https://news.example.org",
    timezone="Europe/Paris",
    author="Desk",
    items_dir=Path("items"),
)
SITE = "https://news.example.org"
PATH = "retail/2020-09-30-dunhill.md"
PARIS = ZoneInfo("Europe/Paris")


def item_file(front: str, body: str = "Body text.\n") -> bytes:
    """An item file's bytes: `front` between `---` lines, then `body`."""
    return f"---\n{front}\n---\n{body}".encode()


def parse(data: bytes, path: str = PATH, mtime_ns: int = 0) -> ParsedFile:
    return parse_item(path, data, SETTINGS, mtime_ns)


def parsed_item(data: bytes, path: str = PATH) -> Item:
    """The item of a file that must parse; its problems may only be warnings."""
    parsed = parse(data, path)
    assert parsed.item is not None, [str(p) for p in parsed.problems]
    assert all(p.severity == "warning" for p in parsed.problems)
    return parsed.item


def clean_item(data: bytes, path: str = PATH) -> Item:
    """The item of a file that must parse without a single problem."""
    parsed = parse(data, path)
    assert parsed.problems == (), [str(p) for p in parsed.problems]
    assert parsed.item is not None
    return parsed.item


def the_error(data: bytes, path: str = PATH) -> Problem:
    """The one error of a file that is refused."""
    parsed = parse(data, path)
    assert parsed.item is None
    errors = [p for p in parsed.problems if p.severity == "error"]
    assert len(errors) == 1, [str(p) for p in parsed.problems]
    assert errors[0].path == path
    return errors[0]


def the_warning(data: bytes) -> Problem:
    """The one warning of a file that is parsed anyway."""
    parsed = parse(data)
    assert parsed.item is not None
    assert len(parsed.problems) == 1, [str(p) for p in parsed.problems]
    assert parsed.problems[0].severity == "warning"
    return parsed.problems[0]


# --- a good file --------------------------------------------------------------------------


def test_minimal_file_gives_an_item_with_every_default() -> None:
    item = clean_item(item_file("title: Dunhill opens in Shanghai"))

    assert item.category == "retail"
    assert item.slug == "dunhill"
    assert item.file_date.isoformat() == "2020-09-30"
    assert item.title == "Dunhill opens in Shanghai"
    assert item.published == datetime(2020, 9, 30, tzinfo=PARIS)
    assert item.updated == item.published
    assert item.author == "Desk"
    assert item.tags == ()
    assert item.summary is None
    assert item.link is None
    assert item.id == "tag:news.example.org,2020-09-30:retail/dunhill"
    assert item.image is None
    assert item.draft is False
    assert item.path == "/items/retail/dunhill.html"


def test_source_records_the_file_version() -> None:
    data = item_file("title: T")

    parsed = parse_item("retail/2020-09-30-dunhill.html", data, SETTINGS, 1234)

    assert parsed.item is not None
    source = parsed.item.source
    assert (source.path, source.size, source.mtime_ns, source.markup) == (
        "retail/2020-09-30-dunhill.html",
        len(data),
        1234,
        "html",
    )
    assert source.digest == clean_item(data).source.digest
    assert source.digest != clean_item(item_file("title: U")).source.digest


def test_markdown_file_is_markdown() -> None:
    assert clean_item(item_file("title: T")).source.markup == "markdown"


# --- path rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        pytest.param(
            "Retail/2020-09-30-dunhill.md", "cannot be a category", id="uppercase-category"
        ),
        pytest.param(
            "all/2020-09-30-dunhill.md", "cannot be a category", id="category-all-reserved"
        ),
        pytest.param(
            "weekly/2020-09-30-dunhill.md", "cannot be a category", id="category-weekly-reserved"
        ),
        pytest.param(
            "_drafts/2020-09-30-dunhill.md",
            "cannot be a category",
            id="underscore-category-reserved",
        ),
        pytest.param(
            "a_b/2020-09-30-dunhill.md", "cannot be a category", id="underscore-in-category"
        ),
        pytest.param(
            "caf\u00e9/2020-09-30-dunhill.md", "cannot be a category", id="non-ascii-category"
        ),
        pytest.param("../2020-09-30-dunhill.md", "cannot be a category", id="dot-dot-category"),
        pytest.param("/2020-09-30-dunhill.md", "cannot be a category", id="empty-category"),
        pytest.param("retail/dunhill.md", "YYYY-MM-DD-<slug>", id="no-date-in-name"),
        pytest.param("retail/2020-09-30-dunhill.txt", "YYYY-MM-DD-<slug>", id="wrong-extension"),
        pytest.param("retail/2020-09-30.md", "YYYY-MM-DD-<slug>", id="no-slug"),
        pytest.param("retail/2020-02-30-dunhill.md", "not a real date", id="impossible-date"),
        pytest.param("retail/2020-09-30-Dunhill.md", "slug 'Dunhill'", id="uppercase-slug"),
        pytest.param("retail/2020-09-30-dun_hill.md", "slug 'dun_hill'", id="underscore-in-slug"),
        pytest.param(
            "retail/x/2020-09-30-dunhill.md", "directly in a category", id="nested-folder"
        ),
        pytest.param("2020-09-30-dunhill.md", "directly in a category", id="no-category-folder"),
    ],
)
def test_bad_path_is_an_error(path: str, reason: str) -> None:
    error = the_error(item_file("title: T"), path)

    assert error.line is None
    assert reason in error.message


def test_category_and_slug_may_hold_digits_and_hyphens() -> None:
    item = clean_item(item_file("title: T"), "retail-2/2020-09-30-dunhill-2020.md")

    assert (item.category, item.slug) == ("retail-2", "dunhill-2020")


@pytest.mark.parametrize(
    ("name", "skipped"),
    [
        pytest.param(".2020-09-30-dunhill.md", True, id="dot-file"),
        pytest.param("_2020-09-30-dunhill.md", True, id="underscore-file"),
        pytest.param("2020-09-30-dunhill.md~", True, id="editor-backup"),
        pytest.param("2020-09-30-dunhill.md.swp", True, id="vim-swap"),
        pytest.param("2020-09-30-dunhill.md.tmp", True, id="temporary"),
        pytest.param("2020-09-30-dunhill.md.part", True, id="partial-upload"),
        pytest.param("2020-09-30-dunhill.md", False, id="item-file"),
    ],
)
def test_ignored_names(name: str, skipped: bool) -> None:
    assert ignored(name) is skipped


# --- title --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("front", "title", "removed"),
    [
        pytest.param(
            "title: Dunhill <b>opens</b> in Shanghai",
            "Dunhill opens in Shanghai",
            "<b>",
            id="markup-removed",
        ),
        pytest.param("title: Fish &amp; Chips", "Fish & Chips", None, id="entity-decoded"),
        pytest.param("title: A < B and C > D", "A < B and C > D", None, id="not-markup"),
        pytest.param(
            "title: \"<script>alert('x')</script>Dunhill\"",
            "Dunhill",
            "<script> (with its content)",
            id="script-removed-with-text",
        ),
        pytest.param("title: One<br>Two <i>x</i>", "One Two x", "<br>, <i>", id="br"),
        pytest.param("title: |\n  Two\n  lines", "Two lines", None, id="block-scalar-collapsed"),
        pytest.param("title: 2020", "2020", None, id="number-read-as-text"),
    ],
)
def test_title_is_plain_text(front: str, title: str, removed: str | None) -> None:
    """Feeds carry titles as plain text: markup is removed, with a warning naming it."""
    if removed is None:
        assert clean_item(item_file("author: A\n" + front)).title == title
        return
    assert parsed_item(item_file("author: A\n" + front)).title == title
    warning = the_warning(item_file("author: A\n" + front))
    assert warning.line == 3
    assert warning.message == (f"removed markup from 'title' (titles are plain text): {removed}")


@pytest.mark.parametrize(
    ("front", "line", "reason"),
    [
        pytest.param("author: Jo", None, "missing 'title:'", id="missing"),
        pytest.param("title:", None, "missing 'title:'", id="null"),
        pytest.param(
            "author: Jo\ntitle: [a, b]", 3, "'title' must be text, not a list", id="list"
        ),
        pytest.param("title: {a: b}", 2, "'title' must be text, not a dict", id="mapping"),
        pytest.param("title: true", 2, "'title' must be text, not a bool", id="boolean"),
        pytest.param('title: "<b></b>"', 2, "'title' is empty", id="only-markup"),
    ],
)
def test_title_problem_is_an_error(front: str, line: int | None, reason: str) -> None:
    error = the_error(item_file(front))

    assert error.line == line
    assert reason in error.message


def test_very_long_title_is_shortened_with_a_warning() -> None:
    long_title = " ".join(f"word{n}" for n in range(100))  # about 590 characters

    parsed = parse(item_file(f"title: {long_title}"))

    assert parsed.item is not None
    title = parsed.item.title
    assert title.endswith("\u2026")
    assert long_title.startswith(title[:-1])
    assert long_title[len(title) - 1] == " "  # cut between two words
    assert len(title) <= MAX_TITLE_LENGTH + 1  # the cut, then the ellipsis
    (warning,) = parsed.problems
    assert (warning.severity, warning.line) == ("warning", 2)
    assert "title" in warning.message


# --- date and updated ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "published"),
    [
        pytest.param(
            "2020-09-30T10:00:00", "2020-09-30T10:00:00+02:00", id="naive-iso-summer-time"
        ),
        pytest.param("2020-01-15 10:00", "2020-01-15T10:00:00+01:00", id="naive-iso-winter-time"),
        pytest.param("2020-09-30", "2020-09-30T00:00:00+02:00", id="date-only-midnight-site-time"),
        # An explicit offset fixes the instant; every date is then shown in site time.
        pytest.param(
            "2020-09-30T10:00:00+05:30", "2020-09-30T06:30:00+02:00", id="explicit-offset-honoured"
        ),
        pytest.param("2020-09-30T08:00:00Z", "2020-09-30T10:00:00+02:00", id="z-is-utc"),
        pytest.param("2020-09-30 10:00 UTC", "2020-09-30T12:00:00+02:00", id="utc-name"),
        pytest.param(
            "Wed, 30 Sep 2020 10:00:00 +0200", "2020-09-30T10:00:00+02:00", id="rfc-2822"
        ),
        pytest.param("September 30, 2020 10:00", "2020-09-30T10:00:00+02:00", id="words"),
        pytest.param(
            "2099-01-01T09:00:00",
            "2099-01-01T09:00:00+01:00",
            id="future-is-scheduled-not-refused",
        ),
    ],
)
def test_date_forms(value: str, published: str) -> None:
    item = clean_item(item_file(f"title: T\ndate: {value}"))

    assert item.published.isoformat() == published


def test_naive_date_is_in_the_site_zone_not_a_fixed_offset() -> None:
    item = clean_item(item_file("title: T\ndate: 2020-09-30T10:00:00"))

    assert item.published.tzinfo == PARIS


@pytest.mark.parametrize(
    ("path", "published"),
    [
        pytest.param(PATH, "2020-09-30T00:00:00+02:00", id="summer-file-name"),
        pytest.param(
            "retail/2020-01-15-dunhill.md", "2020-01-15T00:00:00+01:00", id="winter-file-name"
        ),
    ],
)
def test_no_date_means_the_file_name_date_at_midnight_site_time(path: str, published: str) -> None:
    assert clean_item(item_file("title: T"), path).published.isoformat() == published


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(
            "30/09/20", 'date\': "30/09/20" is ambiguous; write 2020-09-30', id="ambiguous"
        ),
        pytest.param("01/02/2020", "ambiguous", id="day-month-or-month-day"),
        pytest.param("next tuesday", "is not a date", id="unreadable"),
        pytest.param("2020-09-31", "is not a date", id="impossible-day"),
        pytest.param("[2020, 9, 30]", "'date' must be text, not a list", id="list"),
    ],
)
def test_bad_date_is_an_error_on_its_line(value: str, reason: str) -> None:
    error = the_error(item_file(f"title: T\ndate: {value}"))

    assert error.line == 3
    assert reason in error.message


def test_unknown_timezone_name_is_not_silently_read_as_site_time() -> None:
    # dateutil cannot map "PST" to an offset and returns a naive time; read as Paris
    # time, the item would be published nine hours early without a word.
    error = the_error(item_file("title: T\ndate: 2020-09-30 10:00 PST"))

    assert error.line == 3
    assert "PST" in error.message


def test_updated_defaults_to_date() -> None:
    item = clean_item(item_file("title: T\ndate: 2020-09-30T10:00"))

    assert item.updated == item.published


def test_updated_after_date_is_kept() -> None:
    item = clean_item(item_file("title: T\ndate: 2020-09-30T10:00\nupdated: 2020-10-02T08:00"))

    assert item.updated.isoformat() == "2020-10-02T08:00:00+02:00"


def test_updated_before_date_is_clamped_with_a_warning() -> None:
    data = item_file("title: T\ndate: 2020-09-30T10:00\nupdated: 2020-09-29")

    warning = the_warning(data)

    assert warning.line == 4
    assert "'updated' is before 'date'" in warning.message
    item = parsed_item(data)
    assert item.updated == item.published == datetime(2020, 9, 30, 10, tzinfo=PARIS)


def test_bad_updated_is_an_error() -> None:
    error = the_error(item_file("title: T\nupdated: someday"))

    assert error.line == 3
    assert "'updated'" in error.message


def test_timezone_offset_changes_with_daylight_saving() -> None:
    winter = clean_item(item_file("title: T\ndate: 2020-03-28T12:00")).published
    summer = clean_item(item_file("title: T\ndate: 2020-03-30T12:00")).published

    assert winter.utcoffset() == timedelta(hours=1)
    assert summer.utcoffset() == timedelta(hours=2)


# --- author, tags, summary ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("front", "author"),
    [
        pytest.param("title: T", "Desk", id="default-is-site-author"),
        pytest.param("title: T\nauthor: Jane Doe", "Jane Doe", id="given"),
        pytest.param("title: T\nauthor: Jane <b>Doe</b>", "Jane Doe", id="markup-removed"),
        pytest.param('title: T\nauthor: ""', "Desk", id="empty-falls-back"),
    ],
)
def test_author(front: str, author: str) -> None:
    assert clean_item(item_file(front)).author == author


@pytest.mark.parametrize(
    ("front", "tags"),
    [
        pytest.param("title: T", (), id="none"),
        pytest.param("title: T\ntags: [retail, china]", ("retail", "china"), id="list"),
        pytest.param(
            "title: T\ntags:\n  - retail\n  - china", ("retail", "china"), id="block-list"
        ),
        pytest.param("title: T\ntags: retail, china", ("retail", "china"), id="comma-string"),
        pytest.param("title: T\ntags: [retail, retail]", ("retail",), id="duplicates-once"),
        pytest.param("title: T\ntags: [2020]", ("2020",), id="number-as-text"),
        pytest.param("title: T\ntags: [<b>bold</b>]", ("bold",), id="markup-removed"),
    ],
)
def test_tags(front: str, tags: tuple[str, ...]) -> None:
    assert clean_item(item_file(front)).tags == tags


def test_tags_that_are_not_words_are_an_error() -> None:
    error = the_error(item_file("title: T\ntags: {retail: yes}"))

    assert error.line == 3
    assert "'tags'" in error.message


@pytest.mark.parametrize(
    ("front", "summary"),
    [
        pytest.param("title: T", None, id="absent-is-derived-later"),
        pytest.param("title: T\nsummary: A short summary.", "A short summary.", id="given"),
        pytest.param("title: T\nsummary: A <i>short</i> one", "A short one", id="markup-removed"),
    ],
)
def test_summary(front: str, summary: str | None) -> None:
    assert clean_item(item_file(front)).summary == summary


# --- link and image -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "link"),
    [
        pytest.param(
            "https://other.example.com/story", "https://other.example.com/story", id="absolute"
        ),
        pytest.param("../other", f"{SITE}/items/other", id="relative-to-item-page"),
        pytest.param("/elsewhere", f"{SITE}/elsewhere", id="root-relative"),
        pytest.param("'#notes'", f"{SITE}/items/retail/dunhill.html#notes", id="on-the-page"),
    ],
)
def test_link(value: str, link: str) -> None:
    assert clean_item(item_file(f"title: T\nlink: {value}")).link == link


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("link", "javascript:alert(1)", id="link-javascript"),
        pytest.param("link", "data:text/html,hi", id="link-data"),
        pytest.param("image", "javascript:alert(1)", id="image-javascript"),
        pytest.param("image", "data:image/png;base64,AAAA", id="image-data"),
        pytest.param("image", "ftp://example.com/a.png", id="image-ftp"),
    ],
)
def test_unsafe_url_dropped_with_a_warning(field: str, value: str) -> None:
    data = item_file(f"title: T\n{field}: {value}")

    warning = the_warning(data)

    assert warning.line == 3
    assert f"'{field}'" in warning.message
    assert getattr(parsed_item(data), field) is None


@pytest.mark.parametrize(
    ("value", "image"),
    [
        pytest.param(
            "https://cdn.example.org/a.jpg", "https://cdn.example.org/a.jpg", id="absolute"
        ),
        pytest.param("/img/a.png", f"{SITE}/img/a.png", id="root-relative"),
        pytest.param("a.png", f"{SITE}/items/retail/a.png", id="relative-to-item-page"),
    ],
)
def test_image(value: str, image: str) -> None:
    assert clean_item(item_file(f"title: T\nimage: {value}")).image == image


# --- id and draft -------------------------------------------------------------------------


def test_default_id_survives_edits_to_title_and_body() -> None:
    first = clean_item(item_file("title: First", "One body.\n"))
    edited = clean_item(item_file("title: Second\nsummary: New", "Another body.\n"))

    assert first.id == edited.id == "tag:news.example.org,2020-09-30:retail/dunhill"


def test_same_slug_on_different_dates_gives_different_ids() -> None:
    first = clean_item(item_file("title: T"), "retail/2020-09-30-dunhill.md")
    second = clean_item(item_file("title: T"), "retail/2020-10-01-dunhill.md")

    assert first.id != second.id
    assert second.id == "tag:news.example.org,2020-10-01:retail/dunhill"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("tag:example.com,2019:old-story", id="tag-uri"),
        pytest.param("urn:uuid:4f6e2b3a-1c1d-4b59-9d7e-0f0a1b2c3d4e", id="urn"),
        pytest.param("https://old.example.com/story/1", id="url"),
    ],
)
def test_explicit_id_kept(value: str) -> None:
    assert clean_item(item_file(f"title: T\nid: {value}")).id == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not a uri", id="words"),
        pytest.param("42", id="number"),
        pytest.param("tag:example.com, 2020:x", id="space-inside"),
    ],
)
def test_non_uri_id_is_an_error(value: str) -> None:
    error = the_error(item_file(f"title: T\nid: {value}"))

    assert error.line == 3
    assert "'id' must be a URI" in error.message


@pytest.mark.parametrize(
    ("front", "draft"),
    [
        pytest.param("title: T", False, id="absent"),
        pytest.param("title: T\ndraft: true", True, id="true"),
        pytest.param("title: T\ndraft: false", False, id="false"),
    ],
)
def test_draft(front: str, draft: bool) -> None:
    assert clean_item(item_file(front)).draft is draft


@pytest.mark.parametrize("value", ["maybe", '"true"', "1"])
def test_draft_that_is_not_true_or_false_is_an_error(value: str) -> None:
    error = the_error(item_file(f"title: T\ndraft: {value}"))

    assert error.line == 3
    assert "'draft' must be true or false" in error.message


# --- unknown fields -----------------------------------------------------------------------


def test_unknown_field_is_a_warning_naming_it() -> None:
    data = item_file("title: T\ncolour: red")

    warning = the_warning(data)

    assert warning.line == 3
    assert "'colour'" in warning.message
    assert parsed_item(data).title == "T"


# --- bad input ----------------------------------------------------------------------------


def test_bytes_that_are_not_utf8_are_an_error_naming_the_line() -> None:
    error = the_error(b"---\ntitle: Caf\xe9\n---\nBody\n")  # Latin-1

    assert error.line == 2
    assert "UTF-8" in error.message


def test_utf16_file_is_reported_as_not_utf8() -> None:
    # Windows editors save "Unicode" as UTF-16: its zero bytes are not a binary file.
    error = the_error("---\ntitle: T\n---\nBody\n".encode("utf-16"))

    assert "UTF-8" in error.message


def test_utf8_bom_is_accepted() -> None:
    item = clean_item(b"\xef\xbb\xbf" + item_file("title: Dunhill"))

    assert item.title == "Dunhill"


def test_crlf_line_endings_are_accepted() -> None:
    data = b"---\r\ntitle: Dunhill opens\r\ndate: 2020-09-30T10:00\r\n---\r\nBody\r\n"

    item = clean_item(data)

    assert item.title == "Dunhill opens"
    assert item.published.isoformat() == "2020-09-30T10:00:00+02:00"
    assert render_body(item, data, SITE).html == "<p>Body</p>\n"


def test_xml_forbidden_characters_are_removed_with_a_warning() -> None:
    data = item_file("title: Dun\x08hill\x0b opens\ufffe", "Body\x0c text.\n")

    warning = the_warning(data)

    assert warning.line == 2
    assert "XML" in warning.message
    item = parsed_item(data)
    assert item.title == "Dunhill opens"
    assert render_body(item, data, SITE).html == "<p>Body text.</p>\n"


@pytest.mark.parametrize(
    ("front", "field", "value", "line"),
    [
        pytest.param(r'title: "Dun\bhill\0 opens"', "title", "Dunhill opens", 2, id="title"),
        pytest.param('title: T\ntags: ["re\\x0btail"]', "tags", ("retail",), 3, id="tags"),
        pytest.param('title: T\nsummary: "a\\uFFFEb"', "summary", "ab", 3, id="summary"),
        pytest.param('title: T\nauthor: "Jo\\x01"', "author", "Jo", 3, id="author"),
    ],
)
def test_forbidden_characters_from_yaml_escapes_are_removed_with_a_warning(
    front: str, field: str, value: object, line: int
) -> None:
    data = item_file(front)

    warning = the_warning(data)

    assert warning.line == line
    assert "XML" in warning.message
    assert getattr(parsed_item(data), field) == value


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b" \n\t\n  \n", id="whitespace-only"),
        pytest.param(b"\xef\xbb\xbf", id="bom-only"),
    ],
)
def test_empty_file_is_an_error(data: bytes) -> None:
    error = the_error(data)

    assert error.line is None
    assert error.message == "empty file"


def test_front_matter_only_gives_an_item_and_a_warning() -> None:
    data = b"---\ntitle: Headline only\n---\n"

    warning = the_warning(data)

    assert warning.line == 4
    assert "body is empty" in warning.message
    assert parsed_item(data).title == "Headline only"


def test_body_only_is_an_error() -> None:
    error = the_error(b"# Dunhill opens\n\nNo front matter here.\n")

    assert error.line == 1
    assert "no front matter" in error.message


def test_unterminated_front_matter_is_an_error() -> None:
    error = the_error(b"---\ntitle: T\ndate: 2020-09-30\n\nBody text.\n")

    assert error.line == 1
    assert "never closed" in error.message


@pytest.mark.parametrize(
    ("front", "kind"),
    [
        pytest.param("- title\n- T", "list", id="list"),
        pytest.param("just a sentence", "str", id="scalar-text"),
        pytest.param("42", "int", id="scalar-number"),
    ],
)
def test_front_matter_that_is_not_a_mapping_is_an_error(front: str, kind: str) -> None:
    error = the_error(item_file(front))

    assert error.line == 2
    assert f"not a {kind}" in error.message


def billion_laughs(levels: int = 9) -> str:
    """Each level lists the previous one nine times: 9**levels strings once expanded."""
    lines = ["title: T", "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines)


@pytest.mark.parametrize(
    "front",
    [
        pytest.param(billion_laughs(), id="billion-laughs-lists"),
        pytest.param(
            "title: T\nm0: &m0 {a: 1}\nm1: &m1 {x: *m0, y: *m0}\nm2: {x: *m1, y: *m1}",
            id="nested-mappings",
        ),
        pytest.param(
            # 1 MB allows a 500 kB string repeated through 125,000 aliases: 60 GB of
            # tags to sanitise. Any alias is refused, as the message says.
            'title: T\nw: &w "a long phrase"\ntags: [*w, *w, *w, *w]',
            id="scalar-alias-repeated-in-tags",
        ),
    ],
)
def test_yaml_aliases_are_refused(front: str) -> None:
    error = the_error(item_file(front))

    assert "aliases" in error.message


@pytest.mark.parametrize(
    "front",
    [
        pytest.param("!!python/object/apply:os.system ['touch {marker}']", id="apply-os-system"),
        pytest.param(
            "title: !!python/object/apply:os.system ['touch {marker}']", id="apply-in-field"
        ),
        pytest.param("title: T\nx: !!python/name:os.system", id="python-name"),
        pytest.param("title: !custom T", id="local-tag"),
    ],
)
def test_yaml_tags_that_construct_objects_are_refused_not_run(front: str, tmp_path: Path) -> None:
    marker = tmp_path / "executed"

    error = the_error(item_file(front.format(marker=marker)))

    assert "YAML tag not allowed" in error.message
    assert error.line is not None
    assert not marker.exists()


def test_file_over_the_size_limit_is_an_error() -> None:
    head = item_file("title: T", "")
    data = head + b"x" * (MAX_FILE_BYTES + 1 - len(head))

    error = the_error(data)

    assert error.line is None
    assert "over the limit" in error.message


def test_file_of_exactly_the_size_limit_is_read() -> None:
    head = item_file("title: T", "")
    data = head + b"x" * (MAX_FILE_BYTES - len(head))

    assert parsed_item(data).title == "T"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", id="png"),
        pytest.param(b"---\ntitle: T\x00\n---\nBody\n", id="nul-in-title"),
    ],
)
def test_binary_file_is_an_error(data: bytes) -> None:
    error = the_error(data)

    assert "binary" in error.message


def test_invalid_yaml_is_an_error_with_a_line_number() -> None:
    error = the_error(item_file("title: [unclosed"))

    assert error.line is not None
    assert "not valid YAML" in error.message


def test_invalid_yaml_points_at_the_offending_line() -> None:
    error = the_error(item_file("title: T\nauthor: a: b\ntags: [x]"))

    assert error.line == 3
    assert "not valid YAML" in error.message


@pytest.mark.parametrize(
    ("front", "line"),
    [
        # Left open on the front matter's last line: YAML notices at the end of that line.
        pytest.param("title: T\nsummary: 'oops", 3, id="quote-on-the-last-line"),
        pytest.param('title: "T\ndate: 2020-09-30', 2, id="quote-then-a-line"),
        pytest.param("title: T\ntags: [a, b\ndate: 2020-09-30", 3, id="bracket"),
        pytest.param("title: T\nno colon here\ndate: 2020-09-30", 3, id="key-without-colon"),
        # Not left open: where YAML stops, not where the enclosing mapping began.
        pytest.param("title: T\n- x", 3, id="list-item-in-a-mapping"),
        pytest.param("title: T\n\tdate: 2020-09-30", 3, id="tab"),
    ],
)
def test_invalid_yaml_is_reported_on_the_line_to_fix(front: str, line: int) -> None:
    error = the_error(item_file(front))

    assert "not valid YAML" in error.message
    assert error.line == line


_PLAIN = st.from_regex(r"[a-z][a-z ]{0,12}[a-z]", fullmatch=True)
_OPENERS = [
    'summary: "{}',
    "summary: '{}",
    "tags: [{}, b",
    "tags: {{{}: b",
    "loose {} words",
]


@given(
    before=st.lists(_PLAIN, max_size=5),
    opener=st.sampled_from(_OPENERS),
    words=_PLAIN,
    after=st.lists(_PLAIN, max_size=5),
)
def test_a_construct_left_open_is_reported_on_the_line_that_opened_it(
    before: list[str], opener: str, words: str, after: list[str]
) -> None:
    if opener.startswith("loose"):
        # A first line without a colon, followed by fields, reads to YAML as a plain
        # scalar running onto the next line: then the colon there is the mistake.
        before = before or ["first field"]
    lines = [f"k{n}: {text}" for n, text in enumerate(before)]
    lines.append(opener.format(words))
    lines += [f"v{n}: {text}" for n, text in enumerate(after)]
    error = the_error(item_file("\n".join(lines)))

    assert error.line == len(before) + 2, (lines, error)


# --- problem messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(
            Problem("retail/2020-09-30-dunhill.md", 3, "error", 'date "30/09/20" is ambiguous'),
            'retail/2020-09-30-dunhill.md:3: error: date "30/09/20" is ambiguous',
            id="with-line",
        ),
        pytest.param(
            Problem("retail/2020-09-30-dunhill.md", None, "error", "empty file"),
            "retail/2020-09-30-dunhill.md: error: empty file",
            id="without-line",
        ),
        pytest.param(
            Problem("retail/2020-09-30-dunhill.md", 4, "warning", "the body is empty"),
            "retail/2020-09-30-dunhill.md:4: warning: the body is empty",
            id="warning",
        ),
    ],
)
def test_problem_text(problem: Problem, text: str) -> None:
    assert str(problem) == text


PROBLEM_FILES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"---\ntitle: T\ndate: 30/09/20\n---\nBody\n", id="ambiguous-date"),
    pytest.param(b"---\ntitle: T\ncolour: red\n---\nBody\n", id="unknown-field"),
    pytest.param(b"---\ntitle: T\n---\n", id="front-matter-only"),
    pytest.param(b"---\ntitle: Caf\xe9\n---\n", id="not-utf8"),
]


@pytest.mark.parametrize("data", PROBLEM_FILES)
def test_every_problem_reads_path_line_severity_message(data: bytes) -> None:
    problems = parse(data).problems

    assert problems
    for problem in problems:
        where = f"{PATH}:{problem.line}" if problem.line is not None else PATH
        assert str(problem) == f"{where}: {problem.severity}: {problem.message}"
        assert re.fullmatch(
            rf"{re.escape(PATH)}(:\d+)?: (error|warning): \S.*", str(problem), re.DOTALL
        )


def test_front_matter_line_numbers_count_from_the_top_of_the_file() -> None:
    front = "title: T\nauthor: Jo\ntags: [a]\nsummary: s\ncolour: red"

    warning = the_warning(item_file(front))

    assert warning.line == 6
    assert str(warning) == f"{PATH}:6: warning: unknown field 'colour' is ignored"


# --- bodies -------------------------------------------------------------------------------


def rendered(front: str, body: str, path: str = PATH) -> tuple[str, str]:
    """(html, summary) of an item file's body, rendered as the feeds show it."""
    data = item_file(front, body)
    item = parsed_item(data, path)
    content = render_body(item, data, SITE)
    return content.html, content.summary


def fragment(html: str) -> lxml.html.HtmlElement:
    return lxml.html.fragment_fromstring(html, create_parent="div")


MARKDOWN = """\
First *para* with [a link](../other) and ![a shop](pic.png).

Second para.

| Year | Sales |
|------|-------|
| 2020 | 12    |

<script>alert('x')</script>
"""


def test_markdown_body_is_commonmark_with_tables_sanitised() -> None:
    html, _summary = rendered("title: T", MARKDOWN)
    tree = fragment(html)

    assert [p.text_content() for p in tree.findall("p")] == [
        "First para with a link and .",
        "Second para.",
    ]
    assert tree.xpath("//p/em/text()") == ["para"]
    assert tree.xpath("//table/thead/tr/th/text()") == ["Year", "Sales"]
    assert [td.text.strip() for td in tree.xpath("//table/tbody/tr/td")] == ["2020", "12"]
    assert "alert" not in html
    assert not tree.xpath("//script")


def test_markdown_relative_urls_absolute_against_the_item_page() -> None:
    html, _summary = rendered("title: T", MARKDOWN)
    tree = fragment(html)

    assert tree.xpath("//a/@href") == [f"{SITE}/items/other"]
    assert tree.xpath("//img/@src") == [f"{SITE}/items/retail/pic.png"]


def test_markdown_javascript_link_is_not_a_link() -> None:
    html, _summary = rendered(
        "title: T", "[click](javascript:alert(1)) and <a href='javascript:x'>y</a>\n"
    )

    assert fragment(html).xpath("//a/@href") == []


def test_markdown_raw_html_reaches_the_sanitiser_whole() -> None:
    """Raw HTML in Markdown is kept for bleach to judge: allowed tags stay, others go."""
    body = (
        "Text with <abbr title='Year on year'>YoY</abbr> and <span onclick='x()'>more</span>."
        "\n\n<figure><img src='/a.png' alt='A'><figcaption>Cap</figcaption></figure>\n"
    )

    html, _summary = rendered("title: T", body)
    tree = fragment(html)

    assert tree.xpath("//abbr/@title") == ["Year on year"]
    assert tree.xpath("//figure/figcaption/text()") == ["Cap"]
    assert tree.xpath("//figure/img/@src") == [f"{SITE}/a.png"]
    assert not tree.xpath("//span") and "more" in tree.text_content()
    assert "raw HTML omitted" not in html


def test_markdown_h1_is_not_allowed() -> None:
    html, _summary = rendered("title: T", "# Big heading\n\n## Section\n\nText.\n")
    tree = fragment(html)

    assert not tree.xpath("//h1")
    assert tree.xpath("//h2/text()") == ["Section"]
    assert "Big heading" in tree.text_content()


def test_html_body_is_sanitised() -> None:
    body = (
        "<p onclick='steal()'>Hello <a href='/x'>there</a></p>"
        "<script>alert('x')</script><iframe src='https://evil.example'></iframe>"
    )

    html, _summary = rendered("title: T", body, "retail/2020-09-30-dunhill.html")

    assert html == f'<p>Hello <a href="{SITE}/x">there</a></p>'


def test_html_body_is_not_read_as_markdown() -> None:
    html, _summary = rendered(
        "title: T", "<p>*not emphasis*</p>", "retail/2020-09-30-dunhill.html"
    )

    assert html == "<p>*not emphasis*</p>"


def test_summary_is_derived_from_the_first_paragraph() -> None:
    _html, summary = rendered("title: T", "## Heading\n\nFirst *para*.\n\nSecond para.\n")

    assert summary == "First para."


def test_derived_summary_is_cut_near_300_characters() -> None:
    long_paragraph = " ".join(f"word{n}" for n in range(100))

    _html, summary = rendered("title: T", f"{long_paragraph}\n\nSecond.\n")

    assert summary.endswith("\u2026")
    assert long_paragraph.startswith(summary[:-1])
    assert len(summary) <= 301


def test_front_matter_summary_wins() -> None:
    _html, summary = rendered("title: T\nsummary: Given <b>here</b>.", "First para.\n")

    assert summary == "Given here."


def test_empty_body_renders_empty() -> None:
    html, summary = rendered("title: T", "")

    assert (html, summary) == ("", "")


# --- weekly introductions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "title"),
    [
        pytest.param(b"---\ntitle: A busy week\n---\nHello.\n", "A busy week", id="with-title"),
        pytest.param(
            b"---\ntitle: A <b>busy</b> week\n---\nHello.\n",
            "A busy week",
            id="title-markup-removed",
        ),
        pytest.param(b"Hello, no front matter.\n", None, id="front-matter-optional"),
    ],
)
def test_intro(data: bytes, title: str | None) -> None:
    intro, problems = parse_intro("_weekly/2020-W40.md", data)

    assert problems == []
    assert intro is not None
    assert (intro.week, intro.title) == ("2020-W40", title)
    assert intro.source.path == "_weekly/2020-W40.md"


def test_intro_week_53_exists_in_a_long_year() -> None:
    intro, problems = parse_intro("_weekly/2020-W53.md", b"Hello.\n")

    assert problems == []
    assert intro is not None
    assert intro.week == "2020-W53"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("_weekly/2020-W54.md", id="week-54"),
        pytest.param("_weekly/2021-W53.md", id="week-53-of-a-short-year"),
        pytest.param("_weekly/2020-W00.md", id="week-0"),
        pytest.param("_weekly/week40.md", id="no-year"),
        pytest.param("_weekly/2020-W40.html", id="not-markdown"),
    ],
)
def test_intro_with_a_bad_name_is_an_error(path: str) -> None:
    intro, problems = parse_intro(path, b"---\ntitle: T\n---\nHello.\n")

    assert intro is None
    assert [(p.path, p.severity) for p in problems] == [(path, "error")]
    assert "YYYY-Www" in problems[0].message


def test_intro_unknown_field_is_a_warning() -> None:
    intro, problems = parse_intro("_weekly/2020-W40.md", b"---\ntitle: T\ncolour: red\n---\nHi\n")

    assert intro is not None
    assert [(p.line, p.severity) for p in problems] == [(3, "warning")]
    assert "'colour'" in problems[0].message


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"---\ntitle: Caf\xe9\n---\nHi\n", "UTF-8", id="not-utf8"),
        pytest.param(b"Hi\x00there", "binary", id="binary"),
        pytest.param(f"---\n{billion_laughs()}\n---\nHi\n".encode(), "aliases", id="alias-bomb"),
        pytest.param(
            b"---\ntitle: T\nx: !!python/name:os.system\n---\nHi\n", "YAML tag", id="python-tag"
        ),
        pytest.param(b"---\ntitle: T\n", "never closed", id="unterminated"),
        pytest.param(
            b"---\ntitle: T\n---\n" + b"x" * MAX_FILE_BYTES, "over the limit", id="too-large"
        ),
    ],
)
def test_intro_bad_input_is_an_error(data: bytes, reason: str) -> None:
    intro, problems = parse_intro("_weekly/2020-W40.md", data)

    assert intro is None
    assert [p.severity for p in problems] == ["error"]
    assert reason in problems[0].message


# -- the fast path for plain front matter gives exactly what PyYAML gives --------------------

KEYS = ["title", "date", "tags", "draft", "a_b", "x1", "y", "yes", "on", "null", "Title", "-"]
VALUES = [
    "plain text", "yes", "No", "ON", "off", "true", "False", "~", "null", "Null", "12", "-3",
    "0x1F", "0o17", "017", "1_000", "1:30", "1.5", ".5", "1e3", "1.0e+3", ".inf", "-.Inf",
    ".NaN", "2020-01-02", "2020-01-02 10:00:00", "=", "<<", "a: b", "a:b", "a #c", "a#c",
    "#c", '"quoted"', "'single'", "'it''s'", '"esc\\"aped"', '"tab\\t"', "[a, b]", "[]",
    "[ ]", "[\"a\", 'b']", "[a, [b]]", "{a: b}", "[a, b,]", "[a,,b]", "[yes, 1, ~, x y]",
    "- x", "-x", "?x", ":x", "&anchor x", "*alias", "!tag x", "!!str 1", "|", ">", "%x",
    "@x", "`x", "x:", "ça va", "日本語", "trailing  ", " ", "", "a\tb", "a\u2028b", "a\x85b",
    "https://x.example/a?b=c#d", "mailto:a@b.c", "1,000", "a, b", "a [b]", "a {b}", "'a' b",
    '"a" b', "a'b", 'a"b', '"a, b"', "[\"a, b\", c]", "'", '"', "[", "]", "a]", "[a",
]  # fmt: skip
LINES = ["", "# a comment", "  indented: x", "---", "...", "key:value", "%YAML 1.1"]


def yaml_or_error(front: str) -> object:
    import yaml

    from feedsvc.itemfile import _FrontMatterLoader

    try:
        value = yaml.load(front, Loader=_FrontMatterLoader)
    except yaml.YAMLError:
        return "error"
    return {} if value is None else value


def test_simple_front_matter_is_read_as_yaml_reads_it() -> None:
    import random

    from feedsvc.itemfile import _simple_front_matter

    chance = random.Random(6)
    fast = 0
    for _ in range(6000):
        lines = []
        for _ in range(chance.randint(0, 5)):
            if chance.random() < 0.1:
                lines.append(chance.choice(LINES))
            else:
                separator = chance.choice([": ", ": ", ": ", ":", ":  ", " : "])
                lines.append(f"{chance.choice(KEYS)}{separator}{chance.choice(VALUES)}")
        front = "\n".join(lines)
        simple = _simple_front_matter(front)
        if simple is not None:
            fast += 1
            assert repr(simple) == repr(yaml_or_error(front)), front
    assert fast > 1000, "most plain front matter takes the fast path"


@pytest.mark.parametrize(
    "front",
    [
        'title: "Gringotts invests"\ndate: 2023-02-20 00:07\ntags: ["funding"]\n'
        "image: https://images.example.net/lead/1.jpg",
        "title: Hello, world\ndate: 2020-09-30\nupdated: 2020-10-01T09:30:00+02:00\n"
        "author: Ann Example\ntags: [retail, china]\ndraft: false\nsummary: It's here.",
        "title: 'Quoted: with a colon'\n\nlink: https://example.org/a#b",
    ],
    ids=["benchmark", "typical", "quoted"],
)
def test_typical_front_matter_takes_the_fast_path(front: str) -> None:
    from feedsvc.itemfile import _simple_front_matter

    simple = _simple_front_matter(front)
    assert simple is not None and simple == yaml_or_error(front)


def test_rendering_markdown_holds_no_memory_per_body() -> None:
    """A server renders bodies for as long as it runs: a Markdown library that keeps each
    document's tree or output (as cmarkgfm did, which feedsvc used before) would grow without
    end. Measured in a fresh process, whose peak is its own."""
    code = """
import resource
from feedsvc.itemfile import markdown_html
text = "Some *text*, a [link](https://example.org).\\n\\n| a | b |\\n|---|---|\\n| 1 | 2 |\\n" * 30
markdown_html(text)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(5000):
    markdown_html(text)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 40, f"{result.stdout.strip()} MB more after 5,000 bodies"
