"""Encoder–decoder text models (BART, mBART, Marian, … — any whose attention uses the registry).

Three kinds of heads, one stored layer per attention module in call order: encoder self-attention
(bidirectional, over the source tokens), decoder self-attention (causal, over the target tokens)
and cross-attention (queries from target tokens, keys from source tokens). The target is either
given (a second text column, teacher-forced: the decoder reads its start token then the target's
tokens) or generated greedily by the model (bounded length). ``Encoded.tokens``/``token_ids`` are
the source; ``target_tokens``/``target_ids`` what the decoder read.
"""
from __future__ import annotations

import torch

from precompute.models.base import Encoded, ModelInfo, ModelLoadError, folder_identity
from precompute.models.hf import (HFTextAdapter, check_registry, display_tokens, folder_display_name, load_hf_model,
                                  load_tokenizer, probe_info, semantics_info, text_max_length)

MAX_NEW_TOKENS = 48          # greedy generation bound when no target is given


class Seq2SeqAdapter(HFTextAdapter):
    """Source (and target) text in, q/k of encoder, decoder and cross-attention heads out."""

    max_new_tokens: int = MAX_NEW_TOKENS

    def encode_texts(self, texts: list[str], targets: list[str] | None = None) -> list[Encoded]:
        """Sources (truncated like any text); targets given → teacher forcing, else greedy generation."""
        if targets is not None and len(targets) != len(texts):
            raise ValueError(f"{len(texts)} sources but {len(targets)} targets: give one target per source")
        out = super().encode_texts(texts)
        start = self.model.config.decoder_start_token_id
        if start is None:
            raise ModelLoadError(f"{self.info.name} has no decoder_start_token_id in its config: cannot run its decoder")
        limit = self.info.max_length
        for i, enc in enumerate(out):
            if targets is not None:
                ids = self.tokenizer(text_target=targets[i], add_special_tokens=True)["input_ids"]
                ids = [start] + list(ids)
            else:
                with torch.inference_mode():
                    gen = self.model.generate(input_ids=torch.tensor([enc.token_ids], device=self.device),
                                              attention_mask=torch.ones((1, len(enc.token_ids)), dtype=torch.long,
                                                                        device=self.device),
                                              max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
                ids = [int(t) for t in gen[0]]
                if ids[0] != start:
                    ids = [start] + ids
            enc.target_truncated = max(0, len(ids) - limit)
            enc.target_ids = ids[:limit]
            enc.target_tokens = display_tokens(self.tokenizer, enc.target_ids)
        return out

    def _inputs(self, batch: list[Encoded]) -> tuple[dict, list[int]]:
        kwargs, lengths = super()._inputs(batch)
        tl = [len(e.target_ids) for e in batch]
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), max(tl)), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), max(tl)), dtype=torch.long)
        for i, e in enumerate(batch):
            ids[i, :tl[i]] = torch.tensor(e.target_ids, dtype=torch.long)
            mask[i, :tl[i]] = 1
        kwargs["decoder_input_ids"] = ids.to(self.device)
        kwargs["decoder_attention_mask"] = mask.to(self.device)
        return kwargs, lengths

    def _lengths(self, kwargs: dict, lengths: list[int]) -> dict[str, list[int]]:
        return {"src": lengths, "tgt": [int(n) for n in kwargs["decoder_attention_mask"].sum(1)]}

    def _forward(self, kwargs: dict, want_attentions: bool):
        return self.model(**kwargs, use_cache=False, output_attentions=want_attentions)

    def _attention_maps(self, kwargs: dict) -> list[torch.Tensor]:
        """Site order: encoder layers, then per decoder layer its self- and cross-attention."""
        out = self._forward(kwargs, want_attentions=True)
        maps = list(out.encoder_attentions)
        for d, c in zip(out.decoder_attentions, out.cross_attentions):
            maps += [d, c]
        return maps

    def attentions(self, batch: list[Encoded]) -> dict[int, list]:
        kwargs, lengths = self._inputs(batch)
        roles = self._lengths(kwargs, lengths)
        with torch.inference_mode():
            maps = self._attention_maps(kwargs)
        out = {}
        for layer, a in enumerate(maps):
            site = self.sites[layer]
            out[layer] = [a[i, :, :nq, :nk].float().cpu().numpy()
                          for i, (nq, nk) in enumerate(zip(roles[site.role_q], roles[site.role_k]))]
        return out

    def masked_lm_head(self):
        return None


def load(folder: str, config, device: str = "cpu", name: str | None = None,
         identity: str | None = None) -> Seq2SeqAdapter:
    """Load an encoder–decoder folder (its LM head too: greedy generation needs it)."""
    from transformers import AutoModelForSeq2SeqLM

    model = load_hf_model(folder, AutoModelForSeq2SeqLM)
    check_registry(model, folder)
    tokenizer = load_tokenizer(folder)
    info = ModelInfo(name=name or folder_display_name(folder, config), family=config.model_type, modality="text",
                     n_layers=0, n_heads=0, n_kv_heads=0, head_dim=0, causal=False, scale=1.0,
                     max_length=text_max_length(tokenizer, config), identity=identity or folder_identity(folder),
                     special_tokens=list(tokenizer.all_special_tokens))
    adapter = Seq2SeqAdapter(model, tokenizer, info, device)
    adapter.folder = folder
    src = tokenizer("The quick brown fox jumps over the lazy dog.", add_special_tokens=True)["input_ids"]
    start = model.config.decoder_start_token_id
    if start is None:
        raise ModelLoadError(f"unsupported model in {folder}: no decoder_start_token_id in its config")
    probe = [Encoded(tokens=[], token_ids=list(src), truncated=0), Encoded(tokens=[], token_ids=list(src[:2]), truncated=0)]
    probe[0].target_ids, probe[1].target_ids = [start, src[1]], [start]
    if len(src) <= 2:
        raise ModelLoadError(f"unsupported model in {folder}: its tokenizer makes {len(src)} tokens of a sentence")
    kwargs, _ = adapter._inputs(probe)
    adapter.sites = probe_info(adapter, lambda: adapter._forward(kwargs, want_attentions=False), True, folder)
    kinds = [s.semantics.kind for s in adapter.sites]
    if "cross" not in kinds or "encoder" not in kinds:
        raise ModelLoadError(f"unsupported model in {folder}: found no encoder or no cross-attention ({kinds})")
    for key, value in semantics_info(adapter.sites).items():
        setattr(info, key, value)
    info.causal = False          # the run mixes kinds: each layer's causality is in info.attention
    return adapter
