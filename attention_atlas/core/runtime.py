"""Process runtime state, in one place: the live models this process has loaded, the lock of each,
per-process handles and singletons, and what a forked child must reset.

- ``live_model(source, device)``: a model adapter loaded (offline) once per process and kept —
  ``MAX_MODELS`` of them, they are large; concurrent callers load it once. ``analysis.live.run_model``
  adds the run's checks on top; ``release_models()`` frees them.
- ``model_lock(adapter)``: the lock every forward pass through a shared adapter holds (capture and
  ablation install their hooks on the model itself), one per model.
- ``prepare_forked_process()``: call before running torch in a process forked from one that may
  have run it (``live_model`` does it itself).
- ``disk_cache(path)``: one ``diskcache.Cache`` per folder per process; ``singleton(name, factory)``:
  one value per process (e.g. the job fork server's context).
- the fork handler (the only ``os.register_at_fork`` of the project): in a child, every lock here
  is new (one held by another thread of the parent at the fork would never be released), disk-cache
  handles are reopened on first use (never share the parent's SQLite connections), the loaded
  models stay (copy-on-write), and every object handed to ``reset_in_child`` gets ``after_fork()``
  (cache regions: attention_atlas/core/caches.py).
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

MAX_MODELS = 1

_guard = threading.RLock()                   # guards every table below (short holds only)
_loading = threading.Lock()                  # one model loads at a time
_models: OrderedDict = OrderedDict()         # (source, device) -> adapter, most recent last
_locks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()   # adapter -> its forward-pass lock
_handles: dict = {}                          # folder -> diskcache.Cache opened by this process
_singletons: dict = {}
_resets: "weakref.WeakSet" = weakref.WeakSet()
_forked = False


def live_model(source: str, device: str = "cpu"):
    """The model adapter of ``source`` (precompute.models.load_model), loaded once per process."""
    prepare_forked_process()
    key = (str(source), str(device))
    with _guard:
        adapter = _models.get(key)
        if adapter is not None:
            _models.move_to_end(key)
            return adapter
    with _loading:
        with _guard:
            adapter = _models.get(key)
            if adapter is not None:
                return adapter
            while len(_models) >= MAX_MODELS:   # free the memory first: models are large
                _models.popitem(last=False)
        from precompute.models import load_model
        adapter = load_model(source, device=device)
        with _guard:
            _models[key] = adapter
        return adapter


def loaded_models() -> list[tuple[str, str]]:
    """(source, device) of the models this process holds."""
    with _guard:
        return list(_models)


def release_models() -> None:
    """Drop the loaded models (frees their memory once nobody uses them)."""
    with _guard:
        _models.clear()


def model_lock(adapter) -> threading.Lock:
    """The lock of ``adapter``'s model: one forward pass at a time through it."""
    with _guard:
        lock = _locks.get(adapter)
        if lock is None:
            lock = _locks[adapter] = threading.Lock()
        return lock


def forked() -> bool:
    """Whether this process was forked from another Python process of the project."""
    return _forked


def prepare_forked_process() -> None:
    """GNU OpenMP's thread pool does not survive a fork: a forked child's first parallel torch op
    hangs forever. One intra-op thread never enters the pool (checked: a forked matmul hangs
    without this, runs with it). A no-op in a process that was not forked."""
    if _forked:
        import torch
        torch.set_num_threads(1)


def disk_cache(path, size_limit: int = 2**30):
    """This process's ``diskcache.Cache`` on ``path`` (made if missing), opened once."""
    import diskcache

    path = Path(path)
    with _guard:
        cache = _handles.get(str(path))
        if cache is None:
            path.mkdir(parents=True, exist_ok=True)
            cache = _handles[str(path)] = diskcache.Cache(str(path), size_limit=size_limit)
        return cache


def singleton(name: str, factory):
    """One value per process, made by ``factory()`` on first use (kept in a forked child)."""
    with _guard:
        if name not in _singletons:
            _singletons[name] = factory()
        return _singletons[name]


def reset_in_child(obj) -> None:
    """Call ``obj.after_fork()`` in a forked child (held weakly)."""
    with _guard:
        _resets.add(obj)


def _after_fork_in_child() -> None:
    global _guard, _loading, _locks, _forked
    _guard = threading.RLock()
    _loading = threading.Lock()
    _locks = weakref.WeakKeyDictionary()
    _handles.clear()          # the parent's connections: not closed here, not used either
    _forked = True
    for obj in list(_resets):
        obj.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
