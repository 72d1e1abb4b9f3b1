"""A thread-safe LRU with a budget in bytes: what the documents and the written feed
entries are kept in (feedsvc.documents, feedsvc.render)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


def _size(value: Any) -> int:
    size: int = getattr(value, "size", 0)
    return size


class Memo:
    """A thread-safe LRU with a budget in bytes; a value weighs what `weigh` says, by
    default its `size` attribute (0 for None, the "no such document" answer, and for
    values without one)."""

    def __init__(self, max_bytes: int, weigh: Callable[[Any], int] = _size) -> None:
        self.max_bytes = max_bytes
        self._weigh = weigh
        self._values: OrderedDict[Any, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __contains__(self, key: Any) -> bool:
        return key in self._values

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            if key not in self._values:
                return default
            self._values.move_to_end(key)
            return self._values[key]

    def items(self) -> list[tuple[Any, Any]]:
        """What it holds now, oldest use first (a copy)."""
        with self._lock:
            return list(self._values.items())

    def discard(self, key: Any) -> None:
        with self._lock:
            if key in self._values:
                self._bytes -= self._weigh(self._values.pop(key))

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if key in self._values:
                self._bytes -= self._weigh(self._values.pop(key))
            self._values[key] = value
            self._bytes += self._weigh(value)
            while self._bytes > self.max_bytes and len(self._values) > 1:
                _, evicted = self._values.popitem(last=False)
                self._bytes -= self._weigh(evicted)
