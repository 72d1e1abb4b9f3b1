"""A WebSub hub of feedsvc's own (W3C WebSub Recommendation), on with `websub_hub = true`.

    POST /websub   hub.mode=subscribe|unsubscribe, hub.topic, hub.callback,
                   hub.lease_seconds (optional), hub.secret (optional)

A topic is a live feed's first page (`<base_url>/feeds/<feed>.<format>`). A request is
checked at once (a topic of this site, a callback that is an http(s) URL on an allowed
address, the caps) and answered 202; the intent is then verified off the request path:
the callback is asked `GET ?hub.mode=…&hub.topic=…&hub.challenge=…&hub.lease_seconds=…`
and must echo the challenge. A verified subscription is kept in SQLite (`hub.sqlite3`
in `cache_dir`), which every worker shares and a restart keeps, until its lease ends.

When a topic's bytes change (`Documents.on_change`: in the one worker that saw it
first), every subscriber is sent them (`POST`, the feed's content type, `Link` to the
hub and the topic, and `X-Hub-Signature: sha256=<HMAC of the body>` when it gave a
secret), from a thread of its own, tried again after 1, 2, 4, 8 and 16 seconds.

Callbacks are addresses strangers chose. Each outbound request resolves the host, refuses
loopback, private, link-local, multicast and other special addresses unless
`websub_allowed_callbacks` names them, connects to the address it checked (so a second
resolution cannot move it), checks again on each redirect (three at most), and is bounded
in time (`TIMEOUT`) and in the bytes it reads (`MAX_ANSWER`). Subscriptions are capped
per topic and per callback host.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import logging
import secrets
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from feedsvc import websub
from feedsvc.config import Settings

log = logging.getLogger(__name__)

PATH = "/websub"
FILE_NAME = "hub.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL, callback TEXT NOT NULL, secret TEXT NOT NULL,
    expires REAL NOT NULL, PRIMARY KEY (topic, callback)
);
"""
DEFAULT_LEASE = 10 * 86_400  # seconds, when the subscriber asks for none
LEASE_BOUNDS = (3_600, 30 * 86_400)
MAX_SECRET = 199  # bytes (the Recommendation: less than 200)
MAX_PER_TOPIC = 1_000
MAX_PER_HOST = 100  # subscriptions whose callbacks are on one host
TIMEOUT = 10.0  # seconds for one outbound request, all of it (connect, send, answer)
MAX_ANSWER = 64 * 1024  # bytes of a callback's answer read, at most
MAX_REDIRECTS = 3
RETRY_DELAYS = websub.RETRY_DELAYS
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """An outbound request that must not be made (the message says why)."""


# -- outbound requests to addresses strangers chose ---------------------------------------


def allowed_address(address: str, allowed: Sequence[Network]) -> bool:
    """Whether a callback may be at `address`: a public unicast address, or one the
    operator's allow-list names."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def resolve(host: str, port: int, allowed: Sequence[Network]) -> str:
    """The address to connect to for `host`: the first its resolution gives, if every
    one it gives is allowed (a name with one private address among public ones is
    refused: which one a client picks is not ours to know)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise Refused(f"{host} does not resolve: {error}") from None
    addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not allowed_address(a, allowed)]
    if not addresses or refused:
        raise Refused(f"{host} is at {refused[0] if refused else 'no address'}, not a public one")
    return addresses[0]


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; Refused for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("the callback must be an http(s) URL")
    if parts.username or parts.password:
        raise Refused("the callback must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("the callback's port is not a number") from None
    return parts.scheme, parts.hostname, port


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class _Pinned(http.client.HTTPConnection):
    """A connection to the address that was checked, not to a second lookup's."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """End a connection's reads and writes now, from another thread (a plain close
    leaves the socket open while the response still reads from it)."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def fetch(
    method: str,
    url: str,
    allowed: Sequence[Network],
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> Answer:
    """One outbound request to a callback, with the checks above, over within `timeout`
    seconds; Refused or OSError (TimeoutError past the time) when it cannot be made."""
    for _ in range(MAX_REDIRECTS + 1):
        scheme, host, port = check_url(url)
        address = resolve(host, port, allowed)
        connection_class = _PinnedTLS if scheme == "https" else _Pinned
        connection = connection_class(host, port, address, timeout)
        # A peer that answers a byte at a time would pass every socket timeout: past
        # `timeout` in all, the connection is closed under the request.
        cut = threading.Event()
        deadline = threading.Timer(timeout, _cut, (connection, cut))
        deadline.start()
        try:
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request(method, target, body=body or None, headers=headers or {})
            response = connection.getresponse()
            data = response.read(MAX_ANSWER)
            location = response.getheader("Location")
        except (OSError, ValueError, AttributeError, http.client.HTTPException) as error:
            if not cut.is_set():  # not the deadline: the peer's own failure
                raise
            raise TimeoutError(f"{host} took longer than {timeout:g} s") from error
        finally:
            deadline.cancel()
            connection.close()
        if response.status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)  # checked again at the top of the loop
            if response.status == 303:
                method, body = "GET", b""
            continue
        return Answer(response.status, data)
    raise Refused(f"more than {MAX_REDIRECTS} redirects")


# -- the hub ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A subscriber's request, checked."""

    mode: str
    topic: str
    callback: str
    lease: int
    secret: str


class Hub:
    """Subscriptions, their verification and the delivery of new bytes (see the module)."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Callable[[str], bool],
        fetch: Callable[..., Answer] = fetch,
        delays: Sequence[float] = RETRY_DELAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.cache_dir is None:
            raise ValueError("the hub keeps its subscriptions in cache_dir: set one")
        self.url = settings.base_url + PATH
        self.allowed = tuple(
            ipaddress.ip_network(c, strict=False) for c in settings.websub_allowed_callbacks
        )
        self.topics = topics
        self.fetch = fetch
        self.delays = tuple(delays)
        self.clock = clock
        self.path = Path(settings.cache_dir) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)
        self.delivered = 0
        self.queue = websub.Retrying("feedsvc-hub", delays)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    # -- requests from subscribers ----------------------------------------------------

    def request(self, form: dict[str, str]) -> tuple[int, str]:
        """A subscriber's POST: (status, a line saying why). The verification of intent
        is queued; nothing here waits on the network."""
        try:
            checked = self._check(form)
        except Refused as error:
            return 400 if "must" in str(error) else 403, f"{error}\n"
        self.queue.add(lambda: self._verify(checked), f"websub hub: verifying {checked.callback}")
        return 202, "Accepted: the callback will be asked to confirm.\n"

    def _check(self, form: dict[str, str]) -> Request:
        mode = form.get("hub.mode", "")
        if mode not in ("subscribe", "unsubscribe"):
            raise Refused("hub.mode must be subscribe or unsubscribe")
        topic, callback = form.get("hub.topic", ""), form.get("hub.callback", "")
        if not self.topics(topic):
            example = self.url.removesuffix(PATH) + "/feeds/all.atom"
            raise Refused(f"hub.topic must be a feed of this site, such as {example}")
        scheme, host, _ = check_url(callback)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if (literal is not None or host == "localhost") and not allowed_address(
            "127.0.0.1" if literal is None else str(literal), self.allowed
        ):
            raise Refused(f"callbacks to {host} are not allowed")
        secret = form.get("hub.secret", "")
        if len(secret.encode()) > MAX_SECRET:
            raise Refused(f"hub.secret must be at most {MAX_SECRET} bytes")
        if scheme == "http" and secret:
            log.info("websub: a secret sent to an http callback (%s) may be read on the way", host)
        try:
            lease = int(form.get("hub.lease_seconds", DEFAULT_LEASE))
        except ValueError:
            raise Refused("hub.lease_seconds must be a whole number") from None
        lease = min(max(lease, LEASE_BOUNDS[0]), LEASE_BOUNDS[1])
        if mode == "subscribe":
            with self._db() as db:
                now = self.clock()
                per_topic = db.execute(
                    "SELECT count(*) FROM subscriptions WHERE topic = ? AND expires > ?",
                    (topic, now),
                ).fetchone()[0]
                per_host = sum(
                    urlsplit(row[0]).hostname == host
                    for row in db.execute(
                        "SELECT callback FROM subscriptions WHERE expires > ?", (now,)
                    )
                )
            if per_topic >= MAX_PER_TOPIC or per_host >= MAX_PER_HOST:
                raise Refused("too many subscriptions for this topic or callback host")
        return Request(mode, topic, callback, lease, secret)

    def _verify(self, request: Request) -> bool:
        """Ask the callback to confirm; keep (or drop) the subscription if it does."""
        challenge = secrets.token_urlsafe(24)
        query = {
            "hub.mode": request.mode,
            "hub.topic": request.topic,
            "hub.challenge": challenge,
            **({"hub.lease_seconds": str(request.lease)} if request.mode == "subscribe" else {}),
        }
        separator = "&" if urlsplit(request.callback).query else "?"
        try:
            answer = self.fetch(
                "GET", request.callback + separator + urlencode(query), self.allowed
            )
        except Refused as error:
            log.warning("websub: %s refused: %s", request.callback, error)
            return True  # a refusal is final: not tried again
        if not (200 <= answer.status < 300 and answer.body.strip() == challenge.encode()):
            log.info(
                "websub: %s did not confirm %s (%s)", request.callback, request.mode, answer.status
            )
            return True  # the subscriber said no: nothing to try again
        with self._db() as db:
            if request.mode == "subscribe":
                db.execute(
                    "INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?)",
                    (
                        request.topic,
                        request.callback,
                        request.secret,
                        self.clock() + request.lease,
                    ),
                )
            else:
                db.execute(
                    "DELETE FROM subscriptions WHERE topic = ? AND callback = ?",
                    (request.topic, request.callback),
                )
        log.info("websub: %s %sd to %s", request.callback, request.mode, request.topic)
        return True

    # -- delivery ------------------------------------------------------------------------

    def subscribers(self, topic: str) -> list[tuple[str, str]]:
        """(callback, secret) of each live subscription to `topic`."""
        with self._db() as db:
            now = self.clock()
            db.execute("DELETE FROM subscriptions WHERE expires <= ?", (now,))
            rows = db.execute(
                "SELECT callback, secret FROM subscriptions WHERE topic = ? AND expires > ?",
                (topic, now),
            ).fetchall()
        return [(str(callback), str(secret)) for callback, secret in rows]

    def count(self) -> int:
        """Live subscriptions (for /healthz)."""
        with self._db() as db:
            row = db.execute(
                "SELECT count(*) FROM subscriptions WHERE expires > ?", (self.clock(),)
            ).fetchone()
        return int(row[0])

    def changed(self, topic: str, body: bytes, content_type: str) -> None:
        """Send `body`, the topic's new bytes, to each of its subscribers (soon)."""
        for callback, secret in self.subscribers(topic):
            headers = {
                "Content-Type": content_type,
                "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"',
            }
            if secret:
                digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"

            def deliver(callback: str = callback, headers: dict[str, str] = headers) -> bool:
                try:
                    answer = self.fetch("POST", callback, self.allowed, body, headers)
                except Refused as error:
                    log.warning("websub: not delivered to %s: %s", callback, error)
                    return True
                if 200 <= answer.status < 300:
                    self.delivered += 1
                    return True
                if answer.status == 410:  # gone: the subscriber wants no more
                    with self._db() as db:
                        db.execute("DELETE FROM subscriptions WHERE callback = ?", (callback,))
                    return True
                return False

            self.queue.add(deliver, f"websub hub: {topic} to {callback}")

    def wait_idle(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def stop(self) -> None:
        self.queue.stop()


def parse_form(data: bytes) -> dict[str, str]:
    """A form-encoded body; the last of repeated fields."""
    return dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
