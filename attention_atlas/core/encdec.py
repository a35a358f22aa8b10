"""Head kinds of encoder–decoder runs (pure; no Dash, no store) — shared core: figures, analysis and the views above use it.

An encoder–decoder run stores one layer per attention module in call order (encoder layers, then
per decoder layer its causal self-attention and its cross-attention), each with its ``kind`` in
``model.attention[l].kind``. The dashboard reads such a run through ONE token table: the source
tokens (rows ``0 … n_src − 1``, the run's ``tokens``) followed by the target tokens the decoder
read (rows ``n_src …``, the run's ``target_tokens``). A token id in the URL, a search hit or an
export row is a row of that table, so it names one token of one side unambiguously; head ids stay
the stored layer index (``L3 H1``: unique across kinds), shown with the kind beside it.

Per head, ``HeadSides`` says which rows its queries and keys are: its stored q/k and projection
rows are ``[queries …, keys …]`` = ``[q_off … q_off + n_q − 1]`` then ``[k_off … k_off + n_k − 1]``.
Runs without kinds (every other run) have ``q_off = k_off = 0`` and ``n_q = n_k = n``.

Every function taking a run takes its ``RunInfo`` (attention_atlas/core/runinfo.py; a manifest dict is
read into one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runinfo import RunInfo, as_runinfo

KINDS = ("encoder", "decoder", "cross")
KIND_LABEL = {"encoder": "encoder self-attention", "decoder": "decoder self-attention (causal)",
              "cross": "cross-attention (decoder queries → encoder keys)"}
KIND_SHORT = {"encoder": "enc", "decoder": "dec", "cross": "cross"}
SIDES = {"encoder": ("src", "src"), "decoder": ("tgt", "tgt"), "cross": ("tgt", "src")}


def layer_kind(run: RunInfo, layer: int) -> str:
    """The stored layer's kind: encoder | decoder | cross, or self for runs without kinds."""
    return as_runinfo(run).layer_kind(layer)


def is_encdec(run: RunInfo) -> bool:
    """An encoder–decoder run: some stored layer is cross-attention."""
    return as_runinfo(run).is_encdec


def kinds_of(run: RunInfo) -> list[str]:
    """The head kinds among the run's stored layers, in KINDS order ([] for runs without kinds)."""
    run = as_runinfo(run)
    if not run.is_encdec:
        return []
    have = {run.layer_kind(l) for l in run.layers}
    return [k for k in KINDS if k in have]


def resolve_kind(run: RunInfo, kind: str | None, layer=None) -> str | None:
    """The grid to show: ``kind`` when the run has it, else the kind of ``layer``, else the first
    kind; None for runs without kinds (one grid of every layer)."""
    run = as_runinfo(run)
    kinds = kinds_of(run)
    if not kinds:
        return None
    if kind in kinds:
        return kind
    if layer is not None and layer_kind(run, layer) in kinds:
        return layer_kind(run, layer)
    return kinds[0]


def grid_layers(run: RunInfo, kind: str | None) -> list:
    """Stored layers of one kind (every stored layer when ``kind`` is None)."""
    run = as_runinfo(run)
    layers = list(run.layers)
    return layers if kind is None else [l for l in layers if run.layer_kind(l) == kind]


def layer_label(run: RunInfo, layer) -> str:
    """``L3`` (runs without kinds) or ``L3 cross`` — the id is always the stored layer index."""
    kind = layer_kind(run, layer)
    return f"L{layer}" if kind == "self" else f"L{layer} {KIND_SHORT.get(kind, kind)}"


def head_label(run: RunInfo, layer, head) -> str:
    """``L3 H1`` or ``L3 H1 (cross)``."""
    kind = layer_kind(run, layer)
    return f"L{layer} H{head}" + ("" if kind == "self" else f" ({KIND_SHORT.get(kind, kind)})")


@dataclass(frozen=True)
class HeadSides:
    """Which token rows a head's queries and keys are (see the module docstring)."""
    q_off: int
    n_q: int
    k_off: int
    n_k: int
    kind: str = "self"

    @property
    def n_points(self) -> int:
        return self.n_q + self.n_k

    @property
    def square(self) -> bool:
        """Queries and keys are the same tokens (every self-attention head)."""
        return self.q_off == self.k_off and self.n_q == self.n_k

    @property
    def q_tokens(self) -> np.ndarray:
        return np.arange(self.q_off, self.q_off + self.n_q)

    @property
    def k_tokens(self) -> np.ndarray:
        return np.arange(self.k_off, self.k_off + self.n_k)

    def point_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(token, is_key) of every stored point (queries first, then keys)."""
        return (np.r_[self.q_tokens, self.k_tokens],
                np.r_[np.zeros(self.n_q, bool), np.ones(self.n_k, bool)])

    def has_query(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, np.int64)
        return (t >= self.q_off) & (t < self.q_off + self.n_q)

    def has_key(self, tokens) -> np.ndarray:
        t = np.asarray(tokens, np.int64)
        return (t >= self.k_off) & (t < self.k_off + self.n_k)

    def query_row(self, tokens) -> np.ndarray:
        return np.asarray(tokens, np.int64) - self.q_off

    def key_row(self, tokens) -> np.ndarray:
        return self.n_q + np.asarray(tokens, np.int64) - self.k_off


def head_sides(run: RunInfo, layer, n_src: int, n_tgt: int = 0) -> HeadSides:
    """The HeadSides of a stored layer, given the sizes of the source and target token tables."""
    kind = layer_kind(run, layer)
    off = {"src": (0, n_src), "tgt": (n_src, n_tgt)}
    q_side, k_side = SIDES.get(kind, ("src", "src"))
    (q_off, n_q), (k_off, n_k) = off[q_side], off[k_side]
    return HeadSides(q_off, n_q, k_off, n_k, kind)


def grid_sides(run: RunInfo, kind: str | None, n_src: int, n_tgt: int = 0) -> HeadSides:
    """The HeadSides every head of one grid shares (one kind = one pair of sides)."""
    if kind is None:
        return HeadSides(0, n_src, 0, n_src)
    q_side, k_side = SIDES[kind]
    off = {"src": (0, n_src), "tgt": (n_src, n_tgt)}
    return HeadSides(*off[q_side], *off[k_side], kind)


def kind_options(run: RunInfo, n_heads: int | None = None) -> list[dict]:
    """Options of the Matrix View's head-kind control (empty for runs without kinds)."""
    run = as_runinfo(run)
    opts = []
    for k in kinds_of(run):
        n = len(grid_layers(run, k))
        opts.append({"label": f"{KIND_LABEL[k]} · {n} layer{'s' if n != 1 else ''}", "value": k})
    return opts


def joined_tables(src: dict, tgt: dict | None) -> tuple[dict, np.ndarray]:
    """(token table of source rows then target rows, side per row: 0 source, 1 target)."""
    n_src = len(src["text"])
    if tgt is None:
        return src, np.zeros(n_src, np.int8)
    out = {}
    for key, a in src.items():
        if key in tgt:
            out[key] = np.concatenate([np.asarray(a), np.asarray(tgt[key]).astype(np.asarray(a).dtype, copy=False)])
    return out, np.r_[np.zeros(n_src, np.int8), np.ones(len(tgt["text"]), np.int8)]


# ---------------------------------------------------------------------------- analyses per kind
# Which analysis tabs apply to which head kind, and the one line the UI shows when one does not.
NOT_FOR_KIND = {
    ("rollout", "cross"): "rollout multiplies self-attention maps layer by layer; a cross-attention map takes "
                          "decoder tokens to encoder tokens, so it cannot be chained — rollout is shown for the "
                          "encoder (source) stack of this encoder–decoder run",
    ("related", None): "related heads compare heads over the same queries and keys; encoder, decoder and cross heads "
                       "attend over different tokens, so this tab does not apply to encoder–decoder runs",
    ("ablation", None): "ablation measures a change in the model's loss or embedding; encoder–decoder runs are not "
                        "supported by this tab yet",
    ("input", None): "your own input needs a target for the decoder; encoder–decoder runs are not supported by this "
                     "tab yet",
}


def not_applicable(run: RunInfo, tab: str, layer=None) -> str:
    """One line saying why analysis ``tab`` does not apply to this run (or to ``layer``'s kind), or ''."""
    if not is_encdec(run):
        return ""
    if (tab, None) in NOT_FOR_KIND:
        return NOT_FOR_KIND[(tab, None)]
    if layer is not None:
        return NOT_FOR_KIND.get((tab, layer_kind(run, layer)), "")
    return ""
