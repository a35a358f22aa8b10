import numpy as np
import pytest
from scipy.spatial.distance import cdist

from precompute.joint import VARIANTS, joint_embedding, key_translation, norm_scale_factor
from precompute.knn import exact_knn
from precompute.projections import ProjectionParams, pca_coords, project


def _qk(n=50, d=8, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, d)) * 3 + 2
    k = rng.normal(size=(n, d)) * 0.5 - 1
    return q.astype(np.float32), k.astype(np.float32)


# ---------------------------------------------------------------- joint embedding
def test_translation_equalises_centroids_and_queries_first():
    q, k = _qk()
    X = joint_embedding(q, k, translate=True)
    assert X.shape == (100, 8) and X.dtype == np.float32
    np.testing.assert_allclose(X[:50], q, rtol=1e-6)           # queries first, token order
    np.testing.assert_allclose(X[:50].mean(0), X[50:].mean(0), atol=1e-4)
    np.testing.assert_allclose(X[50:], k + key_translation(q, k), atol=1e-5)  # keys in token order
    raw = joint_embedding(q, k, translate=False)
    np.testing.assert_allclose(raw[50:], k)
    assert not np.allclose(raw[:50].mean(0), raw[50:].mean(0), atol=1e-2)


def test_scaling_equalises_mean_norms_and_keeps_dot_products():
    q, k = _qk()
    c = norm_scale_factor(q, k)
    assert c == pytest.approx(np.sqrt(np.linalg.norm(q, axis=1).mean() / np.linalg.norm(k, axis=1).mean()))
    X = joint_embedding(q, k, translate=False, scale=True)
    qs, ks = X[:50].astype(float), X[50:].astype(float)
    assert np.linalg.norm(qs, axis=1).mean() == pytest.approx(np.linalg.norm(ks, axis=1).mean(), rel=1e-5)
    np.testing.assert_allclose(qs @ ks.T, q.astype(float) @ k.T.astype(float), rtol=1e-4, atol=1e-3)
    # scale then translate: centroids equal in the final space
    Y = joint_embedding(q, k, translate=True, scale=True)
    np.testing.assert_allclose(Y[:50].mean(0), Y[50:].mean(0), atol=1e-4)
    np.testing.assert_allclose(Y[:50], qs, rtol=1e-5)
    assert set(VARIANTS) == {"translated", "raw", "translated-scaled", "raw-scaled"}


def test_scale_factor_degenerate():
    q, _ = _qk()
    assert norm_scale_factor(q, np.zeros_like(q)) == 1.0


# ---------------------------------------------------------------- exact kNN
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_bruteforce(metric):
    X = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    idx, dist = exact_knn(X, 12, metric=metric, block=64)  # several blocks
    assert idx.shape == (300, 12) and idx.dtype == np.int32 and dist.dtype == np.float32
    D = cdist(X.astype(float), X.astype(float), metric)
    np.fill_diagonal(D, np.inf)
    ref = np.argsort(D, axis=1)[:, :12]
    assert np.all(idx != np.arange(300)[:, None])              # self excluded
    assert (idx == ref).mean() > 0.999
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :12], atol=1e-5)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_exact_knn_duplicates_and_zero_vectors():
    X = np.zeros((6, 3), np.float32)
    X[3:] = 1.0
    idx, dist = exact_knn(X, 10, "cosine")
    assert idx.shape == (6, 5)                                 # k clipped to n-1
    assert np.all(idx != np.arange(6)[:, None])
    np.testing.assert_allclose(dist[3, :2], 0.0, atol=1e-6)    # exact duplicates at distance 0
    np.testing.assert_allclose(dist[0], 1.0, atol=1e-6)        # zero vector: distance 1 to all


# ---------------------------------------------------------------- projections (PCA; t-SNE and UMAP:
# tests/integration/test_projections.py)
@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(4, 10)) * 4
    return (C[rng.integers(0, 4, 240)] + rng.normal(size=(240, 10))).astype(np.float32)


def test_pca_matches_sklearn(blobs):
    from sklearn.decomposition import PCA
    ref = PCA(n_components=3).fit_transform(blobs.astype(np.float64))
    ours = pca_coords(blobs, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    res = project(blobs, methods=("pca",), dims=(2,))
    np.testing.assert_allclose(res[("pca", 2)], ref[:, :2], atol=1e-3)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_torch_and_numpy_paths_agree(metric):
    pytest.importorskip("torch")
    X = np.random.default_rng(2).normal(size=(500, 12)).astype(np.float32)
    a_idx, a_d = exact_knn(X, 20, metric=metric, block=128, use_torch=True)
    b_idx, b_d = exact_knn(X, 20, metric=metric, block=128, use_torch=False)
    assert a_idx.dtype == np.int32 and a_d.dtype == np.float32
    assert (a_idx == b_idx).mean() > 0.999
    np.testing.assert_allclose(a_d, b_d, atol=1e-5)


def test_exact_knn_torch_respects_omp_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    X = np.random.default_rng(3).normal(size=(100, 4)).astype(np.float32)
    exact_knn(X, 5)
    assert torch.get_num_threads() == before                   # restored afterwards


def test_default_params_documented():
    p = ProjectionParams()
    doc = ProjectionParams.__doc__
    for name in ("tsne_early_iter", "tsne_n_iter", "tsne_3d_from2d_n_iter", "umap_n_epochs", "knn_block"):
        assert name in doc and hasattr(p, name)
    assert (p.tsne_early_iter, p.tsne_n_iter, p.tsne_3d_from2d_n_iter, p.umap_n_epochs) == (60, 140, 10, 50)
