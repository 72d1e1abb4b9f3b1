"""Start-up work spread over helper processes gives exactly what one process gives."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedsvc import loading, parallel, store
from feedsvc.model import FeedKey
from feedsvc.scanning import Entry
from tests.conftest import Site

MANY = parallel.MIN_TASKS + 50


def pid_of(_: int) -> int:
    return os.getpid()


def square(n: int) -> int:
    return n * n


@pytest.mark.skipif(parallel.cores() < 2, reason="helper processes need two cores")
def test_a_large_batch_runs_in_helper_processes_and_comes_back_in_order() -> None:
    progress: list[tuple[int, int]] = []
    assert parallel.map_in_processes(square, range(MANY), lambda *p: progress.append(p)) == [
        n * n for n in range(MANY)
    ]
    assert progress[-1] == (MANY, MANY), [t.name for t in threading.enumerate()]
    assert threading.active_count() == 1, [t.name for t in threading.enumerate()]
    pids = parallel.map_in_processes(pid_of, range(MANY))
    assert len(set(pids)) == parallel.cores(), "this process and a helper per other core"
    assert os.getpid() in pids


@pytest.mark.parametrize("count", [MANY, 3], ids=["spread", "in this process"])
def test_each_portion_is_handed_over_in_this_process_as_soon_as_it_is_in(count: int) -> None:
    """`each` sees every task once with its result, in this process; spread, portion by
    portion while the rest are worked on (the body cache stores them meanwhile)."""
    seen: list[tuple[int, int]] = []
    calls, pids = [], set()

    def each(tasks: Sequence[int], results: list[int]) -> None:
        seen.extend(zip(tasks, results, strict=True))
        calls.append(len(tasks))
        pids.add(os.getpid())

    assert parallel.map_in_processes(square, range(count), each=each) == [
        n * n for n in range(count)
    ]
    assert sorted(seen) == [(n, n * n) for n in range(count)]
    assert pids == {os.getpid()}
    if count == MANY and parallel.cores() > 1:
        assert len(calls) > 2 and max(calls) < count / 2, calls


def freeze_count(_: int) -> tuple[int, int]:
    return os.getpid(), gc.get_freeze_count()


@pytest.mark.skipif(parallel.cores() < 2, reason="helper processes need two cores")
def test_this_process_freezes_its_collector_for_its_share_and_thaws_it_after() -> None:
    """Its full collections would walk every loaded item while it works; a freeze made
    by someone else (a preloading master) is left as it is."""
    gc.unfreeze()
    seen = parallel.map_in_processes(freeze_count, range(MANY))
    here = {count for pid, count in seen if pid == os.getpid()}
    assert here and 0 not in here
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        parallel.map_in_processes(freeze_count, range(MANY))
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_small_batch_or_a_threaded_process_stays_in_this_process() -> None:
    assert set(parallel.map_in_processes(pid_of, range(10))) == {os.getpid()}
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert set(parallel.map_in_processes(pid_of, range(MANY))) == {os.getpid()}
    finally:
        release.set()
        other.join()


def many_items(site: Site) -> None:
    for n in range(MANY):
        day = n % 28 + 1
        body = f"Story **{n}** with <script>x()</script> and [a link](/l/{n})."
        site.write_item("news", f"2020-09-{day:02d}-story-{n}.md", {"title": f"Story {n}"}, body)
    site.write("_weekly/2020-W40.md", "---\ntitle: A busy week\n---\nHello.\n")


def everything(site: Site) -> dict[str, bytes]:
    client = site.client()
    urls = [f"/feeds/{n}.{f}" for n in ("all", "weekly", "news") for f in ("rss", "atom", "json")]
    return {url: client.get(url).data for url in [*urls, "/weekly/2020-W39.html", "/healthz"]}


@pytest.mark.skipif(parallel.cores() < 2, reason="helper processes need two cores")
def test_start_up_in_helper_processes_publishes_the_same_bytes(
    site: Site, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    many_items(site)
    caplog.set_level(logging.DEBUG, logger="feedsvc.parallel")
    spread = everything(site)
    batches = [r.args for r in caplog.records if r.msg == parallel.SPREAD_MESSAGE]
    cores = parallel.cores()
    assert batches == [(MANY + 1, cores), (MANY, cores)], "parsing and bodies went to helpers"
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    alone = everything(site)
    assert spread == alone
    assert (
        b"Story 27" in spread["/feeds/all.atom"]
        and b"<script>" not in spread["/weekly/2020-W39.html"]
    )


def test_start_up_rendered_every_body_the_first_pages_show(site: Site) -> None:
    many_items(site)
    app = site.app()
    documents = app.extensions["feedsvc.documents"]
    snapshot = app.extensions["feedsvc"].snapshot()
    rendered = documents.render_count
    assert documents.renders(snapshot)[FeedKey("weekly", "atom")] == 1
    # The weekly feed holds every story of its weeks: their bodies were all rendered up
    # front, so serving it (and the pages) renders nothing more.
    client = app.test_client()
    for url in ("/feeds/weekly.atom", "/feeds/all.rss", "/feeds/news.json"):
        assert client.get(url).status_code == 200
    assert documents.render_count == rendered


def test_start_up_keeps_no_roundup_html_once_the_weekly_feed_is_built(site: Site) -> None:
    many_items(site)
    app = site.app()
    snapshot = app.extensions["feedsvc"].snapshot()
    documents = app.extensions["feedsvc.documents"]
    held = documents.held(snapshot)
    assert held["feeds"] > 0 and documents.renders(snapshot)[FeedKey("weekly", "rss")] == 1
    assert held["views"] == 0, "the roundups' HTML was let go once the formats were rendered"
    page = app.test_client().get("/weekly/2020-W39.html")  # builds that week's HTML again
    assert page.status_code == 200 and b"Story" in page.data


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "no-cache"])
def test_a_parse_result_crosses_processes_as_its_cache_row(site: Site, cached: bool) -> None:
    front = {"title": "Hello <b>there</b>", "date": "2020-09-30 10:00", "colour": "red"}
    site.write_item("news", "2020-09-30-hello.md", front, "Body.")
    site.write("_weekly/2020-W40.md", "---\ntitle: A busy week\n---\nHello.\n")
    settings = site.settings(timezone="Europe/Paris")
    for path, kind in (("news/2020-09-30-hello.md", "item"), ("_weekly/2020-W40.md", "intro")):
        full = str(site.items / path)
        stat = os.stat(full)
        entry = Entry(path, kind, full, stat.st_size, stat.st_mtime_ns)
        result = loading.read_and_parse(settings, cached, entry)

        data = pickle.dumps(result)
        copy = pickle.loads(data)

        assert copy == result
        assert b"feedsvc.model" not in data, "sent as the JSON row, not as objects"
        assert (copy.row is not None) is cached
        if kind == "item":
            assert copy.parsed.item is not None and copy.parsed.problems  # the unknown field
            assert copy.parsed.item.published.tzinfo == settings.zone
        else:
            assert copy.intro is not None and copy.intro.title == "A busy week"


def test_a_reload_pauses_the_collector_and_restores_it(site: Site) -> None:
    site.write_item("news", "2020-09-30-hello.md", {"title": "Hello"}, "Body.")
    seen: list[bool] = []

    def progress(done: int, total: int) -> None:  # called in the middle of the reload
        seen.append(gc.isenabled())

    assert gc.isenabled()
    store.Store(site.settings()).reload(progress)
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        store.Store(site.settings()).reload(progress)
        assert not gc.isenabled(), "a collector paused by someone else stays paused"
    finally:
        gc.enable()


def test_start_up_leaves_no_thread_behind(site: Site) -> None:
    """A preloading master forks right after start-up: no thread of it may be running."""
    many_items(site)
    before = threading.active_count()
    site.app()
    assert threading.active_count() == before, [t.name for t in threading.enumerate()]


@pytest.mark.skipif(parallel.cores() < 2, reason="helper processes need two cores")
def test_a_large_reload_of_a_registered_store_forks_its_helpers_without_the_hooks(
    site: Site,
) -> None:
    """An app's store has fork hooks (its reload lock is taken before a fork); a reload
    that forks helper processes holds that lock, so it must fork them without the hooks.
    In a process of its own, with one thread (else no helper is forked), bounded."""
    site.items.mkdir(parents=True)
    script = f"""
import sys
from tests.conftest import Site
from tests.test_parallel import MANY, many_items
from pathlib import Path
site = Site(Path({str(site.root)!r}))
store = site.app().extensions["feedsvc"]
many_items(site)
store.reload()
sys.exit(0 if len(store.snapshot().items) == MANY else 1)
"""
    top = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=top, timeout=120, check=False)
    assert done.returncode == 0


@given(
    count=st.integers(0, 5000),
    processes=st.integers(2, 8),
    ends=st.lists(st.booleans(), max_size=200),
)
def test_portions_from_both_ends_cover_every_task_once(
    count: int, processes: int, ends: list[bool]
) -> None:
    split = parallel._Split(count, processes)
    taken: list[int] = []
    for front in [*ends, *[True] * count]:  # the given order, then the front till the end
        if not split:
            break
        portion = split.front() if front else split.back()
        assert len(portion) >= 1
        taken += portion
    assert not split and sorted(taken) == list(range(count))


def test_portions_shrink_as_the_ends_meet_so_the_processes_finish_together() -> None:
    """What a helper still holds when this process runs out of work is small: the last
    portions are a task or two, the first ones large (few round trips)."""
    split = parallel._Split(25_000, 2)
    sizes = []
    while split:
        left = split.stop - split.start
        portion = split.front() if len(sizes) % 3 else split.back()  # a helper ahead
        assert len(portion) <= max(1, left // (2 * parallel.PORTIONS_PER_PROCESS))
        sizes.append(len(portion))
    assert sizes[0] >= 25_000 // 10 and sizes[-3:] == [1, 1, 1]
    assert len(sizes) < 200, "round trips stay few"
