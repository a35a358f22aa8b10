"""Shared plumbing for transformers models: offline eager loading, tokenising, text batching."""
from __future__ import annotations

import torch

from precompute.models.base import Encoded, ModelAdapter, ModelInfo, ModelLoadError, first_line

# Tokenizers report a sentinel (~1e30) when they have no limit of their own.
_NO_LIMIT = 1_000_000


def load_hf_model(folder: str, auto_class) -> torch.nn.Module:
    """Load weights from a local folder: eager attention (so attentions are returned), fp32, no remote code."""
    try:
        return auto_class.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32,
                                          local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load the weights in {folder}: {first_line(exc)} "
                             f"(the folder needs config.json and model.safetensors or pytorch_model.bin)") from exc


def folder_display_name(folder: str, config) -> str:
    """Default display name of a model folder: its last path part and the model type."""
    return f"{folder.rstrip('/').split('/')[-1]} ({config.model_type})"


def load_tokenizer(folder: str):
    """The folder's own tokenizer, offline."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"no usable tokenizer in {folder}: {first_line(exc)} "
                             "(add tokenizer.json or the tokenizer files saved by save_pretrained)") from exc


def text_max_length(tokenizer, config, offset: int = 0) -> int:
    """Max tokens per input: the smaller of the tokenizer's limit and the position table size minus ``offset``."""
    limits = [config.max_position_embeddings - offset] if getattr(config, "max_position_embeddings", None) else []
    if tokenizer.model_max_length and tokenizer.model_max_length < _NO_LIMIT:
        limits.append(tokenizer.model_max_length)
    return min(limits) if limits else 512


def display_tokens(tokenizer, ids: list[int]) -> list[str]:
    """One readable string per token (byte-level BPE 'Ġthe' → ' the'; raw piece if it decodes to nothing)."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    out = []
    for piece in pieces:
        text = tokenizer.convert_tokens_to_string([piece])
        out.append(text if text and "\ufffd" not in text else piece)
    return out


class HFTextAdapter(ModelAdapter):
    """Text model from transformers: tokenises, right-pads (positions stay 0..len-1), masks padding."""

    forward_kwargs: dict = {}

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, info, device)
        self.tokenizer = tokenizer

    def encode_texts(self, texts: list) -> list[Encoded]:
        """Each item is a text, or a sentence pair (a, b) encoded as the tokenizer encodes a pair
        (BERT: [CLS] a [SEP] b [SEP], token_type_ids 0…0 1…1, passed to the model)."""
        out = []
        for index, text in enumerate(texts):
            pair = isinstance(text, (list, tuple))
            if pair and (len(text) != 2 or not all(isinstance(t, str) for t in text)):
                raise ValueError(f"input {index} ({text!r}) is neither a text nor a sentence pair (a, b)")
            args = tuple(text) if pair else (text,)
            full = self.tokenizer(*args, add_special_tokens=True)["input_ids"]
            if not full:
                raise ValueError(f"input {index} ({text!r}) has no tokens: drop empty texts")
            enc = self.tokenizer(*args, add_special_tokens=True, truncation=True, max_length=self.info.max_length)
            ids = enc["input_ids"]
            types = enc.get("token_type_ids") if pair and "token_type_ids" in self.tokenizer.model_input_names else None
            out.append(Encoded(tokens=display_tokens(self.tokenizer, ids), token_ids=list(ids),
                               truncated=max(0, len(full) - len(ids)),
                               token_type_ids=list(types) if types and any(types) else None))
        return out

    def _inputs(self, batch: list[Encoded]) -> tuple[dict, list[int]]:
        lengths = [len(e.token_ids) for e in batch]
        if not lengths or min(lengths) == 0:
            raise ValueError("every input needs at least one token")
        width = max(lengths)
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else pad
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            ids[i, :lengths[i]] = torch.tensor(e.token_ids, dtype=torch.long)
            mask[i, :lengths[i]] = 1
        kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if any(e.token_type_ids for e in batch):  # sentence pairs: the segment ids the tokenizer gave
            types = torch.zeros((len(batch), width), dtype=torch.long)
            for i, e in enumerate(batch):
                if e.token_type_ids:
                    types[i, :lengths[i]] = torch.tensor(e.token_type_ids, dtype=torch.long)
            kwargs["token_type_ids"] = types.to(self.device)
        return kwargs, lengths

    def _forward(self, kwargs: dict, want_attentions: bool):
        return self.model.base_model(**kwargs, **self.forward_kwargs, output_attentions=want_attentions)

    def _attention_maps(self, kwargs: dict) -> list[torch.Tensor]:
        return list(self._forward(kwargs, want_attentions=True).attentions)
