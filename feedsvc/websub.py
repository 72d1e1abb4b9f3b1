"""WebSub publishing: tell the hubs a feed changed, so that subscribers are pushed its new
bytes instead of polling.

`Publisher.changed(topic)` is called (by `Documents.on_change`) for each live feed's first
page whose bytes changed, in the one worker that saw the change first (the persistent
cache decides: `Cache.modified`), whether a file event, a scheduled item coming due or a
week closing made it. A thread of its own then sends each hub one publish request per
topic (`hub.mode=publish`, `hub.url=<topic>`, form-encoded), never on a request's path;
a hub that fails or does not answer is asked again after 1, 2, 4, 8 and 16 seconds,
then given up on with a warning. A topic already waiting for a hub is not queued twice.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence

from feedsvc import lifecycle

log = logging.getLogger(__name__)

RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before each new try
TIMEOUT = 10.0  # seconds for a hub to answer one request
MAX_ANSWER = 64 * 1024  # bytes of a hub's answer read (for the log), at most

#: Sends one publish request: (hub, topic) -> the hub's status (an exception: no answer).
Send = Callable[[str, str], int]


def post_publish(hub: str, topic: str) -> int:
    data = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": topic}).encode()
    request = urllib.request.Request(
        hub, data, {"Content-Type": "application/x-www-form-urlencoded"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read(MAX_ANSWER)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class Publisher:
    """A queue of publish requests and the thread that sends them (see the module)."""

    def __init__(
        self,
        hubs: Sequence[str],
        *,
        send: Send = post_publish,
        delays: Sequence[float] = RETRY_DELAYS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hubs = tuple(hubs)
        self.send = send
        self.delays = tuple(delays)
        self.now = now
        self.sent = 0  # publish requests a hub accepted
        self._reset()
        lifecycle.register(self)

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._due: list[tuple[float, int, str, str]] = []  # (when, attempt, hub, topic)
        self._waiting: set[tuple[str, str]] = set()
        self._busy = 0  # requests being sent
        self._thread: threading.Thread | None = None
        self._stopped = False

    def changed(self, topic: str) -> None:
        """Tell every hub that `topic` changed (soon, from the thread)."""
        with self._condition:
            for hub in self.hubs:
                if (hub, topic) not in self._waiting:
                    self._waiting.add((hub, topic))
                    heapq.heappush(self._due, (self.now(), 0, hub, topic))
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="feedsvc-websub", daemon=True
                )
                self._thread.start()
            self._condition.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or being sent (for tests and a clean stop)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        lifecycle.unregister(self)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopped and (not self._due or self._due[0][0] > self.now()):
                    wait = self._due[0][0] - self.now() if self._due else None
                    self._condition.wait(wait)
                if self._stopped:
                    return
                _, attempt, hub, topic = heapq.heappop(self._due)
                self._waiting.discard((hub, topic))
                self._busy += 1
            try:
                status: int | str = self.send(hub, topic)
            except Exception as error:  # no answer: refused, timed out, a bad address
                status = f"{type(error).__name__}: {error}"
            with self._condition:
                self._busy -= 1
                if isinstance(status, int) and 200 <= status < 300:
                    self.sent += 1
                    log.info("websub: told %s that %s changed", hub, topic)
                elif attempt < len(self.delays) and (hub, topic) not in self._waiting:
                    log.info("websub: %s answered %s for %s; trying again", hub, status, topic)
                    self._waiting.add((hub, topic))
                    due = self.now() + self.delays[attempt]
                    heapq.heappush(self._due, (due, attempt + 1, hub, topic))
                elif attempt >= len(self.delays):
                    log.warning("websub: %s answered %s for %s; given up", hub, status, topic)
                self._condition.notify_all()

    # -- forking (lifecycle.ForkAware) -------------------------------------------------------

    def before_fork(self) -> None:
        """Nothing to hold: a request being sent finishes in the parent."""

    def after_fork(self, child: bool) -> None:
        if child:  # the parent's queue and thread stay the parent's
            self._reset()
