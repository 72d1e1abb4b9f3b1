"""Aggregator-grade HTTP: conditional GET, HEAD, gzip, caching, paging, errors."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import pytest
from flask import request
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import Client
from werkzeug.test import TestResponse as Response

from feedsvc.model import FeedKey
from tests.conftest import BASE_URL, Site

FEEDS = [
    "/feeds/all.rss",
    "/feeds/all.atom",
    "/feeds/all.json",
    "/feeds/retail.atom",
    "/feeds/weekly.rss",
    "/feeds.opml",
]
PAGES = [
    "/",
    "/items/retail/shop.html",
    "/categories/retail.html",
    "/weekly/",
    "/weekly/2020-W40.html",
]


@pytest.fixture
def client(site: Site) -> FlaskClient:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop", "date": "2020-09-30 10:00Z"})
    site.write_item("retail", "2020-09-29-mall.md", {"title": "Mall", "date": "2020-09-29 10:00Z"})
    return site.client()


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        ("/feeds/all.rss", "application/rss+xml; charset=utf-8"),
        ("/feeds/all.atom", "application/atom+xml; charset=utf-8"),
        ("/feeds/all.json", "application/feed+json; charset=utf-8"),
        ("/feeds.opml", "text/x-opml; charset=utf-8"),
        ("/", "text/html; charset=utf-8"),
        ("/items/retail/shop.html", "text/html; charset=utf-8"),
    ],
)
def test_content_types(client: FlaskClient, url: str, content_type: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("url", FEEDS + PAGES)
def test_a_full_poll_cycle(site: Site, client: FlaskClient, url: str) -> None:
    first = client.get(url)
    assert first.status_code == 200
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")

    by_etag = client.get(url, headers={"If-None-Match": etag})
    assert by_etag.status_code == 304
    assert by_etag.data == b""
    assert by_etag.headers["ETag"] == etag

    by_date = client.get(url, headers={"If-Modified-Since": last_modified})
    assert by_date.status_code == 304

    edited = {"title": "Shop!", "date": "2020-09-30 10:00Z", "updated": "2020-10-01 08:00Z"}
    site.write_item("retail", "2020-09-30-shop.md", edited)
    site.write_item("retail", "2020-09-28-new.md", {"title": "New", "date": "2020-09-28 10:00Z"})
    client.application.extensions["feedsvc"].reload()
    changed = client.get(url, headers={"If-None-Match": etag, "If-Modified-Since": last_modified})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    if url in PAGES:  # an HTML page: its newest item's update
        assert changed.headers["Last-Modified"] == "Thu, 01 Oct 2020 08:00:00 GMT"
    else:  # a feed: when its bytes changed (tests/test_last_modified.py)
        assert parsedate_to_datetime(changed.headers["Last-Modified"]) > parsedate_to_datetime(
            last_modified
        )


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        pytest.param("{etag}", 304, id="exact"),
        pytest.param('"other", {etag}', 304, id="in-a-list"),
        pytest.param("*", 304, id="star"),
        pytest.param("W/{etag}", 304, id="weak-comparison"),
        pytest.param('"other"', 200, id="no-match"),
    ],
)
def test_if_none_match_forms(client: FlaskClient, if_none_match: str, status: int) -> None:
    etag = client.get("/feeds/all.atom").headers["ETag"]
    response = client.get(
        "/feeds/all.atom", headers={"If-None-Match": if_none_match.format(etag=etag)}
    )
    assert response.status_code == status


def test_if_none_match_takes_precedence_over_if_modified_since(client: FlaskClient) -> None:
    first = client.get("/feeds/all.atom")
    response = client.get(
        "/feeds/all.atom",
        headers={"If-None-Match": '"stale"', "If-Modified-Since": first.headers["Last-Modified"]},
    )
    assert response.status_code == 200


@pytest.mark.parametrize("value", ["yesterday", "Mon, 99 Foo 2020 99:99:99 GMT", "", "\x00"])
def test_malformed_if_modified_since_is_ignored(client: FlaskClient, value: str) -> None:
    response = client.get("/feeds/all.atom", headers={"If-Modified-Since": value})
    assert response.status_code == 200
    assert feedparser.parse(response.data).entries


@pytest.mark.parametrize("url", FEEDS + PAGES)
def test_head_gets_the_headers_of_get_and_no_body(client: FlaskClient, url: str) -> None:
    get, head = client.get(url), client.head(url)
    assert head.status_code == 200
    assert head.data == b""
    for name in (
        "Content-Type",
        "ETag",
        "Last-Modified",
        "Cache-Control",
        "Content-Length",
        "Vary",
    ):
        assert head.headers[name] == get.headers[name]


def test_gzip_round_trip(client: FlaskClient) -> None:
    plain = client.get("/feeds/all.atom")
    zipped = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.data) == plain.data
    assert zipped.headers["ETag"] != plain.headers["ETag"]
    assert "Content-Encoding" not in plain.headers
    for response in (plain, zipped):
        assert "Accept-Encoding" in response.headers["Vary"]
    again = client.get(
        "/feeds/all.atom",
        headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["ETag"]},
    )
    assert again.status_code == 304


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("*;q=1, gzip;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding_is_honoured(
    client: FlaskClient, accept_encoding: str, gzipped: bool
) -> None:
    response = client.get("/feeds/all.rss", headers={"Accept-Encoding": accept_encoding})
    assert (response.headers.get("Content-Encoding") == "gzip") is gzipped
    body = gzip.decompress(response.data) if gzipped else response.data
    assert body.startswith(b"<?xml")


def test_gzip_is_compressed_once_per_content_change(client: FlaskClient) -> None:
    store = client.application.extensions["feedsvc"]
    documents = client.application.extensions["feedsvc.documents"]
    a = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    b = client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"})
    assert a.data == b.data
    document = documents.feed(store.snapshot(), FeedKey("all", "atom"))
    assert document.gzipped == a.data
    assert documents.renders(store.snapshot())[FeedKey("all", "atom")] == 1


def test_cache_control(client: FlaskClient) -> None:
    feed = client.get("/feeds/all.atom").headers["Cache-Control"]
    assert set(feed.split(", ")) == {"public", "max-age=300"}
    assert set(client.get("/feeds.opml").headers["Cache-Control"].split(", ")) == {
        "public",
        "max-age=300",
    }
    page = client.get("/").headers["Cache-Control"]
    assert set(page.split(", ")) == {"public", "max-age=60"}


def test_max_age_never_outlasts_the_next_scheduled_item(site: Site) -> None:
    site.clock.now = datetime(2020, 10, 1, 12, 0, tzinfo=UTC)
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop", "date": "2020-09-29 10:00Z"})
    site.write_item("retail", "2020-10-01-soon.md", {"title": "Soon", "date": "2020-10-01 12:02Z"})
    client = site.client(weekly_publish="rolling")
    assert "max-age=120" in client.get("/feeds/all.atom").headers["Cache-Control"]
    site.clock.now += timedelta(minutes=2)
    response = client.get("/feeds/all.atom")
    assert [e.title for e in feedparser.parse(response.data).entries] == ["Soon", "Shop"]


# -- paging (RFC 5005 §3) -----------------------------------------------------------------


@pytest.fixture
def paged(site: Site) -> FlaskClient:
    for day in range(1, 8):
        site.write_item("retail", f"2020-09-{day:02d}-story.md", {"title": f"Story {day}"})
    return site.client(feed_size=3)


def links(parsed: feedparser.FeedParserDict) -> dict[str, str]:
    return {link.rel: link.href for link in parsed.feed.links}


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_paging_links_lead_to_the_oldest_entry_and_back(paged: FlaskClient, fmt: str) -> None:
    url, titles, seen = f"https://news.example.org/feeds/retail.{fmt}", [], []
    while url:
        seen.append(url)
        parsed = feedparser.parse(paged.get(url.removeprefix("https://news.example.org")).data)
        assert not parsed.bozo
        titles += [e.title for e in parsed.entries]
        rels = links(parsed)
        assert rels["first"] == f"https://news.example.org/feeds/retail.{fmt}"
        assert rels["last"] == f"https://news.example.org/feeds/retail/page/3.{fmt}"
        url = rels.get("next", "")
    assert titles == [f"Story {day}" for day in range(7, 0, -1)]
    back = []
    url = seen[-1]
    while url:
        parsed = feedparser.parse(paged.get(url.removeprefix("https://news.example.org")).data)
        back.append(url)
        url = links(parsed).get("previous", "")
    assert back == seen[::-1]


def test_atom_paging_links_use_the_default_namespace(paged: FlaskClient) -> None:
    body = paged.get("/feeds/retail/page/2.atom").data
    root = etree.fromstring(body)
    rels = [link.get("rel") for link in root.findall("{http://www.w3.org/2005/Atom}link")]
    assert rels == ["self", "alternate", "first", "last", "previous", "next"]
    assert b"ns0:" not in body


def test_json_feed_pages_with_next_url(paged: FlaskClient) -> None:
    first = json.loads(paged.get("/feeds/retail.json").data)
    second = json.loads(paged.get(first["next_url"].removeprefix("https://news.example.org")).data)
    third = json.loads(paged.get(second["next_url"].removeprefix("https://news.example.org")).data)
    assert "next_url" not in third
    assert [len(p["items"]) for p in (first, second, third)] == [3, 3, 1]


@pytest.mark.parametrize(
    ("asked", "path"),
    [
        ("/feeds/retail.atom?page=1", "/feeds/retail.atom"),
        ("/feeds/retail.atom?page=2", "/feeds/retail/page/2.atom"),
        ("/feeds/retail.json?page=3", "/feeds/retail/page/3.json"),
        ("/feeds/retail.atom?utm_source=x", "/feeds/retail.atom"),
    ],
)
def test_a_page_asked_by_its_old_query_is_sent_to_its_path(
    paged: FlaskClient, asked: str, path: str
) -> None:
    response = paged.get(asked)
    assert (response.status_code, response.headers["Location"]) == (
        301,
        "https://news.example.org" + path,
    )
    assert paged.get(path).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/retail/page/4.atom",
        "/feeds/retail/page/1.atom",  # the first page is the feed itself
        "/feeds/retail/page/0.atom",
        "/feeds/retail/page/02.atom",
        "/feeds/retail/page/-1.atom",
        "/feeds/retail/page/two.atom",
        "/feeds/retail/page/٣.atom",
        "/feeds/retail.atom?page=two",
        "/feeds/retail/page/2.atom?page=3",
    ],
)
def test_pages_past_the_end_or_malformed_are_404(paged: FlaskClient, path: str) -> None:
    assert paged.get(path).status_code == 404


def test_a_feed_that_fits_on_one_page_has_no_paging_links(client: FlaskClient) -> None:
    parsed = feedparser.parse(client.get("/feeds/all.atom").data)
    assert set(links(parsed)) == {"self", "alternate"}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/feeds/nope.atom",
        "/feeds/all.xml",
        "/feeds/all",
        "/feeds/.atom",
        "/items/retail/nope.html",
        "/items/nope/shop.html",
        "/items/retail/shop.htm",
        "/weekly/2020-W41.html",
        "/weekly/2020-W99.html",
        "/categories/nope.html",
        "/items/retail/nope",
        "/items/nope/shop",
        "/weekly/2020-W41",
        "/categories/nope",
        "/nope",
        "/feeds/../feedsvc.toml",
    ],
)
def test_unknown_things_are_404(client: FlaskClient, url: str) -> None:
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(client: FlaskClient, method: str) -> None:
    response = client.open("/feeds/all.atom", method=method)
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}


def test_links_never_come_from_host_or_forwarded_headers(client: FlaskClient) -> None:
    plain = client.get("/feeds/all.atom").data
    for headers in (
        {"Host": "evil.example"},
        {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"},
    ):
        assert client.get("/feeds/all.atom", headers=headers).data == plain
    assert client.get("http://evil.example/feeds/all.atom").data == plain
    assert b"evil.example" not in plain


def test_two_apps_over_the_same_items_agree_on_bytes_and_etags(site: Site) -> None:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop"})
    one, two = site.client(), site.client()
    for url in FEEDS + PAGES[:2]:
        a, b = one.get(url), two.get(url)
        assert a.data == b.data
        assert a.headers["ETag"] == b.headers["ETag"]


def test_start_up_renders_every_first_page_and_requests_render_nothing(
    client: FlaskClient,
) -> None:
    store = client.application.extensions["feedsvc"]
    documents = client.application.extensions["feedsvc.documents"]
    feeds = [f"/feeds/{name}.{fmt}" for name in ("all", "weekly", "retail")
             for fmt in ("rss", "atom", "json")]  # fmt: skip
    assert documents.render_count == len(feeds)
    etag = client.get("/feeds/all.atom").headers["ETag"]
    for n in range(1000):
        headers = {"If-None-Match": etag} if n % 2 else {"Accept-Encoding": "gzip"}
        assert client.get("/feeds/all.atom", headers=headers).status_code in (200, 304)
    for url in feeds:
        body = client.get(url).data
        entries = (
            json.loads(body)["items"] if url.endswith(".json") else feedparser.parse(body).entries
        )
        assert entries
    assert documents.renders(store.snapshot())[FeedKey("all", "atom")] == 1
    health = json.loads(client.get("/healthz").data)
    assert health["documents_rendered"] == len(feeds)


def test_a_page_past_the_first_is_rendered_once_on_request(paged: FlaskClient) -> None:
    documents = paged.application.extensions["feedsvc.documents"]
    before = documents.render_count
    for _ in range(3):
        assert paged.get("/feeds/all/page/2.atom").status_code == 200
    assert documents.render_count == before + 1


def test_if_modified_since_uses_http_dates(client: FlaskClient) -> None:
    later = format_datetime(datetime(2031, 1, 1, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2019, 1, 1, tzinfo=UTC), usegmt=True)
    assert client.get("/feeds/all.atom", headers={"If-Modified-Since": later}).status_code == 304
    assert client.get("/feeds/all.atom", headers={"If-Modified-Since": earlier}).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/feeds/all.atom", 200),
        ("GET", "/", 200),
        ("GET", "/healthz", 200),
        ("GET", "/feeds/nope.atom", 404),
        ("GET", "/nope", 404),
        ("POST", "/feeds/all.atom", 405),
        ("HEAD", "/feeds/all.rss", 200),
        ("OPTIONS", "/feeds/all.rss", 200),
    ],
)
def test_nosniff_on_every_response(
    client: FlaskClient, method: str, url: str, status: int
) -> None:
    response = client.open(url, method=method)
    assert response.status_code == status
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_nosniff_on_a_304(client: FlaskClient) -> None:
    etag = client.get("/feeds/all.atom").headers["ETag"]
    response = client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_no_redirect_takes_its_location_from_the_host_header(client: FlaskClient) -> None:
    response = client.get("/weekly", headers={"Host": "evil.example"})
    assert response.status_code == 200
    assert "evil.example" not in str(response.headers)
    assert response.data == client.get("/weekly/").data
    for moved in ("/items/retail/shop", "/categories/retail?page=1", "/weekly/2020-W40"):
        response = client.get(moved, headers={"Host": "evil.example"})
        assert response.status_code == 301, moved
        assert response.headers["Location"] == f"{BASE_URL}{moved.split('?')[0]}.html"


POLLS = [
    {},
    {"Accept-Encoding": "gzip"},
    {"Accept-Encoding": "gzip;q=0, identity"},
    {"If-None-Match": "*"},
    {"If-None-Match": '"nope"'},
    {"If-Modified-Since": format_datetime(datetime(2031, 1, 1, tzinfo=UTC), usegmt=True)},
    {"If-Modified-Since": format_datetime(datetime(2019, 1, 1, tzinfo=UTC), usegmt=True)},
    {"If-Match": "*", "If-None-Match": "*"},
    {"Range": "bytes=0-10"},
]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("headers", POLLS)
@pytest.mark.parametrize("url", ["/feeds/all.atom", "/feeds/retail.json", "/feeds/weekly.rss"])
def test_polls_skip_flask_and_get_exactly_the_routes_answer(
    client: FlaskClient, method: str, headers: dict[str, str], url: str
) -> None:
    app = client.application
    through_flask: list[str] = []
    app.before_request(lambda: through_flask.append(request.path))  # type: ignore[func-returns-value]
    fast = client.open(url, method=method, headers=headers)
    assert through_flask == [], "the poll never reached Flask"
    flask_alone = Client(app.wsgi_app.app, Response)  # type: ignore[attr-defined]
    routed = flask_alone.open(url, method=method, headers=headers)
    assert through_flask == [url]
    assert (fast.status_code, fast.data) == (routed.status_code, routed.data)
    assert fast.status_code in (200, 304, 412)

    def comparable(response: Response) -> list[tuple[str, str]]:
        return sorted((k, v) for k, v in response.headers.items() if k != "Date")

    assert comparable(fast) == comparable(routed)
    assert "Date" in fast.headers


def test_unknown_feeds_and_other_methods_go_on_to_flask(client: FlaskClient) -> None:
    assert client.get("/feeds/nope.atom").status_code == 404
    assert client.get("/feeds/retail/x.atom").status_code == 404
    assert client.get("/feeds/all.xml").status_code == 404
    response = client.post("/feeds/all.atom")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.parametrize("url", FEEDS)
def test_a_script_of_any_origin_can_poll_a_feed_and_read_its_validators(
    client: FlaskClient, url: str
) -> None:
    first = client.get(url, headers={"Origin": "https://reader.example"})
    assert first.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {h.strip() for h in first.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Last-Modified"} <= exposed
    again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options(
        url,
        headers={
            "Origin": "https://reader.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match, if-modified-since",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    allowed = {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"if-none-match", "if-modified-since"} <= allowed


@pytest.mark.parametrize("url", PAGES)
def test_html_pages_are_not_opened_to_other_origins(client: FlaskClient, url: str) -> None:
    assert "Access-Control-Allow-Origin" not in client.get(url).headers
    assert "Access-Control-Allow-Origin" not in client.options(url).headers
