"""Archived feeds (RFC 5005 §4): the history of a feed, one stable document per closed week.

The feed of everything, each category's and each tag's feed keep, beside their live
document, one archive document per closed week that has entries of theirs (ISO weeks in
the site's zone, as the roundup's; a week closes when it ends). An archive holds the
week's entries of that feed, newest first, and links to the archives of the nearest
older and newer weeks with entries (`prev-archive`, `next-archive`) and to the live feed
(`current`); the live feed links to the newest archive. Following the chain from the
live feed reaches every published entry of a closed week exactly once; the entries of
the week in progress are on the live feed. An archive changes only when an entry of its
own week does, so it is served with a long max-age. A feed that fits on its first page
is complete (`fh:complete`) and has no archives.

    /feeds/<feed>/<week>.<format>       e.g. /feeds/all/2020-W40.atom

Pure: the time comes from the snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time

from feedsvc import weekly
from feedsvc.config import Settings
from feedsvc.model import Feed, History, Item, Snapshot

WEEK = re.compile(r"\d{4}-W\d{2}\Z")
#: Seconds an archive may be cached: it changes only if an entry of its own week does.
ARCHIVE_MAX_AGE = 7 * 86_400


def split(name: str) -> tuple[str, str]:
    """A feed document's name as (feed, archive week): `all/2020-W40` is the archive of
    `all` for that week; a name without a week is the live feed (week "")."""
    feed, slash, week = name.rpartition("/")
    return (feed, week) if slash and WEEK.match(week) else (name, "")


def archived(feed: Feed) -> bool:
    """Whether a feed keeps archives: everything, a category, a tag (not the roundup)."""
    return feed.kind in ("all", "category", "tag")


def belongs(feed: Feed, item: Item) -> bool:
    if feed.kind == "category":
        return item.category == feed.name
    if feed.kind == "tag":
        return feed.name.removeprefix("tags/") in item.tag_slugs
    return True


def _midnight(day: date, settings: Settings) -> datetime:
    return datetime.combine(day, time(), tzinfo=settings.zone)


def _first_older(entries: Sequence[Item], moment: datetime) -> int:
    """The index of the first entry (newest first) published before `moment`."""
    low, high = 0, len(entries)
    while low < high:
        middle = (low + high) // 2
        if entries[middle].published < moment:
            high = middle
        else:
            low = middle + 1
    return low


def _open_week_start(snapshot: Snapshot, settings: Settings) -> datetime:
    """The first instant of the week in progress: what is older is archived."""
    name = weekly.week_name(snapshot.now.astimezone(settings.zone).date(), settings.week_starts_on)
    start, _ = weekly.week_bounds(name, settings.week_starts_on)
    return _midnight(start, settings)


def _items(feed: Feed) -> Sequence[Item]:
    return feed.entries  # type: ignore[return-value]  # an archived feed lists items


def live_history(feed: Feed, snapshot: Snapshot, settings: Settings) -> History:
    """The live feed's place in its history: complete, or the newest archive."""
    if feed.last_page == 1:
        return History(complete=True)
    if not archived(feed):
        return History()
    entries = _items(feed)
    at = _first_older(entries, _open_week_start(snapshot, settings))
    newest = weekly.item_week(entries[at], settings) if at < len(entries) else ""
    return History(prev_archive=newest)


def archive(
    feed: Feed, week_name: str, snapshot: Snapshot, settings: Settings
) -> tuple[tuple[Item, ...], History] | None:
    """One archive document's entries (newest first) and links; None if there is none
    (not an archived feed, a week not closed, or none of the feed's entries in it)."""
    if not archived(feed) or feed.last_page == 1:
        return None
    week = snapshot.week(week_name)
    if week is None or not week.complete:
        return None
    entries = tuple(item for item in reversed(week.items) if belongs(feed, item))
    if not entries:
        return None
    items = _items(feed)
    start = _midnight(week.start, settings)
    older = _first_older(items, start)
    previous = weekly.item_week(items[older], settings) if older < len(items) else ""
    newer = _first_older(items, weekly.week_end(week.end, settings)) - 1
    following = weekly.item_week(items[newer], settings) if newer >= 0 else ""
    if following and not _closed(following, snapshot, settings):
        following = ""
    return entries, History(archive=week.name, prev_archive=previous, next_archive=following)


def _closed(name: str, snapshot: Snapshot, settings: Settings) -> bool:
    _, end = weekly.week_bounds(name, settings.week_starts_on)
    return snapshot.now >= weekly.week_end(end, settings)


def weeks(feed: Feed, snapshot: Snapshot, settings: Settings) -> Iterator[str]:
    """Every archive of a feed, newest first (for the static export)."""
    if not archived(feed) or feed.last_page == 1:
        return
    items = _items(feed)
    at = _first_older(items, _open_week_start(snapshot, settings))
    seen = ""
    for item in items[at:]:
        name = weekly.item_week(item, settings)
        if name != seen:
            seen = name
            yield name
