"""What the persistent cache's keys cover: the code (not `__version__`), the settings that
shape output (not the others), and a parse-row codec that gives back exactly what it took."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import feedsvc
from feedsvc import cache as cache_module
from feedsvc import documents, render
from feedsvc.cache import decode, encode
from feedsvc.config import OUTPUT_FIELDS, PARSING_FIELDS, Settings
from feedsvc.itemfile import parse_item
from feedsvc.model import FeedKey, Intro, Item, ParsedFile, Problem, Source
from tests.conftest import Site

TOP = Path(__file__).resolve().parent.parent

#: Another value for every setting: a new setting must be added here, and so decided on.
OTHER_VALUES: dict[str, Any] = {
    "title": "Other title",
    "description": "Other description",
    "base_url": "https://other.example.org",
    "author": "Other Author",
    "language": "fr",
    "timezone": "Europe/Paris",
    "items_dir": Path("/elsewhere/items"),
    "feed_size": 7,
    "weekly_size": 3,
    "weekly_title": "{week}",
    "weekly_publish": "rolling",
    "weekly_full_content": False,
    "weekly_footer": "Bye.",
    "week_starts_on": "sunday",
    "categories": (("news", "The News"),),
    "tag_feed_min_items": 3,
    "page_size": 5,
    "icon": "https://other.example.org/icon.png",
    "websub_hubs": ("https://hub.example.org/",),
    "websub_hub": True,
    "websub_allowed_callbacks": ("10.0.0.0/8",),
    "cache_max_age": 5,
    "cache_dir": Path("/elsewhere/cache"),
}
NOT_OUTPUT = {"items_dir", "cache_max_age", "cache_dir", "websub_allowed_callbacks"}


def test_every_setting_is_classified() -> None:
    assert set(OTHER_VALUES) == {f.name for f in fields(Settings) if f.init}
    assert set(OUTPUT_FIELDS) == set(OTHER_VALUES) - NOT_OUTPUT
    assert set(PARSING_FIELDS) == {"base_url", "author", "timezone"}


@pytest.mark.parametrize("name", sorted(OTHER_VALUES))
def test_a_document_signature_follows_exactly_the_output_settings(name: str) -> None:
    base = Settings()
    changed = replace(base, **{name: OTHER_VALUES[name]})
    key = FeedKey("weekly", "atom")
    same_signature = documents.signature(key, 1, "v", base) == documents.signature(
        key, 1, "v", changed
    )
    assert same_signature == (name in NOT_OUTPUT)
    same_fingerprint = cache_module.fingerprint(base) == cache_module.fingerprint(changed)
    assert same_fingerprint == (name not in PARSING_FIELDS)


def test_the_signature_follows_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    before = documents.signature(FeedKey("all", "rss"), 1, "v", Settings())
    monkeypatch.setattr(documents, "code_digest", lambda: "other code")
    assert documents.signature(FeedKey("all", "rss"), 1, "v", Settings()) != before


def test_the_code_digest_covers_modules_and_templates_not_the_version(tmp_path: Path) -> None:
    """Computed in a fresh interpreter over a copy of the package, edited three ways."""
    copy = tmp_path / "code"
    shutil.copytree(Path(feedsvc.__file__).parent, copy / "feedsvc", ignore=_NO_BYTECODE)

    def digest() -> str:
        script = "import feedsvc, feedsvc.cache as c; print(feedsvc.__file__, c.code_digest())"
        out = _python(script, copy, {}, tmp_path).split()
        assert out[0] == str(copy / "feedsvc" / "__init__.py")
        return out[1]

    first = digest()
    assert digest() == first, "stable"
    seen = {first}
    edits = [
        ("__init__.py", '__version__ = "', '__version__ = "1'),  # the version alone: still
        ("weekly.py", "This week: ", "Highlights: "),
        ("templates/base.html", "<", "<!-- edited -->\n<"),
    ]
    for relative, old, new in edits:
        path = copy / "feedsvc" / relative
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        seen.add(digest())
    assert len(seen) == 4


def test_the_parse_key_leaves_out_what_parsing_does_not_read() -> None:
    data = b"---\ntitle: T\ndate: 2020-10-25 02:30\ntags: [x]\n---\nA [link](../x)."
    base = Settings(timezone="Europe/Paris")
    others = {n: v for n, v in OTHER_VALUES.items() if n not in PARSING_FIELDS}
    changed = replace(base, **others)
    assert changed.parsing_key() == base.parsing_key()
    assert parse_item("news/2020-10-25-t.md", data, changed, 1) == parse_item(
        "news/2020-10-25-t.md", data, base, 1
    )


# -- settings that do not shape output keep the cached documents ---------------------------


def counted_renders(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """One element per feed document rendered from now on (not found by signature)."""
    renders: list[object] = []
    original = render.render_view

    def counting(*args: Any, **kwargs: Any) -> bytes:
        renders.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(render, "render_view", counting)
    return renders


FEEDS = [f"/feeds/{name}.{fmt}" for name in ("all", "weekly", "news") for fmt in ("atom", "rss")]


def sample_site(site: Site) -> None:
    for day in range(1, 6):
        site.write_item("news", f"2020-09-{day:02d}-story.md", {"title": f"Story {day}"})


def served(app: Any) -> dict[str, bytes]:
    client = app.test_client()
    return {path: client.get(path).data for path in FEEDS}


def test_settings_that_shape_no_byte_keep_the_cached_documents(
    site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sample_site(site)
    renders = counted_renders(monkeypatch)
    first = site.app(cache_dir=site.root / "cache", cache_max_age=300)
    assert renders, "the first start renders the first pages"
    expected = served(first)
    renders.clear()
    # Another max age; the same cache and items folders reached by other paths.
    (tmp_path / "cache-link").symlink_to(site.root / "cache")
    (tmp_path / "items-link").symlink_to(site.items)
    again = site.app(
        cache_dir=tmp_path / "cache-link", items_dir=tmp_path / "items-link", cache_max_age=5
    )
    assert served(again) == expected
    assert renders == [], "every document came from the cache"
    retitled = site.app(cache_dir=site.root / "cache", title="Renamed Site")
    assert renders, "a new title is rendered"
    assert all(b"Renamed Site" in body for body in served(retitled).values())


def test_settings_left_out_of_the_keys_change_no_byte(site: Site, tmp_path: Path) -> None:
    """Without a cache: the same documents whatever the settings the keys leave out."""
    sample_site(site)
    expected = served(site.app())
    (tmp_path / "items-link").symlink_to(site.items)
    others = site.app(items_dir=tmp_path / "items-link", cache_max_age=1, cache_dir=tmp_path / "c")
    assert served(others) == expected


# -- the parse-row codec -------------------------------------------------------------------

ZONES = ["UTC", "Europe/Paris", "America/Sao_Paulo", "Australia/Lord_Howe", "Asia/Kolkata"]
texts = st.text(max_size=12)
sources = st.builds(
    Source,
    path=texts,
    size=st.integers(0, 2**53),
    mtime_ns=st.integers(-(2**63), 2**63 - 1),
    digest=texts,
    markup=st.sampled_from(["markdown", "html"]),
)
problems = st.builds(
    Problem,
    path=texts,
    line=st.none() | st.integers(1, 10**6),
    severity=st.sampled_from(["error", "warning"]),
    message=texts,
)
intros = st.builds(Intro, week=texts, title=st.none() | texts, source=sources)


@st.composite
def parse_results(draw: st.DrawFn) -> tuple[ZoneInfo, ParsedFile, Intro | None]:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    # Times in the site's zone, as parsing gives them: in a gap or a fold too.
    whens = st.datetimes(
        min_value=datetime(1000, 1, 2), max_value=datetime(8999, 12, 30), timezones=st.just(zone)
    )
    published = draw(whens)
    item = draw(
        st.none()
        | st.builds(
            Item,
            category=texts,
            slug=texts,
            file_date=st.dates(date(1000, 1, 1), date(8999, 12, 31)),
            title=texts,
            published=st.just(published),
            updated=st.just(published) | whens,
            author=texts,
            tags=st.lists(texts, max_size=3).map(tuple),
            summary=st.none() | texts,
            link=st.none() | texts,
            id=texts,
            image=st.none() | texts,
            draft=st.booleans(),
            source=sources,
            page=texts,
        )
    )
    parsed = ParsedFile(item, tuple(draw(st.lists(problems, max_size=3))))
    return zone, parsed, draw(st.none() | intros)


def exactly(when: datetime) -> tuple[object, ...]:
    """Everything a datetime is: `==` alone ignores the fold and offset within a zone."""
    return (when.replace(tzinfo=None), when.tzinfo, when.utcoffset(), when.fold)


@hypothesis_settings(max_examples=100, derandomize=True, database=None, deadline=None)
@given(parse_results())
def test_the_codec_round_trips_exactly(case: tuple[ZoneInfo, ParsedFile, Intro | None]) -> None:
    zone, parsed, intro = case
    again, again_intro = decode(encode(parsed, intro), zone)
    assert (again, again_intro) == (parsed, intro)
    if parsed.item is not None:
        assert again.item is not None
        for name in ("published", "updated"):
            assert exactly(getattr(again.item, name)) == exactly(getattr(parsed.item, name))
        if parsed.item.updated is parsed.item.published:  # one object, as parsing gives
            assert again.item.updated is again.item.published
        assert all(type(tag) is str for tag in again.item.tags)


def test_a_midnight_skipped_by_daylight_saving_comes_back_as_parsed() -> None:
    settings = Settings(timezone="America/Sao_Paulo")  # 2018-11-04 began at 01:00
    parsed = parse_item("news/2018-11-04-gap.md", b"---\ntitle: Gap\n---\nB", settings, 1)
    assert parsed.item is not None
    again, _ = decode(encode(parsed, None), settings.zone)
    assert again.item is not None
    assert exactly(again.item.published) == exactly(parsed.item.published)


# -- the user story: edit the code, restart, see the edit ----------------------------------

_NO_BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")
WEEK = "2020-W40"
PATHS = [f"/feeds/weekly.{fmt}" for fmt in ("atom", "rss", "json")] + [f"/weekly/{WEEK}.html"]
#: Run in a fresh interpreter: the app over the FEEDSVC_* settings, the paths asked for,
#: and the feed documents it rendered (those not found in the cache).
SERVE = """
import json, sys
import feedsvc
from feedsvc import create_app, render
renders = []
original = render.render_view
def counting(*args, **kwargs):
    renders.append(1)
    return original(*args, **kwargs)
render.render_view = counting
client = create_app(watch=False).test_client()
answers = {path: client.get(path) for path in sys.argv[1:]}
print(json.dumps({
    "package": feedsvc.__file__,
    "renders": len(renders),
    "bodies": {path: [a.status_code, a.get_data(as_text=True)] for path, a in answers.items()},
}))
"""


def _python(script: str, code: Path, env: dict[str, str], cwd: Path, *args: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    environ.update(env, PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _roundup_texts(bodies: dict[str, list[Any]]) -> dict[str, str]:
    """The roundup's HTML as each format carries it, and the page."""
    found = {}
    for path, (status, body) in bodies.items():
        assert status == 200, path
        if path.endswith(".json"):
            found[path] = json.loads(body)["items"][0]["content_html"]
        elif path.startswith("/feeds/"):
            entry = feedparser.parse(body).entries[0]
            found[path] = " ".join(c.value for c in entry.get("content", [])) or entry.summary
        else:
            found[path] = body
    return found


def test_an_edit_to_the_code_is_served_after_a_restart_in_every_format(tmp_path: Path) -> None:
    code = tmp_path / "code"
    shutil.copytree(Path(feedsvc.__file__).parent, code / "feedsvc", ignore=_NO_BYTECODE)
    items = tmp_path / "items"
    shutil.copytree(TOP / "items", items)
    shutil.rmtree(items / "_weekly")  # the roundup's introduction is then weekly.py's
    env = {
        "FEEDSVC_CONFIG": str(TOP / "feedsvc.toml"),
        "FEEDSVC_ITEMS_DIR": str(items),
        "FEEDSVC_CACHE_DIR": str(tmp_path / "cache"),
    }

    def run() -> tuple[int, dict[str, str]]:
        out = json.loads(_python(SERVE, code, env, tmp_path, *PATHS))
        assert out["package"] == str(code / "feedsvc" / "__init__.py")
        return out["renders"], _roundup_texts(out["bodies"])

    renders, before = run()
    assert renders > 0
    assert all("This week: " in text for text in before.values()), before
    renders, unchanged = run()
    assert (renders, unchanged) == (0, before), "a restart alone serves from the cache"

    weekly = code / "feedsvc" / "weekly.py"
    source = weekly.read_text(encoding="utf-8")
    assert source.count('f"This week: {listed}."') == 1
    weekly.write_text(source.replace("This week: ", "Highlights: "), encoding="utf-8")
    renders, after = run()
    assert renders > 0
    for path, text in after.items():
        assert "Highlights: " in text and "This week: " not in text, path
