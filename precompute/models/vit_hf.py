"""Vision transformers from transformers — any registry model reading ``pixel_values`` into
prefix tokens + a square patch grid: ViT, DeiT, DINOv2 (with or without registers), the vision
towers of CLIP and SigLIP, and the like.

Input is a fixed square image (DINOv2: 224 px → CLS + 16×16 patches of 14 px, resampling its
position embeddings itself; others: the size the checkpoint was trained at). The number of prefix
tokens (CLS, distillation, registers) comes from the probe: sequence length − patch grid.
"""
from __future__ import annotations

import json
from pathlib import Path

from precompute.models.base import ModelInfo, ModelLoadError, folder_identity
from precompute.models.hf import (RegistryCaptureMixin, check_registry, folder_display_name, load_hf_model,
                                  probe_info, semantics_info)
from precompute.models.imaging import IMAGENET_MEAN, IMAGENET_STD, ImageAdapter

FAMILY = "vit-hf"
DINOV2_SIZE = 224
# full two-tower checkpoints: their vision tower is loaded
TOWERS = {"clip": "CLIPVisionModel", "siglip": "SiglipVisionModel", "siglip2": "Siglip2VisionModel"}


def is_vision(config) -> bool:
    """A model that reads images into patches (its own config, or a two-tower model's vision tower)."""
    if config.model_type in TOWERS:
        return True
    return bool(getattr(config, "patch_size", None) and getattr(config, "image_size", None)
                and getattr(config, "num_channels", 3))


def prefix_tokens(config, n_prefix: int) -> list[str]:
    """Labels of the tokens before the patch grid."""
    if config.model_type == "deit" and n_prefix == 2:
        return ["CLS", "DIST"]
    if n_prefix == 0:
        return []
    return ["CLS"] + [f"reg {i}" for i in range(1, n_prefix)]


def normalisation(folder: str) -> tuple[tuple, tuple]:
    """(mean, std) from the folder's preprocessor_config.json, else ImageNet's."""
    path = Path(folder) / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
        if cfg.get("image_mean") and cfg.get("image_std"):
            return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    return IMAGENET_MEAN, IMAGENET_STD


class ViTHFAdapter(RegistryCaptureMixin, ImageAdapter):
    """Captures through the registered attention function of every encoder layer."""

    def _forward(self, kwargs: dict, want_attentions: bool):
        return self.model(**kwargs, output_attentions=want_attentions)

    def _attention_maps(self, kwargs: dict) -> list:
        return list(self._forward(kwargs, want_attentions=True).attentions)


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> ViTHFAdapter:
    """Load a vision-transformer folder (or a two-tower folder's vision tower)."""
    import torch
    import transformers
    from transformers import AutoModel


    auto = getattr(transformers, TOWERS[config.model_type]) if config.model_type in TOWERS else AutoModel
    model = load_hf_model(folder, auto)
    check_registry(model, folder)
    vconfig = model.config
    size = DINOV2_SIZE if vconfig.model_type.startswith("dinov2") else vconfig.image_size
    grid = (size // vconfig.patch_size,) * 2
    mean, std = normalisation(folder)
    info = ModelInfo(name=name or folder_display_name(folder, config), family=vconfig.model_type, modality="image",
                     n_layers=0, n_heads=0, n_kv_heads=0, head_dim=0, causal=False, scale=1.0, max_length=0,
                     identity=identity or folder_identity(folder))
    adapter = ViTHFAdapter(model, info, image_size=size, grid=grid, prefix=[], mean=mean, std=std, device=device)
    seen = {}

    def forward():
        pixels = torch.zeros((1, 3, size, size), dtype=torch.float32, device=adapter.device)
        seen["out"] = adapter._forward({"pixel_values": pixels}, want_attentions=False)

    adapter.sites = probe_info(adapter, forward, False, folder)
    n_tokens = seen["out"].last_hidden_state.shape[1]
    n_prefix = n_tokens - grid[0] * grid[1]
    if n_prefix < 0:
        raise ModelLoadError(f"unsupported model in {folder}: {n_tokens} tokens for a {grid[0]}×{grid[1]} patch "
                             "grid (pooled or merged patches are not a patch grid)")
    adapter.prefix = prefix_tokens(vconfig, n_prefix)
    for key, value in semantics_info(adapter.sites).items():
        setattr(info, key, value)
    info.max_length = n_tokens
    info.special_tokens = list(adapter.prefix)
    return adapter
