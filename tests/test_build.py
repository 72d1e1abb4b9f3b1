"""`feedsvc build` into a folder it built before: only what changed is written, what is
gone is removed, and the problems are listed with an exit status that counts them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from feedsvc.cli import main
from feedsvc.static import MANIFEST
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
    signed = {line.split("\t")[1] for line in manifest if not line.startswith("\t")}
    assert "items/news/story-4.html" in signed and "feeds/all/page/2.atom" in signed
    # Lists and the OPML have no signature: they are rendered every build.
    unsigned = [line[1:] for line in manifest if line.startswith("\t")]
    lists = sum(1 for name in unsigned if name.endswith((".html", ".opml")) and name != "404.html")
    assert rendered(first) > rendered(build(runner)) == lists
    site.write_item(
        "news", "2020-09-04-story-4.md", {"title": "Story 4, edited", "tags": ["even"]}
    )
    # The lists, its page, and in three formats: the page of everything, of news and of
    # "even" that show it, those three feeds' archives of its week, and the roundups' page.
    assert rendered(build(runner)) == lists + 1 + 3 * 7


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
