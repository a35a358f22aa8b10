"""The t-SNE and UMAP projections of precompute.projections on small blobs: shapes, determinism,
clusters kept, degenerate inputs, a precomputed kNN reused. Not in the unit loop: the first UMAP
of a process compiles numba code (~10 s idle, ~30 s on the loaded 2-core test machine)."""
import numpy as np
import pytest

from precompute.knn import exact_knn
from precompute.projections import DIMS, METHODS, ProjectionParams, project

FAST = ProjectionParams(tsne_perplexity=10, tsne_early_iter=30, tsne_n_iter=60,
                        tsne_3d_early_iter=20, tsne_3d_n_iter=40, tsne_3d_from2d_n_iter=30,
                        umap_n_epochs=30)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(4, 10)) * 4
    return (C[rng.integers(0, 4, 240)] + rng.normal(size=(240, 10))).astype(np.float32)


@pytest.fixture(scope="module")
def projected(blobs):
    return project(blobs, params=FAST)


def test_project_shapes_finite(projected, blobs):
    assert set(projected) == {(m, d) for m in METHODS for d in DIMS}
    for (m, d), Y in projected.items():
        assert Y.shape == (len(blobs), d) and Y.dtype == np.float32
        assert np.all(np.isfinite(Y))
        assert Y.std(axis=0).min() > 0
    assert projected.warnings == []
    assert {"knn", "tsne2d", "tsne3d", "umap2d", "umap3d"} <= set(projected.timings)


def test_project_deterministic_and_seed_dependent(projected, blobs):
    again = project(blobs, params=FAST)
    for key in projected:
        np.testing.assert_array_equal(projected[key], again[key])
    other = project(blobs, methods=("tsne", "umap"), params=ProjectionParams(**{**FAST.to_dict(), "seed": 5}))
    for key in other:
        assert not np.allclose(other[key], projected[key]), key


def test_projection_keeps_clusters(projected, blobs):
    from sklearn.manifold import trustworthiness
    for key in [("tsne", 2), ("umap", 2), ("tsne", 3)]:
        assert trustworthiness(blobs, projected[key], n_neighbors=5) > 0.85, key


@pytest.mark.parametrize("case", ["tiny", "duplicates", "zeros", "one", "lowdim"])
def test_degenerate_inputs(case):
    rng = np.random.default_rng(0)
    if case == "tiny":
        X = rng.normal(size=(5, 4))
    elif case == "duplicates":
        X = np.repeat(rng.normal(size=(3, 4)), 20, axis=0)
    elif case == "zeros":
        X = rng.normal(size=(60, 4))
        X[:10] = 0
    elif case == "one":
        X = rng.normal(size=(1, 4))
    else:
        X = rng.normal(size=(40, 1))
    res = project(X.astype(np.float32), params=FAST)
    for (m, d), Y in res.items():
        assert Y.shape == (len(X), d) and np.all(np.isfinite(Y)), (case, m, d)
    if case in ("tiny", "duplicates", "zeros", "one"):
        assert res.warnings, case


def test_precomputed_knn_reused(blobs):
    knn = exact_knn(blobs, 30, "cosine")
    a = project(blobs, methods=("tsne",), dims=(2,), params=FAST, knn=knn)
    b = project(blobs, methods=("tsne",), dims=(2,), params=FAST)
    np.testing.assert_allclose(a[("tsne", 2)], b[("tsne", 2)], atol=1e-5)
