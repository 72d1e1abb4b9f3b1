"""The fault barrier: whatever goes wrong with one file becomes a `Problem` for that file.

A maintainer's first promise is that a bad file never breaks a feed. Every step that
touches one file (classifying its name, `stat`, reading, decoding, parsing, the cache's
rows, Markdown, sanitising, summarising, rendering its entry) runs through `attempt`,
so an exception there, of any kind short of KeyboardInterrupt and SystemExit (which
are not `Exception`s), leaves that file out (or shown without its body) and is reported
with its path, the line where known and a plain message. The traceback goes to the
debug log, for a maintainer of feedsvc rather than of the items. The rest of the load,
the reload or the render goes on.

Expected problems (a missing title, an ambiguous date) are found by the parsers and
come with their own messages; this is the net under everything else.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from feedsvc.model import Problem, Severity

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What an OS error means for a file, in the maintainer's words.
_OS_ERRORS = {
    errno.ELOOP: "is a loop of symbolic links",
    errno.ENOENT: "is gone, or is a link to nothing",
    errno.EACCES: "cannot be read: permission denied",
    errno.EPERM: "cannot be read: permission denied",
    errno.ENXIO: "is not a regular file (a socket or device)",
    errno.ENAMETOOLONG: "has a name too long to open",
    errno.EISDIR: "is a folder, not a file",
}


def describe(error: BaseException) -> str:
    """A plain, one-line account of `error` for a maintainer of the items."""
    if isinstance(error, OSError):
        known = _OS_ERRORS.get(error.errno or 0)
        return known or f"cannot be read: {error.strerror or error}"
    if isinstance(error, RecursionError):
        return "is nested too deeply to process"
    if isinstance(error, MemoryError):
        return "is too large to process"
    if isinstance(error, UnicodeError):
        return f"has text that cannot be encoded or decoded ({getattr(error, 'reason', error)})"
    if isinstance(error, OverflowError):
        return "has a value out of range (a date too far in the past or future?)"
    detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"could not be processed ({type(error).__name__}{': ' + detail if detail else ''})"


def problem(path: str, step: str, error: BaseException, severity: Severity = "error") -> Problem:
    """The problem `error` makes for the file at `path` during `step` ("reading it"; ""
    when the error says it all, as for a name that cannot be looked at)."""
    log.debug("%s: %s failed", path, step or "looking at it", exc_info=error)
    return Problem(
        path, None, severity, f"{describe(error)} ({step})" if step else describe(error)
    )


def attempt(path: str, step: str, work: Callable[[], T]) -> T | Problem:
    """`work()`, or the `Problem` its exception makes for the file at `path`."""
    try:
        return work()
    except Exception as error:  # the barrier: anything short of an interrupt or exit
        return problem(path, step, error)


#: Files named in a log line about many files with the same problem.
EXAMPLES = 3


def log_problems(problems: Iterable[Problem]) -> None:
    """Log problems one line per kind (the same severity and message), with how many files
    have it and a few of them: a folder of 10,000 files with the same unknown field
    says so in one line, not 10,000. `feedsvc check` lists every one."""
    groups: dict[tuple[str, str], list[Problem]] = {}
    for found in problems:
        groups.setdefault((found.severity, found.message), []).append(found)
    for (severity, message), group in groups.items():
        if len(group) == 1:
            log.warning("%s", group[0])
            continue
        log.warning("%s: %s: %s files (%s)", severity, message, f"{len(group):,}", _named(group))


def log_summary(what: str, problems: Sequence[Problem]) -> None:
    """One log line per severity for the problems `what` found (a few files named):
    the log of a check or a build says how many, `feedsvc check` lists them."""
    for severity in ("error", "warning"):
        group = [p for p in problems if p.severity == severity]
        if group:
            count = f"{len(group):,} {severity}{'s' * (len(group) != 1)}"
            log.warning("%s: %s (%s); `feedsvc check` lists them", what, count, _named(group))


def _named(group: Sequence[Problem]) -> str:
    """A few of the files, and how many more: "a.md, b.md, c.md and 9,997 more"."""
    where = ", ".join(_where(p) for p in group[:EXAMPLES])
    return where + (f" and {len(group) - EXAMPLES:,} more" if len(group) > EXAMPLES else "")


def _where(found: Problem) -> str:
    return f"{found.path}:{found.line}" if found.line else found.path


#: Problems `log_each` names one by one, per reload; the rest are counted.
NAMED = 100


def log_each(problems: Iterable[Problem]) -> None:
    """Log problems one line each, as `log_problems` logs a kind only one file has: those
    with names in the folder (a link out of it, a nested folder), each one a thing to
    move or remove by name. A folder holding more than NAMED of them at once gets a line
    counting the rest."""
    problems = list(problems)
    for found in problems[:NAMED]:
        log.warning("%s", found)
    if len(problems) > NAMED:
        log.warning("and %s more problems with names in the items folder; `feedsvc check` "
                    "lists them all", f"{len(problems) - NAMED:,}")  # fmt: skip
