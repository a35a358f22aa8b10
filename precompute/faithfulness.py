"""Names and definitions of the per-head faithfulness figures stored in a head's metrics.

One place says what each stored key means, so the CLI, the export and the dashboard name a
figure by its exact definition and never set it beside a number of another definition.
Pure: no numpy, no store access.

Stored keys (``run/<id>/head/<l>/<h>/metrics``):

``spearman/{variant}``
    joint space, Euclidean distance ‖q − k′‖ (the key name predates the cosine figure;
    its definition is unchanged).
``spearman_cosine/{variant}``
    joint space, cosine distance 1 − cos(q, k′): AttentionViz's figure.
``picture_spearman/{variant}/{method}/{dim}d``
    the same correlation measured with Euclidean distance in the projection's coordinates.
``trust/{variant}/{method}/{dim}d``
    trustworthiness with the run's kNN metric (``settings.params.metric``, cosine by default)
    in the joint space, for every projection (one definition across methods).
``trust_euclidean/{variant}/pca/{dim}d``
    trustworthiness with Euclidean distance in the joint space, the metric PCA preserves
    (only when the run's metric is not already Euclidean).
``figure_params``
    how the figures were sampled: ``spearman_queries`` (queries used) of ``tokens``,
    ``trust_k``, ``trust_points`` (sampled points) of ``points``.  Absent in stores computed
    before these figures existed: :data:`LEGACY_PARAMS` then describes them.
"""
from __future__ import annotations

__all__ = ["joint_key", "picture_key", "trust_key", "fit_metric", "trust_fit_key", "LEGACY_PARAMS",
           "JOINT_METRICS", "figure_keys", "missing_figures", "PICTURE_METRIC", "describe", "is_figure",
           "figure_summary", "method_label", "METHOD_LABELS"]

#: distance metrics of the joint-space Spearman figure, in display order (AttentionViz's first)
JOINT_METRICS = ("cosine", "euclidean")
#: distance in a picture is what the eye sees
PICTURE_METRIC = "euclidean"

#: how stores written before ``figure_params`` existed computed ``spearman/*`` and ``trust/*``
LEGACY_PARAMS = {"spearman_queries": 2000, "spearman_sampled": "a seeded sample of at most 2,000 queries",
                 "trust_k": 10, "trust_points": 2000}


def joint_key(variant: str, metric: str) -> str:
    if metric == "euclidean":
        return f"spearman/{variant}"
    if metric == "cosine":
        return f"spearman_cosine/{variant}"
    raise ValueError(f"unknown joint-space metric {metric!r}")


def picture_key(variant: str, method: str, dim: int) -> str:
    return f"picture_spearman/{variant}/{method}/{int(dim)}d"


def trust_key(variant: str, method: str, dim: int, metric: str, run_metric: str = "cosine") -> str:
    """Key of the trustworthiness measured with ``metric`` in the joint space."""
    if metric == run_metric:
        return f"trust/{variant}/{method}/{int(dim)}d"
    if metric == "euclidean":
        return f"trust_euclidean/{variant}/{method}/{int(dim)}d"
    raise ValueError(f"trustworthiness with {metric!r} is not stored (run metric {run_metric!r})")


def fit_metric(method: str, run_metric: str = "cosine") -> str:
    """The joint-space metric a projection preserves: Euclidean for PCA (a linear map), the
    run's kNN metric for the neighbour-graph methods (t-SNE, UMAP, attention-graph layouts)."""
    return "euclidean" if method == "pca" else run_metric


def trust_fit_key(variant: str, method: str, dim: int, run_metric: str = "cosine") -> str:
    return trust_key(variant, method, dim, fit_metric(method, run_metric), run_metric)


def figure_keys(variants, methods, dims, run_metric: str = "cosine", trust: bool = True) -> list[str]:
    """Every figure key a complete head of a run with these settings stores."""
    keys = []
    for v in variants:
        keys += [joint_key(v, m) for m in JOINT_METRICS]
        for m in methods:
            for d in dims:
                keys.append(picture_key(v, m, d))
                if trust:
                    keys.append(trust_key(v, m, d, run_metric, run_metric))
                    if fit_metric(m, run_metric) != run_metric:
                        keys.append(trust_fit_key(v, m, d, run_metric))
    return keys


def missing_figures(metrics: dict | None, variants, methods, dims, run_metric: str = "cosine",
                    trust: bool = True) -> list[str]:
    metrics = metrics or {}
    return [k for k in figure_keys(variants, methods, dims, run_metric, trust) if k not in metrics]


# ------------------------------------------------------------------ labels and definitions
METHOD_LABELS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP", "attn-umap": "attention-graph UMAP",
                 "attn-tsne": "attention-graph t-SNE"}

_SPEARMAN_DEF = ("for each query, Spearman rank correlation between {dist} and its attention weight, over "
                 "the keys of its own input it may attend to (causal prefix for decoders); mean per input, "
                 "then mean over inputs. Attention from the stored q/k. Negative = nearer means more "
                 "attention. Queries: {queries}.")


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _queries_text(params: dict | None) -> str:
    if not params:
        return LEGACY_PARAMS["spearman_sampled"] + " (stored before the sample size was recorded)"
    used, n = params.get("spearman_queries"), params.get("tokens")
    return f"all {n:,}" if used == n else f"a seeded sample of {used:,} of {n:,}"


def _trust_text(params: dict | None, metric: str) -> str:
    p = params or {}
    k = p.get("trust_k", LEGACY_PARAMS["trust_k"])
    pts = p.get("trust_points", LEGACY_PARAMS["trust_points"])
    of = p.get("points")
    sample = f"{pts:,} points" + (f" (seeded sample of {of:,})" if of and pts and pts < of else "")
    if not params:
        sample = f"a seeded sample of at most {pts:,} points"
    return (f"trustworthiness (scikit-learn) of the picture's k={k} nearest neighbours against the "
            f"{metric} neighbours in the joint space, on {sample}; 1 = every picture neighbour is a true "
            f"neighbour")


def describe(key: str, params: dict | None = None) -> dict:
    """{key, label, short, definition, better, kind, variant, method, dim, metric} of a stored figure key.

    ``params``: the head's ``figure_params`` (None for stores that predate them: the legacy
    sampling is stated).  ``better``: "lower" (Spearman: strongly negative is faithful) or
    "higher" (trustworthiness).  Raises ValueError for a key that is not a figure.
    """
    parts = key.split("/")
    head, rest = parts[0], parts[1:]
    if head in ("spearman", "spearman_cosine") and len(rest) == 1:
        metric = "cosine" if head == "spearman_cosine" else "euclidean"
        dist = ("the cosine distance 1 − cos(q, k′) in the joint space (AttentionViz's figure)"
                if metric == "cosine" else "the Euclidean distance ‖q − k′‖ in the joint space")
        return {"key": key, "kind": "joint", "variant": rest[0], "method": None, "dim": None, "metric": metric,
                "label": f"joint-space ρ ({metric})", "short": "ρ cos" if metric == "cosine" else "ρ euc",
                "better": "lower",
                "definition": _SPEARMAN_DEF.format(dist=dist, queries=_queries_text(params))
                + f" Embedding variant: {rest[0]}."}
    if head == "picture_spearman" and len(rest) == 3:
        v, m, d = rest[0], rest[1], int(rest[2].rstrip("d"))
        dist = f"the Euclidean distance between query and key points in the {method_label(m)} {d}D picture"
        return {"key": key, "kind": "picture", "variant": v, "method": m, "dim": d, "metric": PICTURE_METRIC,
                "label": f"picture ρ ({method_label(m)} {d}D)", "short": "ρ pic", "better": "lower",
                "definition": _SPEARMAN_DEF.format(dist=dist, queries=_queries_text(params))
                + " Positive = nearer in this picture means LESS attention: the picture misleads."
                + f" Embedding variant: {v}."}
    if head in ("trust", "trust_euclidean") and len(rest) == 3:
        v, m, d = rest[0], rest[1], int(rest[2].rstrip("d"))
        metric = "euclidean" if head == "trust_euclidean" else (params or {}).get("trust_metric", "cosine")
        return {"key": key, "kind": "trust", "variant": v, "method": m, "dim": d, "metric": metric,
                "label": f"trustworthiness ({metric}, {method_label(m)} {d}D)", "short": f"trust {metric[:3]}",
                "better": "higher",
                "definition": _trust_text(params, metric) + f". Embedding variant: {v}."}
    raise ValueError(f"{key!r} is not a faithfulness figure")


def is_figure(key: str) -> bool:
    try:
        describe(key)
        return True
    except ValueError:
        return False


def figure_summary(metrics_per_head: list, manifest: dict, variant: str = "translated") -> list[dict]:
    """Every figure of ``variant`` summarised over the heads that have it: one dict per figure
    key with its label, ``n`` (heads with a finite value), ``missing`` (heads without it:
    computed before the figure existed), ``nan`` (degenerate heads), ``mean`` and ``median``
    (over the ``n`` heads).  Joint-space figures first, then per projection."""
    import math
    import statistics

    run_metric = ((manifest.get("settings") or {}).get("params") or {}).get("metric", "cosine")
    keys = figure_keys([variant], manifest.get("projections") or [], manifest.get("dims") or [], run_metric)
    out = []
    for key in keys:
        vals = [m.get(key) for m in metrics_per_head]
        present = [float(x) for x in vals if isinstance(x, (int, float))]
        finite = [x for x in present if math.isfinite(x)]
        params = next((m.get("figure_params") for m in metrics_per_head if key in m), None)
        row = {**describe(key, params), "n": len(finite), "missing": len(vals) - len(present),
               "nan": len(present) - len(finite),
               "mean": statistics.fmean(finite) if finite else None,
               "median": statistics.median(finite) if finite else None}
        out.append(row)
    return out
