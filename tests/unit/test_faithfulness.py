"""Faithfulness figures (issue 13): each checked against a direct computation on small data."""
import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine
from scipy.stats import spearmanr
from sklearn.manifold import trustworthiness as sk_trust

from precompute.faithfulness import (describe, figure_keys, figure_summary, missing_figures, picture_key,
                                     trust_fit_key)
from precompute.headwork import HeadTask, compute_head
from precompute.joint import transform_qk
from precompute.metrics import attention_from_qk, picture_spearman, spearman_figures
from precompute.projections import ProjectionParams


def _direct(q, k, idx, causal, scale, dist):
    """Loop reference: per query over its own input's attendable keys, scipy Spearman of
    dist(i, j) against attention; mean per input, then over inputs."""
    per = []
    for u in np.unique(idx):
        rows = np.nonzero(idx == u)[0]
        A = attention_from_qk(q[rows], k[rows], causal, scale)
        vals = []
        for i in range(len(rows)):
            m = i + 1 if causal else len(rows)
            if m < 3:
                continue
            d = [dist(rows[i], rows[j]) for j in range(m)]
            r = spearmanr(d, A[i, :m]).statistic
            if np.isfinite(r):
                vals.append(r)
        if vals:
            per.append(np.mean(vals))
    return np.mean(per)


def _data(seed=3, lens=(2, 5, 9, 14), d=6):
    rng = np.random.default_rng(seed)
    idx = np.repeat(np.arange(len(lens)), lens)
    q = rng.normal(size=(len(idx), d)) + 1.0
    k = rng.normal(size=(len(idx), d)) * 2 - 0.5
    return q, k, idx


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("translate,norm_scale", [(True, False), (False, False), (True, True)])
def test_joint_cosine_and_euclidean_match_scipy_loop(causal, translate, norm_scale):
    q, k, idx = _data()
    qt, kt = transform_qk(q, k, translate, norm_scale)
    got = spearman_figures(q, k, idx, causal, 0.4, {"cos": (qt, kt, "cosine"), "euc": (qt, kt, "euclidean")})
    want_cos = _direct(q, k, idx, causal, 0.4, lambda i, j: scipy_cosine(qt[i], kt[j]))
    want_euc = _direct(q, k, idx, causal, 0.4, lambda i, j: np.linalg.norm(qt[i] - kt[j]))
    assert got["cos"] == pytest.approx(want_cos, abs=1e-10)
    assert got["euc"] == pytest.approx(want_euc, abs=1e-10)
    assert got["cos"] != pytest.approx(got["euc"], abs=1e-3)       # two definitions, two numbers


def test_picture_spearman_matches_loop_and_can_be_positive():
    q, k, idx = _data(seed=5, lens=(6, 8, 10))
    n = len(q)
    A_rows = {}
    # a picture that places each key FAR from the queries that attend to it: positive correlation
    coords = np.zeros((2 * n, 2))
    coords[:n] = 0.0
    for u in np.unique(idx):
        rows = np.nonzero(idx == u)[0]
        A = attention_from_qk(q[rows], k[rows], False, 1.0)
        A_rows[u] = A
        coords[n + rows, 0] = A.mean(axis=0) * 10     # more attention on average -> farther away
    got = picture_spearman(coords, q, k, idx, causal=False, scale=1.0)
    want = _direct(q, k, idx, False, 1.0, lambda i, j: np.linalg.norm(coords[i] - coords[n + j]))
    assert got == pytest.approx(want, abs=1e-12)
    assert got > 0.3                                     # nearer in this picture = LESS attention
    # the mirrored picture tells the truth: strongly negative
    flipped = coords.copy()
    flipped[n:, 0] = -coords[n:, 0] + coords[n:, 0].max() * 2
    assert picture_spearman(flipped, q, k, idx, causal=False, scale=1.0) < 0


def test_picture_spearman_rejects_wrong_rows():
    q, k, idx = _data()
    with pytest.raises(ValueError, match="queries then keys"):
        picture_spearman(np.zeros((len(q), 2)), q, k, idx, False, 1.0)


def test_zero_vector_cosine_is_distance_one():
    q = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    k = np.array([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5], [2.0, 1.0]])
    idx = np.zeros(4, int)
    got = spearman_figures(q, k, idx, False, 1.0, {"c": (q, k, "cosine")})["c"]
    assert np.isfinite(got)


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
            _direct(q, k, idx, True, 0.25, lambda i, j: scipy_cosine(qt[i], kt[j])), abs=1e-9)
        X = np.vstack([qt, kt]).astype(np.float32)
        rng = np.random.default_rng(task.params.seed)
        sample = np.sort(rng.choice(2 * n, size=300, replace=False))
        for m in task.methods:
            for d in task.dims:
                Y = res.coords[(v, m, d)]
                assert res.metrics[picture_key(v, m, d)] == pytest.approx(
                    _direct(q, k, idx, True, 0.25, lambda i, j: np.linalg.norm(Y[i].astype(float) - Y[n + j])),
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


def test_describe_names_definition_and_sampling():
    d = describe("spearman_cosine/translated", {"spearman_queries": 50, "tokens": 80})
    assert d["metric"] == "cosine" and d["better"] == "lower" and "a seeded sample of 50 of 80" in d["definition"]
    d = describe("spearman/raw", None)
    assert d["metric"] == "euclidean" and "2,000" in d["definition"] and "before" in d["definition"]
    d = describe("trust_euclidean/translated/pca/3d", {"trust_k": 10, "trust_points": 2000, "points": 9000})
    assert d["better"] == "higher" and "k=10" in d["definition"] and "2,000 points (seeded sample of 9,000)" in d["definition"]
    assert describe("picture_spearman/translated/attn-umap/2d")["label"] == "picture ρ (attention-graph UMAP 2D)"
    with pytest.raises(ValueError):
        describe("time/total")


def test_figure_summary_mean_median_and_missing():
    manifest = {"projections": ["pca"], "dims": [2], "settings": {"params": {"metric": "cosine"}}}
    heads = [{"spearman_cosine/translated": -0.9, "spearman/translated": -0.2},
             {"spearman_cosine/translated": -0.5, "spearman/translated": float("nan")},
             {"spearman_cosine/translated": -0.4},
             {}]
    rows = {r["key"]: r for r in figure_summary(heads, manifest)}
    c = rows["spearman_cosine/translated"]
    assert (c["n"], c["missing"], c["nan"]) == (3, 1, 0)
    assert c["mean"] == pytest.approx(-0.6) and c["median"] == pytest.approx(-0.5)
    e = rows["spearman/translated"]
    assert (e["n"], e["missing"], e["nan"], e["mean"]) == (1, 2, 1, -0.2)
    assert rows["picture_spearman/translated/pca/2d"]["n"] == 0
    assert list(rows)[:2] == ["spearman_cosine/translated", "spearman/translated"]


# ---------------------------------------------------------------- through the real pipeline
SENTENCES = ["The cat sat on the mat because it was warm.", "Where did the trophy go, and why didn't it fit?",
             "Paris is the capital of France and its largest city.", "One, two, three, four, five, six."]


def test_run_id_ignores_later_settings_left_at_default():
    from precompute.projections import stable_params
    d = stable_params(ProjectionParams())
    assert not any(k.startswith("attn_") for k in d) and d["umap_n_neighbors"] == 15
    assert stable_params(ProjectionParams(attn_weight=0.5))["attn_weight"] == 0.5


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
