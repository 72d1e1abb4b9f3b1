"""WebSub publishing: tell the hubs a feed changed, so that subscribers are pushed its new
bytes instead of polling.

`Publisher.changed(topic)` is called (by `Documents.on_change`) for each live feed's first
page whose bytes changed, in the one worker that saw the change first (the persistent
cache decides: `Cache.modified`), whether a file event, a scheduled item coming due or a
week closing made it. A thread of its own then sends each hub one publish request per
topic (`hub.mode=publish`, `hub.url=<topic>`, form-encoded), never on a request's path;
a hub that fails or does not answer is asked again after 1, 2, 4, 8 and 16 seconds,
then given up on with a warning (`Retrying`, which the built-in hub's requests use too).
A topic already waiting for a hub is not queued twice.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial

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


class Retrying:
    """A thread of its own that runs tasks (outbound requests) off the request path: a
    task that returns False, or raises, is run again after each of `delays` in turn, then
    given up on with a warning. A task whose `key` is already waiting is not queued
    twice. A forked child starts with an empty queue (the parent's stays the parent's).
    """

    def __init__(
        self,
        name: str,
        delays: Sequence[float] = RETRY_DELAYS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.delays = tuple(delays)
        self.now = now
        self._reset()
        lifecycle.register(self)

    def _reset(self) -> None:
        self._condition = threading.Condition()
        self._due: list[tuple[float, int, int, Task]] = []  # (when, order, attempt, task)
        self._order = 0
        self._waiting: set[Hashable] = set()
        self._busy = 0  # tasks running
        self._thread: threading.Thread | None = None
        self._stopped = False

    def add(self, run: Callable[[], bool], what: str, key: Hashable = None) -> None:
        """Run `run()` soon; `what` names it in the log."""
        with self._condition:
            if key is not None:
                if key in self._waiting:
                    return
                self._waiting.add(key)
            self._push(Task(run, what, key), 0, 0.0)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def _push(self, task: Task, attempt: int, delay: float) -> None:
        self._order += 1
        heapq.heappush(self._due, (self.now() + delay, self._order, attempt, task))
        self._condition.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or running (for tests and a clean stop)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._due or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def stop(self) -> None:
        """End the thread (what is queued is dropped) and follow no more forks."""
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
                    self._condition.wait(self._due[0][0] - self.now() if self._due else None)
                if self._stopped:
                    return
                _, _, attempt, task = heapq.heappop(self._due)
                self._busy += 1
            try:
                done = task.run()
            except Exception as error:  # no answer: refused, timed out, a bad address
                log.info("%s: %s: %s", task.what, type(error).__name__, error)
                done = False
            with self._condition:
                self._busy -= 1
                if not done and attempt < len(self.delays):
                    self._push(task, attempt + 1, self.delays[attempt])
                else:
                    if not done:
                        log.warning("%s: given up after %d tries", task.what, attempt + 1)
                    self._waiting.discard(task.key)
                self._condition.notify_all()

    # -- forking (lifecycle.ForkAware) -------------------------------------------------------

    def before_fork(self) -> None:
        """Nothing to hold: a task under way finishes in the parent."""

    def after_fork(self, child: bool) -> None:
        if child:
            self._reset()


@dataclass(frozen=True, eq=False)
class Task:
    run: Callable[[], bool]  # True: done; False: try again later
    what: str
    key: Hashable


class Publisher:
    """Publish requests to the hubs, sent by a `Retrying` thread (see the module)."""

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
        self.sent = 0  # publish requests a hub accepted
        self.queue = Retrying("feedsvc-websub", delays, now)

    def changed(self, topic: str) -> None:
        """Tell every hub that `topic` changed (soon, from the thread); a hub not yet told
        of an earlier change of it is told once."""
        for hub in self.hubs:
            self.queue.add(
                partial(self._tell, hub, topic), f"websub: {hub} of {topic}", (hub, topic)
            )

    def _tell(self, hub: str, topic: str) -> bool:
        status = self.send(hub, topic)
        if 200 <= status < 300:
            self.sent += 1
            log.info("websub: told %s that %s changed", hub, topic)
            return True
        log.info("websub: %s answered %s for %s", hub, status, topic)
        return False

    def wait_idle(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def stop(self) -> None:
        self.queue.stop()
