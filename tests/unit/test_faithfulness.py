"""Faithfulness figures (issue 13): each checked against a direct computation on small data (what
compute_head stores, end to end with UMAP: tests/integration/test_faithfulness_pipeline.py)."""
import numpy as np
import pytest
from scipy.spatial.distance import cosine as scipy_cosine

from precompute.faithfulness import describe, figure_summary
from precompute.joint import transform_qk
from precompute.metrics import attention_from_qk, picture_spearman, spearman_figures
from precompute.projections import ProjectionParams
from tests.helpers import direct_spearman


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
    want_cos = direct_spearman(q, k, idx, causal, 0.4, lambda i, j: scipy_cosine(qt[i], kt[j]))
    want_euc = direct_spearman(q, k, idx, causal, 0.4, lambda i, j: np.linalg.norm(qt[i] - kt[j]))
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
    want = direct_spearman(q, k, idx, False, 1.0, lambda i, j: np.linalg.norm(coords[i] - coords[n + j]))
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


def test_run_id_ignores_later_settings_left_at_default():
    from precompute.projections import stable_params
    d = stable_params(ProjectionParams())
    assert not any(k.startswith("attn_") for k in d) and d["umap_n_neighbors"] == 15
    assert stable_params(ProjectionParams(attn_weight=0.5))["attn_weight"] == 0.5
