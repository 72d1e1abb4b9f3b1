"""The feeds a snapshot publishes, and where each lives: the one list that routes, pages,
the OPML and the static export read.

A feed is a name under /feeds/ and a list of entries: the feed of everything (`all`),
the weekly roundup (`weekly`) and one per category (its slug). A feed of another kind
takes a prefix that no category can have (a category's slug has no "/"), such as
`tags/<tag>`: adding a kind is one more loop in `registry`.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedsvc.config import Settings
from feedsvc.model import Category, Feed, Item, Week


def registry(
    items: Sequence[Item],
    weeks: tuple[Week, ...],
    categories: tuple[Category, ...],
    settings: Settings,
) -> dict[str, Feed]:
    """Every feed, by name, in the order the site lists them."""
    title = settings.title
    feeds = [
        Feed("all", "All items", title, settings.description, "/", items, settings.feed_size),
        Feed(
            "weekly",
            "Weekly roundup",
            f"{title}: weekly roundup",
            f"One digest a week of everything published on {title}.",
            "/weekly/",
            weeks,
            settings.weekly_size,
        ),
    ]
    for category in categories:
        feeds.append(
            Feed(
                category.slug,
                category.name,
                f"{title}: {category.name}",
                f"{category.name}: the latest from {title}.",
                f"/categories/{category.slug}",
                category.items,
                settings.feed_size,
            )
        )
    return {feed.name: feed for feed in feeds}


def feed_path(name: str, format: str, page: int = 1) -> str:
    """A feed page's path: the first page has no query, so that it has one URL."""
    query = f"?page={page}" if page > 1 else ""
    return f"/feeds/{name}.{format}{query}"


def feed_url(settings: Settings, name: str, format: str, page: int = 1) -> str:
    return settings.base_url + feed_path(name, format, page)
