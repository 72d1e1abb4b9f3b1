"""Archived feeds (RFC 5005 §4): from the live feed, the prev-archive chain reaches every
published item exactly once, archive documents are stable, and a small feed is complete."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from lxml import etree

from benchmarks import corpus
from feedsvc import create_app
from feedsvc.config import Settings
from feedsvc.model import tag_slug
from tests.conftest import BASE_URL, Clock, Site

ATOM = "{http://www.w3.org/2005/Atom}"
FH = "{http://purl.org/syndication/history/1.0}"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NS = {"atom": ATOM.strip("{}")}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    """The 1,000-item benchmark corpus (2023-2024, 8 categories, tags)."""
    folder = tmp_path_factory.mktemp("corpus")
    corpus.generate(folder / "items", 1000)
    settings = Settings(base_url=BASE_URL, timezone="Europe/Berlin", items_dir=folder / "items")
    return create_app(settings, clock=Clock(NOW), watch=False).test_client()


def local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def atom(client: FlaskClient, path: str) -> etree._Element:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return etree.fromstring(response.data)


def link(document: etree._Element, rel: str) -> str | None:
    found = [e.get("href") for e in document.findall(f"{ATOM}link") if e.get("rel") == rel]
    assert len(found) <= 1, (rel, found)
    return local(found[0]) if found else None


def ids(document: etree._Element) -> list[str]:
    return [entry.findtext(f"{ATOM}id") for entry in document.findall(f"{ATOM}entry")]


def every_page(client: FlaskClient, live: str) -> list[str]:
    """The ids of every entry of a feed, through its paging links (the whole feed)."""
    found, path = [], live
    while path:
        document = atom(client, path)
        found += ids(document)
        path = link(document, "next")
    return found


def chain(
    client: FlaskClient, live: str
) -> tuple[etree._Element, list[tuple[str, etree._Element]]]:
    """The live feed, and its archives from the newest by prev-archive."""
    first = atom(client, live)
    archives = []
    path = link(first, "prev-archive")
    while path:
        document = atom(client, path)
        archives.append((path, document))
        path = link(document, "prev-archive")
    return first, archives


@pytest.mark.parametrize(
    "live", ["/feeds/all.atom", "/feeds/energy.atom", "/feeds/tags/{tag}.atom"]
)
def test_the_archive_chain_holds_every_item_exactly_once(big: FlaskClient, live: str) -> None:
    if "{tag}" in live:  # the tag with the most items
        tags = Counter(
            tag_slug(c.get("term"))
            for c in atom(big, "/feeds/all/2024-W10.atom").iter(f"{ATOM}category")
            if c.get("scheme", "").endswith("/tags/")
        )
        live = live.format(tag=tags.most_common(1)[0][0])
    everything = every_page(big, live)
    live_document, archives = chain(big, live)
    assert len(archives) > 10
    archived = [entry for _, document in archives for entry in ids(document)]
    assert len(archived) == len(set(archived)), "no item in two archives"
    assert set(archived) == set(everything), "every item of the feed, all weeks being closed"
    for position, (path, document) in enumerate(archives):
        assert document.find(f"{FH}archive") is not None and document.find(f"{FH}complete") is None
        assert link(document, "current") == live
        assert link(document, "self") == path
        assert link(document, "next") is None and link(document, "first") is None
        newer = archives[position - 1][0] if position else None
        assert link(document, "next-archive") == newer
        week = path.rsplit("/", 1)[1].removesuffix(".atom")
        published = [
            datetime.fromisoformat(text).astimezone(BERLIN)
            for text in document.xpath("atom:entry/atom:published/text()", namespaces=NS)
        ]
        assert published == sorted(published, reverse=True), "newest first"
        assert {"{}-W{:02d}".format(*day.isocalendar()[:2]) for day in published} == {week}
    assert live_document.find(f"{FH}archive") is None


def test_a_week_in_progress_is_on_the_live_feed_not_in_an_archive(site: Site) -> None:
    site.clock.now = datetime(2020, 10, 7, 12, tzinfo=UTC)  # a Wednesday of 2020-W41
    for day in range(1, 31):
        site.write_item("news", f"2020-09-{day:02d}-s.md", {"title": f"September {day}"})
    for day in range(5, 8):
        site.write_item("news", f"2020-10-{day:02d}-s.md", {"title": f"October {day}"})
    client = site.client(feed_size=10)
    live, archives = chain(client, "/feeds/news.atom")
    titles = {e.findtext(f"{ATOM}title") for _, d in archives for e in d.findall(f"{ATOM}entry")}
    assert titles == {f"September {day}" for day in range(1, 31)}
    assert archives[0][0] == "/feeds/news/2020-W40.atom"
    assert {"October 5", "October 6", "October 7"} <= {
        e.findtext(f"{ATOM}title") for e in live.findall(f"{ATOM}entry")
    }
    assert client.get("/feeds/news/2020-W41.atom").status_code == 404, "not closed yet"
    assert client.get("/feeds/news/2019-W41.atom").status_code == 404, "no entries"
    assert client.get("/feeds/weekly/2020-W40.atom").status_code == 404, "roundups: no archives"


def test_a_feed_on_one_page_is_complete_and_has_no_archives(site: Site) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    client = site.client()
    document = atom(client, "/feeds/news.atom")
    assert document.find(f"{FH}complete") is not None
    assert link(document, "prev-archive") is None
    assert client.get("/feeds/news/2020-W36.atom").status_code == 404
    rss = etree.fromstring(client.get("/feeds/news.rss").data)
    assert rss.find(f"channel/{FH}complete") is not None
    feed = json.loads(client.get("/feeds/news.json").data)
    assert feed["_feed_history"]["complete"] is True


def test_archives_are_cached_long_and_change_only_with_their_week(site: Site) -> None:
    for day in range(1, 29):
        site.write_item("news", f"2020-09-{day:02d}-s.md", {"title": f"S{day}"})
    app = site.app(feed_size=5)
    client = app.test_client()
    old = client.get("/feeds/news/2020-W36.atom")
    assert old.status_code == 200 and "max-age=604800" in old.headers["Cache-Control"]
    before = {week: client.get(f"/feeds/news/2020-W{week}.atom").data for week in (37, 38, 39)}
    site.write_item("news", "2020-09-15-s.md", {"title": "S15, edited"})  # in 2020-W38
    app.extensions["feedsvc"].reload()
    after = {week: client.get(f"/feeds/news/2020-W{week}.atom").data for week in (37, 38, 39)}
    assert after[37] == before[37] and after[39] == before[39]
    assert after[38] != before[38] and b"S15, edited" in after[38]


def test_json_feed_and_rss_carry_the_same_links(big: FlaskClient) -> None:
    document = json.loads(big.get("/feeds/all/2024-W10.json").data)
    history = document["_feed_history"]
    assert history["archive"] is True
    assert local(history["current"]) == "/feeds/all.json"
    assert local(history["prev_archive"]) == "/feeds/all/2024-W09.json"
    assert local(history["next_archive"]) == "/feeds/all/2024-W11.json"
    assert local(document["feed_url"]) == "/feeds/all/2024-W10.json"
    assert "next_url" not in document
    rss = etree.fromstring(big.get("/feeds/all/2024-W10.rss").data)
    links = {e.get("rel"): local(e.get("href")) for e in rss.iter(f"{ATOM}link")}
    assert links["prev-archive"] == "/feeds/all/2024-W09.rss"
    assert rss.find(f"channel/{FH}archive") is not None
    live = json.loads(big.get("/feeds/all.json").data)
    assert local(live["_feed_history"]["prev_archive"]) == "/feeds/all/2025-W01.json"


def test_an_archive_path_that_names_nothing_is_404(big: FlaskClient) -> None:
    for path in (
        "/feeds/all/2024-W10.atom?page=2",
        "/feeds/all/2024-W99.atom",
        "/feeds/nothing/2024-W10.atom",
        "/feeds/all/2024-w10.atom",
        "/feeds/all/2024-W10.txt",
    ):
        assert big.get(path).status_code == 404, path
