"""The cost model (work in proportion to the change) and the persistent cache that makes
restarts cheap."""

from __future__ import annotations

import gzip
import logging
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from flask import Flask
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from feedsvc import cache as cache_module
from feedsvc import model, web
from feedsvc.bodies import Bodies
from feedsvc.cache import FILE_NAME, Cache, decode, encode
from feedsvc.config import Settings
from feedsvc.documents import REFRESH_PATIENCE, Documents, PageKey, make_document
from feedsvc.itemfile import parse_intro, parse_item
from feedsvc.memo import Memo
from feedsvc.model import Content, FeedKey, Item, ParsedFile, Snapshot
from feedsvc.store import Store
from tests.conftest import Site, before_atom_renders, hold_atom_renders


def cached_settings(site: Site, **overrides: object) -> Settings:
    return site.settings(cache_dir=site.root / "cache", **overrides)


_DOCUMENTS: weakref.WeakKeyDictionary[Store, Documents] = weakref.WeakKeyDictionary()


def documents_for(store: Store, **options: Any) -> Documents:
    """The documents of `store` (made with `options` on first use), as create_app pairs them."""
    found = _DOCUMENTS.get(store)
    if found is None:
        found = _DOCUMENTS[store] = Documents(
            store.settings, store.cache, store.bodies, store.current, **options
        )
    return found


def feed_bytes(store: Store, url_name: str = "all", fmt: str = "atom") -> bytes:
    document = documents_for(store).feed(store.snapshot(), FeedKey(url_name, fmt))
    assert document is not None
    return document.body


def populate(site: Site, count: int = 20) -> None:
    for n in range(count):
        site.write_item(
            "news",
            f"2020-09-{n % 28 + 1:02d}-story-{n}.md",
            {"title": f"Story {n}", "tags": ["a", "b"]},
            body=f"Body {n} with a [link](../x) and <script>bad()</script>.",
        )
    site.write("_weekly/2020-W40.md", "---\ntitle: Intro\n---\nHello.")


def test_a_reload_after_touching_one_file_reparses_one_file(site: Site) -> None:
    populate(site)
    store = Store(site.settings(), site.clock)
    store.reload()
    assert store.parse_count == 21
    path = site.items / "news" / "2020-09-01-story-0.md"
    path.write_text(path.read_text() + "\nMore.")
    store.reload()
    assert store.parse_count == 22
    store.reload()
    assert store.parse_count == 22


def test_a_first_load_reads_the_parsed_rows_in_one_query(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site)
    Store(cached_settings(site), site.clock).reload()  # stores 21 rows
    site.write_item("news", "2020-09-29-new.md", {"title": "New"}, "Body.")
    queries: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(queries.append)  # every statement SQLite runs
        return db

    monkeypatch.setattr(sqlite3, "connect", traced)
    store = Store(cached_settings(site), site.clock)
    store.reload()
    assert [q for q in queries if "FROM parsed" in q] == [
        "SELECT path, size, mtime_ns, data FROM parsed"
    ], "one query, not one per file (nor for the new file)"
    assert store.parse_count == 1 and len(store.snapshot().items) == 21
    path = site.items / "news" / "2020-09-01-story-0.md"
    path.write_text(path.read_text() + "\nMore.")
    store.reload()  # a later reload asks for the changed file alone
    assert len([q for q in queries if "FROM parsed" in q]) == 2 and store.parse_count == 2


def test_a_reload_with_nothing_changed_keeps_the_snapshot_and_its_rendered_bytes(
    site: Site,
) -> None:
    populate(site)
    store = Store(site.settings(), site.clock)
    first = store.reload()
    feed_bytes(store)
    assert store.reload() is first
    assert documents_for(store).renders(first)[FeedKey("all", "atom")] == 1


def test_bodies_are_rendered_only_for_items_that_are_shown(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site, 30)
    store = Store(site.settings(feed_size=5, weekly_size=1), site.clock)
    store.reload()
    rendered: list[str] = []
    original = store.bodies.content

    def counting(item: Item) -> Content:
        rendered.append(item.source.path)
        return original(item)

    monkeypatch.setattr(store.bodies, "content", counting)
    feed_bytes(store, "news")
    assert len(rendered) == 5


def test_a_warm_restart_parses_nothing_and_serves_the_same_bytes(site: Site) -> None:
    populate(site)
    cold = Store(cached_settings(site), site.clock)
    cold.reload()
    cold_bytes = {fmt: feed_bytes(cold, "all", fmt) for fmt in ("atom", "rss", "json")}
    weekly_cold = feed_bytes(cold, "weekly")
    warm = Store(cached_settings(site), site.clock)
    warm.reload()
    assert warm.parse_count == 0
    assert {fmt: feed_bytes(warm, "all", fmt) for fmt in ("atom", "rss", "json")} == cold_bytes
    assert feed_bytes(warm, "weekly") == weekly_cold
    assert warm.snapshot().problems == cold.snapshot().problems


def test_bodies_come_from_the_cache_after_a_restart(site: Site) -> None:
    populate(site, 3)
    first = Store(cached_settings(site), site.clock)
    first.reload()
    feed_bytes(first)
    second = Store(cached_settings(site), site.clock)
    snapshot = second.reload()
    item = snapshot.items[0]
    (site.items / item.source.path).unlink()  # the body can no longer be read from disk
    assert "Body" in second.bodies.content(item).html


def test_a_change_of_content_is_parsed_again(site: Site) -> None:
    populate(site, 2)
    Store(cached_settings(site), site.clock).reload()
    path = site.items / "news" / "2020-09-01-story-0.md"
    path.write_text("---\ntitle: Changed title\n---\nNew body.")
    os.utime(path, ns=(1, 1))
    store = Store(cached_settings(site), site.clock)
    snapshot = store.reload()
    assert store.parse_count == 1
    assert "Changed title" in [i.title for i in snapshot.items]
    changed = next(i for i in snapshot.items if i.title == "Changed title")
    assert "New body." in store.bodies.content(changed).html


def test_a_change_of_code_drops_the_cache(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(site, 3)
    first = Store(cached_settings(site), site.clock)
    first.reload()
    feed_bytes(first)
    monkeypatch.setattr(cache_module, "code_digest", lambda: "other code")
    second = Store(cached_settings(site), site.clock)
    second.reload()
    assert second.parse_count == 4
    item = second.snapshot().items[0]
    assert second.cache.content(item.source.digest, item.path) is None


def test_published_pages_outlive_a_change_of_code(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade drops what the code made, not which pages were public: a page deleted
    across an upgrade is still gone."""
    populate(site, 3)
    first = Store(cached_settings(site), site.clock)
    first.reload()
    pages = set(first.snapshot().pages)
    assert set(first.cache.published_pages()) == pages
    (site.items / first.snapshot().items[0].source.path).unlink()
    monkeypatch.setattr(cache_module, "code_digest", lambda: "other code")
    second = Store(cached_settings(site), site.clock)
    assert second.reload().gone == pages - set(second.snapshot().pages) != set()


def test_a_warm_restart_notes_no_page_and_a_new_item_only_its_own(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site, 3)
    Store(cached_settings(site), site.clock).reload()
    noted: list[set[tuple[str, str]]] = []
    note_pages = Cache.note_pages

    def counted(cache: Cache, pages: dict[tuple[str, str], datetime]) -> None:
        noted.append(set(pages))
        note_pages(cache, pages)

    monkeypatch.setattr(Cache, "note_pages", counted)
    restarted = Store(cached_settings(site), site.clock)
    restarted.reload()
    assert noted == [set()]
    site.write_item("news", "2020-09-20-new.md", {"title": "New"})
    restarted.reload()
    assert noted[-1] == {("news", "new")}


#: Any character, a lone surrogate (a file name's byte that is not UTF-8) often.
_NAME_CHARACTERS = st.sampled_from("a\u00e9\udcff\x00") | st.characters(exclude_categories=())


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.text(_NAME_CHARACTERS), st.text(_NAME_CHARACTERS, max_size=5)),
        st.datetimes(timezones=st.just(UTC)),
        max_size=8,
    )
)
def test_published_pages_round_trip_any_name_that_is_text(
    pages: dict[tuple[str, str], datetime],
) -> None:
    """Names come from folder and file names: one that is not UTF-8 (a lone surrogate)
    is left out, never a failure, and costs no other page its place."""
    with tempfile.TemporaryDirectory() as folder:
        cache = Cache(Path(folder), Settings(items_dir=Path(folder)))
        started = time.time()
        cache.note_pages(pages)
        storable = {k: v for k, v in pages.items() if all(_utf8(name) for name in k)}
        assert cache.published_pages() == storable
        assert cache.published_pages(since=started + 3600) == {}


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def test_a_change_of_settings_that_parsing_reads_drops_the_cache(site: Site) -> None:
    populate(site, 3)
    Store(cached_settings(site), site.clock).reload()
    moved = Store(cached_settings(site, base_url="https://moved.example.org"), site.clock)
    snapshot = moved.reload()
    assert moved.parse_count == 4
    assert snapshot.items[0].id.startswith("tag:moved.example.org,")


BAD_ROWS = {
    "bad-row-object": '{"item": 5}',
    "bad-row-item-not-a-list": "[[5, []], null]",
    "bad-row-short-item": '[[["news", "a"], []], null]',
    "bad-row-short-intro": '[[null, []], ["2020-W40", "t"]]',
    "bad-row-problem": '[[null, [["p", 1]]], null]',
    "bad-row-markup": (
        '[[null, []], ["2020-W40", "t", ["_weekly/2020-W40.md", 1, 1, "d", "rst"]]]'
    ),
}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-schema", *BAD_ROWS])
def test_a_corrupt_cache_is_rebuilt_never_trusted(site: Site, damage: str) -> None:
    populate(site, 3)
    first = Store(cached_settings(site), site.clock)
    first.reload()
    expected = feed_bytes(first)
    path = site.root / "cache" / FILE_NAME
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "wrong-schema":
        path.unlink()
        for stale in path.parent.glob(FILE_NAME + "-*"):
            stale.unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE parsed (nonsense TEXT)")
    else:
        with sqlite3.connect(path) as db:
            db.execute("UPDATE parsed SET data = ?", (BAD_ROWS[damage],))
    store = Store(cached_settings(site), site.clock)
    store.reload()
    assert feed_bytes(store) == expected
    assert len(store.snapshot().items) == 3


def test_a_missing_cache_folder_is_created(site: Site) -> None:
    populate(site, 1)
    settings = site.settings(cache_dir=site.root / "deep" / "cache")
    Store(settings, site.clock).reload()
    assert (site.root / "deep" / "cache" / FILE_NAME).exists()


def test_an_unwritable_cache_folder_is_not_fatal(site: Site) -> None:
    populate(site, 1)
    blocker = site.root / "file-not-folder"
    blocker.write_text("x")
    store = Store(site.settings(cache_dir=blocker / "cache"), site.clock)
    assert len(store.reload().items) == 1


def test_the_codec_round_trips_an_intro_and_an_html_item(site: Site) -> None:
    settings = site.settings()
    text = b"---\ntitle: Subject {week}\nbogus: 1\n---\nHello."
    intro, problems = parse_intro("_weekly/2020-W40.md", text, 5)
    assert intro is not None and intro.title and problems  # the unknown key: a warning
    parsed = ParsedFile(None, tuple(problems))
    assert decode(encode(parsed, intro), settings.zone) == (parsed, intro)
    html = parse_item("news/2020-10-25-h.html", b"---\ntitle: H\ndraft: true\n---\n<p>B", settings)
    assert html.item is not None and html.item.source.markup == "html" and html.item.draft
    assert decode(encode(html, None), settings.zone) == (html, None)


def test_the_codec_round_trips_every_field(site: Site) -> None:
    settings = site.settings(timezone="Europe/Paris")
    data = (
        b"---\ntitle: T\ndate: 2020-10-25 02:30\nupdated: 2020-10-26T01:00:00Z\n"
        b"tags: [x]\nsummary: S\nlink: https://x.example\nimage: /i.png\nunknown: 1\n---\nB"
    )
    parsed = parse_item("news/2020-10-25-t.md", data, settings, 7)
    again, intro = decode(encode(parsed, None), settings.zone)
    assert again == parsed
    assert intro is None
    assert again.item is not None and parsed.item is not None
    assert again.item.published.tzinfo == parsed.item.published.tzinfo
    assert again.item.published.fold == parsed.item.published.fold


def test_a_body_cached_for_another_page_url_is_not_taken(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sanitiser resolves a body's URLs against its page's URL, so a body rendered
    while the page had another URL (as before pages were named `….html`) is not served
    from the cache: its `#notes` would name the old address."""
    site.write_item("news", "2020-09-01-story.md", {"title": "Story"}, "See [notes](#notes).")
    settings = site.settings(cache_dir=site.root / "cache")
    with monkeypatch.context() as old:
        old.setattr(model, "item_path", lambda category, name: f"/items/{category}/{name}")
        before = Store(settings)
        before.reload()
        [item] = before.snapshot().items
        assert 'href="https://news.example.org/items/news/story#notes"' in (
            before.bodies.content(item).html
        )
    now = Store(settings)
    now.reload()
    [item] = now.snapshot().items
    html = now.bodies.content(item).html
    assert 'href="https://news.example.org/items/news/story.html#notes"' in html


def test_content_round_trips(site: Site) -> None:
    cache = Cache(site.root / "c", site.settings())
    cache.store_content("d1", "/items/a/b.html", Content("<p>x</p>", "x"))
    assert cache.content("d1", "/items/a/b.html") == (Content("<p>x</p>", "x"), "")
    cache.store_content("d2", "/items/a/b.html", Content("<p>y</p>", "y"), "<script>")
    assert cache.content("d2", "/items/a/b.html") == (Content("<p>y</p>", "y"), "<script>")
    assert cache.content("d1", "/items/a/c.html") is None


def test_many_contents_are_read_in_batches_each_by_its_own_key(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "CONTENTS_PER_QUERY", 3)
    cache = Cache(site.root / "c", site.settings())
    held = {(f"d{n}", f"/items/a/{n % 2}.html"): Content(f"<p>{n}</p>", str(n)) for n in range(8)}
    for (digest, page), content in held.items():
        cache.store_content(digest, page, content, "<script>" * (digest == "d5"))
    asked = [*held, ("d1", "/items/a/0.html"), ("d9", "/items/a/1.html")]  # two not held
    found = cache.contents(asked)
    assert found == {
        key: (content, "<script>" * (key[0] == "d5")) for key, content in held.items()
    }
    assert cache.removed(asked) == {key: removed for key, (_, removed) in found.items()}


def test_load_settings_puts_the_cache_beside_the_items(tmp_path: Path) -> None:
    from feedsvc.config import load_settings

    assert load_settings(environ={}, cwd=tmp_path).cache_dir == tmp_path / ".feedsvc-cache"
    off = load_settings(environ={"FEEDSVC_CACHE_DIR": ""}, cwd=tmp_path)
    assert off.cache_dir is None


def test_a_warm_restart_serves_rendered_feeds_from_the_cache(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site)
    cold = Store(cached_settings(site), site.clock)
    cold.reload()
    expected = {name: feed_bytes(cold, name) for name in ("all", "news", "weekly")}
    warm = Store(cached_settings(site), site.clock)
    warm.reload()

    def no_rendering(item: object) -> None:
        raise AssertionError("a cached feed was rendered again")

    monkeypatch.setattr(warm.bodies, "content", no_rendering)
    assert {name: feed_bytes(warm, name) for name in expected} == expected


def test_a_warm_start_up_reads_no_body(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every first page, the weekly feed's included, comes from the cache by signature:
    no story's body is read to build a roundup that is not rendered."""
    populate(site)
    site.app(cache_dir=site.root / "cache")  # renders and stores the first pages
    read: list[str] = []
    content = Bodies.content

    def spy(self: Bodies, item: Item) -> Content:
        read.append(item.slug)
        return content(self, item)

    monkeypatch.setattr(Bodies, "content", spy)
    app = site.app(cache_dir=site.root / "cache")
    assert read == []
    assert b"Story 3" in app.test_client().get("/feeds/weekly.atom").data


def test_a_changed_item_is_never_served_from_a_stale_cached_feed(site: Site) -> None:
    populate(site, 3)
    first = Store(cached_settings(site), site.clock)
    first.reload()
    feed_bytes(first)
    site.write_item("news", "2020-09-01-story-0.md", {"title": "Renamed story"}, body="New.")
    second = Store(cached_settings(site), site.clock)
    second.reload()
    assert b"Renamed story" in feed_bytes(second)


def test_a_reload_for_named_files_looks_at_those_files_only(site: Site) -> None:
    populate(site, 10)
    store = Store(site.settings(), site.clock)
    store.reload()
    site.write_item("news", "2020-09-30-new.md", {"title": "New"})
    (site.items / "news" / "2020-09-01-story-0.md").unlink()
    # A change the events did not name is not looked at by a targeted reload...
    site.write_item("news", "2020-09-02-story-1.md", {"title": "Unnamed edit"}, body="x" * 50)
    snapshot = store.reload_settled(
        0, paths={"news/2020-09-30-new.md", "news/2020-09-01-story-0.md"}
    )
    assert snapshot is not None
    titles = {item.title for item in snapshot.items}
    assert "New" in titles
    assert "Story 0" not in titles
    assert "Unnamed edit" not in titles
    assert store.parse_count == 12
    # ...and the periodic full scan catches it.
    assert "Unnamed edit" in {item.title for item in store.reload().items}


@pytest.mark.parametrize(
    ("path", "setup"),
    [
        pytest.param("tech/2020-09-30-chip.md", "new-category", id="new-category-folder"),
        pytest.param("stray.md", "root-file", id="file-outside-a-category"),
        pytest.param("news/deeper/2020-09-30-x.md", "nested", id="nested-folder"),
    ],
)
def test_named_files_outside_known_folders_fall_back_to_a_full_scan(
    site: Site, path: str, setup: str
) -> None:
    populate(site, 2)
    store = Store(site.settings(), site.clock)
    store.reload()
    site.write(path, "---\ntitle: Elsewhere\n---\nBody.")
    snapshot = store.reload_settled(0, paths={path})
    assert snapshot is not None
    problems = {p.path for p in snapshot.problems}
    if setup == "new-category":
        assert "Elsewhere" in {item.title for item in snapshot.items}
    else:
        assert path.split("/")[0] in {p.split("/")[0] for p in problems}


def test_a_named_symlink_out_of_the_folder_is_refused(site: Site) -> None:
    populate(site, 1)
    store = Store(site.settings(), site.clock)
    store.reload()
    secret = site.root / "secret.md"
    secret.write_text("---\ntitle: Secret\n---\nNo.")
    (site.items / "news" / "2020-09-30-link.md").symlink_to(secret)
    snapshot = store.reload_settled(0, paths={"news/2020-09-30-link.md"})
    assert snapshot is not None
    assert "Secret" not in {item.title for item in snapshot.items}
    assert any("outside the items folder" in p.message for p in snapshot.problems)


def test_the_memo_keeps_recent_documents_within_its_budget() -> None:
    memo = Memo(max_bytes=3_000)
    documents = {n: make_document(bytes([n]) * 1_000, "text/html", None) for n in range(5)}
    memo.put("a", documents[0])
    memo.put("b", documents[1])
    memo.get("a")  # recently used: survives
    memo.put("c", documents[2])
    assert "a" in memo
    assert "b" not in memo
    assert "c" in memo
    memo.put("missing", None)  # a 404 answer weighs nothing
    assert memo.get("missing", "absent") is None


def test_crawling_every_page_keeps_memory_bounded(site: Site) -> None:
    populate(site, 30)
    store = Store(site.settings(), site.clock)
    snapshot = store.reload()
    documents = documents_for(store, memo_bytes=20_000)
    for item in snapshot.items:  # what a crawler walking every item page makes
        page = PageKey(item.path)
        documents.page(snapshot, page, "text/html", lambda: (bytes(1_000), None))
    held = documents.held(snapshot)["pages"]
    assert 0 < held <= 20_000 < 30 * 2 * 1_000


def test_a_change_to_one_file_re_renders_only_the_feeds_it_is_in(site: Site) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    site.write_item("tech", "2020-09-02-b.md", {"title": "B"})
    store = Store(site.settings(), site.clock)  # no persistent cache: memory alone
    store.reload()
    feeds = [(name, fmt) for name in ("all", "news", "tech", "weekly") for fmt in ("atom", "rss")]
    for name, fmt in feeds:
        feed_bytes(store, name, fmt)
    assert documents_for(store).render_count == 8
    site.write_item("tech", "2020-09-02-b.md", {"title": "B, edited"}, body="Longer body now.")
    store.reload()
    for name, fmt in feeds:
        feed_bytes(store, name, fmt)
    # all, tech and weekly (both formats) hold the edited item; news does not.
    assert documents_for(store).render_count == 8 + 6
    assert b"B, edited" in feed_bytes(store, "tech")


def renders_in_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that render Atom feeds from now on."""
    threads: list[str] = []
    before_atom_renders(monkeypatch, lambda: threads.append(threading.current_thread().name))
    return threads


def entry_titles(body: bytes) -> list[str]:
    return [entry.title for entry in feedparser.parse(body).entries]


def serving_store(site: Site, patience: float = REFRESH_PATIENCE) -> Store:
    """A server's store (renders off requests, waiting `patience` for them) with one news
    item, "A", its feed served."""
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    store = Store(site.settings(), site.clock)
    documents_for(store, refresh_off_requests=True, patience=patience)
    store.reload()
    feed_bytes(store, "news")
    return store


def test_after_a_change_a_request_waits_briefly_for_a_feed_a_thread_renders(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    site.write_item("tech", "2020-09-02-b.md", {"title": "B"})
    store = Store(site.settings(), site.clock)
    # A patience long enough for any machine: this is not a timing test.
    documents = documents_for(store, refresh_off_requests=True, patience=30.0)
    store.reload()
    feed_bytes(store, "news")
    tech_before = feed_bytes(store, "tech")
    threads = renders_in_threads(monkeypatch)
    site.write_item("news", "2020-09-01-a.md", {"title": "A, edited"})
    store.reload()
    renders = documents.render_count
    # A render within the patience is waited for: the first request gets the new feed.
    assert entry_titles(feed_bytes(store, "news")) == ["A, edited"]
    assert feed_bytes(store, "tech") == tech_before
    # news was rendered again, off the request path; tech, untouched, was not.
    assert threads == ["feedsvc-render"]
    assert documents.render_count == renders + 1
    documents.wait_for_refresh()
    # With nothing left to render, the store holds no thread.
    assert "feedsvc-render" not in [thread.name for thread in threading.enumerate()]


def test_a_request_gets_the_previous_feed_while_a_slow_render_runs(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = serving_store(site, patience=0.05)
    before = feed_bytes(store, "news")
    go_on = hold_atom_renders(monkeypatch)
    site.write_item("news", "2020-09-01-a.md", {"title": "A, edited"})
    store.reload()
    assert feed_bytes(store, "news") == before  # after the patience, not the render
    assert feed_bytes(store, "news") == before  # asked once: still on its way
    go_on.set()
    documents_for(store).wait_for_refresh()
    assert entry_titles(feed_bytes(store, "news")) == ["A, edited"]


def test_a_request_waiting_for_a_render_is_answered_when_it_ends_despite_a_newer_change(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = serving_store(site, patience=60.0)
    go_on = hold_atom_renders(monkeypatch)
    requests = ThreadPoolExecutor(2)
    try:
        site.write_item("news", "2020-09-01-a.md", {"title": "B"})
        store.reload()
        first = requests.submit(feed_bytes, store, "news")  # waits for the render of B
        assert go_on.started.wait(timeout=30), "B's render began"
        site.write_item("news", "2020-09-01-a.md", {"title": "C"})
        store.reload()
        second = requests.submit(feed_bytes, store, "news")  # asks for C's
        go_on.set()
        # The first request is answered when B's render ends, not when its patience does.
        assert entry_titles(first.result(timeout=15)) == ["B"]
        assert entry_titles(second.result(timeout=15)) == ["C"]
    finally:
        go_on.set()
        requests.shutdown()


def test_only_first_pages_are_kept_to_answer_while_a_change_is_rendered(site: Site) -> None:
    for day in range(1, 8):
        site.write_item("news", f"2020-09-0{day}-a.md", {"title": f"A{day}"})
    store = Store(site.settings(feed_size=2), site.clock)
    documents = documents_for(store, refresh_off_requests=True)
    store.reload()
    for page in (1, 2, 3):  # a crawler walks the pages
        documents.feed(store.snapshot(), FeedKey("news", "atom", page))
    site.write_item("news", "2020-09-08-a.md", {"title": "A8"})
    assert documents.stale(store.reload()) == {FeedKey("news", "atom")}


def test_a_feed_whose_render_failed_off_requests_is_rendered_by_the_next_request(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = serving_store(site)
    failing = threading.Event()
    failing.set()

    def fails() -> None:  # every Atom render, the entries alone and the page without them
        if failing.is_set():
            raise RuntimeError("disk on fire")

    before_atom_renders(monkeypatch, fails)
    site.write_item("news", "2020-09-01-a.md", {"title": "A, edited"})
    store.reload()
    assert entry_titles(feed_bytes(store, "news")) == ["A"]
    documents_for(store).wait_for_refresh()
    assert "rendering /feeds/news.atom failed" in caplog.text
    failing.clear()
    assert entry_titles(feed_bytes(store, "news")) == ["A, edited"]


def test_without_refresh_off_requests_a_change_is_rendered_by_the_first_request(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    store = Store(site.settings(), site.clock)  # a static export or a test: no thread
    store.reload()
    feed_bytes(store, "news")
    threads = renders_in_threads(monkeypatch)
    site.write_item("news", "2020-09-01-a.md", {"title": "A, edited"})
    store.reload()
    assert entry_titles(feed_bytes(store, "news")) == ["A, edited"]
    assert threads == [threading.current_thread().name]


def test_the_log_says_what_each_reload_and_render_cost(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators (and the benchmark) read the work a change caused from these lines."""
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    store = Store(site.settings(), site.clock)
    caplog.set_level(logging.INFO, logger="feedsvc")
    store.reload()
    body = feed_bytes(store, "news", "rss")
    feed_bytes(store, "news", "rss")  # memoised: no second line
    reloads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload:")]
    renders = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rendered")]
    assert len(reloads) == 1
    assert re.fullmatch(
        r"reload: 1 files changed, 0 removed; 1 items published; 0 problems; "
        r"\d+ ms \(\d+\.\d ms CPU\)",
        reloads[0],
    )
    assert len(renders) == 1
    assert re.fullmatch(
        rf"rendered /feeds/news\.rss: {len(body)} bytes; \d+ ms \(\d+\.\d ms CPU\)",
        renders[0],
    )


def test_a_roundup_is_assembled_once_for_every_format(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site, 6)
    store = Store(site.settings(), site.clock)
    store.reload()
    asked: list[str] = []
    original = store.bodies.content

    def counting(item: Item) -> Content:
        asked.append(item.source.path)
        return original(item)

    monkeypatch.setattr(store.bodies, "content", counting)
    for fmt in ("atom", "rss", "json"):
        feed_bytes(store, "weekly", fmt)
    assert sorted(asked) == sorted(set(asked))
    assert len(asked) == 6


def spilling_app(site: Site) -> Flask:
    """The app over a cached store whose documents keep any over 1,000 bytes on disk."""
    store = Store(cached_settings(site), site.clock)
    documents = documents_for(store, spill_bytes=1_000)
    store.reload()
    app = Flask("feedsvc", static_folder=None)
    web.register(app, store, documents)
    return app


def test_a_very_large_document_leaves_its_bytes_in_the_cache(site: Site) -> None:
    populate(site)
    whole = site.client().get("/feeds/weekly.atom", headers={"Accept-Encoding": "gzip"})
    app = spilling_app(site)
    store = app.extensions["feedsvc"]
    document = documents_for(store).feed(store.snapshot(), FeedKey("weekly", "atom"))
    assert document is not None and document.held is None and document.size == 0
    client = app.test_client()
    spilled = client.get("/feeds/weekly.atom", headers={"Accept-Encoding": "gzip"})
    assert (spilled.data, spilled.headers["ETag"]) == (whole.data, whole.headers["ETag"])
    plain = client.get("/feeds/weekly.atom")  # the other representation, read alone
    assert plain.data == gzip.decompress(whole.data)
    etag = spilled.headers["ETag"]
    poll = {"If-None-Match": etag, "Accept-Encoding": "gzip"}
    assert client.get("/feeds/weekly.atom", headers=poll).status_code == 304
    # Bytes the cache lost are rendered again, never served empty.
    with sqlite3.connect(site.root / "cache" / FILE_NAME) as db:
        db.execute("DELETE FROM documents")
    again = client.get("/feeds/weekly.atom", headers={"Accept-Encoding": "gzip"})
    assert (again.data, again.headers["ETag"]) == (whole.data, whole.headers["ETag"])
    assert feedparser.parse(gzip.decompress(again.data)).entries


def _call(
    app: Flask, path: str, method: str = "GET"
) -> tuple[str, dict[str, str], Iterable[bytes]]:
    """Call the WSGI app as a server would, and keep the body iterable it returns."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, headers))

    environ = EnvironBuilder(path=path, method=method).get_environ()
    body = app.wsgi_app(environ, start_response)
    return started[0][0], dict(started[0][1]), body


def test_a_very_large_document_is_streamed_from_the_cache_in_pieces(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site)
    whole = site.client().get("/feeds/weekly.atom").data
    app = spilling_app(site)
    app.extensions["feedsvc"].cache.stream_chunk = 512
    opened: list[sqlite3.Connection] = []
    connect = sqlite3.connect

    def tracked(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        opened.append(connect(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sqlite3, "connect", tracked)
    # A HEAD opens the stream for its length and closes it unsent.
    status, headers, body = _call(app, "/feeds/weekly.atom", "HEAD")
    assert (status, list(body), int(headers["Content-Length"])) == ("200 OK", [], len(whole))
    status, headers, body = _call(app, "/feeds/weekly.atom")
    pieces = iter(body)
    first = next(pieces)
    # Another worker replaces the row meanwhile: this response stays one version.
    with connect(site.root / "cache" / FILE_NAME) as db:
        db.execute("UPDATE documents SET body = x'00'")
    rest = list(pieces)
    assert status == "200 OK" and int(headers["Content-Length"]) == len(whole)
    assert b"".join([first, *rest]) == whole
    assert len(rest) >= 2 and all(len(piece) <= 512 for piece in [first, *rest])
    assert len(opened) == 2
    for db in opened:  # every read transaction has ended
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")


def test_a_busy_cache_is_used_later_never_deleted(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(site)
    store = Store(cached_settings(site), site.clock)
    store.reload()
    rows = count_rows(site, "parsed")
    path = site.root / "cache" / FILE_NAME
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
    try:
        busy = Cache(site.root / "cache", cached_settings(site), busy_timeout=0.1)
        assert not busy.enabled, "runs without the cache this time"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    again = Cache(site.root / "cache", cached_settings(site))
    assert again.enabled
    assert again.enabled and again.stored_item("news/2020-09-01-story-0.md") is not None
    assert count_rows(site, "parsed") == rows == 21


def test_rendered_documents_are_pruned_to_a_byte_budget(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = Cache(site.root / "cache", cached_settings(site))
    for n in range(10):
        assert cache.store_document(f"s{n}", bytes(1000), bytes(100))
    cache.close()
    reopened = Cache(site.root / "cache", cached_settings(site), keep_document_bytes=3_500)
    kept = [n for n in range(10) if reopened.document(f"s{n}") is not None]
    assert kept == [7, 8, 9], "the newest documents within 3,500 bytes"


def test_only_first_pages_are_kept_on_disk(site: Site) -> None:
    for day in range(1, 8):
        site.write_item("news", f"2020-09-{day:02d}-story.md", {"title": f"Story {day}"})
    app = site.app(cache_dir=site.root / "cache", feed_size=3)
    before = count_rows(site, "documents")
    assert before == 9  # all, weekly, news x RSS, Atom, JSON
    client = app.test_client()
    assert feedparser.parse(client.get("/feeds/all/page/2.atom").data).entries
    assert count_rows(site, "documents") == before


def _claim_setup(site: Site) -> tuple[Store, Snapshot, str, Path]:
    """A store on a fresh cache, and the signature of its all.atom first page."""
    populate(site)
    store = Store(cached_settings(site), site.clock)
    snapshot = store.reload()
    signature = documents_for(store).signature(snapshot, FeedKey("all", "atom"))
    assert signature is not None
    return store, snapshot, signature, site.root / "cache" / FILE_NAME


def test_a_worker_waits_for_the_bytes_of_a_feed_another_worker_is_rendering(
    site: Site,
) -> None:
    store, snapshot, signature, path = _claim_setup(site)
    documents = documents_for(store)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO claims VALUES (?, ?, ?)", (signature, other.pid, time.time()))
        got: list[Any] = []
        key = FeedKey("all", "atom")
        waiter = threading.Thread(target=lambda: got.append(documents.feed(snapshot, key)))
        waiter.start()
        time.sleep(0.2)
        assert waiter.is_alive() and not got
        theirs = b"<feed>rendered by the other worker</feed>"
        with sqlite3.connect(path) as db:  # what the other worker does when it is done
            db.execute(
                "INSERT INTO documents VALUES (?, ?, ?)",
                (signature, theirs, gzip.compress(theirs)),
            )
            db.execute("DELETE FROM claims")
        waiter.join(timeout=10)
        assert got[0].body == theirs and documents.render_count == 0
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("how", ["process-gone", "claim-too-old", "released-unrendered"])
def test_a_claim_that_cannot_deliver_is_taken_over(site: Site, how: str) -> None:
    store, snapshot, signature, path = _claim_setup(site)
    documents = documents_for(store)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        if how == "process-gone":
            other.kill()
            other.wait()
        at = time.time() - (cache_module.CLAIM_PATIENCE + 1 if how == "claim-too-old" else 0)
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO claims VALUES (?, ?, ?)", (signature, other.pid, at))
        if how == "released-unrendered":  # e.g. a body changed under the other worker

            def release() -> None:
                time.sleep(0.1)
                with sqlite3.connect(path) as db:
                    db.execute("DELETE FROM claims")

            threading.Thread(target=release).start()
        document = documents.feed(snapshot, FeedKey("all", "atom"))
        assert document is not None and documents.render_count == 1
        assert feedparser.parse(document.body).entries
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
            assert db.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    finally:
        other.kill()
        other.wait()


def test_a_request_does_not_wait_for_a_reload_when_a_scheduled_item_comes_due(
    site: Site,
) -> None:
    site.clock.now = datetime(2030, 1, 1, tzinfo=UTC)
    site.write_item("news", "2029-12-01-now.md", {"title": "Now"})
    site.write_item("news", "2030-06-01-later.md", {"title": "Later", "date": "2030-06-01"})
    store = Store(site.settings(), site.clock)
    before = store.reload()
    site.clock.now = datetime(2030, 6, 2, tzinfo=UTC)
    # A reload in the watcher's thread, held in the middle of parsing a new file.
    site.write_item("news", "2029-12-02-new.md", {"title": "New"})
    parsing, finish = threading.Event(), threading.Event()

    def progress(done: int, total: int) -> None:
        parsing.set()
        finish.wait(timeout=30)

    watcher = ThreadPoolExecutor(1)
    reloaded = watcher.submit(store.reload, progress)
    try:
        assert parsing.wait(timeout=30)
        assert store.snapshot() is before, "at once, not after the reload"
    finally:
        finish.set()
        watcher.shutdown()
    assert [item.title for item in reloaded.result().items] == ["Later", "New", "Now"]


def count_rows(site: Site, table: str) -> int:
    """Rows of a table in the site's cache file, read as another process would."""
    with sqlite3.connect(site.root / "cache" / FILE_NAME) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_failed_read_or_write_is_a_miss_and_the_next_one_tries_again(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="feedsvc.cache")
    cache = Cache(site.root / "cache", cached_settings(site), busy_timeout=0.01)
    assert cache.store_document("kept", b"body", b"gzipped")
    holder = sqlite3.connect(site.root / "cache" / FILE_NAME, isolation_level=None)
    try:
        # Another process writes for longer than this one waits: writing fails (twice,
        # logged once), a claim fails (render here), reading goes on (WAL).
        holder.execute("BEGIN EXCLUSIVE")
        assert not cache.store_document("new", b"x", b"y")
        assert not cache.store_document("new", b"x", b"y")
        assert cache.claim("new") is None
        assert cache.document("kept") == (b"body", b"gzipped")
        holder.execute("ROLLBACK")
        assert cache.store_document("new", b"x", b"y")
        assert cache.document("new") == (b"x", b"y")
        # Another process holds the file alone: reading fails too, here from the
        # connection a fork makes the next use open.
        cache.close()
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("SELECT count(*) FROM documents").fetchall()
        assert cache.document("kept") is None
        assert not cache.has_document("kept")
        assert cache.content("digest", "/items/a/b.html") is None
        assert cache.document_stream("kept", gzipped=False) is None
        assert not cache.store_document("other", b"x", b"y")
    finally:
        holder.close()
    assert cache.enabled
    assert cache.document("kept") == (b"body", b"gzipped")
    assert cache.store_document("other", b"x", b"y")
    stream = cache.document_stream("other", gzipped=True)
    assert stream is not None and b"".join(stream[1]) == b"y"
    assert [message.split(" (")[0] for message in warnings_logged(caplog)] == [
        "cache write busy",
        "cache claim busy",
        "cache read busy",
    ]


def test_a_failed_query_leaves_no_transaction_open(site: Site) -> None:
    cache = Cache(site.root / "cache", cached_settings(site), busy_timeout=0.01)
    path = site.root / "cache" / FILE_NAME
    with sqlite3.connect(path) as other:  # the table goes away under the cache
        other.execute("ALTER TABLE documents RENAME TO set_aside")
    assert not cache.store_document("s", b"x", b"y")
    assert cache.document("s") is None
    with sqlite3.connect(path, timeout=0.01) as other:  # not blocked by a transaction left open
        other.execute("ALTER TABLE set_aside RENAME TO documents")
    assert cache.store_document("s", b"x", b"y") and cache.document("s") == (b"x", b"y")


def test_a_cache_that_cannot_be_opened_stays_off_and_says_so_once(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = site.root / "file-not-folder"
    blocker.write_text("x")
    cache = Cache(blocker / "cache", cached_settings(site))
    assert not cache.enabled
    assert not cache.store_document("s", b"x", b"y")
    assert cache.document("s") is None and cache.claim("s") is None
    assert len(warnings_logged(caplog)) == 1
