"""Memory the C allocator holds free, given back to the system (glibc; elsewhere nothing).

Two habits of glibc's malloc keep a large export's memory high long after the objects are
gone. Once a large block (a dense weekly feed of tens of megabytes) is freed, it raises
the size below which blocks come from its heap rather than a mapping of their own, so the
next ones land in the heap, whose free pages stay resident. And a forked helper starts
with every resident page of its parent, free or not, as its own resident set.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

#: mallopt's parameter for the size from which a block gets a mapping of its own.
_M_MMAP_THRESHOLD = -3
#: Blocks this large or larger are mapped apart and given back as soon as they are freed.
LARGE_BLOCK = 1024 * 1024


@cache
def _glibc() -> Any | None:
    """The process's C library if it is glibc (which has `malloc_trim`), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols of this process, its C library's among them
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def map_large_blocks() -> None:
    """From now on, blocks of LARGE_BLOCK or more are mapped apart, whatever was freed
    before: their memory goes back to the system the moment they are freed."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, LARGE_BLOCK)


def trim() -> None:
    """Give the free pages of the C heap back to the system: before a fork, so that a
    child does not start with the parent's garbage in its resident memory."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
