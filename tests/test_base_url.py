"""One base URL, told once: without `base_url`, links and ids come from the address the
server listens on (`feedsvc serve`, `make run PORT=`, `flask run --port`); a loopback
base URL where readers elsewhere would follow it is a warning, and so is a FEEDSVC_*
variable feedsvc does not read."""

from __future__ import annotations

import json
import logging
import string
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from feedsvc import config, create_app, serving
from feedsvc.cli import main
from feedsvc.config import listening_url, load_settings, unknown_variables
from tests.conftest import Site
from tests.server import TOP, Server, running_server

CONFIG = 'title = "Listening"\ntimezone = "UTC"\n'


# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "scheme", "url"),
    [
        ("127.0.0.1", 8731, "http", "http://127.0.0.1:8731"),
        ("localhost", 8000, "http", "http://localhost:8000"),
        ("news.example.org", 80, "http", "http://news.example.org"),
        ("news.example.org", 443, "https", "https://news.example.org"),
        ("192.0.2.7", 8000, "http", "http://192.0.2.7:8000"),
        ("::1", 8000, "http", "http://[::1]:8000"),
        ("[::1]", 8000, "http", "http://[::1]:8000"),
        # Every interface: no host a reader could use; the loopback one stands for it.
        ("0.0.0.0", 8000, "http", "http://127.0.0.1:8000"),
        ("::", 8000, "http", "http://[::1]:8000"),
        ("", 8000, "http", "http://127.0.0.1:8000"),
    ],
)
def test_the_base_url_of_an_address(host: str, port: int, scheme: str, url: str) -> None:
    assert listening_url(host, port, scheme) == url


def test_the_address_listened_on_is_the_default_and_only_the_default(tmp_path: Path) -> None:
    listening = "http://127.0.0.1:8731"
    assert load_settings({}, tmp_path, listening=listening).base_url == listening
    assert load_settings({}, tmp_path).base_url == config.DEFAULT_BASE_URL
    told = {"FEEDSVC_BASE_URL": "https://news.example.org"}
    assert load_settings(told, tmp_path, listening=listening).base_url == told["FEEDSVC_BASE_URL"]
    (tmp_path / "feedsvc.toml").write_text('base_url = "https://file.example.org"\n')
    assert load_settings({}, tmp_path, listening=listening).base_url == "https://file.example.org"


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("FEEDSVC_BASEURL", "FEEDSVC_BASE_URL"),
        ("FEEDSVC_BASE_ULR", "FEEDSVC_BASE_URL"),
        ("FEEDSVC_TIMEZONES", "FEEDSVC_TIMEZONE"),
        ("FEEDSVC_HEADERTIMEOUT", "FEEDSVC_HEADER_TIMEOUT"),
        ("FEEDSVC_CONFIGFILE", "FEEDSVC_CONFIG"),
    ],
)
def test_an_unknown_variable_is_named_with_the_nearest_known(name: str, suggestion: str) -> None:
    assert unknown_variables({name: "x", "FEEDSVC_TITLE": "T", "HOME": "/"}) == [
        f"{name} is not a feedsvc setting and is ignored; did you mean {suggestion}?"
    ]


def test_every_variable_feedsvc_reads_is_known() -> None:
    assert serving.HEADER_TIMEOUT_VARIABLE in config.known_variables()
    assert unknown_variables(dict.fromkeys(config.known_variables(), "x")) == []
    [far] = unknown_variables({"FEEDSVC_ZZZZZZZZZZZZ": "1"})
    assert "FEEDSVC_<KEY> for a key of feedsvc.toml" in far


@given(
    st.dictionaries(
        st.one_of(
            st.text(string.ascii_uppercase + "_", max_size=20).map(lambda s: "FEEDSVC_" + s),
            st.sampled_from(config.known_variables()),
            st.text(max_size=10),
        ),
        st.text(max_size=5),
        max_size=6,
    )
)
def test_only_unknown_feedsvc_variables_are_warned_of(environ: dict[str, str]) -> None:
    warned = unknown_variables(environ)
    unknown = sorted(
        n for n in environ if n.startswith("FEEDSVC_") and n not in config.known_variables()
    )
    assert [warning.split(" ", 1)[0] for warning in warned] == unknown
    for warning in warned:
        if "did you mean" in warning:
            assert warning.rsplit(" ", 1)[1].rstrip("?") in config.known_variables()


# --- servers: the links follow the address they listen on ---------------------------------------


@pytest.fixture
def unset(site: Site) -> Path:
    """A site whose feedsvc.toml sets no base_url, with one item."""
    config_file = site.root / "feedsvc.toml"
    config_file.write_text(CONFIG)
    site.write_item("news", "2020-09-01-story.md", {"title": "Story"})
    return config_file


def assert_links_point_at(server: Server, base: str) -> None:
    status, _, body = server.request("/feeds/all.atom")
    assert status == 200
    feed = feedparser.parse(body)
    assert not feed.bozo
    assert feed.feed.link == f"{base}/"
    assert {link.href for link in feed.feed.links} == {f"{base}/", f"{base}/feeds/all.atom"}
    [entry] = feed.entries
    assert entry.link == f"{base}/items/news/story.html"
    host = base.split("//")[1].split(":")[0]
    assert entry.id == f"tag:{host},2020-09-01:news/story"
    status, _, body = server.request("/feeds/all.json")
    assert json.loads(body)["home_page_url"] == f"{base}/"


def feedsvc_command() -> str:
    return str(Path(sys.executable).with_name("feedsvc"))


def test_feedsvc_serve_links_to_the_address_it_listens_on(unset: Path) -> None:
    argv = [feedsvc_command(), "serve", "--host", "127.0.0.1", "--port", "{port}"]
    env = {"FEEDSVC_CONFIG": str(unset), "FEEDSVC_BASEURL": "https://typo.example.org"}
    with running_server(env=env, argv=argv) as server:
        assert_links_point_at(server, f"http://127.0.0.1:{server.port}")
        # Every worker serves the same bytes: the address was fixed before the fork.
        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = set(pool.map(lambda _: server.request("/feeds/all.atom")[2], range(32)))
        assert len(bodies) == 1 and len(server.worker_pids()) == 2
    stderr = server.process.stderr.read().decode() if server.process.stderr else ""
    # The typo is said once, by the process that loads the app before forking workers.
    assert stderr.count("FEEDSVC_BASEURL is not a feedsvc setting") == 1
    assert "did you mean FEEDSVC_BASE_URL?" in stderr


def test_make_run_links_to_its_port(tmp_path: Path) -> None:
    """The sample site's feedsvc.toml sets no base_url: `make run PORT=` serves it with
    links to that port."""
    env = {"FEEDSVC_CACHE_DIR": str(tmp_path / "cache")}
    with running_server(
        env=env, argv=["make", "--no-print-directory", "run", "PORT={port}"]
    ) as server:
        status, _, body = server.request("/feeds/all.atom")
        assert status == 200
        feed = feedparser.parse(body)
        base = f"http://127.0.0.1:{server.port}"
        assert feed.feed.link == f"{base}/"
        assert all(entry.link.startswith(f"{base}/items/") for entry in feed.entries)
        assert len(feed.entries) == 6
    assert (TOP / "feedsvc.toml").read_text().count("\nbase_url") == 0


def test_flask_run_links_to_the_port_it_was_given(unset: Path) -> None:
    argv = [sys.executable, "-m", "flask", "--app", "feedsvc", "run", "--port", "{port}"]
    env = {"FEEDSVC_CONFIG": str(unset)}
    with running_server(env=env, argv=argv, gunicorn=False) as server:
        assert_links_point_at(server, f"http://127.0.0.1:{server.port}")
        # The Host header a client sends changes nothing.
        status, _, body = server.request("/feeds/all.atom", {"Host": "evil.example:1"})
        assert status == 200 and b"evil.example" not in body


def test_a_configured_base_url_wins_over_the_address(unset: Path) -> None:
    argv = [
        feedsvc_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        "1",
    ]
    env = {"FEEDSVC_CONFIG": str(unset), "FEEDSVC_BASE_URL": "https://news.example.org"}
    with running_server(env=env, argv=argv, workers=1) as server:
        assert_links_point_at(server, "https://news.example.org")


# --- warnings ---------------------------------------------------------------------------------


def test_serve_passes_the_address_to_the_app(monkeypatch: pytest.MonkeyPatch, unset: Path) -> None:
    monkeypatch.chdir(unset.parent)
    calls: list[list[str]] = []
    monkeypatch.setattr("os.execve", lambda path, argv, env: calls.append(argv))
    CliRunner().invoke(main, ["serve", "--host", "::", "--port", "8123"], catch_exceptions=False)
    [argv] = calls
    assert argv[argv.index("--bind") + 1] == "[::]:8123"
    assert argv[-1] == "feedsvc:create_app(listening=('::', 8123))"


@pytest.mark.parametrize(
    ("host", "base_url", "warned"),
    [
        ("0.0.0.0", None, True),
        ("192.0.2.7", "http://localhost:8000", True),
        ("::", None, True),
        ("127.0.0.1", None, False),
        ("0.0.0.0", "https://news.example.org", False),
    ],
)
def test_a_server_on_a_public_address_warns_of_a_loopback_base_url(
    site: Site, caplog: pytest.LogCaptureFixture, host: str, base_url: str | None, warned: bool
) -> None:
    site.write_item("news", "2020-09-01-story.md", {"title": "Story"})
    settings = site.settings(base_url=base_url or listening_url(host, 8000))
    with caplog.at_level(logging.WARNING, logger="feedsvc"):
        create_app(settings, clock=site.clock, watch=False, listening=(host, 8000))
    warnings = [r.getMessage() for r in caplog.records if "base_url" in r.getMessage()]
    if warned:
        assert warnings == [
            f"listening on {host}, but base_url is {settings.base_url}, this machine alone: "
            "readers elsewhere get links and ids they cannot follow; set base_url (in "
            "feedsvc.toml, or FEEDSVC_BASE_URL) to the address readers use"
        ]
    else:
        assert warnings == []


@pytest.fixture
def in_site(site: Site, monkeypatch: pytest.MonkeyPatch, unset: Path) -> Site:
    monkeypatch.chdir(site.root)
    return site


def test_build_warns_when_the_export_would_point_at_this_machine(
    in_site: Site, unset: Path
) -> None:
    result = CliRunner().invoke(main, ["build", str(in_site.root / "public")])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: base_url is http://127.0.0.1:8000, this machine alone: every link and id "
        "in the export points there; set base_url (in feedsvc.toml, or FEEDSVC_BASE_URL) to "
        "the address readers use\n"
    )
    unset.write_text(CONFIG + 'base_url = "https://news.example.org"\n')
    result = CliRunner().invoke(main, ["build", str(in_site.root / "public")])
    assert result.exit_code == 0 and result.stderr == ""


def test_commands_warn_of_an_unknown_variable(
    in_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEEDSVC_BASEURL", "https://typo.example.org")
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: FEEDSVC_BASEURL is not a feedsvc setting and is ignored; did you mean "
        "FEEDSVC_BASE_URL?\n"
    )
