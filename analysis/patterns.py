"""Head pattern scores: how much of a head's attention follows the classic patterns.

Pure maths over attention matrices (rows = queries, each row sums to 1 over its allowed keys)
and per-token flags; no Dash, no store. The run-level reader (q/k from the store, sampling,
caching) is :mod:`analysis.head_scores`.

Definitions, for one query ``i`` of an input of length ``L`` with allowed keys ``K_i`` (all keys;
``j ≤ i`` for causal models) and key sets ``F`` = first token or [CLS]-like, ``S`` = [SEP]-like or
punctuation (minus ``F``):

* mass patterns — the attention mass the query puts on the pattern's targets, averaged over the
  queries for which the pattern has a target. Targets are disjoint, so a head that does one thing
  scores 1 on it and exactly 0 on the others:

  - ``first``: keys in ``F``, except the query's neighbours ``i−1, i, i+1`` (those count as
    prev/self/next); images: the [CLS] key for every patch query
  - ``sep``: keys in ``S`` except the neighbours (text only)
  - ``prev`` / ``self`` / ``next``: key ``i−1`` / ``i`` / ``i+1`` when it is allowed and not in
    ``F ∪ S`` (prev/next: text only; next: n/a for causal models, where the mask makes it 0)

* ``broad``: row entropy normalised by ``log |K_i|`` (1 = uniform over the allowed keys), averaged
  over queries with at least two allowed keys.
* ``positional``: how much of the attention is explained by relative position alone. The head's
  relative-position profile ``P(δ)`` is its mean attention at offset ``δ = j − i`` (images: the 2D
  patch offset; a prefix token such as [CLS] has no 2D position, so keys that are prefix tokens get
  one bin per prefix position and rows of prefix queries one bin per key: attending to [CLS] from
  every patch counts as positional in images, while attending to the first token in text does
  not, since its relative offset changes with the query). The offset-only
  prediction of a row is ``Â_ij ∝ P(δ_ij)`` over ``K_i``; the score is ``1 − mean_i TV(A_i, Â_i)``
  with TV the total-variation distance (½·L1), so it lies in [0, 1]. The profile is cross-fitted
  (fitted on the other half of the inputs, alternating) so the score is not inflated by fitting the
  same rows it predicts; offsets the other half never saw fall back to the pooled profile.
  A head whose every row uses the same offsets scores 1; real positional heads come close (a
  previous-token head whose first row, having no previous token, attends to itself: ≈ 0.94 on
  ~15-token inputs; uniform attention over inputs of mixed lengths: ≈ 0.98); a head whose targets
  move with the content (e.g. the first token from every position: the offset changes with i)
  scores low. ``1 − positional`` is the "semantic" (content-dependent) share.

The dominant pattern of a head (:func:`dominant`) is its strongest mass pattern when that holds
≥ 0.4 of the attention, else ``broad`` if ≥ 0.7, else ``positional`` if ≥ 0.7, else ``content``
(score 1 − positional).
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import numpy as np

from precompute.metrics import relative_bias

MASS = ("first", "sep", "prev", "next", "self")
PATTERNS = MASS + ("broad", "positional")
LABELS = {
    "first": "first token / [CLS]", "sep": "[SEP] / punctuation", "prev": "previous token",
    "next": "next token", "self": "self", "broad": "broad (entropy)", "positional": "positional (relative offset)",
    "content": "content-dependent (semantic)",
}
SHORT = {"first": "first/CLS", "sep": "SEP/punct", "prev": "prev", "next": "next", "self": "self",
         "broad": "broad", "positional": "positional"}
CLS_TEXTS = {"[CLS]", "<s>", "<|begin_of_text|>", "<|im_start|>", "<bos>", "CLS", "<|startoftext|>"}
SEP_TEXTS = {"[SEP]", "</s>", "<|endoftext|>", "<|im_end|>", "<eos>", "<|eot_id|>", "<|end_of_text|>"}
_MARKERS = ("##", "\u0120", "\u2581", "\u010a")
MAX_GROUP_ENTRIES = 2_000_000  # padded attention entries (B·L²) computed at once
MAX_PAD_WASTE = 1.3
DOMINANT_MASS, DOMINANT_BROAD, DOMINANT_POSITIONAL = 0.4, 0.7, 0.7


def is_punctuation(text: str) -> bool:
    """A token made only of punctuation characters (subword markers and spaces stripped)."""
    t = str(text)
    for m in _MARKERS:
        t = t.replace(m, "")
    t = t.strip()
    return bool(t) and all(unicodedata.category(c).startswith("P") for c in t)


def token_flags(texts, positions, image: bool = False) -> dict[str, np.ndarray]:
    """Per-token flags: first (position 0), cls, sep, punct (the last two never for images)."""
    texts = np.asarray(texts).astype(str)
    positions = np.asarray(positions)
    first = positions == 0
    cls = np.isin(texts, list(CLS_TEXTS))
    if image:
        z = np.zeros(len(texts), bool)
        return {"first": first, "cls": cls, "sep": z, "punct": z.copy()}
    sep = np.isin(texts, list(SEP_TEXTS))
    punct = np.array([is_punctuation(t) for t in texts], bool)
    return {"first": first, "cls": cls, "sep": sep, "punct": punct}


def applicable(causal: bool, image: bool) -> dict[str, bool]:
    """Which patterns can be measured on this kind of run (others are reported as n/a)."""
    return {"first": True, "sep": not image, "prev": not image, "next": not (image or causal),
            "self": True, "broad": True, "positional": True}


def na_reason(name: str, causal: bool, image: bool) -> str:
    if image and name in ("sep", "prev", "next"):
        return "text only"
    if name == "next" and causal:
        return "causal model: masked"
    return "no target in the sample"


def dominant(scores: dict) -> tuple[str, float]:
    """(pattern name, its score): the strongest mass pattern if it holds ≥ 0.4 of the attention,
    else broad if ≥ 0.7, else positional if ≥ 0.7, else 'content' with score 1 − positional."""
    mass = {n: scores[n] for n in MASS if scores.get(n) is not None}
    if mass:
        best = max(mass, key=lambda n: (mass[n], -MASS.index(n)))
        if mass[best] >= DOMINANT_MASS:
            return best, float(mass[best])
    if scores.get("broad") is not None and scores["broad"] >= DOMINANT_BROAD:
        return "broad", float(scores["broad"])
    pos = scores.get("positional")
    if pos is not None and pos >= DOMINANT_POSITIONAL:
        return "positional", float(pos)
    return "content", float(1 - pos) if pos is not None else float("nan")


# ----------------------------------------------------------------------------- structure
@dataclass
class _Group:
    """Inputs of similar length padded to one L, for batched attention (B × L × L)."""
    members: list          # indices into the scorer's inputs
    L: int
    lengths: np.ndarray    # (B,)
    rows: np.ndarray       # (B, L) global token rows (padding: 0)
    allowed: np.ndarray    # (B, L, L) bool: valid query, valid key, causal


@dataclass
class PatternScorer:
    """Scores every head of a run on the same inputs: build once, then call :meth:`scores` with
    one head's attention (:meth:`attention` from its stored q/k, or :meth:`flatten` of per-input
    matrices).

    ``inputs``: one dict per input with ``first``, ``cls``, ``sep``, ``punct`` bool arrays (length
    L, position order), optional ``rows`` (global token rows for q/k lookup) and, for images,
    ``patch_row``/``patch_col`` (−1 for prefix tokens).

    Internally a head's attention is one flat vector over the allowed (query, key) entries of all
    inputs; everything that does not depend on the head (targets, offsets, folds, weights) is
    precomputed per entry, so scoring a head is a handful of vector operations."""
    inputs: list
    causal: bool = False
    image: bool = False
    signature_entries: int = 0
    seed: int = 0
    groups: list = field(default_factory=list)
    n_bins: int = 0

    def __post_init__(self):
        self.applies = applicable(self.causal, self.image)
        self._build()

    # --------------------------------------------------------------- build
    def _codes(self, inp: dict) -> np.ndarray:
        """(n, n) relative-position bins of one input."""
        n = len(inp["first"])
        i = np.arange(n)
        if not self.image:
            return (i[None, :] - i[:, None]) + (self._lmax - 1)
        pr = np.asarray(inp["patch_row"], int)
        pc = np.asarray(inp["patch_col"], int)
        R, C = self._grid
        patch = pr >= 0
        c = (pr[None, :] - pr[:, None] + (R - 1)) * (2 * C - 1) + (pc[None, :] - pc[:, None] + (C - 1))
        base = (2 * R - 1) * (2 * C - 1)
        # key is a prefix token (query a patch): one bin per prefix position
        c = np.where(~patch[None, :] & patch[:, None], base + i[None, :], c)
        # query is a prefix token: one bin per (query, key) position pair
        return np.where(~patch[:, None], base + self._lmax + i[:, None] * self._lmax + i[None, :], c)

    def _targets(self, inp: dict, allowed: np.ndarray) -> np.ndarray:
        """(n, n) int8: index into MASS of the pattern each allowed entry is a target of, or 5."""
        n = len(allowed)
        F = np.asarray(inp["first"], bool) | np.asarray(inp["cls"], bool)
        S = np.zeros(n, bool) if self.image else (np.asarray(inp["sep"], bool) | np.asarray(inp["punct"], bool)) & ~F
        ar = np.arange(n)
        d = ar[None, :] - ar[:, None]
        t = np.full((n, n), len(MASS), np.int8)
        plain = ~(F | S)[None, :]
        if self.image:
            t[F[None, :] & (d != 0)] = MASS.index("first")
            t[(d == 0) & plain] = MASS.index("self")
        else:
            near = np.abs(d) <= 1
            t[F[None, :] & ~near] = MASS.index("first")
            t[S[None, :] & ~near] = MASS.index("sep")
            t[(d == -1) & plain] = MASS.index("prev")
            t[(d == 0) & plain] = MASS.index("self")
            if not self.causal:
                t[(d == 1) & plain] = MASS.index("next")
        t[~allowed] = len(MASS)
        return t

    def _build(self):
        lens = np.array([len(inp["first"]) for inp in self.inputs], int)
        self._lmax = int(lens.max()) if len(lens) else 1
        if self.image:
            R = max([int(np.max(inp["patch_row"])) + 1 for inp in self.inputs] + [1])
            C = max([int(np.max(inp["patch_col"])) + 1 for inp in self.inputs] + [1])
            self._grid = (R, C)
            self.n_bins = (2 * R - 1) * (2 * C - 1) + self._lmax + self._lmax * self._lmax
        else:
            self.n_bins = 2 * self._lmax - 1
        # batches of similar length for the attention products
        order = np.argsort(lens, kind="stable")
        batches, cur = [], []
        for idx in order:
            trial = cur + [idx]
            L = lens[idx]
            padded = len(trial) * L * L
            if cur and (padded > MAX_GROUP_ENTRIES or padded > MAX_PAD_WASTE * float((lens[trial] ** 2).sum())):
                batches.append(cur)
                trial = [idx]
            cur = trial
        if cur:
            batches.append(cur)
        # per allowed entry (group order, then input, query, key: the order of A[allowed])
        qid, tgt, code, fold, = [], [], [], []
        q_allowed, q_first_entry = [], []
        self.groups = []
        nq = 0
        for members in batches:
            B, L = len(members), int(lens[members].max())
            ar = np.arange(L)
            lengths = lens[members]
            valid = ar[None, :] < lengths[:, None]
            allowed = valid[:, :, None] & valid[:, None, :]
            if self.causal:
                allowed &= (ar[None, :] <= ar[:, None])[None]
            rows = np.zeros((B, L), np.int64)
            for b, m in enumerate(members):
                inp = self.inputs[m]
                n = lengths[b]
                if inp.get("rows") is not None:
                    rows[b, :n] = np.asarray(inp["rows"])
                al = allowed[b, :n, :n]
                qi = np.broadcast_to(np.arange(n)[:, None], (n, n))[al]
                qid.append(nq + qi)
                tgt.append(self._targets(inp, al)[al])
                code.append(self._codes(inp)[al])
                fold.append(np.full(int(al.sum()), m % 2, np.int8))
                q_allowed.append(al.sum(1))
                q_first_entry.append(nq)
                nq += n
            self.groups.append(_Group(list(members), L, lengths, rows, allowed))
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        self._qid = cat(qid, np.int64)
        self._tgt = cat(tgt, np.int64)
        code = cat(code, np.int64)
        fold = cat(fold, np.int64)
        self._bin = fold * self.n_bins + code          # profile bin (own fold)
        self._xbin = (1 - fold) * self.n_bins + code   # same offset, other fold's profile
        self._n_q = nq
        n_allowed = cat(q_allowed, np.int64)
        self._n_allowed = n_allowed
        broad_q = n_allowed >= 2
        self._n_broad = int(broad_q.sum())
        self._broad_e = broad_q[self._qid]
        with np.errstate(divide="ignore"):
            w = np.where(broad_q, 1.0 / np.log(np.maximum(n_allowed, 2)), 0.0)
        self._ent_w = w[self._qid]
        self._uniform = 1.0 / np.maximum(n_allowed, 1)
        # queries having a target of each pattern (head independent)
        has = np.zeros((nq, len(MASS) + 1), bool)
        has[self._qid, self._tgt] = True
        self._counts = has[:, :len(MASS)].sum(0)
        self._bin_counts = np.bincount(self._bin, minlength=2 * self.n_bins).reshape(2, self.n_bins).astype(float)
        # related-heads signature: a seeded sample of queries (the same in every head)
        self._sig = np.zeros(0, np.int64)
        self._sig_rows = 0
        if self.signature_entries and nq:
            cand = np.flatnonzero(n_allowed >= 2)
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(cand)
            sizes = n_allowed[perm]
            keep = perm[np.cumsum(sizes) <= self.signature_entries]
            if not len(keep) and len(perm):
                keep = perm[:1]
            pick = np.zeros(nq, bool)
            pick[keep] = True
            self._sig = np.flatnonzero(pick[self._qid])
            self._sig_rows = int(pick.sum())

    # --------------------------------------------------------------- inputs
    @property
    def n_tokens(self) -> int:
        return int(sum(len(inp["first"]) for inp in self.inputs))

    @property
    def n_entries(self) -> int:
        return int(len(self._qid))

    def attention(self, q: np.ndarray, k: np.ndarray, scale: float, window: int | None = None,
                  softcap: float | None = None, bias=None) -> np.ndarray:
        """A head's attention softmax(softcap(scale·q kᵀ) + mask) from its stored q/k (global token
        rows), as the flat vector of allowed entries; a layer's sliding ``window`` masks more (its
        entries outside the window are exactly 0), ``softcap`` as precompute.metrics."""
        out = []
        q = np.asarray(q)
        k = np.asarray(k)
        for g in self.groups:
            Q = q[g.rows].astype(np.float64)
            K = k[g.rows].astype(np.float64)
            logits = scale * np.matmul(Q, K.transpose(0, 2, 1))
            if softcap:
                logits = softcap * np.tanh(logits / softcap)
            if bias is not None:          # the head's relative-position bias (precompute.metrics.relative_bias)
                logits = logits + relative_bias(bias, logits.shape[-2], logits.shape[-1])
            mask = g.allowed
            if window is not None:
                i = np.arange(logits.shape[-1])
                mask = mask & (np.abs(i[:, None] - i[None, :]) <= window)
            out.append(_masked_softmax(logits, mask)[g.allowed])
        return np.concatenate(out) if out else np.zeros(0)

    def flatten(self, attns: list[np.ndarray]) -> np.ndarray:
        """Per-input attention matrices (n × n, input order) → the flat vector of allowed entries."""
        out = []
        for g in self.groups:
            for b, m in enumerate(g.members):
                a = np.asarray(attns[m], np.float64)
                n = g.lengths[b]
                if a.shape != (n, n):
                    raise ValueError(f"attention of input {m} has shape {a.shape}, expected ({n}, {n})")
                out.append(a[g.allowed[b, :n, :n]])
        return np.concatenate(out) if out else np.zeros(0)

    # --------------------------------------------------------------- scores
    def scores(self, A: np.ndarray) -> dict:
        """{pattern: score or None (n/a)} plus 'n/<pattern>' query counts, for one head."""
        A = np.asarray(A, np.float64)
        sums = np.bincount(self._tgt, weights=A, minlength=len(MASS) + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            alog = A * np.log(np.where(A > 0, A, 1.0))
        ent_sum = -float((self._ent_w * alog).sum())
        prof = np.bincount(self._bin, weights=A, minlength=2 * self.n_bins).reshape(2, self.n_bins)
        cnt = self._bin_counts
        pooled = _div(prof.sum(0), cnt.sum(0))
        fitted = np.concatenate([np.where(cnt[f] > 0, _div(prof[f], cnt[f]), pooled) for f in (0, 1)])
        pred = fitted[self._xbin]
        s = np.bincount(self._qid, weights=pred, minlength=self._n_q)
        pred = np.where(s[self._qid] > 0, pred / np.where(s > 0, s, 1.0)[self._qid], self._uniform[self._qid])
        tv_sum = 0.5 * float(np.abs(A - pred)[self._broad_e].sum())
        out = {}
        for i, name in enumerate(MASS):
            ok = self.applies[name] and self._counts[i] > 0
            out[name] = float(sums[i] / self._counts[i]) if ok else None
            out[f"n/{name}"] = int(self._counts[i])
        nb = self._n_broad
        out["broad"] = ent_sum / nb if nb else None
        out["positional"] = 1.0 - tv_sum / nb if nb else None
        out["n/broad"] = out["n/positional"] = nb
        for name in PATTERNS:
            if out[name] is not None:
                out[name] = float(min(1.0, max(0.0, out[name])))
        return out

    def signature(self, A: np.ndarray) -> np.ndarray:
        """The head's attention rows on the shared signature queries, concatenated."""
        return np.asarray(A, np.float64)[self._sig]

    @property
    def signature_rows(self) -> int:
        return self._sig_rows

    def scores_from_qk(self, q, k, scale: float) -> dict:
        return self.scores(self.attention(q, k, scale))


def _div(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _masked_softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    x = np.where(allowed, logits, -np.inf)
    m = x.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(allowed, np.exp(x - m), 0.0)
    s = e.sum(-1, keepdims=True)
    return e / np.where(s > 0, s, 1.0)


def pattern_scores(attns: list[np.ndarray], flags: list[dict], causal: bool = False, image: bool = False) -> dict:
    """Scores of ONE head from its per-input attention matrices and per-input token flags
    (dicts as :func:`token_flags` returns; images also ``patch_row``/``patch_col``)."""
    scorer = PatternScorer(list(flags), causal=causal, image=image)
    return scorer.scores(scorer.flatten(attns))
