"""BERT-style bidirectional encoders: BERT, RoBERTa (XLM-R, CamemBERT) and DistilBERT."""
from __future__ import annotations

from precompute.models.base import ModelInfo, SeparateQKMixin, folder_identity
from precompute.models.hf import HFTextAdapter, folder_display_name, load_hf_model, load_tokenizer, text_max_length

FAMILY = "bert"
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert")
# RoBERTa-style position tables reserve padding_idx + 1 rows before the first position.
_POSITION_OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert")


def qk_modules(model) -> list[tuple]:
    """(query, key) Linear of every layer."""
    base = model.base_model
    if base.config.model_type == "distilbert":
        return [(blk.attention.q_lin, blk.attention.k_lin) for blk in base.transformer.layer]
    return [(blk.attention.self.query, blk.attention.self.key) for blk in base.encoder.layer]


class BertAdapter(SeparateQKMixin, HFTextAdapter):
    """Encoder adapter: hooks the query/key Linear outputs (bias included, no positional rotation)."""

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, tokenizer, info, device)
        self.qk_modules = qk_modules(self.model)


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> BertAdapter:
    """Load a BERT/RoBERTa/DistilBERT folder."""
    from transformers import AutoModel

    model = load_hf_model(folder, AutoModel)
    tokenizer = load_tokenizer(folder)
    n_heads = config.num_attention_heads
    head_dim = config.hidden_size // n_heads
    offset = (config.pad_token_id or 0) + 1 if config.model_type in _POSITION_OFFSET_TYPES else 0
    info = ModelInfo(
        name=name or folder_display_name(folder, config),
        family=FAMILY, modality="text", n_layers=config.num_hidden_layers, n_heads=n_heads,
        n_kv_heads=n_heads, head_dim=head_dim, causal=False, scale=head_dim ** -0.5,
        max_length=text_max_length(tokenizer, config, offset),
        identity=identity or folder_identity(folder),
        special_tokens=list(tokenizer.all_special_tokens))
    return BertAdapter(model, tokenizer, info, device)
