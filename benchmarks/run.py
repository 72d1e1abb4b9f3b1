"""The benchmark suite: start-up, live reload and serving, at several corpus sizes.

    python -m benchmarks.run [--sizes 1000,10000,100000] [--out docs/benchmarks.md]

For each size N it generates a corpus (benchmarks.corpus, reused when already there),
then measures against the real `feedsvc serve` (gunicorn, 2 workers, 127.0.0.1 only):

1. cold start: no cache; process start until every worker has answered every feed 200;
2. warm restart: the same with the cache the cold start left;
3. new file: one item file dropped; until every worker serves it, and the CPU it cost;
4. serving: wrk against /feeds/all.atom (200 and 304), and against benchmarks.floor,
   a bare Flask app serving the same bytes under the same gunicorn settings;

and peak RSS per worker (`feedsvc build` is measured against Hugo by
benchmarks.static_build, into the same report). The report (docs/benchmarks.md) is
rewritten except for the text under its `## Notes` heading. Every server is stopped by its
pid, every wait is bounded. `--serving-only` takes measure 4 alone, e.g. at 10,000 items:

    python -m benchmarks.run --sizes 10000 --serving-only --out /tmp/serving.md
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import yaml
from werkzeug.http import unquote_etag

from benchmarks import corpus, static_build
from benchmarks.floor import DocumentHeaders, save_document
from benchmarks.system import (
    BASE_URL,
    BIN,
    CLOCK_TICKS,
    TOP,
    compile_package,
    ensure_package,
    machine,
    machine_busy_seconds,
    own_cpu_seconds,
    replace_text,
    sizes,
)
from feedsvc import serving

HOST = "127.0.0.1"
WORKERS = 2
#: Every feed the readiness check asks for: all, weekly and each category, RSS and Atom.
FEED_NAMES = ("all", "weekly", *corpus.CATEGORIES)
READY_URLS = tuple(f"/feeds/{name}.{fmt}" for name in FEED_NAMES for fmt in ("rss", "atom"))
READY_ANSWERS = 4  # 200s per URL, from every worker
NEW_FILE_URL = "/feeds/all.atom"
#: Numbers each poll of NEW_FILE_URL for the access log, which names the worker that
#: answered it. A header, not a query: a feed's URL with a query answers 301 to the URL
#: without it, and a poll must be an aggregator's request.
POLL_HEADER = "x-bench-poll"
NEW_FILE_STREAK = 8  # consecutive responses with the new item first, from every worker
POLL_PAUSE = 0.02  # seconds between polling requests
SETTLE_AFTER = 1.0  # seconds after the new item is served everywhere, before reading CPU
WRK_ARGS = ("-t2", "-c16", "--latency")
QUIET_LOAD = 0.25  # cores the rest of the machine may use when a measurement starts
ATOM = "{http://www.w3.org/2005/Atom}"
PACKAGES = ("feedsvc", "Flask", "Werkzeug", "feedgen", "bleach", "PyYAML", "pyromark",
            "watchdog", "gunicorn")  # fmt: skip

#: gunicorn settings file: records when each worker has loaded the app, so readiness
#: polling starts when the workers are up instead of competing with them for the CPU.
GUNICORN_HOOKS = """\
import os
import time


def post_worker_init(worker):
    with open(os.environ["BENCH_LOADED_LOG"], "a") as log:
        log.write(f"{os.getpid()} {time.time()}\\n")
"""
#: wrk prints its numbers in mixed units; this script prints them once as JSON.
WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %.1f, '
    .. '"p99_us": %.1f, "errors": %d}\\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.status + e.timeout))
end
"""


class BenchError(RuntimeError):
    """A measurement that could not be taken (timeout, bad answer); the report says why."""


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def children(pid: int) -> list[int]:
    """The child processes of `pid` (gunicorn's workers, for its master)."""
    found: set[int] = set()
    tasks = Path(f"/proc/{pid}/task")
    try:
        for task in tasks.iterdir():
            found.update(int(c) for c in (task / "children").read_text().split())
        return sorted(found)
    except FileNotFoundError:
        if not tasks.exists():
            return []
    for stat in Path("/proc").glob("[0-9]*/stat"):  # kernels without .../children
        with contextlib.suppress(OSError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return sorted(found)


def cpu_ticks(pid: int, *, reaped: bool = False) -> int:
    """utime + stime of a process, all its threads, in clock ticks; with `reaped`, also
    that of the children it has waited for (the workers a gunicorn master replaced)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11 : 15 if reaped else 13])


_LIBC = ctypes.CDLL(None, use_errno=True)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, every thread (ended ones too), from its POSIX CPU clock:
    nanosecond resolution, where `/proc/<pid>/stat` counts 10 ms ticks, as coarse as a
    fifth of the reload CPU target."""
    clock = ctypes.c_int()
    error = _LIBC.clock_getcpuclockid(pid, ctypes.byref(clock))
    if error:
        raise BenchError(f"no CPU clock for pid {pid}: {os.strerror(error)}")
    return time.clock_gettime(clock.value)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmHWM for pid {pid}")


@dataclass
class LoadMeter:
    """Measures how busy the rest of the machine was during a window, in cores.

    "The rest" is every CPU second not spent by the measured server, by this process or
    by wrk: another developer's tests, a profiler, hypervisor steal. Numbers taken while
    it is well above zero are disturbed.
    """

    started: float = field(default_factory=time.perf_counter)
    busy: float = field(default_factory=machine_busy_seconds)
    ours: float = field(default_factory=own_cpu_seconds)

    def with_pids(self, pids: Sequence[int]) -> LoadMeter:
        """Count these processes as ours, from now on (their CPU so far is taken off)."""
        self.ours += sum(cpu_ticks(pid, reaped=True) for pid in pids) / CLOCK_TICKS
        return self

    def other_cores(self, pids: Sequence[int]) -> float:
        elapsed = time.perf_counter() - self.started
        busy = machine_busy_seconds() - self.busy
        server = sum(cpu_ticks(pid, reaped=True) for pid in pids) / CLOCK_TICKS
        ours = own_cpu_seconds() + server - self.ours
        return max(0.0, busy - ours) / elapsed if elapsed > 0 else 0.0


def fetch(
    port: int, path: str, headers: Mapping[str, str] | None = None, timeout: float = 120.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a new connection, so that any worker may answer it."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@dataclass
class Server:
    """A gunicorn master we started, its log files, and what its workers reported."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    started: float  # time.time() just before the process was started
    log: Path
    loaded_log: Path
    access_log: Path | None
    _access_offset: int = 0

    def workers(self) -> list[int]:
        return children(self.process.pid)

    def pids(self) -> list[int]:
        """The master and its workers."""
        return [self.process.pid, *self.workers()] if self.process.poll() is None else []

    def loaded(self) -> dict[int, float]:
        """Worker pid -> seconds from process start until it had loaded the app."""
        if not self.loaded_log.exists():
            return {}
        lines = (line.split() for line in self.loaded_log.read_text().splitlines())
        return {int(pid): float(when) - self.started for pid, when in lines}

    def new_answers(self) -> list[tuple[int, int, str, str]]:
        """Access-log lines written since the last call: (pid, status, path, the poll's
        number from POLL_HEADER, or "-")."""
        if self.access_log is None or not self.access_log.exists():
            return []
        with self.access_log.open("rb") as handle:
            handle.seek(self._access_offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._access_offset += len(complete)
        answers = []
        for line in complete.decode().splitlines():
            pid, status, path, poll = [*line.split(" ", 3), "", "", ""][:4]
            answers.append((int(pid.strip("<>")), int(status), path, poll.strip()))
        return answers

    def check_alive(self) -> None:
        """Fail if the server exited, or if gunicorn keeps killing its workers."""
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        timeouts = self.log.read_text(errors="replace").count("WORKER TIMEOUT")
        if timeouts >= 3 * WORKERS:
            raise BenchError(
                f"{self.name}: gunicorn killed workers {timeouts} times (WORKER TIMEOUT: a "
                "worker spent longer than gunicorn's --timeout, 30 s, loading or answering)"
            )

    def peak_rss_mb(self) -> float:
        """The largest VmHWM among the current workers."""
        return max((peak_rss_mb(pid) for pid in self.workers()), default=0.0)

    def booted_workers(self) -> int:
        """Workers gunicorn booted: more than WORKERS means some were killed and replaced."""
        return self.log.read_text(errors="replace").count("Booting worker")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the master, then SIGKILL to it and its workers if it does not exit."""
        if self.process.poll() is not None:
            return
        workers = self.workers()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in [*workers, self.process.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class Bench:
    """One run's fixed settings and the servers it has started."""

    work: Path
    seed: int
    duration: int
    ready_timeout: float
    repeats: int
    rounds: int
    quiet_wait: float
    serving_only: bool = False  # only the serving measure (wrk, feedsvc against the floor)
    servers: list[Server] = field(default_factory=list)

    def size_dir(self, n: int) -> Path:
        return self.work / str(n)

    def feedsvc_env(self, n: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDSVC_", "GUNICORN"))}
        env.update(
            FEEDSVC_ITEMS_DIR=str(self.size_dir(n) / "items"),
            FEEDSVC_BASE_URL=BASE_URL,
            FEEDSVC_CACHE_DIR=str(self.size_dir(n) / "cache"),
            FEEDSVC_TIMEZONE="UTC",
        )
        return env

    def cwd(self, n: int) -> Path:
        """An empty working directory: no feedsvc.toml is read."""
        folder = self.size_dir(n) / "cwd"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start(
        self, name: str, n: int, argv: Sequence[str], env: dict[str, str], access_log: bool
    ) -> Server:
        logs = self.size_dir(n) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        hooks = self.work / "gunicorn_hooks.py"
        hooks.write_text(GUNICORN_HOOKS)
        loaded_log, access = logs / f"{name}.loaded", logs / f"{name}.access"
        loaded_log.unlink(missing_ok=True)
        access.unlink(missing_ok=True)
        gunicorn_args = ["--config", str(hooks)]
        if access_log:  # which worker answered each request (and which poll it was)
            gunicorn_args += ["--access-logfile", str(access), "--access-logformat",
                              f"%(p)s %(s)s %(U)s %({{{POLL_HEADER}}}i)s"]  # fmt: skip
        env = {
            **env,
            "GUNICORN_CMD_ARGS": shlex.join(gunicorn_args),
            "BENCH_LOADED_LOG": str(loaded_log),
        }
        port = free_port()
        argv = [part.replace("{port}", str(port)) for part in argv]
        log = logs / f"{name}.log"
        with log.open("wb") as output:
            started = time.time()
            process = subprocess.Popen(
                argv, cwd=self.cwd(n), env=env, stdout=output, stderr=subprocess.STDOUT
            )
        server = Server(
            name, process, port, started, log, loaded_log, access if access_log else None
        )
        self.servers.append(server)
        return server

    def start_feedsvc(self, name: str, n: int, *, access_log: bool = True) -> Server:
        argv = [str(BIN / "feedsvc"), "serve", "--host", HOST, "--port", "{port}",
                "--workers", str(WORKERS)]  # fmt: skip
        return self.start(name, n, argv, self.feedsvc_env(n), access_log)

    def start_floor(self, n: int, document: Path) -> Server:
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"{HOST}:{{port}}",
            "--workers", str(WORKERS),
            *serving.command_line(),  # feedsvc's worker, threads and the rest, as `serve`
            "--pythonpath", str(TOP),
            f"benchmarks.floor:create_app({str(document)!r})",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN")}
        return self.start("floor", n, argv, env, access_log=False)

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


# -- waiting -------------------------------------------------------------------------------


def wait_loaded(server: Server, timeout: float) -> float:
    """Seconds from process start until every worker had loaded the app."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server.check_alive()
        loaded, workers = server.loaded(), server.workers()
        if len(workers) == WORKERS and all(pid in loaded for pid in workers):
            return max(loaded[pid] for pid in workers)
        time.sleep(0.02)
    raise BenchError(
        f"{server.name}: workers not loaded after {timeout:.0f} s "
        f"({server.booted_workers()} booted)"
    )


def wait_ready(server: Server, timeout: float) -> tuple[float, float, int, dict[str, int]]:
    """Seconds until loaded, seconds until every worker answered every feed 200, requests
    made, and the size of each feed.

    Feeds are requested once every worker has loaded the app (earlier requests would
    compete with the loading workers for the two cores); each URL must then be answered
    READY_ANSWERS times with 200, by every worker (the access log says which).
    """
    deadline = time.monotonic() + timeout
    loaded = wait_loaded(server, timeout)
    answered: dict[str, Counter[int]] = {url: Counter() for url in READY_URLS}
    sizes: dict[str, int] = {}
    pending, requests = set(READY_URLS), 0
    while pending:
        if time.monotonic() > deadline:
            raise BenchError(
                f"{server.name}: not ready after {timeout:.0f} s; pending {sorted(pending)}"
            )
        server.check_alive()
        for url in sorted(pending):
            requests += 1
            try:
                status, _, body = fetch(server.port, url, timeout=timeout)
            except (OSError, http.client.HTTPException):  # e.g. a worker killed meanwhile
                time.sleep(0.1)
                break
            if status == 200:
                sizes[url] = len(body)
        for pid, status, path, _poll in server.new_answers():
            if status == 200 and path in answered:
                answered[path][pid] += 1
        workers = set(server.workers())
        pending = {
            url
            for url in READY_URLS
            if sum(answered[url].values()) < READY_ANSWERS or not workers <= set(answered[url])
        }
    return loaded, time.time() - server.started, requests, sizes


def wait_idle(pids: Sequence[int], quiet: float = 1.0, timeout: float = 120.0) -> bool:
    """Until the processes have used no CPU for `quiet` seconds (a re-scan has finished)."""
    deadline = time.monotonic() + timeout
    last, since = [cpu_ticks(p) for p in pids], time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = [cpu_ticks(p) for p in pids]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    print(f"  warning: workers {list(pids)} never idle for {quiet} s", file=sys.stderr)
    return False


def wait_quiet(limit: float, pids: Sequence[int] = ()) -> None:
    """Give other work on the machine up to `limit` seconds to finish before measuring:
    until the rest of it (everything but `pids` and this process) uses < QUIET_LOAD cores."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        meter = LoadMeter().with_pids(pids)
        time.sleep(1.0)
        if meter.other_cores(pids) < QUIET_LOAD:
            return
    print(f"  warning: the machine is busy with other work (>= {QUIET_LOAD} cores)",
          file=sys.stderr)  # fmt: skip


def first_entry_title(atom: bytes) -> str | None:
    entry = ElementTree.fromstring(atom).find(f"{ATOM}entry")
    return None if entry is None else entry.findtext(f"{ATOM}title")


# -- measures ------------------------------------------------------------------------------


@dataclass
class Startup:
    loaded: float  # s until every worker had loaded the app
    ready: float  # s until every worker had answered every feed 200
    requests: int
    booted: int  # workers gunicorn booted (> WORKERS: some were killed)
    feed_bytes: dict[str, int]  # URL -> body size
    logged_reload_ms: list[float]  # the workers' own "reload: ... ms" log lines
    other_cores: float  # how busy the rest of the machine was meanwhile


@dataclass
class NewFile:
    served_all: float  # s from writing the file until every worker was seen serving it
    streak: float  # s until NEW_FILE_STREAK responses in a row had it first
    requests: int
    logged: Logged  # the reloads and renders the workers logged, with their CPU
    process_cpu_ms: float  # both workers' whole-process CPU, minus the polling baseline
    baseline_ms: float
    window: float
    other_cores: float


@dataclass
class Wrk:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    bytes_per_response: float
    other_cores: float


@dataclass
class Serving:
    document_bytes: int
    runs: dict[tuple[str, str], list[Wrk]]  # (server, status) -> one wrk run per round

    def pairs(self, code: str) -> list[tuple[Wrk, Wrk]]:
        """(feedsvc, floor) runs made back to back, one pair a round; rounds that other
        load disturbed are left out, unless every round was disturbed."""
        pairs = list(zip(self.runs["feedsvc", code], self.runs["floor", code], strict=True))
        quiet = [pair for pair in pairs if max(w.other_cores for w in pair) < QUIET_LOAD]
        return quiet or pairs

    def ratios(self, code: str) -> list[float]:
        """feedsvc / floor requests/s, round by round."""
        return [ours.requests_per_s / floor.requests_per_s for ours, floor in self.pairs(code)]

    def ratio(self, code: str) -> float:
        return statistics.median(self.ratios(code))


@dataclass
class SizeResult:
    n: int
    corpus_seconds: float | None = None  # None: reused from an earlier run
    health: dict[str, object] = field(default_factory=dict)
    cold: Startup | None = None
    warm: Startup | None = None
    new_files: list[NewFile] = field(default_factory=list)
    serving: Serving | None = None
    rss_mb: dict[str, float] = field(default_factory=dict)  # server name -> max worker VmHWM
    failures: list[str] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float | None:
        values = [mb for name, mb in self.rss_mb.items() if name not in ("floor", "master")]
        return max(values) if values else None


# The workers log each reload and each first-page render with its thread's CPU time.
RELOAD_LINE = re.compile(
    r"^\[(\d+)\] INFO reload: .*; ([\d.]+) ms \(([\d.]+) ms CPU\)$", re.MULTILINE
)
RENDER_LINE = re.compile(
    r"^\[(\d+)\] INFO rendered (\S+): \d+ bytes; [\d.]+ ms \(([\d.]+) ms CPU\)$", re.MULTILINE
)


@dataclass
class Logged:
    """What the workers logged from some byte of the server's log on."""

    reload_ms: list[float]  # wall time of each reload
    cpu_ms: dict[int, float]  # per worker: CPU of its reloads and renders
    renders: list[str]  # the documents rendered

    @property
    def total_cpu_ms(self) -> float:
        return sum(self.cpu_ms.values())


def logged(server: Server, since: int = 0) -> Logged:
    text = server.log.read_bytes()[since:].decode(errors="replace")
    cpu: dict[int, float] = defaultdict(float)
    reload_ms = []
    for pid, ms, cpu_ms in RELOAD_LINE.findall(text):
        reload_ms.append(float(ms))
        cpu[int(pid)] += float(cpu_ms)
    renders = []
    for pid, path, cpu_ms in RENDER_LINE.findall(text):
        renders.append(path)
        cpu[int(pid)] += float(cpu_ms)
    return Logged(reload_ms, dict(cpu), renders)


def ensure_corpus(bench: Bench, n: int) -> float | None:
    """Generate the corpus for `n` unless a complete one is there; seconds, or None if reused."""
    folder = bench.size_dir(n)
    items, marker = folder / "items", folder / "corpus.json"
    source = Path(corpus.__file__).read_bytes()
    wanted = {"count": n, "seed": bench.seed, "generator": hashlib.sha256(source).hexdigest()}
    if marker.exists() and json.loads(marker.read_text()) == wanted and items.is_dir():
        for extra in corpus.extra_files(items):  # left by an interrupted run
            extra.unlink()
        return None
    marker.unlink(missing_ok=True)
    shutil.rmtree(items, ignore_errors=True)
    started = time.perf_counter()
    corpus.generate(items, n, bench.seed)
    elapsed = time.perf_counter() - started
    marker.write_text(json.dumps(wanted))
    return elapsed


def measure_startup(bench: Bench, name: str, n: int) -> tuple[Server, Startup]:
    """Start feedsvc and wait until it is ready; the server is left running."""
    wait_quiet(bench.quiet_wait)
    meter = LoadMeter()
    server = bench.start_feedsvc(name, n)
    try:
        loaded, ready, requests, sizes = wait_ready(server, bench.ready_timeout)
        other = meter.other_cores(server.pids())
    except BaseException:
        server.stop()
        raise
    booted = server.booted_workers()
    reloads = logged(server).reload_ms
    startup = Startup(loaded, ready, requests, booted, sizes, reloads, other)
    return server, startup


def poll_new_item(server: Server, title: str, timeout: float) -> tuple[float, float, int]:
    """Poll NEW_FILE_URL until NEW_FILE_STREAK responses in a row, from every worker, show
    `title` first; return (s until every worker was seen serving it, s until the streak,
    requests), counted from the call."""
    started = time.perf_counter()
    seen: list[tuple[int, float, bool]] = []  # (request number, time, new item first)
    pid_of: dict[int, int] = {}
    while time.perf_counter() - started < timeout:
        server.check_alive()
        number = len(seen)
        status, _, body = fetch(server.port, NEW_FILE_URL, {POLL_HEADER: str(number)})
        if status != 200:
            raise BenchError(f"{NEW_FILE_URL} answered {status} while polling")
        seen.append((number, time.perf_counter() - started, first_entry_title(body) == title))
        for pid, _status, _path, poll in server.new_answers():
            if poll.isdigit():
                pid_of[int(poll)] = pid
        tail = seen[-NEW_FILE_STREAK:]
        workers = set(server.workers())
        if (
            len(tail) == NEW_FILE_STREAK
            and all(new for _, _, new in tail)
            and all(number in pid_of for number, _, _ in tail)
            and workers <= {pid_of[number] for number, _, _ in tail}
        ):
            first_new: dict[int, float] = {}  # per worker: first new answer after its last old
            for number, when, new in seen:
                worker = pid_of.get(number)
                if worker is not None and not new:
                    first_new.pop(worker, None)
                elif worker is not None:
                    first_new.setdefault(worker, when)
            return max(first_new[pid] for pid in workers), tail[-1][1], len(seen)
        time.sleep(POLL_PAUSE)
    raise BenchError(f"the new item was not served by every worker within {timeout:.0f} s")


def baseline_cpu(server: Server, requests: int, window: float) -> dict[int, float]:
    """Worker CPU seconds for `requests` polls, paced as the measurement's, over `window` s."""
    workers = server.workers()
    wait_idle(workers)
    before = {pid: cpu_seconds(pid) for pid in workers}
    started = time.perf_counter()
    for number in range(requests):
        fetch(server.port, f"{NEW_FILE_URL}?baseline={number}")
        time.sleep(POLL_PAUSE)
    time.sleep(max(0.0, window - (time.perf_counter() - started)))
    server.new_answers()  # skip the baseline's lines
    return {pid: cpu_seconds(pid) - before[pid] for pid in workers}


def measure_new_file(bench: Bench, server: Server, n: int, number: int) -> NewFile:
    """Drop one item file into the running server's folder; time and CPU until served.

    The CPU of the polling itself is measured again with no file change, twice, and the
    smaller of the two is subtracted: a periodic re-scan falls into one window at most.
    """
    workers = server.workers()
    wait_idle(workers)
    wait_quiet(bench.quiet_wait, server.pids())
    log_from = server.log.stat().st_size
    before = {pid: cpu_seconds(pid) for pid in workers}
    meter = LoadMeter().with_pids(server.pids())
    started = time.perf_counter()
    written = corpus.write_one(bench.size_dir(n) / "items", number, bench.seed)
    served_all, streak, requests = poll_new_item(server, written.title, bench.ready_timeout)
    time.sleep(SETTLE_AFTER)
    used = {pid: cpu_seconds(pid) - before[pid] for pid in workers}
    window = time.perf_counter() - started
    work = logged(server, log_from)
    other = meter.other_cores(server.pids())
    baselines = [baseline_cpu(server, requests, window) for _ in range(2)]
    baseline = min(baselines, key=lambda seconds: sum(seconds.values()))
    return NewFile(
        served_all=served_all,
        streak=streak,
        requests=requests,
        logged=work,
        process_cpu_ms=sum(used[pid] - baseline[pid] for pid in workers) * 1000,
        baseline_ms=sum(baseline.values()) * 1000,
        window=window,
        other_cores=other,
    )


def run_wrk(server: Server, script: Path, duration: int, headers: Mapping[str, str]) -> Wrk:
    argv = ["wrk", *WRK_ARGS, f"-d{duration}s", "-s", str(script)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://{HOST}:{server.port}{NEW_FILE_URL}")
    meter = LoadMeter().with_pids(server.pids())
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    other = meter.other_cores(server.pids())
    match = re.search(r"^WRK-JSON (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    data = json.loads(match.group(1))
    requests = max(1, data["requests"])
    return Wrk(
        requests_per_s=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        errors=data["errors"],
        bytes_per_response=data["bytes"] / requests,
        other_cores=other,
    )


def measure_serving(bench: Bench, result: SizeResult) -> Serving:
    """wrk against feedsvc and against the floor app serving the same bytes, alternately.

    Both servers run throughout; before each wrk run the suite waits until both are idle
    (an idle feedsvc still re-scans its folder) and the machine is quiet. Rounds
    alternate which server goes first, so that a drift in the machine's speed cancels.
    """
    document = bench.size_dir(result.n) / "floor" / "all.atom"
    script = bench.work / "wrk_report.lua"
    script.write_text(WRK_SCRIPT)
    server = bench.start_feedsvc("serve", result.n, access_log=False)  # no per-request log
    floor: Server | None = None
    runs: dict[tuple[str, str], list[Wrk]] = {}
    try:
        wait_loaded(server, bench.ready_timeout)
        size, etag = save_feed(server, document)
        floor = bench.start_floor(result.n, document)
        wait_loaded(floor, 60)
        status, headers, body = fetch(floor.port, NEW_FILE_URL)
        if (status, headers.get("ETag"), body) != (200, etag, document.read_bytes()):
            raise BenchError("the floor app does not serve the same bytes and ETag")
        for target in (server, floor):
            run_wrk(target, script, 2, {})  # warm-up: first renders, lazy imports
        for round_ in range(bench.rounds):
            order = {"feedsvc": server, "floor": floor}
            if round_ % 2:
                order = dict(reversed(order.items()))
            for code, headers in (("200", {}), ("304", {"If-None-Match": etag})):
                for name, target in order.items():
                    wait_idle([*server.workers(), *floor.workers()], quiet=0.5)
                    wait_quiet(bench.quiet_wait, target.pids())
                    wrk = run_wrk(target, script, bench.duration, headers)
                    runs.setdefault((name, code), []).append(wrk)
        result.rss_mb["serve"], result.rss_mb["floor"] = server.peak_rss_mb(), floor.peak_rss_mb()
    finally:
        server.stop()
        if floor is not None:
            floor.stop()
    return Serving(size, runs)


def save_feed(server: Server, document: Path) -> tuple[int, str]:
    """Save NEW_FILE_URL as feedsvc serves it, for the floor app; check its 304."""
    status, headers, body = fetch(server.port, NEW_FILE_URL)
    etag = headers.get("ETag", "")
    if status != 200 or not etag:
        raise BenchError(f"{NEW_FILE_URL} answered {status} with ETag {etag!r}")
    status_304, _, _ = fetch(server.port, NEW_FILE_URL, {"If-None-Match": etag})
    if status_304 != 304:
        raise BenchError(f"If-None-Match: {etag} answered {status_304}, not 304")
    saved = DocumentHeaders(
        path=NEW_FILE_URL, etag=unquote_etag(etag)[0], content_type=headers["Content-Type"]
    )
    save_document(document, body, saved)
    return len(body), etag


def health(server: Server) -> dict[str, object]:
    status, _, body = fetch(server.port, "/healthz")
    return json.loads(body) if status == 200 else {"status": status}


def measure_size(bench: Bench, n: int, log: Callable[[str], None]) -> SizeResult:
    """Every measure for one corpus size; a measure that fails is reported, not fatal."""
    result = SizeResult(n)
    result.corpus_seconds = ensure_corpus(bench, n)
    made = result.corpus_seconds
    log(f"corpus: {'reused' if made is None else f'generated in {made:.1f} s'}")

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        try:
            yield
        except (BenchError, OSError, subprocess.SubprocessError) as error:
            result.failures.append(f"{name}: {error}")
            log(f"{name} FAILED: {error}")

    if not bench.serving_only:
        measure_startups(bench, result, phase, log)
    with phase("serving"):
        result.serving = measured = measure_serving(bench, result)
        log(f"serving: feedsvc/floor {measured.ratio('200'):.2f} for 200s, "
            f"{measured.ratio('304'):.2f} for 304s")  # fmt: skip
    return result


def measure_startups(
    bench: Bench,
    result: SizeResult,
    phase: Callable[[str], contextlib.AbstractContextManager[None]],
    log: Callable[[str], None],
) -> None:
    """Cold start, warm restart and the new files, on servers of their own."""
    n = result.n
    items = bench.size_dir(n) / "items"
    shutil.rmtree(bench.size_dir(n) / "cache", ignore_errors=True)
    with phase("cold start"):
        server, result.cold = measure_startup(bench, "cold", n)
        try:
            result.health = health(server)
            log(f"cold start: loaded {result.cold.loaded:.2f} s, ready {result.cold.ready:.2f} s")
            result.rss_mb["cold"] = server.peak_rss_mb()
            result.rss_mb["master"] = peak_rss_mb(server.process.pid)
        finally:
            server.stop()
    try:
        with phase("warm restart"):
            server, result.warm = measure_startup(bench, "warm", n)
            try:
                log(
                    f"warm restart: loaded {result.warm.loaded:.2f} s, "
                    f"ready {result.warm.ready:.2f} s"
                )
                for number in range(1, bench.repeats + 1):
                    with phase(f"new file {number}"):
                        new = measure_new_file(bench, server, n, number)
                        result.new_files.append(new)
                        log(
                            f"new file {number}: every worker {new.served_all:.2f} s, "
                            f"CPU {new.logged.total_cpu_ms:.1f} ms as logged, "
                            f"{new.process_cpu_ms:.0f} ms by process clocks"
                        )
                result.rss_mb["warm"] = server.peak_rss_mb()
            finally:
                server.stop()
    finally:
        for extra in corpus.extra_files(items):
            extra.unlink()


# -- the report ----------------------------------------------------------------------------

Row = list[str]
SIZE_URLS = ("/feeds/all.atom", "/feeds/weekly.atom")  # their sizes go in the Corpus table
Check = tuple[str, str, bool | None]  # target, measured, met (None: not measured)


def calibrate(rounds: int = 5) -> float:
    """The machine's speed at the work that dominates a cold start: ms of CPU per fixed
    corpus body through Markdown and bleach (median of `rounds` passes over 40 bodies).

    The same code has measured up to twice as fast on one day as on another on the same
    kind of machine; this figure, taken at the start of a run and after the last size, says
    how fast the machine was, so that reports from different days can be compared.
    """
    from feedsvc import itemfile

    bodies = corpus.calibration_bodies()
    passes = []
    for _ in range(rounds + 1):  # the first pass builds the sanitiser and warms caches
        started = time.thread_time()
        for body, base in bodies:
            itemfile.render_markup(body, "markdown", base)
        passes.append((time.thread_time() - started) * 1000 / len(bodies))
    return statistics.median(passes[1:])


def versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for package in PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
        if package == "PyYAML":
            c_loader = getattr(yaml, "__with_libyaml__", False) and hasattr(yaml, "CSafeLoader")
            found[-1] += f" (C loader {'available' if c_loader else 'NOT available'})"
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    found.append((wrk.stdout + wrk.stderr).partition(" Copyright")[0].strip())
    return ", ".join(found)


def code_version() -> str:
    """The commit, and whether feedsvc had uncommitted changes (it is measured as it is)."""

    def git(*args: str) -> str:
        argv = ["git", "-C", str(TOP), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()

    changed = git("status", "--porcelain", "--", "feedsvc", "pyproject.toml").splitlines()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = f", with uncommitted changes to {len(changed)} file(s) of feedsvc" if changed else ""
    return f"commit {commit}{dirty}"


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def spread(values: Sequence[float], unit: str, digits: int = 2) -> str:
    """The median, and the range when there is more than one value."""
    if not values:
        return "–"
    middle = f"{statistics.median(values):.{digits}f}" + (f" {unit}" if unit else "")
    if len(values) == 1:
        return middle
    return f"{middle} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def check(
    label: str, value: float | None, limit: float, shown: str, at_least: bool = False
) -> Check:
    """One target: `shown` formats the value; the target is `value <= limit` (or >=)."""
    if value is None:
        return (label, "–", None)
    return (label, shown.format(value), value >= limit if at_least else value <= limit)


def target_checks(results: Mapping[int, SizeResult]) -> list[Check]:
    small, large = results.get(10_000), results.get(100_000)
    cold_10k = small.cold.ready if small and small.cold else None
    warm_10k = small.warm.ready if small and small.warm else None
    cold_100k = large.cold.ready if large and large.cold else None
    growth = cold_100k / cold_10k if cold_10k and cold_100k else None
    new_files = large.new_files if large else []
    served = statistics.median([f.served_all for f in new_files]) if new_files else None
    cpu = statistics.median([f.logged.total_cpu_ms for f in new_files]) if new_files else None
    checks = [
        check("cold start, 10k items ≤ 4 s", cold_10k, 4, "{:.2f} s"),
        check("warm restart, 10k items ≤ 1 s", warm_10k, 1, "{:.2f} s"),
        check("cold start, 100k items ≤ 40 s", cold_100k, 40, "{:.2f} s"),
        check("cold start, 100k no worse than linear from 10k", growth, 10, "{:.1f}× the 10k"),
        check("peak RSS per worker, 100k items ≤ 400 MB",
              large.peak_rss_mb if large else None, 400, "{:.0f} MB"),
        check("new file served by every worker, 100k items ≤ 2 s (median)", served, 2,
              "{:.2f} s"),
        check("CPU for that reload (both workers), 100k items ≤ 50 ms (median)", cpu, 50,
              "{:.0f} ms"),
    ]  # fmt: skip
    for n, result in sorted(results.items()):
        for code in ("200", "304"):
            value = result.serving.ratio(code) if result.serving else None
            label = f"feed {code} throughput ≥ 0.9 × floor, {n:,} items (median of rounds)"
            checks.append(check(label, value, 0.9, "{:.2f} × floor", at_least=True))
    return checks


def table(header: Sequence[str], rows: Sequence[Row]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def corpus_row(r: SizeResult) -> Row:
    made = "reused" if r.corpus_seconds is None else seconds(r.corpus_seconds)
    counts = [str(r.health.get(key, "–")) for key in ("items", "errors", "warnings")]
    sizes = r.cold.feed_bytes if r.cold else {}
    shown = [f"{sizes[url] / 1e6:.2f} MB" if url in sizes else "–" for url in SIZE_URLS]
    return [f"{r.n:,}", made, *counts, *shown]


def startup_row(n: int, startup: Startup | None) -> Row:
    if startup is None:
        return [f"{n:,}", *["–"] * (len(STARTUP_HEADER) - 1)]
    logged = ", ".join(f"{ms / 1000:.2f}" for ms in startup.logged_reload_ms) or "–"
    ready = f"**{seconds(startup.ready)}**"
    return [f"{n:,}", seconds(startup.loaded), ready, str(startup.requests), logged,
            str(startup.booted), f"{startup.other_cores:.2f}"]  # fmt: skip


def new_file_row(r: SizeResult) -> Row:
    files = r.new_files

    def each(values: Callable[[NewFile], Sequence[float]], digits: int = 0) -> str:
        return "; ".join(", ".join(f"{v:.{digits}f}" for v in values(f)) for f in files) or "–"

    renders = Counter(path for f in files for path in f.logged.renders)
    return [
        f"{r.n:,}",
        f"**{spread([f.served_all for f in files], 's')}**",
        spread([f.streak for f in files], "s"),
        f"**{spread([f.logged.total_cpu_ms for f in files], 'ms', 1)}**",
        each(lambda f: list(f.logged.cpu_ms.values()), 1),
        ", ".join(f"{path} ×{count}" for path, count in sorted(renders.items())) or "–",
        spread([f.process_cpu_ms for f in files], "ms", 0),
        spread([f.baseline_ms for f in files], "ms", 0),
        each(lambda f: [f.requests]),
        each(lambda f: f.logged.reload_ms),
        spread([f.other_cores for f in files], "", 2),
    ]


def medians(runs: Sequence[Sequence[Wrk]], value: Callable[[Wrk], float], shown: str) -> str:
    """The median of `value` over each server's rounds, as "feedsvc / floor"."""
    return " / ".join(shown.format(statistics.median(value(w) for w in each)) for each in runs)


def serving_rows(r: SizeResult) -> list[Row]:
    s = r.serving
    if s is None:
        return []
    rows = []
    for code in ("200", "304"):
        pairs = s.pairs(code)
        runs = ([ours for ours, _ in pairs], [floor for _, floor in pairs])
        used = f"{len(pairs)} of {len(s.runs['feedsvc', code])}"
        rows.append([
            f"{r.n:,}", code, used, medians(runs, lambda w: w.requests_per_s, "{:,.0f}"),
            f"**{spread(s.ratios(code), '')}**", medians(runs, lambda w: w.p99_ms, "{:.1f}"),
            medians(runs, lambda w: w.p50_ms, "{:.1f}"),
            medians(runs, lambda w: w.bytes_per_response, "{:,.0f}"),
            medians(runs, lambda w: w.errors, "{:.0f}"),
            " / ".join(f"{max(w.other_cores for w in each):.2f}" for each in runs),
        ])  # fmt: skip
    return rows


def rss_row(r: SizeResult) -> Row:
    phases = [f"{r.rss_mb[k]:.0f}" if k in r.rss_mb else "–" for k in ("cold", "warm", "serve")]
    peak = "–" if r.peak_rss_mb is None else f"**{r.peak_rss_mb:.0f}**"
    floor = f"{r.rss_mb['floor']:.0f}" if "floor" in r.rss_mb else "–"
    master = f"{r.rss_mb['master']:.0f}" if "master" in r.rss_mb else "–"
    return [f"{r.n:,}", *phases, peak, master, floor]


STARTUP_HEADER = ["items", "workers loaded the app", "every feed 200 from every worker",
                  "requests",
                  "initial reload per worker, as logged (s)", "workers booted",
                  "other load (cores)"]  # fmt: skip


def render_report(results: Sequence[SizeResult], context: Mapping[str, str]) -> str:
    """The generated part of docs/benchmarks.md: run details, targets, one table per measure."""
    checks = target_checks({r.n: r for r in results})
    status = {None: "not measured", True: "met", False: "**missed**"}
    failures = [f"- {r.n:,} items: {failure}" for r in results for failure in r.failures]
    out = [
        "# feedsvc benchmarks",
        "",
        "<!-- Written by `python -m benchmarks.run`. A rerun rewrites everything above the",
        "     Notes heading but the static-build section (benchmarks.static_build writes",
        "     it) and keeps the Notes, from their heading line on, as they are. -->",
        "",
        f"- **Date**: {context['date']} (the run took {context['elapsed']})",
        f"- **Command**: `{context['command']}`",
        f"- **Code**: {context['code']}",
        f"- **Machine**: {machine()}",
        f"- **Machine speed**: {context['calibration']}",
        f"- **Software**: {versions()}",
        "",
        "## Targets",
        "",
        *table(["target", "measured", "status"], [[t, m, status[met]] for t, m, met in checks]),
        *(["**Measurements that failed:**", "", *failures, ""] if failures else []),
        "## Corpus",
        "",
        *table(["items", "generated in", "/healthz items", "errors", "warnings", *SIZE_URLS],
               [corpus_row(r) for r in results]),
        "## Cold start (no cache)",
        "",
        *table(STARTUP_HEADER, [startup_row(r.n, r.cold) for r in results]),
        "## Warm restart (the cache the cold start left)",
        "",
        *table(STARTUP_HEADER, [startup_row(r.n, r.warm) for r in results]),
        "## New file dropped into items/ (median, range)",
        "",
        *table(["items", "served by every worker", f"{NEW_FILE_STREAK} in a row",
                "reload and render CPU, both workers (logged)", "per worker (ms)",
                "renders (in all runs)", "whole-process CPU minus baseline",
                "baseline CPU", "polls", "reloads as logged (ms)", "other load (cores)"],
               [new_file_row(r) for r in results]),
        "## Serving /feeds/all.atom: feedsvc and the Flask floor (wrk)",
        "",
        *table(["items", "status", "rounds used", "req/s (feedsvc / floor)",
                "feedsvc / floor, per round",
                "p99 ms", "p50 ms", "bytes per response", "errors", "max other load (cores)"],
               [row for r in results for row in serving_rows(r)]),
        "## Peak RSS per worker (VmHWM, MB = 10⁶ bytes)",
        "",
        *table(["items", "cold server", "warm server (after the new files)",
                "serving server (after wrk)", "max feedsvc worker",
                "cold server's master (loads, with --preload)", "floor app"],
               [rss_row(r) for r in results]),
        METHOD.strip(),
        "",
    ]  # fmt: skip
    return "\n".join(out)


METHOD = f"""
## Method

- **Corpus**: `python -m benchmarks.corpus` (seed 1): item files across
  {len(corpus.CATEGORIES)} categories, dated 2023-01-01..2024-12-31 with times and no
  timezone, 2-4 KB Markdown bodies with raw HTML for the sanitiser. Generated once per
  size under the work folder and reused while its marker (count, seed, generator hash)
  matches. The files are in the page cache when measured: "cold" means without
  feedsvc's cache, not a cold disk.
- **Servers**: `.venv/bin/feedsvc serve --host 127.0.0.1 --port P --workers {WORKERS}` with
  `FEEDSVC_ITEMS_DIR`, `FEEDSVC_BASE_URL={BASE_URL}`, `FEEDSVC_CACHE_DIR`,
  `FEEDSVC_TIMEZONE=UTC`, in an empty working directory (no feedsvc.toml), with the
  package's bytecode written first, as a wheel's install does. Extra gunicorn
  settings come through `GUNICORN_CMD_ARGS`: a `post_worker_init` hook that records when
  each worker has loaded the app and, except for the serving measure, an access log that
  names the pid that answered each request. Servers are stopped with SIGTERM to the
  master's pid.
- **Cold start / warm restart**: wall time from starting the process until every worker
  has answered each of the {len(READY_URLS)} feeds, `/feeds/{{all,weekly,<category>}}` in
  RSS and Atom, with 200, at least {READY_ANSWERS} times per URL with every worker among
  them (from the access log). Feeds are requested one at a time on new connections, from
  the moment every worker has loaded the app ("workers loaded the app"), so that polling
  does not compete with loading workers for the two cores. The cold start deletes the
  cache folder first; the warm restart keeps it.
- **New file**: on the warm server, once its workers are idle, one item file dated after
  every other item is written (`benchmarks.corpus.write_one`) and `{NEW_FILE_URL}` is
  polled every {POLL_PAUSE * 1000:.0f} ms on new connections until {NEW_FILE_STREAK}
  responses in a row, from every worker, have it as their first entry. "Served by every
  worker" is the slowest worker's first response with the new item after its last one
  without it. The CPU the change cost ("reload and render CPU", the target) is what the
  workers log for it, from the write until {SETTLE_AFTER:.0f} s after the item was
  served everywhere: each reload and each feed rendered, with the CPU clock of the
  thread that did it (`time.thread_time`), summed over both workers; the documents
  rendered are listed. Beside it, as a check on what the log leaves out (the watcher's
  handling of the events, the requests), the workers' whole-process CPU clocks
  (`clock_getcpuclockid`, every thread) over the same window minus a baseline: the same
  number of requests, paced the same, over the same wall time, with no file change
  (measured twice; the smaller counts). A periodic re-scan that falls into a window (or
  into both baselines, which makes the difference negative) makes that figure noisy,
  which is why it is not the target. The measure is repeated (`--repeats`) with a new
  file each time, and the median is reported with the range in parentheses.
- **Machine speed**: the CPU time of one fixed body through Markdown and bleach
  (`calibrate`: median of five passes over 40 generated bodies), taken at the start
  and after the last size. The same code has run up to twice as fast on one day as on
  another on this kind of machine; the figure says how fast it was during this run.
- **Serving**: a fresh feedsvc server on the same cache (no access log) and, beside it,
  `benchmarks/floor.py` (Flask; the same body, ETag and Content-Type, from memory;
  `make_conditional` for the 304) under the same gunicorn settings (`--workers {WORKERS}
  {shlex.join(serving.command_line())}`, feedsvc's worker and threads: feedsvc.serving).
  After a 2-s wrk warm-up of each, in rounds (`--rounds`):
  `wrk {" ".join(WRK_ARGS)} -d<duration> http://127.0.0.1:P{NEW_FILE_URL}` against one
  server then the other, and the same with `-H 'If-None-Match: <its ETag>'`; the order
  alternates from round to round, and before each run the suite waits until both servers
  are idle (an idle feedsvc still re-scans its folder) and the machine is quiet. A Lua
  `done()` hook prints wrk's numbers as JSON. The ratio is taken per round, between runs
  made back to back, and its median is the result; req/s and latencies are medians of
  the rounds. Rounds in which either run saw other load of {QUIET_LOAD} cores or more
  are left out ("rounds used"), unless all were. wrk shares the 2 cores with the
  servers, equally for both.
- **Other load**: the CPU the rest of the machine used during a measurement, in cores:
  busy time from `/proc/stat` minus the CPU of the server's processes (with the workers
  gunicorn replaced), of this script and of wrk. Anything well above 0 (another
  developer's tests or profiler, hypervisor steal) means that row was disturbed and
  should be taken again. Before each measurement the suite waits (up to `--quiet-wait`
  seconds) for that load to drop below {QUIET_LOAD} cores.
- **Peak RSS**: the largest `VmHWM` among a server's workers, read just before it is
  stopped; "max feedsvc worker" is the largest over the cold, warm and serving servers.
  `feedsvc serve` preloads: the master loads the items and renders the first pages, then
  forks the workers, which start with the master's resident pages (shared, but counted
  in each worker's RSS); the master's own peak is shown beside them.
- **Build**: `feedsvc build` against Hugo, cold, warm and after one edit, with its time,
  memory and output, is the section `python -m benchmarks.static_build` writes into the
  same report; reruns of this suite keep it.
"""


NOTES_HEADING = re.compile(r"^## Notes[ \t]*$", re.MULTILINE)
NOTES_PLACEHOLDER = "## Notes\n\n_Profile notes and analysis, written by hand; kept by reruns._\n"


def kept_notes(path: Path) -> str:
    """The report's hand-written part: from its `## Notes` heading line to the end.

    A report with no such line is refused rather than overwritten: whatever was written
    by hand in it would be lost.
    """
    if not path.exists():
        return NOTES_PLACEHOLDER
    old = path.read_text(encoding="utf-8")
    match = NOTES_HEADING.search(old)
    if match is None:
        raise BenchError(
            f"{path} has no '## Notes' heading line; add one above the text written by hand "
            "(it is kept from there on), or move the file away"
        )
    return old[match.start() :]


def write_report(path: Path, generated: str) -> None:
    """Write the report, keeping everything from an existing `## Notes` heading on, and
    the static-build section."""
    notes = kept_notes(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    # The section benchmarks.static_build writes (between its markers) is kept too, at
    # the end of the generated part, unless it is inside the notes already.
    section = static_build.SECTION.search(old)
    if section and section.start() < len(old) - len(notes):
        generated = generated.rstrip("\n") + "\n\n" + section.group(0)
    replace_text(path, generated.rstrip("\n") + "\n\n" + notes)


# -- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    option = parser.add_argument
    option("--sizes", type=sizes, default=[1000, 10_000, 100_000], help="corpus sizes")
    option("--out", type=Path, default=Path("docs/benchmarks.md"), help="the report")
    option("--work-dir", type=Path, default=Path("/tmp/feedsvc-bench"), help="corpora, logs")
    option("--seed", type=int, default=1, help="corpus seed")
    option("--duration", type=int, default=10, help="seconds per wrk run")
    option("--repeats", type=int, default=5, help="new-file measurements per size")
    option("--rounds", type=int, default=3, help="wrk rounds per server and size")
    option("--quiet-wait", type=float, default=60, help="max seconds to wait for other load")
    option("--ready-timeout", type=float, default=600, help="seconds, per server start")
    option("--serving-only", action="store_true",
           help="only the serving measure: wrk against feedsvc and the floor app")  # fmt: skip
    args = parser.parse_args(argv)
    if not (BIN / "feedsvc").exists():
        parser.error(f"{BIN / 'feedsvc'} not found: run with the project's .venv/bin/python")
    try:
        kept_notes(args.out)  # before an hour of measuring, not after
    except BenchError as error:
        parser.error(str(error))
    ensure_package("wrk")
    compile_package()
    # `kill <pid>` must still stop the servers: SystemExit runs the `finally` below.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    bench = Bench(
        work=args.work_dir.resolve(),
        seed=args.seed,
        duration=args.duration,
        ready_timeout=args.ready_timeout,
        repeats=args.repeats,
        rounds=args.rounds,
        quiet_wait=args.quiet_wait,
        serving_only=args.serving_only,
    )
    bench.work.mkdir(parents=True, exist_ok=True)
    started, code = datetime.now(UTC), code_version()
    speed_at_start = calibrate()
    arguments = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "benchmarks.run", *arguments])
    context = {"date": f"{started:%Y-%m-%d %H:%M} UTC", "command": command}
    results: list[SizeResult] = []
    try:
        for n in args.sizes:

            def log(message: str, n: int = n) -> None:
                print(f"[{n:>7,}] {message}", file=sys.stderr, flush=True)

            results.append(measure_size(bench, n, log))
            minutes = (datetime.now(UTC) - started).total_seconds() / 60
            now = code_version()
            context["elapsed"] = f"{minutes:.1f} min"
            context["calibration"] = (
                f"{speed_at_start:.2f} ms at the start, {calibrate():.2f} ms after the last size "
                "(CPU per fixed body through Markdown and bleach: `benchmarks.run.calibrate`)"
            )
            context["code"] = code if now == code else f"{code} at the start; {now} at the end"
            write_report(args.out, render_report(results, context))
    finally:
        bench.stop_all()
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
