"""The feeds a snapshot publishes, and where each lives: the one list that routes, pages,
the OPML and the static export read.

A feed is a name under /feeds/ and a list of entries: the feed of everything (`all`),
the weekly roundup (`weekly`), one per category (its slug) and one per tag carried by at
least `tag_feed_min_items` items (`tags/<slug>`). A kind other than the first three
takes a prefix that no category can have (a category's slug has no "/"): adding a kind
is one more loop in `registry`, a route for its page and a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import quote

from feedsvc.config import Settings
from feedsvc.model import PAGE_SUFFIX, Category, Feed, Item, Tag, Week

TAG_PREFIX = "tags/"


def registry(
    items: Sequence[Item],
    weeks: tuple[Week, ...],
    categories: tuple[Category, ...],
    tags: Mapping[str, Tag],
    settings: Settings,
) -> dict[str, Feed]:
    """Every feed, by name, in the order the site lists them."""
    title = settings.title
    feeds = [
        Feed(
            "all", "All items", title, settings.description, "/", items, settings.feed_size, "all"
        ),
        Feed(
            "weekly",
            "Weekly roundup",
            f"{title}: weekly roundup",
            f"One digest a week of everything published on {title}.",
            "/weekly/",
            weeks,
            settings.weekly_size,
            "weekly",
        ),
    ]
    for category in categories:
        feeds.append(
            Feed(
                category.slug,
                category.name,
                f"{title}: {category.name}",
                f"{category.name}: the latest from {title}.",
                category.path,
                category.items,
                settings.feed_size,
            )
        )
    for tag in tags.values():
        if len(tag.items) >= settings.tag_feed_min_items:
            feeds.append(
                Feed(
                    TAG_PREFIX + tag.slug,
                    f"Tagged {tag.name}",
                    f"{title}: tagged {tag.name}",
                    f"Items tagged {tag.name} on {title}.",
                    tag.path,
                    tag.items,
                    settings.feed_size,
                    "tag",
                )
            )
    return {feed.name: feed for feed in feeds}


def feed_path(name: str, format: str, page: int = 1, archive: str = "") -> str:
    """A feed page's path: the first page at the feed's own name, later ones and
    archives (a week's, feedsvc.archives) as files under it, never a query."""
    if archive:
        return f"/feeds/{quote(name)}/{archive}.{format}"
    if page > 1:  # a file of its own, so that a static host serves it as it is
        return f"/feeds/{quote(name)}/page/{page}.{format}"
    return f"/feeds/{quote(name)}.{format}"


def split_page(name: str) -> tuple[str, int | None]:
    """A feed document's name as (feed, page) when it names a page (`all/page/2`);
    (name, None) when it does not."""
    feed, slash, number = name.rpartition("/page/")
    if slash and feed and number.isascii() and number.isdigit() and not number.startswith("0"):
        return feed, int(number)
    return name, None


def list_page_path(first: str, page: int) -> str:
    """A page of an HTML list (the front page, a category, a tag, the roundups): the
    first at the list's own path (`/`, `/categories/news.html`), the others in a folder
    of the list's name, as files of their own (`/page/2.html`,
    `/categories/news/page/2.html`)."""
    if page == 1:
        return first
    folder = first.removesuffix(PAGE_SUFFIX).rstrip("/")
    return f"{folder}/page/{page}{PAGE_SUFFIX}"


def feed_url(settings: Settings, name: str, format: str, page: int = 1, archive: str = "") -> str:
    return settings.base_url + feed_path(name, format, page, archive)
