"""BLOOM: ALiBi attention computed inside its own module, outside transformers' attention registry.

The one small exact adapter the capture path needs for it (no re-implementation of the model):
a forward pre-hook on each ``BloomAttention`` re-reads q, k and v from the module's own fused
projection (``query_key_value`` + ``_reshape``, exactly what its forward multiplies) and hands them
to the active recorder with the module's scaling (``inv_norm_factor``) and its ALiBi slopes; a
forward hook hands the model's own attention probabilities to the recorder's self-check.

ALiBi adds ``slope_h · j`` (key position j) to every score of query i; a softmax row is unchanged by
the constant ``slope_h · i``, so the bias is ``slope_h · (j − i)``: a relative-position bias with no
table, stored as the head's slope (``model.position_bias[name] = {"alibi_slopes": [...]}``,
precompute.metrics.relative_bias). Every batch checks that the ``alibi`` tensor the model built is
``slope_h · position`` on every key that is not padding. Head ablation is refused (the module adds
the output projection and the residual itself).
"""
from __future__ import annotations

import torch

from precompute.models import capture as cap

FAMILIES = ("bloom",)


def _attention_modules(model) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__ == "BloomAttention"]


def slopes_of(module) -> torch.Tensor:
    """The module's ALiBi slopes (H,), float64, from BLOOM's own function."""
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    return _get_alibi_slopes(module.num_heads, torch.device("cpu")).double()


def check_alibi(alibi: torch.Tensor, mask: torch.Tensor | None, slopes: torch.Tensor, where: str) -> None:
    """``alibi`` (B·H, 1, kv) == slope_h · position on every key that is not padding."""
    H = len(slopes)
    a = alibi.double().view(-1, H, alibi.shape[-1])                      # (B, H, kv)
    pos = torch.arange(a.shape[-1], dtype=torch.float64, device=a.device)
    expect = slopes.to(a.device)[None, :, None] * pos[None, None, :]
    if mask is not None and mask.dim() == 4:
        allowed = mask[:, 0] > torch.finfo(mask.dtype).min / 2 if mask.dtype != torch.bool else mask[:, 0]
        valid = allowed.any(dim=1)[:, None, :].expand_as(a)            # keys some query may attend to
    else:
        valid = torch.ones_like(a, dtype=torch.bool)
    if not torch.allclose(a[valid], expect.expand_as(a)[valid], atol=1e-4, rtol=1e-6):
        raise cap.CaptureRefused(f"{where}: its ALiBi bias is not slope × key position (e.g. left padding): "
                                 "not reproduced")


def install(model) -> int:
    """Hook every BloomAttention of ``model``; returns how many were hooked."""
    mods = _attention_modules(model)
    for module in mods:
        module._atlas_slopes = slopes_of(module)
        module.register_forward_pre_hook(_before, with_kwargs=True)
        module.register_forward_hook(_after, with_kwargs=True)
    return len(mods)


def _before(module, args, kwargs):
    recorder = getattr(cap._STATE, "recorder", None)
    if recorder is None:
        return None
    hidden = args[0] if args else kwargs["hidden_states"]
    alibi = kwargs.get("alibi", args[2] if len(args) > 2 else None)
    mask = kwargs.get("attention_mask", args[3] if len(args) > 3 else None)
    if kwargs.get("layer_past") is not None:
        raise cap.CaptureRefused(f"{type(module).__name__}: a cached forward pass (generation) is not captured")
    where = type(module).__name__
    if alibi is None:
        raise cap.CaptureRefused(f"{where}: no ALiBi tensor was passed")
    check_alibi(alibi, mask, module._atlas_slopes, where)
    with torch.no_grad():
        q, k, v = module._reshape(module.query_key_value(hidden))       # (B, H, S, D) each
    named = {"scaling": float(module.inv_norm_factor), "alibi_slopes": module._atlas_slopes,
             "dropout": module.attention_dropout.p}
    if module.beta != 1.0:
        raise cap.CaptureRefused(f"{where}: beta {module.beta} ≠ 1 scales the ALiBi bias: not reproduced")
    recorder.before(module, q, k, v, mask, named)
    return None


def _after(module, args, kwargs, output):
    recorder = getattr(cap._STATE, "recorder", None)
    if recorder is None:
        return None
    out, probs = output
    recorder.after(module, out, probs)
    return None
