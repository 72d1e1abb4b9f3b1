"""The weekly roundup: the week rule, the publish rule and the digest's HTML.

Pure: the time is passed in as `now`, never read from the clock.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta

from feedsvc.config import Settings
from feedsvc.itemfile import render_markup
from feedsvc.model import Content, Intro, Item, Week

HEADLINES_IN_INTRO = 2


def week_name(day: date, starts_on: str = "monday") -> str:
    """ISO-style name of the week holding `day`; a Sunday-start week is named for its Monday."""
    if starts_on == "sunday":
        day += timedelta(days=1)
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def week_bounds(name: str, starts_on: str = "monday") -> tuple[date, date]:
    """First and last day of a named week; ValueError for a name that is no week."""
    year, _, week = name.partition("-W")
    if len(year) != 4 or len(week) != 2 or not (year + week).isdigit():
        raise ValueError(f"{name!r} is not a week name like 2020-W40")
    monday = date.fromisocalendar(int(year), int(week), 1)
    start = monday - timedelta(days=1) if starts_on == "sunday" else monday
    return start, start + timedelta(days=6)


def week_end(end: date, settings: Settings) -> datetime:
    """The first instant after the week, in the site's time zone."""
    return datetime.combine(end + timedelta(days=1), time(), tzinfo=settings.zone)


def group_weeks(
    items: Iterable[Item], intros: Mapping[str, Intro], settings: Settings, now: datetime
) -> tuple[tuple[Week, ...], Week | None, datetime | None]:
    """Published roundups (newest first), the week in progress, and when that week ends.

    `items` are the published items; a week shows once it is over, or at once with
    `weekly_publish = "rolling"`.
    """

    groups: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: (i.published, i.updated, i.id)):
        groups.setdefault(item_week(item, settings), []).append(item)
    ordered = ((name, tuple(groups[name])) for name in sorted(groups))
    return assemble_weeks(ordered, intros, settings, now)


def item_week(item: Item, settings: Settings) -> str:
    """The name of the week an item belongs to, by its publication time in site time."""
    return week_name(item.published.astimezone(settings.zone).date(), settings.week_starts_on)


def assemble_weeks(
    groups: Iterable[tuple[str, Sequence[Item]]],
    intros: Mapping[str, Intro],
    settings: Settings,
    now: datetime,
) -> tuple[tuple[Week, ...], Week | None, datetime | None]:
    """`group_weeks` for items already grouped: (week name, published items oldest first),
    oldest week first; weeks with no items are skipped."""
    published: list[Week] = []
    current: Week | None = None
    ends_at: datetime | None = None
    for name, group in groups:
        if not group:
            continue
        start, end = week_bounds(name, settings.week_starts_on)
        closes = week_end(end, settings)
        week = Week(name, start, end, group, intros.get(name), complete=now >= closes)
        if not week.complete:
            current, ends_at = week, closes
        if week.complete or settings.weekly_publish == "rolling":
            published.append(week)
    published.reverse()
    return tuple(published), current, ends_at


def week_id(week: Week, settings: Settings) -> str:
    """A tag: URI that names the week, whatever its items or settings become."""
    year, number = (int(part) for part in week.name.split("-W"))
    monday = date.fromisocalendar(year, number, 1)
    return f"tag:{settings.domain},{monday.isoformat()}:weekly/{week.name}"


def week_title(week: Week, settings: Settings) -> str:
    """`weekly_title`, or the introduction's own title (a subject line, like a newsletter's).

    Both may use {site}, {start}, {end} and {week}.
    """
    template = settings.weekly_title
    if week.intro is not None and week.intro.title:
        template = week.intro.title
    values = {
        "site": settings.title,
        "start": week.start.isoformat(),
        "end": week.end.isoformat(),
        "week": week.name,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):  # an intro title with stray braces: as written
        return template


def in_digest_order(week: Week, settings: Settings) -> list[Item]:
    """Categories in the configured order, oldest first within each."""
    return sorted(
        week.items, key=lambda i: (settings.category_rank(i.category), i.published, i.id)
    )


def generated_intro(titles: list[str]) -> str:
    """ "This week: A, B and 3 more." from the week's headlines."""
    if len(titles) <= HEADLINES_IN_INTRO + 1:
        named = titles[:-1]
        last = titles[-1]
    else:
        named = titles[:HEADLINES_IN_INTRO]
        last = f"{len(titles) - HEADLINES_IN_INTRO} more"
    listed = f"{', '.join(named)} and {last}" if named else last
    return f"This week: {listed}."


def roundup_html(
    week: Week,
    settings: Settings,
    content_of: Callable[[Item], Content],
    intro_html: str | None,
) -> str:
    """The digest: introduction, each item as an <h2> headline and its body, then the footer."""
    items = in_digest_order(week, settings)
    parts = [intro_html or f"<p>{html.escape(generated_intro([i.title for i in items]))}</p>"]
    for item in items:
        url = settings.base_url + item.path
        parts.append(f'<h2><a href="{html.escape(url)}">{html.escape(item.title)}</a></h2>')
        content = content_of(item)
        if settings.weekly_full_content:
            parts.append(content.html)
        else:
            parts.append(f"<p>{html.escape(content.summary)}</p>")
    if settings.weekly_footer:
        parts.append(render_markup(settings.weekly_footer, "markdown", settings.base_url + "/"))
    return "\n".join(part.strip() for part in parts) + "\n"
