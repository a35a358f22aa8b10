"""Attention recomputed exactly from stored queries/keys, plus BertViz/AttentionViz maths."""
from __future__ import annotations

import numpy as np

from precompute.metrics import attention_from_qk, relative_bias  # noqa: F401 (callbacks import it here)


def attention(q: np.ndarray, k: np.ndarray, scale: float, causal: bool = False,
              window: int | None = None, softcap: float | None = None, bias=None) -> np.ndarray:
    """softmax(softcap(scale · q kᵀ) + bias + mask) for the tokens of one input (rows in position
    order); a layer's (and head's) keyword arguments: ``RunInfo.layer_semantics(layer, head)`` (figures.runinfo).

    The same function the faithfulness tests check against each model's own attentions."""
    return attention_from_qk(q, k, causal=causal, scale=scale, window=window, softcap=softcap, bias=bias)


def hide_and_renormalise(a: np.ndarray, hidden: list[int] | np.ndarray) -> np.ndarray:
    """Drop hidden key columns and renormalise each row over the remaining keys:
    a′ᵢⱼ = aᵢⱼ / (1 − Σₕ aᵢₕ), a′ᵢₕ = 0. Rows whose whole mass was hidden become 0."""
    a = np.array(a, np.float64, copy=True)
    hidden = np.asarray(list(hidden), int)
    if hidden.size == 0:
        return a
    rest = 1.0 - a[:, hidden].sum(1, keepdims=True)
    a[:, hidden] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(rest > 1e-12, a / np.where(rest > 1e-12, rest, 1.0), 0.0)
    return out


def value_weighted(a: np.ndarray, vnorm: np.ndarray) -> np.ndarray:
    """Attention weighted by the value norm of each key, rows renormalised:
    a′ᵢⱼ = aᵢⱼ‖vⱼ‖ / Σₖ aᵢₖ‖vₖ‖. All norms equal: a′ = a. Rows with no mass stay 0."""
    w = np.asarray(a, np.float64) * np.asarray(vnorm, np.float64)[None, :]
    s = w.sum(1, keepdims=True)
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), 0.0)


def top_keys(row: np.ndarray, k: int, min_weight: float) -> list[tuple[int, float]]:
    order = np.argsort(-row)[:max(0, k)]
    return [(int(j), float(row[j])) for j in order if row[j] >= min_weight]


def aggregate_by_position(q: np.ndarray, k: np.ndarray, groups, scale: float, causal: bool,
                          max_len: int, vnorm: np.ndarray | None = None, semantics: dict | None = None) -> np.ndarray:
    """AttentionViz's aggregate view: for each (query pos i, key pos j) < max_len, the mean
    attention over all inputs that have both positions; rows renormalised to sum to 1.
    ``groups`` iterates (input_id, token rows in position order). ``vnorm`` (one value norm per
    token row): each input's attention is value-weighted (``value_weighted``) before averaging."""
    total = np.zeros((max_len, max_len))
    count = np.zeros((max_len, max_len))
    for _, rows in groups:
        if len(rows) == 0:
            continue
        a = attention(q[rows], k[rows], **(semantics or {"scale": scale, "causal": causal}))
        if vnorm is not None:
            a = value_weighted(a, vnorm[rows])
        n = min(len(rows), max_len)
        total[:n, :n] += a[:n, :n]
        count[:n, :n] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    s = mean.sum(1, keepdims=True)
    return np.where(s > 0, mean / np.where(s > 0, s, 1), 0.0)


def downsample(a: np.ndarray, size: int) -> np.ndarray:
    """Block-mean an n×m matrix down to at most size×size (model-view thumbnails)."""
    n, m = a.shape
    if n <= size and m <= size:
        return a
    ri = np.linspace(0, n, min(n, size) + 1).astype(int)
    ci = np.linspace(0, m, min(m, size) + 1).astype(int)
    rows = np.add.reduceat(a, ri[:-1], axis=0) / np.diff(ri)[:, None]
    return np.add.reduceat(rows, ci[:-1], axis=1) / np.diff(ci)[None, :]
