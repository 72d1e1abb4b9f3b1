"""Large blocks go back to the system as soon as they are freed once feedsvc asks (glibc).
(`memory.trim`, which gives back what is free now, is tested with the fork hooks.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from feedsvc import memory

pytestmark = pytest.mark.skipif(memory._glibc() is None, reason="glibc's allocator only")

#: Frees 64 MB of 2 MB blocks, each pinned in the heap by a small object allocated after
#: it, once a large block freed before has raised glibc's threshold for mapping blocks
#: apart; prints how many of those bytes stay resident.
SCRIPT = """
import sys
from feedsvc import memory

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

if sys.argv[1] == "mapped":
    memory.map_large_blocks()
large = bytearray(24 << 20)
del large
before = resident()
blocks, pins = [], []
for _ in range(32):
    blocks.append(bytearray(b"x" * (2 << 20)))
    pins.append(bytearray(b"x" * 200_000))
del blocks
print(resident() - before - sum(map(len, pins)))
"""


def held(how: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, how], capture_output=True, text=True, check=True
    )
    return int(run.stdout)


def test_freed_blocks_stay_resident_unless_the_allocator_is_told() -> None:
    assert held("neither") > 48 << 20  # what a long export would carry


def test_large_blocks_mapped_apart_go_back_the_moment_they_are_freed() -> None:
    assert held("mapped") < 8 << 20
