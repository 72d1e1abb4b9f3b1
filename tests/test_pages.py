"""Pages and discovery: the index, item and category pages, the OPML and /healthz."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedsvc import create_app
from feedsvc.config import Settings
from tests.conftest import BASE_URL, Clock, Site

SAMPLE_BASE_URL = "http://127.0.0.1:8000"
SAMPLE_NOW = datetime(2020, 10, 10, tzinfo=UTC)
FEED_TYPES = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}


def fetch(client: FlaskClient, path: str) -> TestResponse:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response


def local(url: str, base: str = BASE_URL) -> str:
    assert url.startswith(base + "/"), url
    return url[len(base) :]


@dataclass
class Element:
    """An element of interest, closed: its attributes, its text, and the hrefs inside it."""

    tag: str
    attrs: dict[str, str | None]
    text: str
    hrefs: list[str]


class Page(HTMLParser):
    """What a reader (or a feed autodiscovery tool) finds in an HTML page."""

    CAPTURED = frozenset({"title", "h1", "h2", "a", "li", "article", "p"})
    VOID = frozenset({"link", "meta", "img", "br", "hr", "input", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[dict[str, str | None]] = []  # attributes of every <link>
        self.tags: list[tuple[str, dict[str, str | None]]] = []  # every start tag
        self.elements: list[Element] = []
        self._open: list[tuple[str, dict[str, str | None], list[str], list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append((tag, values))
        if tag == "link":
            self.links.append(values)
        if tag == "a" and values.get("href"):
            for _tag, _attrs, _text, hrefs in self._open:
                hrefs.append(values["href"] or "")
        if tag in self.CAPTURED and tag not in self.VOID:
            self._open.append((tag, values, [], [values.get("href") or ""] if tag == "a" else []))

    def handle_endtag(self, tag: str) -> None:
        for position in range(len(self._open) - 1, -1, -1):
            if self._open[position][0] == tag:
                name, attrs, text, hrefs = self._open.pop(position)
                self.elements.append(Element(name, attrs, " ".join("".join(text).split()), hrefs))
                return

    def handle_data(self, data: str) -> None:
        for _tag, _attrs, text, _hrefs in self._open:
            text.append(data)

    def texts(self, tag: str) -> list[str]:
        return [element.text for element in self.elements if element.tag == tag]

    def of(self, tag: str) -> list[Element]:
        return [element for element in self.elements if element.tag == tag]


def read_page(client: FlaskClient, path: str) -> Page:
    response = fetch(client, path)
    assert response.mimetype == "text/html"
    page = Page()
    page.feed(response.get_data(as_text=True))
    page.close()
    return page


def alternates(page: Page) -> set[tuple[str, str]]:
    """(type, href) of every <link rel="alternate">."""
    return {
        (link.get("type") or "", link.get("href") or "")
        for link in page.links
        if (link.get("rel") or "").lower() == "alternate"
    }


def expected_alternates(names: list[str], base: str = BASE_URL) -> set[tuple[str, str]]:
    return {
        (mime, f"{base}/feeds/{name}.{format}")
        for name in names
        for format, mime in FEED_TYPES.items()
    }


def write_site(site: Site) -> None:
    """news: 3 items, sport: 1, quiet: an empty folder."""
    for day in (1, 2, 3):
        site.write_item("news", f"2020-01-0{day}-story-{day}.md", {"title": f"Story {day}"})
    site.write_item("sport", "2020-01-04-match.md", {"title": "The match"})
    (site.items / "quiet").mkdir(parents=True)


def count_in(page: Page, category_path: str) -> tuple[str, int]:
    """(text, item count) of the list item that links to a category page."""
    for item in page.of("li"):
        if category_path in item.hrefs:
            match = re.search(r"(\d+) items?\b", item.text)
            assert match, item.text
            return item.text, int(match[1])
    raise AssertionError(f"no list item links to {category_path}")


# -- the index ---------------------------------------------------------------------------


def test_index_has_the_site_title_and_description(site: Site) -> None:
    write_site(site)

    page = read_page(site.client(), "/")

    assert page.texts("title") == ["Example News"]
    assert page.texts("h1") == ["Example News"]
    assert "News from the example" in page.texts("p")


def test_index_lists_every_category_with_its_item_count(site: Site) -> None:
    write_site(site)

    page = read_page(site.client(), "/")

    counts = {
        slug: count_in(page, f"{BASE_URL}/categories/{slug}.html")
        for slug in ("news", "sport", "quiet")
    }
    assert {slug: count for slug, (_text, count) in counts.items()} == {
        "news": 3,
        "sport": 1,
        "quiet": 0,
    }
    assert counts["news"][0].startswith("News")
    assert counts["sport"][0].startswith("Sport")


def test_index_uses_configured_category_names_in_configured_order(site: Site) -> None:
    write_site(site)

    page = read_page(site.client(categories=(("sport", "Sport & Games"),)), "/")

    categories = [
        anchor.text
        for anchor in page.of("a")
        if anchor.hrefs[0].startswith(f"{BASE_URL}/categories/")
    ]
    assert categories == ["Sport & Games", "News", "Quiet"]


def test_index_counts_a_scheduled_item_once_its_time_comes(site: Site) -> None:
    write_site(site)
    site.write_item("sport", "2030-03-01-final.md", {"title": "The final"})
    site.clock.now = datetime(2030, 2, 1, tzinfo=UTC)
    client = site.client()

    assert count_in(read_page(client, "/"), f"{BASE_URL}/categories/sport.html")[1] == 1

    site.clock.now = datetime(2030, 3, 2, tzinfo=UTC)

    assert count_in(read_page(client, "/"), f"{BASE_URL}/categories/sport.html")[1] == 2


def test_index_has_autodiscovery_for_every_feed(site: Site) -> None:
    write_site(site)
    client = site.client()

    found = alternates(read_page(client, "/"))

    assert found == expected_alternates(["all", "weekly", "news", "sport", "quiet"])
    for mime, href in found:
        response = fetch(client, local(href))
        assert response.mimetype == mime


def test_sample_index_has_autodiscovery_for_every_feed_and_links_every_item(
    sample_settings: Callable[..., Settings],
) -> None:
    client = create_app(sample_settings(), clock=Clock(SAMPLE_NOW), watch=False).test_client()

    page = read_page(client, "/")

    names = ["all", "weekly", "corporate", "retail", "partnerships"]
    assert alternates(page) == expected_alternates(names, SAMPLE_BASE_URL)
    hrefs = {anchor.hrefs[0] for anchor in page.of("a")}
    assert {f"{SAMPLE_BASE_URL}/weekly/2020-W40.html"} <= hrefs
    items = {href for href in hrefs if href.startswith(f"{SAMPLE_BASE_URL}/items/")}
    assert len(items) == 6
    for href in items:
        fetch(client, local(href, SAMPLE_BASE_URL))


# -- item and category pages ---------------------------------------------------------------

BODY = """First paragraph with a [relative link](other-story).

<script>alert("SCRIPT-MARKER")</script>

<p onclick="steal()">Second paragraph.</p>
"""


@pytest.mark.parametrize(
    ("name", "body"),
    [
        pytest.param("2020-01-05-hello.md", BODY, id="markdown"),
        pytest.param(
            "2020-01-05-hello.html",
            '<p>First paragraph with a <a href="other-story">relative link</a>.</p>'
            '<script>alert("SCRIPT-MARKER")</script>'
            '<p onclick="steal()">Second paragraph.</p>',
            id="html",
        ),
    ],
)
def test_item_page_shows_the_title_and_the_sanitised_body(
    site: Site, name: str, body: str
) -> None:
    site.write_item("news", name, {"title": "Hello <em>world</em>", "tags": ["greetings"]}, body)

    page = read_page(site.client(), "/items/news/hello.html")

    assert page.texts("h1") == ["Hello world"]
    [article] = page.of("article")
    assert "First paragraph with a relative link." in page.texts("p")
    assert "Second paragraph." in page.texts("p")
    assert "SCRIPT-MARKER" not in article.text
    assert f"{BASE_URL}/items/news/other-story" in article.hrefs  # as from /items/news/hello
    assert not [tag for tag, _attrs in page.tags if tag in {"script", "iframe", "em"}]
    assert not [attrs for _tag, attrs in page.tags if "onclick" in attrs]


def test_category_page_lists_its_items_and_offers_its_feeds(site: Site) -> None:
    write_site(site)
    client = site.client()

    page = read_page(client, "/categories/news.html")

    assert page.texts("h1") == ["News"]
    items = [a.text for a in page.of("a") if a.hrefs[0].startswith(f"{BASE_URL}/items/news/")]
    assert items == ["Story 3", "Story 2", "Story 1"]
    assert alternates(page) == expected_alternates(["news", "all"])


def test_empty_category_page_is_200(site: Site) -> None:
    write_site(site)

    page = read_page(site.client(), "/categories/quiet.html")

    assert page.texts("h1") == ["Quiet"]
    assert not [a for a in page.of("a") if a.hrefs[0].startswith(f"{BASE_URL}/items/")]


# -- OPML ----------------------------------------------------------------------------------


def test_opml_lists_every_feed_with_an_outline_whose_xml_url_works(site: Site) -> None:
    write_site(site)
    client = site.client()
    response = fetch(client, "/feeds.opml")

    root = ElementTree.fromstring(response.data)

    assert root.tag == "opml"
    assert root.get("version") == "2.0"
    assert root.findtext("head/title")
    outlines = root.findall("body//outline[@xmlUrl]")
    names = {
        local(o.get("xmlUrl") or "").removeprefix("/feeds/").rsplit(".", 1)[0] for o in outlines
    }
    assert names == {"all", "weekly", "news", "sport", "quiet"}
    assert len(outlines) == len(names)  # one outline per feed: importing subscribes once
    for outline in outlines:
        assert outline.get("text")
        assert outline.get("type") == "rss"
        feed = fetch(client, local(outline.get("xmlUrl") or ""))
        assert feed.mimetype in FEED_TYPES.values()
        fetch(client, local(outline.get("htmlUrl") or ""))


# -- /healthz ------------------------------------------------------------------------------


def test_healthz_counts_the_sample_site(sample_settings: Callable[..., Settings]) -> None:
    client = create_app(sample_settings(), clock=Clock(SAMPLE_NOW), watch=False).test_client()

    response = fetch(client, "/healthz")

    assert response.mimetype == "application/json"
    health = json.loads(response.data)
    assert (health["items"], health["categories"], health["errors"]) == (6, 3, 0)


def test_healthz_counts_errors(site: Site) -> None:
    write_site(site)
    site.write("news/2020-01-09-broken.md", "no front matter at all")
    site.write("news/2020-01-10-untitled.md", "---\nauthor: Someone\n---\nNo title.")

    health = json.loads(fetch(site.client(), "/healthz").data)

    assert (health["items"], health["categories"], health["errors"]) == (4, 3, 2)
