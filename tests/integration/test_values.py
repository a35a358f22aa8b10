"""Value norms (analysis/values.py, ModelAdapter.capture_values) and the value-norm weighting of
attention (figures/attention.value_weighted) used by the Sentence/Image View and the aggregate view.

‖v‖ is checked against v computed by hand from the model's own value projection (its weight and
bias applied to the projection's input) for one input per family: bert/minilm, llama/smollm2,
vit/dinov2 (real weights), plus gpt2 and timm (tiny random checkpoints)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.values import stored_entry, token_batches, value_norms
from figures.attention import aggregate_by_position, attention, value_weighted
from precompute.models import load_model
from precompute.models.base import hooks


# ----------------------------------------------------------------------------- weighting maths
def test_equal_norms_are_a_no_op():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(7), size=7)
    np.testing.assert_allclose(value_weighted(a, np.full(7, 3.7)), a, atol=1e-15)


def test_weighting_by_hand():
    a = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    got = value_weighted(a, np.array([1.0, 3.0, 2.0]))
    np.testing.assert_allclose(got[0], [0.25, 0.75, 0.0])
    np.testing.assert_allclose(got[1], np.array([0.2, 0.9, 1.0]) / 2.1)
    np.testing.assert_allclose(got.sum(1), 1.0)
    assert np.all(value_weighted(np.zeros((2, 2)), np.ones(2)) == 0)   # rows without mass stay 0


def test_weighted_aggregate():
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    groups = [(0, np.arange(0, 5)), (1, np.arange(5, 12))]
    plain = aggregate_by_position(q, k, groups, 0.5, True, 7)
    np.testing.assert_allclose(aggregate_by_position(q, k, groups, 0.5, True, 7, np.full(12, 2.0)), plain, atol=1e-12)
    vn = rng.uniform(0.1, 3.0, 12)
    weighted = aggregate_by_position(q, k, groups, 0.5, True, 7, vn)
    # position (4, j): the mean over both inputs of their weighted rows, renormalised
    rows = [value_weighted(attention(q[r], k[r], 0.5, True), vn[r])[4, :5] for _, r in groups]
    expect = np.zeros(7)
    expect[:5] = (rows[0] + rows[1]) / 2
    np.testing.assert_allclose(weighted[4], expect / expect.sum(), atol=1e-12)
    assert np.abs(weighted - plain).max() > 1e-3


def test_token_batches_respect_budget():
    lengths = [5, 9, 3, 30, 2, 2]
    batches = token_batches(lengths, 20)
    assert [i for b in batches for i in b] == list(range(6))
    for b in batches:
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 20


# ----------------------------------------------------------------------------- against the model
def value_module(adapter, layer):
    """The layer's value projection, found independently of the capture path (timm: its fused qkv)."""
    if hasattr(adapter, "vo_modules"):
        return adapter.vo_modules[layer][0]
    attn = adapter.sites[layer].module
    return next(getattr(attn, n) for n in ("v_proj", "value", "v_lin", "c_attn") if hasattr(attn, n))


def manual_norms(adapter, batch, layer):
    """‖v‖ from the value module's own weight/bias applied by hand to its input, (n_heads, len) per input."""
    v_mod = value_module(adapter, layer)
    seen = {}

    def keep(_m, args):
        seen["x"] = args[0].detach().double()
    kwargs, lengths = adapter._inputs(batch)
    with torch.inference_mode(), hooks([(v_mod, "pre", keep)]):
        adapter._forward(kwargs, want_attentions=False)
    weight = v_mod.weight.detach().double()
    if type(v_mod).__name__ == "Conv1D":                 # GPT-2: x @ W + b, W is (in, out)
        weight = weight.T
    out = seen["x"] @ weight.T
    if v_mod.bias is not None:
        out = out + v_mod.bias.detach().double()
    info, d = adapter.info, adapter.info.head_dim
    if type(v_mod).__name__ == "Conv1D":
        out = out[..., 2 * info.n_heads * d:]           # the v part of the fused q|k|v
    elif out.shape[-1] == 3 * info.n_heads * d:          # timm's fused qkv
        out = out[..., 2 * info.n_heads * d:]
    kv = out.reshape(*out.shape[:2], -1, d)               # (B, S, n_kv, D)
    per_q = kv[:, :, [h // (info.n_heads // info.n_kv_heads) for h in range(info.n_heads)]]
    norms = per_q.norm(dim=-1).transpose(1, 2).numpy()    # (B, n_heads, S)
    return [norms[i, :, :n] for i, n in enumerate(lengths)]


def check_against_manual(adapter, batch, layer):
    got = value_norms(adapter, batch, [layer])[layer]
    want = manual_norms(adapter, batch, layer)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        assert w.std() > 1e-3 * w.mean()          # norms differ across tokens/heads: weighting is not trivial
    return got


def test_minilm_value_norms(tmp_path):
    a = load_model("minilm")
    check_against_manual(a, a.encode_texts(["The cat sat on the mat.", "Hello there, general!"]), 2)


def test_smollm2_value_norms_gqa():
    a = load_model("smollm2")
    got = check_against_manual(a, a.encode_texts(["The cat sat on the mat.", "Where is it?"]), 5)[0]
    # 9 query heads, 3 kv heads: heads 0-2 share kv head 0, 3-5 kv head 1, 6-8 kv head 2
    assert a.info.n_heads == 9 and a.info.n_kv_heads == 3
    np.testing.assert_array_equal(got[0], got[2])
    np.testing.assert_array_equal(got[3], got[5])
    assert np.abs(got[2] - got[3]).max() > 1e-3


def test_dinov2_value_norms():
    from PIL import Image
    from skimage import data
    a = load_model("dinov2-small")
    got = check_against_manual(a, a.encode_images([Image.fromarray(data.chelsea())]), 11)[0]
    assert got.shape == (6, 257)


def test_gpt2_value_norms(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from tests.helpers import byte_bpe_tokenizer, save_random
    cfg = GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=128, initializer_range=0.2)
    a = load_model(save_random(GPT2LMHeadModel, cfg, tmp_path, byte_bpe_tokenizer))
    check_against_manual(a, a.encode_texts(["The cat sat on the mat.", "Hi!"]), 1)


def test_timm_value_norms(tmp_path):
    import timm
    from PIL import Image
    from skimage import data
    from timm.models import save_for_hf
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2)
    with torch.no_grad():                       # timm's init gives a zero qkv bias: make the bias count
        for blk in model.blocks:
            blk.attn.qkv.bias.normal_()
    save_for_hf(model, str(tmp_path), model_args={"depth": 2}, safe_serialization=True)
    a = load_model(f"timm:{tmp_path}")
    check_against_manual(a, a.encode_images([Image.fromarray(data.chelsea())]), 1)


def test_stored_entry_roundtrip():
    norms = {5: np.ones((3, 4), np.float32), 0: np.zeros((3, 4), np.float32)}
    e = stored_entry(norms)
    assert e["layers"].tolist() == [0, 5] and e["norms"].shape == (2, 3, 4)
    assert np.all(e["norms"][1] == 1)


def test_weighting_rejects_nothing_silently():
    with pytest.raises(ValueError):
        value_weighted(np.ones((2, 3)), np.ones(2))
