"""Faithfulness figures (issue 13) end to end: every figure compute_head stores (PCA, UMAP and the
attention-graph UMAP of a small synthetic head) equals a direct computation; then the packaged
minilm through the CLI: an old store re-run adds only the missing figures, then the attention-graph
layout. Not in the unit loop: UMAP compiles numba code (~30 s on the loaded 2-core test machine)."""
import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine
from sklearn.manifold import trustworthiness as sk_trust

from precompute.faithfulness import figure_keys, missing_figures, picture_key, trust_fit_key
from precompute.headwork import HeadTask, compute_head
from precompute.joint import transform_qk
from precompute.metrics import attention_from_qk
from precompute.projections import ProjectionParams
from tests.helpers import direct_spearman


@pytest.fixture(scope="module")
def head():
    rng = np.random.default_rng(0)
    lens = rng.integers(8, 20, size=20)
    idx = np.repeat(np.arange(len(lens)), lens).astype(np.int32)
    n = len(idx)
    W = rng.normal(size=(16, 16)) * 0.4
    q = rng.normal(size=(n, 16)).astype(np.float32)
    k = (q @ W + rng.normal(size=(n, 16))).astype(np.float32)
    params = ProjectionParams(tsne_perplexity=10, tsne_early_iter=20, tsne_n_iter=40, umap_n_epochs=20,
                              attn_n_epochs=30)
    task = HeadTask(layer=1, head=2, queries=q, keys=k, input_index=idx, causal=True, scale=0.25,
                    variants=["translated", "raw"], methods=("pca", "umap", "attn-umap"), dims=(2, 3),
                    params=params, trust_sample=300, trust_neighbors=7)
    return task, compute_head(task)


def test_compute_head_stores_every_figure(head):
    task, res = head
    need = figure_keys(task.variants, task.methods, task.dims, "cosine")
    assert not missing_figures(res.metrics, task.variants, task.methods, task.dims, "cosine")
    assert all(-1 <= res.metrics[k] <= 1 for k in need)
    p = res.metrics["figure_params"]
    n = len(task.queries)
    assert p == {"spearman_queries": n, "tokens": n, "trust_k": 7, "trust_points": 300, "points": 2 * n,
                 "trust_metric": "cosine", "picture_metric": "euclidean"}
    assert "trust_euclidean/translated/pca/2d" in res.metrics and "trust_euclidean/translated/umap/2d" not in res.metrics


def test_compute_head_figures_equal_direct_computations(head):
    task, res = head
    q, k, idx = task.queries, task.keys, task.input_index
    n = len(q)
    for v, (tr, sc) in {"translated": (True, False), "raw": (False, False)}.items():
        qt, kt = transform_qk(q, k, tr, sc)
        assert res.metrics[f"spearman_cosine/{v}"] == pytest.approx(
            direct_spearman(q, k, idx, True, 0.25, lambda i, j: scipy_cosine(qt[i], kt[j])), abs=1e-9)
        X = np.vstack([qt, kt]).astype(np.float32)
        rng = np.random.default_rng(task.params.seed)
        sample = np.sort(rng.choice(2 * n, size=300, replace=False))
        for m in task.methods:
            for d in task.dims:
                Y = res.coords[(v, m, d)]
                assert res.metrics[picture_key(v, m, d)] == pytest.approx(
                    direct_spearman(q, k, idx, True, 0.25, lambda i, j: np.linalg.norm(Y[i].astype(float) - Y[n + j])),
                    abs=1e-6)
                assert res.metrics[f"trust/{v}/{m}/{d}d"] == pytest.approx(
                    sk_trust(X[sample], Y[sample], n_neighbors=7, metric="cosine"), abs=1e-9)
        assert res.metrics[trust_fit_key(v, "pca", 2)] == pytest.approx(
            sk_trust(X[sample], res.coords[(v, "pca", 2)][sample], n_neighbors=7, metric="euclidean"), abs=1e-9)


def test_stored_pictures_are_measured_not_recomputed(head):
    task, res = head
    stored = {key: c for key, c in res.coords.items() if key[0] == "translated"}
    again = compute_head(HeadTask(**{**task.__dict__, "variants": ["translated"], "methods": (), "dims": (),
                                     "stored": stored}))
    assert again.coords == {}
    for key in figure_keys(["translated"], task.methods, task.dims):
        assert again.metrics[key] == pytest.approx(res.metrics[key], abs=1e-12), key


@pytest.mark.parametrize("causal", [False, True])
def test_attention_graph_links_top_attended_keys_of_own_input(head, causal):
    from precompute.joint import joint_embedding
    from precompute.projections import attention_graph

    task, _ = head
    q, k, idx = task.queries, task.keys, task.input_index
    n = len(q)
    p = ProjectionParams(attn_query_keys=3, attn_key_queries=2, attn_same_role=0, attn_corpus_keys=0)
    G = attention_graph(joint_embedding(q, k), q, k, idx, causal, 0.25, p)
    assert G.shape == (2 * n, 2 * n) and abs(G - G.T).max() < 1e-6            # symmetric
    assert G.data.min() > 0 and G.data.max() <= 1
    cross = G[:n, n:].tocoo()
    assert G[:n, :n].nnz == 0 and G[n:, n:].nnz == 0                           # no same-role edges asked
    assert np.all(idx[cross.row] == idx[cross.col])                            # never another input's key
    if causal:
        pos = np.concatenate([np.arange(c) for c in np.bincount(idx)])
        # an edge (query i, key j) is either i's attended key (j <= i) or j's attending query (i >= j)
        assert np.all(pos[cross.col] <= pos[cross.row])
    for i in range(0, n, 17):                                                  # each query's top key is linked
        rows = np.nonzero(idx == idx[i])[0]
        A = attention_from_qk(q[rows], k[rows], causal, 0.25)
        top = rows[int(np.argmax(A[np.flatnonzero(rows == i)[0]]))]
        assert G[i, n + top] > 0
    wide = attention_graph(joint_embedding(q, k), q, k, idx, causal, 0.25,
                           ProjectionParams(attn_query_keys=3, attn_key_queries=2, attn_same_role=0,
                                            attn_corpus_keys=4)).tocoo()
    qk_edges = (wide.row < n) & (wide.col >= n)
    assert np.any(idx[wide.row[qk_edges]] != idx[wide.col[qk_edges] - n])       # corpus-wide keys linked
    same = attention_graph(joint_embedding(q, k), q, k, idx, causal, 0.25,
                           ProjectionParams(attn_query_keys=3, attn_key_queries=2, attn_same_role=5))
    assert same[:n, :n].nnz > 0 and same[n:, n:].nnz > 0


# ---------------------------------------------------------------- through the real pipeline
SENTENCES = ["The cat sat on the mat because it was warm.", "Where did the trophy go, and why didn't it fit?",
             "Paris is the capital of France and its largest city.", "One, two, three, four, five, six."]


# real minilm through the CLI three times: 27 s in the parallel suite on the loaded 2-core machine (59–88 s
# before UMAP's numba code was cached for the workers): no longer marked slow
def test_old_store_rerun_adds_only_missing_figures_and_attention_layout(tmp_path, capsys):
    import json

    from precompute.cli import main
    from precompute.store import Store

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    cache = tmp_path / "store"
    args = ["run", "--model", "minilm", "--corpus", str(corpus), "--cache", str(cache), "--layers", "0",
            "--heads", "0,1", "--projections", "pca,umap", "--dims", "2", "--variants", "translated",
            "--quiet", "--workers", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "joint-space ρ (cosine)" in out and "picture ρ (UMAP 2D)" in out and "AttentionViz quotes" not in out
    store = Store(cache)
    (rid,) = store.run_ids()
    full = store.metrics(rid, 0, 1)
    coords = store.coords(rid, 0, 1, "translated", "umap", 2).copy()
    # make head (0, 1) look like a store written before these figures existed
    old = {k: v for k, v in full.items() if k.startswith(("spearman/", "trust/", "time/", "warnings"))}
    store.put_metrics(rid, 0, 1, old)
    store.close()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 layers forwarded, 1 heads projected" in out, out
    store = Store(cache, readonly=True)
    again = store.metrics(rid, 0, 1)
    for key in ("spearman_cosine/translated", "picture_spearman/translated/umap/2d",
                "trust_euclidean/translated/pca/2d", "picture_spearman/translated/pca/2d"):
        assert again[key] == pytest.approx(full[key], abs=1e-9), key
    assert np.array_equal(store.coords(rid, 0, 1, "translated", "umap", 2), coords)   # measured, not redrawn
    store.close()
    # the attention-graph layout is one more projection of the same run
    assert main([a if a != "pca,umap" else "attn-umap" for a in args]) == 0
    out = capsys.readouterr().out
    assert "2 heads projected" in out and "picture ρ (attention-graph UMAP 2D)" in out
    store = Store(cache, readonly=True)
    assert store.manifest(rid)["projections"] == ["pca", "umap", "attn-umap"]
    n = len(store.tokens(rid)["text"])
    assert store.coords(rid, 0, 0, "translated", "attn-umap", 2).shape == (2 * n, 2)
    store.close()
    npz = tmp_path / "h.npz"
    assert main(["export", "--cache", str(cache), "--run", rid, "--layer", "0", "--head", "0", "--out", str(npz)]) == 0
    z = np.load(npz)
    met = json.loads(str(z["metrics"]))
    assert z["coords_attn-umap_2d"].shape == (2 * n, 2)
    assert "AttentionViz" in met["figure_definitions"]["spearman_cosine/translated"]
    assert met["figure_params"]["spearman_queries"] == n
