"""Head ablation (analysis/ablation.py, ModelAdapter.ablate) on the real packaged models.

Checks numbers: no heads ablated → the objective equals the unhooked model's exactly; every head
zeroed → a large change; zero ablation equals a manual computation on one layer (smollm2, GQA);
mean ablation with a one-input corpus (mean pattern = the head's own pattern) changes nothing;
the masked-LM branch matches BertForMaskedLM's own loss (tiny random checkpoint: no packaged model
has a masked-LM head); bootstrap intervals are deterministic and contain the mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis import ablation as abl
from precompute.metrics import attention_from_qk
from precompute.models import load_model
from precompute.models.base import hooks

TEXTS = ["The cat sat on the mat because it was tired.", "Where is the station?",
         "One, two, three: the list goes on."]


# minilm, smollm2, dinov2: the session's packaged adapters (tests/integration/conftest.py)


@pytest.fixture(scope="module")
def images():
    from PIL import Image
    from skimage import data
    return [Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut())]


def every_head(adapter):
    return [(l, h) for l in range(adapter.info.n_layers) for h in range(adapter.info.n_heads)]


# ----------------------------------------------------------------------------- statistics
def test_bootstrap_deterministic_and_contains_mean():
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 1.0, size=9)
    a = abl.bootstrap_ci(values, seed=7)
    b = abl.bootstrap_ci(values, seed=7)
    c = abl.bootstrap_ci(values, seed=8)
    assert a == b and a != c
    mean, lo, hi = a
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    # the interval is about ±2 standard errors wide for this sample
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert 2.5 * se < hi - lo < 5.5 * se
    assert abl.bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    assert abl.bootstrap_ci([1.0, 1.0, 1.0])[1:] == (1.0, 1.0)


def test_sample_inputs():
    assert abl.sample_inputs(5, 32) == [0, 1, 2, 3, 4]
    s = abl.sample_inputs(100, 10)
    assert s == sorted(s) and len(set(s)) == 10 and s == abl.sample_inputs(100, 10)
    assert "seeded random sample" in abl.describe_sample(s, 100)


def test_heads_for_and_merge():
    m = {"layers": [0, 5], "heads": [0, 1, 2]}
    assert abl.heads_for("head", m, 5, 1)[:2] == ([(5, 1)], [])
    assert abl.heads_for("layer", m, 0, 1)[0] == [(0, 0), (0, 1), (0, 2)]
    assert abl.heads_for("all-set", m, 0, 0)[1] == [[(l, h) for l in (0, 5) for h in range(3)]]
    with pytest.raises(ValueError, match="no heads selected"):
        abl.heads_for("selected-set", m, 0, 0, [])
    frag = {"objective": "x", "inputs": [0, 1], "seed": 0, "baseline": 1.0, "n_inputs": 2, "resamples": 1000,
            "objective_description": "", "single": {"0:1": {"delta": 1.0}}, "sets": []}
    merged = abl.merge({"zero": dict(frag, single={"5:2": {"delta": 2.0}})}, "zero", frag)
    assert set(merged["zero"]["single"]) == {"0:1", "5:2"}
    other = abl.merge(merged, "zero", dict(frag, inputs=[0, 1, 2]))   # other sample: replaced, not mixed
    assert set(other["zero"]["single"]) == {"0:1"}
    s1 = dict(frag, single={}, sets=[{"heads": [[0, 1], [5, 2]], "delta": 1.0}])
    s2 = abl.merge(abl.merge(None, "mean", s1), "mean", dict(s1, sets=[{"heads": [[5, 2], [0, 1]], "delta": 3.0}]))
    assert [s["delta"] for s in s2["mean"]["sets"]] == [3.0]


# ----------------------------------------------------------------------------- real models
def check_model(adapter, encoded, big: float):
    ev = abl.Evaluator(adapter, encoded, list(range(len(encoded))))
    none = ev.deltas([], "zero")
    assert none.shape == (len(encoded),) and np.abs(none).max() < 1e-6
    everything = ev.deltas(every_head(adapter), "zero")
    assert everything.mean() > big, everything
    one = ev.deltas([(0, 0)], "zero")
    assert 0 < np.abs(one).max() < everything.max()
    res = abl.run_ablation(ev, singles=[(0, 0)], sets=[[(0, 1), (0, 0)]], mode="zero")
    assert res["objective"] == ev.objective and res["n_inputs"] == len(encoded)
    for r in list(res["single"].values()) + res["sets"]:
        assert r["ci_low"] <= r["delta"] <= r["ci_high"]
        assert r["delta"] == pytest.approx(np.mean(r["per_input"]))
    assert res["single"]["0:0"]["per_input"] == pytest.approx(one.tolist(), abs=1e-12)
    assert res["sets"][0]["heads"] == [[0, 0], [0, 1]]
    return ev, everything


def test_minilm_objective_and_extremes(minilm):
    assert minilm.masked_lm_head() is None          # a sentence encoder: no masked-LM head in its package
    ev, everything = check_model(minilm, minilm.encode_texts(TEXTS), big=0.3)
    assert ev.objective == "embedding-cosine-distance" and ev.baseline == 0.0
    assert abl.sentence_pooling(minilm) == "mean"
    assert everything.max() <= 2.0


def test_smollm2_objective_and_extremes(smollm2):
    ev, everything = check_model(smollm2, smollm2.encode_texts(TEXTS[:2]), big=1.0)
    assert ev.objective == "next-token-loss"
    # the baseline is the model's own next-token loss
    enc = smollm2.encode_texts(TEXTS[:1])
    ids = torch.tensor([enc[0].token_ids])
    with torch.inference_mode():
        own = smollm2.model(input_ids=ids, labels=ids, use_cache=False).loss.item()
    assert ev.baseline_values[0] == pytest.approx(own, abs=1e-4)
    assert 1.0 < ev.baseline < 10.0


def test_dinov2_objective_and_extremes(dinov2, images):
    ev, _ = check_model(dinov2, dinov2.encode_images(images), big=0.3)
    assert ev.objective == "cls-cosine-distance"


def test_smollm2_zero_ablation_equals_manual_computation(smollm2):
    """Zeroing query head H of layer L removes exactly W_O[:, H] · (A_H V_{kv(H)}) from o_proj's output."""
    a, layer, head = smollm2, 3, 4           # head 4 is served by kv head 1 (3 query heads per kv head)
    batch = a.encode_texts(TEXTS[:2])
    values = a.capture_values(batch, [layer])[layer]
    queries, keys = a.capture(batch, [layer])[layer]
    kwargs, lengths = a._inputs(batch)
    o_proj, d = a.model.model.layers[layer].self_attn.o_proj, a.info.head_dim
    seen = {}

    def keep(name):
        def hook(_m, args, out):
            seen[name] = (args[0].detach().clone(), out.detach().clone())
        return hook
    with torch.inference_mode(), hooks([(o_proj, "forward", keep("plain"))]):
        a.model(**kwargs, use_cache=False)
    with torch.inference_mode(), hooks([(o_proj, "forward", keep("ablated"))]), a.ablate([(layer, head)], "zero"):
        a.model(**kwargs, use_cache=False)
    w = o_proj.weight.detach().double().numpy()[:, head * d:(head + 1) * d]
    for i, n in enumerate(lengths):
        attn = attention_from_qk(queries[i][head], keys[i][head], causal=True, scale=a.info.scale)
        ctx = attn @ values[i][head].astype(np.float64)
        np.testing.assert_allclose(ctx, seen["plain"][0][i, :n, head * d:(head + 1) * d].numpy(), atol=2e-5)
        expected = seen["plain"][1][i, :n].double().numpy() - ctx @ w.T
        got = seen["ablated"][1][i, :n].double().numpy()
        assert np.abs(got - expected).max() < 5e-5
        assert np.abs(ctx @ w.T).max() > 0.1      # the head's contribution is not negligible
        assert np.all(seen["ablated"][0][i, :n, head * d:(head + 1) * d].numpy() == 0)
        others = np.r_[0:head * d, (head + 1) * d:a.info.n_heads * d]
        np.testing.assert_array_equal(seen["ablated"][0][i, :n].numpy()[:, others], seen["plain"][0][i, :n].numpy()[:, others])
    # the kv head shared with heads 3 and 5 is untouched: their outputs are unchanged above
    with pytest.raises(ValueError, match="not in"):
        with a.ablate([(layer, 99)]):
            pass


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_mean_ablation_with_one_input_is_identity(request, name, images):
    """With one input the mean pattern is the head's own pattern: mean-ablating every head changes ~nothing,
    while mean-ablating on a two-input corpus does change the output."""
    adapter = request.getfixturevalue(name)
    enc = adapter.encode_images(images) if name == "dinov2" else adapter.encode_texts(TEXTS[:2])
    one = abl.Evaluator(adapter, enc[:1], [0])
    assert abs(one.deltas(every_head(adapter), "mean")[0]) < 1e-4
    two = abl.Evaluator(adapter, enc, [0, 1])
    assert two.deltas(every_head(adapter), "mean").mean() > 1e-3
    # the pattern is a proper attention distribution, causal where the model is
    p = two.mean_pattern(0, 0, 5)
    np.testing.assert_allclose(p.sum(1), 1.0)
    if adapter.info.causal:
        assert np.all(np.triu(p, 1) == 0)


def test_masked_lm_branch_on_tiny_checkpoint(tmp_path):
    """No packaged model has a masked-LM head, so this branch is checked on a tiny random
    BertForMaskedLM: the objective equals the checkpoint's own masked-LM loss."""
    from transformers import BertConfig, BertForMaskedLM

    from tests.helpers import minilm_tokenizer, save_random

    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, initializer_range=0.2)
    folder = save_random(BertForMaskedLM, cfg, tmp_path, minilm_tokenizer)
    adapter = load_model(folder)
    assert adapter.masked_lm_head() is not None
    enc = adapter.encode_texts(TEXTS)
    ev = abl.Evaluator(adapter, enc, [0, 1, 2])
    assert ev.objective == "masked-lm-loss"
    reference = BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    for j, (group, _, kwargs, lens, labels) in enumerate(ev.batches):
        for r, n in enumerate(lens):
            assert (labels[r] != -100).sum() >= 1
            with torch.inference_mode():
                own = reference(input_ids=kwargs["input_ids"][r:r + 1, :n], labels=labels[r:r + 1, :n]).loss.item()
            assert ev.baseline_values[group[r]] == pytest.approx(own, abs=1e-5)
    assert np.abs(ev.deltas([], "zero")).max() < 1e-6
    assert ev.deltas(every_head(adapter), "zero").mean() != 0


def test_forked_job_runs_after_parent_used_torch():
    """Dash forks the web process for background jobs; after the parent ran a parallel torch op a
    forked child hangs in OpenMP unless ``prepare_forked_process`` is called (as ablation_job does)."""
    import multiprocessing

    from attention_atlas.core import runtime

    x = torch.randn(1500, 1500)
    for _ in range(2):
        x @ x                                  # the parent's OpenMP/MKL thread pool is now running

    def child():
        runtime.prepare_forked_process()
        assert torch.get_num_threads() == 1
        (x @ x).sum()

    p = multiprocessing.get_context("fork").Process(target=child)
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung in its first parallel torch op")
    assert p.exitcode == 0


def test_public_adapter_capabilities(minilm, smollm2):
    """What analyses may ask of any adapter (prepare_inputs, forward, last_hidden_state, lm_logits,
    masked_lm_logits), with one-line refusals where a capability does not apply; analysis/ uses
    only these, never an adapter's underscored methods."""
    import re
    from pathlib import Path

    enc = minilm.encode_texts(["The cat sat.", "A dog ran far away."])
    kwargs, lengths = minilm.prepare_inputs(enc)
    assert lengths == [len(e.tokens) for e in enc]
    hidden = minilm.last_hidden_state(kwargs)
    assert hidden.shape[:2] == kwargs["input_ids"].shape
    with pytest.raises(ValueError, match="no language-model head"):
        minilm.lm_logits(kwargs)
    if minilm.masked_lm_head() is None:
        with pytest.raises(ValueError, match="no masked-LM head"):
            minilm.masked_lm_logits(kwargs)
    enc = smollm2.encode_texts(["The cat sat on the mat."])
    kwargs, _ = smollm2.prepare_inputs(enc)
    with torch.inference_mode():
        logits = smollm2.lm_logits(kwargs)
        assert logits.shape[:2] == kwargs["input_ids"].shape
        assert torch.allclose(smollm2.last_hidden_state(kwargs), smollm2.model.base_model(**kwargs).last_hidden_state)
    root = Path(__file__).resolve().parents[2]
    for f in (root / "analysis").glob("*.py"):
        assert not re.search(r"\badapter\._[a-z]|\ba\._[a-z]", f.read_text()), f"{f.name} reaches into an adapter"
