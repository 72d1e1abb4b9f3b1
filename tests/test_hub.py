"""The built-in WebSub hub: a real subscriber on 127.0.0.1 subscribes, is verified and is
pushed each change of its feed, signed, once, also after a restart; callbacks on
addresses that are not public are refused."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc import hub
from feedsvc.config import Settings
from tests.server import Server, everywhere, feedsvc_serve, free_port, running_server

SECRET = "s3cret"
LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)


# -- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # a cloud's metadata service
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
    ],
)
def test_only_public_unicast_addresses_are_called_back(address: str, allowed: bool) -> None:
    assert hub.allowed_address(address, ()) is allowed


def test_the_allow_list_opens_what_it_names_and_nothing_more() -> None:
    assert hub.allowed_address("127.0.0.1", LOCAL)
    assert hub.allowed_address("::ffff:127.0.0.1", LOCAL)
    assert not hub.allowed_address("127.0.0.2", LOCAL)


@given(st.ip_addresses())
def test_no_address_in_a_special_range_is_allowed(address: ipaddress._BaseAddress) -> None:
    if hub.allowed_address(str(address), ()):
        ip = address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        assert ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local)
        assert not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


@given(st.text(max_size=60))
def test_any_callback_text_is_checked_or_refused_never_a_crash(text: str) -> None:
    try:
        scheme, host, port = hub.check_url(text)
    except hub.Refused:
        return
    assert scheme in ("http", "https") and host and 0 <= port < 65536


# -- a subscriber ------------------------------------------------------------------------


@dataclass
class Subscriber:
    url: str
    verified: list[dict[str, str]] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, what: str, check: object, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not check() and time.monotonic() < deadline:  # type: ignore[operator]
                self.arrived.wait(deadline - time.monotonic())
            assert check(), what  # type: ignore[operator]


@contextmanager
def subscriber(redirect_to: str = "") -> Iterator[Subscriber]:
    """An HTTP subscriber on 127.0.0.1: it confirms every intent and keeps every push."""
    port = free_port()
    found = Subscriber(f"http://127.0.0.1:{port}/callback")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.end_headers()
                return
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            body = query.get("hub.challenge", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with found.arrived:
                found.verified.append(query)
                found.arrived.notify_all()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.end_headers()
            with found.arrived:
                found.deliveries.append((dict(self.headers.items()), body))
                found.arrived.notify_all()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


def form(server: Server, **fields: str) -> tuple[int, bytes]:
    body = urllib.parse.urlencode({f"hub.{k}": v for k, v in fields.items()})
    status, _, answer = server.request(
        "/websub",
        method="POST",
        body=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return status, answer


def write(items: Path, name: str, title: str, extra: str = "") -> None:
    path = items / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {title}\n{extra}---\nBody of {title}.\n", encoding="utf-8")


@contextmanager
def hub_server(tmp_path: Path, port: int, allowed: str = "127.0.0.1/32") -> Iterator[Server]:
    env = {
        "FEEDSVC_ITEMS_DIR": str(tmp_path / "items"),
        "FEEDSVC_CACHE_DIR": str(tmp_path / "cache"),
        "FEEDSVC_BASE_URL": f"http://127.0.0.1:{port}",
        "FEEDSVC_WEBSUB_HUB": "true",
        "FEEDSVC_WEBSUB_ALLOWED_CALLBACKS": allowed,
    }
    with running_server(env=env, argv=feedsvc_serve(), port=port) as server:
        yield server


def pushed(found: Subscriber, title: str) -> list[bytes]:
    return [body for _, body in found.deliveries if f"Body of {title}.".encode() in body]


def test_a_subscriber_is_verified_and_pushed_each_change_once_also_after_a_restart(
    tmp_path: Path,
) -> None:
    items = tmp_path / "items"
    write(items, "news/2020-09-01-a.md", "A")
    port = free_port()
    topic = f"http://127.0.0.1:{port}/feeds/all.atom"
    with subscriber() as found:
        with hub_server(tmp_path, port) as server:
            status, headers, _ = server.request("/feeds/all.atom")
            assert f'<http://127.0.0.1:{port}/websub>; rel="hub"' in headers["Link"]
            status, _ = form(
                server, mode="subscribe", topic=topic, callback=found.url, secret=SECRET
            )
            assert status == 202
            found.wait("verified", lambda: found.verified)
            assert found.verified[0]["hub.mode"] == "subscribe"
            assert found.verified[0]["hub.topic"] == topic
            assert int(found.verified[0]["hub.lease_seconds"]) > 0

            write(items, "news/2020-09-02-b.md", "B")
            found.wait("B pushed", lambda: pushed(found, "B"))
            headers, body = found.deliveries[-1]
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Hub-Signature"] == f"sha256={expected}"
            assert headers["Content-Type"].startswith("application/atom+xml")
            assert f'<{topic}>; rel="self"' in headers["Link"]
            parsed = feedparser.parse(body)
            assert not parsed.bozo and parsed.entries[0].title == "B"
            everywhere(server, lambda s: b"Body of B" in s.request("/feeds/all.atom")[2])
            assert len(pushed(found, "B")) == 1, "once per change, from one worker"

            due = datetime.now(UTC) + timedelta(seconds=3)  # scheduled: the clock publishes it
            write(items, f"news/{due:%Y-%m-%d}-due.md", "Due", f"date: {due:%Y-%m-%d %H:%M:%S}Z\n")
            found.wait("the scheduled item pushed", lambda: pushed(found, "Due"), timeout=30)
            assert len(server.worker_pids()) == 2

        with hub_server(tmp_path, port) as server:  # the same server, started again
            write(items, "news/2020-09-03-c.md", "C")
            found.wait("C pushed after a restart", lambda: pushed(found, "C"))
            everywhere(server, lambda s: b"Body of C" in s.request("/feeds/all.atom")[2])
            assert len(pushed(found, "C")) == 1
            assert len(found.verified) == 1, "the subscription was kept, not asked again"

            status, _ = form(server, mode="unsubscribe", topic=topic, callback=found.url)
            assert status == 202
            found.wait("unsubscribe verified", lambda: len(found.verified) == 2)
            everywhere(
                server,
                lambda s: json.loads(s.request("/healthz")[2])["hub"] == {"subscriptions": 0},
                "dropped the subscription",
            )
            write(items, "news/2020-09-04-d.md", "D")
            everywhere(server, lambda s: b"Body of D" in s.request("/feeds/all.atom")[2])
            write(items, "news/2020-09-05-e.md", "E")  # a second change after the first
            everywhere(server, lambda s: b"Body of E" in s.request("/feeds/all.atom")[2])
            assert not pushed(found, "D") and not pushed(found, "E")


def test_callbacks_on_addresses_that_are_not_public_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "items", "news/2020-09-01-a.md", "A")
    port = free_port()
    topic = f"http://127.0.0.1:{port}/feeds/all.atom"
    with hub_server(tmp_path, port, allowed="") as server:
        for callback in (
            "http://127.0.0.1:9/cb",
            "http://10.1.2.3/cb",
            "http://192.168.0.10/cb",
            "http://[::1]:9/cb",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9/cb",
        ):
            status, answer = form(server, mode="subscribe", topic=topic, callback=callback)
            assert status == 403, (callback, answer)
        assert form(server, mode="subscribe", topic=topic, callback="ftp://x/")[0] == 400
        for bad_topic in ("https://elsewhere.example/feed", topic + "?page=2", topic[:-5]):
            assert (
                form(server, mode="subscribe", topic=bad_topic, callback="http://a.example/")[0]
                == 400
            )
        assert form(server, mode="publish", topic=topic, callback="http://a.example/")[0] == 400


def test_a_redirect_to_a_refused_address_is_not_followed() -> None:
    with (
        subscriber(redirect_to="http://10.0.0.1/steal") as found,
        pytest.raises(hub.Refused, match=r"10\.0\.0\.1"),
    ):
        hub.fetch("GET", found.url, LOCAL)


def test_a_lease_ends_and_a_subscription_with_it(tmp_path: Path) -> None:
    now = [1_000_000.0]
    asked: list[str] = []

    def confirm(method: str, url: str, allowed: object, *rest: object) -> hub.Answer:
        asked.append(url)
        challenge = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["hub.challenge"]
        return hub.Answer(200, challenge.encode())

    settings = Settings(base_url="https://news.example.org", cache_dir=tmp_path)
    own = hub.Hub(settings, topics=lambda url: True, fetch=confirm, clock=lambda: now[0])
    try:
        status, _ = own.request({
            "hub.mode": "subscribe", "hub.topic": "https://news.example.org/feeds/all.atom",
            "hub.callback": "https://sub.example/cb", "hub.lease_seconds": "7200",
        })  # fmt: skip
        assert status == 202 and own.wait_idle(10)
        assert own.subscribers("https://news.example.org/feeds/all.atom") == [
            ("https://sub.example/cb", "")
        ]
        now[0] += 7201
        assert own.subscribers("https://news.example.org/feeds/all.atom") == []
    finally:
        own.stop()


def test_a_callback_that_answers_a_byte_at_a_time_is_cut_off() -> None:
    """Every byte in time for the socket's timeout, but the whole far too slow."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 200:
                if stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/cb"
        with pytest.raises(TimeoutError):
            hub.fetch("GET", url, LOCAL, timeout=1.0)
    finally:
        stop.set()
        thread.join()
        listener.close()
