"""Property tests: whatever a maintainer drops into `items/`, feedsvc keeps publishing.

The folders come from the hazard grammar in tests/hazards.py: known-good items among
hazards in names, file kinds, encodings, front matter, dates and bodies. The promises
tested are the maintainer's guide's: a bad file never breaks a feed (it is left out and
reported), every good file is published, every feed is well-formed, `feedsvc check`
names each bad file, and a running server takes all of it without a restart.

Every Hypothesis test is derandomized with a fixed number of examples, sized for CI.
To search harder locally, multiply the examples: `HAZARDS_EXAMPLES_FACTOR=20 pytest
tests/test_hazards.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, find, given, reject, settings
from lxml import etree
from lxml import html as lxml_html

from tests.conftest import BASE_URL, Site
from tests.crawl import Answer, crawl
from tests.hazards import (
    OUTSIDE_TITLE,
    Built,
    Folder,
    Good,
    Hazard,
    SiteShape,
    dispose,
    fifo_readers,
    folders,
    materialise,
)
from tests.server import Server, everywhere, feedsvc_serve, running_server
from tests.test_static_hosts import get, http_server

FACTOR = int(os.environ.get("HAZARDS_EXAMPLES_FACTOR", "1"))
FORMATS = ("rss", "atom", "json")
ATOM_LINK = "{http://www.w3.org/2005/Atom}link"
#: Seconds a running server has to publish a file; generous, so only a fault fails it.


def bounded(examples: int, **overrides: Any) -> settings:
    """Hypothesis settings for these tests: the same examples on every run, no deadline
    (a 900 kB body takes what it takes on a busy machine), no example database."""
    return settings(
        max_examples=examples * FACTOR,
        deadline=None,
        derandomize=True,
        database=None,
        # Each example makes its own folder under tmp_path (`scratch`), so the
        # function-scoped fixture is not shared state; large bodies are slow by design.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
        **overrides,
    )


@pytest.fixture
def scratch(tmp_path: Path) -> Callable[[], Path]:
    """A new, empty folder under tmp_path for each example."""
    numbers = itertools.count()

    def make() -> Path:
        folder = tmp_path / f"example-{next(numbers)}"
        folder.mkdir()
        return folder

    return make


def build_app(built: Built, shape: SiteShape, cache_dir: Path | None = None) -> Flask:
    """The app over a materialised folder, as tests/conftest.py's Site builds it."""
    site = Site(built.root, overrides={**shape.settings(), "cache_dir": cache_dir})
    app = site.app()
    app.testing = True  # an exception in a view reaches the test with its traceback
    return app


def loaded(built: Built, shape: SiteShape) -> Flask:
    """The app, for the properties about a loaded store: a folder that does not load at
    all is `test_the_store_loads_whatever_the_folder_holds`'s failure, so it is set
    aside here, and these properties search on among folders that do load."""
    with fifo_readers(built.fifos) as opened:
        try:
            app = build_app(built, shape)
        except Exception:
            reject()
    assert not opened, f"the load opened FIFOs for reading, which blocks: {opened}"
    return app


# -- strict parsing ----------------------------------------------------------------------------

_XML = etree.XMLParser(recover=False, resolve_entities=False, no_network=True)


def strict_xml(body: bytes, what: str) -> etree._Element:
    try:
        return etree.fromstring(body, _XML)
    except etree.XMLSyntaxError as error:
        raise AssertionError(f"{what} is not well-formed XML: {error}") from None


def strict_json(body: bytes, what: str) -> Any:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except ValueError as error:
        raise AssertionError(f"{what} is not strict UTF-8 JSON: {error}") from None


_SCRIPT = re.compile(rb"<script|(?:href|src)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE)


def local(url: str) -> str:
    """A URL of the site as the path (and query) a test client asks for."""
    assert url.startswith(BASE_URL), url
    return url[len(BASE_URL) :] or "/"


class Crawler:
    """Every page and feed a folder's site links to, each fetched once and checked."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.bodies: dict[str, bytes] = {}

    def get(self, path: str, *, listed: bool = True) -> bytes:
        """`path`'s body; never a 5xx, and a 200 for anything the site itself lists."""
        if path in self.bodies:
            return self.bodies[path]
        response = self.client.get(path)
        assert response.status_code < 500, f"{path} answered {response.status_code}"
        if listed:
            assert response.status_code == 200, f"{path} is listed but {response.status_code}"
        self.bodies[path] = response.data
        return response.data

    def page(self, path: str) -> bytes:
        body = self.get(path)
        body.decode("utf-8")
        assert not _SCRIPT.search(body), f"{path} carries a script: {_SCRIPT.search(body)}"
        return body

    def feed(self, name: str) -> list[dict[str, Any]]:
        """Every page of one feed in every format, parsed strictly; the JSON entries."""
        first = f"/feeds/{name}.atom"
        last = 1
        for link in strict_xml(self.get(first), first).iter(ATOM_LINK):
            if link.get("rel") == "last":  # …/<name>/page/<last>.atom
                last = int(link.get("href", "").rsplit("/", 1)[1].removesuffix(".atom"))
        entries: list[dict[str, Any]] = []
        for number in range(1, last + 1):
            for format in FORMATS:
                path = (
                    f"/feeds/{name}/page/{number}.{format}"
                    if number > 1
                    else f"/feeds/{name}.{format}"
                )
                body = self.get(path)
                if format == "json":
                    document = strict_json(body, path)
                    entries.extend(document["items"])
                    for entry in document["items"]:
                        html = entry.get("content_html", "").encode("utf-8")
                        assert not _SCRIPT.search(html), f"{path}: a script in {entry['id']}"
                else:
                    root = strict_xml(body, path)
                    assert root.tag in ("rss", "{http://www.w3.org/2005/Atom}feed"), root.tag
        self.get(f"/feeds/{name}/page/{last + 1}.json", listed=False)
        return entries

    def everything(self) -> list[dict[str, Any]]:
        """Crawl the site: feeds from the OPML, then every HTML page they and / link to.
        Returns the entries of the feed of everything."""
        opml = strict_xml(self.get("/feeds.opml"), "/feeds.opml")
        names = ["all", "weekly"]
        for outline in opml.iter("outline"):
            name = local(outline.get("xmlUrl", "")).removeprefix("/feeds/").removesuffix(".atom")
            if name not in names:
                names.append(name)
        feeds = {name: self.feed(name) for name in names}
        health = strict_json(self.get("/healthz"), "/healthz")
        assert health["status"] == "ok"
        pages = {"/", "/weekly/", *(f"/categories/{name}.html" for name in names[2:])}
        pages |= {local(entry["url"]) for entries in feeds.values() for entry in entries}
        for path in sorted(pages):
            self.page(path)
        for href in re.findall(rb'<a href="([^"]*)"', self.bodies["/"]):  # pages, not icons
            url = href.decode()
            if url.startswith(BASE_URL) and "/feeds/" not in url:
                self.page(local(url))
        return feeds["all"]


# -- 1. the store loads --------------------------------------------------------------------------


@bounded(30)
@given(folder=folders())
def test_the_store_loads_whatever_the_folder_holds(
    folder: Folder, scratch: Callable[[], Path]
) -> None:
    """Loading never raises, and never opens a FIFO (which would block it for good).

    The folder is loaded twice over one persistent cache: first parsing every file, then
    from the cache, as a restart does; both must publish the same.
    """
    root = scratch()
    built = materialise(folder, root)
    try:
        with fifo_readers(built.fifos) as opened:
            cold = build_app(built, folder.site, root / "cache").test_client()
            warm = build_app(built, folder.site, root / "cache").test_client()
        assert not opened, f"the load opened FIFOs for reading, which blocks: {opened}"
        before, after = (json.loads(c.get("/healthz").data) for c in (cold, warm))
        for key in ("items", "categories", "weeks", "files", "errors", "warnings"):
            assert before[key] == after[key], f"{key}: {before} from files, {after} from cache"
    finally:
        dispose(root)


# -- 2. every good file is published ---------------------------------------------------------


@bounded(30)
@given(folder=folders())
def test_every_good_file_is_published_among_hazards(
    folder: Folder, scratch: Callable[[], Path]
) -> None:
    """A bad file is left out, never the good ones beside it: each good item is in the
    feed of everything (on whichever page) and on its own page. Nothing from outside
    the items folder is published, whatever links lead there."""
    root = scratch()
    built = materialise(folder, root)
    try:
        client = loaded(built, folder.site).test_client()
        entries: list[dict[str, Any]] = []
        path: str | None = "/feeds/all.json"
        while path is not None:
            document = strict_json(client.get(path).data, path)
            entries.extend(document["items"])
            path = local(document["next_url"]) if "next_url" in document else None
        published = {(entry["title"], local(entry["url"])) for entry in entries}
        for good in built.goods:
            assert (good.title, good.page) in published, f"{good.title} is not in all.json"
            response = client.get(good.page)
            assert response.status_code == 200, f"{good.page}: {response.status_code}"
            assert good.title in response.text
        assert OUTSIDE_TITLE not in {title for title, _ in published}
    finally:
        dispose(root)


# -- 3. every feed parses, every page answers ---------------------------------------------------


@bounded(30)
@given(folder=folders())
def test_every_feed_is_well_formed_and_every_page_answers(
    folder: Folder, scratch: Callable[[], Path]
) -> None:
    """Every feed the site lists (all, weekly, each category; RSS, Atom and JSON; every
    page its paging links name) parses with a strict XML or JSON parser, and every HTML
    page (/, /weekly/, each category, item and week page), /healthz and the OPML answer
    without a server error. No page or feed body carries a script."""
    root = scratch()
    built = materialise(folder, root)
    try:
        crawler = Crawler(loaded(built, folder.site).test_client())
        crawler.everything()
        for path, body in crawler.bodies.items():
            assert OUTSIDE_TITLE.encode() not in body, f"{path} shows a file from outside"
    finally:
        dispose(root)


# -- 4. feedsvc check -------------------------------------------------------------------------


def run_check(built: Built, shape: SiteShape, *options: str) -> subprocess.CompletedProcess[bytes]:
    """The real command line, in the folder's parent, with no FEEDSVC_* setting."""
    (built.root / "feedsvc.toml").write_text(shape.toml(), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    environment["LC_ALL"] = "C.UTF-8"
    environment.pop("PYTHONIOENCODING", None)
    command = [sys.executable, "-m", "feedsvc", "check", str(built.items), *options]
    return subprocess.run(
        command, cwd=built.root, env=environment, capture_output=True, timeout=600, check=False
    )


def printable(text: str) -> bool:
    return text.isprintable() and not any("\ud800" <= ch <= "\udfff" for ch in text)


def names(reported: str, shown: str) -> bool:
    """Whether a reported path is `shown`, or an escaped form of it: its printable parts
    in order, anything in place of each run of characters that cannot be printed."""
    if reported.endswith(shown):
        return True
    parts = re.split(r"((?:[^\w\-./ ]|[\ud800-\udfff])+)", shown)
    pattern = "".join(
        re.escape(part) if index % 2 == 0 else ".*?" for index, part in enumerate(parts)
    )
    return re.search(pattern + r"\Z", reported, re.DOTALL) is not None


def decoded(stream: bytes, what: str) -> str:
    try:
        text = stream.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AssertionError(f"{what} is not UTF-8: {error}: {stream[:2000]!r}") from None
    assert "Traceback" not in text, f"{what} has a traceback:\n{text[-3000:]}"
    return text


SUMMARY = re.compile(
    r"(?P<files>\d+) files, (?P<items>\d+) items published, "
    r"(?P<errors>\d+) errors?, (?P<warnings>\d+) warnings?\Z"
)


@bounded(12)
@given(folder=folders())
def test_check_names_every_bad_file_and_never_crashes(
    folder: Folder, scratch: Callable[[], Path]
) -> None:
    """`feedsvc check DIR` (text, then `--format json` over the cache the first run left)
    exits 1 exactly when it reports an error, prints no traceback, writes valid UTF-8,
    reports the same problems both ways, and names every file the grammar says must be
    named (an error where the file can never be published)."""
    root = scratch()
    built = materialise(folder, root)
    try:
        with fifo_readers(built.fifos) as opened:
            text = run_check(built, folder.site)
            as_json = run_check(built, folder.site, "--format", "json")
        assert not opened, f"check opened FIFOs for reading, which blocks: {opened}"
        for run, what in ((text, "check"), (as_json, "check --format json")):
            decoded(run.stderr, f"{what}'s stderr")
        # Lines end with LF only: a CR or a form feed in a name is the name's own business.
        lines = decoded(text.stdout, "check's output").rstrip("\n").split("\n")
        decoded(as_json.stdout, "check --format json's output")
        report = strict_json(as_json.stdout, "check --format json's output")

        errors = report["errors"]
        assert errors == sum(p["severity"] == "error" for p in report["problems"])
        assert as_json.returncode == (1 if errors else 0), f"exit {as_json.returncode}"
        assert text.returncode == as_json.returncode
        summary = SUMMARY.match(lines[-1]) if lines else None
        assert summary is not None, f"no summary line: {lines[-3:]}"
        counted = {key: int(value) for key, value in summary.groupdict().items()}
        assert counted == {key: report[key] for key in counted}, (counted, report)
        assert len(lines) - 1 == len(report["problems"]), "one line per problem"

        wanted = [hazard for hazard in built.hazards if hazard.expect is not None]
        for hazard in wanted:
            expected_name(hazard, built, report, lines)
        if any(hazard.expect == "error" for hazard in wanted):
            assert as_json.returncode == 1
        reported = {p["path"] for p in report["problems"]}
        assert len(reported) >= len({built.shown(h.path) for h in wanted})
    finally:
        dispose(root)


def expected_name(hazard: Hazard, built: Built, report: Any, lines: list[str]) -> None:
    """`check` names the hazard's file (as an error, if it must be one)."""
    shown = built.shown(hazard.path)
    found = [p for p in report["problems"] if names(p["path"], shown)]
    assert found, f"check does not name {shown!r}: {hazard!r}"
    if hazard.expect == "error":
        assert any(p["severity"] == "error" for p in found), f"no error for {hazard!r}"
    if printable(shown):
        assert any(line.startswith(shown) for line in lines), f"no line for {shown!r}"


# -- 5. feedsvc build -------------------------------------------------------------------------


def run_build(built: Built, shape: SiteShape, out: Path) -> subprocess.CompletedProcess[bytes]:
    """`feedsvc build OUT`, as `run_check` runs `check`: the folder named by the setting."""
    (built.root / "feedsvc.toml").write_text(shape.toml(), encoding="utf-8")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    environment.update(
        LC_ALL="C.UTF-8", FEEDSVC_ITEMS_DIR=str(built.items), FEEDSVC_BASE_URL=BASE_URL
    )
    environment.pop("PYTHONIOENCODING", None)
    command = [sys.executable, "-m", "feedsvc", "build", str(out)]
    return subprocess.run(
        command, cwd=built.root, env=environment, capture_output=True, timeout=600, check=False
    )


def outside_tree(root: Path, *kept: Path) -> set[str]:
    """Every path under `root` but those under `kept`: what else a command left."""
    found = set()
    for top, subfolders, files in os.walk(root):
        subfolders[:] = [f for f in subfolders if Path(top, f) not in kept]
        found.update(os.path.join(top, name) for name in (*subfolders, *files))
    return found


@bounded(8)
@given(folder=folders())
def test_a_build_of_any_folder_writes_the_good_items_and_valid_files_only(
    folder: Folder, scratch: Callable[[], Path]
) -> None:
    """`feedsvc build` over hazards: it exits 1 exactly when it reports an error, with no
    traceback; every good item's page is written; every file it writes is well-formed
    (strict XML or JSON, HTML that parses) with a gzip of the same bytes beside each
    text file; it writes nothing outside its folder and the cache; and served by
    `python3 -m http.server`, whatever names the folder holds, every link from the front
    page to a page the server has leads to a file."""
    root = scratch()
    built = materialise(folder, root)
    out = root / "public"
    try:
        before = outside_tree(root)
        with fifo_readers(built.fifos) as opened:
            run = run_build(built, folder.site, out)
        assert not opened, f"build opened FIFOs for reading, which blocks: {opened}"
        decoded(run.stderr, "build's stderr")
        lines = decoded(run.stdout, "build's output").rstrip("\n").split("\n")
        summary = next((m for m in map(SUMMARY.match, lines) if m), None)
        assert summary is not None, f"no summary line: {lines[-5:]}"
        assert run.returncode == (1 if int(summary["errors"]) else 0), (run.returncode, lines)
        if any(hazard.expect == "error" for hazard in built.hazards):
            assert run.returncode == 1
        cache = built.items.parent / ".feedsvc-cache"
        left = outside_tree(root, out, cache) - before
        assert left <= {str(out), str(cache), str(root / "feedsvc.toml")}, left
        for good in built.goods:
            page = out / good.page.lstrip("/")
            assert good.title in page.read_text(encoding="utf-8"), f"{good.page} not written"
        for path in out.rglob("*"):
            if path.is_dir() or path.suffix == ".gz":
                continue
            body, what = path.read_bytes(), str(path.relative_to(out))
            gzipped = path.with_name(path.name + ".gz")
            if gzipped.exists():
                assert gzip.decompress(gzipped.read_bytes()) == body, f"{what}.gz"
            if path.suffix in (".rss", ".atom", ".opml", ".xml"):
                strict_xml(body, what)
            elif path.suffix == ".json":
                strict_json(body, what)
            elif path.suffix == ".html":
                assert lxml_html.document_fromstring(body).findtext(".//title"), what
        with http_server(out) as port:

            def fetch(path: str) -> Answer:
                status, headers, body = get(port, path)
                return Answer(status, headers.get("content-type", ""), body)

            seen = crawl(fetch, BASE_URL)
        # A body may link to anything: a link is broken only if the server has its page.
        site = Site(built.root, overrides=folder.site.settings())
        site.clock.now = datetime.now(UTC)
        server = site.client()
        missing = [
            path
            for path, answer in seen.items()
            if answer.status != 200 and server.get(path).status_code == 200
        ]
        assert not missing, f"links to nothing on a static host: {sorted(missing)[:10]}"
        for good in built.goods:
            assert good.page in seen, f"{good.page} is not linked from the front page"
    finally:
        dispose(root)


# -- 6. a running server ----------------------------------------------------------------------


def rich(folder: Folder) -> bool:
    """A batch worth dropping on a server: many hazards, of several kinds."""
    kinds = {hazard.label.split(":")[0] for hazard in folder.hazards}
    return len(folder.hazards) >= 10 and len(kinds) >= 6


def batches(count: int) -> Iterator[Folder]:
    """Hazard batches from the grammar, the same on every run (one seed per batch)."""
    for number in range(1, count + 1):
        found = find(
            folders(max_hazards=16, batch=number),
            rich,
            settings=settings(
                phases=[Phase.generate], database=None, max_examples=10_000, deadline=None
            ),
            random=random.Random(number),
        )
        yield dataclasses.replace(found, goods=(Good(0, number),))


LIVE_SITE = SiteShape("Pacific/Kiritimati", "sunday", feed_size=2, weekly_size=1)


@contextlib.contextmanager
def server_log(server: Server) -> Iterator[list[str]]:
    """The server's log lines as they come. Read all along: a pipe nobody reads fills up,
    and a server blocked writing its log would look like a server that cannot cope."""
    lines: list[str] = []
    stream = server.process.stderr
    assert stream is not None

    def drain() -> None:
        for line in stream:
            lines.append(line.decode("utf-8", "replace"))

    reader = threading.Thread(target=drain, name="server-log", daemon=True)
    reader.start()
    yield lines  # the thread ends with the server, when the pipe closes


def trouble(log: list[str]) -> str:
    """The end of the server's log from its first error or traceback on, for a report."""
    start = next(
        (n for n, line in enumerate(log) if "Traceback" in line or " ERROR " in line), None
    )
    return "".join(log[start : start + 60]) if start is not None else "".join(log[-20:])


def test_a_running_server_takes_hazards_and_still_publishes(tmp_path: Path) -> None:
    """Batches of hazards dropped into a running `feedsvc serve` (2 workers), then a good
    file: every worker serves the good file and /healthz, without a restart, and no
    FIFO is ever opened for reading (it would block a worker's reload for good)."""
    items = tmp_path / "items"
    (items / "news").mkdir(parents=True)
    env = {"FEEDSVC_ITEMS_DIR": str(items), "FEEDSVC_BASE_URL": "https://live.example.org"}
    env |= {f"FEEDSVC_{key.upper()}": str(value) for key, value in LIVE_SITE.settings().items()}
    fifos: list[bytes] = []  # every batch's: a later scan may open an earlier one
    with running_server(env=env, argv=feedsvc_serve()) as server, server_log(server) as log:
        for folder in batches(3):
            built = materialise(folder, tmp_path, goods_last=True)
            (good,) = built.goods
            fifos += built.fifos
            with fifo_readers(fifos) as opened:

                def serves(s: Server, good: Good = good) -> bool:
                    status, _, body = s.request(good.page)
                    return status == 200 and good.title.encode() in body

                try:
                    everywhere(server, serves, f"served {good.page}")
                    everywhere(server, lambda s: s.request("/healthz")[0] == 200, "is healthy")
                except AssertionError as error:
                    raise AssertionError(
                        f"{error}, after dropping {folder!r}\nThe server's log:\n{trouble(log)}"
                    ) from None
            assert not opened, f"the server opened FIFOs for reading: {opened}"
        status, _, body = server.request("/feeds/all.atom")
        assert status == 200
        assert OUTSIDE_TITLE.encode() not in body
    dispose(items)  # unreadable folders too, which pytest's clean-up might trip on
