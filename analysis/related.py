"""Related heads: distances between heads' attention patterns and a 2D map of all heads.

A head's *signature* is its attention on a shared, seeded sample of queries of the corpus (the
same queries for every head; see ``PatternScorer.signature``): each query's row is a probability
distribution over its allowed keys. Two heads are compared query by query, and the distance is
the root-mean-square over the sampled queries of a per-query distance between distributions:

* ``hellinger`` (used by the dashboard): H(a_i, b_i) = sqrt(1 − Σ_j sqrt(a_ij b_ij)), so
  d(a, b) = sqrt(1 − (√a · √b) / n_queries) — every pair of heads with ONE matrix product, which
  keeps a 270-head model at a fraction of a second;
* ``js``: the Jensen–Shannon distance sqrt(JS) (base 2), d(a, b) = sqrt(mean_i JS(a_i, b_i)).

Both are metrics in [0, 1] (0 = identical attention on every sampled query, 1 = disjoint
supports on every query); both come from f-divergences and order pairs of heads alike (Spearman
0.99+ between the two on the minilm demo run's 72 heads).
The map places heads by classical (Torgerson) MDS of the distance matrix; its axes are
deterministic (signs fixed).
"""
from __future__ import annotations

import numpy as np

LN2 = np.log(2.0)


def _neg_entropy_sum(x: np.ndarray) -> np.ndarray:
    """Σ x·ln x along the last axis (0·ln 0 = 0), float64 sums of float32 terms."""
    x = np.asarray(x, np.float32)
    return (x * np.log(np.where(x > 0, x, np.float32(1)))).sum(-1, dtype=np.float64)


def js_distances(signatures: np.ndarray, n_rows: int, block: int = 64) -> np.ndarray:
    """Pairwise distances (H × H) between heads' signatures (H × E, concatenated attention rows of
    ``n_rows`` queries; every row sums to 1). JS per query is additive over its entries, so the
    mean over queries is Σ_entries[−m ln m + ½(a ln a + b ln b)] / (n_rows · ln 2), m = (a+b)/2."""
    S = np.asarray(signatures, np.float32)
    H = len(S)
    D = np.zeros((H, H))
    if H < 2 or n_rows <= 0:
        return D
    self_term = _neg_entropy_sum(S)  # Σ a ln a per head
    for i in range(H - 1):
        for j0 in range(i + 1, H, block):
            others = S[j0:j0 + block]
            m = 0.5 * (S[i][None, :] + others)
            js = (0.5 * (self_term[i] + self_term[j0:j0 + block]) - _neg_entropy_sum(m)) / (n_rows * LN2)
            D[i, j0:j0 + len(others)] = np.sqrt(np.clip(js, 0.0, 1.0))
    D = D + D.T
    np.fill_diagonal(D, 0.0)
    return D


def hellinger_distances(signatures: np.ndarray, n_rows: int) -> np.ndarray:
    """Pairwise RMS Hellinger distances (H × H) between heads' signatures (H × E):
    d² = mean_rows ½‖√a − √b‖² = (‖√a‖² + ‖√b‖² − 2 √a·√b) / (2 n_rows), from one Gram matrix
    (float64, so identical heads come out at ~1e-8, not at the float32 rounding floor)."""
    R = np.sqrt(np.clip(np.asarray(signatures, np.float64), 0, None))
    H = len(R)
    if H < 2 or n_rows <= 0:
        return np.zeros((H, H))
    G = R @ R.T
    g = np.diag(G)
    D = np.sqrt(np.clip((g[:, None] + g[None, :] - 2 * G) / (2 * n_rows), 0.0, 1.0))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    return D


def classical_mds(D: np.ndarray, k: int = 2) -> tuple[np.ndarray, float]:
    """Torgerson MDS: coordinates (n × k) whose Euclidean distances approximate D, and the share
    of the (positive) spectrum the k axes hold. Each axis' sign is fixed so that its largest
    |coordinate| is positive (deterministic output)."""
    D = np.asarray(D, np.float64)
    n = len(D)
    if n == 0:
        return np.zeros((0, k)), 0.0
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D ** 2) @ J
    vals, vecs = np.linalg.eigh((B + B.T) / 2)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    pos = np.clip(vals, 0, None)
    X = vecs[:, :k] * np.sqrt(pos[:k])[None, :]
    if X.shape[1] < k:
        X = np.pad(X, ((0, 0), (0, k - X.shape[1])))
    for a in range(k):
        j = int(np.argmax(np.abs(X[:, a])))
        if X[j, a] < 0:
            X[:, a] = -X[:, a]
    total = pos.sum()
    return X, float(pos[:k].sum() / total) if total > 0 else 1.0


def nearest(D: np.ndarray, i: int, k: int = 5) -> list[tuple[int, float]]:
    """The k nearest other heads of head i: [(index, distance)], closest first (ties: lower index)."""
    d = np.asarray(D[i], np.float64)
    order = [j for j in np.lexsort((np.arange(len(d)), d)) if j != i]
    return [(int(j), float(d[j])) for j in order[:k]]


METRICS = {"hellinger": hellinger_distances, "js": js_distances}


def related_map(signatures: np.ndarray, n_rows: int, metric: str = "hellinger") -> dict:
    """{'dist': H × H, 'xy': H × 2, 'explained': share of the spectrum shown, 'metric'}."""
    D = METRICS[metric](signatures, n_rows)
    xy, explained = classical_mds(D, 2)
    return {"dist": D, "xy": xy, "explained": explained, "metric": metric}
