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


@pytest.fixture(scope="session")
def real_server(real_store):
    import logging

    from werkzeug.serving import make_server
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from app import create_app
    srv = make_server("127.0.0.1", _free_port(), create_app(real_store[0]).server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


