"""The one capture path: a registered transformers attention function.

transformers routes the attention of nearly every architecture through one registry of attention
functions (``AttentionInterface``). ``atlas_capture`` is registered there (with the eager mask
builder, so masks are exactly eager's); every attention module of a model loaded with
``attn_implementation="atlas_capture"`` calls it with the query and key exactly as the attention
uses them (after bias, rotary embedding and q/k norm, before grouped-query expansion), the additive
mask the model built, the scaling and extras such as a softcap or a sliding window. It hands them
to the active recorder (if any) and then runs the model's OWN eager attention, so the model's
output is unchanged.

What is recorded per attention module ("site", one stored layer each, in call order):
``AttentionSemantics`` — kind (self | encoder | decoder | cross), causal, window (largest allowed
|i − j|, None = unlimited), softcap, the module's scaling. Every capture checks the mask the model
built against those semantics (and that padding is masked, and that the mask adds no bias), and the
first capture of each site checks the recomputed attention against the model's own weights: a
model whose attention is not ``softmax(softcap(scale·q·kᵀ) + bias + mask-pattern)`` is refused in one
line, never captured approximately.

A ``position_bias`` passed to the attention (T5, mT5, UMT5, Switch: a learned bias per head and
relative offset j − i, bucketed, saturating at ``relative_attention_max_distance``) is tabulated
exactly once per bias module (``compute_bias`` of the attention module that owns the embedding;
the other layers of the stack receive that same tensor) as one row per head over offsets −M..M,
stored in the run's manifest, and checked on every capture call against the tensor the model
passed. An all-zero bias (T5's cross-attention) is no bias. Any other bias is refused.
"""
from __future__ import annotations

import contextlib
import inspect
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Callable

import torch

NAME = "atlas_capture"
_STATE = threading.local()
_SIGNATURES: dict = {}
# keyword arguments an eager attention may receive that change what it computes and that we do not
# reproduce: refused rather than captured approximately
_UNSUPPORTED_KWARGS = ("s_aux", "sinks", "alibi", "head_mask")
# what the self-check tolerates between the recomputed attention and the model's own float32 weights:
# it catches semantics the recompute lacks (those differ by ≫ 1e-2), not float32 rounding on long
# inputs of large models; the tests hold every architecture to 1e-4
SELF_CHECK_TOL = 1e-3


class CaptureRefused(RuntimeError):
    """The model's attention is not something the recompute reproduces; one line naming why."""


@dataclass
class AttentionSemantics:
    """What the recompute of one stored layer needs besides q, k and the run's scale."""
    kind: str = "self"
    causal: bool = False
    window: int | None = None
    softcap: float | None = None
    bias: str | None = None          # name of the relative-position bias table (ModelInfo.position_bias)

    def to_dict(self) -> dict:
        return asdict(self)


def register() -> None:
    """Register the capturing attention function and its (eager) mask builder; idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        AttentionMaskInterface.register(NAME, eager_mask)
    AttentionInterface.register(NAME, atlas_attention)


def eager_of(module: torch.nn.Module) -> Callable | None:
    """The eager attention function of the module's own modeling file."""
    return getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)


def _arguments(fn: Callable, args: tuple, kwargs: dict) -> dict:
    """Every argument of an eager call by name (its **kwargs merged in), defaults applied."""
    sig = _SIGNATURES.get(fn)
    if sig is None:
        sig = _SIGNATURES[fn] = inspect.signature(fn)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    out = dict(bound.arguments)
    for name, p in sig.parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(out.pop(name, {}) or {})
    return out


def atlas_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """The registered attention function: record, then run the module's own eager attention."""
    eager = eager_of(module)
    if eager is None:
        raise CaptureRefused(f"{type(module).__name__} has no eager attention function to run")
    recorder = getattr(_STATE, "recorder", None)
    if recorder is not None:
        named = _arguments(eager, (module, query, key, value, attention_mask) + args, kwargs)
        recorder.before(module, query, key, value, attention_mask, named)
    out, weights = eager(module, query, key, value, attention_mask, *args, **kwargs)
    if recorder is not None:
        out = recorder.after(module, out, weights)
    return out, weights


@contextlib.contextmanager
def recording(recorder):
    """Make ``recorder`` see every attention call made by this thread inside the block."""
    previous = getattr(_STATE, "recorder", None)
    _STATE.recorder = recorder
    try:
        yield recorder
    finally:
        _STATE.recorder = previous


# ---------------------------------------------------------------------------- masks
def allowed_pattern(causal: bool, window: int | None, n_q: int, n_k: int, device=None) -> torch.Tensor:
    """(n_q, n_k) bool: which key each query may attend to (query i aligned with key i)."""
    i = torch.arange(n_q, device=device)[:, None]
    j = torch.arange(n_k, device=device)[None, :]
    ok = torch.ones((n_q, n_k), dtype=torch.bool, device=device)
    if causal:
        ok &= j <= i
    if window is not None:
        ok &= (i - j).abs() <= window
    return ok


def _mask_allowed(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, Sq, Sk) allowed entries of a 4D mask, and its additive values (None for bool masks)."""
    m = mask[:, 0]
    if m.dtype == torch.bool:
        return m, None
    return m > torch.finfo(m.dtype).min / 2, m


def check_mask(mask, sem: AttentionSemantics, q_lengths: list[int], k_lengths: list[int],
               width_q: int, width_k: int, where: str) -> None:
    """Raise CaptureRefused unless the model's mask is exactly ``sem``'s pattern on every input,
    masks the padding keys, and adds nothing but 0 to the allowed scores."""
    if mask is None:
        for nq, nk in zip(q_lengths, k_lengths):
            if nk != width_k:
                raise CaptureRefused(f"{where}: the model does not mask padding keys; run with batch size 1")
            if not bool(allowed_pattern(sem.causal, sem.window, nq, nk).all()):
                raise CaptureRefused(f"{where}: the model applies no mask although its attention is "
                                     f"{'causal' if sem.causal else 'windowed'}")
        return
    if mask.dim() != 4:
        raise CaptureRefused(f"{where}: unexpected {mask.dim()}-D attention mask")
    allowed, values = _mask_allowed(mask)
    if values is not None and mask.shape[1] != 1:
        raise CaptureRefused(f"{where}: the mask differs per head (a position bias): not reproduced")
    for b, (nq, nk) in enumerate(zip(q_lengths, k_lengths)):
        a = allowed[min(b, allowed.shape[0] - 1)]
        expect = allowed_pattern(sem.causal, sem.window, nq, nk, device=a.device)
        if not torch.equal(a[:nq, :nk], expect):
            raise CaptureRefused(f"{where}: the model's mask is not {describe(sem)} (e.g. chunked or "
                                 "custom masking): not reproduced")
        if nk < a.shape[1] and bool(a[:nq, nk:].any()):
            raise CaptureRefused(f"{where}: padding keys are not masked; run with batch size 1")
        if values is not None:
            v = values[min(b, values.shape[0] - 1), :nq, :nk]
            if bool((v[expect] != 0).any()):
                raise CaptureRefused(f"{where}: the model adds a bias to the attention scores "
                                     "(e.g. ALiBi or relative positions): not reproduced")


def describe(sem: AttentionSemantics) -> str:
    parts = ["causal" if sem.causal else "bidirectional"]
    if sem.window is not None:
        parts.append(f"window ±{sem.window}")
    return " ".join(parts)


def expand_bias(table: torch.Tensor, n_q: int, n_k: int) -> torch.Tensor:
    """(H, n_q, n_k) bias from an (H, 2M+1) table over offsets j − i, or from (H,) ALiBi slopes
    (slope · (j − i)) — precompute.metrics.relative_bias."""
    d = torch.arange(n_k, device=table.device)[None, :] - torch.arange(n_q, device=table.device)[:, None]
    if table.dim() == 1:
        return table[:, None, None] * d.to(table.dtype)
    m = (table.shape[-1] - 1) // 2
    return table[:, (d.clamp(-m, m) + m)]


def bias_table(module: torch.nn.Module) -> torch.Tensor | None:
    """(H, 2M+1) float64 relative-position bias over offsets −M..M of a module that owns one
    (``compute_bias`` + ``relative_attention_bias``, T5 style), or None."""
    if not (getattr(module, "has_relative_attention_bias", False) and hasattr(module, "compute_bias")):
        return None
    m = int(module.relative_attention_max_distance)
    with torch.inference_mode():
        full = module.compute_bias(m + 1, m + 1)[0].double()          # (H, M+1, M+1): offsets j − i
    return torch.cat([full[:, m, :], full[:, 0, 1:]], dim=1)          # row M: −M..0; row 0: 1..M


def recompute_torch(q: torch.Tensor, k: torch.Tensor, scale: float, sem: AttentionSemantics,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """(H, n_q, n_k) float64 attention from (H, n_q, D) queries and (H, n_k, D) keys — the torch twin
    of precompute.metrics.attention_from_qk, used for the capture's self-check."""
    logits = scale * (q.double() @ k.double().transpose(-1, -2))
    if sem.softcap:
        logits = torch.tanh(logits / sem.softcap) * sem.softcap
    if bias is not None:
        logits = logits + expand_bias(bias.to(logits.device), q.shape[-2], k.shape[-2])
    ok = allowed_pattern(sem.causal, sem.window, q.shape[-2], k.shape[-2], device=q.device)
    logits = logits.masked_fill(~ok, float("-inf"))
    return torch.softmax(logits, dim=-1)


# ---------------------------------------------------------------------------- probing a model
@dataclass
class Site:
    """One attention module as seen by a probe forward pass."""
    module: torch.nn.Module
    semantics: AttentionSemantics
    scaling: float
    n_heads: int
    n_kv_heads: int
    head_dim: int
    role_q: str = "src"      # whose tokens the queries/keys are: src (encoder/only stack) or tgt
    role_k: str = "src"
    bias: torch.Tensor | None = None   # (H, 2M+1) relative-position bias table when semantics.bias is set


class Probe:
    """Recorder of a first forward pass: which modules attend, in what order, with what semantics."""

    def __init__(self):
        self.calls: list[tuple] = []

    def before(self, module, query, key, value, mask, named):
        self.calls.append((module, tuple(query.shape), tuple(key.shape), mask, named))

    def after(self, module, out, weights):
        return out


def semantics_from_call(module, q_shape, k_shape, mask, named, kind: str) -> tuple[AttentionSemantics, float]:
    """Semantics of one probed call: causality from the mask the model built (query row 0 of the
    first input: does it see key 1?), window from the ``sliding_window`` the model passed (largest
    allowed distance = sliding_window − 1, transformers' convention for causal and bidirectional
    windows alike), softcap and scaling from the call."""
    where = type(module).__name__
    for name in _UNSUPPORTED_KWARGS:
        if named.get(name) is not None:
            raise CaptureRefused(f"{where} passes {name!r} to its attention: not reproduced")
    if named.get("dropout") and module.training:
        raise CaptureRefused(f"{where} is in training mode (dropout)")
    scaling = named.get("scaling")
    if scaling is None:
        scaling = q_shape[-1] ** -0.5
    causal = False
    if mask is not None and q_shape[-2] > 1 and k_shape[-2] > 1 and mask.dim() == 4:
        allowed, _ = _mask_allowed(mask)
        causal = not bool(allowed[0, 0, 1])
    window = named.get("sliding_window")
    window = int(window) - 1 if window else None
    softcap = named.get("softcap")
    sem = AttentionSemantics(kind=kind, causal=causal, window=window, softcap=float(softcap) if softcap else None)
    return sem, float(scaling)


def probe_sites(run_forward: Callable[[], None], is_encoder_decoder: bool) -> list[Site]:
    """Run one forward pass with a Probe and turn its calls into sites (one per attention module,
    in first-call order). Enc–dec: encoder self-attention first, then per decoder layer the causal
    self-attention and the cross-attention (queries and keys of different lengths in the probe)."""
    probe = Probe()
    with torch.inference_mode(), recording(probe):
        run_forward()
    sites: list[Site] = []
    seen: set[int] = set()
    encoder_done = False
    tables: dict[int, tuple[str, torch.Tensor]] = {}    # id of a passed bias tensor → (name, table)
    for module, q_shape, k_shape, mask, named in probe.calls:
        if id(module) in seen:
            continue
        seen.add(id(module))
        pb = named.pop("position_bias", None)
        slopes = named.pop("alibi_slopes", None)
        if slopes is not None:                 # ALiBi (precompute.models.alibi): one name per slope set
            key = tuple(float(x) for x in slopes)
            bias_name, table = tables.setdefault(key, (f"alibi{len(tables)}", slopes.double()))
        else:
            bias_name, table = _position_bias(module, pb, tables)
        if not is_encoder_decoder:
            kind, rq, rk = "self", "src", "src"
        elif q_shape[-2] != k_shape[-2]:
            kind, rq, rk, encoder_done = "cross", "tgt", "src", True
        else:
            sem_probe, _ = semantics_from_call(module, q_shape, k_shape, mask, named, "self")
            if sem_probe.causal:
                encoder_done = True
            kind = "decoder" if encoder_done else "encoder"
            rq = rk = "tgt" if encoder_done else "src"
        sem, scaling = semantics_from_call(module, q_shape, k_shape, mask, named, kind)
        if kind == "cross":
            sem.causal, sem.window = False, None
        sem.bias = bias_name
        sites.append(Site(module=module, semantics=sem, scaling=scaling, n_heads=q_shape[1],
                          n_kv_heads=k_shape[1], head_dim=q_shape[-1], role_q=rq, role_k=rk, bias=table))
    if not sites:
        raise CaptureRefused("no attention call went through the attention registry")
    shapes = {(s.n_heads, s.n_kv_heads, s.head_dim) for s in sites}
    if len(shapes) > 1:
        raise CaptureRefused(f"heads differ between layers ({sorted(shapes)}): not supported by the store")
    return sites


def _position_bias(module, pb, tables: dict) -> tuple[str | None, torch.Tensor | None]:
    """(name, table) of the position bias a probed call passed: None for none or an all-zero one; the
    table of the module that owns it (T5: the first layer of each stack), found by the identity of
    the tensor the stack hands to its other layers; checked against the passed tensor."""
    where = type(module).__name__
    if pb is None or not bool(pb.any()):
        return None, None
    own = bias_table(module)
    if own is not None:
        name = f"rel{len({n for n, _ in tables.values()})}"
        tables[id(pb)] = (name, own)
    elif id(pb) not in tables:
        raise CaptureRefused(f"{where} passes a position bias that no module of the model tabulates: not reproduced")
    name, table = tables[id(pb)]
    check_bias(pb, table, where)
    return name, table


def check_bias(pb: torch.Tensor, table: torch.Tensor, where: str) -> None:
    """The bias the model passed equals the stored table's expansion (same for every input)."""
    if pb.dim() != 4 or pb.shape[1] != table.shape[0]:
        raise CaptureRefused(f"{where}: position bias of shape {tuple(pb.shape)} is not one per head")
    mine = expand_bias(table.to(pb.device), pb.shape[-2], pb.shape[-1])
    if not torch.allclose(pb.double(), mine.expand_as(pb.double()), atol=1e-6, rtol=0):
        raise CaptureRefused(f"{where}: its position bias is not a function of the offset j − i: not reproduced")


def bias_info(sites: list[Site]) -> dict:
    """ModelInfo.position_bias: {name: {max_distance, values: H rows over offsets −M..M}}."""
    out = {}
    for s in sites:
        if s.semantics.bias and s.semantics.bias not in out:
            t = s.bias.float().double()     # the model's float32 values, exactly
            if t.dim() == 1:
                out[s.semantics.bias] = {"alibi_slopes": t.cpu().tolist()}
            else:
                out[s.semantics.bias] = {"max_distance": (t.shape[1] - 1) // 2, "values": t.cpu().tolist()}
    return out


# ---------------------------------------------------------------------------- capturing
class Capture:
    """Recorder of a capture pass: q (folded to the run's scale) and k (kv heads expanded) of the
    requested sites, values of the requested sites, or head ablation — one object, three uses."""

    def __init__(self, sites: list[Site], scale: float, lengths: dict[str, list[int]],
                 qk_layers=(), value_layers=(), ablate: dict | None = None, checked: set | None = None):
        self.index = {id(s.module): i for i, s in enumerate(sites)}
        self.sites, self.scale, self.lengths = sites, scale, lengths
        self.qk_layers, self.value_layers = set(qk_layers), set(value_layers)
        self.ablate = ablate or {}
        self.checked = checked if checked is not None else set()
        self.qk: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.values: dict[int, torch.Tensor] = {}
        self._masks: dict = {}
        self._biases: set = set()
        self._current: dict[int, torch.Tensor] = {}

    def _site(self, module) -> tuple[int, Site]:
        i = self.index.get(id(module))
        if i is None:
            raise CaptureRefused(f"{type(module).__name__} attended although the probe did not see it")
        return i, self.sites[i]

    def before(self, module, query, key, value, mask, named):
        layer, site = self._site(module)
        rep = site.n_heads // site.n_kv_heads
        if layer in self.qk_layers:
            nq, nk = self.lengths[site.role_q], self.lengths[site.role_k]
            key_id = (id(mask), tuple(mask.shape) if mask is not None else None, site.semantics.causal,
                      site.semantics.window, site.role_q, site.role_k)
            if key_id not in self._masks:
                check_mask(mask, site.semantics, nq, nk, query.shape[-2], key.shape[-2], f"layer {layer}")
                self._masks[key_id] = True
            pb = named.get("position_bias")
            bias_id = (layer, id(pb), tuple(pb.shape) if pb is not None else None)
            if site.bias is not None and site.bias.dim() == 1:       # ALiBi: the hook checked the tensor
                if not torch.equal(named.get("alibi_slopes"), site.bias):
                    raise CaptureRefused(f"layer {layer}: ALiBi slopes changed since the probe")
            elif bias_id not in self._biases:
                if site.bias is not None:
                    if pb is None:
                        raise CaptureRefused(f"layer {layer}: the model passed no position bias this time")
                    check_bias(pb, site.bias, f"layer {layer}")
                elif pb is not None and bool(pb.any()):
                    raise CaptureRefused(f"layer {layer}: the model passed a position bias the probe did not see")
                self._biases.add(bias_id)
            q = query.detach()
            if site.scaling != self.scale:
                q = q * (site.scaling / self.scale)
            k = key.detach().repeat_interleave(rep, dim=1) if rep > 1 else key.detach()
            self.qk[layer] = (q, k)
        if layer in self.value_layers or layer in self.ablate:
            v = value.detach()
            self._current[layer] = v.repeat_interleave(rep, dim=1) if rep > 1 else v
            if layer in self.value_layers:
                self.values[layer] = self._current[layer]

    def after(self, module, out, weights):
        layer, site = self._site(module)
        if layer in self.qk_layers and layer not in self.checked and weights is not None:
            self._self_check(layer, site, weights)
        if layer in self.ablate:
            mode, heads, patterns = self.ablate[layer]
            v = self._current.pop(layer)
            if out.dim() != 4 or out.shape[2] != site.n_heads or out.shape[-1] != v.shape[-1]:
                raise CaptureRefused(f"layer {layer}: attention output of shape {tuple(out.shape)} is not "
                                     "(batch, tokens, heads, head_dim): head ablation unsupported")
            out = out.clone()           # (B, S, H, D): every query head's output, before o_proj
            for h in heads:
                if mode == "zero":
                    out[:, :, h] = 0
                else:
                    p = patterns[(layer, h)].to(device=out.device, dtype=out.dtype)
                    out[:, :, h] = p @ v[:, h].to(out.dtype)
        return out

    def _self_check(self, layer: int, site: Site, weights: torch.Tensor) -> None:
        """Recomputed attention of the first input == the model's own weights, every head."""
        self.checked.add(layer)
        q, k = self.qk[layer]
        nq, nk = self.lengths[site.role_q][0], self.lengths[site.role_k][0]
        mine = recompute_torch(q[0, :, :nq], k[0, :, :nk], self.scale, site.semantics, site.bias)
        theirs = weights[0, :, :nq, :nk].double()
        diff = float((mine - theirs).abs().max())
        if not diff <= SELF_CHECK_TOL:
            raise CaptureRefused(f"layer {layer} ({type(site.module).__name__}): attention recomputed from the "
                                 f"captured q/k differs from the model's by {diff:.1e}: not reproduced")
