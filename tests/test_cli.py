"""The `feedsvc` command: check, new, build."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from feedsvc import create_app
from feedsvc.cli import main
from feedsvc.drafts import slugify
from feedsvc.static import MANIFEST, export, file_for, urls
from tests.conftest import Site

LINE = re.compile(
    r"^(?P<path>[^:]+)(?::(?P<line>\d+))?: (?P<severity>error|warning): (?P<msg>.+)$"
)

#: One file per kind of bad input that a single file can carry, and what check says.
HAZARDS = {
    "news/2020-09-01-no-title.md": (b"---\ndate: 2020-09-01\n---\nBody.", "error", "title"),
    "news/2020-09-02-list-title.md": (b"---\ntitle: [a, b]\n---\nBody.", "error", "must be text"),
    "news/2020-09-03-ambiguous.md": (
        b"---\ntitle: A\ndate: 03/04/05\n---\nB",
        "error",
        "ambiguous",
    ),
    "news/2020-09-04-unreadable.md": (
        b"---\ntitle: A\ndate: soonish\n---\nB",
        "error",
        "not a date",
    ),
    "news/2020-09-05-latin1.md": (b"---\ntitle: Caf\xe9\n---\nBody.", "error", "UTF-8"),
    "news/2020-09-06-bom.md": (b"\xef\xbb\xbf---\ntitle: BOM\n---\nBody.", None, None),
    "news/2020-09-07-crlf.md": (b"---\r\ntitle: CRLF\r\n---\r\nBody.\r\n", None, None),
    "news/2020-09-08-control.md": (b"---\ntitle: Bell\x07\n---\nBody.", "warning", "XML"),
    "news/2020-09-09-empty.md": (b"", "error", "empty"),
    "news/2020-09-10-front-only.md": (b"---\ntitle: Only\n---\n", "warning", "body is empty"),
    "news/2020-09-11-body-only.md": (b"Just a body.", "error", "no front matter"),
    "news/2020-09-12-unclosed.md": (b"---\ntitle: Open\nBody.", "error", "never closed"),
    "news/2020-09-13-list.md": (b"---\n- a\n- b\n---\nBody.", "error", "field: value"),
    "news/2020-09-14-bomb.md": (
        b"---\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a]\n"
        b"c: [*b, *b, *b, *b, *b, *b, *b]\ntitle: Bomb\n---\nBody.",
        "error",
        "aliases",
    ),
    "news/2020-09-15-object.md": (
        b"---\ntitle: !!python/object/apply:os.system [echo hacked]\n---\nB",
        "error",
        "tag",
    ),
    "news/2020-09-16-huge.md": (b"---\ntitle: Big\n---\n" + b"x" * 1_100_000, "error", "limit"),
    "news/2020-09-17-long-title.md": (
        b"---\ntitle: " + b"word " * 200 + b"\n---\nB",
        "warning",
        "shortened",
    ),
    "news/2020-09-18-binary.md": (b"\x00\x01\x02\x03binary", "error", "binary"),
    "news/2020-09-19-draft.md": (b"---\ntitle: Draft\ndraft: true\n---\nBody.", None, None),
    "news/2030-01-01-future.md": (b"---\ntitle: Later\n---\nBody.", None, None),
    "Bad_Folder/2020-09-20-x.md": (b"---\ntitle: X\n---\nBody.", "error", "category"),
    "news/2020-09-21-Upper.md": (b"---\ntitle: X\n---\nBody.", "error", "slug"),
    "news/notes.md": (b"---\ntitle: X\n---\nBody.", "error", "file name"),
}


@pytest.fixture
def runner(site: Site, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in a folder with a feedsvc.toml pointing at the test site's items."""
    monkeypatch.chdir(site.root)
    (site.root / "feedsvc.toml").write_text(
        'title = "CLI"\nbase_url = "https://cli.example.org"\ntimezone = "Asia/Shanghai"\n'
    )
    site.items.mkdir(parents=True, exist_ok=True)
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def write_hazards(site: Site) -> None:
    for path, (data, _, _) in HAZARDS.items():
        site.write(path, data)
    site.write_item("news", "2020-09-22-good.md", {"title": "Good"})
    (site.items / "outside.md").write_text("---\ntitle: Stray\n---\n")
    (site.root / "secret.md").write_text("---\ntitle: Secret\n---\nDo not publish.")
    (site.items / "news" / "2020-09-23-link.md").symlink_to(site.root / "secret.md")


def test_check_reports_one_message_per_hazard(site: Site, runner: CliRunner) -> None:
    write_hazards(site)
    result = run(runner, "check")
    assert result.exit_code == 1
    *lines, summary = result.output.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    by_path: dict[str, list[re.Match[str]]] = {}
    for match in parsed:
        assert match is not None
        by_path.setdefault(match["path"], []).append(match)
    for path, (_, severity, words) in HAZARDS.items():
        shown = f"items/{path}"
        if severity is None:
            assert shown not in by_path, f"{path} should be clean: {by_path.get(shown)}"
            continue
        assert [m["severity"] for m in by_path[shown]][:1] == [severity], shown
        assert words in by_path[shown][0]["msg"], (shown, by_path[shown][0]["msg"])
    assert "refused" in by_path["items/news/2020-09-23-link.md"][0]["msg"]
    assert "category folder" in by_path["items/outside.md"][0]["msg"]
    errors = sum(1 for m in parsed if m and m["severity"] == "error")
    assert re.fullmatch(rf"\d+ files, \d+ items published, {errors} errors, \d+ warnings", summary)
    assert not (site.root / "hacked").exists()


@pytest.mark.parametrize("command", ["check", "build"])
def test_the_command_in_its_own_process_says_all_it_has_to_say(
    site: Site, runner: CliRunner, command: str
) -> None:
    """The command ends its process at once (`cli._end`), with its exit status, and
    every line of a long report reaches a pipe (block-buffered, unlike a terminal)."""
    write_hazards(site)
    for day in range(1, 29):
        for n in range(12):  # a line each, well over a pipe's buffer
            text = f"---\ntitle: Story {n}\n---\n<script>x</script>Body."
            site.write(f"news/2021-02-{day:02d}-script-{n}.md", text.encode())
    args = {"check": [], "build": ["public"]}[command]
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    ran = subprocess.run(
        [sys.executable, "-m", "feedsvc", command, *args],
        cwd=site.root,
        env=buffered,
        capture_output=True,
        text=True,
    )
    inside = runner.invoke(main, [command, *args])
    assert (ran.returncode, inside.exit_code) == (1, 1), ran.stderr

    def report(output: str) -> list[str]:
        """The problems and their count, as `check` and `build` print them."""
        return [line for line in output.splitlines() if LINE.match(line) or "published" in line]

    assert report(ran.stdout) == report(inside.output)
    assert ran.stdout.count("removed from the body") == 28 * 12
    last = {"check": " items published, ", "build": "took "}[command]
    assert last in ran.stdout.splitlines()[-1]


def test_check_passes_a_clean_tree_and_prints_lines_with_line_numbers(
    site: Site, runner: CliRunner
) -> None:
    site.write_item("news", "2020-09-22-good.md", {"title": "Good"})
    assert run(runner, "check").exit_code == 0
    site.write("news/2020-09-23-bad.md", "---\ntitle: Fine\ndate: 30/09/20\n---\nBody.")
    result = run(runner, "check")
    assert result.exit_code == 1
    expected = "items/news/2020-09-23-bad.md:3: error: 'date': \"30/09/20\" is ambiguous; "
    assert result.output.splitlines()[0] == expected + "write 2020-09-30"


def test_check_json(site: Site, runner: CliRunner) -> None:
    write_hazards(site)
    result = run(runner, "check", "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["errors"] == sum(1 for p in report["problems"] if p["severity"] == "error")
    assert report["errors"] > 10
    first = report["problems"][0]
    assert set(first) == {"path", "line", "severity", "message"}


def test_check_takes_another_items_folder(site: Site, runner: CliRunner, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    (other / "news").mkdir(parents=True)
    (other / "news" / "2020-01-01-x.md").write_text("no front matter")
    result = run(runner, "check", str(other))
    assert result.exit_code == 1
    assert "elsewhere/news/2020-01-01-x.md:1: error: no front matter" in result.output


def test_check_the_server_and_the_command_report_the_same_problems(
    site: Site, runner: CliRunner
) -> None:
    write_hazards(site)
    report = json.loads(run(runner, "check", "--format", "json").output)
    snapshot = site.app(base_url="https://cli.example.org").extensions["feedsvc"].snapshot()
    assert [(f"items/{p.path}", p.line, p.message) for p in snapshot.problems] == [
        (p["path"], p["line"], p["message"]) for p in report["problems"]
    ]


def test_a_bad_configuration_stops_with_one_message(site: Site, runner: CliRunner) -> None:
    (site.root / "feedsvc.toml").write_text("feed_size = 0\n")
    result = runner.invoke(main, ["check"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: configuration: feed_size must be")


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Dunhill Opens Flagship Store", "dunhill-opens-flagship-store"),
        ("Café déjà vu", "cafe-deja-vu"),
        ("Ünïcödé — and  spaces!", "unicode-and-spaces"),
        ("阿里巴巴", ""),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_new_writes_a_valid_draft_and_refuses_to_overwrite(site: Site, runner: CliRunner) -> None:
    (site.items / "retail").mkdir()
    result = run(runner, "new", "retail", "Café déjà vu: a story")
    assert result.exit_code == 0
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    path = Path(result.stdout.strip())
    assert path == Path(f"items/retail/{today}-cafe-deja-vu-a-story.md")
    text = (site.root / path).read_text(encoding="utf-8")
    assert "title: 'Café déjà vu: a story'" in text
    assert "\ndraft: true " in text
    assert result.stderr == (f"a draft: no feed shows it until `feedsvc publish {path}`\n")
    check = run(runner, "check")
    assert check.exit_code == 0, check.output
    assert check.output.endswith("1 files, 0 items published, 0 errors, 0 warnings\n")
    again = runner.invoke(main, ["new", "retail", "Café déjà vu: a story"])
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert (site.root / path).read_text(encoding="utf-8") == text


@pytest.mark.parametrize("category", ["Retail", "all", "weekly", "_drafts", "a/b"])
def test_new_refuses_bad_categories(runner: CliRunner, category: str) -> None:
    result = runner.invoke(main, ["new", category, "Title"])
    assert result.exit_code == 1
    assert "cannot be a category" in result.output


def test_build_writes_what_the_server_sends(site: Site, runner: CliRunner, tmp_path: Path) -> None:
    for day in range(1, 6):
        site.write_item("news", f"2020-09-{day:02d}-story.md", {"title": f"Story {day}"})
    site.write_item("tech", "2020-09-07-chip.md", {"title": "Chip"})
    (site.root / "feedsvc.toml").write_text(
        'title = "CLI"\nbase_url = "https://cli.example.org"\nfeed_size = 2\npage_size = 2\n'
    )
    out = tmp_path / "public"
    result = run(runner, "build", str(out))
    assert result.exit_code == 0, result.output
    app = create_app(clock=site.clock, watch=False)
    client = app.test_client()
    store = app.extensions["feedsvc"]
    every = list(urls(store.snapshot(), store.settings))
    assert "/feeds/news/page/3.atom" in every
    assert "/items/news/story.html" in every
    assert "/weekly/2020-W36.html" in every
    assert "/categories/news/page/2.html" in every
    for url in every:
        target = out / file_for(url)
        assert target.read_bytes() == client.get(url).data, url
        zipped = client.get(url, headers={"Accept-Encoding": "gzip"}).data
        assert target.with_name(target.name + ".gz").read_bytes() == zipped
        assert gzip.decompress(zipped) == target.read_bytes()
    # Beside the documents: the 404 page as an unknown address gets it, the assets.
    missing = client.get("/no/such/page.html")
    assert missing.status_code == 404
    assert (out / "404.html").read_bytes() == missing.data
    for url in ("/feed.css", "/favicon.ico", "/icon.png"):
        assert (out / file_for(url)).read_bytes() == client.get(url).data, url
    for text in ("404.html", "feed.css"):
        assert gzip.decompress((out / f"{text}.gz").read_bytes()) == (out / text).read_bytes()
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    exported = {file_for(u) for u in every} | {file_for(u) + ".gz" for u in every}
    extras = {"404.html", "404.html.gz", "feed.css", "feed.css.gz", "favicon.ico", "icon.png"}
    assert files == exported | extras | {"_headers", MANIFEST}


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("/", "index.html"),
        ("/weekly/", "weekly/index.html"),
        ("/weekly/2020-W40.html", "weekly/2020-W40.html"),
        ("/weekly/page/2.html", "weekly/page/2.html"),
        ("/items/news/story.html", "items/news/story.html"),
        ("/categories/news/page/2.html", "categories/news/page/2.html"),
        ("/tags/", "tags/index.html"),
        ("/tags/caf%C3%A9.html", "tags/café.html"),
        ("/page/2.html", "page/2.html"),
        ("/feeds/all.atom", "feeds/all.atom"),
        ("/feeds/all/page/2.atom", "feeds/all/page/2.atom"),
        ("/feeds/tags/caf%C3%A9/2020-W40.json", "feeds/tags/café/2020-W40.json"),
        ("/feeds.opml", "feeds.opml"),
    ],
)
def test_file_names_of_the_static_export(url: str, file: str) -> None:
    assert file_for(url) == file


def test_an_empty_site_exports_its_pages(site: Site) -> None:
    written = export(site.app(), site.root / "out")
    assert written.changed > 0 and written.kept == written.removed == 0


def test_serve_runs_gunicorn_with_defaults_an_operator_can_override(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr("os.execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--timeout 60 --access-logfile -")
    result = run(runner, "serve", "--port", "8123", "--workers", "3")
    assert result.exit_code == 0
    [(_, argv, env)] = calls
    assert argv[1:] == ["-m", "gunicorn", "--bind", "127.0.0.1:8123", "--workers", "3",
                        "feedsvc:create_app(listening=('127.0.0.1', 8123))"]  # fmt: skip
    # feedsvc's settings (feedsvc.serving) come first; the operator's flags come last, so
    # they win (--timeout 60 over the default 300).
    assert env["GUNICORN_CMD_ARGS"] == (
        "--worker-class feedsvc.serving.HeadFirstWorker --threads 8 --timeout 300 --preload "
        "--no-control-socket --timeout 60 --access-logfile -"
    )


def test_serve_refuses_a_header_timeout_that_is_not_a_number_of_seconds(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.execve", lambda *_: pytest.fail("gunicorn should not start"))
    monkeypatch.setenv("FEEDSVC_HEADER_TIMEOUT", "soon")
    result = run(runner, "serve")
    assert result.exit_code == 1
    assert "FEEDSVC_HEADER_TIMEOUT='soon'" in result.output


def test_serve_starts_as_many_workers_as_gunicorn_conf_does() -> None:
    from feedsvc import serving
    from feedsvc.cli import serve

    [workers] = [option for option in serve.params if option.name == "workers"]
    assert workers.default == serving.WORKERS


def test_the_command_imports_the_app_only_when_a_command_needs_it() -> None:
    """`feedsvc serve` hands over to gunicorn, which imports the app itself: importing
    Flask, the store and their libraries before that would double every start's imports."""
    code = "import sys, feedsvc.cli; print(sorted(m for m in HEAVY if m in sys.modules))"
    heavy = "HEAVY = ('flask', 'feedgen', 'bleach', 'cmarkgfm', 'feedsvc.store', 'feedsvc.web');"
    result = subprocess.run(
        [sys.executable, "-c", heavy + code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
