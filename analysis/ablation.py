"""Head ablation: does this head matter?

A head (or a set of heads) is ablated during a forward pass over the run's inputs and the change of
the model's own objective is measured per input, then summarised as the mean over inputs with a
bootstrap confidence interval.

Ablation modes (``ModelAdapter.ablate``):
  * ``zero``: the head's output (its slice of the concatenated head outputs, just before the output
    projection) is set to 0. For grouped-query attention it is the QUERY head's slice; the kv head
    it shares with other query heads is untouched.
  * ``mean``: the head's attention probabilities are replaced by the head's mean pattern — for
    each (query position i, key position j), the mean of a_ij over the evaluated inputs that have
    both positions — cropped to each input's length, masked like the model (causal: j ≤ i), rows
    renormalised over the allowed keys; the head's output is then that pattern times the head's own
    values in the same forward pass. The mean is taken over the inputs of the ablation (the sample).

Objectives (one number per input; the delta is ablated minus unablated):
  * ``next-token-loss`` (causal LMs): mean next-token cross-entropy over the input's tokens 2..n,
    in nats, with the model's own LM head. Inputs of one token predict nothing and are skipped.
  * ``masked-lm-loss`` (encoders whose checkpoint holds a masked-LM head): 15 % of the non-special
    tokens of each input (at least one, chosen with a fixed seed per input) are replaced by the mask
    token; mean cross-entropy at those positions, in nats.
  * ``embedding-cosine-distance`` (encoders without a masked-LM head, e.g. sentence-transformers
    models such as all-MiniLM-L6-v2): 1 − cos between the sentence embedding (the model's actual
    output: mean-pooled last hidden states over the input's tokens, or CLS when the folder's
    sentence-transformers pooling config says so) with and without the ablation. 0 = unchanged.
  * ``cls-cosine-distance`` (vision transformers): 1 − cos between the CLS embedding after the
    final layer norm with and without the ablation.
For the distance objectives the unablated value (``baseline``) is 0 by definition.

Total effect = mean of the per-input deltas (every input weighs the same). Confidence interval:
percentile bootstrap of that mean over inputs, ``RESAMPLES`` resamples with replacement drawn with
a fixed seed (deterministic), 95 % by default; one input gives a zero-width interval.

Result schema (``store.put_analysis(run_id, "ablation", ...)``, merged with what is there):
``{"<mode>": {"objective": str, "n_inputs": int, "baseline": float, "inputs": [input ids],
"objective_description": str, "resamples": int, "seed": int,
"single": {"<layer>:<head>": {"delta", "ci_low", "ci_high", "per_input": [..]}},
"sets": [{"heads": [[l, h], ...], "delta", "ci_low", "ci_high", "per_input": [..]}]}}``.
A new job on other inputs (or another objective) replaces that mode's entry instead of mixing
numbers computed on different samples.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from attention_atlas.core import runtime
from attention_atlas.core.runinfo import RunInfo, as_runinfo
from analysis.values import encode_inputs, token_batches
from precompute.metrics import attention_from_qk, layer_semantics

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
MLM_FRACTION = 0.15
DEFAULT_CAP = 32
NAME = "ablation"
OBJECTIVES = {
    "next-token-loss": "change in next-token cross-entropy (nats per predicted token; the model's LM head)",
    "masked-lm-loss": f"change in masked-LM cross-entropy (nats per masked token; {int(MLM_FRACTION * 100)} % of "
                      "the non-special tokens masked, seeded; the checkpoint's masked-LM head)",
    "embedding-cosine-distance": "1 − cosine between the sentence embedding (mean-pooled last hidden states, the "
                                 "model's own output) with and without the ablation; this encoder has no masked-LM head",
    "cls-cosine-distance": "1 − cosine between the CLS embedding (after the final layer norm) with and without the ablation",
}


# ----------------------------------------------------------------------------- statistics
def bootstrap_ci(values, n_resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
                 ) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean over ``values``."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_resamples, v.size))].mean(1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)


def sample_inputs(n_inputs: int, cap: int | None, seed: int = SEED) -> list[int]:
    """All inputs if ``cap`` covers them, else a seeded random sample of ``cap`` ids (sorted)."""
    if cap is None or cap <= 0 or cap >= n_inputs:
        return list(range(n_inputs))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n_inputs, size=int(cap), replace=False))


def describe_sample(ids: list[int], n_inputs: int) -> str:
    if len(ids) == n_inputs:
        return f"all {n_inputs} inputs"
    shown = ", ".join(map(str, ids[:12])) + (" …" if len(ids) > 12 else "")
    return f"{len(ids)} of {n_inputs} inputs (seeded random sample, seed {SEED}: {shown})"


# ----------------------------------------------------------------------------- objectives
def objective_for(adapter) -> str:
    """The objective this model supports (see the module docstring)."""
    if adapter.info.modality == "image":
        return "cls-cosine-distance"
    if adapter.info.causal:
        return "next-token-loss"
    head = adapter.masked_lm_head() if hasattr(adapter, "masked_lm_head") else None
    return "masked-lm-loss" if head is not None else "embedding-cosine-distance"


def sentence_pooling(adapter) -> str:
    """"cls" or "mean": the folder's sentence-transformers pooling (mean when it has none)."""
    folder = getattr(adapter, "folder", None)
    if folder:
        for cfg in sorted(Path(folder).glob("*_Pooling/config.json")):
            try:
                pooling = json.loads(cfg.read_text())
            except (OSError, ValueError):
                continue
            if pooling.get("pooling_mode_cls_token") and not pooling.get("pooling_mode_mean_tokens"):
                return "cls"
    return "mean"


def _mask_for_mlm(adapter, enc, input_id: int, seed: int):
    """A copy of ``enc`` with ~15 % of its non-special tokens replaced by the mask token, and the
    labels (original ids at masked positions, -100 elsewhere)."""
    tok = adapter.tokenizer
    ids = list(enc.token_ids)
    special = set(tok.all_special_ids)
    candidates = [p for p, t in enumerate(ids) if t not in special]
    labels = [-100] * len(ids)
    if candidates:
        rng = np.random.default_rng([seed, int(input_id)])
        k = max(1, int(round(MLM_FRACTION * len(candidates))))
        for p in sorted(rng.choice(candidates, size=k, replace=False)):
            labels[p] = ids[p]
            ids[p] = tok.mask_token_id
    return replace(enc, token_ids=ids), labels


class Evaluator:
    """The model's objective on a fixed set of inputs, with and without ablated heads.

    Baseline outputs are computed once (plain model, no hooks); ``deltas(heads, mode)`` runs the
    inputs again under ``adapter.ablate`` with the same batching, so no heads gives exactly 0."""

    def __init__(self, adapter, encoded: list, input_ids: list[int], max_batch_tokens: int = 4096, seed: int = SEED):
        import torch  # here, not at import: the dashboard loads this module, its web workers need no torch
        self.adapter, self.seed = adapter, seed
        self.objective = objective_for(adapter)
        self.description = OBJECTIVES[self.objective]
        self.pooling = sentence_pooling(adapter) if self.objective == "embedding-cosine-distance" else None
        if self.pooling == "cls":
            self.description = self.description.replace("mean-pooled last hidden states", "CLS token (the folder's pooling)")
        items, self.skipped = [], []
        for i, enc in zip(input_ids, encoded):
            if self.objective == "next-token-loss" and len(enc.token_ids) < 2:
                self.skipped.append(int(i))
                continue
            labels = None
            if self.objective == "masked-lm-loss":
                enc, labels = _mask_for_mlm(adapter, enc, i, seed)
                if all(x == -100 for x in labels):
                    self.skipped.append(int(i))
                    continue
            items.append((int(i), enc, labels))
        if not items:
            raise ValueError("no input can be evaluated (causal LMs need inputs of at least two tokens)")
        self.input_ids = [i for i, _, _ in items]
        lengths = [len(e.tokens) for _, e, _ in items]
        self.lengths = lengths
        self.batches = []
        for group in token_batches(lengths, max_batch_tokens):
            batch = [items[j][1] for j in group]
            kwargs, lens = adapter.prepare_inputs(batch)
            labels = None
            if self.objective == "masked-lm-loss":
                labels = torch.full(kwargs["input_ids"].shape, -100, dtype=torch.long)
                for r, j in enumerate(group):
                    labels[r, :len(items[j][2])] = torch.tensor(items[j][2])
            self.batches.append((group, batch, kwargs, lens, labels))
        self._mean: dict = {}
        with runtime.model_lock(adapter), torch.inference_mode():
            self._base = [self._outputs(b) for b in self.batches]
        if self.objective in ("next-token-loss", "masked-lm-loss"):
            self.baseline_values = np.concatenate(self._base)
        else:
            self.baseline_values = np.zeros(len(self.input_ids))

    @property
    def n_inputs(self) -> int:
        return len(self.input_ids)

    @property
    def baseline(self) -> float:
        return float(self.baseline_values.mean())

    # ------------------------------------------------------------------ forward passes
    def _outputs(self, b):
        """Per-input losses (float64 array) or embeddings (float64 tensor B×d) for one batch."""
        import torch  # here, not at import: the dashboard loads this module, its web workers need no torch
        group, _, kwargs, lens, labels = b
        a = self.adapter
        if self.objective == "next-token-loss":
            logits = a.lm_logits(kwargs)
            ids = kwargs["input_ids"]
            out = np.empty(len(lens))
            for r, n in enumerate(lens):
                lp = torch.log_softmax(logits[r, :n - 1].double(), dim=-1)
                out[r] = float(-lp.gather(1, ids[r, 1:n, None]).mean())
            return out
        if self.objective == "masked-lm-loss":
            logits = a.masked_lm_logits(kwargs)
            out = np.empty(len(lens))
            for r in range(len(lens)):
                sel = labels[r] != -100
                lp = torch.log_softmax(logits[r][sel].double(), dim=-1)
                out[r] = float(-lp.gather(1, labels[r][sel][:, None]).mean())
            return out
        if self.objective == "embedding-cosine-distance":
            hidden = a.last_hidden_state(kwargs).double()
            if self.pooling == "cls":
                return hidden[:, 0]
            mask = kwargs["attention_mask"].to(hidden.dtype)[..., None]
            return (hidden * mask).sum(1) / mask.sum(1)
        return a.last_hidden_state(kwargs)[:, 0].double()

    def deltas(self, heads=(), mode: str = "zero") -> np.ndarray:
        """Per-input change of the objective with ``heads`` ablated (order of ``input_ids``)."""
        import torch  # here, not at import: the dashboard loads this module, its web workers need no torch
        heads = [(int(l), int(h)) for l, h in heads]
        if mode == "mean":
            self.ensure_mean_patterns(heads)
        out = []
        with runtime.model_lock(self.adapter), torch.inference_mode():
            for b, base in zip(self.batches, self._base):
                patterns = self._batch_patterns(b, heads) if mode == "mean" else None
                with self.adapter.ablate(heads, mode, patterns):
                    new = self._outputs(b)
                if isinstance(base, np.ndarray):
                    out.append(new - base)
                else:
                    cos = torch.nn.functional.cosine_similarity(new, base, dim=-1)
                    out.append((1.0 - cos).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    # ------------------------------------------------------------------ mean patterns
    def ensure_mean_patterns(self, heads) -> None:
        """Mean attention by (query, key) position over the evaluated inputs, for every head in ``heads``."""
        need = sorted({(int(l), int(h)) for l, h in heads} - set(self._mean))
        if not need:
            return
        model = self.adapter.info.to_dict()
        size = max(self.lengths)
        layers = sorted({l for l, _ in need})
        total = {hd: np.zeros((size, size)) for hd in need}
        count = np.zeros((size, size))
        for b in self.batches:
            _, batch, _, lens, _ = b
            with runtime.model_lock(self.adapter):
                qk = self.adapter.capture(batch, layers)
            for r, n in enumerate(lens):
                count[:n, :n] += 1
                for l, h in need:
                    q, k = qk[l][0][r][h], qk[l][1][r][h]
                    total[(l, h)][:n, :n] += attention_from_qk(q, k, **layer_semantics(model, l, h))
        for hd in need:
            self._mean[hd] = np.where(count > 0, total[hd] / np.maximum(count, 1), 0.0)

    def mean_pattern(self, layer: int, head: int, n: int) -> np.ndarray:
        """The head's mean pattern for an input of ``n`` tokens: cropped, masked, rows renormalised."""
        m = self._mean[(layer, head)][:n, :n].copy()
        if self.adapter.info.causal:
            m = np.tril(m)
        s = m.sum(1, keepdims=True)
        return np.where(s > 0, m / np.where(s > 0, s, 1.0), 0.0)

    def _batch_patterns(self, b, heads) -> dict:
        import torch  # here, not at import: the dashboard loads this module, its web workers need no torch
        _, _, kwargs, lens, _ = b
        width = max(lens)
        pats = {}
        for l, h in heads:
            p = np.zeros((len(lens), width, width), np.float32)
            for r, n in enumerate(lens):
                p[r, :n, :n] = self.mean_pattern(l, h, n)
            pats[(l, h)] = torch.from_numpy(p)
        return pats


# ----------------------------------------------------------------------------- jobs
def _summary(d: np.ndarray, n_resamples: int, seed: int) -> dict:
    mean, lo, hi = bootstrap_ci(d, n_resamples, seed)
    return {"delta": mean, "ci_low": lo, "ci_high": hi, "per_input": [float(x) for x in d]}


def run_ablation(evaluator: Evaluator, singles=(), sets=(), mode: str = "zero", progress=None,
                 n_resamples: int = RESAMPLES, seed: int = SEED, should_stop=None) -> dict:
    """Ablate each head of ``singles`` alone and each set of ``sets`` together; the mode's result
    entry (see the module docstring). ``progress(done, total, text)`` is called as it goes."""
    singles = [(int(l), int(h)) for l, h in singles]
    sets = [sorted({(int(l), int(h)) for l, h in s}) for s in sets]
    total = len(singles) + len(sets) + (1 if mode == "mean" else 0)
    done, t0 = 0, time.monotonic()

    def tick(text):
        if progress:
            progress(done, total, f"{text} ({done}/{total}, {time.monotonic() - t0:.1f} s)")

    if mode == "mean":
        tick("mean attention patterns")
        evaluator.ensure_mean_patterns(singles + [hd for s in sets for hd in s])
        done += 1
    result = {"objective": evaluator.objective, "objective_description": evaluator.description,
              "n_inputs": evaluator.n_inputs, "baseline": evaluator.baseline, "inputs": list(evaluator.input_ids),
              "resamples": n_resamples, "seed": seed, "single": {}, "sets": []}
    for l, h in singles:
        tick(f"L{l} H{h}")
        result["single"][f"{l}:{h}"] = _summary(evaluator.deltas([(l, h)], mode), n_resamples, seed)
        done += 1
    for s in sets:
        tick(f"set of {len(s)} heads")
        result["sets"].append({"heads": [[l, h] for l, h in s],
                               **_summary(evaluator.deltas(s, mode), n_resamples, seed)})
        done += 1
    tick("done")
    return result


def merge(existing: dict | None, mode: str, fragment: dict) -> dict:
    """``existing`` (the stored ``ablation`` entry) with ``fragment`` merged into ``mode``."""
    out = dict(existing or {})
    cur = out.get(mode)
    same = (isinstance(cur, dict) and cur.get("objective") == fragment["objective"]
            and cur.get("inputs") == fragment["inputs"] and cur.get("seed") == fragment.get("seed"))
    if not same:
        out[mode] = fragment
        return out
    cur = dict(cur, single=dict(cur.get("single") or {}), sets=list(cur.get("sets") or []))
    cur["single"].update(fragment["single"])
    for s in fragment["sets"]:
        key = sorted(map(tuple, s["heads"]))
        cur["sets"] = [x for x in cur["sets"] if sorted(map(tuple, x["heads"])) != key] + [s]
    for k in ("baseline", "n_inputs", "objective_description", "resamples"):
        cur[k] = fragment[k]
    out[mode] = cur
    return out


def heads_for(scope: str, run: RunInfo, layer: int | None, head: int | None, selection=None
              ) -> tuple[list, list, str]:
    """(singles, sets, description) of the heads a UI scope names."""
    run = as_runinfo(run)
    layers, heads = list(run.layers), list(run.heads)
    selection = sorted({(int(l), int(h)) for l, h in (selection or [])})
    if scope == "head":
        if layer is None or head is None:
            raise ValueError("choose a head in the Single View first")
        return [(int(layer), int(head))], [], f"L{layer} H{head}"
    if scope == "layer":
        if layer is None:
            raise ValueError("choose a layer first")
        return [(int(layer), h) for h in heads], [], f"each head of layer {layer} one by one ({len(heads)} heads)"
    if scope in ("selected-each", "selected-set"):
        if not selection:
            raise ValueError("no heads selected: box- or lasso-select points in the Matrix View first")
        label = ", ".join(f"L{l} H{h}" for l, h in selection[:8]) + (" …" if len(selection) > 8 else "")
        if len(selection) == 1:
            return selection, [], f"the selected head ({label})"
        if scope == "selected-each":
            return selection, [], f"the {len(selection)} selected heads one by one ({label})"
        return [], [selection], f"the {len(selection)} selected heads together ({label})"
    every = [(l, h) for l in layers for h in heads]
    if scope == "all-each":
        return every, [], f"every head of the run one by one ({len(every)} heads)"
    if scope == "all-set":
        return [], [every], f"every head of the run at once ({len(every)} heads)"
    raise ValueError(f"unknown choice of heads {scope!r}")


def ablation_job(run: RunInfo, store, singles, sets, mode: str, cap: int | None, progress=None,
                 seed: int = SEED, adapter=None) -> dict:
    """Load the run's model, encode the sampled inputs, ablate; the mode's result entry."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"unknown ablation mode {mode!r}: use zero or mean")
    runtime.prepare_forked_process()
    run = as_runinfo(run)
    if adapter is None:
        from analysis.live import run_model
        if progress:
            progress(0, 1, f"loading {run.model_name if run.model_name != '?' else 'the model'}")
        adapter = run_model(run)
    tokens = store.tokens(run.id)
    input_of = np.asarray(tokens["input_id"])
    n_inputs = int(input_of.max()) + 1 if len(input_of) else 0
    ids = sample_inputs(n_inputs, cap, seed)
    if progress:
        progress(0, 1, f"encoding {describe_sample(ids, n_inputs)}; unablated pass")
    encoded = encode_inputs(run, store, adapter, ids)
    evaluator = Evaluator(adapter, encoded, ids, seed=seed)
    result = run_ablation(evaluator, singles, sets, mode, progress, seed=seed)
    result["sample"] = describe_sample(ids, n_inputs)
    if evaluator.skipped:
        result["skipped"] = evaluator.skipped
    return result


def save(store_path, run_id: str, mode: str, fragment: dict) -> tuple[dict | None, str]:
    """Merge ``fragment`` into the run's stored ``ablation`` entry. (merged entry, note); the entry
    is None and the note says why when the store cannot be written (results then live in the page)."""
    from precompute.store import Store, StoreError
    try:
        with Store(store_path, readonly=False) as st:
            merged = merge(st.analysis(run_id, NAME), mode, fragment)
            st.put_analysis(run_id, NAME, merged)
        return merged, "saved in the store"
    except (StoreError, OSError) as exc:
        return None, f"not saved: the store is read-only here ({str(exc).splitlines()[0][:120]}); kept in this page only"
