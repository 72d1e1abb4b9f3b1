"""What both benchmark reports need from the machine: Debian packages, whole-file writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


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


def replace_text(path: Path, text: str) -> None:
    """Write `path` whole, at once: a reader sees the old report or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
