"""Items' bodies, rendered when a feed or page shows them: read from the item's file,
through Markdown and bleach, and kept by file version.

An item carries no body (a large folder loads without rendering every body); its
`Source` says which version of which file it was read from. A body is taken from
memory (an LRU of CONTENT_CACHE_SIZE), else from the persistent cache, else rendered
from the file, behind the fault barrier: a body that cannot be read or rendered is its
file's problem (`report`), and the item is shown without it. What the sanitiser removed
from a body (a script, an event handler, a `javascript:` link) is noted as it renders,
kept with the body (in memory and in the cache) and reported as a warning for its file
whenever the body is taken, so the warning outlives a restart without a second render.

`at_hand(items)` renders many bodies at once, spread over the cores, for the block it
guards (start-up renders every body the first pages of the feeds show); `render_all`
renders every body of a folder that way, a batch at a time (`feedsvc check`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from feedsvc import faults, itemfile, parallel, sanitize
from feedsvc.cache import Cache
from feedsvc.config import Settings
from feedsvc.loading import Progress, read_file
from feedsvc.model import Content, Intro, Item, Problem, week_path

log = logging.getLogger(__name__)

CONTENT_CACHE_SIZE = 4096  # bodies a server holds in memory (`Bodies.hold_at_most`)
#: Bodies `render_all` holds at once: few enough that a folder of 100,000 items is not
#: held in memory whole (a batch is tens of megabytes), many enough that the cores seldom
#: wait at the end of one (each batch forks its helpers anew).
RENDER_BATCH = 10_000

Report = Callable[[str, Problem], None]
#: A rendered body and what the sanitiser removed from it ("" when nothing).
Rendered = tuple[Content, str]


class Bodies:
    """The rendered bodies of one items folder.

    `last_good(path)` says whether the file's item is a last good version standing in
    for a broken file: its body is then the one the file gives now, kept under its
    version for good. `stale_reads` counts bodies rendered from a file newer than the
    version scanned; a document that used one is not kept (a reload follows).
    """

    def __init__(
        self,
        root: Path,
        settings: Settings,
        cache: Cache,
        report: Report,
        last_good: Callable[[str], bool],
    ) -> None:
        self.root = root
        self.settings = settings
        self.cache = cache
        self.report = report
        self.last_good = last_good
        self.stale_reads = 0
        self._contents: OrderedDict[tuple[str, str], Rendered] = OrderedDict()
        self._most = CONTENT_CACHE_SIZE
        self._held: dict[tuple[str, str], Rendered] = {}  # what `at_hand` rendered
        self._lock = threading.Lock()

    def after_fork(self, child: bool) -> None:
        if child:  # a lock another thread of the parent held would stay held here
            self._lock = threading.Lock()

    def hold_at_most(self, count: int) -> None:
        """Hold at most `count` rendered bodies in memory from now on (the rest are in the
        cache, or rendered again)."""
        with self._lock:
            self._most = count
            while len(self._contents) > count:
                self._contents.popitem(last=False)

    def content(self, item: Item) -> Content:
        """An item's rendered body, memoised per file version. Never raises."""
        key = body_key(item)
        held = self._held.get(key)
        if held is not None:
            return held[0]  # `at_hand` reported what it removed
        with self._lock:
            rendered = self._contents.get(key)
            if rendered is not None:
                self._contents.move_to_end(key)
        if rendered is None:
            rendered = self.cache.content(*body_key(item))
        if rendered is None:
            found = faults.attempt(
                item.source.path, "rendering its body", partial(self._render, item)
            )
            if isinstance(found, Problem):
                self.report(item.source.path, found)
                rendered = (Content("", item.summary or ""), "")
            else:
                rendered = found
        # Again on every take: a file changed back to an earlier version gives that
        # version's body from memory, though its warning went when the file changed.
        self._removed(item.source.path, rendered[1])
        with self._lock:
            self._contents[key] = rendered
            while len(self._contents) > self._most:
                self._contents.popitem(last=False)
        return rendered[0]

    def _removed(self, path: str, removed: str) -> None:
        """Report what the sanitiser removed from the file at `path`, if anything."""
        if removed:
            # A corpus repeats a few such notes in thousands of files: each is held once.
            message = sys.intern(f"removed from the body: {removed}")
            self.report(path, Problem(path, None, "warning", message))

    def intro(self, intro: Intro) -> str:
        """A weekly introduction's HTML; "" (the roundup writes its own) if it fails."""

        def render() -> Rendered:
            data, _ = self._read_version(intro.source.path, intro.source.digest)
            base = self.settings.base_url + week_path(intro.week)
            with sanitize.noting() as removed:
                html = itemfile.render_markup(itemfile.body_of(data), "markdown", base)
            return Content(html, ""), removed.describe()

        found = faults.attempt(intro.source.path, "rendering it", render)
        if isinstance(found, Problem):
            self.report(intro.source.path, found)
            return ""
        self._removed(intro.source.path, found[1])
        return found[0].html

    @contextmanager
    def at_hand(self, items: Iterable[Item]) -> Iterator[None]:
        """Have these items' bodies at hand while the block runs: from memory, from the
        cache, or rendered now, all at once and spread over the cores when there are
        many."""
        wanted: dict[tuple[str, str], Item] = {}
        for item in items:
            key = body_key(item)
            if key not in self._contents and key not in wanted:
                wanted[key] = item
        held: dict[tuple[str, str], Rendered] = self.cache.contents(list(wanted))
        missing = [item for key, item in wanted.items() if key not in held]
        render = partial(_render_scanned, self.root, self.settings.base_url)

        def store(items: Sequence[Item], rendered: list[Rendered | None]) -> None:
            """Into the cache as they come, while the helpers render the rest."""
            fresh = [(i, r) for i, r in zip(items, rendered, strict=True) if r is not None]
            self.cache.store_contents([(*body_key(i), *r) for i, r in fresh])
            held.update((body_key(i), r) for i, r in fresh)

        parallel.map_in_processes(render, missing, each=store)
        # Reported in the items' order, whichever order their portions came in.
        self._held = {key: held[key] for key in wanted if key in held}
        for key, (_, removed) in self._held.items():
            self._removed(wanted[key].source.path, removed)
        try:
            yield
        finally:
            self._held = {}

    def render_all(self, items: Sequence[Item], progress: Progress | None = None) -> None:
        """Render every one of these items' bodies the cache does not hold, and report
        what rendering each body found (for one the cache holds, what it recorded); a
        batch at a time, each spread over the cores. `progress(done, total)` after each
        batch."""
        for start in range(0, len(items), RENDER_BATCH):
            batch = items[start : start + RENDER_BATCH]
            held = self.cache.removed([body_key(item) for item in batch])
            missing = [item for item in batch if body_key(item) not in held]
            for item in batch:
                removed = held.get(body_key(item))
                if removed is not None:
                    self._removed(item.source.path, removed)
            with self.at_hand(missing):
                for item in missing:  # those the batch could not render, in the open
                    self.content(item)
            if progress is not None:
                progress(start + len(batch), len(items))

    def _render(self, item: Item) -> Rendered:
        data, current = self._read_version(item.source.path, item.source.digest)
        rendered = _render_noting(item, data, self.settings.base_url)
        if current or self.last_good(item.source.path):
            self.cache.store_content(*body_key(item), *rendered)
        else:  # never file a newer body under an older version's digest
            self.stale_reads += 1
        return rendered

    def _read_version(self, path: str, digest: str) -> tuple[bytes, bool]:
        """A file's bytes, and whether they are still the version scanned (`digest`).

        If the file changed since the scan, its newer bytes: a reload follows.
        """
        data = read_file(os.path.join(self.root, path))
        if itemfile.digest(data) != digest:
            if not self.last_good(path):
                log.info("%s changed since the last scan; rendering its newer body", path)
            return data, False
        return data, True


def body_key(item: Item) -> tuple[str, str]:
    """What a rendered body is kept under, in memory and in the cache: the file's content
    digest and the item's page path, which with `base_url` (part of the cache's
    fingerprint) is the base the sanitiser resolves the body's URLs against
    (`itemfile.render_body`): a body made for another page URL is never taken, so a
    `#note` or `?q` link always names the page as it is now."""
    return item.source.digest, item.path


def _render_noting(item: Item, data: bytes, base_url: str) -> Rendered:
    """An item's body, and what the sanitiser removed from it, noted in the same pass."""
    with sanitize.noting() as removed:
        content = itemfile.render_body(item, data, base_url)
    return content, removed.describe()


def _render_scanned(root: Path, base_url: str, item: Item) -> Rendered | None:
    """An item's body, rendered; None if its file changed since the scan, or anything
    failed (`Bodies.content` then deals with it, and reports it). Pure but for the read,
    for helper processes (`parallel`)."""
    try:
        data = read_file(os.path.join(root, item.source.path))
        if itemfile.digest(data) != item.source.digest:
            return None
        return _render_noting(item, data, base_url)
    except Exception:  # the barrier is `content`'s, which does it again in the open
        return None
