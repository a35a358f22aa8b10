"""Export of views (figures/export.py, callbacks/export.py) on the fixture store: the CSV numbers
equal what the dashboard computes, the HTML snapshot is self-contained, errors are one line."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from callbacks.export import ExportError, csv_export, html_export
from attention_atlas.dashboard_data import Data
from figures.attention import aggregate_by_position, attention, downsample, hide_and_renormalise
from figures.common import typed
from figures.export import (Table, csv_columns, decode_array, export_filename, external_resources, figure_table,
                            html_snapshot, parse_csv, plotly_bundle, to_csv)
from tests.helpers import state
from tests.store_fixture import make_test_store

TEXT, IMAGE, PARTIAL, CAUSAL, VNORM = "text-run", "image-run", "partial-run", "causal-run", "vnorm-run"


@pytest.fixture(scope="module")
def data():
    d = Path(tempfile.mkdtemp(prefix="atlas-export-"))
    make_test_store(d, "text", n_layers=3, n_heads=4, n_inputs=12, run_id=TEXT)
    make_test_store(d, "image", n_layers=2, n_heads=3, n_inputs=3, run_id=IMAGE, grid=5)
    make_test_store(d, "text", n_layers=2, n_heads=3, n_inputs=5, run_id=PARTIAL, seed=5, missing_heads=[(1, 1)])
    make_test_store(d, "text", n_layers=2, n_heads=2, n_inputs=4, run_id=CAUSAL, seed=3, causal=True)
    make_test_store(d, "text", n_layers=2, n_heads=3, n_inputs=5, run_id=VNORM, seed=9)
    try:  # stored value norms (what the analysis job writes), so the views can weight by them offline
        from analysis.values import STORED_NAME, stored_entry
        from precompute.store import Store
        st = Store(d)
        n_tok = len(st.tokens(VNORM)["text"])
        rng = np.random.default_rng(4)
        st.put_analysis(VNORM, STORED_NAME, stored_entry(
            {l: rng.uniform(0.2, 3.0, (3, n_tok)).astype(np.float32) for l in range(2)}))
        st.close()
    except ImportError:
        pass
    yield Data(d)
    shutil.rmtree(d, ignore_errors=True)


def f32(values):
    return np.array([float(v) for v in values], np.float64).astype(np.float32)


def f64(values):
    return np.array([float(v) if v != "" else np.nan for v in values], np.float64)


def ints(values):
    return np.array([int(v) for v in values])


def qk_attention(data, run, layer, head, input_id):
    m = data.manifest(run)
    tokens = data.tokens(run)
    rows = tokens.index.rows(input_id)
    q, k = data.qk(run, layer, head)
    return rows, attention(q[rows], k[rows], float(m["model"]["scale"]), bool(m["model"]["causal"]))


# ------------------------------------------------------------------ CSV format
def test_csv_round_trip_is_exact():
    rng = np.random.default_rng(0)
    a32 = rng.normal(size=50).astype(np.float32) * np.float32(1e-3)
    a64 = rng.normal(size=50) * 1e5
    text = np.array(['say "hi", then', "##able", "#", "a,b", "Ġthe", "naïve", "", "=1+1"] * 6 + ["x", "y"])
    t = Table(["i", "f32", "f64", "text", "flag"], [np.arange(50), a32, a64, text, np.arange(50) % 2 == 0],
              ["first comment", "second: # also fine"])
    csv = to_csv(t)
    comments, header, rows = parse_csv(csv)
    assert comments == ["first comment", "second: # also fine"]
    assert header == ["i", "f32", "f64", "text", "flag"] and len(rows) == 50
    _, cols = csv_columns(csv)
    assert np.array_equal(f32(cols["f32"]), a32)                 # float32: 9 significant digits, exact
    assert np.array_equal(f64(cols["f64"]), a64)                 # float64: 17 digits, exact
    assert cols["text"] == [str(s) for s in text]                # quotes, commas, '#' survive
    assert cols["flag"] == ["1", "0"] * 25
    assert all(line.count('"') >= 2 for line in csv.splitlines()[3:])  # text always quoted
    nan = Table(["v"], [np.array([1.0, np.nan], np.float32)])
    assert to_csv(nan).splitlines()[1:] == ["1", ""]


def test_filenames_are_safe():
    assert export_filename("run/../x y", "single", ["L1", "H2", None, ""], "csv") == "run-..-x-y_single_L1_H2.csv"
    assert export_filename(None, "matrix", [], "png") == "no-run_matrix.png"


# ------------------------------------------------------------------ per view numbers
def test_matrix_csv_is_the_drawn_sample(data):
    from callbacks.matrix import matrix_outputs
    s = state(lod=250)
    text, name, n = csv_export(data, "matrix", s, search="?run=text-run")
    fig, _, note, msg, meta = matrix_outputs(data, TEXT, "pca", ["on"], [], 250, "grid", 0, "qk", "", [])
    comments, cols = csv_columns(text)
    # one row per point of the figure the dashboard draws, in trace order
    fx, fy = decode_array(fig.to_plotly_json()["data"][0]["x"]), decode_array(fig.to_plotly_json()["data"][0]["y"])
    assert n == len(fx) == meta["n"] and name == f"{TEXT}_matrix_pca_translated_sample250.csv"
    assert np.array_equal(ints(cols["matrix_x"]), fx) and np.array_equal(ints(cols["matrix_y"]), fy)
    assert any("SAMPLE" in c and "250 of" in c for c in comments)
    assert comments[1] == "view state: ?run=text-run"
    tokens = data.tokens(TEXT)
    md = data.matrix(TEXT, "translated", "pca", 250, "grid", 0.0)
    lay, hd, tok = ints(cols["layer"]), ints(cols["head"]), ints(cols["token"])
    roles = np.array(cols["role"])
    for i, (l, h) in enumerate(md.shown):
        sl = slice(md.offsets[i], md.offsets[i + 1])
        assert (lay[sl] == l).all() and (hd[sl] == h).all()
        assert np.array_equal(tok[sl], np.repeat(md.idx, 2))  # each query next to its key
        assert list(roles[sl]) == ["query", "key"] * len(md.idx)
        c = data.coords(TEXT, l, h, "translated", "pca", 2)
        sel = np.ravel(np.c_[md.idx, tokens.n + md.idx])
        assert np.array_equal(f32(np.array(cols["proj_x"])[sl]), c[sel, 0])
        assert np.array_equal(f32(np.array(cols["proj_y"])[sl]), c[sel, 1])
        # clicking point p of the matrix opens (l, h, token): the CSV row says the same
        p = int(md.offsets[i]) + 3
        assert md.point_to_head(p)[:3] == (lay[p], hd[p], tok[p])
    assert cols["text"] == [str(tokens.text[t]) for t in tok]
    assert np.array_equal(ints(cols["position"]), np.asarray(tokens.arrays["position"])[tok])
    assert np.array_equal(ints(cols["input"]), np.asarray(tokens.arrays["input_id"])[tok])


def test_matrix_csv_all_points_and_filters(data):
    n_tok = data.tokens(TEXT).n
    text, name, n = csv_export(data, "matrix", state(lod=250, all=["on"]))
    assert n == 12 * 2 * n_tok and name.endswith("_all.csv")
    assert not any("SAMPLE" in c for c in parse_csv(text)[0])
    rho = data.rho(TEXT, "translated")
    keep = sum(abs(r) >= 0.5 for r in rho.values())
    text, _, n = csv_export(data, "matrix", state(lod=0, rho=0.5, sort="rho"))
    assert n == keep * 2 * n_tok
    assert any("hidden by the |rho| filter" in c for c in parse_csv(text)[0])
    # partial run: missing heads are named, never silently absent
    text, _, n = csv_export(data, "matrix", state(run=PARTIAL, lod=0))
    assert n == 5 * 2 * data.tokens(PARTIAL).n
    assert any("not computed yet" in c and "L1 H1" in c for c in parse_csv(text)[0])


def test_too_many_rows_is_refused_with_a_message(data, monkeypatch):
    import callbacks.export as ce
    monkeypatch.setattr(ce, "MAX_CSV_ROWS", 1000)
    with pytest.raises(ExportError, match=r"rows \(limit 1,000\).*python -m precompute export"):
        csv_export(data, "matrix", state(all=["on"]))


def test_single_csv(data):
    tokens = data.tokens(TEXT)
    n = tokens.n
    tok = 20
    text, name, rows_n = csv_export(data, "single", state(layer=2, head=3, token=tok, query="the", proj="umap"))
    assert name == f"{TEXT}_single_L2_H3_umap2d_translated.csv" and rows_n == 2 * n
    comments, cols = csv_columns(text)
    coords = data.coords(TEXT, 2, 3, "translated", "umap", 2)
    assert np.array_equal(f32(cols["x"]), coords[:, 0]) and np.array_equal(f32(cols["y"]), coords[:, 1])
    assert "z" not in cols
    assert np.array_equal(f32(cols["norm"]), data.norms(TEXT, 2, 3))
    assert cols["role"] == ["query"] * n + ["key"] * n
    match = np.array([v == "1" for v in cols["search_match"]])
    assert match[:n].sum() == (tokens.norm_texts == "the").sum() > 0
    input_id = int(np.asarray(tokens.arrays["input_id"])[tok])
    rows, a = qk_attention(data, TEXT, 2, 3, input_id)
    i = int(np.flatnonzero(rows == tok)[0])
    w = f64(cols["attention_from_selected"])
    assert np.array_equal(w[n + rows], a[i]) and np.isnan(np.delete(w, n + rows)).all()
    assert any("Spearman rho" in c for c in comments)
    # 3D and the raw variant
    text, name, _ = csv_export(data, "single", state(layer=0, head=1, dim=3, translate=[]))
    _, cols = csv_columns(text)
    c3 = data.coords(TEXT, 0, 1, "raw", "pca", 3)
    assert name.endswith("pca3d_raw.csv")
    assert np.array_equal(np.stack([f32(cols[k]) for k in "xyz"], 1), c3)


def test_sentence_csv_lines_hidden_and_aggregate(data):
    tokens = data.tokens(TEXT)
    tok = int(tokens.index.rows(3)[2])
    text, name, _ = csv_export(data, "sentence", state(layer=1, head=0, token=tok))
    assert name == f"{TEXT}_sentence_L1_H0_input3.csv"
    _, cols = csv_columns(text)
    rows, a = qk_attention(data, TEXT, 1, 0, 3)
    n = len(rows)
    assert np.array_equal(f64(cols["weight"]).reshape(n, n), a)
    assert cols["query_token"][::n] == [str(t) for t in tokens.text[rows]]
    assert np.array_equal(ints(cols["key_pos"])[:n], np.arange(n))
    # hidden [CLS] and [SEP]: rows renormalised over the rest, raw attention kept beside
    text, _, _ = csv_export(data, "sentence", state(layer=1, head=0, token=tok, hide=["cls", "sep"]))
    comments, cols = csv_columns(text)
    words = [str(t) for t in tokens.text[rows]]
    hidden = [i for i, w in enumerate(words) if w in ("[CLS]", "[SEP]")]
    assert hidden and any("hidden keys" in c for c in comments)
    assert np.allclose(f64(cols["weight"]).reshape(n, n), hide_and_renormalise(a, hidden), atol=1e-15)
    assert np.array_equal(f64(cols["attention"]).reshape(n, n), a)
    # aggregate by position over all inputs
    text, name, _ = csv_export(data, "sentence", state(layer=1, head=0, token=tok, smode="aggregate"))
    _, cols = csv_columns(text)
    q, k = data.qk(TEXT, 1, 0)
    max_len = int(min(512, max(np.asarray(tokens.arrays["input_length"]).max(), n)))
    agg = aggregate_by_position(q, k, tokens.index, float(data.manifest(TEXT)["model"]["scale"]), False, max_len)[:n, :n]
    agg = agg / agg.sum(1, keepdims=True)
    assert name.endswith("_aggregate.csv")
    assert np.allclose(f64(cols["weight"]).reshape(n, n), agg, atol=1e-12)


def test_sentence_csv_weighted_by_value_norms(data):
    """'weight by value norm' on: the export weights like the Sentence View (a·‖v‖, rows
    renormalised, then hidden keys); without norms it says so and exports plain attention."""
    values = pytest.importorskip("analysis.values")
    from figures.attention import value_weighted
    from precompute.store import Store
    tokens = data.tokens(VNORM)
    rows, a = qk_attention(data, VNORM, 1, 2, 2)
    st = Store(data.path, readonly=True)
    vn = values.input_value_norms(data.manifest(VNORM), st, 2, [1], rows)[1][2]
    text, _, _ = csv_export(data, "sentence", state(run=VNORM, layer=1, head=2, token=int(rows[1]), vnorm=["on"],
                                                    hide=["first"]))
    comments, cols = csv_columns(text)
    n = len(rows)
    want = hide_and_renormalise(value_weighted(a, vn), [0])
    assert not np.allclose(want, hide_and_renormalise(a, [0]))  # the weighting changes the numbers
    assert np.allclose(f64(cols["weight"]).reshape(n, n), want, atol=1e-15)
    assert np.array_equal(f64(cols["attention"]).reshape(n, n), a)
    assert any("value norms" in c for c in comments)
    # aggregate: every input weighted by its own norms before averaging
    text, _, _ = csv_export(data, "sentence", state(run=VNORM, layer=1, head=2, token=int(rows[1]), vnorm=["on"],
                                                    smode="aggregate"))
    _, cols = csv_columns(text)
    q, k = data.qk(VNORM, 1, 2)
    run_vn = values.run_value_norms(data.manifest(VNORM), st, [1])[1][2]
    max_len = int(np.asarray(tokens.arrays["input_length"]).max())
    agg = aggregate_by_position(q, k, tokens.index, float(data.manifest(VNORM)["model"]["scale"]), False, max_len,
                                run_vn)[:n, :n]
    assert np.allclose(f64(cols["weight"]).reshape(n, n), agg / agg.sum(1, keepdims=True), atol=1e-12)
    st.close()
    # a run without stored norms (and no model to compute them): plain attention, and a note why
    text, _, _ = csv_export(data, "sentence", state(layer=1, head=0, token=None, vnorm=["on"]))
    comments, cols = csv_columns(text)
    rows, a = qk_attention(data, TEXT, 1, 0, 0)
    assert np.array_equal(f64(cols["weight"]).reshape(len(rows), len(rows)), a)
    assert any("value norms unavailable" in c for c in comments)


def test_sentence_csv_causal(data):
    text, _, _ = csv_export(data, "sentence", state(run=CAUSAL, layer=1, head=1, token=None))
    _, cols = csv_columns(text)
    rows, a = qk_attention(data, CAUSAL, 1, 1, 0)
    w = f64(cols["weight"]).reshape(len(rows), len(rows))
    assert np.array_equal(w, a) and np.all(np.triu(w, 1) == 0)


def test_model_csv_every_head(data):
    tokens = data.tokens(TEXT)
    tok = int(tokens.index.rows(5)[0])
    text, name, n = csv_export(data, "model", state(token=tok))
    assert name == f"{TEXT}_model_input5.csv"
    _, cols = csv_columns(text)
    L, H, Q, K, W = (cols[c] for c in ("layer", "head", "query_pos", "key_pos", "weight"))
    lay, hd, w = ints(L), ints(H), f64(W)
    rows = tokens.index.rows(5)
    assert n == 12 * len(rows) ** 2
    for layer in range(3):
        for head in range(4):
            _, a = qk_attention(data, TEXT, layer, head, 5)
            sel = (lay == layer) & (hd == head)
            got = w[sel].reshape(len(rows), len(rows))
            assert np.array_equal(got, a)
            # the Model View thumbnail is the block mean of these numbers
            assert np.allclose(downsample(got, 24), downsample(a, 24))


def test_image_csv(data):
    tokens = data.tokens(IMAGE)
    rows = tokens.index.rows(1)
    tok = int(rows[7])
    text, name, n = csv_export(data, "image", state(run=IMAGE, layer=1, head=2, token=tok))
    assert name == f"{IMAGE}_image_L1_H2_input1_q7.csv" and n == len(rows)
    _, cols = csv_columns(text)
    _, a = qk_attention(data, IMAGE, 1, 2, 1)
    assert np.array_equal(f64(cols["weight"]), a[7])
    assert np.array_equal(ints(cols["patch_row"]), np.asarray(tokens.arrays["patch_row"])[rows])
    assert cols["key_token"][0] == "[CLS]" and ints(cols["patch_row"])[0] == -1
    text, name, n = csv_export(data, "image", state(run=IMAGE, layer=1, head=2, token=tok, imode="arrows"))
    _, cols = csv_columns(text)
    pidx = np.flatnonzero(np.asarray(tokens.arrays["patch_row"])[rows] >= 0)
    sub = a[np.ix_(pidx, pidx)]
    expect = sum(1 for i, j in enumerate(sub.argmax(1)) if sub[i, j] >= 0.05 and i != j)
    assert n == expect and name.endswith("_arrows.csv")
    if n:
        assert np.all(f64(cols["weight"]) >= 0.05)


def test_views_that_do_not_apply_say_why(data):
    with pytest.raises(ExportError, match="Sentence View is for text runs"):
        csv_export(data, "sentence", state(run=IMAGE, layer=0, head=0))
    with pytest.raises(ExportError, match="Image View is for image runs"):
        csv_export(data, "image", state())
    with pytest.raises(ExportError, match="L7 H0 is not in this run"):
        csv_export(data, "single", state(layer=7, head=0))
    with pytest.raises(ExportError, match="not computed yet"):
        csv_export(data, "single", state(run=PARTIAL, layer=1, head=1))
    with pytest.raises(ExportError, match="no figure"):
        csv_export(data, "analysis-patterns", state(), figures=[])


# ------------------------------------------------------------------ generic figures
def test_figure_table_decodes_typed_arrays():
    x = np.linspace(0, 1, 7).astype(np.float32)
    y = (np.arange(7) ** 2).astype(np.uint16)
    z = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    figs = [{"data": [{"type": "scattergl", "name": "pts", "x": typed(x), "y": typed(y), "text": list("abcdefg")},
                      {"type": "heatmap", "z": typed(z), "x": ["k0", "k1", "k2"], "y": ["q0", "q1"]}],
             "layout": {}},
            go.Figure(go.Bar(x=["a", "b"], y=[3, 4]))]
    t = figure_table(figs, ["g0", "g1"])
    _, cols = csv_columns(to_csv(t))
    assert t.n_rows == 7 + 6 + 2
    assert np.array_equal(f32(cols["x"][:7]), x) and np.array_equal(ints(cols["y"][:7]), y)
    assert cols["text"][:7] == list("abcdefg") and cols["trace_name"][0] == "pts"
    assert np.array_equal(f64(cols["z"][7:13]).reshape(2, 3), z)
    assert cols["x"][7:10] == ["k0", "k1", "k2"] and cols["y"][10] == "q1"
    assert cols["graph"][-1] == "g1" and cols["y"][-2:] == ["3", "4"]
    assert decode_array({"dtype": "i2", "bdata": typed(np.array([[1, -2], [3, 4]], np.int16))["bdata"],
                         "shape": "2, 2"}).tolist() == [[1, -2], [3, 4]]


# ------------------------------------------------------------------ HTML snapshot
def _figure_json(html: str, i: int = 0) -> dict:
    """The data and layout handed to Plotly.newPlot in the snapshot (plotly.io's output format)."""
    m = re.search(r'Plotly\.newPlot\(\s*"atlas-figure-%d",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"' % i, html, re.S)
    assert m, "newPlot call not found"
    return {"data": json.loads(m.group(1)), "layout": json.loads(m.group(2))}


def test_html_snapshot_is_self_contained():
    x = np.arange(300, dtype=np.uint16)
    fig = {"data": [{"type": "scattergl", "x": typed(x), "y": typed(x[::-1].copy()), "mode": "markers"}],
           "layout": {"title": {"text": "$x^2$ not typeset"}, "uirevision": "u", "xaxis": {"range": [10, 20]}}}
    html = html_snapshot([fig, go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]))], "My <view>", ["run r · L1 H2"])
    bundle = plotly_bundle()
    assert html.count(bundle) == 1 and len(bundle) > 1_000_000     # plotly.js inlined once
    assert external_resources(html) == []
    rest = html.replace(bundle, "")
    assert not re.search(r"<script[^>]+src=", rest) and "mathjax.js" not in rest.lower()
    assert "My &lt;view&gt;" in html and "run r · L1 H2" in html
    got = _figure_json(html)
    assert np.array_equal(decode_array(got["data"][0]["x"]), x)   # typed arrays kept as such
    assert got["layout"]["xaxis"]["range"] == [10, 20]            # the browser's zoom is the snapshot's
    assert "uirevision" not in got["layout"]
    assert "atlas-figure-1" in html


def test_external_resources_catches_network_references():
    fig = go.Figure(go.Scatter(x=[1], y=[1]))
    assert any("cdn.plot.ly" in u for u in external_resources(pio.to_html(fig, include_plotlyjs="cdn")))
    assert external_resources('<img src="//example.org/a.png"><style>@import "https://x.org/s.css";</style>')
    assert external_resources('<div style="background: url(https://x.org/b.png)"></div>')
    assert external_resources('<svg xmlns="http://www.w3.org/2000/svg"></svg>') == []
    assert external_resources("<p>a token http://example.org in the text is data, not a fetch</p>") == []
    with pytest.raises(ValueError, match="no figure"):
        html_snapshot([])


def test_html_export_of_a_view(data):
    from figures.views import single_figure
    from figures.colors import color_spec
    tokens = data.tokens(TEXT)
    coords = data.coords(TEXT, 1, 2, "translated", "pca", 2)
    spec = color_spec("qk", tokens.arrays, np.arange(tokens.n), freq=tokens.freq)
    fig = single_figure(coords, tokens.contexts, np.asarray(tokens.arrays["position"]), None, spec, "L1 H2", 2)
    html, name = html_export(data, "single", state(), [json.loads(fig.to_json())], "?run=text-run&layer=1&head=2")
    assert name == f"{TEXT}_single_L1_H2.html"
    got = _figure_json(html)
    assert np.array_equal(np.asarray(decode_array(got["data"][0]["x"]), np.float32), coords[:tokens.n, 0])
    assert "view state: ?run=text-run&amp;layer=1&amp;head=2" in html
    with pytest.raises(ExportError, match="shows no figure"):
        html_export(data, "single", state(), [])


# ------------------------------------------------------------------ the bar in the page
def test_export_bar_lists_every_view_with_a_graph():
    from dash import dcc

    from layouts.export import panel, views
    from layouts.main import layout
    ids, graph_paths = set(), {}

    def walk(c, path=()):
        cid = getattr(c, "id", None)
        if cid:
            ids.add(cid)
            path = path + (cid,)
            if isinstance(c, dcc.Graph):
                graph_paths[cid] = path
        kids = getattr(c, "children", None)
        for k in (kids if isinstance(kids, (list, tuple)) else [kids] if kids is not None else []):
            if hasattr(k, "to_plotly_json"):
                walk(k, path)
    walk(layout())
    covered = {c for _, _, c, _ in views()}
    for value, label, container, _ in views():
        assert container in ids, f"{label}: container {container} is not in the page"
    assert {"matrix-stack", "single-graph", "sentence-graph", "image-graph", "model-graph"} <= covered
    # every graph of the page (analysis tabs included) can be exported through one of the entries
    for gid, path in graph_paths.items():
        assert covered & set(path), f"graph {gid} is in no exportable view"
    bar = panel()
    assert bar.id == "export-bar"
    assert any(isinstance(c, dcc.Download) for c in bar.children)
