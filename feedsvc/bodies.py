"""Items' bodies, rendered when a feed or page shows them: read from the item's file,
through Markdown and bleach, and kept by file version.

An item carries no body (a large folder loads without rendering every body); its
`Source` says which version of which file it was read from. A body is taken from
memory (an LRU of CONTENT_CACHE_SIZE), else from the persistent cache, else rendered
from the file, behind the fault barrier: a body that cannot be read or rendered is its
file's problem (`report`), and the item is shown without it.

`at_hand(items)` renders many bodies at once, spread over the cores, for the block it
guards (start-up renders every body the first pages of the feeds show).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from feedsvc import faults, itemfile, parallel
from feedsvc.cache import Cache
from feedsvc.config import Settings
from feedsvc.loading import read_file
from feedsvc.model import Content, Intro, Item, Problem

log = logging.getLogger(__name__)

CONTENT_CACHE_SIZE = 4096

Report = Callable[[str, Problem], None]


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
        self._contents: OrderedDict[tuple[str, str], Content] = OrderedDict()
        self._held: dict[tuple[str, str], Content] = {}  # what `at_hand` rendered
        self._lock = threading.Lock()

    def after_fork(self, child: bool) -> None:
        if child:  # a lock another thread of the parent held would stay held here
            self._lock = threading.Lock()

    def content(self, item: Item) -> Content:
        """An item's rendered body, memoised per file version. Never raises."""
        key = (item.source.digest, item.path)
        held = self._held.get(key)
        if held is not None:
            return held
        with self._lock:
            cached = self._contents.get(key)
            if cached is not None:
                self._contents.move_to_end(key)
                return cached
        content = self.cache.content(item.source.digest, item.path)
        if content is None:
            found = faults.attempt(
                item.source.path, "rendering its body", partial(self._render, item)
            )
            if isinstance(found, Problem):
                self.report(item.source.path, found)
                content = Content("", item.summary or "")
            else:
                content = found
        with self._lock:
            self._contents[key] = content
            while len(self._contents) > CONTENT_CACHE_SIZE:
                self._contents.popitem(last=False)
        return content

    def intro(self, intro: Intro) -> str:
        """A weekly introduction's HTML; "" (the roundup writes its own) if it fails."""

        def render() -> str:
            data, _ = self._read_version(intro.source.path, intro.source.digest)
            base = f"{self.settings.base_url}/weekly/{intro.week}"
            return itemfile.render_markup(itemfile.body_of(data), "markdown", base)

        found = faults.attempt(intro.source.path, "rendering it", render)
        if isinstance(found, Problem):
            self.report(intro.source.path, found)
            return ""
        return found

    @contextmanager
    def at_hand(self, items: Iterable[Item]) -> Iterator[None]:
        """Have these items' bodies at hand while the block runs: from memory, from the
        cache, or rendered now, all at once and spread over the cores when there are
        many."""
        wanted: dict[tuple[str, str], Item] = {}
        for item in items:
            key = (item.source.digest, item.path)
            if key not in self._contents and key not in wanted:
                wanted[key] = item
        held: dict[tuple[str, str], Content] = {}
        missing = []
        for key, item in wanted.items():
            content = self.cache.content(*key)
            if content is None:
                missing.append(item)
            else:
                held[key] = content
        render = partial(_render_scanned, self.root, self.settings.base_url)
        rendered = parallel.map_in_processes(render, missing)
        fresh = [(i, c) for i, c in zip(missing, rendered, strict=True) if c is not None]
        self.cache.store_contents([(i.source.digest, i.path, c) for i, c in fresh])
        held.update(((i.source.digest, i.path), c) for i, c in fresh)
        self._held = held
        try:
            yield
        finally:
            self._held = {}

    def _render(self, item: Item) -> Content:
        data, current = self._read_version(item.source.path, item.source.digest)
        content = itemfile.render_body(item, data, self.settings.base_url)
        if current or self.last_good(item.source.path):
            self.cache.store_content(item.source.digest, item.path, content)
        else:  # never file a newer body under an older version's digest
            self.stale_reads += 1
        return content

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


def _render_scanned(root: Path, base_url: str, item: Item) -> Content | None:
    """An item's body, rendered; None if its file changed since the scan, or anything
    failed (`Bodies.content` then deals with it, and reports it). Pure but for the read,
    for helper processes (`parallel`)."""
    try:
        data = read_file(os.path.join(root, item.source.path))
        if itemfile.digest(data) != item.source.digest:
            return None
        return itemfile.render_body(item, data, base_url)
    except Exception:  # the barrier is `content`'s, which does it again in the open
        return None
