"""Every item in publication order, by category, week and tag, kept up to date by deltas.

The store tells the index which files' items changed; the index re-decides only what
those items touch (their id's owner, their page name, their place in the orders), so
a change to one file costs work in proportion to that file, not to the folder (see
docs/decisions.md, "Cost in proportion to the change"). Building a snapshot from the
index is then a few slices. Pure: no file system, no clock; the time is an argument.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from itertools import chain, islice
from typing import TYPE_CHECKING, TypeVar, overload

from feedsvc import weekly
from feedsvc.config import Settings
from feedsvc.model import Category, Intro, Item, Problem, Tag, Week

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

Key = tuple[datetime, datetime, str]  # (published, updated, id): oldest first
PIECE = 512  # items per piece of an order (`Ordered`): what a change to one item copies
BULK_CHANGES = 1_000  # more items moved than this in one update: re-sort instead
PAGES_REBASE = 256  # changed pages a view carries before the page map is copied afresh


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How the index trades copying against re-sorting (the defaults above); the results
    never depend on it, which tests check by running the same changes under small values."""

    piece: int = PIECE
    bulk_changes: int = BULK_CHANGES
    pages_rebase: int = PAGES_REBASE


def order_key(item: Item) -> Key:
    return (item.published, item.updated, item.id)


class Run(Sequence[Item]):
    """An unchanging run of items (the first `length` of an order, newest or oldest
    first) over pieces that snapshots share: a snapshot takes the pieces' tuple, never a
    copy of the items, so a change to one item costs one piece, not the whole order."""

    __slots__ = ("_length", "_newest_first", "_pieces", "_starts")

    def __init__(
        self,
        pieces: tuple[tuple[Item, ...], ...],
        starts: tuple[int, ...],
        length: int,
        *,
        newest_first: bool,
    ) -> None:
        self._pieces = pieces
        self._starts = starts  # each piece's position in the order, oldest first
        self._length = length
        self._newest_first = newest_first

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Item, ...]: ...

    def __getitem__(self, index: int | slice) -> Item | tuple[Item, ...]:
        if isinstance(index, slice):  # a feed page, an archive's week
            start, stop, step = index.indices(self._length)
            if step != 1:
                return tuple(self._at(at) for at in range(start, stop, step))
            return self._span(start, stop)
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("Run index out of range")
        return self._at(index)

    def _span(self, start: int, stop: int) -> tuple[Item, ...]:
        """Positions start to stop (in this run's order) from slices of whole pieces."""
        if start >= stop:
            return ()
        low, high = (
            (self._length - stop, self._length - start) if self._newest_first else (start, stop)
        )
        taken: list[Item] = []
        piece = bisect_right(self._starts, low) - 1
        while low < high:
            offset = self._starts[piece]
            part = self._pieces[piece][low - offset : high - offset]
            taken.extend(part)
            low += len(part)
            piece += 1
        return tuple(reversed(taken)) if self._newest_first else tuple(taken)

    def _at(self, index: int) -> Item:
        at = self._length - 1 - index if self._newest_first else index
        piece = bisect_right(self._starts, at) - 1
        return self._pieces[piece][at - self._starts[piece]]

    def __iter__(self) -> Iterator[Item]:
        if not self._newest_first:
            return islice(chain.from_iterable(self._pieces), self._length)
        last = bisect_right(self._starts, self._length - 1) - 1
        if last < 0:
            return iter(())
        head = self._pieces[last][: self._length - self._starts[last]]
        return chain(reversed(head), *(reversed(p) for p in reversed(self._pieces[:last])))

    def __reversed__(self) -> Iterator[Item]:
        # The same positions read the other way (Sequence's own goes item by item).
        flipped = Run(
            self._pieces, self._starts, self._length, newest_first=not self._newest_first
        )
        return iter(flipped)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"Run({list(self)!r})"


class Ordered:
    """Items sorted oldest first: a flat list of keys for bisecting, and the items in
    pieces of about PIECE (tuples, replaced whole when one of their items changes).

    A snapshot's slice is a `Run` over the pieces as they are, kept until the next change
    here, so a snapshot reuses the slices of every category and week a reload did not
    touch, and the slice of a touched order costs a tuple of its pieces.
    """

    __slots__ = ("_piece", "_pieces", "_slices", "_starts", "keys")

    def __init__(self, pairs: Iterable[tuple[Key, Item]] = (), piece: int = PIECE) -> None:
        """From (key, item) pairs already sorted."""
        pairs = list(pairs)
        self._piece = piece
        self.keys: list[Key] = [key for key, _ in pairs]
        self._pieces: list[tuple[Item, ...]] = [
            tuple(item for _, item in pairs[at : at + piece]) for at in range(0, len(pairs), piece)
        ]
        self._starts: list[int] = list(range(0, len(pairs), piece))
        self._slices: dict[tuple[bool, int], Run] = {}

    def add(self, item: Item, key: Key) -> None:
        at = bisect_left(self.keys, key)
        self.keys.insert(at, key)
        if not self._pieces:
            self._pieces, self._starts = [(item,)], [0]
        else:
            piece = bisect_right(self._starts, at) - 1
            old, offset = self._pieces[piece], at - self._starts[piece]
            new = (*old[:offset], item, *old[offset:])
            size = self._piece
            if len(new) < 2 * size:
                self._pieces[piece] = new
            else:  # split it in two
                self._pieces[piece : piece + 1] = [new[:size], new[size:]]
                self._starts.insert(piece + 1, self._starts[piece] + size)
                piece += 1
            self._shift(piece + 1, 1)
        self._slices = {}

    def remove(self, item: Item) -> None:
        at = bisect_left(self.keys, order_key(item))
        del self.keys[at]
        piece = bisect_right(self._starts, at) - 1
        old, offset = self._pieces[piece], at - self._starts[piece]
        if len(old) > 1:
            self._pieces[piece] = (*old[:offset], *old[offset + 1 :])
            piece += 1
        else:
            del self._pieces[piece], self._starts[piece]
        self._shift(piece, -1)
        self._slices = {}

    def _shift(self, first: int, by: int) -> None:
        starts = self._starts
        for piece in range(first, len(starts)):
            starts[piece] += by

    def published_count(self, now: datetime) -> int:
        keys = self.keys
        if not keys or keys[-1][0] <= now:  # most orders, all weeks but the last
            return len(keys)
        return bisect_right(keys, now, key=lambda key: key[0])

    def newest_first(self, now: datetime) -> Run:
        return self._slice(now, newest_first=True)

    def oldest_first(self, now: datetime) -> Run:
        return self._slice(now, newest_first=False)

    def _slice(self, now: datetime, *, newest_first: bool) -> Run:
        key = (newest_first, self.published_count(now))
        found = self._slices.get(key)
        if found is None:
            pieces, starts = tuple(self._pieces), tuple(self._starts)
            found = self._slices[key] = Run(pieces, starts, key[1], newest_first=newest_first)
        return found

    def next_after(self, now: datetime) -> datetime | None:
        at = self.published_count(now)
        return self.keys[at][0] if at < len(self.keys) else None


PageKey = tuple[str, str]  # (category, page name)


class Pages(Mapping[PageKey, Item]):
    """An unchanging map of page names to items, for one snapshot, made without copying
    them all: a base dict shared by many snapshots plus the changes since it was taken
    (None for a page that went away). The index takes a new base once the changes grow."""

    __slots__ = ("_base", "_changes", "_size")

    def __init__(self, base: dict[PageKey, Item], changes: dict[PageKey, Item | None]) -> None:
        self._base = base
        self._changes = changes
        added = sum(1 for k, v in changes.items() if v is not None and k not in base)
        removed = sum(1 for k, v in changes.items() if v is None and k in base)
        self._size = len(base) + added - removed

    def __getitem__(self, key: PageKey) -> Item:
        if key in self._changes:
            item = self._changes[key]
            if item is None:
                raise KeyError(key)
            return item
        return self._base[key]

    def __iter__(self) -> Iterator[PageKey]:
        yield from (key for key in self._base if key not in self._changes)
        yield from (key for key, item in self._changes.items() if item is not None)

    def __len__(self) -> int:
        return self._size


@dataclasses.dataclass(frozen=True, slots=True)
class View:
    """What a snapshot takes from the index at one moment."""

    items: Run
    categories: tuple[Category, ...]
    weeks: tuple[Week, ...]
    current_week: Week | None
    changes_at: datetime | None
    pages: Pages
    problems: tuple[Problem, ...]
    tags: Mapping[str, Tag]
    gone: frozenset[PageKey]


class Index:
    """The published order of a store's items; `update` it, then take a `view(now)`."""

    def __init__(self, settings: Settings, tuning: Tuning = Tuning()) -> None:
        self.settings = settings
        self.tuning = tuning
        self._raw: dict[str, Item] = {}  # path -> item as parsed (no drafts)
        self._id_paths: dict[str, tuple[str, ...]] = {}  # id -> paths claiming it, sorted
        self._slug_paths: dict[tuple[str, str], tuple[tuple[date, str], ...]] = {}
        self._final: dict[str, Item] = {}  # path -> item as published: id owner, page set
        self._all = self._order()
        self._categories: dict[str, Ordered] = {}
        self._weeks: dict[str, Ordered] = {}
        self._tags: dict[str, Ordered] = {}  # by tag slug
        self._spellings: dict[str, Counter[str]] = {}  # tag slug -> how items write it
        self._pages: dict[PageKey, Item] = {}  # live, changed in place
        self._pages_base: dict[PageKey, Item] = {}  # a copy the views share
        self._pages_changed: dict[PageKey, Item | None] = {}  # since that copy
        #: Pages that had an item and have none now (deleted, made a draft), with when
        #: that item was published: a page never published was never public.
        self._gone: dict[PageKey, datetime] = {}
        #: Pages placed since `take_placed`, with when their items were published, that
        #: `_gone` did not already hold with that time: what the cache has yet to note.
        self._placed: dict[PageKey, datetime] = {}
        self._duplicates: dict[str, Problem] = {}

    def recall(self, pages: Mapping[PageKey, datetime]) -> bool:
        """Pages another process published (the cache's `published_pages`): those with no
        item here are gone. This process's own knowledge of a page comes first. Whether
        any page is newly known to be gone."""
        before = len(self._gone)
        for key, published in pages.items():
            if key not in self._pages:
                self._gone.setdefault(key, published)
        return len(self._gone) > before

    def take_placed(self) -> dict[PageKey, datetime]:
        """The pages placed since the last call that were not known with that time."""
        placed, self._placed = self._placed, {}
        return placed

    def published(self, path: str) -> Item | None:
        """The item the file at `path` gives as published (its page named), if it is."""
        return self._final.get(path)

    def update(self, changes: Mapping[str, Item | None]) -> None:
        """Apply new items (or None: gone, draft or broken) for the given file paths."""
        touched: set[str] = set()
        for path, item in changes.items():
            old = self._raw.pop(path, None)
            if old is not None:
                touched |= self._leave_groups(path, old)
            if item is not None and not item.draft:
                self._raw[path] = item
                touched |= self._join_groups(path, item)
            touched.add(path)
        # An item that gains or loses its id may move its namesakes' pages: add them.
        for path in list(touched):
            if (raw := self._raw.get(path)) is not None:
                touched.update(p for _, p in self._slug_paths[(raw.category, raw.slug)])
        decided = {path: self._decide(path) for path in touched}
        moved = {path: new for path, new in decided.items() if new != self._final.get(path)}
        if len(moved) > self.tuning.bulk_changes:
            # Inserting one by one costs a list shift each: for a first load or a big
            # burst, sorting everything once is far cheaper.
            for path, new in moved.items():
                if new is None:
                    self._final.pop(path, None)
                else:
                    self._final[path] = new
            self._rebuild()
            return
        # Take every moved item out before putting any back: two namesakes may swap pages.
        for path in moved:
            if (old := self._final.pop(path, None)) is not None:
                self._unplace(old)
        for path, new in moved.items():
            if new is not None:
                self._final[path] = new
                self._place(new)

    # A group (the paths claiming an id, the files sharing a slug) almost always has one
    # member: tuples, replaced on change, take less memory than lists per item.

    def _leave_groups(self, path: str, item: Item) -> set[str]:
        claimants = _without(self._id_paths, item.id, path)
        namesakes = _without(self._slug_paths, (item.category, item.slug), (item.file_date, path))
        return {*claimants, *(p for _, p in namesakes)}

    def _join_groups(self, path: str, item: Item) -> set[str]:
        claimants = _with(self._id_paths, item.id, path)
        namesakes = _with(self._slug_paths, (item.category, item.slug), (item.file_date, path))
        return {*claimants, *(p for _, p in namesakes)}

    def _decide(self, path: str) -> Item | None:
        """The item a path publishes: only the first path (by name) with an id, and the
        oldest item with a slug keeps the plain page name; later namesakes get date-slug."""
        item = self._raw.get(path)
        if item is None:
            self._duplicates.pop(path, None)
            return None
        owner = self._id_paths[item.id][0]
        if owner != path:
            message = f"id {item.id!r} is already used by {owner}; give each its own"
            self._duplicates[path] = Problem(path, None, "error", message)
            return None
        self._duplicates.pop(path, None)
        earlier = [
            p
            for _, p in self._slug_paths[(item.category, item.slug)]
            if self._id_paths[self._raw[p].id][0] == p
        ]
        page = "" if earlier[0] == path else f"{item.file_date.isoformat()}-{item.slug}"
        return item if item.page == page else dataclasses.replace(item, page=page)

    def _rebuild(self) -> None:
        """The orders and the pages from `_final`, sorted at once."""
        everything = sorted((order_key(item), item) for item in self._final.values())
        categories: dict[str, list[tuple[Key, Item]]] = {}
        weeks: dict[str, list[tuple[Key, Item]]] = {}
        tags: dict[str, list[tuple[Key, Item]]] = {}
        before = self._pages
        self._pages = {}
        self._spellings = {}
        for pair in everything:  # one (key, item) tuple shared by the orders
            item = pair[1]
            categories.setdefault(item.category, []).append(pair)
            weeks.setdefault(weekly.item_week(item, self.settings), []).append(pair)
            for slug, spelling in item.tag_slugs.items():
                tags.setdefault(slug, []).append(pair)
                self._spellings.setdefault(slug, Counter())[spelling] += 1
            self._pages[(item.category, item.page_name)] = item
        self._all = self._order(everything)
        self._categories = {name: self._order(pairs) for name, pairs in categories.items()}
        self._weeks = {name: self._order(pairs) for name, pairs in weeks.items()}
        self._tags = {slug: self._order(pairs) for slug, pairs in tags.items()}
        for key, item in before.items():
            if key not in self._pages:
                self._gone[key] = item.published
        for key, item in self._pages.items():
            recalled = self._gone.pop(key, None)  # gone no more
            known = before[key].published if key in before else recalled
            if known != item.published:
                self._placed[key] = item.published
        self._pages_base, self._pages_changed = dict(self._pages), {}

    def _place(self, item: Item) -> None:
        key = order_key(item)  # one tuple shared by the orders
        self._all.add(item, key)
        self._categories.setdefault(item.category, self._order()).add(item, key)
        self._weeks.setdefault(weekly.item_week(item, self.settings), self._order()).add(item, key)
        for slug, spelling in item.tag_slugs.items():
            self._tags.setdefault(slug, self._order()).add(item, key)
            self._spellings.setdefault(slug, Counter())[spelling] += 1
        page = (item.category, item.page_name)
        self._pages[page] = self._pages_changed[page] = item
        if self._gone.pop(page, None) != item.published:
            self._placed[page] = item.published

    def _unplace(self, item: Item) -> None:
        self._all.remove(item)
        self._categories[item.category].remove(item)
        self._weeks[weekly.item_week(item, self.settings)].remove(item)
        for slug, spelling in item.tag_slugs.items():
            self._tags[slug].remove(item)
            spellings = self._spellings[slug]
            spellings[spelling] -= 1
            if not spellings[spelling]:
                del spellings[spelling]
            if not self._tags[slug].keys:
                del self._tags[slug], self._spellings[slug]
        del self._pages[(item.category, item.page_name)]
        self._pages_changed[(item.category, item.page_name)] = None
        self._gone[(item.category, item.page_name)] = item.published

    def view(self, now: datetime, folders: Iterable[str], intros: Mapping[str, Intro]) -> View:
        """The published state at `now`: a few slices of the orders kept above."""
        settings = self.settings
        slugs = {*folders, *(c for c, ordered in self._categories.items() if ordered.keys)}
        categories = tuple(
            Category(slug, settings.category_name(slug), self._ordered(slug).newest_first(now))
            for slug in sorted(slugs, key=settings.category_rank)
        )
        groups = ((name, self._weeks[name].oldest_first(now)) for name in sorted(self._weeks))
        weeks, current, week_ends = weekly.assemble_weeks(groups, intros, settings, now)
        moments = [m for m in (self._all.next_after(now), week_ends) if m is not None]
        orphans = (
            Problem(intro.source.path, None, "warning",
                    f"no items in {name}; this introduction is not shown")
            for name, intro in intros.items()
            if not (name in self._weeks and self._weeks[name].keys)
        )  # fmt: skip
        return View(
            items=self._all.newest_first(now),
            categories=categories,
            weeks=weeks,
            current_week=current,
            changes_at=min(moments) if moments else None,
            pages=self._page_map(),
            problems=(*self._duplicates.values(), *orphans),
            tags=self._tag_view(now),
            gone=frozenset(key for key, published in self._gone.items() if published <= now),
        )

    def _tag_view(self, now: datetime) -> dict[str, Tag]:
        """Every tag with a published item, by slug, named by its most used spelling."""
        tags = {}
        for slug in sorted(self._tags):
            items = self._tags[slug].newest_first(now)
            if items:
                spellings = self._spellings[slug]
                name = min(spellings, key=lambda spelling: (-spellings[spelling], spelling))
                tags[slug] = Tag(slug, name, items)
        return tags

    def _page_map(self) -> Pages:
        """The pages as they are now; copying all of them only once changes pile up."""
        if len(self._pages_changed) > max(self.tuning.pages_rebase, len(self._pages_base) // 32):
            self._pages_base, self._pages_changed = dict(self._pages), {}
        return Pages(self._pages_base, dict(self._pages_changed))

    def _order(self, pairs: Iterable[tuple[Key, Item]] = ()) -> Ordered:
        return Ordered(pairs, self.tuning.piece)

    def _ordered(self, category: str) -> Ordered:
        return self._categories.get(category) or self._order()


K = TypeVar("K")
V = TypeVar("V", bound="SupportsRichComparison")


def _with(groups: dict[K, tuple[V, ...]], key: K, member: V) -> tuple[V, ...]:
    """Add `member` to the sorted group `key`; the group as it is now."""
    group = groups[key] = tuple(sorted((*groups.get(key, ()), member)))
    return group


def _without(groups: dict[K, tuple[V, ...]], key: K, member: V) -> tuple[V, ...]:
    """Take `member` out of the group `key` (dropping an empty group); what is left."""
    group = tuple(m for m in groups[key] if m != member)
    if group:
        groups[key] = group
    else:
        del groups[key]
    return group
