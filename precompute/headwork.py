"""The unit of parallel work: everything computed for ONE attention head.

Top-level dataclasses/functions only, so tasks pickle to process pools and dask.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .joint import VARIANTS, joint_embedding
from .metrics import distance_attention_spearman, trustworthiness
from .projections import DIMS, METHODS, ProjectionParams, project

log = logging.getLogger(__name__)

__all__ = ["HeadTask", "HeadResult", "compute_head", "warmup"]


@dataclass
class HeadTask:
    layer: int
    head: int
    queries: np.ndarray          # (n, d) float32, token order
    keys: np.ndarray             # (n, d) float32, token order
    input_index: np.ndarray      # (n,) int32: which input each token belongs to
    causal: bool
    scale: float
    variants: list[str] = field(default_factory=lambda: ["translated"])
    methods: tuple = METHODS
    dims: tuple = DIMS
    params: ProjectionParams = field(default_factory=ProjectionParams)
    spearman_max_queries: int | None = 2000   # extra knob (sampled queries for the metric)
    trust_sample: int = 2000                  # extra knob; 0 disables trustworthiness
    trust_neighbors: int = 10


@dataclass
class HeadResult:
    layer: int
    head: int
    coords: dict = field(default_factory=dict)    # (variant, method, dim) -> float32 (2n, dim)
    metrics: dict = field(default_factory=dict)   # flat str -> float, see compute_head
    warnings: list = field(default_factory=list)


def compute_head(task: HeadTask) -> HeadResult:
    """Joint embedding, projections and metrics of one head, for every variant.

    ``metrics`` keys (all floats):
      ``spearman/{variant}``                 distance–attention Spearman (AttentionViz's figure)
      ``trust/{variant}/{method}/{dim}d``    trustworthiness (k=``trust_neighbors``, seeded sample,
                                              high-dim metric = ``params.metric``)
      ``time/{variant}/{stage}``             seconds per stage (joint, pca, knn, tsne2d, ..., spearman, trust)
      ``time/total``                         seconds for the whole head
    Warnings from degenerate inputs are prefixed with ``L{layer}H{head} {variant}:``.
    """
    t_all = time.perf_counter()
    res = HeadResult(layer=task.layer, head=task.head)
    q = np.asarray(task.queries, dtype=np.float32)
    k = np.asarray(task.keys, dtype=np.float32)
    if q.shape != k.shape:
        raise ValueError(f"queries {q.shape} and keys {k.shape} differ")
    tag = f"L{task.layer}H{task.head}"
    for variant in task.variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
        translate, scale = VARIANTS[variant]
        t0 = time.perf_counter()
        X = joint_embedding(q, k, translate=translate, scale=scale)
        res.metrics[f"time/{variant}/joint"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            sp = distance_attention_spearman(q, k, task.input_index, task.causal, task.scale,
                                             translate=translate, norm_scale=scale,
                                             max_queries=task.spearman_max_queries,
                                             seed=task.params.seed)
        except Exception as e:  # noqa: BLE001
            sp = float("nan")
            res.warnings.append(f"{tag} {variant}: spearman failed ({type(e).__name__}: {e})")
        res.metrics[f"spearman/{variant}"] = sp
        res.metrics[f"time/{variant}/spearman"] = time.perf_counter() - t0

        proj = project(X, methods=task.methods, dims=task.dims, params=task.params)
        for stage, dt in proj.timings.items():
            res.metrics[f"time/{variant}/{stage}"] = dt
        res.warnings.extend(f"{tag} {variant}: {w}" for w in proj.warnings)

        t0 = time.perf_counter()
        for (method, dim), Y in proj.items():
            res.coords[(variant, method, dim)] = Y
            if task.trust_sample:
                res.metrics[f"trust/{variant}/{method}/{dim}d"] = trustworthiness(
                    X, Y, n_neighbors=task.trust_neighbors, sample=task.trust_sample,
                    seed=task.params.seed, metric=task.params.metric)
        res.metrics[f"time/{variant}/trust"] = time.perf_counter() - t0
    res.metrics["time/total"] = time.perf_counter() - t_all
    return res


def warmup(params: ProjectionParams | None = None) -> float:
    """Run every projection once on tiny data so numba (UMAP) and openTSNE are
    compiled / loaded in this process.  Returns the seconds it took."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8)).astype(np.float32)
    p = params or ProjectionParams()
    small = ProjectionParams(**{**p.to_dict(), "tsne_perplexity": 10, "umap_n_epochs": 5,
                                "tsne_early_iter": 2, "tsne_n_iter": 2,
                                "tsne_3d_early_iter": 2, "tsne_3d_n_iter": 2,
                                "tsne_3d_from2d_n_iter": 2})
    project(X, params=small)
    return time.perf_counter() - t0
