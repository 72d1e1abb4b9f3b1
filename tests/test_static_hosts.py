"""A `feedsvc build` export served by plain static servers, with no rewrites: Python's
`http.server` and nginx with docs/deploy.md's block, each started here on 127.0.0.1 and
stopped by its pid, beside the real feedsvc server over the same items.

From `/`, every same-origin link is followed (pages, feeds, their `next` and
`prev-archive` links, the OPML): nothing is missing, every feed document parses with
the number of entries the items give it, and every URL's bytes are the server's for the
same URL. The pages' old addresses answer 301 to their URLs on the server.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import feedparser
import pytest
import yaml

from feedsvc.model import tag_slug
from tests.crawl import Answer, Fetch, crawl
from tests.server import Server, free_port, running_server, stop
from tests.test_deploy import nginx_serving

BASE_URL = "https://static.example.org"
FEED_SIZE = 20
PAGE_SIZE = 15
WEEKLY_SIZE = 12
CATEGORIES = ("news", "tech", "sport", "culture")
SPELLINGS = ("Go", "go", "New York", "new_york", "Café", "CAFE\u0301", "rust", "日本", "ai")
FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
}


@dataclass(frozen=True)
class Corpus:
    """What the generated items are: each feed's entries, and each feed's per week."""

    totals: dict[str, int]  # feed name → entries
    weeks: dict[str, Counter[str]]  # feed name → entries per ISO week


def generate(items: Path, count: int = 320) -> Corpus:
    rng = random.Random(40)
    totals: Counter[str] = Counter()
    weeks: dict[str, Counter[str]] = {}
    for n in range(count):
        category = rng.choice(CATEGORIES)
        day = date(2020, 1 + n % 12, 1 + (n * 7) % 28)
        tags = rng.sample(SPELLINGS, rng.randint(0, 3))
        front = yaml.safe_dump({"title": f"Story {n}", "tags": tags}, allow_unicode=True)
        body = f"Body of story {n}, with [its notes](#notes).\n"  # the page itself
        path = items / category / f"{day.isoformat()}-story-{n}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
        year, week, _ = day.isocalendar()
        slugs = {tag_slug(tag) for tag in tags} - {""}
        for feed in ("all", category, *(f"tags/{slug}" for slug in slugs)):
            totals[feed] += 1
            weeks.setdefault(feed, Counter())[f"{year}-W{week:02d}"] += 1
    totals["weekly"] = len(weeks["all"])
    return Corpus(dict(totals), weeks)


@dataclass(frozen=True)
class Site:
    corpus: Corpus
    public: Path
    server: Server
    config: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The items, their export by `feedsvc build`, and the feedsvc server over them."""
    root = tmp_path_factory.mktemp("static-hosts")
    corpus = generate(root / "items")
    config = root / "feedsvc.toml"
    config.write_text(
        f'title = "Static"\nbase_url = "{BASE_URL}"\ncache_dir = ""\n'
        f"feed_size = {FEED_SIZE}\npage_size = {PAGE_SIZE}\nweekly_size = {WEEKLY_SIZE}\n"
    )
    env = {**os.environ, "FEEDSVC_CONFIG": str(config)}
    build = subprocess.run(
        [str(Path(sys.executable).with_name("feedsvc")), "build", str(root / "public")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    with running_server(env={"FEEDSVC_CONFIG": str(config)}) as server:
        yield Site(corpus, root / "public", server, config)


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@contextmanager
def http_server(public: Path) -> Iterator[int]:
    """`python3 -m http.server` over `public` on a free loopback port: ready once it says
    it serves (it prints that after binding), stopped by its pid."""
    port = free_port()
    process = subprocess.Popen(
        ["python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
         str(public), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("Serving HTTP on"), line
        yield port
    finally:
        stop(process, signal.SIGTERM)


def header_rules(public: Path) -> list[tuple[re.Pattern[str], dict[str, str]]]:
    """The export's `_headers` as Netlify and Cloudflare Pages read it: a URL pattern (`*`
    matches anything) on a line, then its headers, indented."""
    rules: list[tuple[re.Pattern[str], dict[str, str]]] = []
    for line in (public / "_headers").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line[0].isspace():
            pattern = ".*".join(re.escape(part) for part in line.strip().split("*"))
            rules.append((re.compile(pattern + r"\Z"), {}))
        else:
            name, _, value = line.strip().partition(":")
            assert name not in rules[-1][1], line
            rules[-1][1][name.lower()] = value.strip()
    return rules


def with_headers(
    rules: list[tuple[re.Pattern[str], dict[str, str]]], path: str, headers: dict[str, str]
) -> dict[str, str]:
    """`headers` as the host sends them with `_headers` applied; a header named by two
    matching rules would be joined by the host, which `_headers` must not need."""
    added: dict[str, str] = {}
    for pattern, values in rules:
        if pattern.match(unquote(path)):
            assert not added.keys() & values.keys(), (path, values)
            added |= values
    return headers | added


def feed_document(path: str) -> tuple[str, int, str] | None:
    """(feed, page, archive week) of a feed document's path; None for another path."""
    match = re.fullmatch(r"/feeds/(.+)\.(rss|atom|json)", unquote(path))
    if match is None:
        return None
    name = match[1]
    if paged := re.fullmatch(r"(.+)/page/(\d+)", name):
        return paged[1], int(paged[2]), ""
    if archive := re.fullmatch(r"(.+)/(\d{4}-W\d\d)", name):
        return archive[1], 1, archive[2]
    return name, 1, ""


def entries(answer: Answer) -> int:
    kind = answer.content_type.split(";")[0]
    if FEED_TYPES[kind] == "json":
        return len(json.loads(answer.body)["items"])
    parsed = feedparser.parse(answer.body)
    assert not parsed.bozo, parsed.bozo_exception
    return len(parsed.entries)


def check_crawl(site: Site, seen: dict[str, Answer], fetch: Fetch) -> None:
    """No dead link; every feed document with its entries; the server's very bytes.

    JSON Feed's archive links are in its `_feed_history` extension, which the crawl does
    not read: they are followed here."""
    assert {path: a.status for path, a in seen.items() if a.status != 200} == {}
    seen = dict(seen)
    queue = [path for path in seen if path.endswith(".json")]
    while queue:
        history = json.loads(seen[queue.pop()].body).get("_feed_history", {})
        for rel in ("prev_archive", "next_archive", "current"):
            path = history.get(rel, "").removeprefix(BASE_URL)
            if path and path not in seen:
                seen[path] = fetch(path)
                assert seen[path].status == 200, path
                queue.append(path)
    corpus = site.corpus
    feeds: Counter[str] = Counter()
    archived: dict[str, Counter[str]] = {}
    for path, answer in seen.items():
        status, headers, body = site.server.request(path)
        assert status == 200, path
        assert body == answer.body, f"{path}: not the server's bytes"
        served = headers["Content-Type"]
        assert answer.content_type.split(";")[0] == served.split(";")[0], path
        if answer.content_type != served:
            assert served.split(";")[0] == "text/html" or path == "/feed.css", path
        document = feed_document(path)
        if document is None:
            continue
        feed, page, week = document
        size = WEEKLY_SIZE if feed == "weekly" else FEED_SIZE
        count = entries(answer)
        if week:
            assert count == corpus.weeks[feed][week], path
            archived.setdefault(feed, Counter())[week] += count
        else:
            assert count == min(size, corpus.totals[feed] - (page - 1) * size), path
            feeds[feed] += count
    # Every page of every feed, in each of the three formats, and every archive.
    assert feeds == {name: 3 * total for name, total in corpus.totals.items()}
    for feed, weeks in archived.items():
        assert weeks == Counter({w: 3 * n for w, n in corpus.weeks[feed].items()}), feed
    assert {f for f, total in corpus.totals.items() if total > FEED_SIZE} - {"weekly"} == set(
        archived
    )
    items = {path for path in seen if path.startswith("/items/")}
    assert len(items) == corpus.totals["all"]


def test_python_http_server_serves_the_export_as_is(site: Site) -> None:
    rules = header_rules(site.public)
    with http_server(site.public) as port:

        def fetch(path: str) -> Answer:
            status, headers, body = get(port, path)
            kind = with_headers(rules, path, headers).get("content-type", "")
            return Answer(status, kind, body)

        seen = crawl(fetch, BASE_URL)
        check_crawl(site, seen, fetch)


def test_nginx_serves_the_export_with_no_rewrites(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with nginx_serving(site.public, tmp_path_factory.mktemp("nginx")) as port:

        def fetch(path: str) -> Answer:
            status, headers, body = get(port, path)
            return Answer(status, headers.get("content-type", ""), body)

        seen = crawl(fetch, BASE_URL)
        for unknown in ("/items/news/story-1", "/tags/nothing.html", "/feeds/all/page/99.rss"):
            status, _, body = get(port, unknown)
            assert status == 404, unknown
            assert (
                body == site.server.request(unknown)[2] == (site.public / "404.html").read_bytes()
            )
        check_crawl(site, seen, fetch)
    for path, answer in seen.items():  # nginx's types are exactly the server's
        assert answer.content_type == site.server.request(path)[1]["Content-Type"], path


def test_the_pages_old_addresses_answer_301_to_their_urls(site: Site) -> None:
    with http_server(site.public) as port:
        pages = [
            path
            for path, answer in crawl(lambda p: Answer(*_typed(get(port, p))), BASE_URL).items()
            if path.endswith(".html")
        ]
    kinds = {path.split("/")[1] for path in pages}
    assert kinds == {"items", "categories", "tags", "weekly", "page"}
    for path in pages:
        old = path.removesuffix(".html")
        status, headers, _ = site.server.request(old)
        assert (status, headers.get("Location")) == (301, BASE_URL + path), old
        if listed := re.fullmatch(r"(.*)/page/(\d+)\.html", path):
            first = listed[1] if listed[1] not in ("", "/weekly") else listed[1] + "/"
            status, headers, _ = site.server.request(f"{first}?page={listed[2]}")
            assert (status, headers.get("Location")) == (301, BASE_URL + path), first
        assert site.server.request(path)[0] == 200, path
    for unknown in ("/items/news/story-99999", "/categories/nope", "/tags/nope/page/2"):
        assert site.server.request(unknown)[0] == 404, unknown


def _typed(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, str, bytes]:
    """An http.server answer for a crawl of its pages only (its types are by suffix)."""
    status, headers, body = answer
    return status, headers.get("content-type", ""), body
