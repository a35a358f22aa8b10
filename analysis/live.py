"""The model behind a stored run, loaded again (offline) to run new computations on the run's
inputs or on a user's own input: ablation, value norms, projecting new inputs.

``run_model(run)`` reloads the run's model (``RunInfo.source``) and refuses a model whose
identity differs from the one the run was made with (a folder that changed since); the loaded
model, its lock and the fork handling are the process runtime's (attention_atlas/core/runtime.py:
one model kept per process, they are large). ``run_inputs(run, store)`` re-encodes the run's
inputs and checks they give exactly the stored tokens."""
from __future__ import annotations

import numpy as np

from attention_atlas.core import runtime
from attention_atlas.core.runinfo import RunInfo, as_runinfo
from precompute.models import ModelLoadError
from precompute.models.base import Encoded


def run_model(run: RunInfo, device: str = "cpu"):
    """The run's model adapter (runtime.live_model: loaded once per process)."""
    run = as_runinfo(run)
    source, identity = run.source, run.identity
    if not source:
        raise ModelLoadError("this run's manifest does not name its model source: re-run precompute to refresh it")
    adapter = runtime.live_model(source, device)
    if identity and adapter.info.identity != identity:
        raise ModelLoadError(f"the model {source!r} changed since this run was made "
                             f"(run: {identity[:60]}…, now: {adapter.info.identity[:60]}…): re-run precompute")
    return adapter


def release() -> None:
    """Drop the cached model (frees its memory)."""
    runtime.release_models()


def run_inputs(run: RunInfo, store, adapter) -> list[Encoded]:
    """The run's inputs encoded again exactly as stored (same tokens, in order)."""
    run = as_runinfo(run)
    run_id = run.id
    tokens = store.tokens(run_id)
    input_id = np.asarray(tokens["input_id"])
    n_inputs = int(input_id.max()) + 1 if len(input_id) else 0
    if run.modality == "image":
        images = []
        for i in range(n_inputs):
            rgb = store.image(run_id, i)
            if rgb is None:
                raise ValueError(f"image {i} of run {run_id} is missing from the store: re-run precompute")
            images.append(rgb)
        encoded = adapter.encode_images(images)
    else:
        texts = store.inputs(run_id)[:n_inputs]
        encoded = adapter.encode_texts(texts)
        ids = np.asarray(tokens["token_id"])
        for i, e in enumerate(encoded):
            stored = ids[input_id == i]
            if len(e.token_ids) != len(stored) or not np.array_equal(np.asarray(e.token_ids), stored):
                raise ValueError(f"input {i} of run {run_id} does not re-tokenise to the stored tokens "
                                 "(the tokenizer changed?): re-run precompute")
    return encoded
