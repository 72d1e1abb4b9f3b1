"""Warnings `feedsvc check`, the server's log and /healthz give alike: what the sanitiser
removed from a body or a title, a category folder the configuration does not list, and
problems with names in the folder (links out, nested folders), each named."""

from __future__ import annotations

import json
import logging

import pytest
from click.testing import CliRunner, Result

from feedsvc import bodies, sanitize
from feedsvc.cli import main
from feedsvc.store import Store
from tests.conftest import Site

SCRIPTED = 'Hello.\n\n<script>steal()</script>\n\n<p onclick="x()">Click</p>\n'
LINKED = 'A [link](javascript:alert(1)) and <a href="https://ok.example/">one</a>.\n'


@pytest.fixture
def runner(site: Site, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(site.root)
    (site.root / "feedsvc.toml").write_text('base_url = "https://news.example.org"\n')
    site.items.mkdir(parents=True, exist_ok=True)
    return CliRunner()


def check(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, ["check", *args], catch_exceptions=False)


def write_dangerous(site: Site) -> None:
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, SCRIPTED)
    site.write_item("news", "2020-09-02-linked.md", {"title": "Linked"}, LINKED)
    site.write_item("news", "2020-09-03-clean.md", {"title": "Clean"}, "Nothing to see.")
    site.write_item("news", "2020-09-04-title.md", "title: A <b>bold</b> move", "Body.")
    site.write_item("news", "2020-09-05-draft.md", {"title": "D", "draft": True}, SCRIPTED)


SCRIPTED_WARNING = "removed from the body: <script> (with its content); the event handler onclick"
LINKED_WARNING = "removed from the body: the URL javascript:alert(1) (not http, https or mailto)"


def test_check_names_what_the_sanitiser_removed_one_warning_per_file(
    site: Site, runner: CliRunner
) -> None:
    write_dangerous(site)
    result = check(runner)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"items/news/2020-09-01-scripted.md: warning: {SCRIPTED_WARNING}",
        f"items/news/2020-09-02-linked.md: warning: {LINKED_WARNING}",
        "items/news/2020-09-04-title.md:2: warning: removed markup from 'title' (titles are "
        "plain text): <b>",
        # A draft is checked too: better told before it is published.
        f"items/news/2020-09-05-draft.md: warning: {SCRIPTED_WARNING}",
        "5 files, 4 items published, 0 errors, 4 warnings",
    ]
    report = json.loads(check(runner, "--format", "json").output)
    assert report["warnings"] == 4
    assert {p["message"] for p in report["problems"]} >= {SCRIPTED_WARNING, LINKED_WARNING}


def test_the_server_reports_them_in_its_log_and_healthz(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    write_dangerous(site)
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        client = site.client()  # start-up renders the first pages' bodies
    log = caplog.text
    assert f"news/2020-09-01-scripted.md: warning: {SCRIPTED_WARNING}" in log
    assert f"news/2020-09-02-linked.md: warning: {LINKED_WARNING}" in log
    assert "news/2020-09-04-title.md:2: warning: removed markup from 'title'" in log
    assert "draft" not in log  # a draft's body is not rendered by a server
    health = json.loads(client.get("/healthz").data)
    assert health["warnings"] == 3


def count_sanitising(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The bases of every body sanitised from now on (in this process)."""
    calls: list[str] = []
    clean_html = sanitize.clean_html

    def counted(markup: str, base: str) -> str:
        calls.append(base)
        return clean_html(markup, base)

    monkeypatch.setattr(sanitize, "clean_html", counted)
    return calls


@pytest.mark.parametrize("batch", [bodies.RENDER_BATCH, 2], ids=["one batch", "batches of 2"])
def test_a_body_is_sanitised_once_per_version_and_its_warning_kept_with_it(
    site: Site, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(bodies, "RENDER_BATCH", batch)
    write_dangerous(site)
    settings = site.settings(cache_dir=site.root / "cache")
    calls = count_sanitising(monkeypatch)
    first = Store(settings)
    first.reload()
    first.render_bodies()
    assert sorted(calls) == sorted(
        f"https://news.example.org/items/news/{name}.html"
        for name in ("scripted", "linked", "clean", "title", "draft")
    )
    first.render_bodies()  # from memory
    assert len(calls) == 5
    warnings = {p.path: p.message for p in first.problems(first.snapshot())}

    # A restart (or `check` after a server) takes bodies and warnings from the cache.
    again = Store(settings)
    again.reload()
    again.render_bodies()
    assert len(calls) == 5
    assert {p.path: p.message for p in again.problems(again.snapshot())} == warnings
    assert warnings["news/2020-09-01-scripted.md"] == SCRIPTED_WARNING

    # A new version is sanitised again, and its warning replaces the old one.
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, "Harmless.")
    again.reload()
    again.render_bodies()
    assert len(calls) == 6
    assert "news/2020-09-01-scripted.md" not in {p.path for p in again.problems(again.snapshot())}


def test_files_alike_but_for_their_date_each_have_their_page_body_and_warning(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of one title and body on other days: the later ones' pages are named by
    their dates, so each body is its own (its URLs resolve against its page), rendered
    once for the check and never again for the feeds, and each file is warned about."""
    for day in range(1, 4):
        site.write_item("news", f"2020-09-0{day}-same.md", {"title": "Same"}, SCRIPTED)
    calls = count_sanitising(monkeypatch)
    store = Store(site.settings(cache_dir=site.root / "cache"))
    store.reload()
    store.render_bodies()
    pages = ["same", "2020-09-02-same", "2020-09-03-same"]
    assert sorted(calls) == sorted(f"https://news.example.org/items/news/{p}.html" for p in pages)
    warned = {p.path: p.message for p in store.problems(store.snapshot())}
    assert warned == {f"news/2020-09-0{day}-same.md": SCRIPTED_WARNING for day in range(1, 4)}
    for item in store.snapshot().items:
        assert store.bodies.content(item).html.startswith("<p>Hello.</p>")
    assert len(calls) == 3


def test_bodies_held_in_memory_are_at_most_as_many_as_asked(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a cache, a body let go of is sanitised again when it is shown again; the
    ones still held are not."""
    for day in range(1, 4):
        site.write_item("news", f"2020-09-0{day}-s{day}.md", {"title": f"S{day}"}, SCRIPTED)
    store = Store(site.settings())
    store.reload()
    items = sorted(store.snapshot().items, key=lambda item: item.source.path)
    calls = count_sanitising(monkeypatch)
    store.bodies.hold_at_most(2)
    for item in items:
        store.bodies.content(item)
    assert len(calls) == 3
    store.bodies.content(items[2])
    store.bodies.content(items[1])
    assert len(calls) == 3  # the two last held
    store.bodies.content(items[0])
    assert len(calls) == 4
    store.bodies.hold_at_most(1)  # lets go of the oldest at once: items[1]
    store.bodies.content(items[0])
    assert len(calls) == 4
    store.bodies.content(items[1])
    assert len(calls) == 5


def test_rendering_every_body_logs_one_line_for_all_its_warnings(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    for day in range(1, 8):
        site.write_item("news", f"2020-09-0{day}-s{day}.md", {"title": f"S{day}"}, SCRIPTED)
    store = Store(site.settings())
    store.reload()
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        store.render_bodies()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert lines[0].startswith("rendering 7 bodies: 7 warnings (news/2020-09-01-s1.md, ")
    assert "and 4 more" in lines[0]
    assert len(store.problems(store.snapshot())) == 7  # check still lists every one


def test_a_note_many_files_share_is_held_once(site: Site) -> None:
    """A corpus repeats a few notes in thousands of files: each is one string in memory,
    whether the bodies were rendered now or their notes read back from the cache."""
    for day in range(1, 5):
        site.write_item("news", f"2020-09-0{day}-s{day}.md", {"title": f"S{day}"}, SCRIPTED)
    settings = site.settings(cache_dir=site.root / "cache")
    for _ in ("rendered", "from the cache"):
        store = Store(settings)
        store.reload()
        store.render_bodies()
        messages = [p.message for p in store.problems(store.snapshot())]
        assert messages == [SCRIPTED_WARNING] * 4
        assert len({id(message) for message in messages}) == 1


def test_a_warning_stays_while_the_bytes_do(site: Site) -> None:
    """A file saved unchanged (or touched) needs no new render, and a server renders a
    body again only when a page shows it: its warning stays all the same. A new version's
    body decides afresh."""
    import os

    path = site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, SCRIPTED)
    store = Store(site.settings())
    store.reload()
    store.render_bodies()

    def warnings() -> list[str]:
        return [p.message for p in store.problems(store.snapshot())]

    assert warnings() == [SCRIPTED_WARNING]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    store.reload()
    assert store.snapshot().items[0].source.mtime_ns == path.stat().st_mtime_ns
    assert warnings() == [SCRIPTED_WARNING]
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, "Harmless.")
    store.reload()
    assert warnings() == []


def test_a_file_changed_back_warns_again_though_its_body_is_remembered(site: Site) -> None:
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, SCRIPTED)
    app = site.app()
    store: Store = app.extensions["feedsvc"]
    client = app.test_client()

    def warnings_after_a_look() -> list[str]:
        store.reload()
        assert client.get("/items/news/scripted.html").status_code == 200
        return [p.message for p in store.problems(store.snapshot())]

    assert warnings_after_a_look() == [SCRIPTED_WARNING]
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, "Harmless.")
    assert warnings_after_a_look() == []
    site.write_item("news", "2020-09-01-scripted.md", {"title": "Scripted"}, SCRIPTED)
    assert warnings_after_a_look() == [SCRIPTED_WARNING]


# --- category folders the configuration does not list -------------------------------------

CONFIGURED = '[categories]\nretail = "Retail"\ntech = "Technology"\n'


def test_check_warns_of_a_category_folder_the_configuration_does_not_list(
    site: Site, runner: CliRunner
) -> None:
    toml = site.root / "feedsvc.toml"
    toml.write_text(toml.read_text() + CONFIGURED)
    site.write_item("retail", "2020-09-01-a.md", {"title": "A"})
    site.write_item("retial", "2020-09-02-b.md", {"title": "B"})
    site.write_item("weather", "2020-09-03-c.md", {"title": "C"})
    (site.items / "empty-typo").mkdir()
    result = check(runner)
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "items/empty-typo: warning: category folder not in the configured categories: its "
        "items are published as 'Empty typo'; add it to [categories] in feedsvc.toml",
        "items/retial: warning: category folder not in the configured categories: its items "
        "are published as 'Retial'; did you mean 'retail'? Else add it to [categories] in "
        "feedsvc.toml",
        "items/weather: warning: category folder not in the configured categories: its items "
        "are published as 'Weather'; add it to [categories] in feedsvc.toml",
        "3 files, 3 items published, 0 errors, 3 warnings",
    ]


def test_without_configured_categories_every_folder_is_one(site: Site, runner: CliRunner) -> None:
    site.write_item("retial", "2020-09-02-b.md", {"title": "B"})
    assert check(runner).output.splitlines() == [
        "1 files, 1 items published, 0 errors, 0 warnings"
    ]


def test_the_server_logs_an_unconfigured_category_folder_once(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    site.write_item("retail", "2020-09-01-a.md", {"title": "A"})
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        app = site.app(categories=(("retail", "Retail"),))
        store: Store = app.extensions["feedsvc"]
        site.write_item("retial", "2020-09-02-b.md", {"title": "B"})
        store.reload()
        store.reload()  # nothing new: nothing logged again
    lines = [r.getMessage() for r in caplog.records if "retial" in r.getMessage()]
    assert lines == [
        "retial: warning: category folder not in the configured categories: its items are "
        "published as 'Retial'; did you mean 'retail'? Else add it to [categories] in "
        "feedsvc.toml"
    ]
    health = json.loads(app.test_client().get("/healthz").data)
    assert health["warnings"] == 1


# --- problems with names, in the log -------------------------------------------------------


def test_each_problem_with_a_name_is_named_in_the_log(
    site: Site, caplog: pytest.LogCaptureFixture, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Links out of the folder and nested folders: one line each, as a file's problem
    is written, at start-up and when they appear later (a file event's look)."""
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.md").write_text("---\ntitle: Secret\n---\nDo not publish.")
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    for n in range(5):
        (site.items / "news" / f"2020-09-1{n}-link.md").symlink_to(outside / "secret.md")
        (site.items / "news" / f"nested{n}").mkdir()
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        app = site.app()
    messages = [r.getMessage() for r in caplog.records]
    for n in range(5):
        assert (
            f"news/2020-09-1{n}-link.md: error: is a link to outside the items folder; refused"
            in messages
        )
        assert (
            f"news/nested{n}: warning: folders inside a category are not read; move its "
            "files up" in messages
        )
    store: Store = app.extensions["feedsvc"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        (site.items / "news" / "2020-09-20-later.md").symlink_to(outside)
        store.reload_settled(0.0, paths={"news/2020-09-20-later.md"})
    assert [r.getMessage() for r in caplog.records] == [
        "news/2020-09-20-later.md: error: is a link to outside the items folder; refused"
    ]
    health = json.loads(app.test_client().get("/healthz").data)
    assert (health["errors"], health["warnings"]) == (6, 5)
