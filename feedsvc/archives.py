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
from collections.abc import Sequence
from dataclasses import dataclass
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


def open_week_start(snapshot: Snapshot, settings: Settings) -> datetime:
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
    at = _first_older(entries, open_week_start(snapshot, settings))
    newest = weekly.item_week(entries[at], settings) if at < len(entries) else ""
    return History(prev_archive=newest)


@dataclass(frozen=True, slots=True)
class Archives:
    """A feed's archives: its closed weeks with entries, newest first, each with where
    its entries are in the feed's entries (newest first: one run, as weeks follow
    publication time). Worked out in one pass over the feed, once per snapshot, so that
    each archive costs a slice, however many there are."""

    weeks: tuple[str, ...]
    spans: dict[str, tuple[int, int]]  # week -> (start, stop) in the feed's entries

    def archive(self, feed: Feed, week: str) -> tuple[Sequence[Item], History] | None:
        """One archive document's entries (newest first) and links; None if there is none
        (not an archived feed, a week not closed, or none of the feed's entries in it)."""
        span = self.spans.get(week)
        if span is None:
            return None
        at = self.weeks.index(week)
        older = self.weeks[at + 1] if at + 1 < len(self.weeks) else ""
        newer = self.weeks[at - 1] if at > 0 else ""  # else the entries after are live
        history = History(archive=week, prev_archive=older, next_archive=newer)
        return _items(feed)[span[0] : span[1]], history


def archives_of(feed: Feed, snapshot: Snapshot, settings: Settings) -> Archives:
    """Every archive of a feed (none for a feed that is not archived or fits one page)."""
    if not archived(feed) or feed.last_page == 1:
        return Archives((), {})
    items = _items(feed)
    at = _first_older(items, open_week_start(snapshot, settings))
    spans: dict[str, tuple[int, int]] = {}
    seen, first = "", at
    for position, item in enumerate(items[at:], at):
        name = weekly.item_week(item, settings)
        if name != seen:
            if seen:
                spans[seen] = (first, position)
            seen, first = name, position
    if seen:
        spans[seen] = (first, len(items))
    return Archives(tuple(spans), spans)
