"""Joint query–key embedding of one attention head (pure numpy).

AttentionViz places the queries and keys of one head in a single space so that
distance tracks attention.  Two optional normalisations are applied to the keys
(and, for scaling, the queries) before projection:

* **key translation** – ``k' = k - mean(K) + mean(Q)``.  Softmax attention is
  invariant to adding a constant vector to every key (it adds the same constant
  ``q·t`` to every logit of a row), so translation never changes attention; it
  only moves the key cloud onto the query cloud so the two overlap.
* **norm scaling** – ``q/c`` and ``k*c`` with ``c = sqrt(mean||q|| / mean||k||)``
  so that both clouds have the same mean norm.  Every dot product
  ``(q/c)·(k*c) == q·k`` is unchanged, so attention is unchanged too.

Row layout everywhere: all queries first (token order), then all keys (token
order) – i.e. row ``i`` is query ``i`` and row ``n + i`` is key ``i``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["key_translation", "norm_scale_factor", "joint_embedding", "VARIANTS", "transform_qk"]

#: variant name -> (translate, scale)
VARIANTS: dict[str, tuple[bool, bool]] = {
    "translated": (True, False),
    "raw": (False, False),
    "translated-scaled": (True, True),
    "raw-scaled": (False, True),
}


def _as2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {a.shape}")
    return a


def key_translation(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Return the translation ``t = mean(Q) - mean(K)`` (shape ``(d,)``, float64).

    Adding ``t`` to every key makes the key centroid coincide with the query
    centroid.  Means are taken over the same token set (all rows given).
    """
    q = _as2d(q, "q")
    k = _as2d(k, "k")
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"q and k dims differ: {q.shape} vs {k.shape}")
    if len(q) == 0 or len(k) == 0:
        return np.zeros(q.shape[1], dtype=np.float64)
    return q.mean(axis=0, dtype=np.float64) - k.mean(axis=0, dtype=np.float64)


def norm_scale_factor(q: np.ndarray, k: np.ndarray) -> float:
    """Return ``c = sqrt(mean_i ||q_i|| / mean_j ||k_j||)``.

    With ``q -> q / c`` and ``k -> k * c`` the mean norms become equal:
    ``mean||q/c|| = mean||q|| / c = sqrt(mean||q|| * mean||k||) = mean||k|| * c``.
    Because ``(q/c)·(k*c) = q·k`` every dot product, hence every attention
    weight, is left unchanged.  Degenerate inputs (a zero mean norm, no rows)
    return ``1.0`` (no scaling).
    """
    q = _as2d(q, "q")
    k = _as2d(k, "k")
    if len(q) == 0 or len(k) == 0:
        return 1.0
    mq = float(np.linalg.norm(q.astype(np.float64, copy=False), axis=1).mean())
    mk = float(np.linalg.norm(k.astype(np.float64, copy=False), axis=1).mean())
    if not (mq > 0 and mk > 0) or not np.isfinite(mq) or not np.isfinite(mk):
        return 1.0
    return float(np.sqrt(mq / mk))


def transform_qk(q: np.ndarray, k: np.ndarray, translate: bool = True, scale: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(q', k')`` (float64) as placed in the joint space.

    Order when both are requested: **scale first, then translate**.  The
    translation is then computed from the already-scaled clouds, so the final
    space really has equal centroids (translating first and scaling afterwards
    would multiply the two centroids by different factors 1/c and c and pull
    them apart again).  Either order leaves attention untouched.
    """
    q = _as2d(q, "q").astype(np.float64, copy=False)
    k = _as2d(k, "k").astype(np.float64, copy=False)
    if scale:
        c = norm_scale_factor(q, k)
        q = q / c
        k = k * c
    if translate:
        k = k + key_translation(q, k)
    return q, k


def joint_embedding(q: np.ndarray, k: np.ndarray, translate: bool = True, scale: bool = False
                    ) -> np.ndarray:
    """Stack queries and (transformed) keys into one ``(2n, d)`` float32 array.

    Rows ``0..n-1`` are the queries in token order, rows ``n..2n-1`` the keys in
    token order.  ``translate``: ``k' = k - mean(K) + mean(Q)``; ``scale``:
    ``q/c``, ``k*c`` with :func:`norm_scale_factor`; see :func:`transform_qk`
    for the order (scale, then translate).
    """
    qq, kk = transform_qk(q, k, translate=translate, scale=scale)
    out = np.empty((len(qq) + len(kk), qq.shape[1]), dtype=np.float32)
    out[: len(qq)] = qq
    out[len(qq):] = kk
    return out
