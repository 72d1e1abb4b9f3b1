"""WebSub publishing: every format names the hubs, and a real server tells a hub (a
recording one on 127.0.0.1) of each changed feed once, from one worker, and of nothing
else."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from lxml import etree

from feedsvc.websub import Publisher
from tests.conftest import BASE_URL, Site
from tests.server import Server, everywhere, feedsvc_serve, free_port, running_server

ATOM = "{http://www.w3.org/2005/Atom}"
HUB = "https://hub.example.org/"


# -- advertising -------------------------------------------------------------------------


def test_every_format_and_the_link_header_name_the_hubs(site: Site) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    client = site.client(websub_hubs=(HUB, "https://other.example.org/hub"))
    atom = client.get("/feeds/news.atom")
    hubs = [e.get("href") for e in etree.fromstring(atom.data).findall(f"{ATOM}link")
            if e.get("rel") == "hub"]  # fmt: skip
    assert hubs == [HUB, "https://other.example.org/hub"]
    rss = etree.fromstring(client.get("/feeds/news.rss").data)
    assert [e.get("href") for e in rss.iter(f"{ATOM}link") if e.get("rel") == "hub"] == hubs
    feed = json.loads(client.get("/feeds/news.json").data)
    assert feed["hubs"] == [{"type": "WebSub", "url": hub} for hub in hubs]
    assert atom.headers["Link"] == (
        f'<{HUB}>; rel="hub", <https://other.example.org/hub>; rel="hub", '
        f'<{BASE_URL}/feeds/news.atom>; rel="self"'
    )
    polled = client.get("/feeds/news.atom", headers={"If-None-Match": atom.headers["ETag"]})
    assert polled.status_code == 304 and polled.headers["Link"] == atom.headers["Link"]


def test_without_hubs_a_feed_names_none(site: Site) -> None:
    site.write_item("news", "2020-09-01-a.md", {"title": "A"})
    client = site.client()
    response = client.get("/feeds/news.atom")
    assert b'rel="hub"' not in response.data and "hubs" not in json.loads(
        client.get("/feeds/news.json").data
    )
    assert response.headers["Link"] == f'<{BASE_URL}/feeds/news.atom>; rel="self"'


# -- the publisher's queue ---------------------------------------------------------------


def test_a_hub_that_fails_is_asked_again_then_given_up_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = {"https://flaky/": [500, 503, 202], "https://down/": [500] * 10}
    asked: list[tuple[str, str]] = []

    def send(hub: str, topic: str) -> int:
        asked.append((hub, topic))
        answer = answers[hub].pop(0)
        if answer == 503:
            raise ConnectionRefusedError("refused")
        return answer

    publisher = Publisher(list(answers), send=send, delays=(0.001, 0.001, 0.001))
    try:
        publisher.changed("https://site/feeds/all.atom")
        publisher.changed("https://site/feeds/all.atom")  # still waiting: not queued again
        assert publisher.wait_idle(10)
    finally:
        publisher.stop()
    assert Counter(hub for hub, _ in asked) == {"https://flaky/": 3, "https://down/": 4}
    assert publisher.sent == 1
    assert "given up" in caplog.text


# -- a real server and a recording hub ---------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    pings: list[str]
    arrived: threading.Condition

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        with self.arrived:
            if form.get("hub.mode") == ["publish"]:
                self.pings.extend(form.get("hub.url", []))
            self.arrived.notify_all()
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def recording_hub() -> Iterator[tuple[str, list[str], threading.Condition]]:
    pings: list[str] = []
    arrived = threading.Condition()
    handler = type("Hub", (Recorder,), {"pings": pings, "arrived": arrived})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", pings, arrived
    finally:
        server.shutdown()
        server.server_close()


def wait_for(arrived: threading.Condition, pings: list[str], expected: set[str]) -> None:
    deadline = time.monotonic() + 15
    with arrived:
        while not expected <= set(pings) and time.monotonic() < deadline:
            arrived.wait(deadline - time.monotonic())
    assert expected <= set(pings), sorted(expected - set(pings))


def write(items: Path, name: str, title: str, extra: str = "") -> None:
    path = items / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {title}\n{extra}---\nBody of {title}.\n", encoding="utf-8")


TOPICS = [
    f"{name}.{fmt}"
    for name in ("all", "weekly", "news", "tech")
    for fmt in ("rss", "atom", "json")
]


def test_a_real_server_pings_once_per_changed_feed_and_never_for_the_others(
    tmp_path: Path,
) -> None:
    items = tmp_path / "items"
    write(items, "news/2020-09-01-a.md", "A")
    write(items, "tech/2020-09-02-b.md", "B")
    with recording_hub() as (hub, pings, arrived), publishing(tmp_path, hub) as (server, origin):

        def feeds() -> dict[str, bytes]:
            return {topic: server.request(f"/feeds/{topic}")[2] for topic in TOPICS}

        before = feeds()
        write(items, "news/2020-09-03-c.md", "C")
        shown = ("all.atom", "news.rss", "news.json")
        everywhere(
            server, lambda s: all(b"Body of C" in s.request(f"/feeds/{t}")[2] for t in shown)
        )
        after = feeds()
        changed = {f"{origin}/feeds/{t}" for t in TOPICS if before[t] != after[t]}
        formats = ("rss", "atom", "json")
        assert changed == {f"{origin}/feeds/{n}.{f}" for n in ("all", "news", "weekly")
                               for f in formats}, "not tech's"  # fmt: skip
        wait_for(arrived, pings, changed)
        # Both workers have served the new bytes, so each has seen them: any second
        # ping would have been queued by now.
        everywhere(server, lambda s: feeds() == after)
        with arrived:
            assert Counter(pings) == Counter(changed), "once each, from one worker"
        assert len(server.worker_pids()) == 2


def test_a_scheduled_item_coming_due_is_pushed_without_a_file_event(tmp_path: Path) -> None:
    items = tmp_path / "items"
    write(items, "news/2020-09-01-a.md", "A")
    with recording_hub() as (hub, pings, arrived), publishing(tmp_path, hub) as (server, origin):
        due = datetime.now(UTC) + timedelta(seconds=3)
        stamp = due.strftime("%Y-%m-%d %H:%M:%S")
        write(items, f"news/{due:%Y-%m-%d}-later.md", "Later", f"date: {stamp}Z\n")
        # Every worker has read it (a file more), and it is not published yet: its
        # publication is the clock's doing, with no file event at that moment.
        everywhere(server, lambda s: json.loads(s.request("/healthz")[2])["files"] == 2)
        if datetime.now(UTC) < due - timedelta(seconds=1):
            assert b"Later" not in server.request("/feeds/news.atom")[2]
        wait_for(arrived, pings, {f"{origin}/feeds/news.atom", f"{origin}/feeds/all.json"})
        assert b"Later" in server.request("/feeds/news.atom")[2]


@contextmanager
def publishing(tmp_path: Path, hub: str) -> Iterator[tuple[Server, str]]:
    """`feedsvc serve` over tmp_path/items that names `hub` and tells it of changes."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = {
        "FEEDSVC_ITEMS_DIR": str(tmp_path / "items"),
        "FEEDSVC_CACHE_DIR": str(tmp_path / "cache"),
        "FEEDSVC_BASE_URL": origin,
        "FEEDSVC_WEBSUB_HUBS": hub,
    }
    with running_server(env=env, argv=feedsvc_serve(), port=port) as server:
        yield server, origin
