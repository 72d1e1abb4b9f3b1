"""The site as a reader walks it: tags, paged lists, discovery, feeds opened in a browser,
the 404 and 410 pages and the icon."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import feedparser
import pytest
from flask.testing import FlaskClient
from hypothesis import example, given
from hypothesis import strategies as st
from lxml import etree, html

from feedsvc.config import load_settings
from feedsvc.errors import ConfigError
from feedsvc.model import tag_slug
from tests.conftest import BASE_URL, Site
from tests.crawl import Answer, crawl

ATOM = "{http://www.w3.org/2005/Atom}"
XHTML = "{http://www.w3.org/1999/xhtml}"
BROWSER = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xml;q=0.9,*/*;q=0.8"}


def fetch(client: FlaskClient, path: str, status: int = 200) -> bytes:
    response = client.get(path)
    assert response.status_code == status, (path, response.status_code)
    return response.data


def tree(client: FlaskClient, path: str, status: int = 200) -> html.HtmlElement:
    return html.fromstring(fetch(client, path, status))


def local(url: str) -> str:
    assert url.startswith(BASE_URL), url
    return url[len(BASE_URL) :] or "/"


def alternates(page: html.HtmlElement) -> list[str]:
    """The feeds a page advertises, in order, as local paths."""
    return [local(link.get("href")) for link in page.xpath('//link[@rel="alternate"]')]


# -- tags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spellings", "slug"),
    [
        (["New York", "new_york", "new-york", "  NEW   york!"], "new-york"),
        (["Café", "CAFE\u0301", "cafe\u0301", "café"], "café"),
        (["Ｇｏ", "go", "GO"], "go"),
        (["日本 語", "日本-語"], "日本-語"),
        (["Straße", "STRASSE"], "strasse"),
    ],
)
def test_spellings_of_a_tag_meet_in_one_slug(spellings: list[str], slug: str) -> None:
    assert {tag_slug(spelling) for spelling in spellings} == {slug}


@given(st.text(max_size=40))
@example("-_- ")
@example("e\u0301\u0301")
def test_a_slug_is_stable_and_has_only_words_and_single_hyphens(name: str) -> None:
    slug = tag_slug(name)
    assert tag_slug(slug) == slug, "a slug is its own slug"
    assert tag_slug(unicodedata.normalize("NFD", name)) == slug
    assert tag_slug(name.casefold()) == slug
    assert "--" not in slug and not slug.startswith("-") and not slug.endswith("-")
    assert all(unicodedata.category(c)[0] in "LMN" or c == "-" for c in slug)
    assert "/" not in slug and "?" not in slug and "#" not in slug


def tagged_site(site: Site) -> None:
    site.write_item("news", "2020-09-01-one.md", {"title": "One", "tags": ["Go", "New York"]})
    site.write_item("news", "2020-09-02-two.md", {"title": "Two", "tags": ["go ", "Rust"]})
    site.write_item("tech", "2020-09-03-three.md", {"title": "Three", "tags": ["GO", "new_york"]})
    site.write_item("tech", "2020-09-04-four.md", {"title": "Four", "tags": ["café"]})
    site.write_item("tech", "2020-09-05-five.md", {"title": "Five", "tags": ["CAFE\u0301"]})


def test_the_tags_page_lists_every_tag_once_with_its_count(site: Site) -> None:
    tagged_site(site)
    page = tree(site.client(), "/tags/")
    listed = {
        local(a.get("href")): (a.text, int(a.getnext().text))
        for a in page.xpath('//ul[@class="tags"]/li/a')
    }
    assert listed == {
        # The most used spelling; between as many, the first in code point order.
        "/tags/caf%C3%A9.html": ("CAFE\u0301", 2),
        "/tags/go.html": ("GO", 3),
        "/tags/new-york.html": ("New York", 2),
        "/tags/rust.html": ("Rust", 1),
    }


def test_a_tag_page_lists_its_items_and_its_feed_holds_exactly_them(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    page = tree(client, "/tags/go.html")
    titles = [a.text for a in page.xpath('//ul[@class="list"]/li/a')]
    assert titles == ["Three", "Two", "One"]
    assert alternates(page)[:3] == [f"/feeds/tags/go.{f}" for f in ("atom", "rss", "json")]
    assert alternates(page)[3:6] == [f"/feeds/all.{f}" for f in ("atom", "rss", "json")]
    for format in ("atom", "rss"):
        parsed = feedparser.parse(fetch(client, f"/feeds/tags/go.{format}"))
        assert not parsed.bozo, parsed.bozo_exception
        assert [entry.title for entry in parsed.entries] == ["Three", "Two", "One"]
    items = json.loads(fetch(client, "/feeds/tags/go.json"))["items"]
    assert [item["title"] for item in items] == ["Three", "Two", "One"]
    unicode = feedparser.parse(fetch(client, "/feeds/tags/caf%C3%A9.atom"))
    assert [entry.title for entry in unicode.entries] == ["Five", "Four"]
    assert unicode.feed.links[0].href == f"{BASE_URL}/feeds/tags/caf%C3%A9.atom"


def test_another_spelling_of_a_tag_redirects_to_its_page(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    for spelling in ("Go", "New%20York", "new_york", "CAFE%CC%81"):
        for path in (f"/tags/{spelling}.html", f"/tags/{spelling}"):  # and its old address
            response = client.get(path)
            assert response.status_code == 301, path
            assert local(response.headers["Location"]) in (
                "/tags/go.html",
                "/tags/new-york.html",
                "/tags/caf%C3%A9.html",
            )
    assert client.get("/tags/nothing-like-it.html").status_code == 404
    assert client.get("/tags/nothing-like-it").status_code == 404


def test_feeds_name_categories_and_tags_by_pages_that_exist(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    root = etree.fromstring(fetch(client, "/feeds/all.atom"))
    seen = set()
    for category in root.iter(f"{ATOM}category"):
        # A category's or tag's scheme and term name its page by the address it had
        # before pages were named as files: that answers 301 to the page.
        page = category.get("scheme") + category.get("term")
        path = urlsplit(urljoin(page, "")).path
        moved = client.get(path)
        assert moved.status_code == 301, page
        assert unquote(moved.headers["Location"]) == unquote(BASE_URL + path) + ".html"
        fetch(client, local(moved.headers["Location"]))  # a 200, or fetch fails
        seen.add(category.get("scheme"))
    assert seen == {f"{BASE_URL}/categories/", f"{BASE_URL}/tags/"}
    rss = etree.fromstring(fetch(client, "/feeds/all.rss"))
    domains = {c.get("domain") for c in rss.iter("category")}
    assert domains == seen


def test_item_pages_link_each_tag_to_its_page(site: Site) -> None:
    tagged_site(site)
    page = tree(site.client(), "/items/tech/three.html")
    tags = [(a.text, local(a.get("href"))) for a in page.xpath('//a[@rel="tag"]')]
    assert tags == [("GO", "/tags/go.html"), ("new_york", "/tags/new-york.html")]


def test_tags_below_the_threshold_have_a_page_but_no_feed(site: Site) -> None:
    tagged_site(site)
    client = site.client(tag_feed_min_items=2)
    assert client.get("/feeds/tags/go.atom").status_code == 200
    assert client.get("/feeds/tags/rust.atom").status_code == 404
    page = tree(client, "/tags/rust.html")
    assert [a.text for a in page.xpath('//ul[@class="list"]/li/a')] == ["Two"]
    assert alternates(page) == [f"/feeds/all.{f}" for f in ("atom", "rss", "json")]


def test_tag_feeds_stay_off_the_front_page_and_the_opml(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    names = {path.rsplit(".", 1)[0] for path in alternates(tree(client, "/"))}
    assert names == {"/feeds/all", "/feeds/weekly", "/feeds/news", "/feeds/tech"}
    opml = etree.fromstring(fetch(client, "/feeds.opml"))
    assert not [o for o in opml.iter("outline") if "/tags/" in o.get("xmlUrl")]


# -- paged lists -----------------------------------------------------------------------


def many(site: Site, count: int = 45) -> None:
    for n in range(count):
        day = f"2020-{9 + n // 28:02d}-{1 + n % 28:02d}"
        tags = ["even"] if n % 2 == 0 else []
        site.write_item("news", f"{day}-story-{n}.md", {"title": f"Story {n}", "tags": tags})


def follow_next(client: FlaskClient, first: str) -> Iterator[html.HtmlElement]:
    """Every page of a list, following its rel="next" links from the first."""
    path: str | None = first
    while path is not None:
        page = tree(client, path)
        yield page
        following = page.xpath('//a[@rel="next"]/@href')
        heads = page.xpath('//link[@rel="next"]/@href')
        assert following == heads, "the page's link and its head agree"
        path = local(following[0]) if following else None


@pytest.mark.parametrize(
    ("first", "count"), [("/", 45), ("/categories/news.html", 45), ("/tags/even.html", 23)]
)
def test_older_links_reach_every_item_of_a_list_once(site: Site, first: str, count: int) -> None:
    many(site)
    client = site.client(page_size=10)
    pages = list(follow_next(client, first))
    titles = [
        a.text
        for page in pages
        for a in page.xpath('//ul[@class="list"]/li/a')
        if "Story" in a.text
    ]
    assert len(pages) == -(-count // 10)
    assert len(titles) == count and len(set(titles)) == count
    assert titles[0] == "Story 44" or first == "/tags/even.html"
    last = pages[-1]
    newer = local(last.xpath('//a[@rel="prev"]/@href')[0])
    assert tree(client, newer).xpath('//a[@rel="next"]/@href')  # and back again
    assert not pages[0].xpath('//a[@rel="prev"]')


def test_the_roundups_list_is_paged(site: Site) -> None:
    many(site)
    client = site.client(page_size=2)
    weeks = [
        a.text for page in follow_next(client, "/weekly/") for a in page.xpath("//ul/li/a")
        if "weekly roundup" in (a.text or "")
    ]  # fmt: skip
    assert len(weeks) == len(set(weeks)) == 7  # 45 days from 2020-09-01, weeks closed by now


def test_other_spellings_of_a_page_redirect_and_pages_past_the_end_are_404(site: Site) -> None:
    many(site)
    client = site.client(page_size=10)
    for asked, target in [
        ("/?page=2", "/page/2.html"),
        ("/page/1.html", "/"),
        ("/categories/news.html?page=3", "/categories/news/page/3.html"),
        ("/categories/news/page/1.html", "/categories/news.html"),
        ("/weekly/?page=1", "/weekly/"),
        ("/tags/even.html?page=2", "/tags/even/page/2.html"),
        # The addresses the pages had before their URLs were their files' names:
        ("/page/1", "/"),
        ("/page/2", "/page/2.html"),
        ("/categories/news", "/categories/news.html"),
        ("/categories/news?page=3", "/categories/news/page/3.html"),
        ("/categories/news/page/1", "/categories/news.html"),
        ("/categories/news/page/3", "/categories/news/page/3.html"),
        ("/tags/even", "/tags/even.html"),
        ("/tags/even/page/2", "/tags/even/page/2.html"),
        ("/tags/EVEN/page/2", "/tags/even.html"),  # another spelling: the tag's page
        ("/weekly/2020-W37", "/weekly/2020-W37.html"),
        ("/items/news/story-3", "/items/news/story-3.html"),
    ]:
        response = client.get(asked)
        assert (response.status_code, response.headers.get("Location")) == (
            301,
            BASE_URL + target,
        ), asked
        assert client.get(target).status_code == 200, target
    for missing in (
        *("/page/6.html", "/page/0.html", "/?page=zero", "/categories/news/page/9.html"),
        *("/page/x.html", "/page/2.htm", "/page/6", "/page/0", "/page/x"),
        *("/categories/news/page/9", "/categories/nope", "/tags/nope/page/2", "/weekly/page/9"),
        *("/weekly/2020-W01", "/items/news/story-99", "/items/news/story-3.html.html"),
    ):
        assert client.get(missing).status_code == 404, missing
    weekly = site.client(page_size=2)
    for asked in ("/weekly/?page=2", "/weekly/page/2"):
        response = weekly.get(asked)
        assert (response.status_code, response.headers.get("Location")) == (
            301,
            BASE_URL + "/weekly/page/2.html",
        ), asked
    assert weekly.get("/weekly/page/2.html").status_code == 200


def test_every_published_item_is_reachable_from_the_front_page(site: Site) -> None:
    many(site, 60)
    tagged_site(site)
    client = site.client(page_size=7)

    def answer(path: str) -> Answer:
        response = client.get(path)
        return Answer(response.status_code, response.content_type or "", response.data)

    found = crawl(answer, BASE_URL)
    broken = {path: a.status for path, a in found.items() if a.status != 200}
    assert not broken
    items = {path for path in found if path.startswith("/items/")}
    assert len(items) == 65


# -- discovery --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "first_feeds"),
    [
        ("/", ["all", "weekly", "news", "tech"]),
        ("/categories/tech.html", ["tech", "all"]),
        ("/items/tech/three.html", ["tech", "all"]),
        ("/tags/new-york.html", ["tags/new-york", "all"]),
        ("/weekly/", ["weekly", "all"]),
        ("/weekly/2020-W36.html", ["weekly", "all"]),
        ("/tags/", ["all"]),
    ],
)
def test_a_page_advertises_the_feeds_of_what_it_shows_first(
    site: Site, path: str, first_feeds: list[str]
) -> None:
    tagged_site(site)
    page = tree(site.client(), path)
    names = list(dict.fromkeys(link.rsplit(".", 1)[0] for link in alternates(page)))
    assert names == [f"/feeds/{name}" for name in first_feeds]
    title = page.findtext(".//title")
    assert title == "Example News" or title.endswith(" · Example News"), title


# -- feeds in a browser -----------------------------------------------------------------


@pytest.mark.parametrize("format", ["atom", "rss"])
def test_a_browser_gets_the_same_bytes_as_xml_it_lays_out(site: Site, format: str) -> None:
    tagged_site(site)
    client = site.client()
    reader = client.get(f"/feeds/all.{format}")
    browser = client.get(f"/feeds/all.{format}", headers=BROWSER)
    assert reader.data == browser.data and reader.headers["ETag"] == browser.headers["ETag"]
    assert reader.content_type == f"application/{format}+xml; charset=utf-8"
    assert browser.content_type == "application/xml; charset=utf-8"
    for response in (reader, browser):
        assert "Sec-Fetch-Dest" in response.headers["Vary"]
    document = etree.fromstring(reader.data)
    style = document.getroottree().getroot().getprevious()
    assert isinstance(style, etree._XSLTProcessingInstruction) or style.target == "xml-stylesheet"
    assert style.get("type") == "text/css" and style.get("href") == f"{BASE_URL}/feed.css"
    css = client.get("/feed.css")
    assert css.status_code == 200 and css.content_type.startswith("text/css")
    assert b"feedsvc-preview" not in css.data or b"h|div" in css.data
    preview = document.find(f".//{XHTML}div")
    assert preview is not None and preview.get("id") == "feedsvc-preview"
    assert preview.findtext(f"{XHTML}h1/{XHTML}a") == "Example News"
    assert "web feed" in preview.findtext(f"{XHTML}p")
    links = [(a.text, a.get("href")) for a in preview.iterfind(f".//{XHTML}li/{XHTML}a")]
    parsed = feedparser.parse(reader.data)
    assert not parsed.bozo
    assert links == [(e.title, e.link) for e in parsed.entries]
    assert parsed.feed.title == "Example News", "readers see the feed, not the preview"


def test_json_feeds_and_pages_do_not_vary_by_browser(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    for path in ("/feeds/all.json", "/"):
        response = client.get(path, headers=BROWSER)
        assert response.headers["Vary"] == "Accept-Encoding"
        assert response.content_type != "application/xml; charset=utf-8"


def test_the_opml_is_laid_out_for_a_browser_too(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    browser = client.get("/feeds.opml", headers=BROWSER)
    assert browser.content_type == "application/xml; charset=utf-8"
    assert client.get("/feeds.opml").content_type == "text/x-opml; charset=utf-8"
    assert browser.data.split(b"\n")[1].startswith(b'<?xml-stylesheet type="text/css"')


# -- the 404 and 410 pages --------------------------------------------------------------


def test_an_unknown_address_gets_the_sites_own_404_page(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    for path in (
        *("/nothing", "/items/news/nothing.html", "/categories/nothing.html", "/feeds/x.atom"),
        *("/items/news/nothing", "/categories/nothing", "/404.html"),
    ):
        response = client.get(path)
        assert response.status_code == 404 and response.content_type.startswith("text/html")
        page = html.fromstring(response.data)
        assert page.findtext(".//h1") == "Nothing here"
        assert f"{BASE_URL}/" in page.xpath("//main//a/@href"), "a way home"
        assert page.findtext(".//title").endswith("Example News")


def test_a_deleted_item_that_was_published_is_410_and_one_never_published_404(
    site: Site,
) -> None:
    tagged_site(site)
    site.clock.now = datetime(2020, 9, 10, tzinfo=UTC)
    later = site.write_item("news", "2020-12-01-later.md", {"title": "Later"})
    app = site.app()
    client = app.test_client()
    assert client.get("/items/news/one.html").status_code == 200
    assert client.get("/items/news/later.html").status_code == 404  # scheduled: not yet public
    assert client.get("/items/news/later").status_code == 404
    (site.items / "news" / "2020-09-01-one.md").unlink()
    later.unlink()
    drafted = site.items / "news" / "2020-09-02-two.md"
    drafted.write_text(drafted.read_text().replace("title: Two", "title: Two\ndraft: true"))
    app.extensions["feedsvc"].reload()
    for path in ("/items/news/one.html", "/items/news/two.html", "/items/news/one"):
        response = client.get(path)
        assert response.status_code == 410, path
        assert html.fromstring(response.data).findtext(".//h1") == "This item was removed"
    assert client.get("/items/news/later.html").status_code == 404, "never public: never was"
    site.write_item("news", "2020-09-01-one.md", {"title": "One again"})
    app.extensions["feedsvc"].reload()
    assert client.get("/items/news/one.html").status_code == 200


def test_a_page_stays_410_after_a_restart_even_if_its_item_went_while_none_ran(
    site: Site, tmp_path: Path
) -> None:
    """The cache remembers the pages once published: a restarted server answers 410 for
    an item deleted (or made a draft) while it ran, or while it was stopped."""
    tagged_site(site)
    site.clock.now = datetime(2020, 9, 10, tzinfo=UTC)
    site.write_item("news", "2020-09-05-kept.md", {"title": "Kept"})
    later = site.write_item("news", "2020-12-01-later.md", {"title": "Later"})
    cache = tmp_path / "cache"
    app = site.app(cache_dir=cache)
    client = app.test_client()
    for path in ("/items/news/one.html", "/items/news/two.html", "/items/news/kept.html"):
        assert client.get(path).status_code == 200, path
    (site.items / "news" / "2020-09-01-one.md").unlink()  # while the first server runs
    app.extensions["feedsvc"].reload()
    assert client.get("/items/news/one.html").status_code == 410
    # Stopped: one file deleted, one made a draft, and the scheduled one deleted.
    (site.items / "news" / "2020-09-05-kept.md").unlink()
    drafted = site.items / "news" / "2020-09-02-two.md"
    drafted.write_text(drafted.read_text().replace("title: Two", "title: Two\ndraft: true"))
    later.unlink()
    client = site.app(cache_dir=cache).test_client()
    for path in ("/items/news/one.html", "/items/news/two.html", "/items/news/kept"):
        response = client.get(path)
        assert response.status_code == 410, path
        assert html.fromstring(response.data).findtext(".//h1") == "This item was removed"
    assert client.get("/items/news/later.html").status_code == 404, "never public: never was"
    assert client.get("/items/news/never.html").status_code == 404
    site.write_item("news", "2020-09-05-kept.md", {"title": "Kept again"})
    client = site.app(cache_dir=cache).test_client()
    assert client.get("/items/news/kept.html").status_code == 200
    assert client.get("/items/news/one.html").status_code == 410


# -- the icon ---------------------------------------------------------------------------


def test_the_default_icon_is_served_and_named_by_every_format(site: Site) -> None:
    tagged_site(site)
    client = site.client()
    for path in ("/favicon.ico", "/icon.png"):
        response = client.get(path)
        assert response.status_code == 200 and response.content_type == "image/png"
        assert response.data.startswith(b"\x89PNG\r\n\x1a\n")
        assert (
            client.get(path, headers={"If-None-Match": response.headers["ETag"]}).status_code
            == 304
        )
    assert client.get("/icon.gif").status_code == 404
    icon = f"{BASE_URL}/icon.png"
    atom = etree.fromstring(fetch(client, "/feeds/all.atom"))
    assert (atom.findtext(f"{ATOM}icon"), atom.findtext(f"{ATOM}logo")) == (icon, icon)
    rss = etree.fromstring(fetch(client, "/feeds/all.rss"))
    assert rss.findtext("channel/image/url") == icon
    assert rss.findtext("channel/image/link") == rss.findtext("channel/link")
    feed = json.loads(fetch(client, "/feeds/all.json"))
    assert (feed["icon"], feed["favicon"]) == (icon, icon)
    assert tree(client, "/").xpath('//link[@rel="icon"]/@href') == [icon]


def test_an_icon_file_of_the_site_is_served_in_its_format(site: Site, tmp_path: Path) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00"
    gif += b"\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    (tmp_path / "site-icon.gif").write_bytes(gif)
    (tmp_path / "feedsvc.toml").write_text('icon = "site-icon.gif"\n')
    settings = load_settings(environ={}, cwd=tmp_path)
    assert settings.icon == str(tmp_path / "site-icon.gif")
    tagged_site(site)
    client = site.client(icon=settings.icon)
    for path in ("/favicon.ico", "/icon.gif"):
        response = client.get(path)
        assert (response.status_code, response.content_type, response.data) == (
            200,
            "image/gif",
            gif,
        )
    assert client.get("/icon.png").status_code == 404
    assert json.loads(fetch(client, "/feeds/all.json"))["icon"] == f"{BASE_URL}/icon.gif"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("icon.png", b"not an image", "is not a PNG, GIF, JPEG or ICO image"),
        ("icon.png", b"GIF89a" + bytes(20), "is image/gif; name it *.gif"),
        ("icon.svg", b"<svg/>", "is not a PNG, GIF, JPEG or ICO image"),
        ("missing.png", None, "cannot read"),
    ],
)
def test_a_bad_icon_file_stops_the_start_with_one_clear_message(
    tmp_path: Path, name: str, data: bytes | None, message: str
) -> None:
    if data is not None:
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ={"FEEDSVC_ICON": name}, cwd=tmp_path)


def test_an_icon_elsewhere_is_pointed_at(site: Site) -> None:
    tagged_site(site)
    client = site.client(icon="https://cdn.example.org/logo.png")
    response = client.get("/favicon.ico")
    assert (response.status_code, response.headers["Location"]) == (
        302,
        "https://cdn.example.org/logo.png",
    )
    assert (
        json.loads(fetch(client, "/feeds/all.json"))["icon"] == "https://cdn.example.org/logo.png"
    )
