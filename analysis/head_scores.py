"""Per-head scores of a run, gathered for sorting/shading the Matrix View and for the analysis
views: faithfulness ρ (from the stored metrics), the pattern scores of :mod:`analysis.patterns`,
the related-heads map of :mod:`analysis.related` (computed in the same pass over the heads'
q/k) and, when another job stored them, ablation effects.

Patterns are computed from the stored queries/keys (attention recomputed exactly, as everywhere
else) on a seeded sample of whole inputs bounded by ``TOKEN_BUDGET`` query tokens. A store that
already holds ``analysis/patterns`` (+ ``analysis/related``) for the same sample settings is read
instead; ``store_patterns`` (or ``python -m analysis.head_scores --cache DIR RUN``) writes them into
a writable store. The dashboard opens stores read-only and keeps results in memory."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from analysis.patterns import LABELS, PATTERNS, SHORT, PatternScorer, applicable, dominant, na_reason, token_flags
from analysis.related import nearest, related_map
from attention_atlas.core.errors import DataError
from attention_atlas.core.runinfo import RunInfo, as_runinfo

VERSION = 1
TOKEN_BUDGET = 4096          # query tokens of the corpus used for the scores (whole inputs, seeded)
SIGNATURE_ENTRIES = 12_000   # attention entries per head in the related-heads signature
MAX_INPUT_TOKENS = 2048      # longer inputs: causal → first 2048 tokens (exact), else skipped
SEED = 0
ABLATION_MODES = ("zero", "mean")
SCORE_LABELS = {"rho": "|ρ| (faithfulness)", **{p: LABELS[p] for p in PATTERNS},
                **{f"ablation-{m}": f"ablation effect ({m})" for m in ABLATION_MODES}}
SCORE_SHORT = {"rho": "|ρ|", **SHORT, **{f"ablation-{m}": f"ablation ({m})" for m in ABLATION_MODES}}
SORT_SCORES = PATTERNS + tuple(f"ablation-{m}" for m in ABLATION_MODES)  # Matrix View orders beyond grid/rho


def head_key(layer: int, head: int) -> str:
    return f"{layer}:{head}"


def parse_head_key(key: str) -> tuple[int, int]:
    l, h = str(key).split(":")
    return int(l), int(h)


@dataclass
class RunPatterns:
    run_id: str
    heads: list                    # (layer, head) with scores, manifest order
    scores: dict                   # (l, h) -> {pattern: float | None, "n/<pattern>": int}
    causal: bool
    image: bool
    sample: dict                   # n_inputs, n_inputs_total, n_tokens, n_tokens_total, sampled, skipped_long
    related: dict = field(default_factory=dict)   # heads, dist (H×H), xy (H×2), explained, n_rows
    missing: list = field(default_factory=list)   # heads without q/k (partial run)
    seconds: float = 0.0
    source: str = "computed"

    @property
    def applies(self) -> dict:
        return applicable(self.causal, self.image)

    def dominant(self, layer: int, head: int) -> tuple[str, float] | None:
        s = self.scores.get((layer, head))
        return dominant(s) if s else None

    def similar(self, layer: int, head: int, k: int = 5) -> list[tuple[tuple[int, int], float]]:
        heads = self.related.get("heads") or []
        if (layer, head) not in heads:
            return []
        i = heads.index((layer, head))
        return [(heads[j], d) for j, d in nearest(self.related["dist"], i, k)]

    def sample_note(self) -> str:
        s = self.sample
        if s.get("sampled"):
            txt = (f"scores from a seeded sample of {s['n_inputs']} of {s['n_inputs_total']} inputs "
                   f"({s['n_tokens']:,} of {s['n_tokens_total']:,} tokens; budget {TOKEN_BUDGET:,} tokens)")
        else:
            txt = f"scores from all {s['n_inputs']} inputs ({s['n_tokens']:,} tokens)"
        if s.get("skipped_long"):
            txt += f"; {s['skipped_long']} inputs longer than {MAX_INPUT_TOKENS} tokens skipped"
        if s.get("cropped_long"):
            txt += f"; {s['cropped_long']} inputs cropped to their first {MAX_INPUT_TOKENS} tokens (exact: causal)"
        return txt

    # ------------------------------------------------------------- (de)serialise for the store
    def to_json(self) -> dict:
        return {"version": VERSION, "settings": settings(), "run_id": self.run_id, "causal": self.causal,
                "image": self.image, "sample": self.sample, "missing": [head_key(*h) for h in self.missing],
                "heads": {head_key(*h): self.scores[h] for h in self.heads}, "seconds": self.seconds,
                "related": {k: self.related.get(k) for k in ("explained", "n_rows", "metric")}}

    def related_arrays(self) -> dict:
        r = self.related
        return {"heads": np.array(r.get("heads") or np.zeros((0, 2)), np.int32).reshape(-1, 2),
                "dist": np.asarray(r.get("dist", np.zeros((0, 0))), np.float64),
                "xy": np.asarray(r.get("xy", np.zeros((0, 2))), np.float64)}

    @classmethod
    def from_store(cls, js: dict, arrays: dict | None) -> "RunPatterns":
        heads = [parse_head_key(k) for k in js["heads"]]
        rp = cls(js["run_id"], heads, {parse_head_key(k): v for k, v in js["heads"].items()}, bool(js["causal"]),
                 bool(js["image"]), js["sample"], missing=[parse_head_key(k) for k in js.get("missing", [])],
                 seconds=float(js.get("seconds", 0.0)), source="store")
        if arrays is not None and "dist" in arrays:
            rel = js.get("related") or {}
            rp.related = {"heads": [tuple(int(x) for x in r) for r in np.asarray(arrays["heads"])],
                          "dist": np.asarray(arrays["dist"]), "xy": np.asarray(arrays["xy"]),
                          "explained": rel.get("explained"), "n_rows": rel.get("n_rows"), "metric": rel.get("metric")}
        return rp


def settings() -> dict:
    return {"token_budget": TOKEN_BUDGET, "signature_entries": SIGNATURE_ENTRIES,
            "max_input_tokens": MAX_INPUT_TOKENS, "seed": SEED}


def is_image_manifest(run: RunInfo) -> bool:
    return as_runinfo(run).is_image


# ----------------------------------------------------------------------------- sampling
def sample_inputs(groups, causal: bool, budget: int = TOKEN_BUDGET, seed: int = SEED,
                  max_len: int = MAX_INPUT_TOKENS) -> tuple[list[tuple[int, np.ndarray]], dict]:
    """Whole inputs (input id, token rows in position order) up to ``budget`` query tokens:
    all of them when the corpus fits, else a seeded random subset (at least one input)."""
    items, skipped, cropped = [], 0, 0
    for input_id, rows in groups:
        rows = np.asarray(rows)
        if len(rows) == 0:
            continue
        if len(rows) > max_len:
            if not causal:
                skipped += 1
                continue
            rows, cropped = rows[:max_len], cropped + 1
        items.append((int(input_id), rows))
    total_tokens = int(sum(len(r) for _, r in items))
    n_total = len(items)
    if total_tokens > budget:
        rng = np.random.default_rng(seed)
        chosen, used = [], 0
        for p in rng.permutation(len(items)):
            n = len(items[p][1])
            if chosen and used + n > budget:
                continue
            chosen.append(p)
            used += n
        items = [items[p] for p in sorted(chosen)]
    info = {"n_inputs": len(items), "n_inputs_total": n_total, "n_tokens": int(sum(len(r) for _, r in items)),
            "n_tokens_total": total_tokens, "sampled": len(items) < n_total, "skipped_long": skipped,
            "cropped_long": cropped}
    return items, info


def build_scorer(run: RunInfo, arrays: dict, groups, budget: int = TOKEN_BUDGET,
                 signature_entries: int = SIGNATURE_ENTRIES) -> tuple[PatternScorer, dict]:
    run = as_runinfo(run)
    causal, image = run.causal, run.is_image
    items, info = sample_inputs(groups, causal, budget)
    texts = np.asarray(arrays["text"]).astype(str)
    pos = np.asarray(arrays["position"])
    inputs = []
    for _, rows in items:
        f = token_flags(texts[rows], pos[rows], image=image)
        f["rows"] = rows
        if image:
            f["patch_row"] = np.asarray(arrays["patch_row"])[rows]
            f["patch_col"] = np.asarray(arrays["patch_col"])[rows]
        inputs.append(f)
    scorer = PatternScorer(inputs, causal=causal, image=image, signature_entries=signature_entries, seed=SEED)
    return scorer, info


CROSS_NA = ("cross-attention heads have no pattern scores: their queries (target tokens) and keys (source "
            "tokens) are different sequences, so first/previous/next/self-token and positional patterns are not defined")


def compute_run_patterns(run: RunInfo, arrays: dict, groups, get_qk, budget: int = TOKEN_BUDGET,
                         signature_entries: int = SIGNATURE_ENTRIES, side: np.ndarray | None = None) -> RunPatterns:
    """Every head's pattern scores and the related-heads map. ``groups`` iterates (input id, token
    rows in position order); ``get_qk(l, h)`` → (queries, keys) or None (head not stored yet).
    Encoder–decoder runs (``side``: 0 source, 1 target per row of the joined token table): encoder
    heads are scored over the source tokens, decoder heads (causal) over the target tokens, cross
    heads not at all (CROSS_NA); no related-heads map (their heads attend over different tokens)."""
    run = as_runinfo(run)
    if side is not None and run.is_encdec:
        return _encdec_run_patterns(run, arrays, groups, get_qk, budget, signature_entries, np.asarray(side))
    return _compute_run_patterns(run, arrays, groups, get_qk, budget, signature_entries)


def _encdec_run_patterns(run: RunInfo, arrays, groups, get_qk, budget, signature_entries, side) -> RunPatterns:
    t0 = time.perf_counter()
    n_src = int((side == 0).sum())
    groups = list(groups)
    scale = run.scale
    heads, scores, missing, info = [], {}, [], {}
    for kind, s, off, causal in (("encoder", 0, 0, False), ("decoder", 1, n_src, True)):
        layers = [l for l in run.layers if run.layer_kind(l) == kind]
        if not layers:
            continue
        part = {k: np.asarray(v)[side == s] for k, v in arrays.items()}
        sub = [(i, np.asarray(rows)[side[rows] == s] - off) for i, rows in groups]
        scorer, info[kind] = build_scorer(run.with_causal(causal), part, sub, budget, signature_entries)
        for layer in layers:
            for head in run.heads:
                qk = get_qk(layer, head)
                if qk is None:
                    missing.append((layer, head))
                    continue
                sem = run.layer_semantics(layer, head)
                scores[(layer, head)] = scorer.scores(scorer.attention(qk[0], qk[1], scale, sem["window"], sem["softcap"],
                                                                       sem.get("bias")))
                heads.append((layer, head))
    sample = dict(info.get("encoder") or info.get("decoder") or {})
    heads = [h for h in ((l, h) for l in run.layers for h in run.heads) if h in scores]
    return RunPatterns(run.id, heads, scores, False, False, sample, {}, missing,
                       time.perf_counter() - t0)


def scored_heads(run: RunInfo) -> int:
    """How many heads of a run get pattern scores (every head but cross-attention heads)."""
    run = as_runinfo(run)
    return sum(len(run.heads) for l in run.layers if run.layer_kind(l) != "cross")


def _compute_run_patterns(run: RunInfo, arrays, groups, get_qk, budget, signature_entries) -> RunPatterns:
    t0 = time.perf_counter()
    scorer, info = build_scorer(run, arrays, groups, budget, signature_entries)
    scale = run.scale
    heads, scores, sigs, missing = [], {}, [], []
    for layer in run.layers:
        for head in run.heads:
            qk = get_qk(layer, head)
            if qk is None:
                missing.append((layer, head))
                continue
            sem = run.layer_semantics(layer, head)
            A = scorer.attention(qk[0], qk[1], scale, sem["window"], sem["softcap"], sem.get("bias"))
            heads.append((layer, head))
            scores[(layer, head)] = scorer.scores(A)
            sigs.append(scorer.signature(A))
    related = {}
    if heads:
        rel = related_map(np.stack(sigs), scorer.signature_rows)
        related = {"heads": list(heads), "n_rows": scorer.signature_rows, **rel}
    return RunPatterns(run.id, heads, scores, scorer.causal, scorer.image, info, related, missing,
                       time.perf_counter() - t0)


# ----------------------------------------------------------------------------- store + dashboard
def _stored(store, run_id: str, run: RunInfo) -> RunPatterns | None:
    js = store.analysis(run_id, "patterns")
    if not isinstance(js, dict) or js.get("version") != VERSION or js.get("settings") != settings():
        return None
    if js.get("missing"):
        return None  # written while the run was partial: recompute
    arrays = store.analysis(run_id, "related")
    rp = RunPatterns.from_store(js, arrays if isinstance(arrays, dict) else None)
    return rp if len(rp.heads) == scored_heads(run) else None


def store_patterns(store, run_id: str) -> RunPatterns:
    """Compute (or read) a run's patterns with a writable Store and write them into it."""
    run = RunInfo.from_manifest(store.manifest(run_id))
    hit = _stored(store, run_id, run)
    if hit is not None:
        return hit
    from attention_atlas.core.encdec import joined_tables
    from attention_atlas.core.tokens import joined_index
    arrays, side = joined_tables(store.tokens(run_id), store.target_tokens(run_id))  # as Data.tokens joins them
    rp = compute_run_patterns(run, arrays, joined_index(arrays, side), lambda l, h: store.qk(run_id, l, h),
                              side=side)
    if not store.readonly and not rp.missing:
        store.put_analysis(run_id, "patterns", rp.to_json())
        store.put_analysis(run_id, "related", rp.related_arrays())
    return rp


PARTIAL_TTL = 30.0  # s: a run still being computed is re-scored at most this often


def run_patterns(data, run_id: str) -> RunPatterns:
    """The run's patterns for the dashboard: from the store if it holds them, else computed once
    and kept in the store's ``patterns`` cache region (dashboard_data.REGIONS). A complete run is
    keyed by its creation stamp; a partial one is re-scored when more heads are done, at most
    every ``PARTIAL_TTL`` seconds. Concurrent callbacks of one page share one computation."""
    run = data.info(run_id)
    st = data.status(run_id)
    sig = (st.get("heads_done"), run.forward_done, st.get("status"))

    def keep(hit, age):
        return hit[0] == sig or (st.get("status") != "complete" and age < PARTIAL_TTL)

    def compute():
        rp = data._read(lambda s: _stored(s, run_id, run))
        if rp is None:
            tokens = data.tokens(run_id)
            rp = compute_run_patterns(run, tokens.arrays, tokens.index,
                                      lambda l, h: data._read(lambda s: s.qk(run_id, l, h)), side=tokens.side)
        return sig, rp
    return data.caches["patterns"].get(run_id, run.created, compute, keep=keep)[1]


def ablation_scores(data, run_id: str) -> dict:
    """{'ablation-<mode>': {(l, h): delta}} from ``analysis/ablation`` when stored (else {})."""
    try:
        ab = data._read(lambda s: s.analysis(run_id, "ablation"))
    except DataError as exc:  # an unreadable ablation result (Data turns store problems into DataError): not offered
        logging.getLogger("atlas").warning("stored ablation results of run %s unreadable: %s", run_id, exc)
        return {}
    out = {}
    if not isinstance(ab, dict):
        return out
    for mode in ABLATION_MODES:
        single = (ab.get(mode) or {}).get("single") if isinstance(ab.get(mode), dict) else None
        if not isinstance(single, dict):
            continue
        vals = {}
        for k, v in single.items():
            try:
                vals[parse_head_key(k)] = float(v["delta"])
            except (ValueError, KeyError, TypeError):
                continue
        if vals:
            out[f"ablation-{mode}"] = vals
    return out


def head_scores(data, run_id: str, variant: str | None = None) -> dict:
    """Every per-head score of a run: {name: {(layer, head): float}} with names 'rho' (signed
    Spearman ρ of the given/default variant), each applicable pattern, and 'ablation-<mode>'
    when stored. Heads without a value are absent; n/a patterns are absent."""
    variant = variant or data.info(run_id).variants[0]
    out = {"rho": {k: v for k, v in data.rho(run_id, variant).items() if v is not None}}
    rp = run_patterns(data, run_id)
    for name in PATTERNS:
        vals = {h: s[name] for h, s in rp.scores.items() if s.get(name) is not None}
        if vals:
            out[name] = vals
    out.update(ablation_scores(data, run_id))
    return out


def na_note(run: RunInfo, name: str) -> str:
    """Why a score is not available for a run (one line)."""
    if name.startswith("ablation-"):
        return f"no {name.split('-', 1)[1]}-ablation results are stored for this run (start an ablation job first)"
    if name in PATTERNS:
        run = as_runinfo(run)
        causal, image = run.causal, run.is_image
        return f"the {LABELS[name]} pattern is n/a for this run ({na_reason(name, causal, image)})"
    return f"unknown score {name!r}"


def available_orders(run: RunInfo, has_ablation: dict | None = None) -> list[str]:
    """Matrix View orders that can apply to a run (without computing anything)."""
    run = as_runinfo(run)
    ap = applicable(run.causal, run.is_image)
    return ["grid", "rho"] + [p for p in PATTERNS if ap[p]] + sorted(has_ablation or [])


def main(argv=None):
    import argparse

    from precompute.store import Store
    ap = argparse.ArgumentParser(description="compute head pattern scores + related heads into a store")
    ap.add_argument("--cache", required=True)
    ap.add_argument("runs", nargs="*", help="run ids (default: all)")
    a = ap.parse_args(argv)
    store = Store(a.cache)
    for run_id in a.runs or store.run_ids():
        rp = store_patterns(store, run_id)
        print(f"{run_id}: {len(rp.heads)} heads in {rp.seconds:.1f}s ({rp.source}); {rp.sample_note()}")


if __name__ == "__main__":
    main()
