"""Each feed entry is written once per format and put in every document that shows it:
whatever the entries, and whatever was written before, a document's bytes are those of
writing it whole."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedsvc import render
from feedsvc.config import Settings
from feedsvc.memo import Memo
from feedsvc.model import History
from feedsvc.render import Entry, FeedView

SITE = Settings(base_url="https://example.org", title="Example")

#: Text as it reaches a renderer (sanitised: no character XML forbids), with what could
#: pass for an entry's tags if it were not escaped.
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\n\t<>&]"),
    max_size=30,
) | st.sampled_from(
    ["    <item>", "</item>\n", "  <entry", "</entry>\n", '"\\u0000feedsvc-items"']
)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
DATES = st.builds(
    lambda day, zone: datetime(2020, 1, 1, tzinfo=UTC).astimezone(zone) + timedelta(days=day),
    st.integers(0, 3),
    ZONES,
)
URLS = st.sampled_from(["https://example.org/items/a/b.html", "https://elsewhere.example/x"])
ENTRIES = st.builds(
    Entry,
    id=st.sampled_from(["tag:example.org,2020:a", "tag:example.org,2020:b"]),
    title=TEXT.filter(str.strip),
    url=URLS,
    page_url=URLS,
    published=DATES,
    updated=DATES,
    author=TEXT,
    categories=st.lists(
        st.tuples(TEXT, TEXT, st.just("https://example.org/tags/")), max_size=2
    ).map(tuple),
    summary=TEXT,
    html=TEXT,
    image=st.none() | st.just("https://example.org/i.png"),
)
HISTORIES = st.sampled_from(
    [History(), History(complete=True), History(archive="2020-W01", prev_archive="2019-W52")]
)


def view(entries: list[Entry], page: int, history: History) -> FeedView:
    return FeedView(
        name="all",
        title="Everything",
        description="All of it.",
        html_url="https://example.org/",
        entries=tuple(entries),
        page=page,
        last_page=3,
        history=history,
    )


WHOLE = {
    "rss": lambda v: render._whole_rss(v, SITE, None),
    "atom": lambda v: render._whole_atom(v, SITE, None),
    "json": lambda v: render._whole_json(v, SITE),
}


@pytest.mark.parametrize("format", sorted(render.FORMATS))
@settings(max_examples=60, deadline=None)
@given(
    pool=st.lists(ENTRIES, min_size=1, max_size=6),
    shown=st.lists(st.lists(st.integers(0, 5), max_size=6), min_size=1, max_size=4),
    page=st.integers(1, 3),
    history=HISTORIES,
    batch=st.sampled_from([0, 20, render.WRITE_BATCH_BYTES]),
)
def test_a_document_of_entries_written_before_is_the_document_written_whole(
    format: str,
    pool: list[Entry],
    shown: list[list[int]],
    page: int,
    history: History,
    batch: int,
) -> None:
    written_before, render._entries = render._entries, Memo(render.ENTRY_BYTES, weigh=len)
    batch_before, render.WRITE_BATCH_BYTES = render.WRITE_BATCH_BYTES, batch
    try:
        for positions in shown:  # documents that share entries, one after another
            document = view([pool[at % len(pool)] for at in positions], page, history)
            assert render.FORMATS[format].render(document, SITE) == WHOLE[format](document)
    finally:
        render._entries, render.WRITE_BATCH_BYTES = written_before, batch_before


@pytest.mark.parametrize("format", ["rss", "atom"])
def test_entries_of_large_bodies_are_written_a_batch_at_a_time(
    format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A week's roundup is megabytes: the entries written anew go into documents of at
    most WRITE_BATCH_BYTES of bodies each (one larger than that alone), not all in one."""
    monkeypatch.setattr(render, "_entries", Memo(render.ENTRY_BYTES, weigh=len))
    monkeypatch.setattr(render, "WRITE_BATCH_BYTES", 250)
    day = datetime(2020, 1, 1, tzinfo=UTC)
    sizes = [100, 100, 100, 400, 50, 100]
    entries = [
        Entry(f"tag:example.org,2020:{n}", f"Story {n}", f"https://example.org/{n}.html",
              f"https://example.org/{n}.html", day, day, "A", (), "S", "x" * size, None)
        for n, size in enumerate(sizes)
    ]  # fmt: skip
    batches: list[list[int]] = []
    generator = render._generator

    def counting_generator(
        view: FeedView, site: Settings, format: str, shown: Sequence[Entry] | None = None
    ) -> object:
        if shown is None:
            batches.append([len(entry.html) for entry in view.entries])
        return generator(view, site, format, shown)

    monkeypatch.setattr(render, "_generator", counting_generator)
    document = view(entries, 1, History())
    assert render.FORMATS[format].render(document, SITE) == WHOLE[format](document)
    assert batches[:-1] == [[100, 100], [100], [400], [50, 100]]  # the last: written whole


@pytest.mark.parametrize("format", sorted(render.FORMATS))
def test_an_entry_is_written_once_for_every_document_that_shows_it(
    format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "_entries", Memo(render.ENTRY_BYTES, weigh=len))  # none yet
    day = datetime(2020, 1, 1, tzinfo=UTC)
    entries = [
        Entry(f"tag:example.org,2020:{n}", f"Story {n}", f"https://example.org/{n}.html",
              f"https://example.org/{n}.html", day, day, "A", (), "S", f"<p>{n}</p>", None)
        for n in range(4)
    ]  # fmt: skip
    written: Counter[str] = Counter()
    generator, json_item = render._generator, render._json_item

    def counting_generator(
        view: FeedView, site: Settings, format: str, shown: Sequence[Entry] | None = None
    ) -> object:
        written.update(e.id for e in (view.entries if shown is None else shown))
        return generator(view, site, format, shown)

    def counting_json_item(entry: Entry) -> dict[str, object]:
        written[entry.id] += 1
        return json_item(entry)

    monkeypatch.setattr(render, "_generator", counting_generator)
    monkeypatch.setattr(render, "_json_item", counting_json_item)
    documents = [view(shown, 1, History()) for shown in (entries[:3], entries[1:], entries)]
    for document in documents:
        render.FORMATS[format].render(document, SITE)
    assert written == {entry.id: 1 for entry in entries}


@given(
    title=TEXT | st.just("a\r\nb"),
    about=TEXT,
    links=st.lists(st.tuples(TEXT | st.just("x\ty\rz\n"), TEXT, TEXT), max_size=4),
)
def test_a_feed_preview_shows_its_texts_and_links_as_they_are(
    title: str, about: str, links: list[tuple[str, str, str]]
) -> None:
    """The preview a browser shows is written as text and parsed: whatever the titles
    and addresses hold, it shows each as it is."""
    h = f"{{{render.XHTML}}}"
    div = render.preview(title, about, links, SITE)
    assert div.get("id") == "feedsvc-preview"
    assert div.find(f"{h}h1/{h}a").get("href") == "https://example.org/"
    assert div.findtext(f"{h}h1/{h}a") == title
    assert div.findtext(f"{h}p") == about
    shown = [
        (li.find(f"{h}a").get("href"), li.findtext(f"{h}a"), li.findtext(f"{h}span") or "")
        for li in div.iterfind(f"{h}ul/{h}li")
    ]
    assert shown == links
