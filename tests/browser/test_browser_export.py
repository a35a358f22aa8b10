"""The export bar in headless Chromium: PNG, SVG, HTML and CSV of the Single View and the Matrix
View on the fixture store and on real runs (minilm, smollm2, dinov2-small). Files land in a
temporary download directory (CDP Browser.setDownloadBehavior) and are checked: PNG magic bytes
and size, SVG parsed with the traces' points where the graph drew them, the HTML snapshot opened
offline showing the same points, CSV numbers equal to the store / the drawn figure."""
from __future__ import annotations

import re
import shutil
import struct
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from figures.attention import attention
from figures.export import csv_columns, external_resources, plotly_bundle
from tests.browser.helpers import TEXT, collect_logs, gd_js, open_url, shot, wait, wait_idle

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def downloads(driver):
    d = Path(tempfile.mkdtemp(prefix="atlas-dl-"))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(d)})
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ helpers
def export(d, folder: Path, fmt: str, name: str, timeout=30) -> Path:
    """Click the export button ``fmt`` and wait for ``name`` to be fully downloaded."""
    target = folder / name
    if target.exists():
        target.unlink()
    d.find_element(By.ID, f"export-{fmt}").click()
    end, last = time.time() + timeout, -1
    while time.time() < end:
        if target.exists() and not list(folder.glob("*.crdownload")):
            size = target.stat().st_size
            if size > 0 and size == last:
                return target
            last = size
        time.sleep(0.2)
    raise AssertionError(f"{name} not downloaded; export bar says: "
                         f"{d.find_element(By.ID, 'export-msg').text!r}; files: {[p.name for p in folder.iterdir()]}")


def png_size(path: Path) -> tuple[int, int]:
    b = path.read_bytes()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert b[12:16] == b"IHDR"
    return struct.unpack(">II", b[16:24])


def graph_size(d, gid):
    return d.execute_script(gd_js(gid, "[Math.round(g._fullLayout.width), Math.round(g._fullLayout.height)]"))


def svg_traces(path: Path):
    """[(trace class, [(x, y) of each marker])] of the scatter traces in a Plotly SVG."""
    root = ET.parse(path).getroot()  # raises on malformed XML
    assert root.tag == f"{SVG_NS}svg"
    out = []
    for g in root.iter(f"{SVG_NS}g"):
        cls = g.get("class", "")
        if cls.startswith("trace scatter"):
            pts = []
            for p in g.iter(f"{SVG_NS}path"):
                if "point" in p.get("class", "").split():
                    tr = p.get("transform", "")
                    x, y = tr[tr.index("(") + 1:tr.index(")")].split(",")
                    pts.append((float(x), float(y)))
            out.append((cls, pts))
    return out


def pixel_positions(d, gid, trace, idx):
    """Where Plotly puts points ``idx`` of a 2D trace, in the plot area's pixel frame (SVG translate)."""
    return d.execute_script(gd_js(gid, f"""(function() {{
        var t = g._fullData[{trace}], xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis;
        return {list(idx)}.map(function(i) {{ return [xa.d2p(t.x[i]), ya.d2p(t.y[i])]; }}); }})()"""))


def open_offline(d, path: Path):
    """Open a downloaded HTML file with the network switched off; returns the page's resource URLs."""
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                           "uploadThroughput": -1})
    try:
        d.get(path.as_uri())
        wait(d, "var g = document.querySelector('.js-plotly-plot'); return !!(g && g._fullData && g._fullData.length)",
             30, "snapshot drawn offline")
        return d.execute_script("return performance.getEntriesByType('navigation').concat("
                                "performance.getEntriesByType('resource')).map(e => e.name)")
    finally:
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                               "downloadThroughput": -1, "uploadThroughput": -1})
        d.execute_cdp_cmd("Network.disable", {})


COUNTS = "g._fullData.map(t => t._length || (t.z ? t.z.length * (t.z[0] && t.z[0].length || 1) : 0))"


def drawn_counts(d, gid):
    """Points (cells for heatmaps) of each trace of a graph in the app."""
    return d.execute_script(gd_js(gid, COUNTS))


def check_html(d, path: Path, expected_points: list[int], shot_name: str | None = None, open_it: bool = True):
    """The snapshot is self-contained, opens with the network off and draws ``expected_points``
    (per trace) — counted with the same expression as in the app."""
    html = path.read_text(encoding="utf-8")
    assert plotly_bundle() in html, "plotly.js must be inlined"
    assert external_resources(html) == []
    rest = html.replace(plotly_bundle(), "").lower()
    assert "<script src" not in rest and "mathjax.js" not in rest and not re.search(r"https?://[\w.-]*cdn", rest)
    if not open_it:
        return
    names = open_offline(d, path)
    assert all(n.startswith(("file:", "data:", "blob:", "about:")) for n in names), names
    counts = d.execute_script("return Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => "
                              + COUNTS + ")")
    assert counts == [expected_points], (counts, expected_points)
    errors = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    if shot_name:
        shot(d, shot_name, height=760)


def choose_view(d, label):
    """Pick ``label`` in the export bar's view dropdown (opening it if it is closed)."""
    find = f"""return Array.from(document.querySelectorAll('.dash-dropdown-option')).find(
               e => e.innerText.trim() === {label!r}) || null;"""
    for _ in range(2):
        if not d.execute_script(find):
            d.find_element(By.ID, "export-view").click()
        try:
            wait(d, find, 3, f"option {label}").click()
            break
        except AssertionError:
            continue
    wait_idle(d)
    assert d.find_element(By.ID, "export-view").text.strip() == label


def read_csv(path: Path):
    comments, cols = csv_columns(path.read_text(encoding="utf-8"))
    return comments, cols


def _f(values):
    return np.array([float(v) if v != "" else np.nan for v in values])


# ------------------------------------------------------------------ checks shared by fixture and real runs
def check_single(d, folder, data, run, layer, head, proj, dim=2, token=None):
    """CSV, PNG, SVG and HTML of the Single View at (run, layer, head); returns (html file,
    points per trace drawn in the app) for :func:`check_html` once the page is left."""
    tokens = data.tokens(run)
    n = tokens.n
    choose_view(d, "Single View")
    base = f"{run}_single_L{layer}_H{head}"
    # CSV: every point with the stored projection's numbers
    p = export(d, folder, "csv", f"{base}_{proj}{dim}d_translated.csv")
    comments, cols = read_csv(p)
    assert any(f"run {run}" in c for c in comments) and any(f"L{layer} H{head}" in c for c in comments)
    assert len(cols["x"]) == 2 * n
    coords = data.coords(run, layer, head, "translated", proj, dim)
    assert np.array_equal(_f(cols["x"]).astype(np.float32), coords[:, 0])
    assert np.array_equal(_f(cols["y"]).astype(np.float32), coords[:, 1])
    assert cols["role"][:n] == ["query"] * n and cols["role"][n:] == ["key"] * n
    assert cols["text"][:n] == [str(t) for t in tokens.text]
    assert np.allclose(_f(cols["norm"]), data.norms(run, layer, head), rtol=1e-6)
    drawn = d.execute_script(gd_js("single-graph", "Array.from(g._fullData[0].x)"))
    assert np.array_equal(np.float32(drawn), _f(cols["x"][:n]).astype(np.float32))  # what the browser drew
    if token is not None:
        m = data.manifest(run)
        q, k = data.qk(run, layer, head)
        rows = tokens.index.rows(int(np.asarray(tokens.arrays["input_id"])[token]))
        a = attention(q[rows], k[rows], float(m["model"]["scale"]), bool(m["model"]["causal"]))
        i = int(np.flatnonzero(rows == token)[0])
        got = _f(cols["attention_from_selected"])[n + rows]
        assert np.allclose(got, a[i], atol=1e-15) and abs(got.sum() - 1) < 1e-9
    # PNG at twice the graph's size; SVG with every query and key point where Plotly drew it
    w, h = graph_size(d, "single-graph")
    assert png_size(export(d, folder, "png", base + ".png")) == (2 * w, 2 * h)
    traces = svg_traces(export(d, folder, "svg", base + ".svg"))
    assert len(traces) >= 2 and len(traces[0][1]) == n and len(traces[1][1]) == n, [(c, len(p)) for c, p in traces]
    idx = sorted({0, n // 3, n - 1})
    got = [traces[0][1][i] for i in idx]
    want = pixel_positions(d, "single-graph", 0, idx)
    assert np.allclose(got, want, atol=0.05), (got, want)
    counts = drawn_counts(d, "single-graph")
    assert counts[:2] == [n, n]
    return export(d, folder, "html", base + ".html"), counts


def check_matrix(d, folder, data, run, proj, all_points=False):
    """CSV (the drawn sample, optionally every point), PNG, SVG, HTML of the Matrix View."""
    tokens = data.tokens(run)
    m = data.manifest(run)
    n_heads = len(m["layers"]) * len(m["heads"])
    choose_view(d, "Matrix View")
    n_points = d.execute_script(gd_js("matrix-graph", "g._fullData[0].x.length"))
    per_head = n_points // n_heads
    sampled = per_head < 2 * tokens.n
    name = f"{run}_matrix_{proj}_translated_{'sample%d' % per_head if sampled else 'all'}.csv"
    comments, cols = read_csv(export(d, folder, "csv", name))
    assert len(cols["point"]) == n_points
    assert any("SAMPLE" in c for c in comments) == sampled
    drawn_x = d.execute_script(gd_js("matrix-graph", "Array.from(g._fullData[0].x)"))
    drawn_y = d.execute_script(gd_js("matrix-graph", "Array.from(g._fullData[0].y)"))
    assert [int(v) for v in cols["matrix_x"]] == drawn_x and [int(v) for v in cols["matrix_y"]] == drawn_y
    # the projection columns are each head's stored coordinates of that token
    lay, hd, tok = (np.array([int(v) for v in cols[c]]) for c in ("layer", "head", "token"))
    key = np.array([r == "key" for r in cols["role"]])
    for l, h in {(int(a), int(b)) for a, b in zip(lay[::97], hd[::97])}:
        sel = (lay == l) & (hd == h)
        c = data.coords(run, l, h, "translated", proj, 2)
        rows = tok[sel] + tokens.n * key[sel]
        assert np.array_equal(_f(np.array(cols["proj_x"])[sel]).astype(np.float32), c[rows, 0])
        assert np.array_equal(_f(np.array(cols["proj_y"])[sel]).astype(np.float32), c[rows, 1])
    assert cols["text"][::50] == [str(tokens.text[t]) for t in tok[::50]]
    if all_points:
        d.find_element(By.CSS_SELECTOR, "#export-all input").click()
        n_all = n_heads * 2 * tokens.n
        comments, cols = read_csv(export(d, folder, "csv", f"{run}_matrix_{proj}_translated_all.csv"))
        assert len(cols["point"]) == n_all and not any("SAMPLE" in c for c in comments)
        d.find_element(By.CSS_SELECTOR, "#export-all input").click()
    w, h = graph_size(d, "matrix-graph")
    base = f"{run}_matrix"
    assert png_size(export(d, folder, "png", base + ".png")) == (2 * w, 2 * h)
    traces = svg_traces(export(d, folder, "svg", base + ".svg"))
    # WebGL points redrawn as vector markers: the points, then the non-empty overlays (selected input, its token)
    n_drawn = sum(d.execute_script(gd_js(g, "g._fullData.filter(t => t.x.length > 0).length"))
                  for g in ("matrix-graph", "matrix-overlay"))  # the overlay is exported with the points
    assert len(traces) == n_drawn and len(traces[0][1]) == n_points
    idx = sorted({0, n_points // 2, n_points - 1})
    assert np.allclose([traces[0][1][i] for i in idx], pixel_positions(d, "matrix-graph", 0, idx), atol=0.05)
    return export(d, folder, "html", base + ".html"), drawn_counts(d, "matrix-graph") + drawn_counts(d, "matrix-overlay")


# ------------------------------------------------------------------ fixture store
def test_exports_fixture(server, driver, downloads):
    base, context = server
    data = context.data
    open_url(driver, base, f"?run={TEXT}&layer=1&head=2&token=5&proj=pca&lod=250")
    wait(driver, gd_js("single-graph", "g._fullLayout.title.text.startsWith('L1 H2')"), 15, "single view L1 H2")
    wait_idle(driver)
    assert driver.find_element(By.ID, "export-bar").is_displayed()
    for b in ("PNG", "SVG", "HTML", "CSV"):
        assert driver.find_element(By.ID, f"export-{b.lower()}").text == b
    driver.find_element(By.ID, "export-view").click()
    opts = wait(driver, "var o = Array.from(document.querySelectorAll('.dash-dropdown-option')).map(e => e.innerText.trim());"
                        " return o.length ? o : null;", 5, "export view options")
    assert opts[:5] == ["Matrix View", "Single View", "Sentence View", "Image View", "Model View"], opts
    assert any("(analysis)" in o for o in opts)
    choose_view(driver, "Single View")  # picks from the open list
    single = check_single(driver, downloads, data, TEXT, 1, 2, "pca", token=5)
    matrix = check_matrix(driver, downloads, data, TEXT, "pca", all_points=True)
    assert "saved" in driver.find_element(By.ID, "export-msg").text
    shot(driver, "export-bar-fixture", height=700)
    collect_logs(driver)
    check_html(driver, *single)
    check_html(driver, *matrix)


def test_hidden_sentence_and_analysis_views_fixture(server, driver, downloads):
    base, context = server
    open_url(driver, base, f"?run={TEXT}&layer=2&head=1&token=3&tab=sentence&smode=heatmap")
    wait(driver, gd_js("sentence-graph", "g._fullData[0].type === 'heatmap'"), 15, "sentence heatmap")
    wait_idle(driver)
    choose_view(driver, "Model View")  # its tab is not open: a clear message, no download
    driver.find_element(By.ID, "export-csv").click()
    wait(driver, "return document.getElementById('export-msg').innerText.includes('not on screen')", 10, "message")
    choose_view(driver, "Sentence View")
    comments, cols = read_csv(export(driver, downloads, "csv", f"{TEXT}_sentence_L2_H1_input0.csv"))
    data = context.data
    rows = data.tokens(TEXT).index.rows(0)
    q, k = data.qk(TEXT, 2, 1)
    a = attention(q[rows], k[rows], float(data.manifest(TEXT)["model"]["scale"]), False)
    assert np.allclose(_f(cols["weight"]).reshape(len(rows), len(rows)), a, atol=1e-15)
    z = driver.execute_script(gd_js("sentence-graph", "g._fullData[0].z.map(r => Array.from(r))"))
    assert np.allclose(np.array(z, np.float32), a.astype(np.float32))  # the heatmap drawn has the same numbers
    svg = export(driver, downloads, "svg", f"{TEXT}_sentence_L2_H1.svg")
    assert ET.parse(svg).getroot().find(f".//{SVG_NS}image") is not None  # the heatmap's picture
    counts = drawn_counts(driver, "sentence-graph")
    assert counts == [len(rows) ** 2]
    html = export(driver, downloads, "html", f"{TEXT}_sentence_L2_H1.html")
    check_generic_analysis_export(driver, downloads)
    collect_logs(driver)
    check_html(driver, html, counts)


def check_generic_analysis_export(driver, downloads):
    """Views without a table of their own (analysis tabs) export the figures the page shows."""
    from layouts.export import views
    try:
        found = wait(driver, """var bs = document.querySelectorAll('.analysis-tab-body');
            for (var i = 0; i < bs.length; i++) { var g = bs[i].querySelector('.js-plotly-plot');
              if (bs[i].offsetParent !== null && g && g._fullData && g._fullData.length &&
                  g._fullData.some(t => t.type === 'heatmap' || (t.x && t.x.length))) return bs[i].id; }
            return null;""", 20, "a drawn analysis graph")
    except AssertionError:
        import warnings
        warnings.warn("no analysis tab shows a graph: generic export not checked in the browser")
        return
    label = {c: lab for _, lab, c, _ in views()}[found]
    wait_idle(driver)
    choose_view(driver, label)
    comments, cols = read_csv(export(driver, downloads, "csv", f"{TEXT}_{found}.csv"))
    first = driver.execute_script(f"""var g = document.querySelector('#{found} .js-plotly-plot');
        var t = g._fullData[0]; return t.type === 'heatmap' ?
            ['heatmap', t.z.map(r => Array.from(r))] : [t.type, Array.from(t.x)];""")
    sel = [i for i, (gr, tr) in enumerate(zip(cols["graph"], cols["trace"])) if tr == "0" and gr == cols["graph"][0]]
    if first[0] == "heatmap":
        assert np.allclose(_f([cols["z"][i] for i in sel]), np.ravel(first[1]), equal_nan=True)
    elif all(isinstance(v, (int, float)) for v in first[1]):
        assert np.allclose(_f([cols["x"][i] for i in sel]), first[1])
    assert cols["graph"][0] and any("graph(s)" in c for c in comments)
    assert png_size(export(driver, downloads, "png", f"{TEXT}_{found}.png"))[0] > 100


# ------------------------------------------------------------------ real runs
@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_exports_on_real_run(real_store, real_server, driver, downloads, name):
    from attention_atlas.dashboard_data import Data
    store_dir, ids = real_store
    data = Data(store_dir)
    run = ids[name]
    layer = data.manifest(run)["layers"][-1]
    token = 7
    open_url(driver, real_server, f"?run={run}&layer={layer}&head=1&token={token}&proj=pca")
    wait(driver, gd_js("single-graph", f"g._fullLayout.title.text.startsWith('L{layer} H1')"), 20, "single view")
    wait_idle(driver)
    single = check_single(driver, downloads, data, run, layer, 1, "pca", token=token)
    matrix = check_matrix(driver, downloads, data, run, "pca")
    image = None
    if name == "dinov2":  # the Image View (open by default on image runs)
        choose_view(driver, "Image View")
        wait(driver, gd_js("image-graph", "g._fullData[0].type === 'image'"), 15, "image view")
        comments, cols = read_csv(export(driver, downloads, "csv", f"{run}_image_L{layer}_H1_input0_q{token}.csv"))
        q, k = data.qk(run, layer, 1)
        rows = data.tokens(run).index.rows(0)
        a = attention(q[rows], k[rows], float(data.manifest(run)["model"]["scale"]), False)
        assert np.array_equal(_f(cols["weight"]), a[token])
        heat = driver.execute_script(gd_js("image-graph", "g._fullData[1].z.map(r => Array.from(r))"))
        pr, pc = (np.array([int(v) for v in cols[c]]) for c in ("patch_row", "patch_col"))
        patch = pr >= 0
        assert np.allclose(np.array(heat)[pr[patch], pc[patch]], a[token][patch], atol=1e-6)  # drawn = exported
        w, h = graph_size(driver, "image-graph")
        assert png_size(export(driver, downloads, "png", f"{run}_image_L{layer}_H1.png")) == (2 * w, 2 * h)
        image = (export(driver, downloads, "html", f"{run}_image_L{layer}_H1.html"), drawn_counts(driver, "image-graph"))
    if name == "minilm":  # the bar with its list of views open, after the exports above
        driver.find_element(By.ID, "export-view").click()
        wait(driver, "return document.querySelectorAll('.dash-dropdown-option').length > 5", 5, "view list")
        shot(driver, "export-bar-real-minilm", height=760)
        choose_view(driver, "Single View")
    collect_logs(driver)
    assert not [e for e in driver.severe if "favicon" not in e], driver.severe
    # opened offline on minilm (and the Image View on dinov2); the other runs' files are checked statically
    check_html(driver, *single, shot_name=f"export-snapshot-{name}" if name == "minilm" else None,
               open_it=name == "minilm")
    check_html(driver, *matrix, open_it=name == "minilm")
    if image:
        check_html(driver, *image)


def test_csv_numbers_on_real_runs(real_store):
    """Sentence, Model and Image View CSVs of the real runs equal the attention recomputed from
    the stored q/k (the function the faithfulness tests check against the models themselves)."""
    from callbacks.export import ExportError, csv_export
    from attention_atlas.dashboard_data import Data
    store_dir, ids = real_store
    data = Data(store_dir)
    for name in ("minilm", "smollm2", "dinov2"):
        run = ids[name]
        m = data.manifest(run)
        tokens = data.tokens(run)
        layer = m["layers"][-1]
        tok = int(tokens.index.rows(1)[3])
        rows = tokens.index.rows(1)
        q, k = data.qk(run, layer, 2)
        a = attention(q[rows], k[rows], float(m["model"]["scale"]), bool(m["model"]["causal"]))
        s = dict(run=run, layer=layer, head=2, proj="pca", dim=2, translate=["on"], scaled=[], lod=500, sort="grid",
                 rho=0, query="", regex=[], token=tok, all=[], smode="heatmap", hide=[], imode="heatmap")
        if name == "dinov2":
            with pytest.raises(ExportError, match="for text runs"):
                csv_export(data, "sentence", s)
            text, fname, n = csv_export(data, "image", s)
            _, cols = csv_columns(text)
            assert fname == f"{run}_image_L{layer}_H2_input1_q3.csv" and n == len(rows) == 257
            assert np.array_equal(_f(cols["weight"]), a[3])
            grid = [(int(r), int(c)) for r, c in zip(cols["patch_row"], cols["patch_col"])]
            assert grid[0] == (-1, -1) and grid[1:] == [(r, c) for r in range(16) for c in range(16)]
        else:
            text, fname, n = csv_export(data, "sentence", s)
            _, cols = csv_columns(text)
            assert n == len(rows) ** 2
            w = _f(cols["weight"]).reshape(len(rows), len(rows))
            assert np.array_equal(w, a)
            if m["model"]["causal"]:  # smollm2: nothing above the diagonal
                assert np.all(np.triu(w, 1) == 0)
            if name == "minilm":  # weighted by value norms, computed by the live model like the view does
                from analysis.values import input_value_norms
                from figures.attention import value_weighted
                vn = input_value_norms(m, data.store(), 1, [layer], rows)[layer][2]
                text, _, _ = csv_export(data, "sentence", dict(s, vnorm=["on"]))
                comments, cols = csv_columns(text)
                assert np.allclose(_f(cols["weight"]).reshape(len(rows), len(rows)), value_weighted(a, vn),
                                   atol=1e-12), comments
        if name == "dinov2":
            continue  # Model View CSV of 12 heads x 257² is 0.8 M rows: checked on the text runs (same code)
        text, fname, n = csv_export(data, "model", s)
        _, cols = csv_columns(text)
        n_heads = len(m["layers"]) * len(m["heads"])
        assert n == n_heads * len(rows) ** 2 and fname == f"{run}_model_input1.csv"
        lay, hd = np.array([int(v) for v in cols["layer"]]), np.array([int(v) for v in cols["head"]])
        sel = (lay == layer) & (hd == 2)
        assert np.array_equal(_f(cols["weight"])[sel].reshape(len(rows), len(rows)), a)
