"""Feeds, sanitising and bad input, through the HTTP interface.

RSS and Atom are read back with feedparser, JSON Feed with json: the tests assert on what
a feed reader would see, not on the XML text.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedsvc import create_app
from feedsvc.config import Settings
from tests.conftest import BASE_URL, Clock, Site

SAMPLE_ITEMS = Path(__file__).resolve().parent.parent / "items"
SAMPLE_BASE_URL = "http://127.0.0.1:8000"
#: After the sample's last item (2020-10-02) and after its week 2020-W40 has closed.
SAMPLE_NOW = datetime(2020, 10, 10, tzinfo=UTC)
SAMPLE_CATEGORIES = ("corporate", "retail", "partnerships")
XML_FORMATS = ("rss", "atom")
FORMATS = ("rss", "atom", "json")
CONTENT_TYPES = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}


# -- reading feeds back ------------------------------------------------------------------


def fetch(client: FlaskClient, path: str, **kwargs: Any) -> TestResponse:
    """GET `path` and insist on 200."""
    response = client.get(path, **kwargs)
    assert response.status_code == 200, (path, response.status_code)
    return response


def parse_xml(data: bytes) -> feedparser.FeedParserDict:
    """An RSS or Atom document as a reader sees it, without feedparser's own URL fixing.

    feedparser resolves relative URLs and sanitises HTML by itself; both are switched off
    so that the tests see what feedsvc wrote.
    """
    parsed = feedparser.parse(data, resolve_relative_uris=False, sanitize_html=False)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def read_feed(client: FlaskClient, name: str, format: str) -> Any:
    """Fetch /feeds/<name>.<format>: a feedparser result for XML, a dict for JSON Feed."""
    data = fetch(client, f"/feeds/{name}.{format}").data
    return json.loads(data) if format == "json" else parse_xml(data)


@dataclass(frozen=True)
class Seen:
    """One entry of any format, reduced to the fields the tests compare across formats."""

    id: str
    title: str
    link: str
    published: str | None
    updated: str | None
    author: str | None
    tags: frozenset[str]
    summary: str | None
    content: str | None


def entries(client: FlaskClient, name: str, format: str) -> list[Seen]:
    """The entries of a feed in document order, whatever its format."""
    feed = read_feed(client, name, format)
    if format == "json":
        return [
            Seen(
                id=item["id"],
                title=item["title"],
                link=item["url"],
                published=item.get("date_published"),
                updated=item.get("date_modified"),
                author=", ".join(a["name"] for a in item.get("authors", [])) or None,
                tags=frozenset(item.get("tags", [])),
                summary=item.get("summary"),
                content=item.get("content_html"),
            )
            for item in feed["items"]
        ]
    return [
        Seen(
            id=entry.id,
            title=entry.title,
            link=entry.link,
            published=dict.get(entry, "published"),
            # dict.get: feedparser's own get() falls back to `published` when no updated
            # date was written (a deprecated mapping), which would hide a missing date.
            updated=dict.get(entry, "updated"),
            author=entry.get("author"),
            tags=frozenset(
                value
                for tag in entry.get("tags", [])
                for value in (tag.get("term"), tag.get("label"))
                if value
            ),
            summary=entry.get("summary"),
            content=entry.content[0].value if "content" in entry else None,
        )
        for entry in feed.entries
    ]


def moment(text: str | None) -> datetime:
    """An RFC 3339 (Atom, JSON) or RFC 822 (RSS) date that must carry a timezone."""
    assert text, "missing date"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = parsedate_to_datetime(text)
    assert when.tzinfo is not None, f"{text!r} has no timezone"
    return when


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls.extend(v for k, v in attrs if k in {"href", "src"} and v is not None)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(markup: str) -> _Html:
    parser = _Html()
    parser.feed(markup)
    parser.close()
    return parser


def text_of(markup: str) -> str:
    """The visible text of an HTML fragment, white space collapsed."""
    return " ".join("".join(read_html(markup).text).split())


def feed_links(feed: feedparser.FeedParserDict) -> dict[str, str]:
    """rel -> href of the feed-level links."""
    return {link["rel"]: link["href"] for link in feed.feed.get("links", [])}


def local(url: str, base: str = BASE_URL) -> str:
    """The path of an absolute URL on this site, for the test client."""
    assert url.startswith(base + "/"), url
    return url[len(base) :]


# -- the bundled sample site ---------------------------------------------------------------


@dataclass(frozen=True)
class SampleItem:
    """An item file of the bundled sample, read by the test itself."""

    category: str
    slug: str
    title: str
    published: datetime
    author: str
    tags: tuple[str, ...]
    body: str


def sample_items(zone: ZoneInfo) -> list[SampleItem]:
    """Every sample item, newest first."""
    found = []
    for path in SAMPLE_ITEMS.glob("[!_]*/*.md"):
        _, front, body = path.read_text(encoding="utf-8").split("---\n", 2)
        fields = yaml.safe_load(front)
        found.append(
            SampleItem(
                category=path.parent.name,
                slug=path.stem[len("YYYY-MM-DD-") :],
                title=fields["title"],
                published=datetime.fromisoformat(str(fields["date"])).replace(tzinfo=zone),
                author=fields["author"],
                tags=tuple(fields["tags"]),
                body=" ".join(body.split()),
            )
        )
    return sorted(found, key=lambda item: item.published, reverse=True)


@pytest.fixture
def sample(sample_settings: Callable[..., Settings]) -> FlaskClient:
    return create_app(sample_settings(), clock=Clock(SAMPLE_NOW), watch=False).test_client()


@pytest.fixture
def expected(sample_settings: Callable[..., Settings]) -> list[SampleItem]:
    items = sample_items(sample_settings().zone)
    assert len(items) == 6
    return items


@pytest.mark.parametrize("format", FORMATS)
def test_sample_all_feed_has_every_item_newest_first_with_its_title_and_body(
    sample: FlaskClient, expected: list[SampleItem], format: str
) -> None:
    seen = entries(sample, "all", format)

    assert [entry.title for entry in seen] == [item.title for item in expected]
    for entry, item in zip(seen, expected, strict=True):
        assert entry.content is not None
        assert text_of(entry.content) == item.body


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("category", SAMPLE_CATEGORIES)
def test_sample_category_feed_has_its_two_items(
    sample: FlaskClient, expected: list[SampleItem], category: str, format: str
) -> None:
    seen = entries(sample, category, format)

    assert [entry.title for entry in seen] == [i.title for i in expected if i.category == category]
    assert len(seen) == 2


def test_sample_json_feed_is_json_feed_1_1_with_every_item_field(
    sample: FlaskClient, expected: list[SampleItem]
) -> None:
    feed = read_feed(sample, "all", "json")

    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert len(feed["items"]) == len(expected)
    for entry, item in zip(feed["items"], expected, strict=True):
        assert entry["id"].startswith("tag:")
        assert entry["url"] == f"{SAMPLE_BASE_URL}/items/{item.category}/{item.slug}.html"
        assert entry["title"] == item.title
        assert text_of(entry["content_html"]) == item.body
        assert entry["summary"]
        assert moment(entry["date_published"]) == item.published
        assert datetime.fromisoformat(entry["date_published"]).utcoffset() == timedelta(hours=8)
        assert entry["authors"] == [{"name": item.author}]
        assert set(item.tags) <= set(entry["tags"])


@pytest.mark.parametrize("format", FORMATS)
def test_sample_entries_carry_every_field_the_spec_names(
    sample: FlaskClient, expected: list[SampleItem], format: str
) -> None:
    seen = entries(sample, "all", format)

    for entry, item in zip(seen, expected, strict=True):
        assert entry.id.startswith("tag:")
        assert entry.title == item.title
        assert entry.link == f"{SAMPLE_BASE_URL}/items/{item.category}/{item.slug}.html"
        assert moment(entry.published) == item.published
        assert entry.author == item.author
        assert set(item.tags) <= entry.tags
        assert {item.category, item.category.capitalize()} & entry.tags
        assert entry.summary
        assert entry.summary.rstrip("\u2026") in item.body
        assert entry.content is not None
        assert text_of(entry.content) == item.body
        assert fetch(sample, local(entry.link, SAMPLE_BASE_URL)).mimetype == "text/html"


def test_sample_rss_guid_is_not_a_permalink(sample: FlaskClient) -> None:
    feed = read_feed(sample, "all", "rss")

    assert feed.entries
    assert all(entry.guidislink is False for entry in feed.entries)
    assert all(entry.id.startswith("tag:") for entry in feed.entries)


@pytest.mark.parametrize("format", XML_FORMATS)
@pytest.mark.parametrize("name", ["all", *SAMPLE_CATEGORIES])
def test_sample_xml_feed_has_self_and_alternate_links_title_description_and_updated(
    sample: FlaskClient, expected: list[SampleItem], name: str, format: str
) -> None:
    feed = read_feed(sample, name, format)
    newest = next(i for i in expected if name == "all" or i.category == name)

    links = feed_links(feed)
    assert links["self"] == f"{SAMPLE_BASE_URL}/feeds/{name}.{format}"
    assert fetch(sample, local(links["alternate"], SAMPLE_BASE_URL)).mimetype == "text/html"
    assert feed.feed.title
    assert feed.feed.subtitle
    assert moment(dict.get(feed.feed, "updated")) == newest.published


@pytest.mark.parametrize("name", ["all", *SAMPLE_CATEGORIES])
def test_sample_json_feed_has_feed_url_home_page_title_and_description(
    sample: FlaskClient, name: str
) -> None:
    feed = read_feed(sample, name, "json")

    assert feed["feed_url"] == f"{SAMPLE_BASE_URL}/feeds/{name}.json"
    assert fetch(sample, local(feed["home_page_url"], SAMPLE_BASE_URL)).mimetype == "text/html"
    assert feed["title"]
    assert feed["description"]


# -- a small site built by each test --------------------------------------------------------


def write_news(site: Site, count: int, category: str = "news") -> list[str]:
    """`count` items on consecutive days in January 2020; their titles, newest first."""
    titles = []
    for day in range(1, count + 1):
        title = f"{category.capitalize()} story {day}"
        site.write_item(category, f"2020-01-{day:02d}-story-{day}.md", {"title": title})
        titles.append(title)
    return titles[::-1]


def all_documents(client: FlaskClient, names: list[str]) -> dict[str, bytes]:
    """Path -> body of every feed in every format, and the OPML."""
    paths = [f"/feeds/{name}.{format}" for name in names for format in FORMATS]
    return {path: fetch(client, path).data for path in [*paths, "/feeds.opml"]}


def test_updated_comes_from_the_newest_item_not_the_clock(site: Site) -> None:
    site.write_item("news", "2020-01-01-old.md", {"title": "Old", "date": "2020-01-01 09:00"})
    site.write_item(
        "news",
        "2020-01-02-new.md",
        {"title": "New", "date": "2020-01-02 09:00", "updated": "2020-01-03 18:30"},
    )
    app = site.app()
    client = app.test_client()
    before = all_documents(client, ["all", "news"])

    site.clock.now += timedelta(days=400)
    app.extensions["feedsvc"].reload()

    assert all_documents(client, ["all", "news"]) == before
    for format in XML_FORMATS:
        feed = read_feed(client, "all", format)
        assert moment(dict.get(feed.feed, "updated")) == datetime(2020, 1, 3, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize("format", FORMATS)
def test_entry_updated_date_is_published_in_every_format(site: Site, format: str) -> None:
    site.write_item(
        "news",
        "2020-01-02-edited.md",
        {"title": "Edited", "date": "2020-01-02 09:00", "updated": "2020-01-05 12:00"},
    )

    [entry] = entries(site.client(), "news", format)

    assert moment(entry.published) == datetime(2020, 1, 2, 9, 0, tzinfo=UTC)
    assert moment(entry.updated) == datetime(2020, 1, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("format", FORMATS)
def test_dates_without_a_timezone_are_in_the_site_timezone(site: Site, format: str) -> None:
    site.write_item("news", "2020-01-02-timed.md", {"title": "Timed", "date": "2020-01-02 09:00"})
    site.write_item("news", "2020-01-01-untimed.md", {"title": "Untimed"})
    shanghai = ZoneInfo("Asia/Shanghai")

    seen = entries(site.client(timezone="Asia/Shanghai"), "news", format)

    published = {entry.title: moment(entry.published) for entry in seen}
    assert published == {
        "Timed": datetime(2020, 1, 2, 9, 0, tzinfo=shanghai),
        "Untimed": datetime(2020, 1, 1, 0, 0, tzinfo=shanghai),
    }
    assert all(moment(e.published).utcoffset() == timedelta(hours=8) for e in seen)


@pytest.mark.parametrize("format", FORMATS)
def test_external_link_is_the_entry_link(site: Site, format: str) -> None:
    external = "https://elsewhere.example/original-story"
    site.write_item("news", "2020-01-02-quoted.md", {"title": "Quoted", "link": external})
    client = site.client()

    feed = read_feed(client, "news", format)

    if format == "json":
        [item] = feed["items"]
        assert item["external_url"] == external
        assert item["url"] == f"{BASE_URL}/items/news/quoted.html"
    else:
        [entry] = feed.entries
        assert entry.link == external
    fetch(client, "/items/news/quoted.html")


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", ["all", "news"])
def test_feed_size_keeps_the_newest_items(site: Site, name: str, format: str) -> None:
    titles = write_news(site, 5)

    seen = entries(site.client(feed_size=2), name, format)

    assert [entry.title for entry in seen] == titles[:2]


@pytest.mark.parametrize("format", FORMATS)
def test_scheduled_item_appears_when_the_clock_passes_its_date_without_a_reload(
    site: Site, format: str
) -> None:
    site.clock.now = datetime(2030, 1, 1, tzinfo=UTC)
    site.write_item("news", "2029-12-01-now.md", {"title": "Now"})
    site.write_item(
        "news", "2030-06-01-later.md", {"title": "Later", "date": "2030-06-01 08:00+00:00"}
    )
    client = site.client()

    assert [e.title for e in entries(client, "all", format)] == ["Now"]
    assert [e.title for e in entries(client, "news", format)] == ["Now"]
    assert client.get("/items/news/later.html").status_code == 404
    assert client.get("/items/news/later").status_code == 404

    site.clock.now = datetime(2030, 6, 1, 8, 0, 1, tzinfo=UTC)

    assert [e.title for e in entries(client, "all", format)] == ["Later", "Now"]
    assert [e.title for e in entries(client, "news", format)] == ["Later", "Now"]
    assert client.get("/items/news/later.html").status_code == 200


@pytest.mark.parametrize("format", FORMATS)
def test_drafts_never_appear(site: Site, format: str) -> None:
    site.write_item("news", "2020-01-01-public.md", {"title": "Public"})
    site.write_item("news", "2020-01-02-secret.md", {"title": "Secret", "draft": True})
    site.write_item("news", "2031-01-01-secret-later.md", {"title": "Secret later", "draft": True})
    site.clock.now = datetime(2040, 1, 1, tzinfo=UTC)
    client = site.client()

    for name in ("all", "news"):
        assert [e.title for e in entries(client, name, format)] == ["Public"]
    assert client.get("/items/news/secret.html").status_code == 404


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("name", ["all", "weekly", *SAMPLE_CATEGORIES])
def test_sample_ids_are_unique_in_every_feed(sample: FlaskClient, name: str, format: str) -> None:
    ids = [entry.id for entry in entries(sample, name, format)]

    assert ids
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("format", FORMATS)
def test_same_slug_on_two_dates_gives_two_entries_with_their_own_ids_and_pages(
    site: Site, format: str
) -> None:
    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello in January"})
    site.write_item("news", "2020-02-01-hello.md", {"title": "Hello in February"})
    client = site.client()

    for name in ("all", "news"):
        seen = entries(client, name, format)
        assert [e.title for e in seen] == ["Hello in February", "Hello in January"]
        assert len({e.id for e in seen}) == 2
        assert len({e.link for e in seen}) == 2
        for entry in seen:
            page = fetch(client, local(entry.link))
            assert entry.title in text_of(page.get_data(as_text=True))


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param({}, id="empty-folder"),
        pytest.param({"2020-01-01-draft.md": {"title": "Draft", "draft": True}}, id="only-draft"),
        pytest.param({"2099-01-01-later.md": {"title": "Later"}}, id="only-scheduled"),
    ],
)
def test_category_without_published_items_has_a_valid_empty_feed_until_its_folder_goes(
    site: Site, contents: dict[str, dict[str, Any]]
) -> None:
    write_news(site, 1)
    (site.items / "quiet").mkdir(parents=True)
    for name, front_matter in contents.items():
        site.write_item("quiet", name, front_matter)
    app = site.app()
    client = app.test_client()

    for format in XML_FORMATS:
        feed = read_feed(client, "quiet", format)
        assert feed.entries == []
        assert feed_links(feed)["self"] == f"{BASE_URL}/feeds/quiet.{format}"
    assert read_feed(client, "quiet", "json")["items"] == []

    shutil.rmtree(site.items / "quiet")
    app.extensions["feedsvc"].reload()

    for format in FORMATS:
        assert client.get(f"/feeds/quiet.{format}").status_code == 404
    assert client.get("/categories/quiet.html").status_code == 404


def test_two_apps_over_the_same_items_give_the_same_bytes(
    sample_settings: Callable[..., Settings],
) -> None:
    first = create_app(sample_settings(), clock=Clock(SAMPLE_NOW), watch=False).test_client()
    second = create_app(
        sample_settings(), clock=Clock(SAMPLE_NOW + timedelta(days=30)), watch=False
    )
    names = ["all", "weekly", *SAMPLE_CATEGORIES]

    assert all_documents(first, names) == all_documents(second.test_client(), names)


def urls_in(data: bytes, format: str) -> Iterator[str]:
    """Every URL a reader would follow in a feed: feed links, entry links and ids."""
    if format == "json":
        feed = json.loads(data)
        yield from (feed["home_page_url"], feed["feed_url"])
        for item in feed["items"]:
            yield item["url"]
            yield from read_html(item["content_html"]).urls
        return
    feed = parse_xml(data)
    yield from feed_links(feed).values()
    for entry in feed.entries:
        yield from (link["href"] for link in entry.links)
        for content in entry.get("content", []):
            yield from read_html(content.value).urls


SPOOFED = [
    pytest.param({"headers": {"Host": "evil.example"}}, id="host"),
    pytest.param({"headers": {"X-Forwarded-Host": "evil.example"}}, id="x-forwarded-host"),
    pytest.param(
        {"headers": {"Forwarded": "host=evil.example;proto=http", "X-Forwarded-Proto": "http"}},
        id="forwarded",
    ),
]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("spoof", SPOOFED)
def test_links_come_from_base_url_whatever_the_host_header(
    site: Site, spoof: dict[str, Any], format: str
) -> None:
    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello"}, "[next](next-page)")
    client = site.client()
    honest = fetch(client, f"/feeds/all.{format}").data

    spoofed = fetch(client, f"/feeds/all.{format}", **spoof).data

    assert spoofed == honest
    urls = list(urls_in(spoofed, format))
    assert urls
    assert all(url.startswith(BASE_URL + "/") for url in urls), urls


@pytest.mark.parametrize("format", FORMATS)
def test_links_come_from_base_url_for_an_absolute_form_request(site: Site, format: str) -> None:
    write_news(site, 2)
    client = site.client()
    honest = fetch(client, f"/feeds/all.{format}").data

    spoofed = fetch(client, f"http://evil.example/feeds/all.{format}").data

    assert spoofed == honest
    assert all(url.startswith(BASE_URL + "/") for url in urls_in(spoofed, format))


XML_PATHS = [f"/feeds/{n}.{f}" for n in ("all", "weekly", "news") for f in XML_FORMATS]


@pytest.mark.parametrize("path", [*XML_PATHS, "/feeds.opml"])
def test_nothing_precedes_the_xml_declaration(site: Site, path: str) -> None:
    write_news(site, 2)

    assert fetch(site.client(), path).data.startswith(b"<?xml")


@pytest.mark.parametrize("name", ["all", "weekly", "news"])
@pytest.mark.parametrize("format", FORMATS)
def test_feed_content_types(site: Site, name: str, format: str) -> None:
    write_news(site, 2)

    response = fetch(site.client(), f"/feeds/{name}.{format}")

    assert response.headers["Content-Type"] == CONTENT_TYPES[format]


def test_opml_content_type(site: Site) -> None:
    write_news(site, 1)

    response = fetch(site.client(), "/feeds.opml")

    assert response.headers["Content-Type"] == "text/x-opml; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/feeds/nope.rss", id="unknown-category"),
        pytest.param("/feeds/nope.json", id="unknown-category-json"),
        pytest.param("/feeds/all.xml", id="unknown-format"),
        pytest.param("/feeds/news.rdf", id="unknown-format-category"),
        pytest.param("/feeds/all", id="no-format"),
        pytest.param("/feeds/.rss", id="no-name"),
        pytest.param("/feeds/_weekly.rss", id="private-folder"),
        pytest.param("/feeds/news.rss/extra", id="extra-segment"),
        pytest.param("/feeds/all/page/0.rss", id="page-zero"),
        pytest.param("/feeds/all.rss?page=two", id="page-not-a-number"),
        pytest.param("/feeds/all/page/99.rss", id="page-past-the-end"),
        pytest.param("/items/news/nope.html", id="unknown-item"),
        pytest.param("/items/nope/story-1.html", id="item-in-unknown-category"),
        pytest.param("/categories/nope.html", id="unknown-category-page"),
        pytest.param("/weekly/2020-W60.html", id="week-that-does-not-exist"),
        pytest.param("/weekly/2019-W01.html", id="week-without-items"),
        pytest.param("/weekly/last-week.html", id="week-not-a-week"),
        pytest.param("/weekly/2020-W1.html", id="week-one-digit"),
        pytest.param("/items/news/nope", id="unknown-item-old-address"),
        pytest.param("/categories/nope", id="unknown-category-old-address"),
        pytest.param("/weekly/2020-W60", id="unknown-week-old-address"),
    ],
)
def test_unknown_things_are_404_never_500(site: Site, path: str) -> None:
    write_news(site, 3)

    assert site.client().get(path).status_code == 404


@pytest.mark.parametrize("path", ["/feeds/all.rss", "/feeds/news.atom", "/feeds.opml", "/"])
def test_post_is_405(site: Site, path: str) -> None:
    write_news(site, 1)

    assert site.client().post(path).status_code == 405


# -- bad input beside good items -----------------------------------------------------------

ALIAS_BOMB = """---
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
title: *g
---
Boom.
"""


#: Bad files in and around items/: each is refused with one error, and none is published.
REFUSED: dict[str, str | bytes] = {
    "news/2020-01-10-latin-1.md": "---\ntitle: Café\n---\nCafé.".encode("latin-1"),
    "news/2020-01-11-binary.md": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff",
    "news/2020-01-12-bad-yaml.md": "---\ntitle: [unclosed\n---\nBody.",
    "news/2020-01-13-alias-bomb.md": ALIAS_BOMB,
    "news/2020-01-14-python-tag.md": '---\ntitle: !!python/object/apply:os.system ["true"]\n---\n',
    "news/2020-01-15-empty.md": "",
    "news/2020-01-16-unterminated.md": "---\ntitle: Never closed\nBody.",
    "news/2020-01-17-list.md": "---\n- a list\n- not a mapping\n---\nBody.",
    "news/2020-01-18-body-only.md": "Only a body, no front matter.",
    "news/2020-01-19-untitled.md": "---\nauthor: Someone\n---\nNo title.",
    "news/2020-01-20-ambiguous.md": "---\ntitle: Ambiguous\ndate: 01/02/03\n---\nBody.",
    "news/2020-01-21-not-a-date.md": "---\ntitle: Not a date\ndate: next week\n---\nBody.",
    "news/2020-02-30-impossible.md": "---\ntitle: Impossible day\n---\nBody.",
    "news/2020-01-22-Upper-Slug.md": "---\ntitle: Upper slug\n---\nBody.",
    "news/2020-01-23-huge.md": "---\ntitle: Huge\n---\n" + "word " * 220_000,
    "2020-01-24-loose.md": "---\ntitle: Loose file\n---\nIn the wrong place.",
    "Bad_Name/2020-01-25-odd.md": "---\ntitle: Odd folder\n---\nWrong folder name.",
    "all/2020-01-26-reserved.md": "---\ntitle: Reserved folder\n---\nNot a category.",
}
#: Editor and upload leftovers: ignored without a word.
LEFTOVERS = [
    "news/.2020-01-27-hidden.md",
    "news/_2020-01-27-private.md",
    "news/2020-01-27-backup.md~",
    "news/2020-01-27-swap.md.swp",
    "news/2020-01-27-upload.md.tmp",
    "news/2020-01-27-upload.md.part",
]


def write_bad_files(site: Site) -> int:
    """Every refused file, two symlinks out of items/ and the leftovers; how many errors."""
    for path, content in REFUSED.items():
        site.write(path, content)
    for path in LEFTOVERS:
        site.write(path, "---\ntitle: Leftover\n---\nNot for the feed.")
    outside = site.root / "outside"
    outside.mkdir()
    (outside / "2020-01-28-secret.md").write_text(
        "---\ntitle: Outside secret\n---\nNot for the feed.", encoding="utf-8"
    )
    os.symlink(outside / "2020-01-28-secret.md", site.items / "news" / "2020-01-28-link.md")
    os.symlink(outside, site.items / "linked")
    return len(REFUSED) + 2


#: Files with something to repair: published, with a warning.
REPAIRED: dict[str, tuple[str | bytes, str]] = {
    "news/2020-02-01-control.md": (
        "---\ntitle: Bell\x07 and\x0b tab\x1b title\n---\nControl characters in the title.",
        "Bell and tab title",
    ),
    "news/2020-02-02-escaped.md": (
        '---\ntitle: "Escaped\\a bell"\nauthor: "Ann\\x01 Author"\n'
        'summary: "Sum\\x1fmary"\ntags: ["t\\x02ag"]\n---\nBody.',
        "Escaped bell",
    ),
    "news/2020-02-03-forbidden-body.md": (
        "---\ntitle: Forbidden body\n---\nA \x01bad\x1f body\ufffe without trouble.",
        "Forbidden body",
    ),
    "news/2020-02-04-windows.md": (
        b"\xef\xbb\xbf---\r\ntitle: Windows file\r\n---\r\nWritten on Windows.\r\n",
        "Windows file",
    ),
    "news/2020-02-05-front-only.md": ("---\ntitle: Front only\n---\n", "Front only"),
}


def write_repairable_files(site: Site) -> set[str]:
    """The REPAIRED files; their titles as the feeds should show them."""
    for path, (content, _title) in REPAIRED.items():
        site.write(path, content)
    return {title for _content, title in REPAIRED.values()}


def test_bad_files_never_break_a_feed(site: Site) -> None:
    news = {*write_news(site, 3), "Fine"}
    site.write_item("news", "2020-01-09-fine.md", {"title": "Fine"})
    sport = set(write_news(site, 2, category="sport"))
    errors = write_bad_files(site)
    repaired = write_repairable_files(site)
    client = site.client()

    expected = {"all": news | sport | repaired, "news": news | repaired, "sport": sport}
    for name, titles in expected.items():
        for format in FORMATS:
            assert {entry.title for entry in entries(client, name, format)} == titles
    for format in FORMATS:
        assert entries(client, "weekly", format)
    for name in ("Bad_Name", "bad_name", "linked", "outside"):
        assert client.get(f"/feeds/{name}.rss").status_code == 404
    health = json.loads(fetch(client, "/healthz").data)
    assert health["errors"] == errors  # one message for each bad file, none for leftovers


@pytest.mark.parametrize("format", FORMATS)
def test_characters_xml_forbids_are_removed_from_every_field(site: Site, format: str) -> None:
    repaired = write_repairable_files(site)
    client = site.client()

    seen = {entry.title: entry for entry in entries(client, "news", format)}

    assert set(seen) == repaired
    escaped = seen["Escaped bell"]
    assert escaped.author == "Ann Author"
    assert escaped.summary == "Summary"
    assert "tag" in escaped.tags
    body = seen["Forbidden body"].content
    assert body is not None
    assert text_of(body) == "A bad body without trouble."


def test_every_repaired_file_is_reported(site: Site) -> None:
    write_repairable_files(site)
    app = site.app()

    problems = app.extensions["feedsvc"].snapshot().problems

    reported = {problem.path for problem in problems}
    for path in ("control", "escaped", "forbidden-body"):
        assert any(f"-{path}.md" in name for name in reported), (path, sorted(reported))
    assert all(problem.severity == "warning" for problem in problems)


def test_bad_files_are_counted_in_healthz(site: Site) -> None:
    write_news(site, 1)
    write_bad_files(site)

    health = json.loads(fetch(site.client(), "/healthz").data)

    assert health["items"] == 1
    assert health["errors"] > 0


# -- bodies: absolute URLs, no scripts -------------------------------------------------------

BODY = """Read the [next part](next-part) and [the index](/index.html).

![A chart](../images/chart.png)

<p><a href="?page=2">more</a> and <a href="//cdn.example.net/x.js">cdn</a></p>

<script>alert("SCRIPT-MARKER")</script>

<p onclick="alert('HANDLER-MARKER')">Clicked <a href="javascript:alert('JS-MARKER')">here</a></p>
"""


@pytest.mark.parametrize("format", FORMATS)
def test_relative_urls_in_bodies_become_absolute(site: Site, format: str) -> None:
    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello"}, BODY)

    [entry] = entries(site.client(), "news", format)

    assert entry.content is not None
    assert read_html(entry.content).urls == [
        f"{BASE_URL}/items/news/next-part",
        f"{BASE_URL}/index.html",
        f"{BASE_URL}/items/images/chart.png",
        f"{BASE_URL}/items/news/hello.html?page=2",  # the page itself
        "https://cdn.example.net/x.js",  # scheme-relative: the page's scheme
    ]


@pytest.mark.parametrize("name", ["all", "news", "weekly"])
@pytest.mark.parametrize("format", FORMATS)
def test_scripts_never_reach_a_feed(site: Site, name: str, format: str) -> None:
    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello"}, BODY)
    site.write(
        "news/2020-01-02-page.html",
        "---\ntitle: An HTML page\n---\n<p>Hi</p><script>document.write('SCRIPT-MARKER')"
        "</script><style>p{}</style><iframe src='x'>IFRAME-MARKER</iframe>",
    )

    data = fetch(site.client(), f"/feeds/{name}.{format}").data

    for marker in (b"SCRIPT-MARKER", b"HANDLER-MARKER", b"JS-MARKER", b"IFRAME-MARKER"):
        assert marker not in data
    for entry in entries(site.client(), name, format):
        assert entry.content is not None
        tags = set(read_html(entry.content).tags)
        assert not tags & {"script", "style", "iframe"}


@pytest.mark.parametrize("format", FORMATS)
def test_ids_are_tag_uris_that_survive_edits_to_title_and_body(site: Site, format: str) -> None:
    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello"}, "First body.")
    app = site.app()
    [before] = entries(app.test_client(), "news", format)

    site.write_item("news", "2020-01-01-hello.md", {"title": "Hello again"}, "Second body.")
    app.extensions["feedsvc"].reload()
    [after] = entries(app.test_client(), "news", format)

    assert after.title == "Hello again"
    assert after.id == before.id == "tag:news.example.org,2020-01-01:news/hello"
