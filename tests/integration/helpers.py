"""Helpers of the integration tests (tests/integration/)."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def adapter(name: str):
    """One loaded packaged model per test process (the session fixtures minilm, smollm2 and dinov2 of
    tests/integration/conftest.py; test_neuron_rollout.py and test_own_input.py call it directly)."""
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


def gunicorn_expecting_failure(env_over: dict, drop=(), timeout: int = 90):
    """``gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server`` with the test process's environment
    less its ATLAS_* variables, plus ``env_over``, minus ``drop``; for settings that must stop it
    before any worker starts. Returns (completed process, seconds it took)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update(env_over)
    for k in drop:
        env.pop(k, None)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "attention_atlas.wsgi:server"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.time() - t0
