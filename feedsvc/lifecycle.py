"""What a process must do around `fork()` for the objects that live in it.

A preloading server (gunicorn `--preload`) loads the items once, then forks its workers.
Threads, locks held by other threads and SQLite connections do not cross a fork safely,
so each object that owns such things says what to do before and after one: it
implements `ForkAware` and is registered here. One set of `os.register_at_fork` hooks,
installed with the first registration, runs them all.

Order, like a stack: `before_fork` hooks run in registration order, `after_fork` hooks in
reverse (the last registered first), in the parent and in the child alike. So register
what others rely on after them: a store after the watcher that reloads it, so that the
store's `after_fork` (fresh locks, its reload lock released) has run before the child's
watcher starts its re-scan. An object whose `before_fork` raised gets no `after_fork`.

Before a fork with anything registered, the collector is frozen (`gc.freeze`: objects
loaded so far are shared with the child copy-on-write, and a collection there would
write to every page of them) and the freed heap pages go back to the system, so a child
does not start with the parent's start-up garbage in its resident memory.

The registry holds its objects weakly: registering keeps nothing alive, and an object
that is gone has no hooks. Register an object only once it may be forked with: a hook
that takes a lock (a store's reload lock) must not run while its own thread holds it.
A fork for short-lived helper processes, made while such a lock is held (a reload that
parses a large batch over the cores), goes inside `without_hooks()`: the helpers use
none of what the hooks protect, and the lock would never be free.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from feedsvc import memory

log = logging.getLogger(__name__)


class ForkAware(Protocol):
    """An object that prepares for a fork and recovers from it, on both sides."""

    def before_fork(self) -> None:
        """Called in the forking thread just before the fork."""

    def after_fork(self, child: bool) -> None:
        """Called just after it, in the parent (`child` False) and in the child (True)."""


Aware = TypeVar("Aware", bound=ForkAware)

_lock = threading.Lock()  # guards _registered
_forking = threading.Lock()  # one fork at a time runs the hooks; guards _prepared
_registered: list[weakref.ref[ForkAware]] = []
_prepared: list[ForkAware] = []  # those whose before_fork ran, for the fork under way
_installed = False
_unhooked = threading.local()  # .depth: without_hooks() blocks this thread is in


def register(obj: Aware) -> Aware:
    """Run `obj`'s hooks around every fork from now on (once, however often it is
    registered; it keeps its first place); returns `obj`."""
    global _installed
    with _lock:
        if not _installed and hasattr(os, "register_at_fork"):  # elsewhere nothing forks
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=lambda: _after_fork(child=False),
                after_in_child=lambda: _after_fork(child=True),
            )
            _installed = True
        if not any(ref() is obj for ref in _registered):
            _registered.append(weakref.ref(obj))
    return obj


def unregister(obj: ForkAware) -> None:
    """Run `obj`'s hooks no more; nothing happens if it is not registered."""
    with _lock:
        _registered[:] = [ref for ref in _registered if ref() is not obj and ref() is not None]


@contextmanager
def without_hooks() -> Iterator[None]:
    """Forks this thread makes inside the block run no hooks, freeze and trim nothing."""
    _unhooked.depth = getattr(_unhooked, "depth", 0) + 1
    try:
        yield
    finally:
        _unhooked.depth -= 1


def _hooked() -> bool:
    return not getattr(_unhooked, "depth", 0)


def _before_fork() -> None:
    if not _hooked():
        return
    _forking.acquire()  # released by _after_fork, on both sides of the fork
    with _lock:
        registered = [obj for ref in _registered if (obj := ref()) is not None]
    # Hooks run without the lock: one may register or unregister.
    for obj in registered:
        try:
            obj.before_fork()
        except Exception:  # one object's failure must not leave the others unprepared
            log.exception("before_fork of %r failed", obj)
        else:
            _prepared.append(obj)
    if registered:
        gc.freeze()
        memory.trim()
    # Held across the fork: a registration under way in another thread would otherwise
    # leave the child's copy of the lock held for good.
    _lock.acquire()


def _after_fork(child: bool) -> None:
    if not _hooked():  # the same thread as before the fork, on either side of it
        return
    _lock.release()
    prepared = _prepared[::-1]
    _prepared.clear()
    try:
        for obj in prepared:
            try:
                obj.after_fork(child)
            except Exception:  # the others must still recover
                log.exception("after_fork(child=%s) of %r failed", child, obj)
    finally:
        _forking.release()
