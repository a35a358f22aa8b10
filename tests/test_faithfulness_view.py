"""View models of the faithfulness figures (analysis/faithfulness.py)."""
import math

import numpy as np
import pytest

from analysis.faithfulness import (NOT_COMPUTED, UNDEFINED, figure_catalogue, head_figure_table, head_values,
                                   misleading_cells, point_distortion, rank_heads, resolve_figure)
from precompute.metrics import attention_from_qk

MANIFEST = {"id": "r", "projections": ["pca", "umap", "attn-umap"], "dims": [2, 3], "variants": ["translated"],
            "settings": {"params": {"metric": "cosine"}}}
PARAMS = {"spearman_queries": 100, "tokens": 100, "trust_k": 10, "trust_points": 200, "points": 200,
          "trust_metric": "cosine", "picture_metric": "euclidean"}


def test_catalogue_lists_every_figure_with_definition_and_direction():
    cat = figure_catalogue(MANIFEST, "translated", "pca", 2)
    ids = [e["id"] for e in cat]
    assert ids[:3] == ["picture-shown", "trust-shown", "trust-fit-shown"]
    assert ids[3:5] == ["joint-cosine", "joint-euclidean"]
    assert {"picture:attn-umap:3", "trust:umap:2", "trust-euclidean:pca:3"} <= set(ids)
    assert "trust-euclidean:umap:2" not in ids
    assert len(ids) == len(set(ids))
    by = {e["id"]: e for e in cat}
    assert by["picture-shown"]["key"] == "picture_spearman/translated/pca/2d" and by["picture-shown"]["better"] == "lower"
    assert by["trust-fit-shown"]["key"] == "trust_euclidean/translated/pca/2d" and by["trust-fit-shown"]["better"] == "higher"
    assert "AttentionViz" in by["joint-cosine"]["definition"] and by["joint-cosine"]["metric"] == "cosine"
    assert all(e["definition"] and e["label"] for e in cat)
    # the shown entries follow the projection; UMAP has no separate fitting-metric trust
    umap = {e["id"]: e for e in figure_catalogue(MANIFEST, "translated", "umap", 3)}
    assert umap["picture-shown"]["key"] == "picture_spearman/translated/umap/3d" and "trust-fit-shown" not in umap
    assert resolve_figure(MANIFEST, "trust-shown", "translated", "umap", 3)["key"] == "trust/translated/umap/3d"
    assert resolve_figure(MANIFEST, "nope", "translated", "umap", 3) is None


def test_head_table_values_hover_and_old_stores():
    met = {"spearman_cosine/translated": -0.86, "spearman/translated": -0.37,
           "picture_spearman/translated/pca/2d": 0.12, "trust/translated/pca/2d": 0.8,
           "trust_euclidean/translated/pca/2d": float("nan"), "figure_params": PARAMS}
    rows = {r["id"]: r for r in head_figure_table(met, MANIFEST, "translated", "pca", 2)}
    assert rows["joint-cosine"]["text"] == "-0.860" and rows["joint-cosine"]["value"] == -0.86
    assert rows["picture-shown"]["misleading"] and not rows["joint-cosine"]["misleading"]
    assert rows["trust-shown"]["text"] == "0.800"
    assert rows["trust-fit-shown"]["text"] == UNDEFINED
    assert "all 100" in rows["joint-cosine"]["definition"]
    # a store written before these figures: only the Euclidean ρ and cosine trust exist
    old = {"spearman/translated": -0.37, "trust/translated/pca/2d": 0.8}
    rows = {r["id"]: r for r in head_figure_table(old, MANIFEST, "translated", "pca", 2)}
    assert rows["joint-cosine"]["text"] == NOT_COMPUTED and rows["joint-cosine"]["value"] is None
    assert rows["picture-shown"]["text"] == NOT_COMPUTED and not rows["picture-shown"]["misleading"]
    assert rows["joint-euclidean"]["text"] == "-0.370" and "2,000" in rows["joint-euclidean"]["definition"]
    assert all(r["text"] == NOT_COMPUTED for r in head_figure_table(None, MANIFEST, "translated", "pca", 2))


def test_rank_and_misleading_cells():
    by_head = {(0, 0): {"picture_spearman/translated/umap/2d": -0.5},
               (0, 1): {"picture_spearman/translated/umap/2d": 0.2},
               (1, 0): {"picture_spearman/translated/umap/2d": float("nan")},
               (1, 1): {},
               (2, 0): {"picture_spearman/translated/umap/2d": -0.1}}
    vals = head_values(by_head, "picture_spearman/translated/umap/2d")
    assert vals[(1, 1)] is None and math.isnan(vals[(1, 0)])
    assert rank_heads(vals, "lower") == [(0, 0), (2, 0), (0, 1), (1, 0), (1, 1)]
    assert rank_heads(vals, "higher")[:3] == [(0, 1), (2, 0), (0, 0)]
    assert misleading_cells(by_head, "translated", "umap", 2) == {(0, 1)}


def _toy():
    rng = np.random.default_rng(1)
    idx = np.repeat([0, 1, 2], [3, 8, 12])
    n = len(idx)
    q = rng.normal(size=(n, 4))
    k = rng.normal(size=(n, 4))
    return q, k, idx, n


@pytest.mark.parametrize("causal", [False, True])
def test_point_distortion_against_direct_count(causal):
    q, k, idx, n = _toy()
    coords = np.random.default_rng(2).normal(size=(2 * n, 2))
    res = point_distortion(q, k, coords, idx, causal, 0.5, k_top=2)
    assert res["k"] == 2 and res["values"].shape == (n,)
    for i in range(n):
        rows = np.nonzero(idx == idx[i])[0]
        p = int(np.flatnonzero(rows == i)[0])
        m = p + 1 if causal else len(rows)
        if m <= 2:
            assert math.isnan(res["values"][i])
            continue
        a = attention_from_qk(q[rows], k[rows], causal, 0.5)[p, :m]
        d = np.linalg.norm(coords[i] - coords[n + rows[:m]], axis=1)
        want = len(set(np.argsort(-a)[:2]) & set(np.argsort(d)[:2])) / 2
        assert res["values"][i] == pytest.approx(want)
    assert res["undefined"] == int(np.isnan(res["values"]).sum())
    assert (res["undefined"] > 0) == causal          # causal: the first queries see <= 2 keys


def test_point_distortion_truthful_and_lying_pictures():
    q, k, idx, n = _toy()
    # for each query, a picture with its input's keys on a line at distance 1 − a (truthful)
    # or a (lying) from it
    truthful, lying = [], []
    for i in range(n):
        rows = np.nonzero(idx == idx[i])[0]
        a = attention_from_qk(q[rows], k[rows], False, 1.0)[int(np.flatnonzero(rows == i)[0])]
        c = np.zeros((2 * n, 2))
        c[i] = [0, 0]
        c[n + rows, 0] = 1 - a           # nearer = more attention
        truthful.append(point_distortion(q, k, c, idx, False, 1.0, 2)["values"][i])
        c[n + rows, 0] = a               # nearer = less attention
        lying.append(point_distortion(q, k, c, idx, False, 1.0, 2)["values"][i])
    t, l = np.array(truthful), np.array(lying)
    assert np.all(t == 1.0)
    long = np.bincount(idx)[idx] >= 4                # top-2 and bottom-2 disjoint
    assert np.all(l[long] == 0.0) and np.all(l[~long] == 0.5)


def test_point_distortion_rejects_wrong_rows():
    q, k, idx, n = _toy()
    with pytest.raises(ValueError):
        point_distortion(q, k, np.zeros((n, 2)), idx, False, 1.0)
