"""Idle and slow clients against the real server (feedsvc.serving.HeadFirstWorker).

64 connections that send nothing and 32 that send a header byte a second and never
finish ("slowloris") are held open against the default 2 workers; meanwhile every
ordinary feed request must be answered, each within 2 s. That bound is the client's
timeout, far above the few milliseconds such a request takes, so a loaded machine does
not fail it; a server whose threads or workers the attackers hold does. Both ways of
starting the server are covered: `feedsvc serve`, and `gunicorn wsgi:app` from the
project folder, configured by its gunicorn.conf.py alone.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import runpy
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import feedparser
import pytest
from gunicorn.config import Config

from feedsvc import serving
from tests.server import TOP, Server, running_server

IDLE, SLOW = 64, 32
ANSWER_WITHIN = 2.0  # seconds: the client's timeout on each ordinary request
REQUESTS_FOR = 6.0  # seconds of ordinary requests, well inside the 10 s header timeout
FEEDS = ("/feeds/all.atom", "/feeds/all.rss", "/feeds/weekly.atom", "/feeds/weekly.rss")
#: A request head that never ends: its last header's value goes on for ever.
ENDLESS_HEAD = b"GET /feeds/all.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def feedsvc_serve() -> list[str]:
    script = Path(sys.executable).with_name("feedsvc")
    return [str(script), "serve", "--host", "127.0.0.1", "--port", "{port}"]


@pytest.fixture(params=["feedsvc serve", "gunicorn wsgi:app"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The sample site, served with each command's default settings."""
    argv = feedsvc_serve() if request.param == "feedsvc serve" else None
    with running_server(argv=argv) as running:
        yield running


class Attack:
    """Idle connections, and slow ones that send one more byte of ENDLESS_HEAD a second."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.idle = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(idle)]
        self.slow = [socket.create_connection(("127.0.0.1", port), 5) for _ in range(slow)]
        self.cut_off = 0  # slow connections the server closed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        sent = 0
        while True:
            byte = ENDLESS_HEAD[sent : sent + 1] or b"x"
            for connection in list(self.slow):
                try:
                    connection.send(byte)
                except OSError:
                    self.slow.remove(connection)
                    self.cut_off += 1
            sent += 1
            if self._stop.wait(1.0):
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self.idle + self.slow:
            connection.close()


@contextmanager
def attack(server: Server, idle: int = IDLE, slow: int = SLOW) -> Iterator[Attack]:
    held = Attack(server.port, idle, slow)
    try:
        yield held
    finally:
        held.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    """One ordinary request on a new connection; a socket timeout if it takes too long."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_WITHIN)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_ordinary_requests_are_answered_while_idle_and_slow_clients_hold_connections(
    server: Server,
) -> None:
    answered = 0
    with attack(server) as held:
        deadline = time.monotonic() + REQUESTS_FOR
        while time.monotonic() < deadline:
            path = FEEDS[answered % len(FEEDS)]
            status, body = get(server.port, path)  # raises TimeoutError past 2 s
            assert status == 200, path
            parsed = feedparser.parse(body)
            assert not parsed.bozo and parsed.entries, path
            answered += 1
            time.sleep(0.02)
        assert held.cut_off == 0, "the slow clients were held open throughout"
    assert answered > 50
    assert len(server.worker_pids()) == 2, "both workers answered"


def test_clients_that_never_close_their_end_do_not_hold_up_the_others() -> None:
    """After a last response (`Connection: close`) gunicorn waits for the client to close
    its end too; a client that never does must not stall the worker meanwhile."""
    with running_server() as server:
        stubborn = []
        try:
            for _ in range(SLOW):
                connection = socket.create_connection(("127.0.0.1", server.port), 5)
                connection.sendall(
                    b"GET /feeds/all.atom HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                stubborn.append(connection)
            deadline = time.monotonic() + REQUESTS_FOR
            while time.monotonic() < deadline:
                status, _ = get(server.port, "/feeds/all.atom")  # TimeoutError past 2 s
                assert status == 200
                time.sleep(0.02)
        finally:
            for connection in stubborn:
                connection.close()


def slowly_until_closed(connection: socket.socket, every: float) -> float:
    """Send ENDLESS_HEAD a byte at a time until the server closes the connection (which
    a read then sees as the end of the stream); the seconds that took."""
    started = time.monotonic()
    stop = threading.Event()

    def drip() -> None:
        for byte in ENDLESS_HEAD + b"x" * 10_000:
            if stop.wait(every):
                return
            try:
                connection.send(bytes([byte]))
            except OSError:
                return

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    try:
        connection.settimeout(60)  # only keeps a broken server from hanging the test
        with contextlib.suppress(ConnectionResetError):  # closed as well
            assert connection.recv(1024) == b"", "no answer to an unfinished head"
        return time.monotonic() - started
    finally:
        stop.set()
        dripping.join()


def test_a_head_that_never_ends_is_closed_after_the_header_timeout() -> None:
    with running_server(env={"FEEDSVC_HEADER_TIMEOUT": "1"}, workers=1) as server:
        idle = socket.create_connection(("127.0.0.1", server.port), 5)
        slow = socket.create_connection(("127.0.0.1", server.port), 5)
        try:
            assert slowly_until_closed(slow, every=0.1) >= 0.9
            idle.settimeout(60)
            assert idle.recv(1024) == b"", "an idle connection is closed too"
        finally:
            idle.close()
            slow.close()
        status, _ = get(server.port, "/feeds/all.atom")
        assert status == 200


def exchange(port: int, data: bytes, pieces: int = 1) -> bytes:
    """Send `data` in `pieces`, then half-close and read everything the server sends."""
    with socket.create_connection(("127.0.0.1", port), 10) as connection:
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            connection.sendall(data[start : start + size])
            time.sleep(0.01)
        connection.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_requests_in_pieces_pipelined_with_bodies_or_malformed_are_answered() -> None:
    with running_server(workers=1) as server:
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        assert exchange(server.port, head, pieces=len(head)).startswith(b"HTTP/1.1 200 ")
        # Two requests in one packet, and one whose head comes after a small body.
        post = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
        replies = exchange(server.port, head + post + head)
        # (A body need not end with a line break, so the next status line may follow it.)
        assert re.findall(rb"HTTP/1.1 (\d+) ", replies) == [b"200", b"405", b"200"]
        # A bare LF is refused at once by gunicorn's parser, not waited on.
        assert exchange(server.port, b"GET /healthz HTTP/1.1\nHost: x\n\n").startswith(
            b"HTTP/1.1 400 "
        )


def test_a_head_over_gunicorns_limits_is_refused_without_a_thread() -> None:
    cfg = Config()
    limit = serving.head_limit(cfg)
    fields = cfg.limit_request_fields * cfg.limit_request_field_size
    assert limit >= cfg.limit_request_line + fields
    arriving = serving._Arriving(time.monotonic() + 10, b"GET / HTTP/1.1\r\nX: ")
    arriving.data += b"a" * limit
    assert arriving.complete(limit) is None
    whole = serving._Arriving(time.monotonic() + 10, b"GET / HTTP/1.1\r\nContent-Length: 3\r\n")
    assert whole.complete(limit) is False
    whole.data += b"\r\nab"
    assert whole.complete(limit) is False, "the body is still on its way"
    whole.data += b"c"
    assert whole.complete(limit) is True


@pytest.mark.parametrize(
    ("head", "body"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 12", 12),
        (b"POST / HTTP/1.1\r\ncontent-length:  7 ", 7),
        (b"GET / HTTP/1.1\r\nHost: x", 0),
        (b"POST / HTTP/1.1\r\nContent-Length: 70000", 0),  # over BODY_BYTES: the thread reads it
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5", 0),  # gunicorn refuses
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue", 0),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5", 0),
        (b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 5000, 0),
    ],
)
def test_the_body_waited_for_with_the_head(head: bytes, body: int) -> None:
    assert serving.body_length(head) == body


def test_the_header_timeout_comes_from_the_environment() -> None:
    assert serving.header_timeout({}) == serving.HEADER_TIMEOUT
    assert serving.header_timeout({"FEEDSVC_HEADER_TIMEOUT": "2.5"}) == 2.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        with pytest.raises(ValueError, match="FEEDSVC_HEADER_TIMEOUT"):
            serving.header_timeout({"FEEDSVC_HEADER_TIMEOUT": bad})


def test_feedsvc_serve_and_gunicorn_conf_give_gunicorn_the_same_settings() -> None:
    from_flags = Config()
    parsed = from_flags.parser().parse_args([*serving.command_line(), "wsgi:app"])
    for name, value in vars(parsed).items():
        if value is not None and name != "args":
            from_flags.set(name, value)
    from_file = Config()
    for name, value in runpy.run_path(str(TOP / "gunicorn.conf.py")).items():
        if name in from_file.settings:
            from_file.set(name, value)
    for name in serving.SETTINGS:
        assert from_flags.settings[name].get() == from_file.settings[name].get(), name
    assert from_file.worker_class is serving.HeadFirstWorker
    assert from_file.workers == serving.WORKERS
    assert from_file.preload_app and from_file.control_socket_disable
