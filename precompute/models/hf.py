"""transformers models, every architecture that routes attention through the registry.

Loading is offline, float32, with ``attn_implementation="atlas_capture"`` (precompute.models.capture):
the model runs its own eager attention, and q/k/values/ablation all go through that one function.
A probe forward pass at load time finds the attention modules (one stored layer each, in call order),
their heads and their semantics; nothing here is specific to an architecture. What stays per
modality is tokenising (this module) or image preprocessing (vit_hf.py) and the token labels.
"""
from __future__ import annotations

import contextlib
import inspect

import numpy as np
import torch

from precompute.models import alibi
from precompute.models import capture as cap
from precompute.models.base import Encoded, ModelAdapter, ModelInfo, ModelLoadError, first_line

# Tokenizers report a sentinel (~1e30) when they have no limit of their own.
_NO_LIMIT = 1_000_000

# Architectures whose attention does not go through transformers' attention registry (or adds a
# bias the recompute does not take), with the reason given to the user. Anything else that fails
# the probe is refused with the probe's own one-line reason.
REFUSED = {
    "gptj": "GPT-J computes its attention itself, outside transformers' attention registry",
    "falcon": "Falcon computes its attention itself (rotary or ALiBi), outside transformers' attention registry",
    "deberta-v2": "DeBERTa-v2 uses disentangled relative-position attention (content-to-position terms), "
                  "not softmax(q·kᵀ)",
    "deberta": "DeBERTa uses disentangled relative-position attention (content-to-position terms), not softmax(q·kᵀ)",
}


def load_hf_model(folder: str, auto_class) -> torch.nn.Module:
    """Load weights from a local folder with the capturing attention, fp32, no remote code."""
    cap.register()
    try:
        return auto_class.from_pretrained(folder, attn_implementation=cap.NAME, dtype=torch.float32,
                                          local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load the weights in {folder}: {first_line(exc)} "
                             f"(the folder needs config.json and model.safetensors or pytorch_model.bin)") from exc


def check_registry(model, folder: str) -> None:
    """Refuse, in one line, a model whose attention modules bypass the registry."""
    model_type = model.config.model_type
    if model_type in REFUSED:
        raise ModelLoadError(f"unsupported architecture {model_type!r} in {folder}: {REFUSED[model_type]}")
    if model_type in alibi.FAMILIES:
        if not alibi.install(model):
            raise ModelLoadError(f"unsupported model in {folder}: no BLOOM attention module found")
        return
    if not type(model)._can_set_attn_implementation():
        raise ModelLoadError(f"unsupported architecture {model_type!r} in {folder}: its attention does not go "
                             "through transformers' attention registry, so q/k cannot be captured exactly")


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
    """Max tokens per input: the smaller of the tokenizer's limit and the position table size minus
    ``offset``. Sliding windows do not limit it: the recompute applies the window."""
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


def _unpad(x: torch.Tensor, lengths: list[int]) -> list[np.ndarray]:
    """(B, H, S, D) → per input float32 (H, len_i, D)."""
    x = x.float().cpu()
    return [np.ascontiguousarray(x[i, :, :n].numpy()) for i, n in enumerate(lengths)]


class RegistryCaptureMixin:
    """capture / capture_values / ablate through the registered attention function."""

    sites: list[cap.Site]

    def _lengths(self, kwargs: dict, lengths: list[int]) -> dict[str, list[int]]:
        return {"src": lengths, "tgt": lengths}

    def _run(self, batch, recorder_kwargs: dict) -> tuple[cap.Capture, dict, list[int]]:
        kwargs, lengths = self._inputs(batch)
        rec = cap.Capture(self.sites, self.info.scale, self._lengths(kwargs, lengths), checked=self._checked,
                          **recorder_kwargs)
        try:
            with torch.inference_mode(), cap.recording(rec):
                self._forward(kwargs, want_attentions=False)
        except cap.CaptureRefused as exc:
            raise ModelLoadError(f"{self.info.name}: {exc}") from None
        return rec, kwargs, lengths

    def capture(self, batch: list[Encoded], layers: list[int] | None = None):
        layers = self._check_layers(layers)
        rec, kwargs, lengths = self._run(batch, {"qk_layers": layers})
        roles = self._lengths(kwargs, lengths)
        out = {}
        for layer in layers:
            q, k = rec.qk[layer]
            site = self.sites[layer]
            out[layer] = (_unpad(q, roles[site.role_q]), _unpad(k, roles[site.role_k]))
        return out

    def capture_values(self, batch: list[Encoded], layers: list[int] | None = None):
        layers = self._check_layers(layers)
        rec, kwargs, lengths = self._run(batch, {"value_layers": layers})
        roles = self._lengths(kwargs, lengths)
        return {l: _unpad(rec.values[l], roles[self.sites[l].role_k]) for l in layers}

    @contextlib.contextmanager
    def ablate(self, heads, mode: str = "zero", patterns: dict | None = None):
        """See ModelAdapter.ablate: the query head's slice of the attention output (before the output
        projection) is zeroed or replaced by ``P @ v`` with the kv head serving it."""
        by_layer = self._ablation_plan(heads, mode, patterns)
        if not by_layer:
            yield
            return
        lengths = {"src": [], "tgt": []}
        rec = cap.Capture(self.sites, self.info.scale, lengths,
                          ablate={l: (mode, hs, patterns) for l, hs in by_layer.items()})
        with cap.recording(rec):
            yield

    @property
    def _checked(self) -> set:
        if not hasattr(self, "_checked_layers"):
            self._checked_layers = set()
        return self._checked_layers


def probe_info(adapter, run_forward, is_encoder_decoder: bool, where: str) -> list[cap.Site]:
    """Sites of the model (see capture.probe_sites); refusals become one-line ModelLoadErrors."""
    try:
        sites = cap.probe_sites(run_forward, is_encoder_decoder)
    except cap.CaptureRefused as exc:
        raise ModelLoadError(f"unsupported model in {where}: {exc}") from None
    expected = getattr(adapter.model.config, "num_hidden_layers", None)
    if not is_encoder_decoder and expected and len(sites) != expected:
        raise ModelLoadError(f"unsupported model in {where}: only {len(sites)} of its {expected} layers' attention "
                             "goes through transformers' attention registry")
    return sites


def semantics_info(sites: list[cap.Site]) -> dict:
    """ModelInfo fields shared by every registry model: heads, scale, causal, per-layer semantics."""
    s0 = sites[0]
    rep = s0.n_heads // s0.n_kv_heads
    causal_self = [s.semantics.causal for s in sites if s.semantics.kind in ("self", "decoder")]
    return dict(n_layers=len(sites), n_heads=s0.n_heads, n_kv_heads=s0.n_kv_heads, head_dim=s0.head_dim,
                causal=bool(causal_self) and all(causal_self), scale=s0.scaling,
                attention=[s.semantics.to_dict() for s in sites],
                kv_heads=[h // rep for h in range(s0.n_heads)], position_bias=cap.bias_info(sites))


# ---------------------------------------------------------------------------- text
_MLM_ARCHITECTURES = ("ForMaskedLM", "ForPreTraining")
_CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")
PROBE_TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello"]


class HFTextAdapter(RegistryCaptureMixin, ModelAdapter):
    """Text model from transformers: tokenises, right-pads (positions stay 0..len-1), masks padding."""

    forward_kwargs: dict = {}
    folder: str | None = None

    def __init__(self, model, tokenizer, info: ModelInfo, device: str = "cpu"):
        super().__init__(model, info, device)
        self.tokenizer = tokenizer
        self._mlm = None
        params = inspect.signature(self.model.base_model.forward).parameters
        self.forward_kwargs = {"use_cache": False} if "use_cache" in params else {}

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

    def masked_lm_head(self):
        """The folder's masked-LM head as a callable (B, S, hidden) → (B, S, vocab) logits, or None
        when the checkpoint has none (e.g. sentence encoders saved as plain ``BertModel``). Only a
        head whose every weight is in the checkpoint counts (a randomly initialised one does not)."""
        if self._mlm is not None:
            return self._mlm or None
        self._mlm = False
        config = self.model.config
        if self.info.causal or not self.folder or not any(
                a.endswith(_MLM_ARCHITECTURES) for a in (config.architectures or [])):
            return None
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
        else:
            head = next((getattr(mlm, n) for n in ("cls", "lm_head", "generator_lm_head", "head")
                         if hasattr(mlm, n)), None)
            if head is None:
                return None
        # the head's decoder is tied to the checkpoint's word embeddings, so the whole masked-LM
        # model stays loaded (its encoder is not run: the adapter's own encoder is)
        self._mlm_model = mlm
        self._mlm = head
        return head


def _position_offset(model) -> int:
    """RoBERTa-style position tables reserve padding_idx + 1 rows before the first position."""
    emb = getattr(model.base_model, "embeddings", None)
    pad = getattr(emb, "padding_idx", None)
    return pad + 1 if pad is not None and hasattr(emb, "position_embeddings") else 0


def load_text(folder: str, config, device: str = "cpu", name: str | None = None,
              identity: str | None = None) -> HFTextAdapter:
    """Load any registry text model (encoder or decoder) from a local folder."""
    from transformers import AutoModel, AutoModelForCausalLM

    from precompute.models.base import folder_identity

    if config.model_type in REFUSED:
        raise ModelLoadError(f"unsupported architecture {config.model_type!r} in {folder}: {REFUSED[config.model_type]}")
    if getattr(config, "is_encoder_decoder", False):  # load_model sends these to seq2seq.py
        raise ModelLoadError(f"{folder} is an encoder–decoder model: load it with precompute.models.load_model")
    causal_lm = any(a.endswith(_CAUSAL_ARCHITECTURES) for a in (config.architectures or []))
    model = load_hf_model(folder, AutoModelForCausalLM if causal_lm else AutoModel)
    check_registry(model, folder)
    tokenizer = load_tokenizer(folder)
    info = ModelInfo(name=name or folder_display_name(folder, config), family=config.model_type, modality="text",
                     n_layers=0, n_heads=0, n_kv_heads=0, head_dim=0, causal=False, scale=1.0,
                     max_length=text_max_length(tokenizer, config, _position_offset(model)),
                     identity=identity or folder_identity(folder),
                     special_tokens=list(tokenizer.all_special_tokens))
    adapter = HFTextAdapter(model, tokenizer, info, device)
    adapter.folder = folder
    probe = adapter.encode_texts(PROBE_TEXTS)
    kwargs, _ = adapter._inputs(probe)
    adapter.sites = probe_info(adapter, lambda: adapter._forward(kwargs, want_attentions=False), False, folder)
    for key, value in semantics_info(adapter.sites).items():
        setattr(info, key, value)
    return adapter
