"""Walk a site the way a reader's tools do: every same-origin link of every HTML page,
feed and OPML document reachable from the front page.

`crawl` takes a function that answers a path (the Flask test client, or real HTTP), so
the same walk checks the app, a running server and a static export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from lxml import etree


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


Fetch = Callable[[str], Answer]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("a", "link") and values.get("href"):
            self.links.append(values["href"] or "")


def links_of(answer: Answer, url: str) -> Iterator[str]:
    """Every link in a document, absolute."""
    kind = answer.content_type.split(";")[0].strip()
    if kind == "text/html":
        parser = _Links()
        parser.feed(answer.body.decode("utf-8"))
        found = parser.links
    elif kind == "application/feed+json":
        document = json.loads(answer.body)
        found = [document.get("home_page_url", ""), document.get("next_url", "")]
        found += [item.get("url", "") for item in document.get("items", [])]
    elif kind.endswith("xml") or kind == "text/x-opml":
        tree = etree.fromstring(answer.body, etree.XMLParser(resolve_entities=False))
        found = [str(href) for href in tree.xpath("//@href | //@xmlUrl | //@htmlUrl")]
        found += [str(text) for text in tree.xpath("//*[local-name()='link']/text()")]
    else:
        found = []
    for link in found:
        if link:
            yield urljoin(url, link.strip())


def crawl(fetch: Fetch, origin: str, start: tuple[str, ...] = ("/",)) -> dict[str, Answer]:
    """Every same-origin URL reachable from `start`, by path (and query), with its answer."""
    seen: dict[str, Answer] = {}
    queue = list(start)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        answer = seen[path] = fetch(path)
        if answer.status != 200:
            continue
        for link in links_of(answer, origin + path):
            parts = urlsplit(link)
            if f"{parts.scheme}://{parts.netloc}" != origin:
                continue
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if target not in seen:
                queue.append(target)
    return seen
