"""The incremental index: deltas give the same published state as building from scratch."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc.config import Settings
from feedsvc.index import Index, Ordered, Run, Tuning, View, order_key
from feedsvc.itemfile import parse_item
from feedsvc.model import Item

SETTINGS = Settings(
    base_url="https://news.example.org", timezone="Europe/Paris", items_dir=Path("items")
)
NOW = datetime(2021, 1, 1, tzinfo=UTC)


def item(path: str, title: str = "T", **front: str) -> Item:
    lines = "".join(f"{key}: {value}\n" for key, value in front.items())
    parsed = parse_item(path, f"---\ntitle: {title}\n{lines}---\nBody.".encode(), SETTINGS)
    assert parsed.item is not None, parsed.problems
    return parsed.item


def view(index: Index, now: datetime = NOW) -> View:
    return index.view(now, ["news", "tech"], {})


def summary(v: View) -> dict[str, object]:
    return {
        "items": [(i.source.path, i.page_name) for i in v.items],
        "categories": [(c.slug, [i.id for i in c.items]) for c in v.categories],
        "weeks": [(w.name, [i.id for i in w.items]) for w in v.weeks],
        "pages": sorted((k, i.id) for k, i in v.pages.items()),
        "problems": sorted(str(p) for p in v.problems),
        "changes_at": v.changes_at,
    }


def test_the_first_path_owns_an_id_and_hands_it_on_when_removed() -> None:
    index = Index(SETTINGS)
    a = item("news/2020-09-01-a.md", id="tag:x,2020:same")
    b = item("news/2020-09-02-b.md", id="tag:x,2020:same")
    index.update({a.source.path: a, b.source.path: b})
    first = view(index)
    assert [i.source.path for i in first.items] == ["news/2020-09-01-a.md"]
    assert [p.path for p in first.problems] == ["news/2020-09-02-b.md"]
    index.update({a.source.path: None})
    second = view(index)
    assert [i.source.path for i in second.items] == ["news/2020-09-02-b.md"]
    assert second.problems == ()


def test_a_view_reuses_what_an_update_did_not_touch() -> None:
    index = Index(SETTINGS)
    news = item("news/2020-09-01-a.md")
    index.update({news.source.path: news})
    before = view(index)
    late = item("tech/2020-12-01-b.md")  # another category, another week
    index.update({late.source.path: late})
    after = view(index)
    assert after.categories[0].items is before.categories[0].items  # news: untouched
    assert after.weeks[-1].items is before.weeks[-1].items  # weeks are newest first
    assert [i.source.path for i in after.items] == [late.source.path, news.source.path]
    later = view(index, datetime(2020, 10, 1, tzinfo=UTC))  # before `late` is published
    assert [i.source.path for i in later.items] == [news.source.path]


def test_namesakes_keep_stable_pages_until_the_oldest_goes() -> None:
    index = Index(SETTINGS)
    old = item("news/2020-09-01-weekly-note.md")
    new = item("news/2020-09-08-weekly-note.md")
    index.update({new.source.path: new})
    assert set(view(index).pages) == {("news", "weekly-note")}
    index.update({old.source.path: old})
    assert set(view(index).pages) == {("news", "weekly-note"), ("news", "2020-09-08-weekly-note")}
    index.update({old.source.path: None})
    assert set(view(index).pages) == {("news", "weekly-note")}


def test_drafts_and_scheduled_items() -> None:
    index = Index(SETTINGS)
    draft = item("news/2020-09-01-draft.md", draft="true")
    later = item("news/2021-06-01-later.md")
    index.update({draft.source.path: draft, later.source.path: later})
    assert view(index).items == ()
    assert view(index).changes_at == later.published
    assert [i.title for i in view(index, datetime(2021, 7, 1, tzinfo=UTC)).items] == ["T"]


@pytest.mark.parametrize("rebase", [256, 0], ids=["page-overlay", "page-copies"])
@pytest.mark.parametrize("bulk", [1_000, 0], ids=["one-by-one", "re-sorted"])
@pytest.mark.parametrize("seed", range(20))
def test_any_sequence_of_changes_matches_a_fresh_build(seed: int, bulk: int, rebase: int) -> None:
    """Random edits, renames of ids and slugs, drafts and deletions, applied one delta at a
    time, leave the index exactly as if it had been built from the final files at once
    (whether a delta moves items one by one or re-sorts everything)."""
    # Orders split into small pieces, one by one or re-sorted, pages overlaid or copied.
    tuning = Tuning(piece=2 + seed % 3, bulk_changes=bulk, pages_rebase=rebase)
    rng = random.Random(seed)
    paths = [
        f"{rng.choice(['news', 'tech'])}/2020-{rng.randint(9, 12):02d}-{rng.randint(1, 28):02d}-"
        f"{rng.choice(['a', 'b', 'c'])}.md"
        for _ in range(40)
    ]
    current: dict[str, Item | None] = {}
    noted: dict[tuple[str, str], datetime] = {}  # the cache's pages
    index = Index(SETTINGS, tuning)
    for step in range(300):
        path = rng.choice(paths)
        roll = rng.random()
        if roll < 0.2:
            new: Item | None = None
        else:
            day = f"2020-{rng.randint(9, 12):02d}-{rng.randint(1, 28):02d}"
            front = {"date": f"{day} 10:{step % 60:02d}"}
            if roll < 0.35:
                front["id"] = f"tag:x,2020:{rng.choice(['p', 'q'])}"
            if roll > 0.9:
                front["draft"] = "true"
            new = item(path, title=f"Step {step}", **front)
        current[path] = new
        index.update({path: new})
        placed = index.take_placed()  # what the store tells the cache: only news
        assert all(noted.get(key) != published for key, published in placed.items())
        noted.update(placed)
        pages = view(index).pages  # a snapshot's page map: the live one, frozen
        assert all(noted[key] == live.published for key, live in pages.items())
        if step % 10 == 0:  # the page map as a fresh build would have it
            fresh = Index(SETTINGS)
            fresh.update(current)
            expected = view(fresh).pages
            assert dict(pages) == dict(expected) and len(pages) == len(expected)
        if step == 100:
            kept, kept_pages = pages, dict(pages)
    fresh = Index(SETTINGS)
    fresh.update(current)
    for now in (NOW, datetime(2020, 11, 1, tzinfo=UTC)):
        assert summary(view(index, now)) == summary(view(fresh, now))
    assert dict(kept) == kept_pages, "a snapshot's pages never change after it is taken"
    # A restart: an index that recalls the noted pages knows what is gone as this one
    # does, and has nothing new to note.
    restarted = Index(SETTINGS, tuning)
    restarted.recall(noted)
    restarted.update(current)
    assert restarted.take_placed() == {}
    for now in (NOW, datetime(2020, 11, 1, tzinfo=UTC)):
        assert view(restarted, now).gone == view(index, now).gone


@pytest.mark.parametrize("seed", range(10))
def test_an_order_in_pieces_reads_as_the_sorted_list_and_its_runs_never_change(seed: int) -> None:
    rng = random.Random(seed)
    pool = [item(f"news/2020-{m:02d}-{d:02d}-s{d}.md") for m in (9, 10, 11) for d in range(1, 29)]
    initial = sorted(rng.sample(pool, rng.randint(0, 20)), key=order_key)
    ordered = Ordered(((order_key(i), i) for i in initial), piece=2 + seed % 4)
    model = list(initial)
    taken: list[tuple[Run, list[Item]]] = []
    for _ in range(200):
        absent = [i for i in pool if i not in model]
        if model and (not absent or rng.random() < 0.4):
            gone = rng.choice(model)
            ordered.remove(gone)
            model.remove(gone)
        else:
            new = rng.choice(absent)
            ordered.add(new, order_key(new))
            model = sorted([*model, new], key=order_key)
        now = rng.choice([NOW, datetime(2020, rng.randint(9, 11), 15, tzinfo=UTC)])
        published = [i for i in model if i.published <= now]
        newest, oldest = ordered.newest_first(now), ordered.oldest_first(now)
        for run, expected in ((newest, published[::-1]), (oldest, published)):
            assert list(run) == expected and len(run) == len(expected)
            assert [run[at] for at in range(-len(expected), len(expected))] == expected * 2
            start, stop = sorted(rng.sample(range(len(expected) + 2), 2))
            assert run[start:stop] == tuple(expected[start:stop])
            assert run == tuple(expected) and (run != tuple(expected[1:]) or not expected)
            with pytest.raises(IndexError):
                run[len(expected)]
        taken.append((newest, published[::-1]))
    assert all(list(run) == expected for run, expected in taken), "a run never changes"


@given(st.lists(st.lists(st.integers(), min_size=1), max_size=6), st.booleans(), st.data())
def test_a_run_read_backwards_or_sliced_gives_the_positions_of_its_list(
    pieces: list[list[int]], newest_first: bool, data: st.DataObject
) -> None:
    held = tuple(tuple(piece) for piece in pieces)
    starts = [sum(map(len, held[:at])) for at in range(len(held))]
    length = data.draw(st.integers(0, sum(map(len, held))))
    run = Run(held, tuple(starts), length, newest_first=newest_first)  # type: ignore[arg-type]
    assert list(reversed(run)) == [run[at] for at in range(len(run) - 1, -1, -1)]
    listed = list(run)
    start, stop = data.draw(st.integers(-8, 30)), data.draw(st.integers(-8, 30))
    step = data.draw(st.sampled_from([None, 1, 2, -1]))
    assert run[start:stop:step] == tuple(listed[start:stop:step])
