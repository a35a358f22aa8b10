"""View models of the faithfulness figures (issue 13): plain data in, plain data out.

For the dashboard's Single View (a head's figure table with definitions for hover, per-point
distortion colouring) and Matrix View (a catalogue of every per-head figure the sort / shade /
label controls can use, values per head, ranking, the misleading-cell flag).  No Dash, no store
access: callers pass the run (its RunInfo, attention_atlas.core.runinfo), the head metrics (``Store.metrics`` / ``DashboardData.metrics``)
and, for the distortion, the head's q/k and the picture's coordinates.

Every figure is named by its exact definition (:func:`precompute.faithfulness.describe`);
a figure a store does not hold (computed before it existed) is reported as
:data:`NOT_COMPUTED`, never replaced by a number of another definition.
"""
from __future__ import annotations

import math

import numpy as np

from attention_atlas.core.runinfo import RunInfo, as_runinfo
from precompute.faithfulness import (JOINT_METRICS, describe, fit_metric, joint_key, method_label, picture_key,
                                     trust_key)

__all__ = ["NOT_COMPUTED", "UNDEFINED", "run_metric", "figure_catalogue", "resolve_figure", "head_figure_table",
           "head_values", "rank_heads", "misleading", "misleading_cells", "point_distortion", "format_value",
           "DISTORTION_K", "distortion_label", "distortion_definition", "FIG_ORDER", "figure_order",
           "order_figure_id", "sort_figure_options", "figure_scores", "filter_label", "picture_label",
           "all_figure_sort_options"]

NOT_COMPUTED = "not computed — re-run precompute to add it"
UNDEFINED = "undefined for this head (too few attendable keys or constant ranks)"


def run_metric(run: RunInfo) -> str:
    """The joint-space kNN metric of the run (t-SNE/UMAP neighbours, ``trust/*`` figures)."""
    return as_runinfo(run).metric


def _entry(id_: str, key: str, params: dict | None = None, label: str | None = None) -> dict:
    d = describe(key, params)
    return {"id": id_, "key": key, "label": label or d["label"], "short": d["short"], "definition": d["definition"],
            "better": d["better"], "kind": d["kind"], "method": d["method"], "dim": d["dim"], "metric": d["metric"]}


def figure_catalogue(run: RunInfo, variant: str, method: str | None = None, dim: int | None = None) -> list[dict]:
    """Every per-head figure of ``variant`` a control can sort, shade or label by.

    One dict per figure: ``id`` (stable option value), ``key`` (metrics key), ``label``,
    ``short`` (for a cell label), ``definition`` (hover text), ``better`` ("lower" for the
    Spearman figures — strongly negative is faithful — "higher" for trustworthiness),
    ``kind`` (joint | picture | trust), ``method``, ``dim``, ``metric``.

    With ``method``/``dim`` (the projection being shown), three "shown picture" entries come
    first, whose ids do not change when the user switches projection: ``picture-shown``,
    ``trust-shown`` (the run's metric) and, when it differs, ``trust-fit-shown`` (the metric the
    projection preserves: Euclidean for PCA).  Then the joint-space figures (``joint-cosine``,
    AttentionViz's, and ``joint-euclidean``) and one entry per stored projection and dimension.
    """
    run = as_runinfo(run)
    rm = run.metric
    out = []
    if method is not None and dim is not None:
        shown = f"{method_label(method)} {int(dim)}D"
        out.append(_entry("picture-shown", picture_key(variant, method, dim), label=f"picture ρ (shown: {shown})"))
        out.append(_entry("trust-shown", trust_key(variant, method, dim, rm, rm),
                          label=f"trustworthiness ({rm}, shown: {shown})"))
        if fit_metric(method, rm) != rm:
            fm = fit_metric(method, rm)
            out.append(_entry("trust-fit-shown", trust_key(variant, method, dim, fm, rm),
                              label=f"trustworthiness ({fm}, shown: {shown})"))
    for m in JOINT_METRICS:
        out.append(_entry(f"joint-{m}", joint_key(variant, m)))
    for meth in run.projections:
        for d in run.dims:
            out.append(_entry(f"picture:{meth}:{d}", picture_key(variant, meth, d)))
            out.append(_entry(f"trust:{meth}:{d}", trust_key(variant, meth, d, rm, rm)))
            if fit_metric(meth, rm) != rm:
                fm = fit_metric(meth, rm)
                out.append(_entry(f"trust-{fm}:{meth}:{d}", trust_key(variant, meth, d, fm, rm)))
    return out


def resolve_figure(run: RunInfo, figure_id: str, variant: str, method: str, dim: int) -> dict | None:
    """The catalogue entry of ``figure_id`` for the current view, or None if unknown."""
    for e in figure_catalogue(run, variant, method, dim):
        if e["id"] == figure_id:
            return e
    return None


def format_value(value, kind: str = "") -> str:
    if value is None:
        return NOT_COMPUTED
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        return UNDEFINED
    return f"{float(value):+.3f}" if kind != "trust" else f"{float(value):.3f}"


def misleading(picture_rho) -> bool:
    """A picture misleads when nearer in it means LESS attention: picture ρ > 0."""
    return isinstance(picture_rho, (int, float)) and math.isfinite(float(picture_rho)) and float(picture_rho) > 0


def head_figure_table(metrics: dict | None, run: RunInfo, variant: str, method: str, dim: int) -> list[dict]:
    """The Single View's figure table of one head and the projection shown.

    Rows (in order): joint-space ρ (cosine, AttentionViz's), joint-space ρ (Euclidean), picture ρ
    of the shown projection, its trustworthiness with the run's metric and, for PCA, with the
    Euclidean metric it preserves.  Each row: ``id``, ``key``, ``label``, ``value`` (float, or
    None when the store lacks it), ``text`` (formatted value, or :data:`NOT_COMPUTED`, or
    :data:`UNDEFINED`), ``definition`` (hover), ``better``, ``misleading`` (picture ρ > 0),
    ``computed`` (bool).
    """
    metrics = metrics or {}
    params = metrics.get("figure_params")
    rows = []
    ids = ["joint-cosine", "joint-euclidean", "picture-shown", "trust-shown", "trust-fit-shown"]
    cat = {e["id"]: e for e in figure_catalogue(run, variant, method, dim)}
    for id_ in ids:
        e = cat.get(id_)
        if e is None:
            continue
        d = describe(e["key"], params)
        v = metrics.get(e["key"])
        value = float(v) if isinstance(v, (int, float)) else None
        rows.append({"id": id_, "key": e["key"], "label": e["label"], "value": value,
                     "text": format_value(v if e["key"] in metrics else None, e["kind"]),
                     "definition": d["definition"], "better": e["better"], "computed": e["key"] in metrics,
                     "misleading": e["kind"] == "picture" and misleading(value)})
    return rows


def head_values(metrics_by_head: dict, key: str) -> dict:
    """``(layer, head) -> float`` (NaN when undefined) or None (not computed) for one figure key."""
    out = {}
    for lh, met in metrics_by_head.items():
        v = (met or {}).get(key)
        out[lh] = float(v) if isinstance(v, (int, float)) else None
    return out


def rank_heads(values: dict, better: str) -> list:
    """Heads best first by ``better`` ("lower" or "higher"); undefined (NaN) and not-computed
    (None) heads last, in grid order."""
    ok = [(lh, v) for lh, v in values.items() if v is not None and math.isfinite(v)]
    rest = sorted(lh for lh, v in values.items() if v is None or not math.isfinite(v))
    ok.sort(key=lambda t: (t[1] if better == "lower" else -t[1], t[0]))
    return [lh for lh, _ in ok] + rest


def picture_label(variant: str, method: str, dim: int) -> str:
    """The name of a picture's distance–attention figure, e.g. "picture ρ (UMAP 2D)"."""
    return describe(picture_key(variant, method, dim))["label"]


def misleading_cells(metrics_by_head: dict, variant: str, method: str, dim: int) -> set:
    """Heads whose picture (``method`` ``dim``D) misleads: picture ρ > 0."""
    key = picture_key(variant, method, dim)
    return {lh for lh, v in head_values(metrics_by_head, key).items() if misleading(v)}


DISTORTION_K = 3  #: the k of the dashboard's picture-agreement colouring (stated wherever it is shown)


def point_distortion(q: np.ndarray, k: np.ndarray, coords: np.ndarray, input_index: np.ndarray,
                     causal: bool, scale: float, k_top: int = DISTORTION_K, window: int | None = None,
                     softcap: float | None = None, bias=None) -> dict:
    """Per query: the share of its ``k_top`` most-attended keys that are among its ``k_top``
    nearest keys in the picture, both taken over the keys of its own input it may attend to
    (causal prefix for decoders; ``window``/``softcap``: the layer's semantics, see
    ``precompute.metrics.layer_semantics``).  1 = the picture shows exactly the keys it attends
    to most; 0 = none of them.  NaN for queries with ``<= k_top`` attendable keys (every key
    would count).  Ties are broken by key position (stable sort), in both rankings.

    Returns ``{"values": float array (n,), "k": k_top, "label", "definition", "undefined": count}``;
    queries are rows ``0..n-1`` of ``coords``, keys rows ``n..2n-1``.
    """
    from precompute.metrics import allowed_keys, attention_from_qk

    q = np.asarray(q, np.float64)
    k = np.asarray(k, np.float64)
    coords = np.asarray(coords, np.float64)
    input_index = np.asarray(input_index)
    n = len(q)
    if coords.shape[0] != 2 * n:
        raise ValueError(f"coords has {coords.shape[0]} rows, expected 2 × {n} (queries then keys)")
    k_top = int(k_top)
    if k_top < 1:
        raise ValueError(f"k must be at least 1 (got {k_top})")
    out = np.full(n, np.nan)
    order = np.argsort(input_index, kind="stable")
    _, starts = np.unique(input_index[order], return_index=True)
    for s, e in zip(starts, np.append(starts[1:], n)):
        rows = order[s:e]
        L = len(rows)
        if L <= k_top:
            continue
        A = attention_from_qk(q[rows], k[rows], causal, scale, window, softcap, bias)
        P, K = coords[rows], coords[n + rows]
        D = np.sqrt(((P[:, None, :] - K[None, :, :]) ** 2).sum(-1))
        valid = allowed_keys(L, L, causal, window)
        if valid is None:
            valid = np.ones((L, L), bool)
        m = valid.sum(axis=1)
        top_att = np.argsort(np.where(valid, -A, np.inf), axis=1, kind="stable")[:, :k_top]
        top_pic = np.argsort(np.where(valid, D, np.inf), axis=1, kind="stable")[:, :k_top]
        share = (top_att[:, :, None] == top_pic[:, None, :]).any(-1).sum(-1) / k_top
        out[rows] = np.where(m > k_top, share, np.nan)
    return {"values": out, "k": k_top, "undefined": int(np.isnan(out).sum()),
            "label": distortion_label(k_top), "definition": distortion_definition(k_top)}


def distortion_label(k_top: int = DISTORTION_K) -> str:
    return f"picture agreement (top-{int(k_top)})"


def distortion_definition(k_top: int = DISTORTION_K) -> str:
    k_top = int(k_top)
    return (f"for each query: the share of its {k_top} most-attended keys that are among its {k_top} "
            "nearest keys in this picture (Euclidean), both over the keys of its own input it may "
            f"attend to; 1 = the picture shows what it attends to, 0 = it shows other keys. Queries "
            f"with ≤ {k_top} attendable keys are undefined (grey); keys are not coloured (light grey).")


# ------------------------------------------------------------------ Matrix View orders by a figure
FIG_ORDER = "fig:"   #: prefix of a Matrix View order (URL ``sort``) by a catalogue figure


def figure_order(figure_id: str) -> str:
    return FIG_ORDER + figure_id


def order_figure_id(order: str | None) -> str | None:
    """The catalogue id of a ``fig:<id>`` order, else None."""
    return order[len(FIG_ORDER):] if isinstance(order, str) and order.startswith(FIG_ORDER) else None


def sort_figure_options(run: RunInfo, variant: str, method: str, dim: int = 2) -> list[dict]:
    """Matrix View order options for every figure of the catalogue (the shown picture's first):
    ``{"label": "by <figure label> (<direction>)", "value": "fig:<id>", "title": definition}``."""
    out = []
    for e in figure_catalogue(run, variant, method, dim):
        direction = "most negative first" if e["better"] == "lower" else "highest first"
        out.append({"label": f"by {e['label']} ({direction})", "value": figure_order(e["id"]),
                    "title": e["definition"]})
    return out


def all_figure_sort_options() -> list[dict]:
    """Every order by a figure a link can carry, whatever the run (the page's initial menu, so a
    link's ``fig:`` order is a valid value before the run's own menu arrives)."""
    from precompute.projections import ALL_METHODS, DIMS
    every = RunInfo.from_manifest({"projections": list(ALL_METHODS), "dims": list(DIMS),
                                   "settings": {"params": {"metric": "cosine"}}})
    out = sort_figure_options(every, "translated", "pca", 2)
    for o in out:
        if o["value"] in (figure_order("picture-shown"), figure_order("trust-shown"), figure_order("trust-fit-shown")):
            o["label"] = o["label"].replace("shown: PCA 2D", "the projection shown, 2D")
    return out


def figure_scores(metrics_by_head: dict, entry: dict) -> dict:
    """``(layer, head) -> value`` of one catalogue figure for the Matrix View (heads whose store
    lacks the figure are absent; undefined ones are NaN)."""
    return {lh: v for lh, v in head_values(metrics_by_head, entry["key"]).items() if v is not None}


def filter_label(entry: dict | None) -> str:
    """The Matrix View filter's label: which figure it applies to and on which side (None: the
    cells are not ranked by a figure, so it is the joint-space Euclidean ρ, by |ρ|)."""
    if entry is None:
        return "show heads with |ρ euc| ≥"
    if entry["better"] == "lower":
        return f"show heads with {entry['label']} ≤ −"
    return f"show heads with {entry['label']} ≥"
