"""Executors for per-head work: local processes (default) or a dask cluster.

Local: ``ProcessPoolExecutor`` with the ``forkserver`` start method (no fork
after BLAS/numba threads exist) and an initializer that limits BLAS/OpenMP/numba
threads so ``workers * threads ≈ cores``, points numba's cache at a persistent
directory and (optionally) warms up UMAP/openTSNE once per worker process.
No numpy import at module level, so the thread env vars are in place before
BLAS loads in a fresh worker.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["make_executor", "close_executor", "run_tasks", "worker_init", "numba_cache_dir", "cache_umap_numba",
           "pid_alive"]

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS",
                "NUMBA_NUM_THREADS")
_LIMITER = None  # keeps threadpoolctl's limits alive in the worker
log = logging.getLogger(__name__)


def numba_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(base, "attention_atlas", "numba")


def cache_umap_numba() -> int:
    """Let numba cache the few umap-learn functions that umap leaves uncached (its fuzzy simplicial
    set and layout epoch: ``smooth_knn_dist``, ``compute_membership_strengths``,
    ``_nb_optimize_layout_euclidean_single_epoch`` and their helpers). Uncached they are compiled
    afresh in every worker process (~10 s of a 2-core machine per worker); cached they load from
    ``NUMBA_CACHE_DIR`` like pynndescent's. Call before their first use. Returns how many were
    switched to caching (0 when umap or a cache locator is unavailable: nothing changes then)."""
    try:
        from numba.core.dispatcher import Dispatcher
        from numba.core.caching import NullCache

        import umap.layouts
        import umap.umap_
        import umap.utils
    except ImportError:  # umap or numba's internals not there: an optimisation only
        return 0
    n = 0
    for mod in (umap.umap_, umap.layouts, umap.utils):
        for obj in list(vars(mod).values()):
            if (isinstance(obj, Dispatcher) and obj.__module__ == mod.__name__ and not obj.signatures
                    and isinstance(obj._cache, NullCache)):  # noqa: SLF001 - numba's own switch below
                try:
                    obj.enable_caching()
                    n += 1
                except Exception:  # noqa: BLE001 - optional-feature probe (e.g. no writable cache location)
                    log.debug("numba caching not enabled for %s: stays uncached", obj.__name__, exc_info=True)
    return n


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie — ended, not yet reaped — has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _exit_with(parent: int, poll: float = 1.0) -> None:
    """Worker side: end this process once the run that started the pool (``parent``) has ended. The
    workers are children of multiprocessing's fork server, not of the run, so a run ended by a plain
    kill (SIGTERM, SIGKILL) left them and the fork server waiting for work for ever."""
    import threading

    def watch():
        while pid_alive(parent):
            time.sleep(poll)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="atlas-exit-with-run").start()


def worker_init(threads: int = 1, warm: bool = True, parent: int | None = None) -> None:
    """Process-pool initializer: thread limits, numba cache dir, optional warm-up; ``parent``: the
    run's pid, whose end ends this worker (:func:`_exit_with`)."""
    global _LIMITER
    if parent:
        _exit_with(parent)
    threads = max(1, int(threads))
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    os.environ.setdefault("NUMBA_CACHE_DIR", numba_cache_dir())
    try:
        os.makedirs(os.environ["NUMBA_CACHE_DIR"], exist_ok=True)
    except OSError:
        pass
    try:  # effective even if BLAS was already loaded (e.g. fork start method)
        from threadpoolctl import threadpool_limits
        _LIMITER = threadpool_limits(limits=threads)
    except Exception:  # noqa: BLE001 - optional-feature probe: the env vars above still limit new pools
        log.debug("threadpoolctl limits not applied", exc_info=True)
    try:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # noqa: BLE001 - optional-feature probe: NUMBA_NUM_THREADS is set above
        log.debug("numba thread count not set", exc_info=True)
    cache_umap_numba()
    if warm:
        try:
            from .headwork import warmup
            warmup()
        except Exception:  # noqa: BLE001 - optional: warm-up is an optimisation only
            log.warning("worker warm-up failed (the first head of this worker is slower)", exc_info=True)


def make_executor(workers: int | None = None, dask_address: str | None = None,
                  warm: bool = True) -> cf.Executor:
    """Return a ``concurrent.futures`` executor for :func:`run_tasks`.

    ``dask_address``: connect ``distributed.Client(address)`` and return
    ``client.get_executor()`` (the client stays referenced by the executor as
    ``executor._client``); thread limits are then the dask workers' business
    (dask's nanny already sets OMP/MKL/OPENBLAS=1).  Otherwise a
    ``ProcessPoolExecutor(max_workers=workers or os.cpu_count())`` whose workers
    each use ``max(1, cores // workers)`` BLAS/numba threads.  ``warm`` (extra
    keyword): run a tiny projection in each new worker to compile numba up front.
    """
    if dask_address:
        from distributed import Client

        client = Client(dask_address)
        ex = client.get_executor()
        ex._client = client  # noqa: SLF001 - keep alive; ClientExecutor already holds it
        ex._atlas_workers = max(1, sum(client.nthreads().values()))
        return ex
    cores = os.cpu_count() or 1
    workers = max(1, int(workers or cores))
    threads = max(1, cores // workers)
    try:
        ctx = mp.get_context("forkserver")
    except ValueError:  # platforms without forkserver
        ctx = mp.get_context("spawn")
    ex = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init,
                                initargs=(threads, warm, os.getpid()))
    ex._atlas_workers = workers
    return ex


def close_executor(executor: cf.Executor) -> None:
    """Shut an executor down; for Dask also close the client it opened."""
    executor.shutdown(wait=True)
    client = getattr(executor, "_client", None)
    if client is not None:
        client.close()


def _n_workers(executor) -> int:
    n = getattr(executor, "_atlas_workers", None) or getattr(executor, "_max_workers", None)
    return max(1, int(n or os.cpu_count() or 1))


def run_tasks(executor: cf.Executor, tasks: Iterable, fn: Callable,
              on_done: Callable | None = None, max_in_flight: int | None = None) -> Iterator:
    """Submit ``fn(task)`` for each task and yield results as they complete.

    At most ``max_in_flight`` (default ``2 * workers``) tasks are submitted at a
    time, so only that many heads' inputs/results are held in memory; tasks are
    pulled lazily from ``tasks`` (a generator is fine).  ``on_done(result)`` is
    called for each result before it is yielded.  An exception in a task is
    re-raised here (remaining futures are cancelled).
    """
    limit = max(1, int(max_in_flight or 2 * _n_workers(executor)))
    it = iter(tasks)
    pending: set = set()

    def fill():
        while len(pending) < limit:
            try:
                t = next(it)
            except StopIteration:
                return
            pending.add(executor.submit(fn, t))

    fill()
    try:
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                result = fut.result()
                if on_done is not None:
                    on_done(result)
                yield result
            fill()
    finally:
        for fut in pending:
            fut.cancel()
