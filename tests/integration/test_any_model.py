"""Any model: tiny seeded random models of common architectures saved as local folders (no downloads)
are either captured faithfully or refused in one line naming why.

Faithful = attention recomputed by THE recompute (precompute.metrics.attention_from_qk with the
layer's stored semantics: scale, causal, window, softcap) from the captured q/k of a padded batch
equals the attention of an independently loaded eager copy of the model, run on each input alone,
within 1e-4 on every layer and head — with inputs longer than every sliding window. A subset also
goes through the documented CLI (`python -m precompute run --model <folder> …`) and the check runs
on the q/k read back from the store.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from precompute.metrics import attention_from_qk, layer_semantics  # noqa: E402
from precompute.models import ModelLoadError, load_model  # noqa: E402
from tests.helpers import TEXTS, save_tiny, seq2seq_specs  # noqa: E402

TOL = 1e-4
WINDOW = 8          # every sliding/local window below; the longest input has > 3 × WINDOW tokens
IDS = dict(vocab_size=300, pad_token_id=1, bos_token_id=0, eos_token_id=2)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=128, initializer_range=0.2)
DECODER = dict(SMALL, num_key_value_heads=2, **IDS)


def _text_specs():
    import transformers as t

    return {
        "bert": (t.BertModel, t.BertConfig(**SMALL, vocab_size=300, pad_token_id=1)),
        "roberta": (t.RobertaModel, t.RobertaConfig(**dict(SMALL, max_position_embeddings=130), **IDS)),
        "xlm-roberta": (t.XLMRobertaModel, t.XLMRobertaConfig(**dict(SMALL, max_position_embeddings=130), **IDS)),
        "distilbert": (t.DistilBertModel, t.DistilBertConfig(vocab_size=300, pad_token_id=1, dim=32, n_layers=2,
                                                             n_heads=4, hidden_dim=64, max_position_embeddings=128,
                                                             initializer_range=0.2)),
        "electra": (t.ElectraModel, t.ElectraConfig(**SMALL, embedding_size=32, vocab_size=300, pad_token_id=1)),
        "modernbert": (t.ModernBertModel, t.ModernBertConfig(
            **dict(SMALL, num_hidden_layers=3), local_attention=2 * WINDOW, global_attn_every_n_layers=2,
            cls_token_id=0, sep_token_id=2, **IDS)),
        "gpt2": (t.GPT2LMHeadModel, t.GPT2Config(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=4,
                                                 initializer_range=0.2, bos_token_id=0, eos_token_id=2)),
        "gpt_neox": (t.GPTNeoXForCausalLM, t.GPTNeoXConfig(**SMALL, partial_rotary_factor=0.5, **IDS)),
        "opt": (t.OPTForCausalLM, t.OPTConfig(hidden_size=32, num_hidden_layers=2, ffn_dim=64, num_attention_heads=4,
                                              word_embed_proj_dim=32, max_position_embeddings=128, init_std=0.2,
                                              **IDS)),
        "llama": (t.LlamaForCausalLM, t.LlamaConfig(**DECODER)),
        "mistral": (t.MistralForCausalLM, t.MistralConfig(**DECODER, sliding_window=WINDOW)),
        "mixtral": (t.MixtralForCausalLM, t.MixtralConfig(**DECODER, sliding_window=WINDOW, num_local_experts=2,
                                                          num_experts_per_tok=1)),
        "qwen2": (t.Qwen2ForCausalLM, t.Qwen2Config(**DECODER)),
        "qwen3": (t.Qwen3ForCausalLM, t.Qwen3Config(**DECODER, head_dim=16)),
        "phi3": (t.Phi3ForCausalLM, t.Phi3Config(**DECODER, sliding_window=WINDOW)),
        "gemma2": (t.Gemma2ForCausalLM, t.Gemma2Config(**DECODER, head_dim=8, sliding_window=WINDOW,
                                                       query_pre_attn_scalar=24, attn_logit_softcapping=2.0)),
        "gemma3_text": (t.Gemma3ForCausalLM, t.Gemma3TextConfig(**DECODER, head_dim=8, sliding_window=WINDOW,
                                                               query_pre_attn_scalar=24, sliding_window_pattern=2)),
        "olmo2": (t.Olmo2ForCausalLM, t.Olmo2Config(**DECODER)),
        "starcoder2": (t.Starcoder2ForCausalLM, t.Starcoder2Config(**DECODER, sliding_window=WINDOW)),
        # ALiBi inside its own attention module (precompute.models.alibi); 6 heads: slopes of a
        # head count that is not a power of two
        "bloom": (t.BloomForCausalLM, t.BloomConfig(vocab_size=300, hidden_size=48, n_layer=2, n_head=6,
                                                    initializer_range=0.2, **{k: v for k, v in IDS.items()
                                                                              if k != "vocab_size"})),
    }


REFUSED = {  # architecture → a word the one-line refusal must contain
    "gptj": "GPT-J", "falcon": "Falcon", "deberta-v2": "disentangled",
}


def _refused_specs():
    import transformers as t

    return {
        "gptj": (t.GPTJForCausalLM, t.GPTJConfig(vocab_size=300, n_positions=128, n_embd=32, n_layer=2, n_head=4,
                                                 rotary_dim=4)),
        "falcon": (t.FalconForCausalLM, t.FalconConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                                                       num_attention_heads=4)),
        "deberta-v2": (t.DebertaV2Model, t.DebertaV2Config(**SMALL, vocab_size=300)),
    }


def _vision_specs():
    import transformers as t

    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  initializer_range=0.2)
    return {
        "vit": (t.ViTModel, t.ViTConfig(image_size=32, patch_size=8, **common)),
        "deit": (t.DeiTModel, t.DeiTConfig(image_size=32, patch_size=8, **common)),
        "dinov2": (t.Dinov2Model, t.Dinov2Config(image_size=32, patch_size=14, **common)),
        "clip_vision_model": (t.CLIPVisionModel, t.CLIPVisionConfig(image_size=32, patch_size=8, **common)),
        "siglip_vision_model": (t.SiglipVisionModel, t.SiglipVisionConfig(image_size=32, patch_size=8, **common)),
    }


def reference_attentions(folder: str, model_cls, inputs: list[dict]) -> list[list[np.ndarray]]:
    """Per input, per layer: (H, n, n) attention of an independent eager copy, each input alone."""
    ref = model_cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    out = []
    with torch.inference_mode():
        for kw in inputs:
            res = ref(**kw, output_attentions=True)
            out.append([a[0].double().numpy() for a in res.attentions])
    return out


def assert_faithful(adapter, captured, reference, label: str) -> float:
    """Recompute every layer/head/input from captured q/k and compare with the reference."""
    model = adapter.info.to_dict()
    worst = 0.0
    for layer in range(adapter.info.n_layers):
        queries, keys = captured[layer]
        for i, ref in enumerate(reference):
            for h in range(adapter.info.n_heads):
                a = attention_from_qk(queries[i][h], keys[i][h], **layer_semantics(model, layer, h))
                diff = float(np.abs(a - ref[layer][h]).max())
                assert diff < TOL, f"{label}: layer {layer} head {h} input {i} differs by {diff:.2e}"
                worst = max(worst, diff)
    print(f"\n[any model] {label}: max |Δ| = {worst:.2e}")
    return worst


def check_window_matters(adapter, captured, reference):
    """For windowed layers, dropping the window would be wrong: the inputs are longer than it."""
    model = adapter.info.to_dict()
    windowed = [l for l in range(adapter.info.n_layers) if layer_semantics(model, l, 0)["window"] is not None]
    i = max(range(len(reference)), key=lambda j: reference[j][0].shape[-1])
    for layer in windowed:
        sem = dict(layer_semantics(model, layer, 0), window=None)
        a = attention_from_qk(captured[layer][0][i][0], captured[layer][1][i][0], **sem)
        assert np.abs(a - reference[i][layer][0]).max() > 1e-3
    return windowed


# ---------------------------------------------------------------------------- text
EXPECTED_WINDOWS = {"modernbert": [None, WINDOW, None], "mistral": [WINDOW - 1] * 2, "mixtral": [WINDOW - 1] * 2,
                    "phi3": [WINDOW - 1] * 2, "starcoder2": [WINDOW - 1] * 2,
                    "gemma2": [WINDOW - 1, None], "gemma3_text": [WINDOW - 1, None]}


@pytest.mark.parametrize("kind", list(_text_specs()))
def test_text_architecture_faithful(tmp_path, kind):
    model_cls, config = _text_specs()[kind]
    folder = save_tiny(model_cls, config, tmp_path)
    adapter = load_model(folder)
    info = adapter.info
    assert info.family == kind and info.modality == "text" and info.n_layers == config.num_hidden_layers
    batch = adapter.encode_texts(TEXTS)
    lengths = [len(e.tokens) for e in batch]
    assert max(lengths) > 3 * WINDOW and len(set(lengths)) == len(lengths)
    captured = adapter.capture(batch)
    inputs = [{"input_ids": torch.tensor([e.token_ids])} for e in batch]
    reference = reference_attentions(folder, model_cls, inputs)
    assert_faithful(adapter, captured, reference, kind)
    windows = [s["window"] for s in info.attention]
    assert windows == EXPECTED_WINDOWS.get(kind, [None] * info.n_layers)
    assert check_window_matters(adapter, captured, reference) == [l for l, w in enumerate(windows) if w is not None]
    assert info.causal == (kind not in ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "modernbert"))
    assert info.kv_heads == [h // (info.n_heads // info.n_kv_heads) for h in range(info.n_heads)]
    assert info.max_length >= 120          # no cap at the sliding window
    if kind == "gemma2":
        assert info.scale == pytest.approx(24 ** -0.5) and all(s["softcap"] == 2.0 for s in info.attention)
        sem = dict(layer_semantics(info.to_dict(), 1), softcap=None)          # the softcap matters here
        a = attention_from_qk(captured[1][0][2][0], captured[1][1][2][0], **sem)
        assert np.abs(a - reference[2][1][0]).max() > 1e-3
    if kind in DECODER_GQA:
        assert (info.n_heads, info.n_kv_heads) == (4, 2)
    if kind == "bloom":
        from precompute.models.capture import CaptureRefused
        assert [s["bias"] for s in info.attention] == ["alibi0", "alibi0"]
        slopes = info.position_bias["alibi0"]["alibi_slopes"]
        assert len(slopes) == 6 and len(set(slopes)) == 6
        sem = {key: v for key, v in layer_semantics(info.to_dict(), 1, 5).items() if key != "bias"}
        a = attention_from_qk(captured[1][0][2][5], captured[1][1][2][5], **sem)       # the bias matters
        assert np.abs(a - reference[2][1][5]).max() > 1e-3
        with pytest.raises(CaptureRefused, match="ablation"):                     # refused, not wrong
            with adapter.ablate([(0, 0)]):
                adapter._forward(adapter._inputs(batch[:1])[0], want_attentions=False)


DECODER_GQA = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text", "olmo2", "starcoder2")


@pytest.mark.parametrize("kind", list(REFUSED))
def test_refused_architecture_one_line(tmp_path, kind):
    model_cls, config = _refused_specs()[kind]
    folder = save_tiny(model_cls, config, tmp_path)
    with pytest.raises(ModelLoadError) as exc:
        load_model(folder)
    msg = str(exc.value)
    assert "\n" not in msg and REFUSED[kind] in msg and "unsupported architecture" in msg


# ---------------------------------------------------------------------------- vision
@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)]


@pytest.mark.parametrize("kind", list(_vision_specs()))
def test_vision_architecture_faithful(tmp_path, images, kind):
    model_cls, config = _vision_specs()[kind]
    folder = save_tiny(model_cls, config, tmp_path, text=False)
    adapter = load_model(folder)
    info = adapter.info
    assert info.modality == "image" and info.n_layers == 2 and not info.causal
    batch = adapter.encode_images(images)
    n_prefix = {"deit": 2, "siglip_vision_model": 0}.get(kind, 1)
    assert batch[0].n_prefix == n_prefix and len(batch[0].tokens) == info.max_length
    captured = adapter.capture(batch)
    reference = reference_attentions(folder, model_cls, [{"pixel_values": e.pixel_values[None]} for e in batch])
    assert_faithful(adapter, captured, reference, kind)


# ---------------------------------------------------------------------------- the documented CLI path
@pytest.mark.parametrize("kind", ["modernbert", "gpt_neox", "mistral", "gemma2", "bloom", "clip_vision_model"])
def test_cli_run_is_faithful(tmp_path, images, kind):
    """`python -m precompute run --model <folder>`: q/k read back from the store, with the stored
    per-layer semantics, reproduce the model's own attention on every layer and head."""
    from PIL import Image

    from precompute.cli import main
    from precompute.store import Store

    vision = kind in _vision_specs()
    model_cls, config = (_vision_specs() if vision else _text_specs())[kind]
    folder = save_tiny(model_cls, config, tmp_path / "model", text=not vision)
    if vision:
        corpus = tmp_path / "images"
        corpus.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(corpus / f"img{i}.png")
    else:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("\n".join(TEXTS) + "\n")
    cache = tmp_path / "store"
    assert main(["run", "--model", folder, "--corpus", str(corpus), "--cache", str(cache), "--projections", "pca",
                 "--dims", "2", "--variants", "translated", "--quiet", "--workers", "1"]) == 0
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    m = store.manifest(run_id)
    assert len(m["model"]["attention"]) == m["model"]["n_layers"] and m["model"]["kv_heads"]
    tokens = store.tokens(run_id)
    adapter = load_model(folder)
    enc = adapter.encode_images([np.asarray(Image.open(p)) for p in sorted(corpus.iterdir())]) if vision \
        else adapter.encode_texts(TEXTS)
    inputs = [{"pixel_values": e.pixel_values[None]} if vision else {"input_ids": torch.tensor([e.token_ids])}
              for e in enc]
    reference = reference_attentions(folder, model_cls, inputs)
    worst = 0.0
    for layer in m["layers"]:
        for h in m["heads"]:
            sem = layer_semantics(m["model"], layer, h)
            q, k = store.qk(run_id, layer, h)
            for i in range(len(enc)):
                sel = tokens["input_id"] == i
                diff = float(np.abs(attention_from_qk(q[sel], k[sel], **sem) - reference[i][layer][h]).max())
                assert diff < TOL, f"{kind} via CLI: layer {layer} head {h} input {i} differs by {diff:.2e}"
                worst = max(worst, diff)
    assert np.isfinite(store.metrics(run_id, m["layers"][0], 0)["spearman/translated"])
    print(f"\n[any model, CLI] {kind}: max |Δ| = {worst:.2e}")


# ---------------------------------------------------------------------------- encoder–decoder
TARGETS = ["Le chat était assis sur le tapis.", "Salut !", "Alice a donné le livre à Bob, qui l'a remercié deux fois."]


@pytest.mark.parametrize("kind", list(seq2seq_specs()))
@pytest.mark.parametrize("target", ["given", "generated"])
def test_seq2seq_three_head_kinds_faithful(tmp_path, kind, target):
    """Encoder self, decoder self (causal) and cross heads: recomputed == an eager copy's own
    encoder/decoder/cross attentions, each input alone, every layer and head."""
    model_cls, config = seq2seq_specs()[kind]
    folder = save_tiny(model_cls, config, tmp_path)
    adapter = load_model(folder)
    info = adapter.info
    kinds = [s["kind"] for s in info.attention]
    assert kinds == ["encoder", "encoder", "decoder", "cross", "decoder", "cross"]
    assert [s["causal"] for s in info.attention] == [False, False, True, False, True, False]
    if target == "generated":
        adapter.max_new_tokens = 6
    batch = adapter.encode_texts(TEXTS, TARGETS if target == "given" else None)
    assert all(e.target_ids[0] == config.decoder_start_token_id for e in batch)
    if target == "generated":
        assert all(2 <= len(e.target_ids) <= 7 for e in batch)
    captured = adapter.capture(batch)
    ref_model = model_cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    model = info.to_dict()
    worst = 0.0
    for i, e in enumerate(batch):
        with torch.inference_mode():
            out = ref_model(input_ids=torch.tensor([e.token_ids]), decoder_input_ids=torch.tensor([e.target_ids]),
                            output_attentions=True)
        ref = list(out.encoder_attentions)
        for d, c in zip(out.decoder_attentions, out.cross_attentions):
            ref += [d, c]
        for layer, site_kind in enumerate(kinds):
            q, k = captured[layer][0][i], captured[layer][1][i]
            nq = len(e.target_ids) if site_kind != "encoder" else len(e.token_ids)
            nk = len(e.token_ids) if site_kind != "decoder" else len(e.target_ids)
            assert q.shape[1] == nq and k.shape[1] == nk
            for h in range(info.n_heads):
                a = attention_from_qk(q[h], k[h], **layer_semantics(model, layer, h))
                diff = float(np.abs(a - ref[layer][0, h].double().numpy()).max())
                assert diff < TOL, f"{kind}: layer {layer} ({site_kind}) head {h} input {i} differs by {diff:.2e}"
                worst = max(worst, diff)
    biases = [s.get("bias") for s in info.attention]
    if kind in ("t5", "mt5", "umt5"):
        # self-attention layers add a bias table (shared per stack, or one per layer for UMT5), cross none
        assert [b is not None for b in biases] == [k != "cross" for k in kinds]
        assert len(set(b for b in biases if b)) == (4 if kind == "umt5" else 2)
        assert max(len(e.token_ids) for e in batch) > 12 + 1         # offsets beyond max_distance occur
        # the bias matters: without it the recompute is wrong
        e = max(range(len(batch)), key=lambda j: len(batch[j].token_ids))
        sem = {key: v for key, v in layer_semantics(model, 0, 0).items() if key != "bias"}
        with torch.inference_mode():
            own = ref_model(input_ids=torch.tensor([batch[e].token_ids]),
                            decoder_input_ids=torch.tensor([batch[e].target_ids]), output_attentions=True)
        wrong = attention_from_qk(captured[0][0][e][0], captured[0][1][e][0], **sem)
        assert np.abs(wrong - own.encoder_attentions[0][0, 0].double().numpy()).max() > 1e-3
    else:
        assert biases == [None] * len(kinds)
    print(f"\n[any model] {kind} ({target} target): max |Δ| = {worst:.2e}")


@pytest.mark.parametrize("arch,target", [("bart", "column"), ("bart", "generated"), ("t5", "column")])
def test_seq2seq_cli_run(tmp_path, arch, target):
    """BART through the CLI: source (+ target column) from a CSV; per layer the kind; encoder heads
    index the source token table, decoder heads the target table, cross heads queries = target
    tokens and keys = source tokens; stored q/k reproduce the model's own attention; the joint
    embedding of a cross head is its decoder queries then its encoder keys."""
    import csv

    from precompute.cli import main
    from precompute.store import Store

    model_cls, config = seq2seq_specs()[arch]
    folder = save_tiny(model_cls, config, tmp_path / "model")
    corpus = tmp_path / "pairs.csv"
    with open(corpus, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "translation"])
        w.writerows(zip(TEXTS, TARGETS))
    cache = tmp_path / "store"
    extra = ["--target-column", "translation"] if target == "column" else []
    assert main(["run", "--model", folder, "--corpus", str(corpus), "--text-column", "source", *extra,
                 "--cache", str(cache), "--projections", "pca", "--dims", "2", "--variants", "translated",
                 "--quiet", "--workers", "1"]) == 0
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    m = store.manifest(run_id)
    kinds = [a["kind"] for a in m["model"]["attention"]]
    assert kinds == ["encoder", "encoder", "decoder", "cross", "decoder", "cross"]
    assert m["corpus"]["targets"] == ("given" if target == "column" else "generated")
    src, tgt = store.tokens(run_id), store.target_tokens(run_id)
    assert len(src["text"]) == m["corpus"]["n_tokens"] and len(tgt["text"]) == m["corpus"]["n_target_tokens"]
    adapter = load_model(folder)
    enc = adapter.encode_texts(TEXTS, TARGETS if target == "column" else None)
    assert [list(t) for t in [tgt["token_id"][tgt["input_id"] == i] for i in range(3)]] == [e.target_ids for e in enc]
    own = adapter.attentions(enc)
    rows = {"src": src["input_id"], "tgt": tgt["input_id"]}
    sides = {"encoder": ("src", "src"), "decoder": ("tgt", "tgt"), "cross": ("tgt", "src")}
    for layer, kind in enumerate(kinds):
        qs, ks = sides[kind]
        for h in m["heads"]:
            sem = layer_semantics(m["model"], layer, h)
            q, k = store.qk(run_id, layer, h)
            assert len(q) == len(rows[qs]) and len(k) == len(rows[ks])
            for i in range(3):
                a = attention_from_qk(q[rows[qs] == i], k[rows[ks] == i], **sem)
                np.testing.assert_allclose(a, own[layer][i][h], atol=TOL)
            coords = store.coords(run_id, layer, h, "translated", "pca", 2)
            assert coords.shape == (len(q) + len(k), 2)
            assert np.isfinite(store.metrics(run_id, layer, h)["spearman/translated"])


# ---------------------------------------------------------------------------- the one recompute
def test_layer_semantics_defaults_for_old_manifests():
    old = {"scale": 0.125, "causal": True}                 # a run made before per-layer semantics
    assert layer_semantics(old, 3) == {"causal": True, "scale": 0.125, "window": None, "softcap": None}
    new = {"scale": 0.25, "causal": False,
           "attention": [{"kind": "self", "causal": True, "window": 2, "softcap": 5.0}]}
    assert layer_semantics(new, 0) == {"causal": True, "scale": 0.25, "window": 2, "softcap": 5.0}


def test_window_and_softcap_by_hand_and_everywhere_the_same():
    """attention_from_qk's window/softcap against a by-hand softmax; the neuron breakdown, the
    rollout layer means and the figures' wrapper give the same numbers."""
    from analysis.neuron import breakdown
    from analysis.rollout import layer_means
    from figures.attention import aggregate_by_position, attention

    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(9, 4)) * 2, rng.normal(size=(9, 4)) * 2
    sem = {"causal": True, "scale": 0.5, "window": 2, "softcap": 3.0}
    a = attention_from_qk(q, k, **sem)
    for i in range(9):
        s = 3.0 * np.tanh(0.5 * (q[i] @ k.T) / 3.0)
        ok = (np.arange(9) <= i) & (np.abs(np.arange(9) - i) <= 2)
        e = np.where(ok, np.exp(s - s[ok].max()), 0.0)
        np.testing.assert_allclose(a[i], e / e.sum(), atol=1e-12)
    bidir = attention_from_qk(q, k, causal=False, scale=0.5, window=1)
    assert np.all(bidir[np.abs(np.subtract.outer(np.arange(9), np.arange(9))) > 1] == 0) and bidir[0, 1] > 0
    np.testing.assert_allclose(attention(q, k, **sem), a, atol=1e-15)
    bd = breakdown(q, k, 6, 2, 0.5, True, window=2, softcap=3.0)
    np.testing.assert_allclose(bd.weights, a[6], atol=1e-12)
    assert bd.masked and bd.weight == 0                    # key 2 is outside query 6's window
    model = {"scale": 0.5, "causal": False, "attention": [sem]}
    means, used, _ = layer_means(lambda l, h: (q, k), [0], [0], {0: np.arange(9)}, 0.5, False, model)
    np.testing.assert_allclose(means[0][0], a, atol=1e-6)
    agg = aggregate_by_position(q, k, [(0, np.arange(9))], 0.5, False, 9, semantics=layer_semantics(model, 0))
    np.testing.assert_allclose(agg, a, atol=1e-12)


def test_relative_position_bias_by_hand_and_everywhere_the_same():
    """A per-head bias over offsets j − i (saturating beyond ±M): attention_from_qk against a by-hand
    softmax; layer_semantics needs the head; the neuron breakdown, the patterns scorer, the figures'
    wrapper, the rollout layer means and the Spearman figures use the same bias."""
    from analysis.neuron import breakdown
    from analysis.patterns import PatternScorer, token_flags
    from analysis.rollout import layer_means
    from figures.attention import attention
    from precompute.metrics import HeadNeeded, relative_bias, spearman_figures

    rng = np.random.default_rng(3)
    M = 3
    table = rng.normal(size=2 * M + 1) * 2
    b = relative_bias(table, 4, 9)
    assert b[0, 8] == table[-1] and b[3, 0] == table[0] and b[2, 2] == table[M] and b[1, 3] == table[M + 2]
    q, k = rng.normal(size=(9, 4)), rng.normal(size=(9, 4))
    a = attention_from_qk(q, k, causal=True, scale=0.5, bias=table)
    for i in range(9):
        s = 0.5 * (q[i] @ k.T) + np.array([table[min(max(j - i, -M), M) + M] for j in range(9)])
        e = np.where(np.arange(9) <= i, np.exp(s - s[: i + 1].max()), 0.0)
        np.testing.assert_allclose(a[i], e / e.sum(), atol=1e-12)
    model = {"scale": 0.5, "causal": True, "attention": [{"kind": "decoder", "causal": True, "bias": "rel0"}],
             "position_bias": {"rel0": {"max_distance": M, "values": [list(table), list(-table)]}}}
    with pytest.raises(HeadNeeded):
        layer_semantics(model, 0)
    sem = layer_semantics(model, 0, 0)
    np.testing.assert_array_equal(sem["bias"], table)
    np.testing.assert_allclose(attention_from_qk(q, k, **layer_semantics(model, 0, 1)),
                               attention_from_qk(q, k, causal=True, scale=0.5, bias=-table), atol=0)
    np.testing.assert_allclose(attention(q, k, **sem), a, atol=1e-15)
    bd = breakdown(q, k, 6, 2, 0.5, True, bias=table)
    np.testing.assert_allclose(bd.weights, a[6], atol=1e-12)
    means, _, _ = layer_means(lambda l, h: (q, k), [0], [0], {0: np.arange(9)}, 0.5, True, model)
    np.testing.assert_allclose(means[0][0], a, atol=1e-6)
    lens = [9, 5]
    flags = [token_flags([f"w{j}" for j in range(n)], np.arange(n)) for n in lens]
    flags[0]["rows"], flags[1]["rows"] = np.arange(9), np.arange(9, 14)
    scorer = PatternScorer(flags, causal=True)
    q2, k2 = np.vstack([q, q[:5]]), np.vstack([k, k[:5]])
    per_input = [a, attention_from_qk(q[:5], k[:5], causal=True, scale=0.5, bias=table)]
    np.testing.assert_allclose(scorer.attention(q2, k2, 0.5, bias=table), scorer.flatten(per_input), atol=1e-12)
    # the Spearman figure ranks against the biased attention: the same data without the bias differs
    idx = np.zeros(9, int)
    pos = np.vstack([q, k])
    with_b = spearman_figures(q, k, idx, True, 0.5, {"x": (pos[:9], pos[9:], "euclidean")}, bias=table)["x"]
    without = spearman_figures(q, k, idx, True, 0.5, {"x": (pos[:9], pos[9:], "euclidean")})["x"]
    assert with_b != without


def test_target_column_errors_are_one_line(tmp_path):
    from precompute.corpus import CorpusError, load_corpus

    txt = tmp_path / "c.txt"
    txt.write_text("hello\n")
    with pytest.raises(CorpusError, match="needs a .csv corpus"):
        load_corpus(str(txt), target_column="t")
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("text,t\nhello,salut\n,x\n")
    c = load_corpus(str(csv_file), target_column="t")
    assert (c.items, c.targets, c.skipped) == (["hello"], ["salut"], 1)
    with pytest.raises(CorpusError, match="no column 'nope'.*--target-column") as exc:
        load_corpus(str(csv_file), target_column="nope")
    assert "\n" not in str(exc.value)


def test_pattern_scorer_uses_the_layer_semantics():
    """The patterns tab's batched attention equals the one recompute, window and softcap included."""
    from analysis.patterns import PatternScorer, token_flags

    rng = np.random.default_rng(1)
    lens = [7, 12, 5]
    flags = [token_flags([f"w{j}" for j in range(n)], np.arange(n)) for n in lens]
    starts = np.cumsum([0] + lens)
    for f, s, n in zip(flags, starts, lens):
        f["rows"] = np.arange(s, s + n)               # the inputs' global token rows
    scorer = PatternScorer(flags, causal=True)
    q, k = rng.normal(size=(sum(lens), 4)) * 2, rng.normal(size=(sum(lens), 4)) * 2
    per_input = [attention_from_qk(q[s:e], k[s:e], causal=True, scale=0.5, window=3, softcap=2.0)
                 for s, e in zip(starts[:-1], starts[1:])]
    np.testing.assert_allclose(scorer.attention(q, k, 0.5, 3, 2.0), scorer.flatten(per_input), atol=1e-12)
    plain = [attention_from_qk(q[s:e], k[s:e], causal=True, scale=0.5) for s, e in zip(starts[:-1], starts[1:])]
    np.testing.assert_allclose(scorer.attention(q, k, 0.5), scorer.flatten(plain), atol=1e-12)
