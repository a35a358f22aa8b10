"""timm vision transformers (``VisionTransformer`` with fused ``blocks[i].attn.qkv``).

Spec ``timm:<folder or file>``: a folder saved by timm (config.json with "architecture" plus
model.safetensors / pytorch_model.bin), or a weight file whose folder holds such a config.json or
whose name is a timm architecture (``vit_tiny_patch16_224.safetensors``). Queries and keys are
read from ``attn.q_norm`` / ``attn.k_norm`` outputs (identity unless the model uses qk-norm),
i.e. after the qkv bias and split, exactly what the attention multiplies.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from precompute.models.base import ModelInfo, ModelLoadError, first_line, folder_identity, hooks, store_output
from precompute.models.imaging import IMAGENET_MEAN, IMAGENET_STD, ImageAdapter

FAMILY = "vit-timm"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


class TimmViTAdapter(ImageAdapter):
    """Hooks q_norm/k_norm outputs for q/k; reads attention at the attn_drop input (unfused path)."""

    def __init__(self, model, info: ModelInfo, **kwargs):
        super().__init__(model, info, **kwargs)
        self.attns = [blk.attn for blk in self.model.blocks]
        # values come out of the fused qkv; the head outputs enter attn.norm (identity unless the
        # model normalises them) right before attn.proj
        self.vo_modules = [(a.qkv, a.norm) for a in self.attns]

    def _values(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        a = self.attns[layer]
        b, n, _ = output.shape
        return output.reshape(b, n, 3, a.num_heads, a.head_dim)[:, :, 2].transpose(1, 2)

    def _forward(self, kwargs: dict, want_attentions: bool):
        return self.model.forward_features(kwargs["pixel_values"])

    def _qk_hooks(self, layers: list[int], store: dict) -> list[tuple]:
        regs = []
        for l in layers:
            regs += [(self.attns[l].q_norm, "forward", store_output(store, (l, "q"))),
                     (self.attns[l].k_norm, "forward", store_output(store, (l, "k")))]
        return regs

    def _qk(self, layer: int, store: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return store[(layer, "q")], store[(layer, "k")]   # already (B, H, N, D)

    def _attention_maps(self, kwargs: dict) -> list[torch.Tensor]:
        store: dict = {}

        def keep(layer):
            def hook(_module, args):
                store[layer] = args[0].detach()
            return hook

        fused = [a.fused_attn for a in self.attns]
        try:
            for a in self.attns:
                a.fused_attn = False
            with hooks([(a.attn_drop, "pre", keep(l)) for l, a in enumerate(self.attns)]):
                self._forward(kwargs, want_attentions=True)
        finally:
            for a, f in zip(self.attns, fused):
                a.fused_attn = f
        return [store[l] for l in range(len(self.attns))]


def resolve(path: str) -> tuple[str, dict, Path]:
    """(architecture, model kwargs, weight file) for a timm folder or weight file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelLoadError(f"timm checkpoint {path!r} not found: give a folder saved by timm "
                             "(config.json + model.safetensors) or a weight file")
    weights = p
    if p.is_dir():
        found = [p / n for n in WEIGHT_NAMES if (p / n).is_file()]
        if not found:
            raise ModelLoadError(f"no {' or '.join(WEIGHT_NAMES)} in {p}: save the model with timm's save_for_hf")
        weights = found[0]
    cfg_file = weights.parent / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        if "architecture" in cfg:
            return cfg["architecture"], dict(cfg.get("model_args") or {}), weights
    import timm

    if timm.is_model(weights.name.split(".")[0]):
        return weights.name.split(".")[0], {}, weights
    raise ModelLoadError(f"cannot tell the timm architecture of {weights}: put a config.json with "
                         "\"architecture\" next to it or name the file <architecture>.safetensors")


def build(arch: str, model_args: dict, weights: Path) -> torch.nn.Module:
    """Create the architecture without downloading and load the weights strictly."""
    import timm
    from timm.models import load_state_dict

    try:
        state = load_state_dict(str(weights))
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types for a bad file
        raise ModelLoadError(f"cannot read timm weights {weights}: {first_line(exc)}") from exc
    head = state.get("head.weight")
    model_args = {**model_args, "num_classes": 0 if head is None else head.shape[0]}
    try:
        model = timm.create_model(arch, pretrained=False, **model_args)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"weights {weights} do not fit timm model {arch}: {first_line(exc)}") from exc
    if not (hasattr(model, "blocks") and all(hasattr(b.attn, "qkv") and hasattr(b.attn, "q_norm")
                                             for b in model.blocks)):
        raise ModelLoadError(f"timm model {arch} is not a plain VisionTransformer with fused attn.qkv: "
                             "supported timm families are vit_*, deit_*, and *_dinov2 ViTs")
    return model.eval()


def prefix_tokens(model) -> list[str]:
    """Labels of the tokens timm puts before the patch grid: CLS, distillation, registers."""
    prefix = ["CLS"] if getattr(model, "cls_token", None) is not None else []
    prefix += ["DIST"] if getattr(model, "dist_token", None) is not None else []
    prefix += [f"reg {i}" for i in range(1, (getattr(model, "num_reg_tokens", 0) or 0) + 1)]
    if len(prefix) != getattr(model, "num_prefix_tokens", len(prefix)):
        raise ModelLoadError(f"unexpected token layout in timm model {type(model).__name__}: "
                             "supported timm families are vit_*, deit_*, and *_dinov2 ViTs")
    return prefix


def load(path: str, device: str = "cpu") -> TimmViTAdapter:
    """Load ``timm:<path>``."""
    arch, model_args, weights = resolve(path)
    model = build(arch, model_args, weights)
    attn = model.blocks[0].attn
    size = model.patch_embed.img_size
    grid = tuple(model.patch_embed.grid_size)
    prefix = prefix_tokens(model)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    info = ModelInfo(
        name=f"{arch} (timm)", family=FAMILY, modality="image", n_layers=len(model.blocks),
        n_heads=attn.num_heads, n_kv_heads=attn.num_heads, head_dim=attn.head_dim, causal=False,
        scale=float(attn.scale), max_length=len(prefix) + grid[0] * grid[1],
        identity=f"timm:{arch}|{folder_identity(weights.parent)}", special_tokens=prefix)
    return TimmViTAdapter(model, info, image_size=size[0], grid=grid, prefix=prefix,
                          mean=cfg.get("mean", IMAGENET_MEAN), std=cfg.get("std", IMAGENET_STD), device=device)
