"""How feedsvc is served: its gunicorn settings, and a worker that gives a thread only to a
request that has fully arrived.

gunicorn's sync worker answers one connection at a time, so a few idle clients hold every
worker. Its threaded worker (gthread) hands each new connection to a pool thread, which
waits up to 5 s for a first byte and then reads the request head from a blocking socket
with no deadline: a few dozen idle connections, or a few clients sending their headers a
byte a second ("slowloris"), hold every thread, and ordinary requests time out. gunicorn
has no setting that bounds reading a request head. `HeadFirstWorker` reads every request
head, and a small body, in the worker's event loop without blocking, and only then hands
the connection to a thread; a connection that has not sent its whole head within the
header timeout is closed.

The settings live here once: `feedsvc serve` passes them to gunicorn as flags
(`command_line`), and the project's `gunicorn.conf.py` sets them for `gunicorn wsgi:app`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import selectors
import socket
import time
from collections.abc import Mapping
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.http.message import DEFAULT_MAX_HEADERFIELD_SIZE, MAX_HEADERS, MAX_REQUEST_LINE
from gunicorn.workers.gthread import ThreadWorker

WORKERS = 2  # `feedsvc serve`'s default; `--workers` or WEB_CONCURRENCY change it
#: Threads per worker. A request runs Python code, and one process runs one thread of
#: Python at a time (the GIL): more threads add no throughput, and renders running side
#: by side would each take longer and hold their documents in memory together. Threads
#: cover the requests that wait without using the CPU: a response larger than the
#: socket's buffers going to a slow reader, a wait for a feed being rendered again
#: (`store.REFRESH_PATIENCE`) or for another worker rendering it (`Cache.claim`). Waiting
#: for a request to arrive takes no thread here. Eight let that many such waits overlap
#: before requests queue, and keep the renders that run side by side few.
THREADS = 8
#: gunicorn kills a worker that has not reported for this long. With threads only the
#: event loop reports, so a long request never counts; a worker that loads the items
#: itself (`preload_app` turned off) reports after loading, which takes over a minute at
#: 100,000 items. In a thread it also bounds each send to, and each read from, a client
#: that stops reading or sending in the middle of a request: the thread then gives up.
TIMEOUT = 300
#: Seconds a connection has to deliver a whole request head, from being accepted (or, when
#: kept alive, from the first byte of its next request); then it is closed. Ample for any
#: client on any link: a head is a few hundred bytes. FEEDSVC_HEADER_TIMEOUT overrides it.
HEADER_TIMEOUT = 10.0
HEADER_TIMEOUT_VARIABLE = "FEEDSVC_HEADER_TIMEOUT"
#: A body with a Content-Length up to this size is read in the event loop too, with the
#: head; a larger or chunked one is read by the thread (a slow upload holds it).
BODY_BYTES = 64 * 1024
#: After the last response on a connection gunicorn half-closes it and reads what the
#: client still sends, so that the response is not cut short by a reset; at most this long.
LINGER = 2.0
LINGER_BYTES = 64 * 1024
RECEIVE_BYTES = 64 * 1024

#: gunicorn's settings for feedsvc, by their names in a gunicorn configuration file.
#: `preload_app`: the master loads the items and renders the first pages once, and the
#: workers it forks share them (feedsvc.watch). No control socket: gunicorn 27 would
#: create one under ~/.gunicorn.
SETTINGS: dict[str, Any] = {
    "worker_class": "feedsvc.serving.HeadFirstWorker",
    "threads": THREADS,
    "timeout": TIMEOUT,
    "preload_app": True,
    "control_socket_disable": True,
}
_FLAGS = {
    "worker_class": "--worker-class",
    "threads": "--threads",
    "timeout": "--timeout",
    "preload_app": "--preload",
    "control_socket_disable": "--no-control-socket",
}


def command_line() -> list[str]:
    """`SETTINGS` as gunicorn's command-line flags (true/false settings as a bare flag)."""
    flags: list[str] = []
    for name, value in SETTINGS.items():
        if value is True:
            flags.append(_FLAGS[name])
        else:
            flags += [_FLAGS[name], str(value)]
    return flags


def header_timeout(environ: Mapping[str, str] | None = None) -> float:
    """HEADER_TIMEOUT, or the seconds FEEDSVC_HEADER_TIMEOUT gives; ValueError if invalid."""
    value = (os.environ if environ is None else environ).get(HEADER_TIMEOUT_VARIABLE)
    if value is None:
        return HEADER_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(f"{HEADER_TIMEOUT_VARIABLE}={value!r}: give a number of seconds above 0")
    return seconds


def head_limit(cfg: Any) -> int:
    """The most bytes gunicorn's parser takes for a request head under `cfg`'s limits
    (limit_request_line, _fields, _field_size, read as gunicorn reads them): also the
    most a connection whose head is on its way makes the worker hold (~800 KB by
    gunicorn's defaults; a few hundred bytes for an ordinary request)."""
    line = cfg.limit_request_line
    line = 1024 * 1024 if line == 0 else min(line, MAX_REQUEST_LINE)  # 0: as large as 1 MiB
    fields = cfg.limit_request_fields
    fields = MAX_HEADERS if fields <= 0 else min(fields, MAX_HEADERS)
    size = cfg.limit_request_field_size
    size = DEFAULT_MAX_HEADERFIELD_SIZE if size <= 0 else size
    return int(line + 2 + fields * (size + 2) + 4)


_BARE_LF = re.compile(rb"(?<!\r)\n")
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Connection: close\r\nContent-Length: 0\r\n\r\n"
)


class _Arriving:
    """The bytes of a request received so far, and until when the rest may take."""

    __slots__ = ("data", "deadline", "registered", "scanned", "wanted")

    def __init__(self, deadline: float, data: bytes) -> None:
        self.data = bytearray(data)
        self.deadline = deadline
        self.registered = False  # with the worker's poller
        self.scanned = 0  # bytes already searched for the end of the head
        self.wanted: int | None = None  # bytes of head and body, once the head is in

    def complete(self, limit: int) -> bool | None:
        """True: hand it to gunicorn (whole, or a head gunicorn refuses on sight);
        False: wait for more; None: over `limit` without an end, refuse it."""
        if self.wanted is None:
            data = self.data
            end = data.find(b"\r\n\r\n", max(0, self.scanned - 3))
            if end < 0:
                if _BARE_LF.search(data, max(0, self.scanned - 1)):
                    return True  # gunicorn answers 400 without reading on
                self.scanned = len(data)
                return None if len(data) > limit else False
            self.wanted = end + 4 + body_length(bytes(data[:end]))
        return len(self.data) >= self.wanted


def body_length(head: bytes) -> int:
    """The body to wait for with the head: its Content-Length, when that is the request's
    only framing, it expects no `100 Continue` and it is at most BODY_BYTES; otherwise 0,
    and gunicorn reads the body (and judges the framing) in the thread."""
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        name = name.lower()
        if not colon or name not in (b"content-length", b"transfer-encoding", b"expect"):
            continue
        value = value.strip(b" \t")
        if name != b"content-length" or length is not None:
            return 0
        if not value.isdigit() or len(value) > 9:
            return 0
        length = int(value)
    return length if length is not None and length <= BODY_BYTES else 0


class HeadFirstWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's threaded worker, with the reading of each request moved into its event
    loop: a pool thread is given a connection only once its whole request head (and a
    body of up to BODY_BYTES with a Content-Length) has arrived, so idle and slow clients
    hold a few kilobytes each, never a thread.

    Every connection gunicorn would hand to a thread, new, kept alive or with a pipelined
    request already read, passes through `enqueue_req`: its bytes are gathered there with
    non-blocking reads, given back to gunicorn's parser (`unreader.unread`, as gthread
    does with bytes it read ahead) and parsed in the thread as usual. A connection that
    has not delivered its head within the header timeout (counted from its acceptance, or
    from the first byte of a further request on a kept-alive one) is closed. A head
    larger than gunicorn's limits allow is answered 431. Closing a connection after its
    last response lingers in the loop too: gthread does it in the loop's thread, waiting
    up to 2 s for the client to close, and a few clients that never close stalled every
    connection of the worker.

    TLS, HTTP/2 with prior knowledge, the PROXY protocol and uWSGI start with bytes that
    are not an HTTP/1 head: with any of them on, connections take gthread's own path.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        self.header_timeout = header_timeout({**os.environ, **(cfg.env or {})})
        self.head_limit = head_limit(cfg)
        self.head_first = (
            not cfg.is_ssl
            and getattr(cfg, "protocol", "http") == "http"
            and getattr(cfg, "proxy_protocol", "off") == "off"
            and getattr(cfg, "http2_cleartext", "off") in ("off", "upgrade")
        )
        self.arriving: dict[Any, _Arriving] = {}  # oldest deadline first
        self.closing: dict[Any, float] = {}  # connection -> when to stop lingering
        self.capped = False  # the heads under way given LINGER at most, as the worker stops

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """At start-up, in the master: a bad FEEDSVC_HEADER_TIMEOUT stops gunicorn here."""
        super().check_config(cfg, log)
        header_timeout({**os.environ, **(cfg.env or {})})

    def get_thread_pool(self) -> futures.ThreadPoolExecutor:
        """The pool; each thread builds its own sanitiser (bleach's cleaners are not
        thread-safe) as it starts, before it takes a request. Once the process has built
        one (start-up has: `render.warm`) that takes a fraction of a millisecond."""
        from feedsvc import sanitize

        return futures.ThreadPoolExecutor(
            max_workers=self.cfg.threads,
            thread_name_prefix="feedsvc-request",
            initializer=sanitize.prepare,
        )

    # -- a request arrives in the event loop ---------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        """Gather the connection's request here; a thread takes it once it is whole."""
        if not self.head_first or conn.is_http2:
            super().enqueue_req(conn)
            return
        ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        lasts = self.header_timeout if self.alive else LINGER
        arriving = _Arriving(time.monotonic() + lasts, ahead)
        self.arriving[conn] = arriving
        conn.sock.setblocking(False)
        if ahead:
            self._judge(conn, arriving)
        else:
            self._receive(conn)  # a kept-alive connection comes back readable
        if conn in self.arriving and not arriving.registered:
            arriving.registered = True
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._receive, conn))

    def _receive(self, conn: Any, _: object = None) -> None:
        try:
            data = conn.sock.recv(RECEIVE_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._forget(conn)
            self._close(conn)
            return
        arriving = self.arriving[conn]
        arriving.data += data
        self._judge(conn, arriving)

    def _judge(self, conn: Any, arriving: _Arriving) -> None:
        complete = arriving.complete(self.head_limit)
        if complete is None:
            self.log.debug("request head from %s over %d bytes", conn.client, self.head_limit)
            self._forget(conn)
            with contextlib.suppress(OSError):  # a courtesy: it closes either way
                conn.sock.send(_TOO_LARGE)
            self._close(conn)
        elif complete:
            self._forget(conn)
            future = self.tpool.submit(self._handle_arrived, conn, bytes(arriving.data))
            future.add_done_callback(
                lambda done: self.method_queue.defer(self.finish_request, conn, done)
            )

    def _forget(self, conn: Any) -> None:
        if self.arriving.pop(conn).registered:
            self.poller.unregister(conn.sock)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def _handle_arrived(self, conn: Any, data: bytes) -> Any:
        """In a pool thread: give the bytes back to gunicorn's parser, then gthread's
        own handling (which reads nothing more from the socket for a head)."""
        conn.sock.setblocking(True)
        conn.init()  # the parser of a new connection
        conn.parser.unreader.unread(data)
        return self.handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """A client that stops reading the response (or sending a large body) holds the
        thread at most TIMEOUT per send or read, as the sync worker would be killed."""
        if self.cfg.timeout > 0:
            conn.sock.settimeout(self.cfg.timeout)
        return super().handle_request(req, conn)

    # -- closing, and the deadlines ------------------------------------------------------

    def finish_request(self, conn: Any, fs: futures.Future[Any]) -> None:
        """As gthread, except that closing after a last response lingers in the loop."""
        if self.head_first and (fs.cancelled() or (fs.exception() is None and not fs.result())):
            self._linger(conn)
        else:
            super().finish_request(conn, fs)

    def _linger(self, conn: Any) -> None:
        """Half-close, then read (and drop) what the client still sends until it closes,
        sends LINGER_BYTES at once or LINGER seconds pass, without holding the loop."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._drain, conn))
        except (OSError, ValueError):
            self._close(conn)
            return
        self.closing[conn] = time.monotonic() + LINGER

    def _drain(self, conn: Any, _: object = None) -> None:
        try:
            data = conn.sock.recv(LINGER_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or len(data) >= LINGER_BYTES:
            self._stop_lingering(conn)

    def _stop_lingering(self, conn: Any) -> None:
        del self.closing[conn]
        self.poller.unregister(conn.sock)
        self._close(conn)

    def murder_pending(self) -> None:
        """gthread's expiry (called by its loop after every wait), plus: heads that took
        longer than the header timeout, and lingering closes that ran out. When the
        worker stops, a head under way has LINGER seconds left at most, like a kept-alive
        connection."""
        super().murder_pending()
        now = time.monotonic()
        if not self.alive and not self.capped:
            self.capped = True
            for arriving in self.arriving.values():  # the same cap keeps them in order
                arriving.deadline = min(arriving.deadline, now + LINGER)
        late = []
        for conn, arriving in self.arriving.items():  # in order of deadline
            if arriving.deadline > now:
                break
            late.append(conn)
        for conn in late:
            self.log.debug("closing %s: no whole request head in time", conn.client)
            self._forget(conn)
            self._close(conn)
        done = []
        for conn, until in self.closing.items():
            if until > now:
                break
            done.append(conn)
        for conn in done:
            self._stop_lingering(conn)
