"""GPT-2 decoders: fused ``attn.c_attn`` Conv1D producing q|k|v, learned absolute positions."""
from __future__ import annotations

import torch

from precompute.models.base import ModelInfo, folder_identity, split_heads, store_output
from precompute.models.hf import HFTextAdapter, folder_display_name, load_hf_model, load_tokenizer, text_max_length

FAMILY = "gpt2"
MODEL_TYPES = ("gpt2",)


class GPT2Adapter(HFTextAdapter):
    """Hooks the fused c_attn output and splits it into q and k (bias included).

    GPT-2 may scale layer l's scores by an extra 1/(l+1) (``scale_attn_by_inverse_layer_idx``);
    that extra factor is folded into the queries so that softmax(q·kᵀ·info.scale) stays exact.
    """

    forward_kwargs = {"use_cache": False}

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, tokenizer, info, device)
        self.blocks = list(self.model.base_model.h)
        self.vo_modules = [(blk.attn.c_attn, blk.attn.c_proj) for blk in self.blocks]

    def _values(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        attn = self.blocks[layer].attn
        return split_heads(output.split(attn.split_size, dim=2)[2], self.info.head_dim)

    def _qk_hooks(self, layers: list[int], store: dict) -> list[tuple]:
        return [(self.blocks[l].attn.c_attn, "forward", store_output(store, l)) for l in layers]

    def _qk(self, layer: int, store: dict) -> tuple[torch.Tensor, torch.Tensor]:
        attn = self.blocks[layer].attn
        q, k, _ = store[layer].split(attn.split_size, dim=2)
        q = split_heads(q, self.info.head_dim) * (attn.scaling / self.info.scale)
        return q, split_heads(k, self.info.head_dim)


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> GPT2Adapter:
    """Load a GPT2Model / GPT2LMHeadModel folder."""
    from transformers import AutoModelForCausalLM

    model = load_hf_model(folder, AutoModelForCausalLM)
    tokenizer = load_tokenizer(folder)
    n_heads = config.num_attention_heads
    head_dim = config.hidden_size // n_heads
    info = ModelInfo(
        name=name or folder_display_name(folder, config),
        family=FAMILY, modality="text", n_layers=config.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=n_heads, head_dim=head_dim, causal=True,
        scale=head_dim ** -0.5 if config.scale_attn_weights else 1.0,
        max_length=text_max_length(tokenizer, config),
        identity=identity or folder_identity(folder),
        special_tokens=list(tokenizer.all_special_tokens))
    return GPT2Adapter(model, tokenizer, info, device)
