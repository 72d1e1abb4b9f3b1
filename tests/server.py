"""Start the real gunicorn server on 127.0.0.1 for end-to-end tests, and stop it by its pid."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    access_log: Path

    def request(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection, so that any worker may answer it."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def worker_pids(self) -> set[str]:
        """The pids of the workers that answered so far (from the access log)."""
        lines = self.access_log.read_text().splitlines()
        return {line.split()[0] for line in lines if line.strip()}


def feedsvc_serve(workers: int = 2) -> list[str]:
    """`feedsvc serve` on the port `running_server` picks, as an operator starts it."""
    script = Path(sys.executable).with_name("feedsvc")
    return [str(script), "serve", "--host", "127.0.0.1", "--port", "{port}",
            "--workers", str(workers)]  # fmt: skip


#: Workers gunicorn.conf.py (the repository's) starts, as `feedsvc serve` does.
DEFAULT_WORKERS = 2


@contextmanager
def running_server(
    env: Mapping[str, str] | None = None,
    workers: int | None = None,
    argv: list[str] | None = None,
    port: int | None = None,
    *,
    gunicorn: bool = True,
) -> Iterator[Server]:
    """`gunicorn wsgi:app` run from the repository (or `argv`), until the block ends.

    gunicorn then reads the repository's gunicorn.conf.py, as an operator's would: no
    flag but the address (and `--workers`, when given) is added to its settings. With
    `argv`, `workers` is only how many workers to wait for; a command that is not
    gunicorn (`flask run`; `gunicorn=False`) is ready once it answers. The command runs
    in a process group of its own, which is stopped whole (`make run` starts gunicorn
    as a child).
    """
    port = port or free_port()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    access_log = log_dir / f"feedsvc-access-{port}.log"
    access_log.write_text("")
    command = [part.format(port=port) for part in argv] if argv else [
        sys.executable, "-m", "gunicorn",
        "--bind", f"127.0.0.1:{port}",
        *(["--workers", str(workers)] if workers else []),
        "wsgi:app",
    ]  # fmt: skip
    # gunicorn reads extra settings from GUNICORN_CMD_ARGS: the access log names the
    # pid of the worker that answered each request.
    logging = f"--access-logfile {access_log} --access-logformat '%(p)s %(s)s %(r)s'"
    process = subprocess.Popen(
        command,
        cwd=TOP,
        env={**os.environ, **(env or {}), "GUNICORN_CMD_ARGS": logging},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server = Server(port, process, access_log)
    try:
        _wait_until_ready(server, (workers or DEFAULT_WORKERS) if gunicorn else 0)
        yield server
    finally:
        stop(process, signal.SIGTERM, group=True)
        access_log.unlink(missing_ok=True)


def stop(process: subprocess.Popen[bytes], how: signal.Signals, *, group: bool = False) -> None:
    """Stop a server we started, by its own pid (or its process group's id, the same
    number, for one started in a session of its own): gracefully, then for sure."""

    def send(signal_number: signal.Signals) -> None:
        try:
            if group:
                os.killpg(process.pid, signal_number)
            else:
                process.send_signal(signal_number)
        except ProcessLookupError:
            pass  # gone already

    send(how)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


def _wait_until_ready(server: Server, workers: int, timeout: float = 30) -> None:
    """Until every worker has answered: a worker still booting would load late."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            stderr = server.process.stderr.read().decode() if server.process.stderr else ""
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{stderr}")
        try:
            status, _, _ = server.request("/healthz")
        except OSError:
            time.sleep(0.1)
            continue
        if status == 200 and len(server.worker_pids()) >= workers:
            return
    raise RuntimeError(f"gunicorn did not answer /healthz from {workers} workers in time")


#: Seconds a running server has to show a change in every worker: generous, so that only
#: a fault fails a test (the live-reload target is measured in benchmarks/).
DEADLINE = 15.0
ROUND = 16  # concurrent requests per look, so that every worker answers


def everywhere(server: Server, check: Callable[[Server], bool], what: str = "changed") -> None:
    """Until a round of concurrent requests (every worker answering) all pass `check`."""
    deadline = time.monotonic() + DEADLINE
    with ThreadPoolExecutor(max_workers=ROUND) as pool:
        while time.monotonic() < deadline:
            if all(pool.map(lambda _: check(server), range(ROUND))):
                return
            time.sleep(0.05)
    raise AssertionError(f"not every worker {what} within {DEADLINE} s")
