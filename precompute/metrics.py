"""Faithfulness metrics of a head's joint embedding / projections."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .joint import transform_qk

__all__ = ["attention_from_qk", "distance_attention_spearman", "trustworthiness"]


def attention_from_qk(q: np.ndarray, k: np.ndarray, causal: bool, scale: float) -> np.ndarray:
    """Softmax attention ``a_ij = softmax_j(scale * q_i·k_j)`` for ONE input, (len_q, len_k).

    Numerically stable (row max subtracted, float64).  ``causal``: keys ``j > i``
    get weight exactly 0 (row ``i`` of the queries aligned with key ``i``).
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    logits = scale * (q @ k.T)
    if causal:
        lq, lk = logits.shape
        mask = np.arange(lk)[None, :] > np.arange(lq)[:, None]
        logits = np.where(mask, -np.inf, logits)
    m = np.max(logits, axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


def _rowwise_spearman(D: np.ndarray, A: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Spearman per row between D and A over the ``valid`` entries of that row.

    Invalid entries are set to +inf in both, which ranks them above every valid
    entry, so the (average, tie-aware) ranks of the valid entries are exactly
    their ranks among themselves.  Pearson of those ranks per row, NaN when a
    row has < 3 valid entries or no rank variance.
    """
    Dm = np.where(valid, D, np.inf)
    Am = np.where(valid, A, np.inf)
    rD = rankdata(Dm, axis=1)
    rA = rankdata(Am, axis=1)
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
    return r


def distance_attention_spearman(q: np.ndarray, k: np.ndarray, input_index: np.ndarray,
                                causal: bool, scale: float, translate: bool = True,
                                norm_scale: bool = False, max_queries: int | None = 2000,
                                seed: int = 0) -> float:
    """AttentionViz's faithfulness figure for one head (expected strongly negative).

    For each query token ``i`` (a seeded sample of ``max_queries`` query tokens
    over the whole head when given), over the keys ``j`` of its OWN input that
    it may attend to (``j <= i`` within the input when ``causal``): Spearman
    rank correlation between the Euclidean distance ``||q_i - k'_j||`` in the
    joint space (``q, k'`` transformed exactly like
    :func:`precompute.joint.joint_embedding` with ``translate``/``norm_scale``)
    and the attention ``a_ij = softmax_j(scale * q_i·k_j)`` computed from the
    UNtransformed q, k.  Queries with < 3 attendable keys (or constant ranks)
    are skipped.  Averaged per input, then over inputs.  NaN if nothing is
    left.  Rows of ``q``/``k``/``input_index`` are tokens; tokens of one input
    are assumed in position order.
    """
    q = np.asarray(q)
    k = np.asarray(k)
    input_index = np.asarray(input_index)
    n = len(q)
    if n == 0:
        return float("nan")
    qt, kt = transform_qk(q, k, translate=translate, scale=norm_scale)
    selected = np.ones(n, bool)
    if max_queries is not None and n > max_queries:
        rng = np.random.default_rng(seed)
        selected[:] = False
        selected[rng.choice(n, size=int(max_queries), replace=False)] = True
    order = np.argsort(input_index, kind="stable")
    uniq, starts = np.unique(input_index[order], return_index=True)
    ends = np.append(starts[1:], n)
    per_input = []
    for s, e in zip(starts, ends):
        rows = order[s:e]  # token rows of this input, in position order
        pos_sel = np.nonzero(selected[rows])[0]
        if len(pos_sel) == 0:
            continue
        qi = q[rows[pos_sel]].astype(np.float64)
        ki = k[rows].astype(np.float64)
        L = len(rows)
        if causal:
            valid = np.arange(L)[None, :] <= pos_sel[:, None]
            # softmax restricted to the attendable prefix
            logits = scale * (qi @ ki.T)
            logits = np.where(valid, logits, -np.inf)
            logits -= logits.max(axis=1, keepdims=True)
            A = np.exp(logits)
            A /= A.sum(axis=1, keepdims=True)
        else:
            A = attention_from_qk(qi, ki, causal=False, scale=scale)
            valid = np.ones((len(pos_sel), L), bool)
        dq = qt[rows[pos_sel]]
        dk = kt[rows]
        D2 = (dq * dq).sum(1)[:, None] + (dk * dk).sum(1)[None, :] - 2.0 * dq @ dk.T
        D = np.sqrt(np.maximum(D2, 0.0))
        r = _rowwise_spearman(D, A, valid)
        r = r[np.isfinite(r)]
        if len(r):
            per_input.append(float(r.mean()))
    return float(np.mean(per_input)) if per_input else float("nan")


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
