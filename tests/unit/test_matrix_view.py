"""Unit tests of the Matrix/Single View view models: level of detail, overlays, labels, run menu."""
from __future__ import annotations

import numpy as np
import pytest

from figures.labels import thin_labels
from figures.lod import DEFAULT_BUDGET, MAX_BUDGET, MIN_BUDGET, TARGET_MS, budget_from_cost, points_per_head
from figures.matrix import (BASE_OPACITY, FADED, LABELLED_COLS, build_matrix_data, cell_labels, interleave, matrix_colors, matrix_figure, overlay_figure,
                            overlay_points, ring_points)
from figures.colors import color_spec
from figures.tiling import LABEL_STRIP, PAD


def _store(layers, heads, n, seed=0):
    rng = np.random.default_rng(seed)
    return {(l, h): (rng.normal(size=(2 * n, 2)) * rng.uniform(0.1, 10)).astype(np.float32)
            for l in range(layers) for h in range(heads)}


def test_budget_comes_from_the_measured_draw():
    assert budget_from_cost(None) == DEFAULT_BUDGET
    assert budget_from_cost({"points": 100, "ms": 5}) == DEFAULT_BUDGET  # too small to extrapolate
    assert budget_from_cost({"points": 300_000, "ms": 600}) == int(TARGET_MS * 300_000 / 600)
    assert budget_from_cost({"points": 300_000, "ms": 1e6}) == MIN_BUDGET
    assert budget_from_cost({"points": 300_000, "ms": 1}) == MAX_BUDGET
    assert budget_from_cost({"points": "x", "ms": 3}) == DEFAULT_BUDGET
    # the note says whether the budget was measured or is the default (no draw timed yet)
    from figures.lod import describe, measured
    for cost in (None, {"points": 100, "ms": 5}, {"points": "x", "ms": 3}):
        assert not measured(cost) and budget_from_cost(cost) == DEFAULT_BUDGET
    assert measured({"points": 300_000, "ms": 600})
    assert "measured draw budget" in describe(2082, 2475, "auto", 150_000, True)
    default = describe(2082, 2475, "auto", DEFAULT_BUDGET, False)
    assert "measured" not in default and f"default budget of {DEFAULT_BUDGET:,} points" in default


def test_points_per_head_draws_all_when_the_budget_allows():
    assert points_per_head("auto", 72, 2475, 400_000) == 0            # 356,400 points: all of them
    pph = points_per_head("auto", 1024, 5000, 400_000)
    assert pph % 2 == 0 and pph * 1024 <= 400_000 and (pph + 2) * 1024 > 400_000 - 2048
    assert points_per_head(250, 72, 2475, 10**9) == 250 and points_per_head(0, 72, 10**6, 1) == 0


def test_overlay_draws_hits_outside_the_sample_where_the_full_picture_has_them():
    n = 400
    store = _store(2, 3, n)
    md = build_matrix_data([0, 1], [0, 1, 2], n, lambda l, h: store[(l, h)], {}, 50)
    assert md.sampled and len(md.idx) == 25
    outside = np.setdiff1d(np.arange(n), md.idx)[:3]
    ov = overlay_points(md, lambda l, h: store[(l, h)], outside)
    assert len(ov.x) == 2 * 3 * 6
    # the same token drawn by the full (unsampled) matrix lands on exactly the same spot
    full = build_matrix_data([0, 1], [0, 1, 2], n, lambda l, h: store[(l, h)], {}, None)
    for i, (l, h) in enumerate(md.shown):
        base = int(full.offsets[i])
        for j, t in enumerate(ov.tokens):
            for role in (0, 1):
                p = base + 2 * int(t) + role
                assert (ov.x[i * 6 + 2 * j + role], ov.y[i * 6 + 2 * j + role]) == (full.x[p], full.y[p])
    rx, ry = ring_points(ov, int(outside[1]))
    assert len(rx) == 2 * 6 and rx[0] == ov.x[2] and ry[1] == ov.y[3]
    assert len(ring_points(ov, 10**6)[0]) == 0


def test_points_leave_the_label_strip_free_and_interleave_queries_and_keys():
    n = 300
    store = _store(2, 4, n, 3)
    md = build_matrix_data([0, 1], [0, 1, 2, 3], n, lambda l, h: store[(l, h)], {}, None)
    cell = md.cell
    for i, (l, h) in enumerate(md.shown):
        r, c = md.cells[(l, h)]
        ys = md.y[md.offsets[i]:md.offsets[i + 1]]
        top = (md.n_rows - r) * cell
        assert ys.max() <= top - LABEL_STRIP * cell + 1 and ys.min() >= top - cell + PAD * cell - 1
    spec = color_spec("qk", {"text": np.array(["a"] * n)}, md.idx)
    cols, _ = matrix_colors(md, lambda l, h: spec)
    assert list(cols[:6]) == [0, 1, 0, 1, 0, 1]  # query, key, query, key…
    assert np.array_equal(interleave(np.array([1, 2, 3, 10, 20, 30])), [1, 10, 2, 20, 3, 30])


def test_cell_labels_keep_head_ids_when_ranked_and_vanish_on_wide_grids():
    n = 20
    store = _store(2, 4, n)
    rho = {(l, h): -0.1 * (h + 1) for l in range(2) for h in range(4)}
    store[(1, 3)] = None
    md = build_matrix_data([0, 1], [0, 1, 2, 3], n, lambda l, h: store[(l, h)], rho, None, order="rho")
    labels = {(l, h): text for l, h, _, _, text, _, _ in cell_labels(md)}
    assert labels[(0, 3)] == "H3 ρ −0.40" and labels[(1, 3)] == "H3 pending"
    assert md.cells[(0, 3)] == (0, 0)  # strongest |ρ| first: head 3 in the first column, still named H3
    ann = overlay_figure(md, [[0, "#000"], [1, "#000"]]).layout.annotations  # labels live on the overlay
    assert all(a.bgcolor and a.yanchor == "top" for a in ann) and len(ann) == 8
    wide = build_matrix_data([0], list(range(LABELLED_COLS + 1)), n,
                             lambda l, h: np.zeros((2 * n, 2)), {}, None)
    assert cell_labels(wide) == []


def test_thinned_labels_never_overlap():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=3000), rng.normal(size=3000)
    words = [f"w{i % 97}" for i in range(3000)]
    keep = thin_labels(x, y, words, width_px=500, height_px=400, font_px=10)
    assert 10 < len(keep) <= 200
    sx = sy = min(500 / (x.max() - x.min()), 400 / (y.max() - y.min()))
    boxes = []
    for i in keep:
        w = len(words[i]) * 10 * 0.62
        boxes.append((x[i] * sx - w / 2, -y[i] * sy - 12.5, x[i] * sx + w / 2, -y[i] * sy))
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            A, B = boxes[a], boxes[b]
            assert not (A[0] < B[2] - 1e-6 and B[0] < A[2] - 1e-6 and A[1] < B[3] - 1e-6 and B[1] < A[3] - 1e-6)
    # zooming in on a region labels more of its points
    zoom = thin_labels(x, y, words, x_range=(-0.5, 0.5), y_range=(-0.5, 0.5), width_px=500, height_px=400)
    inside = (np.abs(x) <= 0.625) & (np.abs(y) <= 0.5)  # one scale for both axes: x shows ±0.5·500/400
    assert inside[zoom].all() and len(zoom) > inside[keep].sum()
    # priority wins: a high-priority token is labelled
    pr = np.zeros(3000)
    pr[1234] = 1
    assert 1234 in thin_labels(x, y, words, pr, width_px=500, height_px=400)


def test_run_label_tells_runs_apart_and_default_run_prefers_last_then_demo():
    from callbacks.state import default_run, run_label

    def man(i, model, corpus, created):
        return {"id": i, "model": {"name": model}, "corpus": {"name": corpus, "n_tokens": 1000}, "layers": [0, 1],
                "heads": [0, 1, 2], "projections": ["pca", "tsne"], "created": created}
    a = run_label(man("aaa", "minilm", "demo", "2026-12-01T10:00:00"), {"status": "complete"})
    b = run_label(man("bbb", "minilm", "demo", "2026-12-02T11:30:00"), {"status": "partial", "heads_done": 3,
                                                                         "heads_total": 6})
    assert a != b and "2×3 heads" in a and "partial 3/6" in b and a.endswith("aaa")

    class D:
        ms = {"new": man("new", "smollm2", "x", ""), "demo": man("demo", "minilm (all-MiniLM-L6-v2)", "demo", "")}

        def manifest(self, r):
            return self.ms[r]

        def info(self, r):
            from figures.runinfo import RunInfo
            return RunInfo.from_manifest(self.ms[r])

        def status(self, r):
            return {"status": "complete"}
    assert default_run(D(), ["new", "demo"], None) == "demo"
    assert default_run(D(), ["new", "demo"], "new") == "new"
    assert default_run(D(), ["new", "demo"], "gone") == "demo"


def test_one_field_table_drives_the_url_the_layout_and_the_controls():
    from dash.development.base_component import Component

    from callbacks.state import CONTROLS
    from figures.urlstate import DEFAULTS, FIELDS, parse, serialise
    from layouts.main import layout
    found = {}

    def walk(c):
        if isinstance(c, Component):
            if getattr(c, "id", None):
                found[c.id] = c
            kids = getattr(c, "children", None)
            for k in (kids if isinstance(kids, (list, tuple)) else [kids]):
                walk(k)
    walk(layout())
    from layouts.analysis import analysis_panel  # noqa: F401 - the analysis tab control lives there
    for f in FIELDS:
        assert f.component in found, f.component
        if f.prop == "value":
            assert getattr(found[f.component], "value") == f.to_control(f.default), f.key
        assert f.from_control(f.to_control(f.default)) == f.default, f.key
    assert [c[0] for c in CONTROLS] == [f.key for f in FIELDS]
    state, problems = parse("?lod=1000&dim=3&hide=sep,cls&token=4&regex=1&proj=nope")
    assert state["lod"] == 1000 and state["dim"] == 3 and state["hide"] == "sep,cls" and state["token"] == 4
    assert state["regex"] is True and state["proj"] == DEFAULTS["proj"] and len(problems) == 1
    assert parse(serialise(state))[0] == state


def test_run_info_reads_new_and_old_manifests():
    from figures.runinfo import RunInfo
    new = RunInfo.from_manifest({"id": "r", "model": {"name": "smollm2", "modality": "text", "causal": True, "scale": 0.125,
                                                      "special_tokens": ["<|im_start|>"], "head_dim": 64},
                                 "corpus": {"name": "demo", "n_tokens": 10}, "layers": [0, 29], "heads": [0, 1],
                                 "projections": ["pca"], "dims": [2]})
    assert new.causal and new.scale == 0.125 and new.special_tokens == ("<|im_start|>",) and new.n_heads_total == 4
    assert new.has_head(29, 1) and not new.has_head(1, 1) and not new.is_image
    old = RunInfo.from_manifest({"model": {"head_dim": 16}, "corpus": {"kind": "image"}})
    assert old.scale == 0.25 and old.is_image and old.projections == ("pca",) and not old.causal
    assert old.special_tokens is None and old.attention == () and old.layer_kind(0) == "self" and not old.is_encdec
    assert old.metric == "cosine" and old.n_target_tokens == 0 and old.n_tokens_joined is None


def test_data_reads_a_run_info_once_per_manifest(tmp_path):
    from attention_atlas.dashboard_data import Data
    from figures.runinfo import RunInfo
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path, "text", n_layers=2, n_heads=3, n_inputs=2, tokens_per_input=5, run_id="r",
                    variants=("translated",), methods=("pca",), dims=(2,))
    data = Data(tmp_path)
    info = data.info("r")
    assert isinstance(info, RunInfo) and info == RunInfo.from_manifest(data.manifest("r"))
    assert data.info("r") is info and info.raw is data.manifest("r")
    data.clear()
    assert data.info("r") is not info and data.info("r") == info


def test_run_info_per_layer_semantics_match_precompute():
    """RunInfo.layer_semantics is what precompute.metrics.layer_semantics reads from the raw manifest."""
    from figures.runinfo import RunInfo, as_runinfo
    from precompute.metrics import layer_semantics
    man = {"id": "e", "layers": [0, 1, 2, 3], "heads": [0, 1],
           "model": {"scale": 0.5, "causal": False, "source": "hf:x", "identity": "id", "max_length": 64,
                     "attention": [{"kind": "encoder", "causal": False, "window": None, "softcap": None},
                                   {"kind": "decoder", "causal": True, "window": 4, "softcap": 30.0},
                                   {"kind": "cross", "causal": False},
                                   {}]},
           "corpus": {"n_tokens": 10, "n_target_tokens": 7, "targets": "given"},
           "settings": {"params": {"metric": "euclidean"}}, "forward_done": True}
    info = RunInfo.from_manifest(man)
    for layer in range(6):
        assert info.layer_semantics(layer) == layer_semantics(man["model"], layer), layer
    assert [info.layer_kind(l) for l in range(5)] == ["encoder", "decoder", "cross", "self", "self"]
    assert info.is_encdec and info.n_tokens_joined == 17 and info.targets == "given" and info.metric == "euclidean"
    assert info.source == "hf:x" and info.identity == "id" and info.max_length == 64 and info.forward_done
    assert info.raw is man and as_runinfo(info) is info and as_runinfo(man) == info
    assert info.with_causal(True).causal and not info.causal


def test_a_selected_input_too_long_for_the_budget_is_cut_and_said(tmp_path):
    from callbacks.matrix import drawn_points, matrix_outputs
    from attention_atlas.dashboard_data import Data
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path, "text", n_layers=2, n_heads=3, n_inputs=2, tokens_per_input=1100, run_id="r",
                    variants=("translated",), methods=("pca",), dims=(2,))
    data = Data(tmp_path)
    d = drawn_points(data, "r", "pca", ["on"], [], 0, "grid", 0, "qk", "", [], 5)
    assert len(d["selection"].tokens) == 1100 and d["sel_note"] == ""  # the whole input, in every head
    # a tiny budget (a slow browser) cannot hold the input in six heads: the token alone, and the note says so
    small = drawn_points(data, "r", "pca", ["on"], [], "auto", "grid", 0, "qk", "", [], 5,
                         meta={"run": "r", "lod": "auto", "pph": 20, "budget": 1000})
    assert list(small["selection"].tokens) == [5] and "only the selected token" in small["sel_note"]
    _, _, note, _, _ = matrix_outputs(data, "r", "pca", ["on"], [], 0, "grid", 0, "qk", "", [], 5)
    assert "only the selected token" not in note


def test_overlay_graph_lines_up_with_the_points_and_colours_are_the_scale_s():
    """The overlay graph (hits, selection, labels) has the main graph's size, margins, axis ranges
    and aspect, and the points' RGBA rows are the colorscale's colours of their codes."""
    from figures.colors import colorscale_lut, rgba_rows
    n = 20
    store = _store(2, 3, n)
    md = build_matrix_data([0, 1], [0, 1, 2], n, lambda l, h: store[(l, h)], {}, None)
    scale = [[0, "#000000"], [0.5, "#ff0000"], [1, "#ffffff"]]
    codes = np.arange(len(md.x)) % 256
    main = matrix_figure(md, codes.astype(np.uint8), scale)
    over = overlay_figure(md, scale, searching=True)
    for k in ("height", "margin"):
        assert main.layout[k] == over.layout[k]
    for ax in ("xaxis", "yaxis"):
        assert tuple(main.layout[ax].range) == tuple(over.layout[ax].range)
        assert main.layout[ax].constrain == over.layout[ax].constrain == "domain"
    assert main.layout.yaxis.scaleanchor == over.layout.yaxis.scaleanchor == "x"
    rows = np.asarray(main.data[0].marker.color)
    assert rows.shape == (len(md.x), 4) and rows.dtype == np.uint8 and (rows[:, 3] == 255).all()
    lut = np.maximum(colorscale_lut(scale), 2)
    assert np.array_equal(rows[:, :3], lut[codes])
    assert tuple(lut[255]) == (255, 255, 255) and tuple(lut[0]) == (2, 2, 2) and tuple(rgba_rows([128], scale)[0, :3]) == (255, 2, 2)
    # searching: the veil fades the points to what FADED used to give
    alpha = float(over.layout.plot_bgcolor.rsplit(",", 1)[1].rstrip(")"))
    assert BASE_OPACITY * (1 - alpha) == pytest.approx(FADED, abs=1e-3)
    assert [t.name for t in over.data] == ["search hits", "selected input", "selected token"]
    # the overlay's hits and selection are RGBA rows too (no per-point colorscale work in the browser)
    from figures.matrix import overlay_points
    hits = overlay_points(md, lambda l, h: store[(l, h)], np.array([3, 7]))
    hit_codes = (np.arange(len(hits.x)) * 37 % 256).astype(np.uint8)
    over = overlay_figure(md, scale, hits, hit_codes, searching=True)
    hrows = np.asarray(over.data[0].marker.color)
    assert hrows.shape == (len(hits.x), 4) and len(hits.x) > 0
    assert np.array_equal(hrows[:, :3], lut[hit_codes]) and (hrows[:, 3] == 255).all()
    assert over.data[0].marker.colorscale is None and len(np.asarray(over.data[1].marker.color)) == 0


def test_runinfo_semantics_carry_the_heads_position_bias():
    """RunInfo.layer_semantics(layer, head) == precompute.metrics.layer_semantics, bias rows included
    (T5 table, ALiBi slope); a biased layer asked without a head refuses."""
    import numpy as np
    import pytest as _pytest

    from figures.runinfo import RunInfo
    from precompute.metrics import HeadNeeded, layer_semantics

    model = {"scale": 1.0, "causal": False, "name": "t5",
             "attention": [{"kind": "encoder", "causal": False, "bias": "rel0"},
                           {"kind": "decoder", "causal": True, "bias": "alibi0"}, {"kind": "cross", "causal": False}],
             "position_bias": {"rel0": {"max_distance": 1, "values": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]},
                               "alibi0": {"alibi_slopes": [0.5, 0.25]}}}
    run = RunInfo.from_manifest({"id": "x", "layers": [0, 1, 2], "heads": [0, 1], "model": model})
    for layer in range(3):
        for head in range(2):
            mine, theirs = run.layer_semantics(layer, head), layer_semantics(model, layer, head)
            assert mine.keys() == theirs.keys()
            for key in mine:
                np.testing.assert_array_equal(mine[key], theirs[key])
    assert list(run.layer_semantics(0, 1)["bias"]) == [4.0, 5.0, 6.0] and run.layer_semantics(1, 1)["bias"] == 0.25
    assert "bias" not in run.layer_semantics(2)
    with _pytest.raises(HeadNeeded):
        run.layer_semantics(0)
