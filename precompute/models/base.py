"""Shared types of the model adapters and the batched capture loop they all use.

An adapter wraps one loaded model. ``capture`` runs ONE batched forward pass with forward
hooks installed on the attention's query/key producers and returns, per layer, each input's
queries and keys exactly as the attention multiplies them (after bias, RoPE and qk-norm, kv
heads expanded to query heads, before the ``scale`` factor), padding removed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

# Nothing here may download: weights come from local folders, the HF cache or pip packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the problem and the fix in one line."""


@dataclass
class ModelInfo:
    """Static description of a loaded model, stored in every run's manifest."""
    name: str
    family: str
    modality: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    causal: bool
    scale: float
    max_length: int
    identity: str
    special_tokens: list[str] = field(default_factory=list)
    # per stored layer: {kind, causal, window, softcap} (precompute.models.capture.AttentionSemantics);
    # empty = every layer is `causal` with no window/softcap (timm, and runs made before this field)
    attention: list[dict] = field(default_factory=list)
    # per query head: the key/value head serving it (grouped-/multi-query attention)
    kv_heads: list[int] = field(default_factory=list)
    # relative-position bias tables named by AttentionSemantics.bias (T5): {name: {max_distance: M,
    # values: one row per head over offsets j − i = −M..M}} (precompute.metrics.relative_bias)
    position_bias: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Encoded:
    """One input after tokenisation (text) or preprocessing (image)."""
    tokens: list[str]
    token_ids: list[int]
    truncated: int
    pixel_values: "torch.Tensor | None" = None
    patch_grid: tuple[int, int] | None = None
    n_prefix: int = 0
    display_image: "np.ndarray | None" = None   # images: uint8 H×W×3 exactly as the model saw it
    token_type_ids: list[int] | None = None   # sentence pairs: segment ids from the tokenizer (else None)
    # encoder–decoder text: what the decoder read (its start token, then the target's tokens)
    target_tokens: list[str] | None = None
    target_ids: list[int] | None = None
    target_truncated: int = 0


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def folder_identity(path: str | os.PathLike) -> str:
    """Resolved folder path + sha256 of config.json + sizes of the weight files."""
    folder = Path(path).resolve()
    cfg = folder / "config.json"
    digest = hashlib.sha256(cfg.read_bytes()).hexdigest()[:16] if cfg.is_file() else "noconfig"
    sizes = ",".join(f"{p.name}={p.stat().st_size}" for p in sorted(folder.iterdir())
                     if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    return f"{folder}|config={digest}|{sizes}"


def split_heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(B, S, H·D) → (B, H, S, D)."""
    b, s, _ = x.shape
    return x.reshape(b, s, -1, head_dim).transpose(1, 2)


@contextlib.contextmanager
def hooks(registrations: list[tuple[torch.nn.Module, str, Callable]]):
    """Install (module, kind, fn) hooks for the duration of the block; kind is
    "forward", "pre" or "pre_kwargs"."""
    handles = []
    try:
        for module, kind, fn in registrations:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn))
            elif kind == "pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:
                handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def store_output(store: dict, key: Any) -> Callable:
    """A forward hook that keeps the module's output under ``store[key]``."""
    def hook(_module, _inputs, output):
        store[key] = output.detach()
    return hook


class ModelAdapter:
    """Base adapter. Families implement ``_inputs``, ``_qk_hooks``, ``_qk`` and ``_attention_maps``."""

    info: ModelInfo

    def __init__(self, model: torch.nn.Module, info: ModelInfo, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.info = info

    # ------------------------------------------------------------------ public API
    def encode_texts(self, texts: list[str]) -> list[Encoded]:
        raise TypeError(f"{self.info.name} reads {self.info.modality}, not text: use encode_images")

    def encode_images(self, images: list) -> list[Encoded]:
        raise TypeError(f"{self.info.name} reads {self.info.modality}, not images: use encode_texts")

    def capture(self, batch: list[Encoded], layers: list[int] | None = None
                ) -> dict[int, tuple[list[np.ndarray], list[np.ndarray]]]:
        """Queries and keys per layer, per input: float32 (n_heads, len_i, head_dim)."""
        layers = self._check_layers(layers)
        kwargs, lengths = self._inputs(batch)
        store: dict = {}
        with torch.inference_mode(), hooks(self._qk_hooks(layers, store)):
            self._forward(kwargs, want_attentions=False)
        out = {}
        for layer in layers:
            q, k = self._qk(layer, store)
            out[layer] = (_unpad(q, lengths), _unpad(k, lengths))
        return out

    def attentions(self, batch: list[Encoded]) -> dict[int, list[np.ndarray]]:
        """The model's own attention probabilities per layer: [(n_heads, len_i, len_i)], padding removed."""
        kwargs, lengths = self._inputs(batch)
        with torch.inference_mode():
            maps = self._attention_maps(kwargs)
        return {layer: [a[i, :, :n, :n].float().cpu().numpy() for i, n in enumerate(lengths)]
                for layer, a in enumerate(maps)}

    def capture_values(self, batch: list[Encoded], layers: list[int] | None = None
                       ) -> dict[int, list[np.ndarray]]:
        """Value vectors per layer, per input: float32 (n_heads, len_i, head_dim), exactly what the
        attention multiplies (after the value bias), kv heads expanded to the query heads they serve."""
        layers = self._check_layers(layers)
        kwargs, lengths = self._inputs(batch)
        store: dict = {}
        regs = [(self.vo_modules[l][0], "forward", store_output(store, l)) for l in layers]
        with torch.inference_mode(), hooks(regs):
            self._forward(kwargs, want_attentions=False)
        rep = self.info.n_heads // self.info.n_kv_heads
        return {l: _unpad(self._values(l, store[l]).repeat_interleave(rep, dim=1), lengths) for l in layers}

    @contextlib.contextmanager
    def ablate(self, heads, mode: str = "zero", patterns: dict | None = None):
        """Ablate attention heads for the forward passes run inside the block.

        ``heads``: iterable of (layer, query head). ``mode="zero"``: the head's output (its slice of
        the concatenated head outputs, before the output projection) is set to 0; for GQA that is
        the query head's slice, the shared kv head is untouched. ``mode="mean"``: the head's output
        becomes ``P @ v`` with ``patterns[(layer, head)]`` a (B, S, S) tensor of attention
        probabilities for the padded batch (rows = queries) replacing the head's own, and ``v`` the
        values of the kv head serving it in this same forward pass. No heads: nothing is hooked."""
        by_layer = self._ablation_plan(heads, mode, patterns)
        d, rep = self.info.head_dim, self.info.n_heads // self.info.n_kv_heads
        values: dict = {}

        def replace(layer: int, hs: list[int]):
            def pre(_module, args):
                x = args[0].clone()
                v = self._values(layer, values.pop(layer)) if mode == "mean" else None
                for h in hs:
                    if mode == "zero":
                        x[..., h * d:(h + 1) * d] = 0
                    else:
                        p = patterns[(layer, h)].to(device=x.device, dtype=x.dtype)
                        x[..., h * d:(h + 1) * d] = p @ v[:, h // rep]
                return (x,) + tuple(args[1:])
            return pre

        regs = []
        for layer, hs in sorted(by_layer.items()):
            v_mod, o_mod = self.vo_modules[layer]
            if mode == "mean":
                regs.append((v_mod, "forward", store_output(values, layer)))
            regs.append((o_mod, "pre", replace(layer, hs)))
        with hooks(regs):
            yield

    def _ablation_plan(self, heads, mode: str, patterns: dict | None) -> dict[int, list[int]]:
        """{layer: [query heads]} to ablate, validated (one-line ValueErrors)."""
        if mode not in ("zero", "mean"):
            raise ValueError(f"unknown ablation mode {mode!r}: use zero or mean")
        by_layer: dict[int, list[int]] = {}
        for layer, head in heads:
            layer, head = int(layer), int(head)
            if not (0 <= layer < self.info.n_layers and 0 <= head < self.info.n_heads):
                raise ValueError(f"head L{layer} H{head} is not in {self.info.name} "
                                 f"({self.info.n_layers} layers × {self.info.n_heads} heads)")
            if mode == "mean" and (patterns is None or (layer, head) not in patterns):
                raise ValueError(f"mean ablation of L{layer} H{head} needs its mean attention pattern")
            by_layer.setdefault(layer, [])
            if head not in by_layer[layer]:
                by_layer[layer].append(head)
        return by_layer

    # ------------------------------------------------------------------ public capabilities
    # What analyses (ablation, value norms, own input) may ask of any adapter; they never reach into
    # the underscored methods below or the model's internals.
    def prepare_inputs(self, batch: list[Encoded]) -> tuple[dict, list[int]]:
        """Model keyword arguments for the padded batch, and each input's true length."""
        return self._inputs(batch)

    def forward(self, inputs: dict):
        """Run the model's base (no task head) on prepared inputs; its output object or tensor."""
        return self._forward(inputs, want_attentions=False)

    def last_hidden_state(self, inputs: dict) -> torch.Tensor:
        """(B, S, hidden) output of the model's last layer on prepared inputs."""
        out = self.forward(inputs)
        return out if torch.is_tensor(out) else out.last_hidden_state

    def lm_logits(self, inputs: dict) -> torch.Tensor:
        """(B, S, vocab) next-token logits of a causal language model; ValueError for other models."""
        model = getattr(self, "model", None)
        if not self.info.causal or model is None or not hasattr(model, "get_output_embeddings") \
                or model.get_output_embeddings() is None:
            raise ValueError(f"{self.info.name} has no language-model head: next-token loss does not apply")
        return model(**inputs, use_cache=False).logits

    def masked_lm_logits(self, inputs: dict) -> torch.Tensor:
        """(B, S, vocab) masked-LM logits from the checkpoint's own head; ValueError without one."""
        head = self.masked_lm_head()
        if head is None:
            raise ValueError(f"{self.info.name} has no masked-LM head in its checkpoint: masked-LM loss does not apply")
        return head(self.last_hidden_state(inputs))

    def masked_lm_head(self):
        """The checkpoint's masked-LM head ((B, S, hidden) → (B, S, vocab)) or None."""
        return None

    # ------------------------------------------------------------------ family hooks
    # ``vo_modules[layer] = (value module, output module)``: the first's forward output holds the
    # values (read by ``_values``), the second's first positional input is the concatenation of
    # every query head's output (B, S, n_heads·head_dim), just before the output projection.
    vo_modules: list[tuple[torch.nn.Module, torch.nn.Module]]

    def _values(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        """(B, n_kv_heads, S, head_dim) values of ``layer`` from its value module's output."""
        return split_heads(output, self.info.head_dim)

    def _inputs(self, batch: list[Encoded]) -> tuple[dict, list[int]]:
        """Model keyword arguments for the padded batch, and each input's true length."""
        raise NotImplementedError

    def _forward(self, kwargs: dict, want_attentions: bool):
        """Run the model (its base, without heads) on the prepared inputs."""
        raise NotImplementedError

    def _qk_hooks(self, layers: list[int], store: dict) -> list[tuple]:
        """(module, kind, fn) registrations that fill ``store`` during the forward pass."""
        raise NotImplementedError

    def _qk(self, layer: int, store: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_heads, S, head_dim) queries and keys of ``layer`` from what the hooks stored."""
        raise NotImplementedError

    def _attention_maps(self, kwargs: dict) -> list[torch.Tensor]:
        """One (B, n_heads, S, S) tensor per layer."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def _check_layers(self, layers: list[int] | None) -> list[int]:
        n = self.info.n_layers
        layers = list(range(n)) if layers is None else [int(l) for l in layers]
        bad = [l for l in layers if not 0 <= l < n]
        if bad:
            raise ValueError(f"layers {bad} out of range: {self.info.name} has layers 0..{n - 1}")
        return layers


def _unpad(x: torch.Tensor, lengths: list[int]) -> list[np.ndarray]:
    """(B, H, S, D) → per input float32 (H, len_i, D)."""
    x = x.float().cpu()
    return [np.ascontiguousarray(x[i, :, :n].numpy()) for i, n in enumerate(lengths)]


class SeparateQKMixin:
    """For attentions whose queries and keys come out of two separate projection modules:
    ``self.qk_modules[layer] = (query_module, key_module)`` (outputs (B, S, H·D))."""

    qk_modules: list[tuple[torch.nn.Module, torch.nn.Module]]

    def _qk_hooks(self, layers: list[int], store: dict) -> list[tuple]:
        regs = []
        for layer in layers:
            q_mod, k_mod = self.qk_modules[layer]
            regs += [(q_mod, "forward", store_output(store, (layer, "q"))),
                     (k_mod, "forward", store_output(store, (layer, "k")))]
        return regs

    def _qk(self, layer: int, store: dict) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.info.head_dim
        return split_heads(store[(layer, "q")], d), split_heads(store[(layer, "k")], d)
