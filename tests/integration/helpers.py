"""Helpers of the integration tests (tests/integration/)."""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def adapter(name: str):
    """One loaded packaged model per test process (shared by test_neuron_rollout.py and test_own_input.py)."""
    from precompute.models import load_model
    return load_model(name)


def recompute(q: np.ndarray, k: np.ndarray, scale: float, causal: bool) -> np.ndarray:
    """softmax(scale · q kᵀ + mask) in float64, (H, S, S)."""
    scores = np.einsum("hqd,hkd->hqk", q.astype(np.float64), k.astype(np.float64)) * scale
    if causal:
        n = scores.shape[-1]
        scores = np.where(np.tril(np.ones((n, n), bool)), scores, -np.inf)
    scores -= scores.max(-1, keepdims=True)
    p = np.exp(scores)
    return p / p.sum(-1, keepdims=True)
