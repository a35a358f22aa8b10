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


# ------------------------------------------------------------------ point distortion with a window
def test_point_distortion_sliding_window_counts_only_keys_in_reach():
    q, k, idx, n = _toy()
    coords = np.random.default_rng(3).normal(size=(2 * n, 2))
    res = point_distortion(q, k, coords, idx, True, 0.5, k_top=2, window=4)
    for i in range(n):
        rows = np.nonzero(idx == idx[i])[0]
        p = int(np.flatnonzero(rows == i)[0])
        ok = [j for j in range(len(rows)) if j <= p and p - j <= 4]
        if len(ok) <= 2:
            assert math.isnan(res["values"][i])
            continue
        a = attention_from_qk(q[rows], k[rows], True, 0.5, 4)[p, ok]
        d = np.linalg.norm(coords[i] - coords[n + rows[ok]], axis=1)
        want = len(set(np.argsort(-a, kind="stable")[:2]) & set(np.argsort(d, kind="stable")[:2])) / 2
        assert res["values"][i] == pytest.approx(want)
    assert "2 most-attended keys" in res["definition"] and res["label"] == "picture agreement (top-2)"


# ------------------------------------------------------------------ Matrix View orders by a figure
from analysis.faithfulness import (DISTORTION_K, all_figure_sort_options, filter_label, figure_order,  # noqa: E402
                                   order_figure_id, sort_figure_options)
from figures.matrix import (build_matrix_data, cell_hover, cell_labels, faithfulness_note,  # noqa: E402
                            misleading_shapes, passes_filter, score_shade)
from figures.urlstate import FIGURE_SORT, parse, serialise  # noqa: E402

FULL = {"id": "r", "projections": ["pca", "tsne", "umap", "attn-umap", "attn-tsne"], "dims": [2, 3],
        "variants": ["translated"], "settings": {"params": {"metric": "cosine"}}}


def test_every_figure_order_round_trips_through_the_url():
    ids = [e["id"] for e in figure_catalogue(FULL, "translated", "umap", 2)]
    ids += [e["id"] for e in figure_catalogue(FULL, "translated", "pca", 3)]
    for fid in set(ids):
        assert FIGURE_SORT.fullmatch(figure_order(fid)), fid
        state, problems = parse(f"?sort={figure_order(fid)}&rho=0.3&proj=attn-umap")
        assert not problems and state["sort"] == figure_order(fid) and order_figure_id(state["sort"]) == fid
        assert parse(serialise(state))[0] == state      # a shared link reopens the same view
    for bad in ("fig:nope", "fig:picture:umap:4", "fig:picture:evil:2", "fig:"):
        state, problems = parse(f"?sort={bad}")
        assert state["sort"] == "grid" and problems and "sort=" in problems[0]
    # the page's initial menu holds every figure order a link can carry
    listed = {o["value"] for o in all_figure_sort_options()}
    assert {figure_order(f) for f in ids} <= listed and all(FIGURE_SORT.fullmatch(v) for v in listed)


def test_sort_options_name_each_figure_and_its_direction():
    opts = sort_figure_options(MANIFEST, "translated", "umap")
    by = {o["value"]: o for o in opts}
    assert by["fig:picture-shown"]["label"] == "by picture ρ (shown: UMAP 2D) (most negative first)"
    assert by["fig:trust-shown"]["label"].endswith("(highest first)") and "cosine" in by["fig:trust-shown"]["label"]
    assert "AttentionViz" in by["fig:joint-cosine"]["title"]
    assert [o["value"] for o in opts] == [figure_order(e["id"]) for e in figure_catalogue(MANIFEST, "translated", "umap", 2)]
    assert filter_label(None) == "show heads with |ρ euc| ≥"
    assert filter_label(resolve_figure(MANIFEST, "picture-shown", "translated", "umap", 2)) == \
        "show heads with picture ρ (shown: UMAP 2D) ≤ −"
    assert filter_label(resolve_figure(MANIFEST, "trust-shown", "translated", "umap", 2)).endswith("≥")


def test_passes_filter_keeps_the_faithful_side():
    assert passes_filter(-0.5, "lower", 0.3) and not passes_filter(-0.2, "lower", 0.3)
    assert not passes_filter(0.5, "lower", 0.3)          # strongly positive = misleading, not "strong"
    assert passes_filter(0.95, "higher", 0.9) and not passes_filter(0.85, "higher", 0.9)
    assert not passes_filter(float("nan"), "lower", 0.1) and not passes_filter(None, "higher", 0.1)
    assert passes_filter(None, "lower", 0.0)             # no threshold: every head


def _matrix(scores, entry, threshold=0.0, misleading=()):
    layers, heads = [0, 1], [0, 1, 2, 3]
    n = 5
    coords = np.random.default_rng(0).normal(size=(2 * n, 2))
    rho = {(l, h): -0.5 for l in layers for h in heads}
    return build_matrix_data(layers, heads, n, lambda l, h: coords, rho, None, order=figure_order(entry["id"]),
                             rho_threshold=threshold, scores=scores, score_label=entry["short"], score_fig=entry,
                             misleading=misleading, misleading_label="picture ρ (UMAP 2D)")


def test_matrix_ranks_shades_labels_and_filters_by_a_figure():
    entry = resolve_figure(MANIFEST, "picture-shown", "translated", "umap", 2)
    scores = {(0, 0): 0.2, (0, 1): -0.6, (0, 2): float("nan"), (0, 3): -0.1,
              (1, 0): -0.3, (1, 1): -0.3, (1, 2): 0.05}            # (1, 3): not computed
    md = _matrix(scores, entry, misleading=[(0, 0), (1, 2)])
    vals = {lh: scores.get(lh) for lh in md.cells}
    for layer in (0, 1):  # each row is rank_heads of that layer, most faithful (most negative) first
        row = [lh for lh, _ in sorted(((lh, rc) for lh, rc in md.cells.items() if lh[0] == layer), key=lambda t: t[1])]
        assert row == rank_heads({lh: v for lh, v in vals.items() if lh[0] == layer}, "lower")
    labels = {(l, h): lab for l, h, _, _, lab, _, _ in cell_labels(md)}
    assert labels[(0, 1)] == "H1 ρ pic −0.60" and labels[(0, 0)] == "⚠H0 ρ pic +0.20" and labels[(0, 2)] == "H2 ρ pic n/a"
    assert "picture ρ (shown: UMAP 2D) +0.20" in cell_hover(md, 0, 0) and "misleads" in cell_hover(md, 0, 0)
    shade = score_shade(md.order, md.scores, md.score_fig)
    assert shade[(0, 1)] == 1.0 and shade[(0, 0)] == 0.0 and (0, 2) not in shade   # min–max, faithful darkest
    outlines = misleading_shapes(md)
    assert len(outlines) == 2 and all(s["line"]["color"] == "rgb(214,39,40)" for s in outlines)
    note = " · ".join(faithfulness_note(md))
    assert "ranked within each layer by picture ρ (shown: UMAP 2D)" in note and "2 heads whose picture ρ (UMAP 2D)" in note
    # the filter applies to the figure, on its faithful side
    md = _matrix(scores, entry, threshold=0.25)
    assert sorted(md.shown) == [(0, 1), (1, 0), (1, 1)]
    assert "hidden by the filter on picture ρ (shown: UMAP 2D)" in " · ".join(faithfulness_note(md))
    trust = resolve_figure(MANIFEST, "trust-shown", "translated", "umap", 2)
    md = _matrix({(0, 0): 0.9, (0, 1): 0.95, (0, 2): 0.8, (0, 3): 0.97}, trust, threshold=0.9)
    assert [h for (l, h), (r, c) in sorted(md.cells.items(), key=lambda t: t[1]) if l == 0] == [3, 1, 0, 2]
    assert sorted(md.shown) == [(0, 0), (0, 1), (0, 3)]
    assert {(l, h): lab for l, h, _, _, lab, _, _ in cell_labels(md)}[(0, 3)] == "H3 trust cos 0.97"


# ------------------------------------------------------------------ picture-agreement colours
from figures.colors import AGREEMENT_K, agreement_codes, agreement_share, color_spec  # noqa: E402


def test_agreement_colours_are_the_measured_shares():
    assert AGREEMENT_K == DISTORTION_K
    q, k, idx, n = _toy()
    coords = np.random.default_rng(4).normal(size=(2 * n, 2))
    pd_ = point_distortion(q, k, coords, idx, False, 0.5)
    tokens = {"text": np.array(["w"] * n)}
    spec = color_spec("picture_agreement", tokens, np.arange(n), agreement=pd_["values"], agreement_definition="D")
    qc, kc = spec.values[:n], spec.values[n:]
    assert (kc == 0).all()                                    # keys are not coloured
    back = agreement_share(qc)
    assert np.array_equal(np.isnan(back), np.isnan(pd_["values"]))
    np.testing.assert_allclose(back[~np.isnan(back)], pd_["values"][~np.isnan(pd_["values"])])
    assert (qc[np.isnan(pd_["values"])] == 1).all() and set(agreement_codes([0, 1])) == {2, 255}
    assert spec.colorbar["ticktext"] == ["0 of 3", "1 of 3", "2 of 3", "3 of 3"]
    j = int(np.flatnonzero(~np.isnan(pd_["values"]))[0])
    assert f"picture agreement {int(round(pd_['values'][j] * 3))} of 3" in spec.hover[j]
    assert spec.legend["definition"] == "D" and "3 nearest" in spec.legend["lo"]
    # without the head's values (the legend's sample), every query is undefined
    assert (color_spec("picture_agreement", tokens, np.arange(n)).values[:n] == 1).all()


# ------------------------------------------------------------------ the dashboard's reads (a fixture store)
@pytest.fixture(scope="module")
def figure_store(tmp_path_factory):
    from precompute.store import Store
    from tests.store_fixture import make_test_store
    d = tmp_path_factory.mktemp("faith-view")
    make_test_store(d, "text", n_layers=2, n_heads=4, n_inputs=6, run_id="t", variants=("translated",))
    make_test_store(d, "text", n_layers=1, n_heads=2, n_inputs=3, run_id="old", variants=("translated",))
    st = Store(d)
    rng = np.random.default_rng(0)
    for l in range(2):
        for h in range(4):
            met = st.metrics("t", l, h)
            for m in ("pca", "tsne", "umap"):
                met[f"picture_spearman/translated/{m}/2d"] = float(rng.uniform(-0.6, 0.3))
            met["spearman_cosine/translated"] = float(rng.uniform(-0.9, -0.2))
            st.put_metrics("t", l, h, met)
    st.close()
    return d


def test_data_matrix_by_a_stored_figure(figure_store):
    from attention_atlas.dashboard_data import Data
    data = Data(figure_store)
    by_head = data.head_metrics("t")
    md = data.matrix("t", "translated", "umap", 0, "fig:picture-shown", 0.0)
    key = "picture_spearman/translated/umap/2d"
    assert md.score_fig["key"] == key and md.scores == {lh: m[key] for lh, m in by_head.items()}
    for layer in (0, 1):
        row = [lh for lh, _ in sorted(((lh, rc) for lh, rc in md.cells.items() if lh[0] == layer), key=lambda t: t[1])]
        assert row == rank_heads(head_values({lh: m for lh, m in by_head.items() if lh[0] == layer}, key), "lower")
    assert md.misleading == sorted(misleading_cells(by_head, "translated", "umap", 2)) and md.misleading
    assert md.misleading_label == "picture ρ (UMAP 2D)"
    # the shown picture follows the projection; a figure the run lacks falls back to the grid, said in one line
    assert data.matrix("t", "translated", "pca", 0, "fig:picture-shown", 0.0).score_fig["key"].endswith("/pca/2d")
    md = data.matrix("t", "translated", "umap", 0, "fig:trust-fit-shown", 0.0)
    assert md.order == "grid" and "no figure 'trust-fit-shown'" in md.note and "\n" not in md.note
    md = data.matrix("old", "translated", "umap", 0, "fig:joint-cosine", 0.5)
    assert md.order == "grid" and "not computed — re-run precompute to add it" in md.note and not md.misleading
    assert not md.score_fig  # the fallback filters by |ρ| (and the filter's label says so)
    from callbacks.faithfulness import filter_label_for
    assert filter_label_for(data, "old", "fig:joint-cosine", "umap", ["on"], []) == "show heads with |ρ euc| ≥"
    assert filter_label_for(data, "t", "fig:joint-cosine", "umap", ["on"], []) == \
        "show heads with joint-space ρ (cosine) ≤ −"


def test_data_picture_agreement_is_point_distortion_of_the_stored_picture(figure_store):
    from attention_atlas.dashboard_data import Data
    from precompute.metrics import layer_semantics
    data = Data(figure_store)
    pa = data.picture_agreement("t", 1, 2, "translated", "umap", 2)
    qk, tokens = data.qk("t", 1, 2), data.tokens("t")
    want = point_distortion(qk[0], qk[1], data.coords("t", 1, 2, "translated", "umap", 2),
                            tokens.arrays["input_id"], **layer_semantics(data.manifest("t")["model"], 1))
    np.testing.assert_array_equal(pa["values"], want["values"])
    assert pa["k"] == DISTORTION_K and data.picture_agreement("t", 1, 2, "translated", "attn-umap", 2) is None
