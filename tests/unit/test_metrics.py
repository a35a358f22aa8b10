import numpy as np
import pytest

from precompute.joint import transform_qk
from precompute.metrics import attention_from_qk, distance_attention_spearman, trustworthiness
from tests.helpers import direct_spearman


def test_attention_rows_sum_to_one_and_causal_zeros():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(7, 4)) * 10, rng.normal(size=(7, 4)) * 10   # large logits: stability
    for causal in (False, True):
        A = attention_from_qk(q, k, causal, 0.5)
        assert A.shape == (7, 7) and np.all(np.isfinite(A))
        np.testing.assert_allclose(A.sum(1), 1.0, atol=1e-12)
        if causal:
            assert np.all(A[np.triu_indices(7, 1)] == 0)
            assert A[0, 0] == pytest.approx(1.0)
    logits = 0.5 * q @ k.T
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(attention_from_qk(q, k, False, 0.5), ref / ref.sum(1, keepdims=True))


def _collinear(ts):
    """Every query = u, key j = t_j * u: q·k_j = t_j and ||q - k_j|| = |1 - t_j|."""
    u = np.zeros(3); u[0] = 1.0
    return np.tile(u, (len(ts), 1)), np.outer(ts, u)


def test_spearman_known_answers_and_per_input_average():
    qa, ka = _collinear(np.linspace(0.0, 0.9, 10))     # attention up <=> distance down: -1
    qb, kb = _collinear(np.linspace(1.5, 6.0, 30))     # attention up <=> distance up:   +1
    q, k = np.vstack([qa, qb]), np.vstack([ka, kb])
    idx = np.array([0] * 10 + [1] * 30)
    kw = dict(causal=False, scale=1.0, translate=False)
    assert distance_attention_spearman(qa, ka, idx[:10], **kw) == pytest.approx(-1.0)
    assert distance_attention_spearman(qb, kb, idx[:30], **kw) == pytest.approx(1.0)
    # averaged per input first (a token average would give (10*-1 + 30*1)/40 = 0.5)
    assert distance_attention_spearman(q, k, idx, **kw) == pytest.approx(0.0, abs=1e-12)
    # keys from another input are never used: shuffling input b's keys' input ids away breaks nothing
    assert distance_attention_spearman(q, k, idx, causal=True, scale=1.0, translate=False) == pytest.approx(0.0)


def _loop_reference(q, k, idx, causal, scale, translate, norm_scale):
    """The loop reference of tests/helpers.py on the transformed joint space, Euclidean distance."""
    qt, kt = transform_qk(q, k, translate, norm_scale)
    return direct_spearman(q, k, idx, causal, scale, lambda i, j: np.linalg.norm(qt[i] - kt[j]))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("translate,norm_scale", [(True, False), (False, False), (True, True)])
def test_spearman_matches_loop_reference(causal, translate, norm_scale):
    rng = np.random.default_rng(3)
    lens = [2, 5, 9, 14]
    idx = np.repeat(np.arange(4), lens)
    q = rng.normal(size=(len(idx), 6)) + 1.0
    k = rng.normal(size=(len(idx), 6)) * 2 - 0.5
    got = distance_attention_spearman(q, k, idx, causal, 0.4, translate, norm_scale, max_queries=None)
    want = _loop_reference(q, k, idx, causal, 0.4, translate, norm_scale)
    assert got == pytest.approx(want, abs=1e-10)


def test_spearman_causal_masking_matters():
    # future keys are very close and strongly attended if not masked
    rng = np.random.default_rng(0)
    q = rng.normal(size=(12, 4))
    k = rng.normal(size=(12, 4))
    idx = np.zeros(12, int)
    a = distance_attention_spearman(q, k, idx, True, 1.0, max_queries=None)
    b = distance_attention_spearman(q, k, idx, False, 1.0, max_queries=None)
    assert a != pytest.approx(b)
    assert np.isnan(distance_attention_spearman(q[:2], k[:2], idx[:2], False, 1.0))  # < 3 keys


def test_spearman_sampling_and_speed():
    import time
    rng = np.random.default_rng(0)
    n = 10000
    idx = np.repeat(np.arange(n // 25), 25)
    q = rng.normal(size=(n, 32)).astype(np.float32)
    k = (q @ rng.normal(size=(32, 32)) * 0.3 + rng.normal(size=(n, 32))).astype(np.float32)
    t = time.perf_counter()
    full = distance_attention_spearman(q, k, idx, True, 32 ** -0.5, max_queries=None)
    assert time.perf_counter() - t < 10
    s1 = distance_attention_spearman(q, k, idx, True, 32 ** -0.5, max_queries=2000, seed=1)
    s2 = distance_attention_spearman(q, k, idx, True, 32 ** -0.5, max_queries=2000, seed=1)
    assert s1 == s2 and abs(s1 - full) < 0.05


def test_trustworthiness_sampled():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    assert trustworthiness(X, X[:, :2] * 3, sample=200) > trustworthiness(X, rng.normal(size=(500, 2)), sample=200)
    assert trustworthiness(X, X, sample=200) == pytest.approx(1.0)
    assert trustworthiness(X, X[:, :2], sample=200, seed=0) == trustworthiness(X, X[:, :2], sample=200, seed=0)
