"""Related heads: the distances (Hellinger and Jensen–Shannon against scipy / by hand), classical
MDS, nearest heads, and the run-level map on a store where two heads are identical."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from analysis.related import classical_mds, hellinger_distances, js_distances, nearest, related_map


def signatures(n_heads=5, rows=40, L=7, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(L) * 0.5, size=(n_heads, rows)), rows


@pytest.mark.parametrize("metric", [hellinger_distances, js_distances])
def test_identical_heads_have_distance_zero_and_are_each_others_nearest(metric):
    A, rows = signatures()
    A[3] = A[1]
    D = metric(A.reshape(len(A), -1), rows)
    assert D[1, 3] == pytest.approx(0.0, abs=1e-6) and D[3, 1] == D[1, 3]
    assert nearest(D, 1, 2)[0][0] == 3 and nearest(D, 3, 2)[0][0] == 1
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)
    off = D[~np.eye(len(D), dtype=bool)]
    assert (off[off > 1e-6] > 0.05).all() and (off <= 1).all()


@pytest.mark.parametrize("metric", [hellinger_distances, js_distances])
def test_disjoint_heads_have_distance_one(metric):
    rows, L = 6, 4
    a = np.zeros((rows, L))
    a[:, 0] = 1
    b = np.zeros((rows, L))
    b[:, 1:] = 1 / 3
    D = metric(np.stack([a.ravel(), b.ravel()]), rows)
    assert D[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_js_distance_matches_scipy_row_by_row():
    A, rows = signatures(n_heads=4, rows=25, L=9, seed=3)
    D = js_distances(A.reshape(4, -1), rows)
    for i in range(4):
        for j in range(4):
            per_row = [jensenshannon(A[i, r], A[j, r], base=2) for r in range(rows)]
            assert D[i, j] == pytest.approx(np.sqrt(np.mean(np.square(per_row))), abs=2e-6)


def test_hellinger_distance_by_hand():
    A, rows = signatures(n_heads=3, rows=10, L=5, seed=4)
    D = hellinger_distances(A.reshape(3, -1), rows)
    h2 = [1 - np.sum(np.sqrt(A[0, r] * A[2, r])) for r in range(rows)]
    assert D[0, 2] == pytest.approx(np.sqrt(np.mean(h2)), abs=1e-12)


def test_classical_mds_recovers_a_planar_configuration():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, 2))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    Y, explained = classical_mds(D, 2)
    assert np.allclose(np.linalg.norm(Y[:, None] - Y[None], axis=-1), D, atol=1e-9)
    assert explained == pytest.approx(1.0)
    Y2, _ = classical_mds(D, 2)
    assert np.array_equal(Y, Y2)  # deterministic, signs fixed
    for a in range(2):
        assert Y[np.argmax(np.abs(Y[:, a])), a] > 0


def test_nearest_orders_by_distance_then_index():
    D = np.array([[0, .3, .1, .1], [.3, 0, .2, .5], [.1, .2, 0, .4], [.1, .5, .4, 0]])
    assert nearest(D, 0, 3) == [(2, .1), (3, .1), (1, .3)]
    assert nearest(D, 1, 1) == [(2, .2)]


def test_related_map_shapes():
    A, rows = signatures(n_heads=6)
    out = related_map(A.reshape(6, -1), rows)
    assert out["dist"].shape == (6, 6) and out["xy"].shape == (6, 2) and 0 < out["explained"] <= 1
    assert out["metric"] == "hellinger"


def test_run_map_two_identical_heads(tmp_path):
    """A run where head (1, 0) has exactly the q/k of head (0, 0): distance 0, each other's
    nearest, listed first among the similar heads, and the same point on the map."""
    from analysis.head_scores import run_patterns
    from attention_atlas.dashboard_data import Data
    from precompute.store import Store
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path, "text", n_layers=2, n_heads=3, n_inputs=10, run_id="r", methods=("pca",), dims=(2,),
                    variants=("translated",))
    st = Store(tmp_path)
    st.put_qk("r", 1, 0, *st.qk("r", 0, 0))
    st.close()
    rp = run_patterns(Data(tmp_path), "r")
    heads = rp.related["heads"]
    D = rp.related["dist"]
    i, j = heads.index((0, 0)), heads.index((1, 0))
    assert D[i, j] == pytest.approx(0.0, abs=1e-6)
    assert rp.similar(0, 0, 1) == [((1, 0), pytest.approx(0.0, abs=1e-6))]
    assert rp.similar(1, 0, 1)[0][0] == (0, 0)
    assert np.allclose(rp.related["xy"][i], rp.related["xy"][j], atol=1e-6)
    assert rp.scores[(0, 0)] == rp.scores[(1, 0)]
    others = D[i][[k for k in range(len(heads)) if k not in (i, j)]]
    assert (others > 0.01).all()
    # the signature rows are a fixed, seeded sample: recomputing gives the identical map
    rp2 = run_patterns(Data(tmp_path), "r")   # a new Data: its own caches, so computed again
    assert np.array_equal(rp2.related["dist"], D) and np.array_equal(rp2.related["xy"], rp.related["xy"])


def test_related_figure_points_carry_their_head():
    from figures.patterns import related_figure
    heads = [(0, 0), (0, 1), (1, 0), (1, 1)]
    xy = np.arange(8.0).reshape(4, 2)
    dom = {h: ("prev" if h[1] else "first", 0.5) for h in heads}
    for color_by in ("layer", "pattern"):
        fig = related_figure(heads, xy, color_by, dom, selected=(1, 0), neighbours=[((0, 0), 0.1)])
        seen = {}
        for tr in fig.data:
            if tr.customdata is None:
                continue
            for cd, x, y in zip(tr.customdata, tr.x, tr.y):
                seen.setdefault(tuple(cd), (x, y))
        assert set(seen) == set(heads)
        for k, h in enumerate(heads):
            assert seen[h] == tuple(xy[k])
