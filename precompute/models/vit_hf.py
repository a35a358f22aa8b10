"""Vision transformers from transformers: ViT, DeiT, DINOv2 (with or without registers).

Input is a fixed square image (DINOv2: 224 px → CLS + 16×16 patches of 14 px; ViT/DeiT: the
size the checkpoint was trained at). DINOv2 resamples its position embeddings itself (bicubic,
as transformers' ``Dinov2Embeddings.interpolate_pos_encoding`` does).
"""
from __future__ import annotations

import json
from pathlib import Path

from precompute.models.base import ModelInfo, SeparateQKMixin, folder_identity
from precompute.models.hf import folder_display_name, load_hf_model
from precompute.models.imaging import IMAGENET_MEAN, IMAGENET_STD, ImageAdapter

FAMILY = "vit-hf"
MODEL_TYPES = ("vit", "deit", "dinov2", "dinov2_with_registers")
DINOV2_SIZE = 224


def encoder_layers(model) -> list:
    """The transformer blocks, whichever layout this transformers version uses."""
    base = model.base_model
    encoder = getattr(base, "encoder", base)
    return list(getattr(encoder, "layer", None) or encoder.layers)


def qk_pair(layer) -> tuple:
    """(query, key) Linear of one encoder layer (new q_proj/k_proj names or older query/key)."""
    attn = layer.attention
    attn = getattr(attn, "attention", attn)
    if hasattr(attn, "q_proj"):
        return attn.q_proj, attn.k_proj
    return attn.query, attn.key


def vo_pair(layer) -> tuple:
    """(value Linear, output-projection Linear) of one encoder layer."""
    attn = layer.attention
    inner = getattr(attn, "attention", attn)
    value = inner.v_proj if hasattr(inner, "v_proj") else inner.value
    out = attn.o_proj if hasattr(attn, "o_proj") else attn.output.dense
    return value, out


def prefix_tokens(config) -> list[str]:
    """Labels of the tokens before the patch grid."""
    if config.model_type == "deit":
        return ["CLS", "DIST"]
    n_reg = getattr(config, "num_register_tokens", 0) or 0
    return ["CLS"] + [f"reg {i}" for i in range(1, n_reg + 1)]


def normalisation(folder: str) -> tuple[tuple, tuple]:
    """(mean, std) from the folder's preprocessor_config.json, else ImageNet's."""
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        if cfg.get("image_mean") and cfg.get("image_std"):
            return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


class ViTHFAdapter(SeparateQKMixin, ImageAdapter):
    """Hooks the query/key Linear outputs of every encoder layer."""

    def __init__(self, model, info: ModelInfo, **kwargs):
        super().__init__(model, info, **kwargs)
        self.qk_modules = [qk_pair(layer) for layer in encoder_layers(self.model)]
        self.vo_modules = [vo_pair(layer) for layer in encoder_layers(self.model)]

    def _forward(self, kwargs: dict, want_attentions: bool):
        return self.model(**kwargs, output_attentions=want_attentions)

    def _attention_maps(self, kwargs: dict) -> list:
        return list(self._forward(kwargs, want_attentions=True).attentions)


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> ViTHFAdapter:
    """Load a ViT / DeiT / DINOv2 folder."""
    from transformers import AutoModel

    model = load_hf_model(folder, AutoModel)
    n_heads = config.num_attention_heads
    head_dim = config.hidden_size // n_heads
    size = DINOV2_SIZE if config.model_type.startswith("dinov2") else config.image_size
    prefix = prefix_tokens(config)
    n_tokens = len(prefix) + (size // config.patch_size) ** 2
    mean, std = normalisation(folder)
    info = ModelInfo(
        name=name or folder_display_name(folder, config),
        family=FAMILY, modality="image", n_layers=config.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=n_heads, head_dim=head_dim, causal=False, scale=head_dim ** -0.5,
        max_length=n_tokens, identity=identity or folder_identity(folder), special_tokens=list(prefix))
    grid = (size // config.patch_size,) * 2
    return ViTHFAdapter(model, info, image_size=size, grid=grid, prefix=prefix, mean=mean, std=std, device=device)
