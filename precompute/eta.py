"""The per-head stage's progress: an ETA that is right from the first finished head.

Used by precompute/pipeline.py (``Run._head_phase``): the worker processes are started and warmed
up (UMAP's numba code compiled) by :func:`start_workers` before the stage's clock matters, each
finished head reports its own compute time, and :class:`HeadETA` turns those into the remaining
time with per-method cost weights (:data:`COST`, :func:`head_cost`).
"""
from __future__ import annotations

import os
import time

# Relative cost of one variant of one head, per part of compute_head (seconds per head at 5,000
# points on this project's 2-core bench machine, bench/RESULTS.md "scaling"; trustworthiness
# measured on the demo run). Only the ratios matter: HeadETA scales them by the measured time of
# the heads already done, so a run mixing heads that lack different methods (a resumed or extended
# run) gets a remaining time in proportion to what each head still lacks.
COST = {"base": 0.06, "knn": 0.5, "tsne-P": 0.3, ("pca", 2): 0.0, ("pca", 3): 0.0, ("tsne", 2): 2.5,
        ("tsne", 3): 0.5, ("umap", 2): 0.6, ("umap", 3): 0.7, "trust": 0.28,
        # attention-graph layouts: not benched here; taken as their joint-space counterparts
        ("attn-tsne", 2): 2.5, ("attn-tsne", 3): 0.5, ("attn-umap", 2): 0.6, ("attn-umap", 3): 0.7}


def head_cost(variants, methods, dims, trust: bool = True) -> float:
    """Estimated relative cost of one head's task (see COST)."""
    methods, dims = set(methods), [int(d) for d in dims]
    one = COST["base"]
    if methods & {"tsne", "umap", "attn-tsne", "attn-umap"}:
        one += COST["knn"]
    if "tsne" in methods:
        one += COST["tsne-P"]
    for m in methods:
        for d in dims:
            one += COST.get((m, d), 0.0) + (COST["trust"] if trust else 0.0)
    return one * max(1, len(variants))


class HeadETA:
    """Remaining time of a head stage, right from the first finished head.

    tqdm's rate (heads / elapsed) is wrong for this stage in three ways: the first head also
    pays one-off costs (process start, numba compilation of UMAP), heads run ``workers`` at a
    time (the first result arrives after one head's time, not after 1/workers of it), and heads
    of one run can lack different methods. Here the one-off costs are paid before the stage is
    timed (``start_workers``), each finished head reports its own compute time (measured in the
    worker, so a busy machine shows in it), and the remaining time is
    ``seconds per unit of cost × cost still to do / heads running at once``."""

    def __init__(self, costs: list[float], workers: int = 1):
        self.workers = workers
        self.costs = list(costs)
        self.todo = sum(self.costs)
        self.left = len(self.costs)
        self.spent = 0.0  # measured seconds of the finished heads
        self.cost_done = 0.0
        self._mean = self.todo / max(1, len(self.costs))

    def done(self, seconds: float, cost: float | None = None) -> None:
        cost = self._mean if cost is None else cost
        self.left = max(0, self.left - 1)
        self.todo = max(0.0, self.todo - cost)
        self.spent += max(0.0, seconds)
        self.cost_done += cost

    def remaining(self) -> float | None:
        """Seconds still needed, or None before the first head has finished."""
        if self.cost_done <= 0 or self.spent <= 0:
            return None if self.left else 0.0
        per_cost = self.spent / self.cost_done
        return per_cost * self.todo / max(1, min(self.workers, self.left))

    def text(self) -> str:
        rem = self.remaining()
        if rem is None:
            return (f"{self.workers} worker{'s' if self.workers > 1 else ''}; ETA from the first finished head")
        return f"ETA {_duration(rem)} ({self.workers} worker{'s' if self.workers > 1 else ''}, measured per head)"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _worker_pid(delay: float = 0.0) -> int:
    time.sleep(delay)
    return os.getpid()


def start_workers(executor) -> int:
    """Start every worker of the executor and wait until each has run its initializer (thread
    limits, numba compilation of UMAP, openTSNE import): those one-off seconds then stay out of
    the timed head stage. Returns the number of workers."""
    from precompute.executor import _n_workers

    n = _n_workers(executor)
    # one short task per worker, submitted at once: a process pool starts a new worker for each
    # submission while none is idle, so all n start (and warm up) now rather than at their first head
    futures = [executor.submit(_worker_pid, 0.05) for _ in range(n)]
    for f in futures:
        f.result()
    return n
