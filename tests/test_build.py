"""`feedsvc build` into a folder it built before: only what changed is written, what is
gone is removed, and the problems are listed with an exit status that counts them."""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from feedsvc import documents as static_documents
from feedsvc import static
from feedsvc.cli import main
from feedsvc.config import Settings
from feedsvc.documents import Documents
from feedsvc.feeds import list_page_path
from feedsvc.model import FeedKey, Item, Snapshot, Week
from feedsvc.static import MANIFEST, STORE
from tests.conftest import Site

OLD = 1_000_000_000  # an mtime (2001) no file of this build can have


@pytest.fixture
def runner(site: Site, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(site.root)
    (site.root / "feedsvc.toml").write_text(
        'title = "Build"\nbase_url = "https://build.example.org"\nfeed_size = 3\n'
    )
    for day in range(1, 9):
        tags = ["even"] if day % 2 == 0 else []
        site.write_item(
            "news", f"2020-09-{day:02d}-story-{day}.md", {"title": f"Story {day}", "tags": tags}
        )
    site.write_item("sport", "2020-09-09-match.md", {"title": "Match"})
    return CliRunner()


def build(runner: CliRunner, *extra: str) -> Result:
    return runner.invoke(main, ["build", "public", *extra], catch_exceptions=False)


def files(out: Path) -> dict[str, float]:
    return {
        p.relative_to(out).as_posix(): p.stat().st_mtime for p in out.rglob("*") if p.is_file()
    }


def age(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))


def test_a_rebuild_with_no_change_touches_nothing(site: Site, runner: CliRunner) -> None:
    assert build(runner).exit_code == 0
    out = site.root / "public"
    age(out)
    result = build(runner)
    assert result.exit_code == 0, result.output
    assert "0 files written" in result.output and "0 removed" in result.output
    # What each part of the build took, for whoever wonders where the time goes.
    assert re.search(
        r"took [\d.]+ s: loading [\d.]+ s, bodies [\d.]+ s, documents [\d.]+ s\n", result.output
    )
    assert set(files(out).values()) == {OLD}


def rendered(result: Result) -> int:
    found = re.search(r"\((\d+) documents rendered\)", result.output)
    assert found, result.output
    return int(found.group(1))


def test_a_rebuild_renders_only_what_its_signature_says_changed(
    site: Site, runner: CliRunner
) -> None:
    first = build(runner)
    out = site.root / "public"
    manifest = (out / MANIFEST).read_text().splitlines()
    unsigned = {line[1:] for line in manifest if line.startswith("\t")}
    documents = {name for name in unsigned if not name.endswith(".gz")} - SITE_FILES
    assert documents == {"feeds.opml", "tags/index.html"}, "rendered every build"
    assert rendered(first) > rendered(build(runner)) == len(documents)
    site.write_item(
        "news", "2020-09-04-story-4.md", {"title": "Story 4, edited", "tags": ["even"]}
    )
    # Its page; the lists that show it (the front page, news, "even", its week's
    # roundup); and in three formats the page of everything, of news and of "even" that
    # show it, those feeds' archives of its week, and the roundups' feed.
    assert rendered(build(runner)) == len(documents) + 1 + 4 + 3 * 7


def test_a_group_an_edit_did_not_touch_is_known_unchanged_as_a_whole(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed's signature stands for all of its documents, a folder's for its item
    pages: those of a feed or folder that does not hold the edited item are not signed
    one by one (at 10,000 items that is most of what a rebuild after one edit does)."""
    build(runner)
    signed: Counter[str] = Counter()
    signature, item_page_signature = Documents.signature, static.item_page_signature

    def counting(self: Documents, snapshot: Snapshot, key: FeedKey) -> str | None:
        signed["feed " + key.name] += 1
        return signature(self, snapshot, key)

    def counting_pages(item: Item, settings: Settings) -> str:
        signed["page " + item.category] += 1
        return item_page_signature(item, settings)

    monkeypatch.setattr(Documents, "signature", counting)
    monkeypatch.setattr(static, "item_page_signature", counting_pages)
    site.write_item("sport", "2020-09-09-match.md", {"title": "Match, edited"})
    assert rendered(build(runner)) > 0
    assert set(signed) == {"feed all", "feed sport", "feed weekly", "page sport"}, signed


def test_a_file_gone_from_the_folder_is_written_again(site: Site, runner: CliRunner) -> None:
    """Nothing changed, but files were deleted from the folder (by hand, by a deploy
    tool): the rebuild finds them missing, whether their group is unchanged or not."""
    build(runner)
    out = site.root / "public"
    missing = ["feeds/all/page/2.atom", "feeds/sport.json.gz", "items/news/story-3.html"]
    before = {name: (out / name).read_bytes() for name in missing}
    for name in missing:
        (out / name).unlink()
    result = build(runner)
    assert "3 files written" in result.output, result.output
    assert {name: (out / name).read_bytes() for name in missing} == before


SITE_FILES = {"404.html", "feed.css", "favicon.ico", "icon.png", "_headers"}


def tree(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }


def test_a_rebuild_after_any_change_equals_a_clean_build(site: Site, runner: CliRunner) -> None:
    """The signatures hold everything each page shows: whatever changed, the rebuilt
    folder has the very bytes of a build into an empty one."""
    with (site.root / "feedsvc.toml").open("a") as settings:
        settings.write("page_size = 2\n")  # lists of several pages: a change moves them
    assert build(runner).exit_code == 0
    changes = [
        lambda: site.write_item("news", "2020-09-10-new.md", {"title": "New", "tags": ["Odd"]}),
        lambda: site.write_item("news", "2020-09-02-story-2.md", {"title": "Two", "tags": []}),
        lambda: (site.root / "items" / "news" / "2020-09-05-story-5.md").unlink(),
        lambda: site.write_item(
            "sport", "2020-08-01-early.md", {"title": "Early", "tags": ["even"]}
        ),
        lambda: (site.root / "items" / "sport" / "2020-09-09-match.md").unlink(),
    ]
    for number, change in enumerate(changes):
        change()
        assert build(runner).exit_code == 0
        clean = runner.invoke(main, ["build", f"clean-{number}"], catch_exceptions=False)
        assert clean.exit_code == 0, clean.output
        assert tree(site.root / "public") == tree(site.root / f"clean-{number}"), number


def test_an_edit_rewrites_only_the_files_that_show_the_item(site: Site, runner: CliRunner) -> None:
    build(runner)
    out = site.root / "public"
    age(out)
    site.write_item(
        "news", "2020-09-04-story-4.md", {"title": "Story 4, edited", "tags": ["even"]}
    )
    assert build(runner).exit_code == 0
    rewritten = {name for name, mtime in files(out).items() if mtime != OLD}
    assert "items/news/story-4.html" in rewritten
    assert "feeds/all/page/2.atom" in rewritten  # Story 4 is on the second page of three
    assert "feeds/sport.atom" not in rewritten and "items/news/story-8.html" not in rewritten
    assert "feeds/all.atom" not in rewritten, "the first page shows stories 9 to 7"
    assert len(rewritten) < len(files(out)) / 2
    for name in rewritten - {MANIFEST}:
        if not name.endswith(".gz"):
            assert name + ".gz" in rewritten, name


def test_what_is_gone_is_removed_and_nothing_else(site: Site, runner: CliRunner) -> None:
    build(runner)
    out = site.root / "public"
    (out / "robots.txt").write_text("User-agent: *\n")  # the operator's own file
    (site.items / "news" / "2020-09-08-story-8.md").unlink()
    for path in (site.items / "sport").iterdir():
        path.unlink()
    (site.items / "sport").rmdir()
    result = build(runner)
    assert result.exit_code == 0, result.output
    left = files(out)
    assert not [name for name in left if "sport" in name or "story-8" in name], sorted(left)
    assert not (out / "items" / "sport").exists(), "its emptied folder goes too"
    assert "robots.txt" in left
    assert "items/news/story-7.html" in left


def test_errors_fail_the_build_but_the_good_items_are_written(
    site: Site, runner: CliRunner
) -> None:
    site.write("news/2020-09-10-broken.md", "---\ntitle: [unclosed\n---\nBody.\n")
    result = build(runner)
    assert result.exit_code == 1
    assert "items/news/2020-09-10-broken.md:2: error:" in result.output
    assert "1 error, 0 warnings" in result.output
    assert (site.root / "public" / "items" / "news" / "story-1.html").is_file()


def test_warnings_fail_a_strict_build_only(site: Site, runner: CliRunner) -> None:
    site.write_item("news", "2020-09-10-odd.md", {"title": "Odd", "colour": "blue"})
    relaxed = build(runner)
    assert relaxed.exit_code == 0 and "0 errors, 1 warning" in relaxed.output
    assert "unknown field 'colour'" in relaxed.output
    assert build(runner, "--strict").exit_code == 1


def test_a_warm_build_into_an_empty_folder_links_what_the_store_holds(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert build(runner).exit_code == 0
    again = runner.invoke(main, ["build", "second"], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert rendered(again) == 2  # the OPML and the tags' index; the rest from the store
    first, second = site.root / "public", site.root / "second"
    assert tree(first) == tree(second)
    page = "items/news/story-4.html"
    assert os.path.samefile(first / page, second / page)  # linked: on disk once
    assert (second / page).stat().st_nlink == 3  # the store's, and each folder's

    # Where a link cannot be made (another file system), the stored bytes are copied.
    def no_link(source: object, target: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    third = runner.invoke(main, ["build", "third"], catch_exceptions=False)
    assert third.exit_code == 0 and rendered(third) == 2
    assert tree(site.root / "third") == tree(first)
    assert not os.path.samefile(first / page, site.root / "third" / page)


def test_the_store_keeps_only_what_a_build_or_a_folder_still_uses(
    site: Site, runner: CliRunner
) -> None:
    store = site.root / ".feedsvc-cache" / STORE
    build(runner)
    shutil.rmtree(site.root / "public")  # no folder links to the first build's files
    build(runner)
    before = {p.name for p in store.rglob("*") if p.is_file()}
    site.write_item(
        "news", "2020-09-04-story-4.md", {"title": "Story 4, edited", "tags": ["even"]}
    )
    build(runner)
    after = {p.name for p in store.rglob("*") if p.is_file()}
    gone, new = before - after, after - before
    assert gone and new and len(gone) == len(new), "one version of each changed document"
    assert len(after) == len(before)


def test_the_roundups_come_first_then_every_document_newest_first(
    site: Site, runner: CliRunner
) -> None:
    """The weekly feed's documents and the weeks' pages (the largest: a week's bodies
    in each) lead the work, so that one process renders them all; the other documents,
    feeds, lists and item pages alike, follow newest first, so that those showing the
    same items come together (each body is read once while it is held); a feed page's
    formats come together."""
    app = site.app(feed_size=3, page_size=2)
    store = app.extensions["feedsvc"]
    snapshot, settings = store.snapshot(), store.settings

    def newest(entry: Item | Week) -> datetime:
        return (
            max(i.published for i in entry.items) if isinstance(entry, Week) else entry.published
        )

    lists: list[tuple[str, Sequence[Item] | Sequence[Week]]] = [
        ("/", snapshot.items),
        ("/weekly/", snapshot.weeks),
        *((c.path, c.items) for c in snapshot.categories),
        *((t.path, t.items) for t in snapshot.tags.values()),
    ]
    shown_first = {
        list_page_path(first, start // 2 + 1): entries[start]
        for first, entries in lists
        for start in range(0, len(entries), 2)
    }
    weeks = {week.path: week for week in (*snapshot.weeks, snapshot.current_week) if week}
    documents = list(static.documents_of(snapshot, settings))
    assert [url for url, _ in documents[:2]] == ["/feeds.opml", "/tags/"]
    order = []
    for url, source in documents[2:]:
        if isinstance(source, FeedKey):
            feed = snapshot.feeds[source.name]
            start = (source.page - 1) * feed.page_size
            if source.archive:
                start = static.archives.archives_of(feed, snapshot, settings).spans[
                    source.archive
                ][0]
            order.append((feed.kind == "weekly", newest(feed.entries[start])))
        elif isinstance(source, tuple):
            item = snapshot.page(*source)
            assert item is not None
            order.append((False, newest(item)))
        elif url in weeks:
            order.append((True, newest(weeks[url])))
        else:
            order.append((False, newest(shown_first[url])))
    assert order == sorted(order, key=lambda o: (not o[0], -o[1].timestamp()))
    assert {kind for kind, _ in order} == {True, False}
    assert len(order) == len(set(shown_first) | set(weeks)) + sum(
        isinstance(s, (FeedKey, tuple)) for _, s in documents
    )
    keys = [key for _, key in documents if isinstance(key, FeedKey)]
    assert all(len({k.format for k in keys[i : i + 3]}) == 3 for i in range(0, len(keys), 3))


def test_a_cold_build_compresses_each_file_once(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every .gz the export writes is the gzip the server's document holds, made once:
    a page is not compressed again on its way into the folder."""
    compressed: list[int] = []
    compress = static.compress

    def counted(body: bytes) -> bytes:
        compressed.append(len(body))
        return compress(body)

    monkeypatch.setattr(static, "compress", counted)
    monkeypatch.setattr(static_documents, "compress", counted)
    assert build(runner).exit_code == 0
    gzipped = list((site.root / "public").rglob("*.gz"))
    assert len(compressed) == len(gzipped) > 50


def test_a_document_asked_for_once_is_not_held_but_what_its_formats_share_is(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In an export every document is written once: none is kept to answer again, while
    a page's entries with their bodies, which its formats share, are."""
    app = site.app(feed_size=3)
    store, documents = app.extensions["feedsvc"], app.extensions["feedsvc.documents"]
    snapshot = store.snapshot()
    views: Counter[int] = Counter()
    feed_view = static.render.feed_view

    def counting(feed: object, page: int, *rest: object) -> object:
        views[page] += 1
        return feed_view(feed, page, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(static.render, "feed_view", counting)
    atom = FeedKey("all", "atom", 2)
    for _ in range(2):
        documents.feed(snapshot, atom)
    assert documents.renders(snapshot)[atom] == 1  # a server answers again from memory
    documents.asked_once(static.EXPORT_MEMO_BYTES)
    for format in ("rss", "json", "rss"):
        documents.feed(snapshot, FeedKey("all", format, 3))
    assert documents.renders(snapshot)[FeedKey("all", "rss", 3)] == 2
    assert views == {2: 1, 3: 1}


def test_a_rebuild_sorts_out_what_is_unchanged_before_spreading_the_rest(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After one edit nearly every document is known unchanged by its signature: that
    is found in this process, and only the documents left to render go to the helper
    processes (none, here), which would otherwise start with all of its memory."""
    build(runner)
    spread: list[int] = []
    map_in_processes = static.parallel.map_in_processes

    def counting(function: Any, tasks: Any, *rest: Any, **named: Any) -> Any:
        if function is static._export_one:
            spread.append(len(tasks))
        return map_in_processes(function, tasks, *rest, **named)

    monkeypatch.setattr(static.parallel, "map_in_processes", counting)
    site.write_item(
        "news", "2020-09-04-story-4.md", {"title": "Story 4, edited", "tags": ["even"]}
    )
    result = build(runner)
    assert spread == [rendered(result)] and 0 < spread[0] < 30, (spread, result.output)
    assert "0 removed" in result.output
