"""Faithfulness metrics of a head's joint embedding / projections."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .joint import transform_qk

__all__ = ["allowed_keys", "attention_from_qk", "layer_semantics", "relative_bias", "distance_attention_spearman",
           "picture_spearman", "spearman_figures", "query_sample", "trustworthiness"]


def allowed_keys(lq: int, lk: int, causal: bool, window: int | None = None) -> np.ndarray | None:
    """(lq, lk) bool of the keys each query may attend to (query i aligned with key i), None = all.
    ``causal``: keys ``j > i`` are masked; ``window``: keys with ``|i − j| > window`` are masked."""
    if not causal and window is None:
        return None
    i = np.arange(lq)[:, None]
    j = np.arange(lk)[None, :]
    ok = np.ones((lq, lk), bool)
    if causal:
        ok &= j <= i
    if window is not None:
        ok &= np.abs(i - j) <= window
    return ok


def relative_bias(bias, lq: int, lk: int, rows=None) -> np.ndarray:
    """(lq, lk) additive position bias of one head from its table over relative offsets
    ``d = j − i`` (key position minus query position): ``bias[clip(d, −M, M) + M]`` with
    ``len(bias) = 2M + 1`` — offsets beyond ±M take the end values (T5's buckets saturate at its
    ``relative_attention_max_distance``, so the table is exact for every length); a scalar ``bias``
    is an ALiBi slope: ``slope · d`` (equal, within a softmax row, to BLOOM's ``slope · j``).
    ``rows``: the query positions (default ``0..lq−1``)."""
    bias = np.asarray(bias, dtype=np.float64)
    i = (np.arange(lq) if rows is None else np.asarray(rows))[:, None]
    d = np.arange(lk)[None, :] - i
    if bias.ndim == 0:                    # ALiBi: a slope, no table (BLOOM; precompute.models.alibi)
        return float(bias) * d
    m = (len(bias) - 1) // 2
    return bias[np.clip(d, -m, m) + m]


def attention_from_qk(q: np.ndarray, k: np.ndarray, causal: bool, scale: float,
                      window: int | None = None, softcap: float | None = None, bias=None) -> np.ndarray:
    """Softmax attention ``a_ij = softmax_j(softcap(scale * q_i·k_j) + bias(j − i) + mask)`` for ONE
    input, (len_q, len_k).

    THE recompute of attention from stored q/k (dashboard, analyses, metrics all use it).
    Numerically stable (row max subtracted, float64).  ``causal``: keys ``j > i`` get weight
    exactly 0 (row ``i`` of the queries aligned with key ``i``); ``window``: keys farther than
    ``window`` positions from the query get weight 0 (sliding/local attention); ``softcap``:
    scores become ``softcap · tanh(score / softcap)`` before the mask (Gemma 2); ``bias``: the
    head's learned relative-position bias table (T5; :func:`relative_bias`).  A layer's values
    are in the run's manifest: :func:`layer_semantics`.
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    logits = scale * (q @ k.T)
    if softcap:
        logits = softcap * np.tanh(logits / softcap)
    if bias is not None:
        logits = logits + relative_bias(bias, *logits.shape)
    ok = allowed_keys(*logits.shape, causal, window)
    if ok is not None:
        logits = np.where(ok, logits, -np.inf)
    m = np.max(logits, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


class HeadNeeded(ValueError):
    """A layer with a per-head position bias was asked for its semantics without a head."""


def layer_semantics(model: dict, layer: int, head: int | None = None) -> dict:
    """Keyword arguments of :func:`attention_from_qk` for one stored layer (and query head), from a
    manifest's ``model`` entry: ``{causal, scale, window, softcap}``, plus ``bias`` (the head's
    relative-position bias table, :func:`relative_bias`) on layers that add one (T5's self-attention).
    Such a layer needs ``head``. Manifests without per-layer semantics (runs made before they were
    stored) mean: the model-wide ``causal``, no window, no softcap, no bias."""
    per_layer = model.get("attention") or []
    sem = per_layer[layer] if 0 <= layer < len(per_layer) else {}
    out = {"causal": bool(sem.get("causal", model.get("causal", False))), "scale": float(model["scale"]),
           "window": sem.get("window"), "softcap": sem.get("softcap")}
    if sem.get("bias"):
        out["bias"] = head_bias(model.get("position_bias") or {}, sem["bias"], layer, head)
    return out


def head_bias(tables: dict, name: str, layer: int, head: int | None):
    """One head's row of the stored bias table ``name`` (``model.position_bias``): a T5 table over
    offsets, or an ALiBi slope (:func:`relative_bias`); HeadNeeded without a head."""
    if head is None:
        raise HeadNeeded(f"layer {layer} adds a per-head position bias: its semantics need the head")
    table = tables[name]
    return (np.float64(table["alibi_slopes"][head]) if "alibi_slopes" in table
            else np.asarray(table["values"][head], dtype=np.float64))


def _rowwise_spearman(D: np.ndarray, A: np.ndarray, valid: np.ndarray, rA: np.ndarray | None = None):
    """Spearman per row between D and A over the ``valid`` entries of that row.

    Invalid entries are set to +inf in both, which ranks them above every valid
    entry, so the (average, tie-aware) ranks of the valid entries are exactly
    their ranks among themselves.  Pearson of those ranks per row, NaN when a
    row has < 3 valid entries or no rank variance.  Returns ``(r, rA)``; pass ``rA``
    back to reuse the ranks of the same ``A``/``valid`` for another ``D``.
    """
    Dm = np.where(valid, D, np.inf)
    rD = rankdata(Dm, axis=1)
    if rA is None:
        rA = rankdata(np.where(valid, A, np.inf), axis=1)
    m = valid.sum(axis=1).astype(np.float64)
    w = valid.astype(np.float64)
    mean = (m + 1.0) / 2.0  # mean of average ranks 1..m (ties keep the mean)
    dD = (rD - mean[:, None]) * w
    dA = (rA - mean[:, None]) * w
    cov = (dD * dA).sum(axis=1)
    vD = (dD * dD).sum(axis=1)
    vA = (dA * dA).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vD * vA)
    r[(m < 3) | ~(vD > 0) | ~(vA > 0)] = np.nan
    return r, rA


def _input_blocks(input_index: np.ndarray, selected: np.ndarray):
    """(rows, pos_sel) per input: its token rows in position order and the positions
    (within the input) of its selected query tokens."""
    n = len(input_index)
    order = np.argsort(input_index, kind="stable")
    _, starts = np.unique(input_index[order], return_index=True)
    ends = np.append(starts[1:], n)
    for s, e in zip(starts, ends):
        rows = order[s:e]  # token rows of this input, in position order
        pos_sel = np.nonzero(selected[rows])[0]
        if len(pos_sel):
            yield rows, pos_sel


def _attention_block(qi: np.ndarray, ki: np.ndarray, pos_sel: np.ndarray, causal: bool, scale: float,
                     window: int | None = None, softcap: float | None = None, bias=None):
    """(A, valid) for the selected queries of one input over that input's keys, masked and
    softcapped as the layer is (:func:`attention_from_qk`)."""
    full = allowed_keys(int(pos_sel.max()) + 1 if len(pos_sel) else 0, len(ki), causal, window)
    valid = np.ones((len(pos_sel), len(ki)), bool) if full is None else full[pos_sel]
    logits = scale * (qi @ ki.T)
    if softcap:
        logits = softcap * np.tanh(logits / softcap)
    if bias is not None:
        logits = logits + relative_bias(bias, len(pos_sel), len(ki), rows=pos_sel)
    logits = np.where(valid, logits, -np.inf)  # softmax restricted to the attendable keys
    logits -= logits.max(axis=1, keepdims=True)
    A = np.exp(logits)
    A /= A.sum(axis=1, keepdims=True)
    return A, valid


def _distances(dq: np.ndarray, dk: np.ndarray, metric: str) -> np.ndarray:
    """(len(dq), len(dk)) distances; ``cosine`` = 1 − cos (scipy's definition; a zero
    vector is at distance 1 from everything), ``euclidean`` = ‖q − k‖."""
    if metric == "cosine":
        nq = np.linalg.norm(dq, axis=1)
        nk = np.linalg.norm(dk, axis=1)
        nq = np.where(nq > 0, nq, np.inf)
        nk = np.where(nk > 0, nk, np.inf)
        return 1.0 - (dq @ dk.T) / nq[:, None] / nk[None, :]
    if metric == "euclidean":
        D2 = (dq * dq).sum(1)[:, None] + (dk * dk).sum(1)[None, :] - 2.0 * dq @ dk.T
        return np.sqrt(np.maximum(D2, 0.0))
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def query_sample(n: int, max_queries: int | None, seed: int = 0) -> np.ndarray:
    """Boolean mask of the query tokens a Spearman figure uses: all of them, or a seeded
    random sample of ``max_queries`` when ``n`` is larger."""
    selected = np.ones(n, bool)
    if max_queries is not None and n > max_queries:
        rng = np.random.default_rng(seed)
        selected[:] = False
        selected[rng.choice(n, size=int(max_queries), replace=False)] = True
    return selected


def spearman_figures(q: np.ndarray, k: np.ndarray, input_index: np.ndarray, causal: bool, scale: float,
                     spaces: dict, max_queries: int | None = None, seed: int = 0, window: int | None = None,
                     softcap: float | None = None, key_index: np.ndarray | None = None, bias=None) -> dict:
    """Distance–attention Spearman figures of one head, one per "space".

    ``spaces``: ``name -> (pq, pk, metric)``: the positions of the queries (``pq``, n rows)
    and keys (``pk``, n rows, token order) in which distance is measured, and the metric
    (``"cosine"`` or ``"euclidean"``).  For the joint space these are the transformed
    q, k (:func:`precompute.joint.transform_qk`); for a picture, its coordinates
    (``coords[:n]``, ``coords[n:]``).

    Definition (AttentionViz's, for any space): for each query token ``i`` (all of them,
    or a seeded sample of ``max_queries``), over the keys ``j`` of its OWN input that it may
    attend to (``j <= i`` within the input when ``causal``): Spearman rank correlation
    between the distance from ``i`` to ``j`` and the attention
    ``a_ij = softmax_j(scale * q_i·k_j)`` computed from the untransformed q, k.  Queries with
    < 3 attendable keys (or constant ranks) are skipped.  Averaged per input, then over
    inputs.  NaN if nothing is left.  Attention is computed once and shared by all spaces.
    Tokens of one input are assumed in position order.
    """
    q = np.asarray(q)
    k = np.asarray(k)
    input_index = np.asarray(input_index)
    n = len(q)
    per_input: dict = {name: [] for name in spaces}
    if n == 0:
        return {name: float("nan") for name in spaces}
    spaces = {name: (np.asarray(pq, np.float64), np.asarray(pk, np.float64), metric)
              for name, (pq, pk, metric) in spaces.items()}
    # keys of other tokens than the queries (cross-attention: decoder queries, encoder keys)
    key_index = input_index if key_index is None else np.asarray(key_index)
    korder = np.argsort(key_index, kind="stable")
    kuniq, kstarts = np.unique(key_index[korder], return_index=True)
    key_rows = dict(zip(kuniq.tolist(), np.split(korder, kstarts[1:])))
    for name, (pq, pk, _) in spaces.items():
        if len(pq) != n or len(pk) != len(k):
            raise ValueError(f"space {name!r}: {len(pq)} query and {len(pk)} key positions for {n} + {len(k)} tokens")
    for rows, pos_sel in _input_blocks(input_index, query_sample(n, max_queries, seed)):
        krows = rows if key_index is input_index else key_rows.get(int(input_index[rows[0]]), np.zeros(0, int))
        if len(krows) == 0:
            continue
        A, valid = _attention_block(q[rows[pos_sel]].astype(np.float64), k[krows].astype(np.float64),
                                    pos_sel, causal, scale, window, softcap, bias)
        rA = None
        for name, (pq, pk, metric) in spaces.items():
            D = _distances(pq[rows[pos_sel]], pk[krows], metric)
            r, rA = _rowwise_spearman(D, A, valid, rA)
            r = r[np.isfinite(r)]
            if len(r):
                per_input[name].append(float(r.mean()))
    return {name: float(np.mean(v)) if v else float("nan") for name, v in per_input.items()}


def distance_attention_spearman(q: np.ndarray, k: np.ndarray, input_index: np.ndarray,
                                causal: bool, scale: float, translate: bool = True,
                                norm_scale: bool = False, max_queries: int | None = 2000,
                                seed: int = 0, metric: str = "euclidean", window: int | None = None,
                                softcap: float | None = None, bias=None) -> float:
    """Joint-space distance–attention Spearman of one head (:func:`spearman_figures`),
    distance ``metric`` (``"euclidean"``, or ``"cosine"`` = AttentionViz's exact figure)
    between ``q`` and the keys ``k'`` transformed exactly like
    :func:`precompute.joint.joint_embedding` with ``translate``/``norm_scale``."""
    qt, kt = transform_qk(np.asarray(q), np.asarray(k), translate=translate, scale=norm_scale)
    return spearman_figures(q, k, input_index, causal, scale, {"joint": (qt, kt, metric)},
                            max_queries=max_queries, seed=seed, window=window, softcap=softcap, bias=bias)["joint"]


def picture_spearman(coords: np.ndarray, q: np.ndarray, k: np.ndarray, input_index: np.ndarray,
                     causal: bool, scale: float, max_queries: int | None = None, seed: int = 0,
                     window: int | None = None, softcap: float | None = None, bias=None) -> float:
    """The distance–attention Spearman measured in a picture: Euclidean distance between
    query ``i`` (row ``i`` of ``coords``) and key ``j`` (row ``n + j``) in the projection's
    coordinates, against the attention from ``q``/``k`` (:func:`spearman_figures`)."""
    coords = np.asarray(coords)
    n = len(q)
    if len(coords) != 2 * n:
        raise ValueError(f"coords has {len(coords)} rows, expected 2 × {n} (queries then keys)")
    return spearman_figures(q, k, input_index, causal, scale, {"picture": (coords[:n], coords[n:], "euclidean")},
                            max_queries=max_queries, seed=seed, window=window, softcap=softcap, bias=bias)["picture"]


def trustworthiness(X_high: np.ndarray, X_low: np.ndarray, n_neighbors: int = 10,
                    sample: int = 2000, seed: int = 0, metric: str = "euclidean") -> float:
    """``sklearn.manifold.trustworthiness`` on a seeded random sample of ``sample``
    rows when ``n > sample`` (the same rows of both arrays).  ``metric`` is the
    high-dimensional metric (extra keyword; use "cosine" to match cosine-kNN
    projections).  NaN if there are too few points for ``n_neighbors``."""
    from sklearn.manifold import trustworthiness as _tw

    X_high = np.asarray(X_high)
    X_low = np.asarray(X_low)
    n = len(X_high)
    if sample is not None and n > sample:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=int(sample), replace=False))
        X_high, X_low = X_high[idx], X_low[idx]
        n = len(X_high)
    if n_neighbors >= n / 2:
        return float("nan")
    return float(_tw(X_high, X_low, n_neighbors=n_neighbors, metric=metric))
