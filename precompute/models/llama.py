"""Llama-style decoders (Llama, Mistral, Qwen2, Qwen3): RoPE, grouped-query attention.

q_proj/k_proj outputs are taken before RoPE; the rotation is then applied with the cos/sin the
model itself passed to the attention layer (produced by ``model.model.rotary_emb`` from the
position ids the model used) and the model's own ``apply_rotary_pos_emb``. Qwen3's per-head
q_norm/k_norm (applied before RoPE) are hooked instead of the projections when present.
"""
from __future__ import annotations

import sys

import torch

from precompute.models.base import ModelInfo, folder_identity, split_heads, store_output
from precompute.models.hf import HFTextAdapter, folder_display_name, load_hf_model, load_tokenizer, text_max_length

FAMILY = "llama"
MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def _store_rotary(store: dict, layer: int):
    """Pre-hook keeping the (cos, sin) the decoder layer hands to its attention."""
    def hook(_module, _args, kwargs):
        if kwargs.get("position_embeddings") is None:
            raise RuntimeError("attention layer was called without position_embeddings: unsupported variant")
        store[(layer, "rope")] = kwargs["position_embeddings"]
    return hook


class LlamaAdapter(HFTextAdapter):
    """Captures post-RoPE queries and keys, kv heads expanded to the query heads they serve."""

    forward_kwargs = {"use_cache": False}

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, tokenizer, info, device)
        self.attns = [layer.self_attn for layer in self.model.base_model.layers]
        self.vo_modules = [(attn.v_proj, attn.o_proj) for attn in self.attns]

    def _qk_hooks(self, layers: list[int], store: dict) -> list[tuple]:
        regs = []
        for l in layers:
            attn = self.attns[l]
            q_mod, k_mod = (attn.q_norm, attn.k_norm) if hasattr(attn, "q_norm") else (attn.q_proj, attn.k_proj)
            regs += [(q_mod, "forward", store_output(store, (l, "q"))),
                     (k_mod, "forward", store_output(store, (l, "k"))),
                     (attn, "pre_kwargs", _store_rotary(store, l))]
        return regs

    def _qk(self, layer: int, store: dict) -> tuple[torch.Tensor, torch.Tensor]:
        attn, d = self.attns[layer], self.info.head_dim
        q = split_heads(store[(layer, "q")].flatten(2), d)
        k = split_heads(store[(layer, "k")].flatten(2), d)
        cos, sin = store[(layer, "rope")]
        q, k = sys.modules[type(attn).__module__].apply_rotary_pos_emb(q, k, cos, sin)
        k = k.repeat_interleave(self.info.n_heads // self.info.n_kv_heads, dim=1)
        return q * (attn.scaling / self.info.scale), k


def max_length(tokenizer, config) -> int:
    """Token limit; capped at the sliding window so that the mask really is plain causal."""
    limit = text_max_length(tokenizer, config)
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True):
        limit = min(limit, window)
    return limit


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> LlamaAdapter:
    """Load a Llama/Mistral/Qwen2/Qwen3 folder."""
    from transformers import AutoModelForCausalLM

    model = load_hf_model(folder, AutoModelForCausalLM)
    tokenizer = load_tokenizer(folder)
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    info = ModelInfo(
        name=name or folder_display_name(folder, config),
        family=FAMILY, modality="text", n_layers=config.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=config.num_key_value_heads or n_heads, head_dim=head_dim, causal=True,
        scale=head_dim ** -0.5, max_length=max_length(tokenizer, config),
        identity=identity or folder_identity(folder),
        special_tokens=list(tokenizer.all_special_tokens))
    return LlamaAdapter(model, tokenizer, info, device)
