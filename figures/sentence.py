"""Sentence View model: plain data for the lines of one or several heads on one input.

Pure (numpy only, no Dash, no torch). The Plotly figure (figures/views.py), the Sentence View
callback (callbacks/detail.py) and the CSV export consume these functions, so what is drawn
and what is exported are the same numbers.

* ``token_roles``: which special tokens a run holds, from the manifest's ``special_tokens``
  (what the adapter read from the tokenizer) and where they occur in the run; old manifests
  without ``special_tokens`` fall back to the historical name sets.
* ``hide_options`` / ``hidden_keys``: the "hide keys" choices offered for a run, and the key
  positions they hide. The option values stay ``first`` / ``cls`` / ``sep`` (links keep working);
  their labels are the run's own token names.
* ``segments``: sentence A / B of an encoder input (split after the first separator-like
  special token that is not the last token: exactly BERT's token_type_ids for a pair).
* ``sentence_lines``: per head, the (query, key, weight) lines after hiding + renormalising,
  the sentence A/B filter and the focus, with what falls under the drawing threshold counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attention import hide_and_renormalise

# Names used before manifests stored the tokenizer's special tokens (kept for old runs).
CLS_TEXTS = frozenset({"[CLS]", "<s>", "<|begin_of_text|>", "<|im_start|>"})
SEP_TEXTS = frozenset({"[SEP]", "</s>", "<|endoftext|>", "<|im_end|>"})

PAIR_FILTERS = {"all": "all", "ab": "A → B", "ba": "B → A", "aa": "A → A", "bb": "B → B"}
MIN_WEIGHT = 0.01

# one colour per head: d3 category10 (BertViz's palette), then category20b/c darks, then a hue wheel
_HEAD_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                 "#e6550d", "#31a354", "#756bb1", "#636363"]


def head_color(index: int, n_heads: int) -> str:
    """Colour of the head at ``index`` (0-based) among ``n_heads`` heads; distinct for every head."""
    if n_heads <= len(_HEAD_PALETTE):
        return _HEAD_PALETTE[index]
    import colorsys
    r, g, b = colorsys.hls_to_rgb((index * 0.618034) % 1.0, 0.42, 0.75)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def head_colors(heads: list[int], all_heads: list[int]) -> dict[int, str]:
    """Colour of each head, by its place in the layer (a head keeps its colour whatever else is chosen)."""
    order = {h: i for i, h in enumerate(all_heads)}
    return {h: head_color(order.get(h, i), max(len(all_heads), 1)) for i, h in enumerate(heads)}


# ---------------------------------------------------------------------------- special tokens
@dataclass(frozen=True)
class TokenRoles:
    """The special tokens of one run, by role. ``cls``: special tokens found at position 0 of an
    input (CLS/BOS-like); ``sep``: special tokens found elsewhere (SEP/EOS-like). ``declared``:
    the tokenizer's special tokens (None for old manifests, then ``fallback`` is True)."""
    cls: tuple[str, ...] = ()
    sep: tuple[str, ...] = ()
    declared: tuple[str, ...] | None = None
    fallback: bool = False

    def as_dict(self) -> dict:
        return {"cls": list(self.cls), "sep": list(self.sep),
                "declared": None if self.declared is None else list(self.declared), "fallback": self.fallback}

    @classmethod
    def from_dict(cls, d: dict | None) -> "TokenRoles | None":
        if not d:
            return None
        return cls(tuple(d.get("cls") or ()), tuple(d.get("sep") or ()),
                   None if d.get("declared") is None else tuple(d["declared"]), bool(d.get("fallback")))


def token_roles(special_tokens: list[str] | None, texts, positions) -> TokenRoles:
    """Roles of the special tokens that occur in a run (``texts``/``positions``: the tokens table).

    With ``special_tokens`` (the manifest's list): a special token occurring at position 0 of
    some input is CLS-like, one occurring only elsewhere is SEP-like; declared tokens that never
    occur are not offered. Without it (old manifests): the historical name sets, by name."""
    texts = np.asarray(texts).astype(str)
    positions = np.asarray(positions)
    if special_tokens is None:
        present = set(np.unique(texts).tolist())
        return TokenRoles(tuple(sorted(CLS_TEXTS & present)), tuple(sorted(SEP_TEXTS & present)), None, True)
    declared = tuple(dict.fromkeys(str(t) for t in special_tokens))
    is_special = np.isin(texts, np.array(declared, dtype=str)) if declared else np.zeros(len(texts), bool)
    at_start = set(np.unique(texts[is_special & (positions == 0)]).tolist())
    elsewhere = set(np.unique(texts[is_special & (positions != 0)]).tolist())
    order = {t: i for i, t in enumerate(declared)}
    return TokenRoles(tuple(sorted(at_start, key=order.get)), tuple(sorted(elsewhere - at_start, key=order.get)),
                      declared, False)


def hide_options(roles: TokenRoles | None) -> list[dict]:
    """The "hide keys" options for a run: always the first token; the run's CLS-like and
    SEP-like special tokens by their real names, only when the run holds them."""
    opts = [{"label": "first token", "value": "first"}]
    if roles is None:  # nothing known: the historical labels
        return opts + [{"label": "[CLS]", "value": "cls"}, {"label": "[SEP]", "value": "sep"}]
    if roles.cls:
        opts.append({"label": " ".join(roles.cls), "value": "cls"})
    if roles.sep:
        opts.append({"label": " ".join(roles.sep), "value": "sep"})
    return opts


def hidden_keys(words: list, hide: list | None, roles: TokenRoles | None = None) -> set[int]:
    """Positions of the keys the Sentence View hides: ``first`` (position 0), ``cls`` (the run's
    CLS-like special tokens), ``sep`` (its SEP-like ones). Without ``roles``: the old name sets."""
    hide = hide or []
    cls_names = set(roles.cls) if roles is not None else CLS_TEXTS
    sep_names = set(roles.sep) if roles is not None else SEP_TEXTS
    hidden = {0} if "first" in hide and len(words) else set()
    if "cls" in hide:
        hidden |= {i for i, w in enumerate(words) if w in cls_names}
    if "sep" in hide:
        hidden |= {i for i, w in enumerate(words) if w in sep_names}
    return hidden


# ---------------------------------------------------------------------------- sentence A / B
def segments(words: list, roles: TokenRoles | None = None) -> np.ndarray | None:
    """Segment of every position (0 = sentence A, 1 = sentence B), or None for a one-segment input.

    Sentence A runs up to and including the first separator-like special token that is not the
    last token (BERT: ``[CLS] a … [SEP] b … [SEP]`` → token_type_ids 0…0 1…1)."""
    sep_names = set(roles.sep) if roles is not None else SEP_TEXTS
    n = len(words)
    for i, w in enumerate(words[:-1]):
        if w in sep_names:
            seg = np.zeros(n, np.int8)
            seg[i + 1:] = 1
            return seg
    return None


def pair_mask(seg: np.ndarray | None, which: str | None) -> np.ndarray | None:
    """n×n boolean mask of the (query, key) cells kept by the sentence filter; None = keep all."""
    if seg is None or which in (None, "", "all"):
        return None
    if which not in PAIR_FILTERS:
        raise ValueError(f"unknown sentence filter {which!r}")
    qs, ks = ("ab".index(which[0]), "ab".index(which[1]))
    return (seg[:, None] == qs) & (seg[None, :] == ks)


# ---------------------------------------------------------------------------- lines
@dataclass
class HeadLines:
    head: int
    color: str
    query: np.ndarray            # int positions
    key: np.ndarray              # int positions
    weight: np.ndarray           # float, after hiding + renormalising
    below: int = 0               # lines kept by the filters but under ``min_weight`` (not drawn)
    below_mass: float = 0.0      # their total weight


@dataclass
class SentenceLines:
    words: list[str]
    heads: list[HeadLines]
    matrices: dict               # head -> n×n matrix after hiding + renormalising (before filters)
    hidden: list[int]
    segments: np.ndarray | None
    pair: str
    focus: tuple[str, int] | None
    min_weight: float
    notes: list[str] = field(default_factory=list)
    key_words: list[str] | None = None   # keys' words when they are other tokens (cross-attention: the source)

    @property
    def kwords(self) -> list[str]:
        return self.words if self.key_words is None else self.key_words

    @property
    def query_active(self) -> np.ndarray:
        """Positions whose query side takes part under the sentence filter."""
        return self._side(0)

    @property
    def key_active(self) -> np.ndarray:
        return self._side(1)

    def _side(self, s: int) -> np.ndarray:
        n = len(self.words if s == 0 else self.kwords)
        if self.segments is None or self.pair == "all":
            return np.ones(n, bool)
        return self.segments == "ab".index(self.pair[s])

    def rows(self) -> list[tuple[int, int, int, float]]:
        """(head, query, key, weight) of every drawn line (the CSV of what is shown)."""
        return [(hl.head, int(q), int(k), float(w)) for hl in self.heads
                for q, k, w in zip(hl.query, hl.key, hl.weight)]


def sentence_lines(words: list[str], attn: dict, hidden=(), focus: tuple[str, int] | None = None,
                   pair: str = "all", segs: np.ndarray | None = None, min_weight: float = MIN_WEIGHT,
                   colors: dict | None = None, key_words: list[str] | None = None) -> SentenceLines:
    """Lines of several heads on one input.

    ``attn``: head -> n×n attention (rows = queries, before hiding). Each head's rows are
    renormalised over the keys that are not ``hidden`` (``hide_and_renormalise``); then the
    sentence filter (``pair`` with segments ``segs``: cells outside it are dropped, weights not
    renormalised, as BertViz does) and the focus (one query's or one key's lines) select lines;
    lines under ``min_weight`` are counted, not drawn. ``key_words``: the keys' words when they
    are other tokens than the queries (cross-attention: target queries, source keys; no A/B filter)."""
    n = len(words)
    nk = n if key_words is None else len(key_words)
    if key_words is not None:
        segs, pair = None, "all"
    hidden = sorted(int(h) for h in hidden)
    pair = pair if (segs is not None and pair in PAIR_FILTERS) else "all"
    mask = pair_mask(segs, pair)
    colors = colors or head_colors(list(attn), list(attn))
    out, mats = [], {}
    for head, a in attn.items():
        a = np.asarray(a, np.float64)
        if a.shape != (n, nk):
            raise ValueError(f"head {head}: attention is {a.shape}, expected {(n, nk)}")
        a2 = hide_and_renormalise(a, hidden)
        mats[head] = a2
        keep = a2 > 0
        if mask is not None:
            keep &= mask
        if focus is not None:
            side, p = focus
            sel = np.zeros((n, nk), bool)
            if side == "query":
                sel[p, :] = True
            else:
                sel[:, p] = True
            keep &= sel
        drawn = keep & (a2 >= min_weight)
        under = keep & ~drawn
        q, k = np.nonzero(drawn)
        out.append(HeadLines(head, colors.get(head, _HEAD_PALETTE[0]), q, k, a2[q, k],
                             int(under.sum()), float(a2[under].sum())))
    return SentenceLines(list(words), out, mats, hidden, segs, pair, focus, min_weight,
                         key_words=None if key_words is None else list(key_words))


def below_note(model: SentenceLines) -> str:
    """One line saying how many lines fall under the drawing threshold (never dropped silently)."""
    below = sum(h.below for h in model.heads)
    if not below:
        return ""
    mass = sum(h.below_mass for h in model.heads)
    drawn = sum(len(h.weight) for h in model.heads)
    return (f"{drawn} lines drawn; {below} lines under weight {model.min_weight:g} not drawn "
            f"(their weights sum to {mass:.3f})")
