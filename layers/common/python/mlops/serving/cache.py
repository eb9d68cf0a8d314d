"""The shared scoring tier's model cache: (family, version) -> a loaded model, bounded by memory, least recently
used out.

A model is loaded on its first request (fetch from S3, sha256 check, session, warm-up: the loader's work), and its
footprint is measured while it loads: the growth of the C heap in use (glibc's mallinfo2: onnxruntime's session
and arena, numpy buffers, the artifact's bytes; freed memory that is reused is counted, unlike the resident set),
at least the artifact's size. Measured on the bench machine: logistic regression about 0.2 MB, HistGradientBoosting
0.8 MB, a 100-tree forest 30 MB (docs/benchmarks.md). When the total exceeds the budget, the least recently used
models are evicted (their buffered captures and decision records handed to the writers first) until it fits; the
model just loaded always stays, even alone over the budget (it is served, and is the first out next time).

Where glibc is not available (a developer's macOS), the resident set's growth is used instead, and where neither
is, the artifact's size times FALLBACK_FACTOR.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

FALLBACK_FACTOR = 4


class Cached(Protocol):
    """What the cache holds: the artifact's size (bytes) and a way to let go of the model."""

    artifact_bytes: int

    def close(self) -> None: ...


@dataclass
class _Entry:
    value: Any
    footprint: int


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    loads_seconds: list[float] = field(default_factory=list)


class ModelCache:
    """LRU by bytes. `capacity_bytes`: the budget; `load(family, version)`: the model (raises what it raises:
    nothing is cached then); `measure()`: bytes in use now, or None when it cannot tell."""

    def __init__(self, capacity_bytes: int, load: Callable[[str, int], Cached],
                 measure: Callable[[], int | None] | None = None) -> None:
        self.capacity = capacity_bytes
        self._load = load
        self._measure = measure or heap_in_use
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self.bytes = 0
        self.stats = CacheStats()

    def get(self, family: str, version: int) -> Any:
        """The model of `family` `version`, loaded on first use. Hot path: a dict lookup and a move to the end."""
        key = (family, version)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return entry.value
        # One load at a time: a second caller of the same model waits for it instead of loading it twice, and
        # the heap measurement is not mixed with another load's.
        with self._loading:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.stats.hits += 1
                    return entry.value
            before = self._measure()
            value = self._load(family, version)
            after = self._measure()
            grown = after - before if before is not None and after is not None else 0
            footprint = max(grown, int(value.artifact_bytes) * (1 if before is not None else FALLBACK_FACTOR))
            with self._lock:
                self.stats.misses += 1
                self._entries[key] = _Entry(value, footprint)
                self.bytes += footprint
                evicted = self._evict(keep=key)
        for old in evicted:
            old.close()
        return value

    def footprint(self, family: str, version: int) -> int | None:
        """Bytes measured for a cached model (None when it is not cached)."""
        entry = self._entries.get((family, version))
        return entry.footprint if entry is not None else None

    def keys(self) -> list[tuple[str, int]]:
        """Cached models, least recently used first."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, keep: tuple[str, int]) -> list[Any]:
        evicted = []
        while self.bytes > self.capacity and len(self._entries) > 1:
            key = next(iter(self._entries))
            if key == keep:  # only when it is the least recently used: move past it
                self._entries.move_to_end(key)
                continue
            entry = self._entries.pop(key)
            self.bytes -= entry.footprint
            self.stats.evictions += 1
            evicted.append(entry.value)
        return evicted


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2

    def in_use() -> int:
        info = function()
        return int(info.uordblks + info.hblkhd)  # allocated chunks in the arenas + mmapped chunks

    return in_use


def _resident() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _page_size()
    except (OSError, ValueError, IndexError):
        return None


def _page_size() -> int:
    import os

    return os.sysconf("SC_PAGE_SIZE")


_heap = _mallinfo2()


def heap_in_use() -> int | None:
    """Bytes of C heap in use (glibc), else the resident set size, else None."""
    return _heap() if _heap is not None else _resident()
