"""The site in a real browser: Debian's Chromium, driven by Playwright, against the real
server (`feedsvc serve`, started here on 127.0.0.1 and stopped by its pid).

    python -m tests.test_browser docs/screenshots

writes the screenshots the README links to (the front page, a tag page, a week page, a
feed and the 404 page of the bundled sample site).
"""

from __future__ import annotations

import json
import random
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urldefrag, urlsplit

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from feedsvc.model import tag_slug
from tests.server import Server, feedsvc_serve, free_port, running_server

TOP = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package (the Makefile installs it)
SAMPLE_TITLE = "Alibaba News Roundup"
#: Spellings of the generated site's tags: several meet in one slug.
SPELLINGS = ["Go", "go", "GO ", "New York", "new_york", "Café", "CAFE\u0301", "rust", "日本"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def serving(items: Path, cache: Path) -> Iterator[tuple[Server, str]]:
    """`feedsvc serve` over `items`, with the sample site's settings, and its origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        "FEEDSVC_ITEMS_DIR": str(items),
        "FEEDSVC_CACHE_DIR": str(cache),
        "FEEDSVC_BASE_URL": origin,
        "FEEDSVC_PAGE_SIZE": "15",
    }
    with running_server(env=env, argv=feedsvc_serve(), port=port) as server:
        yield server, origin


def generate(items: Path, count: int = 300) -> dict[str, set[str]]:
    """`count` items with tags in several spellings; the item pages of each tag slug."""
    rng = random.Random(7)
    expected: dict[str, set[str]] = {}
    for n in range(count):
        category = rng.choice(["news", "tech", "sport"])
        day = f"2020-{1 + n % 12:02d}-{1 + n % 28:02d}"
        tags = rng.sample(SPELLINGS, rng.randint(0, 3))
        front = yaml.safe_dump({"title": f"Story {n}", "tags": tags}, allow_unicode=True)
        path = items / category / f"{day}-story-{n}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\n{front}---\nBody of story {n}.\n", encoding="utf-8")
        for tag in tags:
            expected.setdefault(tag_slug(tag), set()).add(f"/items/{category}/story-{n}.html")
    return expected


def crawl(page: Page, origin: str) -> dict[str, int]:
    """Every same-origin URL reachable from / by following links (`<a>` and `<link>`) in
    the pages as Chromium loads them: the status of each."""
    seen: dict[str, int] = {}
    queue = deque(["/"])
    while queue:
        path = queue.popleft()
        if path in seen:
            continue
        response = page.goto(origin + path)
        assert response is not None, path
        seen[path] = response.status
        kind = response.headers.get("content-type", "")
        if response.status != 200 or not ("html" in kind or "xml" in kind):
            continue
        hrefs = page.evaluate(
            "[...document.querySelectorAll('a[href], link[href]')]"
            ".map(e => e.href || e.getAttribute('href'))"
        )
        for href in hrefs:
            url = urldefrag(href)[0]
            parts = urlsplit(url)
            if f"{parts.scheme}://{parts.netloc}" == origin:
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                if target not in seen:
                    queue.append(target)
    return seen


def test_a_crawl_of_the_sample_site_in_chromium_finds_no_dead_link(
    browser: Browser, tmp_path: Path
) -> None:
    with serving(TOP / "items", tmp_path / "cache") as (_, origin):
        seen = crawl(browser.new_page(), origin)
    assert {path: status for path, status in seen.items() if status != 200} == {}
    assert {"/tags/", "/weekly/", "/feeds.opml", "/feeds/all.atom"} <= seen.keys()
    assert any(path.startswith("/tags/") and path != "/tags/" for path in seen)


def test_a_crawl_of_a_tagged_site_finds_no_dead_link_and_each_tag_feed_holds_its_items(
    browser: Browser, tmp_path: Path
) -> None:
    expected = generate(tmp_path / "items")
    with serving(tmp_path / "items", tmp_path / "cache") as (server, origin):
        page = browser.new_page()
        seen = crawl(page, origin)
        assert {path: status for path, status in seen.items() if status != 200} == {}
        items = {path for path in seen if path.startswith("/items/")}
        assert len(items) == 300, "every item reachable by following links from /"
        for slug, pages in expected.items():
            tag_page = f"/tags/{quote(slug)}.html"
            assert page.goto(origin + tag_page).status == 200  # type: ignore[union-attr]
            feed = page.eval_on_selector(
                'link[rel="alternate"][type="application/feed+json"]', "e => e.href"
            )
            found: set[str] = set()
            while feed:
                status, _, body = server.request(feed.removeprefix(origin))
                assert status == 200
                document = json.loads(body)
                found |= {item["url"].removeprefix(origin) for item in document["items"]}
                feed = document.get("next_url", "")
            assert found == pages, slug


@pytest.mark.parametrize("format", ["rss", "atom"])
def test_a_feed_opened_in_chromium_reads_as_a_page(
    browser: Browser, tmp_path: Path, format: str
) -> None:
    with serving(TOP / "items", tmp_path / "cache") as (server, origin):
        _, _, body = server.request(f"/feeds/all.{format}")
        page = browser.new_page()
        response = page.goto(f"{origin}/feeds/all.{format}")
        assert response is not None and response.body() == body, "the very bytes readers get"
        heading = page.locator("h1")
        assert heading.inner_text().strip() == SAMPLE_TITLE and heading.is_visible()
        first = page.locator("li a").first
        assert (
            first.inner_text()
            == "Alibaba, Emlyon Business School Pen Agreement for Joint Master’s Program"
        )
        assert first.is_visible()
        about = page.locator("p.about")
        assert "web feed" in about.inner_text() and about.is_visible()
        entries = page.locator('xpath=//*[local-name()="item" or local-name()="entry"]')
        assert entries.count() > 1 and not entries.first.is_visible(), "the feed's own XML"
        first.click()
        page.wait_for_url(f"{origin}/items/partnerships/emlyon-masters.html")
        assert page.title().endswith(SAMPLE_TITLE)


def screenshots(folder: Path) -> None:
    """The pages the README shows, from the sample site."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as cache,
        serving(TOP / "items", Path(cache)) as (_, origin),
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        for name, path in [
            ("front-page", "/"),
            ("tag-page", "/tags/tmall.html"),
            ("week-page", "/weekly/2020-W40.html"),
            ("feed-in-browser", "/feeds/all.atom"),
            ("not-found", "/no/such/page"),
        ]:
            page.goto(origin + path)
            page.screenshot(path=str(folder / f"{name}.png"), full_page=False)
        browser.close()


if __name__ == "__main__":
    screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
