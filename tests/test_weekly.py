"""The weekly roundup: week rule, publish rule, digest content, feed and page."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from feedsvc import weekly
from feedsvc.config import Settings
from feedsvc.itemfile import parse_item
from feedsvc.model import Content, Item
from tests.conftest import Site

SHANGHAI = ZoneInfo("Asia/Shanghai")
PARIS = ZoneInfo("Europe/Paris")


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "base_url": "https://news.example.org",
        "timezone": "Asia/Shanghai",
        "items_dir": Path("items"),
        "title": "Example",
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def item(when: str, category: str = "retail", title: str = "A story", **kw: object) -> Item:
    """An item dated `when` (site time), parsed from a real file's bytes."""
    s: Settings = kw.pop("site_settings", None) or settings()  # type: ignore[assignment]
    slug = title.lower().replace(" ", "-")
    text = f'---\ntitle: "{title}"\ndate: {when}\n---\nBody of {title}.\n'
    parsed = parse_item(f"{category}/{when[:10]}-{slug}.md", text.encode(), s)
    assert parsed.item is not None, parsed.problems
    return parsed.item


def names(weeks: tuple[weekly.Week, ...]) -> list[str]:
    return [w.name for w in weeks]


@pytest.mark.parametrize(
    ("day", "starts_on", "expected"),
    [
        pytest.param(date(2020, 9, 28), "monday", "2020-W40", id="monday-opens-its-week"),
        pytest.param(date(2020, 10, 4), "monday", "2020-W40", id="sunday-closes-its-week"),
        pytest.param(date(2020, 10, 5), "monday", "2020-W41", id="next-monday-next-week"),
        pytest.param(date(2020, 12, 31), "monday", "2020-W53", id="iso-week-53"),
        pytest.param(date(2021, 1, 3), "monday", "2020-W53", id="january-in-last-years-week"),
        pytest.param(date(2021, 1, 4), "monday", "2021-W01", id="first-week-of-2021"),
        pytest.param(date(2020, 10, 4), "sunday", "2020-W41", id="sunday-start-opens-a-week"),
        pytest.param(date(2020, 10, 3), "sunday", "2020-W40", id="sunday-start-saturday-closes"),
    ],
)
def test_week_name(day: date, starts_on: str, expected: str) -> None:
    assert weekly.week_name(day, starts_on) == expected
    start, end = weekly.week_bounds(expected, starts_on)
    assert start <= day <= end
    assert (end - start).days == 6


def test_week_bounds_of_week_53_cross_the_year() -> None:
    assert weekly.week_bounds("2020-W53") == (date(2020, 12, 28), date(2021, 1, 3))
    assert weekly.week_bounds("2020-W53", "sunday") == (date(2020, 12, 27), date(2021, 1, 2))


@pytest.mark.parametrize("name", ["2020-W54", "2021-W53", "2020W40", "2020-W4", "abcd-W10"])
def test_week_bounds_refuse_names_that_are_no_week(name: str) -> None:
    with pytest.raises(ValueError, match="week"):
        weekly.week_bounds(name)


def test_last_minute_and_first_minute_of_a_week_in_shanghai() -> None:
    last = item("2020-10-04 23:59", title="Last")
    first = item("2020-10-05 00:00", title="First")
    after_both = datetime(2020, 10, 12, 0, 0, tzinfo=SHANGHAI)
    weeks, _, _ = weekly.group_weeks([last, first], {}, settings(), after_both)
    assert {w.name: [i.title for i in w.items] for w in weeks} == {
        "2020-W41": ["First"],
        "2020-W40": ["Last"],
    }


def test_a_week_publishes_at_midnight_site_time_not_utc() -> None:
    story = item("2020-10-01 12:00")
    s = settings()
    one_minute_before = datetime(2020, 10, 4, 23, 59, tzinfo=SHANGHAI)
    midnight = datetime(2020, 10, 5, 0, 0, tzinfo=SHANGHAI)  # 2020-10-04 16:00 UTC
    before, current, ends = weekly.group_weeks([story], {}, s, one_minute_before)
    assert before == ()
    assert current is not None and current.name == "2020-W40" and not current.complete
    assert ends == midnight
    after, current, _ = weekly.group_weeks([story], {}, s, midnight.astimezone(UTC))
    assert names(after) == ["2020-W40"]
    assert after[0].complete and current is None


def test_a_week_across_the_end_of_daylight_saving_closes_at_local_midnight() -> None:
    # Paris leaves summer time on Sunday 2020-10-25; the week ends at midnight CET (+01:00).
    s = settings(timezone="Europe/Paris")
    late_sunday = item("2020-10-25 23:30", title="Late", site_settings=s)
    assert late_sunday.published.utcoffset() is not None
    assert late_sunday.published.astimezone(UTC) == datetime(2020, 10, 25, 22, 30, tzinfo=UTC)
    _, current, ends = weekly.group_weeks(
        [late_sunday], {}, s, datetime(2020, 10, 25, 22, 45, tzinfo=UTC)
    )
    assert current is not None and current.name == "2020-W43"
    assert ends == datetime(2020, 10, 25, 23, 0, tzinfo=UTC)
    weeks, _, _ = weekly.group_weeks(
        [late_sunday], {}, s, datetime(2020, 10, 25, 23, 0, tzinfo=UTC)
    )
    assert names(weeks) == ["2020-W43"]


def test_sunday_start_weeks_group_sunday_with_the_following_days() -> None:
    s = settings(week_starts_on="sunday")
    sunday = item("2020-10-04 10:00", title="Sunday", site_settings=s)
    saturday = item("2020-10-03 10:00", title="Saturday", site_settings=s)
    weeks, _, _ = weekly.group_weeks([sunday, saturday], {}, s, datetime(2021, 1, 1, tzinfo=UTC))
    by_name = {w.name: w for w in weeks}
    assert [i.title for i in by_name["2020-W41"].items] == ["Sunday"]
    assert by_name["2020-W41"].start == date(2020, 10, 4)
    assert [i.title for i in by_name["2020-W40"].items] == ["Saturday"]


def test_rolling_shows_the_week_in_progress_and_end_does_not() -> None:
    stories = [item("2020-09-30 10:00", title="Old"), item("2020-10-06 10:00", title="New")]
    now = datetime(2020, 10, 7, 12, 0, tzinfo=SHANGHAI)
    ended, current, _ = weekly.group_weeks(stories, {}, settings(), now)
    rolling, _, _ = weekly.group_weeks(stories, {}, settings(weekly_publish="rolling"), now)
    assert names(ended) == ["2020-W40"]
    assert current is not None and current.name == "2020-W41"
    assert names(rolling) == ["2020-W41", "2020-W40"]
    assert not rolling[0].complete


def test_weeks_without_items_are_skipped() -> None:
    stories = [item("2020-09-30 10:00", title="A"), item("2020-10-21 10:00", title="B")]
    weeks, _, _ = weekly.group_weeks(stories, {}, settings(), datetime(2021, 1, 1, tzinfo=UTC))
    assert names(weeks) == ["2020-W43", "2020-W40"]


@pytest.mark.parametrize(
    ("titles", "expected"),
    [
        (["A"], "This week: A."),
        (["A", "B"], "This week: A and B."),
        (["A", "B", "C"], "This week: A, B and C."),
        (["A", "B", "C", "D", "E"], "This week: A, B and 3 more."),
    ],
)
def test_generated_intro(titles: list[str], expected: str) -> None:
    assert weekly.generated_intro(titles) == expected


def _contents(item: Item) -> Content:
    return Content(f"<p>Full body of {item.title}.</p>", f"Summary of {item.title}")


def test_digest_groups_by_configured_category_order_oldest_first() -> None:
    s = settings(categories=(("tech", "Tech"), ("retail", "Retail")))
    stories = [
        item("2020-09-30 10:00", "retail", "Retail late"),
        item("2020-09-28 10:00", "retail", "Retail early"),
        item("2020-10-01 10:00", "tech", "Tech one"),
        item("2020-09-29 10:00", "other", "Other one"),
    ]
    weeks, _, _ = weekly.group_weeks(stories, {}, s, datetime(2021, 1, 1, tzinfo=UTC))
    html = weekly.roundup_html(weeks[0], s, _contents, None)
    order = [html.index(t) for t in ("Tech one", "Retail early", "Retail late", "Other one")]
    assert order == sorted(order)
    assert html.startswith("<p>This week: Tech one, Retail early and 2 more.</p>")
    assert '<h2><a href="https://news.example.org/items/retail/retail-early.html">' in html
    assert "<p>Full body of Retail late.</p>" in html


def test_digest_with_summaries_only_and_a_footer() -> None:
    s = settings(weekly_full_content=False, weekly_footer="Read [more](/about).")
    weeks, _, _ = weekly.group_weeks(
        [item("2020-09-30 10:00", title="Story")], {}, s, datetime(2021, 1, 1, tzinfo=UTC)
    )
    html = weekly.roundup_html(weeks[0], s, _contents, "<p>Hello readers.</p>")
    assert html.startswith("<p>Hello readers.</p>")
    assert "<p>Summary of Story</p>" in html
    assert "Full body" not in html
    assert html.rstrip().endswith('<p>Read <a href="https://news.example.org/about">more</a>.</p>')


def test_week_title_uses_the_template_placeholders() -> None:
    s = settings(weekly_title="{site} {week}: {start}..{end}")
    weeks, _, _ = weekly.group_weeks(
        [item("2020-09-30 10:00")], {}, s, datetime(2021, 1, 1, tzinfo=UTC)
    )
    assert weekly.week_title(weeks[0], s) == "Example 2020-W40: 2020-09-28..2020-10-04"


# -- through the app ----------------------------------------------------------------------


def weekly_feed(site: Site, fmt: str = "atom", **overrides: object) -> feedparser.FeedParserDict:
    response = site.client(**overrides).get(f"/feeds/weekly.{fmt}")
    assert response.status_code == 200
    parsed = feedparser.parse(response.data)
    assert not parsed.bozo, parsed.bozo_exception
    return parsed


def test_entry_id_stays_and_updated_moves_when_an_item_is_edited(site: Site) -> None:
    site.overrides["timezone"] = "Asia/Shanghai"
    path = site.write_item(
        "retail", "2020-09-30-shop.md", {"title": "Shop", "date": "2020-09-30 10:00"}
    )
    before = weekly_feed(site).entries[0]
    path.write_text(
        "---\ntitle: Shop\ndate: 2020-09-30 10:00\nupdated: 2020-10-08 09:00\n---\nFixed."
    )
    after = weekly_feed(site).entries[0]
    assert after.id == before.id == "tag:news.example.org,2020-09-28:weekly/2020-W40"
    assert before.updated == "2020-09-30T10:00:00+08:00"
    assert after.updated == "2020-10-08T09:00:00+08:00"
    assert "Fixed." in after.content[0].value


def test_intro_file_opens_the_roundup(site: Site) -> None:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop", "date": "2020-09-30 10:00"})
    site.write("_weekly/2020-W40.md", "---\ntitle: Big week\n---\nWelcome to *the* roundup.\n")
    entry = weekly_feed(site).entries[0]
    assert entry.title == "Big week"
    assert entry.content[0].value.startswith("<p>Welcome to <em>the</em> roundup.</p>")


def test_weekly_feed_in_every_format(site: Site) -> None:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop", "date": "2020-09-30 10:00"})
    site.write_item("retail", "2020-10-14-mall.md", {"title": "Mall", "date": "2020-10-14 10:00"})
    for fmt in ("atom", "rss"):
        entries = weekly_feed(site, fmt).entries
        assert [e.title.split(": ")[-1] for e in entries] == [
            "2020-10-12 to 2020-10-18",
            "2020-09-28 to 2020-10-04",
        ]
        assert entries[0].link == "https://news.example.org/weekly/2020-W42.html"
    data = json.loads(site.client().get("/feeds/weekly.json").data)
    assert [i["id"] for i in data["items"]] == [
        "tag:news.example.org,2020-10-12:weekly/2020-W42",
        "tag:news.example.org,2020-09-28:weekly/2020-W40",
    ]
    assert "<h2>" in data["items"][0]["content_html"]


def test_weekly_size_limits_the_feed(site: Site) -> None:
    for day in ("2020-09-07", "2020-09-14", "2020-09-21", "2020-09-28"):
        site.write_item("retail", f"{day}-story.md", {"title": f"Story {day}"})
    entries = weekly_feed(site, weekly_size=2).entries
    assert [e.link.rsplit("/", 1)[1] for e in entries] == ["2020-W40.html", "2020-W39.html"]


def test_the_roundup_page_and_its_404s(site: Site) -> None:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop"})
    client = site.client()
    page = client.get("/weekly/2020-W40.html")
    assert page.status_code == 200
    assert b"Shop" in page.data and b"This week: Shop." in page.data
    for missing in (
        *("/weekly/2020-W41.html", "/weekly/2020-W99.html", "/weekly/last-week.html"),
        *("/weekly/2020-W41", "/weekly/last-week"),
    ):
        assert client.get(missing).status_code == 404


def test_the_index_shows_this_week_so_far(site: Site) -> None:
    site.clock.now = datetime(2020, 9, 30, 12, 0, tzinfo=UTC)
    site.write_item("retail", "2020-09-29-shop.md", {"title": "Shop"})
    client = site.client()
    assert b"This week so far" in client.get("/").data
    assert client.get("/weekly/2020-W40.html").status_code == 200
    assert weekly_feed(site).entries == []


def test_a_week_appears_when_it_ends_without_any_reload(site: Site) -> None:
    site.clock.now = datetime(2020, 10, 4, 21, 0, tzinfo=UTC)  # Sunday evening in UTC
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop"})
    client = site.client()
    assert feedparser.parse(client.get("/feeds/weekly.atom").data).entries == []
    site.clock.now = datetime(2020, 10, 5, 0, 0, tzinfo=UTC)
    assert len(feedparser.parse(client.get("/feeds/weekly.atom").data).entries) == 1


def test_bad_intro_files_are_reported(site: Site) -> None:
    site.write_item("retail", "2020-09-30-shop.md", {"title": "Shop"})
    site.write("_weekly/2020-W54.md", "Nope.")
    site.write("_weekly/2020-W41.md", "No items that week.")
    problems = {str(p) for p in site.app().extensions["feedsvc"].snapshot().problems}
    assert any(p.startswith("_weekly/2020-W54.md: error:") for p in problems)
    assert (
        "_weekly/2020-W41.md: warning: no items in 2020-W41; this introduction is not shown"
        in problems
    )


def test_the_sample_roundup_reads_like_the_newsletter(sample_settings: object) -> None:
    from feedsvc import create_app

    app = create_app(
        sample_settings(), clock=lambda: datetime(2020, 10, 5, tzinfo=UTC), watch=False
    )  # type: ignore[operator]
    # The newsletter the sample site was written from: its introduction, then each
    # story's headline and first paragraph, one line each.
    newsletter = (Path(__file__).parent / "fixtures" / "roundup_newsletter.txt").read_text()
    lines = [line for line in newsletter.splitlines() if line.strip()]
    intro, bodies = lines[0], dict(zip(lines[1::2], lines[2::2], strict=True))
    # Digest order: categories as configured (corporate, retail, partnerships), oldest first.
    expected = [
        "Alibaba Shares Key Updates During Investor Day Event",
        "AACA Launches SME Advisory Committee",
        "AliExpress Celebrates 10th Anniversary with New Retail Pop-up",
        "Dunhill Opens Flagship Store on Tmall Luxury Pavilion",
        "Taobao Live Hosts Virtual Tour of Switzerland",
        "Alibaba, Emlyon Business School Pen Agreement for Joint Master’s Program",
    ]
    assert set(expected) == set(bodies)
    for fmt in ("atom", "rss"):
        parsed = feedparser.parse(app.test_client().get(f"/feeds/weekly.{fmt}").data)
        assert not parsed.bozo
        assert [e.id for e in parsed.entries] == ["tag:127.0.0.1,2020-09-28:weekly/2020-W40"]
        content = parsed.entries[0].content[0].value
        assert content.startswith(f"<p>{intro}</p>")
        headlines = re.findall(r"<h2><a href=\"[^\"]+\">([^<]+)</a></h2>", content)
        assert headlines == expected
        for headline in expected:
            story = content.split(f">{headline}</a></h2>", 1)[1]
            assert story.lstrip().startswith(f"<p>{bodies[headline]}</p>")
