"""Spread a large batch of independent work (parsing files, rendering bodies) over the cores.

Start-up is the only moment feedsvc has thousands of files to parse or bodies to render
at once, and both are pure Python, so one process uses one core. `map_in_processes`
forks a helper process per core but one for such a batch and works beside them, and
falls back to a plain loop when the batch is small, when there is one core, or when
this process runs other threads (forking a threaded process can copy a lock another
thread holds). Results come back in order.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

from feedsvc import lifecycle, memory

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Logged (debug) for each batch spread over processes: tasks, processes (this one too).
SPREAD_MESSAGE = "%d tasks in %d processes"
#: Below this many tasks, starting processes costs more than it saves.
MIN_TASKS = 400
#: A portion of work handed out is one process's share of what is left, divided by
#: this: large portions while much is left (few round trips), ever smaller ones as the
#: two ends meet, so that the processes finish together (with portions of a fixed size,
#: one core idled at the end for as long as the other's last two took).
PORTIONS_PER_PROCESS = 4


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: Called with a portion of the tasks and their results as soon as they are in.
Portion = Callable[[Sequence[T], list[R]], None]


def map_in_processes(
    function: Callable[[T], R],
    tasks: Sequence[T],
    progress: Callable[[int, int], None] | None = None,
    each: Portion[T, R] | None = None,
) -> list[R]:
    """`[function(task) for task in tasks]`, in one process per core when it pays.

    `function` must be picklable (a module-level function or a `partial` of one); its
    results must be picklable too. `progress(done, total)` is called as tasks complete;
    `each(tasks, results)` with every portion of them, in this process, as soon as its
    results are in (while the helpers go on with the rest), each task in one portion.
    """
    processes = cores() if len(tasks) >= MIN_TASKS else 1
    if processes > 1 and threading.active_count() == 1:
        try:
            return _in_processes(function, tasks, processes, progress, each)
        except (OSError, ValueError, BrokenProcessPool) as error:  # ValueError: no fork
            log.warning("helper processes failed (%s); continuing in this process", error)
    results = []
    for done, task in enumerate(tasks, 1):
        results.append(function(task))
        if progress is not None:
            progress(done, len(tasks))
    if each is not None:
        each(tasks, results)
    return results


def _in_processes(
    function: Callable[[T], R],
    tasks: Sequence[T],
    processes: int,
    progress: Callable[[int, int], None] | None,
    each: Portion[T, R] | None,
) -> list[R]:
    """The tasks shared between this process and `processes - 1` helpers, in portions
    (`_Split`): the helpers take them from the front, this process from the back, until
    none is left. Working here rather than waiting saves a process, and with it a copy
    of every page of the loaded items the work touches (reference counting writes to
    each object it reads, so a forked helper's pages soon stop being shared)."""
    log.debug(SPREAD_MESSAGE, len(tasks), processes)
    split = _Split(len(tasks), processes)
    done: dict[int, list[R]] = {}  # each portion's results, by its first task
    finished = 0
    # fork: the helpers start at once and share this process's loaded modules and settings.
    context = multiprocessing.get_context("fork")
    # A helper's collector leaves alone what it inherited (`gc.freeze`): walking the
    # parent's loaded items would cost time and copy their pages for nothing. A helper
    # only computes and exits, so the process's fork hooks (lifecycle) are not run: the
    # store's would wait for the reload lock this very reload holds.
    helpers = processes - 1
    memory.trim()  # a helper's resident set starts as this process's, free pages and all
    with (
        _collector_frozen(),
        lifecycle.without_hooks(),
        ProcessPoolExecutor(helpers, mp_context=context, initializer=gc.freeze) as pool,
    ):
        running: dict[Future[list[R]], range] = {}
        while split or running:
            while split and len(running) < 2 * helpers:  # each helper has one queued
                portion = split.front()
                work = (function, tasks[portion.start : portion.stop])
                running[pool.submit(_run_chunk, work)] = portion
            ready: list[tuple[range, list[R]]] = []
            if split:
                portion = split.back()
                ready.append(
                    (portion, _run_chunk((function, tasks[portion.start : portion.stop])))
                )
            else:
                wait(running, return_when=FIRST_COMPLETED)
            for future in [future for future in running if future.done()]:
                ready.append((running.pop(future), future.result()))
            for portion, results in ready:
                done[portion.start] = results
                finished += len(portion)
                if each is not None:
                    each(tasks[portion.start : portion.stop], results)
            if progress is not None:
                progress(finished, len(tasks))
    return [result for start in sorted(done) for result in done[start]]


class _Split:
    """Tasks `0 .. count` handed out in portions, to the helpers from the front and to
    this process from the back: each portion a share of what is left (see
    `PORTIONS_PER_PROCESS`), so they shrink as the two ends meet."""

    def __init__(self, count: int, processes: int) -> None:
        self.start, self.stop = 0, count  # what is left
        self.share = processes * PORTIONS_PER_PROCESS

    def __bool__(self) -> bool:
        return self.start < self.stop

    def _size(self) -> int:
        return max(1, (self.stop - self.start) // self.share)

    def front(self) -> range:
        taken = range(self.start, min(self.stop, self.start + self._size()))
        self.start = taken.stop
        return taken

    def back(self) -> range:
        taken = range(max(self.start, self.stop - self._size()), self.stop)
        self.stop = taken.start
        return taken


@contextmanager
def _collector_frozen() -> Iterator[None]:
    """This process's collector leaves alone what there is while its share of the work
    runs: the work makes garbage in plenty, and each full collection would walk every
    loaded item again (seconds at 100,000 items). Not if something froze objects
    before (a preloading master, before it forked this worker): unfreezing would undo
    that too."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_chunk(work: tuple[Callable[[T], R], Sequence[T]]) -> list[R]:
    function, chunk = work
    return [function(task) for task in chunk]
