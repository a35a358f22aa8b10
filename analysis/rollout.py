"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers").

Convention (documented because papers and libraries differ):

* per layer l, A_l = mean over the heads of the attention matrices (rows = queries, columns =
  keys; each row sums to 1), recomputed exactly from the stored queries and keys;
* the residual connection is modelled as Â_l = 0.5·A_l + 0.5·I, rows renormalised to sum to 1
  (they already do; the renormalisation only matters for rows that were all zero);
* rollout through layers 1..L is the matrix product R_L = Â_L · Â_{L-1} ⋯ Â_1 (the first layer is
  applied first, i.e. right-most). R_L[i, j] is how much of output token i's representation at
  layer L flows from input token j. Every row of R_L sums to 1.
* causal models: A_l is lower-triangular (the causal mask), so R_L is lower-triangular too;
  nothing else changes.
* a run that stored only some layers gives the rollout over those layers only (the layers
  between are skipped: the view says so).
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from attention_atlas.core.runinfo import RunInfo
from precompute.metrics import attention_from_qk, layer_semantics


def with_residual(a: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """Â = (1−residual)·A + residual·I, rows renormalised (all-zero rows become the identity row)."""
    a = np.asarray(a, np.float64)
    n = a.shape[0]
    out = (1.0 - residual) * a + residual * np.eye(n)
    s = out.sum(1, keepdims=True)
    return np.where(s > 0, out / np.where(s > 0, s, 1.0), np.eye(n))


def rollout(attentions: Iterable[np.ndarray], residual: float = 0.5) -> list[np.ndarray]:
    """Cumulative rollouts, bottom layer first: ``[R_1, R_2, …, R_L]`` with R_l = Â_l · R_{l−1},
    R_0 = I. ``attentions``: per layer the (n, n) head-averaged attention, in layer order."""
    out = []
    r = None
    for a in attentions:
        ah = with_residual(a, residual)
        r = ah if r is None else ah @ r
        out.append(r)
    return out


def mean_head_attention(qk_per_head: Iterable[tuple[np.ndarray, np.ndarray]], scale: float,
                        causal: bool) -> np.ndarray:
    """Mean over heads of softmax(scale·q kᵀ + mask) for one input (rows in position order)."""
    total, count = None, 0
    for q, k in qk_per_head:
        a = attention_from_qk(q, k, causal=causal, scale=scale)
        total = a if total is None else total + a
        count += 1
    if total is None:
        raise ValueError("no heads to average")
    return total / count


def layer_means(read_qk: Callable[[int, int], tuple | None], layers: list[int], heads: list[int],
                groups: dict[int, np.ndarray], scale: float, causal: bool, run: RunInfo | dict | None = None
                ) -> tuple[dict[int, list[np.ndarray]], list[int], list[tuple[int, int]]]:
    """Head-averaged attention per layer for several inputs in ONE pass over the stored heads
    (each head's q/k is read once). ``groups``: input id → its token rows (position order).
    Returns ({input id: [A_l for each used layer]}, used layers, missing (layer, head) pairs).
    A layer with no stored head is left out (and reported missing). ``run`` (the run's RunInfo, or
    a model's ``model`` entry as ``precompute.metrics.layer_semantics`` reads it): each layer's own
    semantics (window, softcap, causal) instead of ``causal``."""
    per_input: dict[int, list[np.ndarray]] = {i: [] for i in groups}
    used, missing = [], []
    for layer in layers:
        sums = {i: None for i in groups}
        n_heads = 0
        for head in heads:
            sem = (run.layer_semantics(layer, head) if isinstance(run, RunInfo) else layer_semantics(run, layer, head)
                   if run else {"causal": causal, "scale": scale})
            qk = read_qk(layer, head)
            if qk is None:
                missing.append((layer, head))
                continue
            q, k = qk
            n_heads += 1
            for i, rows in groups.items():
                a = attention_from_qk(q[rows], k[rows], **sem)
                sums[i] = a if sums[i] is None else sums[i] + a
        if n_heads == 0:
            continue
        used.append(layer)
        for i in groups:
            per_input[i].append((sums[i] / n_heads).astype(np.float32))
    return per_input, used, missing
