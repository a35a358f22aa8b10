"""Named in-memory cache regions with one invalidation path.

Every cache of what the dashboard reads or derives from a store lives in one :class:`Caches`
(one per store, owned by ``dashboard_data.Data``; the regions are declared in one table there,
``dashboard_data.REGIONS``). A region is a thread-safe LRU with a size bound; each entry is tagged
with the run it was derived from, and with the kind of its region:

- ``FIXED``: never changes once written (tokens, q/k, coordinates, images and what is computed from
  them alone); kept until its run or the whole store is invalidated;
- ``GROWS``: a writer can add to it while a run is written (metrics, the Matrix View of a partial run,
  value norms an ablation job stores); dropped for the runs not known to be complete when the
  store has changed;
- ``STORE``: run-level state any write may change (manifest, status, progress); dropped for every run
  when the store has changed.

``Caches.invalidate(run=None | run id | predicate, kinds=..., regions=...)`` is the only way entries
leave (besides LRU eviction): ``Data.clear()`` (store replaced) drops everything, ``Data.fresh()``
(store generation moved) drops STORE entries and the GROWS entries of growing runs.

A ``get`` may say when a cached value is still good (``keep(value, age_seconds)``: time-to-live,
"built from this manifest", ...); a region made with ``single_flight=True`` builds a missing entry
once when concurrent callers ask for it (the others wait and take the result)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable

from attention_atlas.core import runtime

FIXED, GROWS, STORE = "fixed", "grows", "store"
KINDS = (FIXED, GROWS, STORE)
_MISSING = object()


class Region:
    """One named LRU: (run, key) -> value, at most ``maxsize`` entries."""

    def __init__(self, name: str, maxsize: int, kind: str = FIXED, single_flight: bool = False):
        if kind not in KINDS:
            raise ValueError(f"cache region {name!r}: kind must be one of {KINDS}, not {kind!r}")
        self.name, self.maxsize, self.kind, self.single_flight = name, int(maxsize), kind, bool(single_flight)
        self._d: OrderedDict = OrderedDict()     # (run, key) -> (value, monotonic time stored)
        self._lock = threading.Lock()
        self._building: dict = {}                # (run, key) -> lock of the caller building it

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Region({self.name!r}, {len(self._d)}/{self.maxsize}, {self.kind})"

    def _hit(self, k, keep):
        with self._lock:
            e = self._d.get(k)
            if e is None:
                return _MISSING
            if keep is not None and not keep(e[0], time.monotonic() - e[1]):
                del self._d[k]
                return _MISSING
            self._d.move_to_end(k)
            return e[0]

    def _store(self, k, value) -> None:
        with self._lock:
            self._d[k] = (value, time.monotonic())
            self._d.move_to_end(k)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def get(self, run, key, fn: Callable[[], object], cache_none: bool = False,
            keep: Callable[[object, float], bool] | None = None):
        """The cached value of ``key`` (tagged ``run``), else ``fn()`` stored (None only with
        ``cache_none``). ``keep(value, age)`` false: the cached value is stale and rebuilt."""
        k = (run, key)
        value = self._hit(k, keep)
        if value is not _MISSING:
            return value
        if not self.single_flight:
            value = fn()
            if value is not None or cache_none:
                self._store(k, value)
            return value
        with self._lock:
            building = self._building.setdefault(k, threading.Lock())
        with building:  # concurrent callers of one key share a single build
            value = self._hit(k, keep)
            if value is not _MISSING:
                return value
            try:
                value = fn()
                if value is not None or cache_none:
                    self._store(k, value)
            finally:
                with self._lock:
                    if self._building.get(k) is building:
                        del self._building[k]
            return value

    def peek(self, run, key, default=None):
        """The cached value, or ``default`` (nothing is built)."""
        value = self._hit((run, key), None)
        return default if value is _MISSING else value

    def put(self, run, key, value) -> None:
        self._store((run, key), value)

    def _drop(self, which: Callable[[object], bool] | None) -> int:
        with self._lock:
            if which is None:
                n = len(self._d)
                self._d.clear()
                return n
            gone = [k for k in self._d if which(k[0])]
            for k in gone:
                del self._d[k]
            return len(gone)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._building = {}


class Caches:
    """The named regions of one store (see the module's docstring)."""

    def __init__(self, regions: Iterable[tuple] = ()):
        self._regions: dict[str, Region] = {}
        for spec in regions:
            self.add(*spec)
        runtime.reset_in_child(self)  # fresh region locks in a forked child

    def add(self, name: str, maxsize: int, kind: str = FIXED, single_flight: bool = False) -> Region:
        if name in self._regions:
            raise ValueError(f"cache region {name!r} is declared twice")
        self._regions[name] = region = Region(name, maxsize, kind, single_flight)
        return region

    def __getitem__(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise KeyError(f"no cache region {name!r} (declared: {', '.join(self._regions)})") from None

    def __iter__(self):
        return iter(self._regions.values())

    def invalidate(self, run=None, kinds: Iterable[str] | None = None, regions: Iterable[str] | None = None) -> int:
        """Drop entries; returns how many. ``run``: None = every run, a run id = that run's entries,
        a callable = the runs it is true for (entries without a run are tagged None). ``kinds`` /
        ``regions``: only the regions of these kinds / names (default: all)."""
        if callable(run):
            which = run
        elif run is None:
            which = None
        else:
            which = (lambda r: r == run)
        kinds = None if kinds is None else set(kinds)
        names = None if regions is None else set(regions)
        n = 0
        for r in self._regions.values():
            if (kinds is None or r.kind in kinds) and (names is None or r.name in names):
                n += r._drop(which)  # noqa: SLF001 - the one invalidation path
        return n

    def after_fork(self) -> None:
        """In a forked child: fresh locks (a lock held by another thread at the fork is never released)."""
        for r in self._regions.values():
            r._after_fork()  # noqa: SLF001
