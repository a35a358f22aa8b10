"""Neuron view maths: how one query token's score for one key token is built, dimension by
dimension, from the stored queries and keys of one head (no model needed).

For query vector q and key vector k (as the attention multiplies them: after bias, RoPE,
qk-norm, kv heads expanded; before the scale factor):

    q·k = Σ_d q_d · k_d                  (the sum of the per-dimension products)
    score = scale · q·k                  (scale = 1/√head_dim for most models)
    weight = softmax over the allowed keys of the scores   (causal: keys after the query get 0)

``breakdown`` returns all of them plus the whole row (every key's score and weight) so the view
can show which key wins and let the user pick another one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from precompute.metrics import allowed_keys, relative_bias


@dataclass
class NeuronBreakdown:
    q: np.ndarray          # (d,) the query vector
    k: np.ndarray          # (d,) the key vector
    prod: np.ndarray       # (d,) q_d · k_d
    dot: float             # Σ_d q_d k_d
    scale: float
    score: float           # scale · dot (−inf when the key is masked)
    weight: float          # attention weight of this key for this query
    scores: np.ndarray     # (n_keys,) scale · q·k_j for every key j of the input (−inf masked)
    weights: np.ndarray    # (n_keys,) softmax row
    masked: bool           # the key is after the query in a causal model

    def summary(self) -> dict:
        return {"dot": self.dot, "sum_prod": float(self.prod.sum()), "scale": self.scale, "score": self.score,
                "weight": self.weight, "masked": self.masked}


def row_scores(q: np.ndarray, keys: np.ndarray, query_pos: int, scale: float, causal: bool,
               window: int | None = None, softcap: float | None = None, bias=None) -> np.ndarray:
    """scale · q·k_j for every key j (float64; softcapped when the layer has a softcap, plus the
    head's relative-position bias when it has one); −inf for keys the layer masks (after
    ``query_pos`` when causal, farther than ``window``)."""
    s = float(scale) * (np.asarray(keys, np.float64) @ np.asarray(q, np.float64))
    if softcap:
        s = softcap * np.tanh(s / softcap)
    if bias is not None:
        s = s + relative_bias(bias, 1, len(s), rows=[query_pos])[0]
    ok = allowed_keys(query_pos + 1, len(s), causal, window)
    if ok is not None:
        s = np.where(ok[query_pos], s, -np.inf)
    return s


def softmax(scores: np.ndarray) -> np.ndarray:
    m = np.max(scores)
    m = m if np.isfinite(m) else 0.0
    e = np.exp(scores - m)
    return e / e.sum()


def breakdown(queries: np.ndarray, keys: np.ndarray, query_pos: int, key_pos: int, scale: float,
              causal: bool, window: int | None = None, softcap: float | None = None, bias=None) -> NeuronBreakdown:
    """``queries``/``keys``: (len, d) of ONE input in position order (stored rows of the input)."""
    n = len(queries)
    if not (0 <= query_pos < n and 0 <= key_pos < len(keys)):
        raise ValueError(f"token positions out of range: query {query_pos}, key {key_pos} (input has {n} tokens)")
    q = np.asarray(queries[query_pos], np.float64)
    k = np.asarray(keys[key_pos], np.float64)
    prod = q * k
    dot = float(q @ k)
    scores = row_scores(q, keys, query_pos, scale, causal, window, softcap, bias)
    weights = softmax(scores)
    masked = bool(not np.isfinite(scores[key_pos]))
    return NeuronBreakdown(q=q, k=k, prod=prod, dot=dot, scale=float(scale),
                           score=float(scores[key_pos]), weight=float(weights[key_pos]),
                           scores=scores, weights=weights, masked=masked)
