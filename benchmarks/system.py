"""What both benchmark reports need from the machine: CPU clocks, Debian packages, reports
written whole."""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
TOP = Path(__file__).resolve().parent.parent  # the project
BIN = Path(sys.executable).parent  # the project's .venv/bin, where `feedsvc` is
BASE_URL = "https://bench.example.org"  # what every benchmarked site is published as


def ensure_package(command: str) -> None:
    """The Debian package of `command` (wrk, hugo), installed when it is missing (the
    benchmarks run as root on a fresh machine)."""
    if shutil.which(command):
        return
    print(f"{command} not found; installing the Debian package", file=sys.stderr)
    subprocess.run(
        f"apt-get update -qq && apt-get install -y -qq {command}",
        shell=True,
        check=True,
        timeout=900,
    )


def compile_package() -> None:
    """Write the package's bytecode, as installing it from a wheel does: an editable
    install leaves that to the first run, and a machine with PYTHONDONTWRITEBYTECODE set
    would compile every module again at each start, timing the compiler with the build."""
    if not compileall.compile_dir(TOP / "feedsvc", quiet=1):
        raise RuntimeError("the package does not compile")


def replace_text(path: Path, text: str) -> None:
    """Write `path` whole, at once: a reader sees the old report or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every core; includes hypervisor steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's CPU time and that of the children it has waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def machine() -> str:
    """The processor, cores, memory and kernel, for a report's header."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    ram = f"{int(memory.group(1)) / 2**20:.1f} GiB RAM" if memory else "RAM unknown"
    cpu = model.group(1) if model else "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, {ram}, Linux {platform.release()}"


def sizes(text: str) -> list[int]:
    """Corpus sizes as a command line gives them: "1000,10_000" (an argparse type)."""
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes like 1000,10000") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return values
