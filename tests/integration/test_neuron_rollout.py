"""Neuron view and attention rollout: the numbers.

Neuron view: the per-dimension products sum to q·k, and softmax over the keys of scale·q·k equals
each real model's OWN attention probabilities (bert/minilm, llama/smollm2, vit/dinov2, one input,
first and last layer, every head and every (query, key) pair). Rollout: identity, a 2-layer
example by hand, rows summing to 1, causal structure, and the dashboard's reader of stored q/k
against a direct computation on a fixture store."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from analysis.neuron import breakdown  # noqa: E402
from analysis.rollout import layer_means, mean_head_attention, rollout, with_residual  # noqa: E402
from precompute.metrics import attention_from_qk  # noqa: E402
from tests.integration.helpers import adapter  # noqa: E402  (one model per process, shared)

TEXT = "The trophy didn't fit in the suitcase because it was too big."


def one_input(a):
    if a.info.modality == "image":
        from precompute.demo_images import demo_images
        imgs = demo_images()
        first = imgs[0][1] if isinstance(imgs[0], tuple) else imgs[0]
        return a.encode_images([first])
    return a.encode_texts([TEXT])


# ----------------------------------------------------------------------------- neuron view
def test_breakdown_sums_and_softmax():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(7, 16)), rng.normal(size=(7, 16))
    bd = breakdown(q, k, 3, 5, 0.25, causal=False)
    assert bd.prod.shape == (16,)
    assert bd.dot == pytest.approx(float(np.sum(q[3] * k[5])), abs=1e-12)
    assert float(bd.prod.sum()) == pytest.approx(bd.dot, abs=1e-12)
    assert bd.score == pytest.approx(0.25 * bd.dot)
    row = attention_from_qk(q, k, causal=False, scale=0.25)[3]
    np.testing.assert_allclose(bd.weights, row, atol=1e-12)
    assert bd.weight == pytest.approx(row[5])
    # causal: a key after the query is masked, the others renormalise
    bc = breakdown(q, k, 3, 5, 0.25, causal=True)
    assert bc.masked and bc.weight == 0.0 and not np.isfinite(bc.score)
    np.testing.assert_allclose(bc.weights, attention_from_qk(q, k, causal=True, scale=0.25)[3], atol=1e-12)
    assert bc.weights[:4].sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        breakdown(q, k, 7, 0, 0.25, False)


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2-small"])
def test_neuron_weights_equal_model_attention(name):
    a = adapter(name)
    batch = one_input(a)
    layers = [0, a.info.n_layers - 1]
    cap = a.capture(batch, layers=layers)
    att = a.attentions(batch)
    n = len(batch[0].tokens)
    rng = np.random.default_rng(1)
    for layer in layers:
        q_all, k_all = cap[layer][0][0], cap[layer][1][0]      # (H, n, d): what the store holds
        model = att[layer][0]                                   # (H, n, n): the model's own
        for h in range(a.info.n_heads):
            queries = range(n) if n <= 40 else rng.choice(n, 12, replace=False)
            for i in queries:
                bd = breakdown(q_all[h], k_all[h], int(i), int(i) // 2, a.info.scale, a.info.causal)
                assert abs(bd.prod.sum() - bd.dot) < 1e-6 * max(1.0, abs(bd.dot))
                diff = np.abs(bd.weights - model[h, i]).max()
                assert diff < 1e-4, f"{name} L{layer} H{h} query {i}: |Δ| = {diff:.2e}"
    # and it can fail: keys shifted by one position give a different row
    q0, k0 = cap[0][0][0][0], cap[0][1][0][0]
    wrong = breakdown(q0, np.roll(k0, 1, axis=0), n - 1, 0, a.info.scale, a.info.causal)
    assert np.abs(wrong.weights - att[0][0][0, n - 1]).max() > 1e-3


# ----------------------------------------------------------------------------- rollout
def test_rollout_of_identity_is_identity():
    eye = np.eye(5)
    for r in rollout([eye, eye, eye]):
        np.testing.assert_allclose(r, eye, atol=1e-15)


def test_rollout_two_layers_by_hand():
    a1 = np.array([[1.0, 0.0], [0.5, 0.5]])
    a2 = np.array([[0.2, 0.8], [0.6, 0.4]])
    # Â1 = [[1, 0], [.25, .75]], Â2 = [[.6, .4], [.3, .7]], R = Â2 · Â1
    r1, r2 = rollout([a1, a2])
    np.testing.assert_allclose(r1, [[1.0, 0.0], [0.25, 0.75]], atol=1e-15)
    np.testing.assert_allclose(r2, [[0.7, 0.3], [0.475, 0.525]], atol=1e-15)
    # order matters: the first layer is applied first (right-most)
    assert not np.allclose(rollout([a2, a1])[-1], r2)


def test_rollout_rows_sum_to_one_and_causal_stays_lower_triangular():
    rng = np.random.default_rng(3)
    n = 9
    mats = []
    for _ in range(4):
        q, k = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
        mats.append(attention_from_qk(q, k, causal=True, scale=0.5))
    for r in rollout(mats):
        np.testing.assert_allclose(r.sum(1), 1.0, atol=1e-12)
        assert np.all(r >= 0) and np.allclose(np.triu(r, 1), 0.0)
    # an all-zero row (fully hidden) gets the identity row
    z = with_residual(np.zeros((3, 3)))
    np.testing.assert_allclose(z, np.eye(3))


def test_layer_means_and_rollout_view_on_a_store():
    from attention_atlas.dashboard_data import Data
    from tests.store_fixture import make_test_store

    from callbacks.rollout import rollout_view
    d = Path(tempfile.mkdtemp(prefix="atlas-rollout-"))
    run = make_test_store(d, "text", n_layers=3, n_heads=4, n_inputs=5, causal=True)
    data = Data(d)
    m, tokens = data.manifest(run), data.tokens(run)
    rows = tokens.index.rows(2)
    direct = []
    for layer in m["layers"]:
        direct.append(mean_head_attention(
            [(data.qk(run, layer, h)[0][rows], data.qk(run, layer, h)[1][rows]) for h in m["heads"]],
            m["model"]["scale"], True))
    per_input, used, missing = layer_means(lambda l, h: data.qk(run, l, h), m["layers"], m["heads"],
                                           {i: r for i, r in tokens.index}, m["model"]["scale"], True)
    assert used == m["layers"] and not missing
    for a, b in zip(per_input[2], direct):
        np.testing.assert_allclose(a, b, atol=1e-6)
    expected = rollout(direct)[-1]
    heat, _, style, info, opts, value, r = rollout_view(data, run, int(rows[1]), None)
    np.testing.assert_allclose(r, expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(heat.data[0].z, np.float64), expected, atol=1e-5)
    assert value == m["layers"][-1] and style["display"] == "none" and "L0, L1, L2" in info
    # through layer 1 only
    r1 = rollout_view(data, run, int(rows[1]), 1)[-1]
    np.testing.assert_allclose(r1, rollout(direct[:2])[-1], atol=1e-5)


def test_rollout_view_image_overlay_and_partial_layers():
    from attention_atlas.dashboard_data import Data
    from tests.store_fixture import make_test_store

    from callbacks.rollout import rollout_view
    d = Path(tempfile.mkdtemp(prefix="atlas-rollout-img-"))
    run = make_test_store(d, "image", n_layers=2, n_heads=3, n_inputs=2, grid=4)
    data = Data(d)
    tokens = data.tokens(run)
    heat, img, style, info, *_ , r = rollout_view(data, run, None, None)
    assert style["display"] == "block"
    rows = tokens.index.rows(0)
    pr = np.asarray(tokens.arrays["patch_row"])[rows]
    pc = np.asarray(tokens.arrays["patch_col"])[rows]
    z = np.asarray(img.data[1].z, np.float64)
    for j in np.flatnonzero(pr >= 0):
        assert z[pr[j], pc[j]] == pytest.approx(r[0, j], abs=1e-6)   # the CLS row, patch by patch
    assert "CLS draws" in info
