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


def vo_modules(model) -> list[tuple]:
    """(value Linear, output-projection Linear) of every layer; the output projection's input is
    the concatenated head outputs."""
    base = model.base_model
    if base.config.model_type == "distilbert":
        return [(blk.attention.v_lin, blk.attention.out_lin) for blk in base.transformer.layer]
    return [(blk.attention.self.value, blk.attention.output.dense) for blk in base.encoder.layer]


# config.architectures of checkpoints saved with a masked-LM head (BERT, RoBERTa, DistilBERT …).
_MLM_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining")


class BertAdapter(SeparateQKMixin, HFTextAdapter):
    """Encoder adapter: hooks the query/key Linear outputs (bias included, no positional rotation)."""

    folder: str | None = None

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, tokenizer, info, device)
        self.qk_modules = qk_modules(self.model)
        self.vo_modules = vo_modules(self.model)
        self._mlm = None

    def masked_lm_head(self):
        """The folder's masked-LM head as a callable (B, S, hidden) → (B, S, vocab) logits, or None
        when the checkpoint has none (e.g. sentence encoders saved as plain ``BertModel``). Only a
        head whose every weight is in the checkpoint counts (a randomly initialised one does not)."""
        if self._mlm is not None:
            return self._mlm or None
        self._mlm = False
        config = self.model.config
        if not self.folder or not any(a.endswith(_MLM_ARCHITECTURES) for a in (config.architectures or [])):
            return None
        import torch
        from transformers import AutoModelForMaskedLM

        try:
            mlm, loading = AutoModelForMaskedLM.from_pretrained(
                self.folder, attn_implementation="eager", dtype=torch.float32, local_files_only=True,
                trust_remote_code=False, output_loading_info=True)
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if loading.get("missing_keys"):
            return None
        mlm = mlm.to(self.device).eval()
        if config.model_type == "distilbert":
            def head(hidden):
                x = mlm.activation(mlm.vocab_transform(hidden))
                return mlm.vocab_projector(mlm.vocab_layer_norm(x))
        elif hasattr(mlm, "cls"):
            head = mlm.cls
        elif hasattr(mlm, "lm_head"):
            head = mlm.lm_head
        else:
            return None
        # the head's decoder is tied to the checkpoint's word embeddings, so the whole masked-LM
        # model stays loaded (its encoder is not run: the adapter's own, hooked encoder is)
        self._mlm_model = mlm
        self._mlm = head
        return head


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
    adapter = BertAdapter(model, tokenizer, info, device)
    adapter.folder = folder
    return adapter
