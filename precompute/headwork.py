"""The unit of parallel work: everything computed for ONE attention head.

Top-level dataclasses/functions only, so tasks pickle to process pools and dask.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .joint import VARIANTS, joint_embedding
from .faithfulness import JOINT_METRICS, PICTURE_METRIC, fit_metric, joint_key, picture_key, trust_key
from .metrics import query_sample, spearman_figures, trustworthiness
from .projections import ATTN_METHODS, DIMS, METHODS, ProjectionParams, project

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
    window: int | None = None                 # the layer's semantics (precompute.metrics.layer_semantics)
    softcap: float | None = None
    bias: np.ndarray | None = None            # the head's relative-position bias table (T5), None = none
    key_index: np.ndarray | None = None       # input of each key row when keys are other tokens (cross-attention)
    variants: list[str] = field(default_factory=lambda: ["translated"])
    methods: tuple = METHODS
    dims: tuple = DIMS
    params: ProjectionParams = field(default_factory=ProjectionParams)
    spearman_max_queries: int | None = None   # None: every query (a seeded sample otherwise)
    trust_sample: int = 2000                  # extra knob; 0 disables trustworthiness
    trust_neighbors: int = 10
    # projections already stored whose figures are missing: (variant, method, dim) -> coords;
    # measured, not recomputed (a re-run of an older store adds just the missing figures)
    stored: dict = field(default_factory=dict)


@dataclass
class HeadResult:
    layer: int
    head: int
    coords: dict = field(default_factory=dict)    # (variant, method, dim) -> float32 (2n, dim)
    metrics: dict = field(default_factory=dict)   # flat str -> float, see compute_head
    warnings: list = field(default_factory=list)


def compute_head(task: HeadTask) -> HeadResult:
    """Joint embedding, projections and faithfulness figures of one head, for every variant.

    ``metrics`` keys (see :mod:`precompute.faithfulness` for the definitions):
      ``spearman/{variant}``                    joint space, Euclidean distance–attention Spearman
      ``spearman_cosine/{variant}``             joint space, cosine distance (AttentionViz's figure)
      ``picture_spearman/{variant}/{method}/{dim}d``  the same, Euclidean distance in the picture
      ``trust/{variant}/{method}/{dim}d``       trustworthiness (k=``trust_neighbors``, seeded
                                                 sample, joint-space metric = ``params.metric``)
      ``trust_euclidean/{variant}/pca/{dim}d``  the same with Euclidean distance (fits PCA)
      ``figure_params``                         dict: queries, k and sample sizes used
      ``time/{variant}/{stage}``                seconds per stage (joint, pca, knn, tsne2d, ..., spearman, trust)
      ``time/total``                            seconds for the whole head
    Projections listed in ``task.stored`` are measured, not recomputed; the joint-space figures
    are computed for every variant of ``task.variants``.
    Warnings from degenerate inputs are prefixed with ``L{layer}H{head} {variant}:``.
    """
    t_all = time.perf_counter()
    res = HeadResult(layer=task.layer, head=task.head)
    q = np.asarray(task.queries, dtype=np.float32)
    k = np.asarray(task.keys, dtype=np.float32)
    if q.shape != k.shape and (task.key_index is None or q.shape[1] != k.shape[1]):
        raise ValueError(f"queries {q.shape} and keys {k.shape} differ")
    n = len(q)
    tag = f"L{task.layer}H{task.head}"
    run_metric = task.params.metric
    n_used = int(query_sample(n, task.spearman_max_queries, task.params.seed).sum())
    res.metrics["figure_params"] = {
        "spearman_queries": n_used, "tokens": n,
        "trust_k": task.trust_neighbors if task.trust_sample else None,
        "trust_points": min(task.trust_sample, 2 * n) if task.trust_sample else None, "points": 2 * n,
        "trust_metric": run_metric, "picture_metric": PICTURE_METRIC}
    for variant in task.variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
        translate, scale = VARIANTS[variant]
        t0 = time.perf_counter()
        X = joint_embedding(q, k, translate=translate, scale=scale)
        res.metrics[f"time/{variant}/joint"] = time.perf_counter() - t0

        pictures = {}
        # project only what is not stored (a variant may only need figures of stored pictures)
        todo = [(m, d) for m in task.methods for d in task.dims if (variant, m, d) not in task.stored]
        if todo:
            methods = [m for m in task.methods if any(t[0] == m for t in todo)]
            dims = [d for d in task.dims if any(t[1] == d for t in todo)]
            proj = project(X, methods=methods, dims=dims, params=task.params, qk=(q, k),
                           input_index=task.input_index, causal=task.causal, scale=task.scale)
            for stage, dt in proj.timings.items():
                res.metrics[f"time/{variant}/{stage}"] = dt
            res.warnings.extend(f"{tag} {variant}: {w}" for w in proj.warnings)
            for (method, dim), Y in proj.items():
                res.coords[(variant, method, dim)] = Y
                pictures[(method, dim)] = Y
        for (v, method, dim), Y in task.stored.items():
            if v == variant and (method, dim) not in pictures:
                pictures[(method, dim)] = np.asarray(Y)

        t0 = time.perf_counter()
        spaces = {joint_key(variant, m): (X[:n], X[n:], m) for m in JOINT_METRICS}
        for (method, dim), Y in pictures.items():
            spaces[picture_key(variant, method, dim)] = (Y[:n], Y[n:], PICTURE_METRIC)
        try:
            res.metrics.update(spearman_figures(q, k, task.input_index, task.causal, task.scale, spaces,
                                                max_queries=task.spearman_max_queries, seed=task.params.seed,
                                                window=task.window, softcap=task.softcap, bias=task.bias,
                                                key_index=task.key_index))
        except Exception as e:  # noqa: BLE001 - one head's task edge: a failed figure is NaN and a warning, never a stopped run
            res.metrics.update({key: float("nan") for key in spaces})
            res.warnings.append(f"{tag} {variant}: spearman failed ({type(e).__name__}: {e})")
            log.info("%s %s: spearman failed", tag, variant, exc_info=True)
        res.metrics[f"time/{variant}/spearman"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if task.trust_sample:
            for (method, dim), Y in pictures.items():
                metrics = [run_metric] + ([fit_metric(method, run_metric)]
                                          if fit_metric(method, run_metric) != run_metric else [])
                for metric in metrics:
                    res.metrics[trust_key(variant, method, dim, metric, run_metric)] = trustworthiness(
                        X, Y, n_neighbors=task.trust_neighbors, sample=task.trust_sample,
                        seed=task.params.seed, metric=metric)
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
    # the attention-graph layouts' numba code (fuzzy sets of precomputed lists, graph layout)
    idx = np.repeat(np.arange(6), 10)
    project(X, methods=ATTN_METHODS, params=ProjectionParams(**{**small.to_dict(), "attn_n_epochs": 5}),
            qk=(X[:60], X[60:]), input_index=idx)
    return time.perf_counter() - t0
