"""Drafts: `feedsvc new` starts one, which nothing publishes; `feedsvc publish` takes it
live, changing its draft flag and its date and no other byte."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from feedsvc import drafts, itemfile, sanitize
from feedsvc.cli import main
from feedsvc.config import Settings
from feedsvc.model import is_valid_name
from tests.conftest import Site
from tests.server import Server, everywhere, running_server

ZONE = ZoneInfo("Asia/Shanghai")
SETTINGS = Settings(base_url="https://news.example.org", timezone="Asia/Shanghai")
NOW = datetime(2026, 11, 25, 14, 3, 27, tzinfo=ZONE)
PUBLISHED_AT = "2026-11-25 14:03"
PATH = "retail/2026-11-20-dunhill.md"
CONFIG = 'title = "Drafts"\nbase_url = "https://news.example.org"\ntimezone = "Asia/Shanghai"\n'


@pytest.fixture
def runner(site: Site, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in a folder whose feedsvc.toml configures retail and tech."""
    monkeypatch.chdir(site.root)
    (site.root / "feedsvc.toml").write_text(
        CONFIG + '[categories]\nretail = "Retail"\ntech = "Technology"\n'
    )
    (site.items / "weather").mkdir(parents=True)  # a category by its folder alone
    return CliRunner()


def run(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, list(args), catch_exceptions=False)


def files(site: Site) -> set[str]:
    return {p.relative_to(site.items).as_posix() for p in site.items.rglob("*") if p.is_file()}


# --- feedsvc new ----------------------------------------------------------------------------


def test_new_writes_a_draft_with_the_fields_an_item_may_have(
    site: Site, runner: CliRunner
) -> None:
    result = run(runner, "new", "retail", "Dunhill opens a flagship store")
    assert result.exit_code == 0, result.output
    path = site.root / result.stdout.strip()
    data = path.read_bytes()
    parsed = itemfile.parse_item(path.relative_to(site.items).as_posix(), data, SETTINGS)
    assert parsed.problems == ()
    assert parsed.item is not None and parsed.item.draft
    assert parsed.item.title == "Dunhill opens a flagship store"
    text = data.decode()
    for field in ("title:", "date:", "tags:", "# summary:", "# author:", "# link:", "# image:"):
        assert f"\n{field}" in text, field
    assert set(yaml.safe_load(text.split("---")[1])) <= itemfile.FIELDS


@pytest.mark.parametrize("title", ["", "   ", "\t\n"])
def test_new_refuses_an_empty_title(site: Site, runner: CliRunner, title: str) -> None:
    result = runner.invoke(main, ["new", "retail", title])
    assert result.exit_code == 1
    assert "the title is empty" in result.output
    assert files(site) == set()


def test_new_refuses_a_title_that_gives_no_slug_unless_one_is_given(
    site: Site, runner: CliRunner
) -> None:
    result = runner.invoke(main, ["new", "retail", "阿里巴巴 —"])
    assert result.exit_code == 1
    assert "gives no slug" in result.output and "--slug" in result.output
    assert files(site) == set()
    result = run(runner, "new", "retail", "阿里巴巴 —", "--slug", "alibaba")
    assert result.exit_code == 0
    assert result.stdout.strip().endswith("-alibaba.md")
    assert "title: 阿里巴巴 —\n" in (site.root / result.stdout.strip()).read_text()
    refused = runner.invoke(main, ["new", "retail", "X", "--slug", "Not A Slug"])
    assert refused.exit_code == 1 and "--slug 'Not A Slug'" in refused.output


@pytest.mark.parametrize(
    ("category", "suggestion"),
    [("retial", "retail"), ("tehc", "tech"), ("weathr", "weather"), ("sports", None)],
)
def test_new_refuses_an_unknown_category_naming_the_nearest(
    site: Site, runner: CliRunner, category: str, suggestion: str | None
) -> None:
    result = runner.invoke(main, ["new", category, "A story"])
    assert result.exit_code == 1
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    assert result.output == (
        f"Error: {category!r} is neither a configured category nor a folder in items{hint} "
        "To start a new category, add --new-category.\n"
    )
    assert files(site) == set()
    assert not (site.items / category).exists()


def test_new_starts_a_category_when_asked(site: Site, runner: CliRunner) -> None:
    result = run(runner, "new", "sports", "A match", "--new-category")
    assert result.exit_code == 0
    assert result.stdout.strip().startswith("items/sports/")
    assert "add sports to [categories] in feedsvc.toml" in result.stderr
    again = run(runner, "new", "sports", "Another match")  # a folder now
    assert again.exit_code == 0


def test_new_takes_a_configured_category_that_has_no_folder_yet(
    site: Site, runner: CliRunner
) -> None:
    assert run(runner, "new", "tech", "A chip").exit_code == 0


CATEGORIES = st.one_of(
    st.sampled_from(["retail", "tech", "weather", "all", "weekly", "_weekly", ".", "..",
                     "../x", "a/b", "retail/..", "Retail", "new-one", "-x", "x-", ""]),
    st.text(max_size=12),
)  # fmt: skip


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(category=CATEGORIES, title=st.text(max_size=40), new_category=st.booleans())
def test_new_writes_a_draft_inside_its_category_or_nothing(
    site: Site, runner: CliRunner, category: str, title: str, new_category: bool
) -> None:
    """Whatever the category and title: a clear refusal, or one draft in that category's
    folder that `check` reads as a draft with that title. Never a file elsewhere."""
    assume("\x00" not in category + title)  # no command line can carry a NUL
    before = files(site)
    folders = set(site.items.iterdir())
    args = ["new", *(["--new-category"] if new_category else []), "--", category, title]
    result = runner.invoke(main, args)
    after = files(site)
    if result.exit_code != 0:
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
        assert after == before
        return
    assert category in {"retail", "tech", "weather"} or (new_category and is_valid_name(category))
    [written] = after - before
    assert written.startswith(f"{category}/")
    parsed = itemfile.parse_item(written, (site.items / written).read_bytes(), SETTINGS)
    assert parsed.item is not None and parsed.item.draft
    assert parsed.item.title == sanitize.shorten(
        sanitize.plain_text(" ".join(title.split())), itemfile.MAX_TITLE_LENGTH
    )
    os.unlink(site.items / written)
    if site.items / category not in folders:  # each example starts from the same folder
        (site.items / category).rmdir()


# --- publish: the edit ------------------------------------------------------------------------


def draft(front: str, body: str = "The story.\n") -> bytes:
    return f"---\n{front}---\n{body}".encode()


def test_publish_removes_the_flag_and_sets_the_date_keeping_every_other_byte() -> None:
    data = draft(
        "title: 'Dunhill: a store'   # the headline\n"
        "date: 2026-11-20 09:00  # when it was started\n"
        "tags: [tmall,  luxury]\n"
        "# summary: later\n"
        "draft: true  # not yet\n"
        "author:   Desk\n"
    )
    assert drafts.publish(data, PATH, SETTINGS, NOW) == draft(
        "title: 'Dunhill: a store'   # the headline\n"
        f"date: {PUBLISHED_AT}  # when it was started\n"
        "tags: [tmall,  luxury]\n"
        "# summary: later\n"
        "author:   Desk\n"
    )


@pytest.mark.parametrize(
    ("front", "published"),
    [
        pytest.param("title: T\ndraft: yes\n", f"title: T\ndate: {PUBLISHED_AT}\n", id="no-date"),
        pytest.param(
            "title: T\r\ndraft: true\r\ndate: '2020-01-01'\r\n",
            f"title: T\r\ndate: {PUBLISHED_AT}\r\n",
            id="crlf-quoted-date",
        ),
        pytest.param(
            "date:\ndraft: True\ntitle: T\n", f"date: {PUBLISHED_AT}\ntitle: T\n", id="empty-date"
        ),
        pytest.param(
            "title: T\ndate: >\n  2020-01-01\ndraft:\n  true\nauthor: A\n",
            f"title: T\ndate: {PUBLISHED_AT}\nauthor: A\n",
            id="values-over-two-lines",
        ),
        pytest.param(
            '"draft": true\ntitle: T\ndraft: true\n',
            f"date: {PUBLISHED_AT}\ntitle: T\n",
            id="two-flags",
        ),
    ],
)  # fmt: skip
def test_publish_reads_the_front_matter_as_yaml_does(front: str, published: str) -> None:
    assert drafts.publish(draft(front), PATH, SETTINGS, NOW) == draft(published)


def test_publish_keeps_a_byte_order_mark_and_the_body_as_they_are() -> None:
    body = "Body\r\nwith *Markdown* and\ttabs\x0c.\r\n\r\n"
    data = b"\xef\xbb\xbf" + draft("title: T\ndraft: true\n", body)
    assert drafts.publish(data, PATH, SETTINGS, NOW) == b"\xef\xbb\xbf" + draft(
        f"title: T\ndate: {PUBLISHED_AT}\n", body
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(draft("title: T\n"), "it is not a draft", id="published"),
        pytest.param(draft("title: T\ndraft: false\n"), "it is not a draft", id="draft-false"),
        pytest.param(
            draft("title: T\ndate: soon\ndraft: true\n"),
            "it has errors: 'date': \"soon\" is not a date; write it like 2026-11-20 09:30 "
            "(line 3)",
            id="errors",
        ),
        pytest.param(
            draft("{title: T, draft: true}\n"),
            "its front matter is not one field per line",
            id="flow-style",
        ),
        pytest.param(
            draft("title: T\ndraft: true\n", drafts.PLACEHOLDER),
            "its body is still the placeholder",
            id="placeholder",
        ),
    ],
)
def test_publish_refuses_what_it_cannot_take_live(data: bytes, reason: str) -> None:
    with pytest.raises(drafts.Refused) as refused:
        drafts.publish(data, PATH, SETTINGS, NOW)
    assert str(refused.value).startswith(reason)


# Arbitrary front matter: fields in any order, with the forms YAML allows, comments and
# blank lines, either line ending, a BOM or not, and any body. Each line carries what
# publishing must make of it.
_WORDS = st.from_regex(r"[A-Za-z][A-Za-z0-9 ,.!?'-]{0,20}", fullmatch=True)
_COMMENT = st.one_of(st.just(""), _WORDS.map(lambda words: f"  # {words}"))
_TITLE = st.one_of(
    _WORDS.map(lambda words: f"title: {words}"),
    st.text(min_size=1, max_size=30).map(
        lambda text: yaml.safe_dump({"title": text}, allow_unicode=True, width=10**6).rstrip("\n")
    ),
)
_OTHER = st.sampled_from(
    ["tags: [tmall, luxury]", "tags: a, b", "author: 'Ann: Example'", "summary: >\n  folded",
     "link: https://example.org/a?b=c#d", "# a comment line", "", "updated: 2020-01-02",
     "image: /a.png", 'summary: "quoted \\"escape\\""', "id: tag:example.org,2020:x"]
)  # fmt: skip
_DRAFT = st.tuples(
    st.sampled_from(["draft: true", "draft: yes", "draft: True", '"draft": true', "draft:\n  on"]),
    _COMMENT,
)
_DATE = st.tuples(
    st.sampled_from(["date: 2026-11-20", "date: '2026-11-20 09:00'", "date:", "date: ~",
                     "date: 2026-11-20T09:00:00+08:00"]),
    _COMMENT,
)  # fmt: skip


@st.composite
def _drafts(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A draft's bytes, and the bytes publishing it at NOW must give."""
    lines: list[tuple[str, str]] = [("keep", draw(_TITLE))]
    lines += [("keep", other) for other in draw(st.lists(_OTHER, max_size=4))]
    dated = draw(st.booleans())
    if dated:
        value, comment = draw(_DATE)
        lines.append(("date", value + comment))
    value, comment = draw(_DRAFT)
    lines.append(("draft", value + comment))
    order = draw(st.permutations(lines))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    body = draw(st.text(max_size=60).filter(lambda b: b.strip() != drafts.PLACEHOLDER.strip()))
    before, after = [], []
    for kind, line in order:
        before.append(line)
        if kind == "keep":
            after.append(line)
        elif kind == "date":
            key, _, rest = line.partition(":")
            comment = rest[rest.index("  #") :] if "  #" in rest else ""
            after.append(f"{key}: {PUBLISHED_AT}{comment}")
        elif not dated:  # the flag's line becomes the date's
            after.append(f"date: {PUBLISHED_AT}")

    def file(front: list[str]) -> bytes:
        text = "".join(f"{line}\n" for line in front)
        return f"{bom}---\n{text}---\n".replace("\n", newline).encode() + body.encode()

    return file(before), file(after)


@hypothesis_settings(max_examples=300, deadline=None)
@given(_drafts())
def test_publishing_any_draft_changes_its_flag_and_date_and_nothing_else(
    case: tuple[bytes, bytes],
) -> None:
    data, expected = case
    parsed = itemfile.parse_item(PATH, data, SETTINGS)
    try:
        published = drafts.publish(data, PATH, SETTINGS, NOW)
    except drafts.Refused:
        # Only a draft the parser refuses (a title of markup alone, say) may be refused.
        assert parsed.item is None or any(p.severity == "error" for p in parsed.problems)
        return
    assert published == expected
    item = itemfile.parse_item(PATH, published, SETTINGS).item
    assert item is not None and not item.draft
    assert item.published == NOW.replace(second=0)
    assert parsed.item is not None and item.id == parsed.item.id


@given(st.binary(max_size=300))
def test_publish_refuses_any_bytes_it_cannot_edit_safely(data: bytes) -> None:
    try:
        published = drafts.publish(data, PATH, SETTINGS, NOW)
    except drafts.Refused:
        return
    item = itemfile.parse_item(PATH, published, SETTINGS).item
    assert item is not None and not item.draft


# --- publish: the command --------------------------------------------------------------------


def start_draft(runner: CliRunner, site: Site, title: str = "Dunhill opens") -> Path:
    result = run(runner, "new", "retail", title)
    assert result.exit_code == 0, result.output
    path = site.root / result.stdout.strip()
    path.write_text(path.read_text().replace(drafts.PLACEHOLDER, "The story.\n"))
    return path


def test_publish_takes_the_draft_live_in_place(site: Site, runner: CliRunner) -> None:
    path = start_draft(runner, site)
    before = path.read_bytes()
    draft_item = itemfile.parse_item(PATH, before, SETTINGS).item
    result = run(runner, "publish", str(path.relative_to(site.root)))
    assert result.exit_code == 0, result.output
    shown = path.relative_to(site.root)
    assert result.output.startswith(f"published {shown} at ")
    assert result.output.endswith(" (Asia/Shanghai)\n")
    when = result.output.removesuffix(" (Asia/Shanghai)\n").rsplit(" at ", 1)[1]
    after = path.read_bytes()
    expected = [
        b"date: " + when.encode() + line[len(b"date: 2026-11-20 09:00") :]
        if line.startswith(b"date:")
        else line
        for line in before.splitlines(keepends=True)
        if not line.startswith(b"draft:")
    ]
    assert after == b"".join(expected)
    assert files(site) == {path.relative_to(site.items).as_posix()}  # no temporary left
    item = itemfile.parse_item(PATH, after, SETTINGS).item
    assert item is not None and draft_item is not None
    assert not item.draft and item.id == draft_item.id  # the same name: the same id
    check = run(runner, "check")
    assert check.output.endswith("1 files, 1 items published, 0 errors, 1 warning\n")  # weather
    again = runner.invoke(main, ["publish", str(path)])
    assert again.exit_code == 1
    assert again.output == (
        f"Error: {path} cannot be published: it is not a draft (no 'draft: true' in its "
        "front matter)\n"
    )


def test_publish_refuses_a_file_outside_the_items_folder(
    site: Site, runner: CliRunner, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "2026-11-20-x.md"
    outside.write_bytes(draft("title: T\ndraft: true\n"))
    result = runner.invoke(main, ["publish", str(outside)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {outside} is not in the items folder (items); only an item there can be "
        "published\n"
    )
    assert outside.read_bytes() == draft("title: T\ndraft: true\n")
    linked = site.items / "retail" / "2026-11-20-x.md"
    linked.parent.mkdir()
    linked.symlink_to(outside)
    assert "is not in the items folder" in runner.invoke(main, ["publish", str(linked)]).output
    missing = runner.invoke(main, ["publish", "items/retail/2026-11-21-none.md"])
    assert missing.exit_code == 1
    assert "items/retail/2026-11-21-none.md: is gone" in missing.output


def test_publish_writes_beside_the_file_under_a_name_the_watcher_skips(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = start_draft(runner, site)
    replaced: list[tuple[Path, Path]] = []
    replace = os.replace

    def recorded(source: str | Path, target: str | Path) -> None:
        replaced.append((Path(source), Path(target)))
        assert Path(source).read_bytes() != path.read_bytes()  # whole, before it moves
        replace(source, target)

    monkeypatch.setattr(os, "replace", recorded)
    path.chmod(0o640)
    assert run(runner, "publish", str(path)).exit_code == 0
    [(source, target)] = replaced
    assert target == path.resolve()
    assert source.parent == target.parent and itemfile.ignored(source.name)
    assert path.stat().st_mode & 0o777 == 0o640


def test_publish_leaves_a_file_that_changed_meanwhile(
    site: Site, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = start_draft(runner, site)
    edit = drafts.publish

    def an_editor_saves_meanwhile(data: bytes, *args: object) -> bytes:
        published = edit(data, *args)  # type: ignore[arg-type]
        path.write_bytes(data + b"More.\n")
        return published

    monkeypatch.setattr(drafts, "publish", an_editor_saves_meanwhile)
    result = runner.invoke(main, ["publish", str(path)])
    assert result.exit_code == 1
    assert "changed while being published; try again" in result.output
    assert path.read_bytes().endswith(b"More.\n") and b"draft: true" in path.read_bytes()
    assert files(site) == {path.relative_to(site.items).as_posix()}


# --- with a running server ----------------------------------------------------------------------


@pytest.fixture
def served(site: Site, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Server, CliRunner]]:
    """`feedsvc serve` over the site's folder, and a runner for the commands beside it."""
    config = site.root / "feedsvc.toml"
    config.write_text(CONFIG)
    site.write_item("retail", "2020-09-01-marker.md", {"title": "Marker 1"})
    monkeypatch.chdir(site.root)
    monkeypatch.setenv("FEEDSVC_CONFIG", str(config))
    script = str(Path(sys.executable).with_name("feedsvc"))
    argv = [script, "serve", "--host", "127.0.0.1", "--port", "{port}", "--workers", "2"]
    with running_server(env={"FEEDSVC_CONFIG": str(config)}, argv=argv) as server:
        yield server, CliRunner()


def titles(server: Server) -> list[str]:
    status, _, body = server.request("/feeds/all.atom")
    assert status == 200
    return [entry.title for entry in feedparser.parse(body).entries]


def test_a_draft_is_published_by_a_running_server_only_once_published(
    site: Site, served: tuple[Server, CliRunner]
) -> None:
    server, runner = served
    path = start_draft(runner, site, "Dunhill opens")
    # A later file is shown by every worker: the draft was seen, and left out.
    site.write_item("retail", "2020-09-02-marker.md", {"title": "Marker 2"})
    everywhere(server, lambda s: "Marker 2" in titles(s))
    assert "Dunhill opens" not in titles(server)
    slug = path.name.removesuffix(".md").split("-", 3)[3]
    assert server.request(f"/items/retail/{slug}.html")[0] == 404
    assert run(runner, "publish", str(path)).exit_code == 0
    everywhere(server, lambda s: titles(s)[0] == "Dunhill opens")
    assert server.request(f"/items/retail/{slug}.html")[0] == 200


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda data, date: data, id="unchanged"),
        pytest.param(lambda data, date: data.replace(b"draft: true\n", b""), id="no-date"),
        pytest.param(
            lambda data, date: (
                data.replace(b"draft: true\n", f"date: {date}\n".encode()) + b"more"
            ),
            id="body-changed",
        ),
        pytest.param(
            lambda data, date: data.replace(b"title: T", b"title: U").replace(
                b"draft: true\n", f"date: {date}\n".encode()
            ),
            id="title-changed",
        ),
    ],
)
def test_an_edit_that_went_wrong_is_refused_not_written(
    monkeypatch: pytest.MonkeyPatch, wrong: object
) -> None:
    monkeypatch.setattr(drafts, "_edited", wrong)
    with pytest.raises(drafts.Refused, match="could not be edited safely"):
        drafts.publish(draft("title: T\ndraft: true\n"), PATH, SETTINGS, NOW)


def test_new_never_writes_through_a_link_out_of_the_items_folder(
    site: Site, runner: CliRunner, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (site.items / "linked").symlink_to(outside, target_is_directory=True)
    result = runner.invoke(main, ["new", "linked", "A story", "--new-category"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: items/linked is a link to outside the items folder; not writing there\n"
    )
    assert list(outside.iterdir()) == []
