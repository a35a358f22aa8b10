"""Value norms: how much each key token can actually contribute through a head.

A head's output for query i is Σ_j a_ij v_j, so a key with a large attention weight but a tiny
value vector contributes little. Weighting the attention by the value norm,

    a′_ij = a_ij ‖v_j‖ / Σ_k a_ik ‖v_k‖,

(rows renormalised) shows where the head's output really comes from (Kobayashi et al. 2020,
"Attention is not only a weight"). ``‖v_j‖`` is the Euclidean norm of the head's value vector of
token j, exactly as the attention multiplies it (after the value bias); for grouped-query attention
it is the value of the kv head serving that query head.

Where the norms come from: ``run/<id>/analysis/value_norms`` if a precompute stored them
(``{"layers": int (L,), "norms": float32 (L, n_heads, n_tokens)}``, token order), otherwise the run's
model is reloaded offline (``analysis.live.run_model``) and the value projections are read during
one forward pass, per input (Sentence View) or over the whole corpus (aggregate view).
"""
from __future__ import annotations

import logging
import sqlite3

import numpy as np

from attention_atlas.core import runtime
from attention_atlas.core.runinfo import RunInfo, as_runinfo

STORED_NAME = "value_norms"


def encode_inputs(run: RunInfo, store, adapter, input_ids) -> list:
    """The run's inputs ``input_ids`` encoded again exactly as stored (checked token by token)."""
    run = as_runinfo(run)
    run_id = run.id
    input_ids = [int(i) for i in input_ids]
    if run.modality == "image":
        images = []
        for i in input_ids:
            rgb = store.image(run_id, i)
            if rgb is None:
                raise ValueError(f"image {i} of run {run_id} is missing from the store: re-run precompute")
            images.append(rgb)
        return adapter.encode_images(images) if images else []
    texts = store.inputs(run_id) or []
    tokens = store.tokens(run_id)
    stored_ids, input_of = np.asarray(tokens["token_id"]), np.asarray(tokens["input_id"])
    bad = [i for i in input_ids if not 0 <= i < len(texts)]
    if bad:
        raise ValueError(f"inputs {bad} are not in run {run_id} ({len(texts)} inputs)")
    encoded = adapter.encode_texts([texts[i] for i in input_ids]) if input_ids else []
    for i, e in zip(input_ids, encoded):
        stored = stored_ids[input_of == i]
        if len(e.token_ids) != len(stored) or not np.array_equal(np.asarray(e.token_ids), stored):
            raise ValueError(f"input {i} of run {run_id} does not re-tokenise to the stored tokens "
                             "(the tokenizer changed?): re-run precompute")
    return encoded


def value_norms(adapter, batch: list, layers: list[int] | None = None) -> dict[int, list[np.ndarray]]:
    """‖v‖ per layer, per input: float32 (n_heads, len_i) (kv heads expanded to their query heads)."""
    with runtime.model_lock(adapter):  # one forward pass at a time: the hooks sit on the shared model
        values = adapter.capture_values(batch, layers)
    return {layer: [np.linalg.norm(v.astype(np.float64), axis=-1).astype(np.float32) for v in per_input]
            for layer, per_input in values.items()}


def _stored(store, run_id: str):
    from precompute.store import StoreError
    try:
        got = store.analysis(run_id, STORED_NAME)
    except (StoreError, OSError, sqlite3.Error, EOFError) as exc:  # an unreadable entry just means: compute live
        logging.getLogger("atlas").warning("stored value norms of run %s unreadable (%s); computing them live",
                                           run_id, exc)
        return None
    if isinstance(got, dict) and "layers" in got and "norms" in got:
        return [int(l) for l in got["layers"]], np.asarray(got["norms"], np.float32)
    return None


def input_value_norms(run: RunInfo, store, input_id: int, layers: list[int], rows: np.ndarray | None = None,
                      adapter=None) -> dict[int, np.ndarray]:
    """{layer: float32 (n_heads, len)} for one input of a run (stored norms, else the live model).
    ``rows``: the input's token rows (needed to read stored norms)."""
    run = as_runinfo(run)
    layers = [int(l) for l in layers]
    stored = _stored(store, run.id)
    if stored is not None and rows is not None and all(l in stored[0] for l in layers):
        return {l: stored[1][stored[0].index(l)][:, rows] for l in layers}
    if adapter is None:
        from analysis.live import run_model
        adapter = run_model(run)
    batch = encode_inputs(run, store, adapter, [input_id])
    return {l: v[0] for l, v in value_norms(adapter, batch, layers).items()}


def run_value_norms(run: RunInfo, store, layers: list[int], adapter=None, max_batch_tokens: int = 4096,
                    progress=None) -> dict[int, np.ndarray]:
    """{layer: float32 (n_heads, n_tokens)} over every input of a run, token order."""
    run = as_runinfo(run)
    layers = [int(l) for l in layers]
    stored = _stored(store, run.id)
    if stored is not None and all(l in stored[0] for l in layers):
        return {l: stored[1][stored[0].index(l)] for l in layers}
    if adapter is None:
        from analysis.live import run_model
        adapter = run_model(run)
    tokens = store.tokens(run.id)
    input_of = np.asarray(tokens["input_id"])
    n_inputs = int(input_of.max()) + 1 if len(input_of) else 0
    lengths = np.bincount(input_of, minlength=n_inputs)
    out = {l: np.zeros((adapter.info.n_heads, len(input_of)), np.float32) for l in layers}
    for ids in token_batches(lengths, max_batch_tokens):
        batch = encode_inputs(run, store, adapter, ids)
        norms = value_norms(adapter, batch, layers)
        for j, i in enumerate(ids):
            rows = np.flatnonzero(input_of == i)
            for l in layers:
                out[l][:, rows] = norms[l][j]
        if progress:
            progress(int(ids[-1]) + 1, n_inputs)
    return out


def token_batches(lengths, max_batch_tokens: int) -> list[list[int]]:
    """Consecutive input ids grouped so that each padded batch holds at most ``max_batch_tokens``."""
    batches, cur, width = [], [], 0
    for i, n in enumerate(lengths):
        n = int(n)
        if n == 0:
            continue
        if cur and max(width, n) * (len(cur) + 1) > max_batch_tokens:
            batches.append(cur)
            cur, width = [], 0
        cur.append(i)
        width = max(width, n)
    if cur:
        batches.append(cur)
    return batches


def stored_entry(norms: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``analysis/value_norms`` entry for ``norms`` (as ``run_value_norms`` returns them)."""
    layers = sorted(norms)
    return {"layers": np.asarray(layers, np.int32), "norms": np.stack([norms[l] for l in layers]).astype(np.float32)}
