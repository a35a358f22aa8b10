"""Faithfulness you can see (issue 13), on REAL runs in headless Chromium: the Matrix View ranked,
labelled and filtered by a faithfulness figure (the order is rank_heads of the stored numbers, the
link round-trips), cells whose picture misleads marked as the stored picture ρ says, and the
picture-agreement colouring equal to point_distortion of the stored q/k and picture."""
from __future__ import annotations

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from analysis.faithfulness import misleading_cells, point_distortion, rank_heads
from figures.colors import agreement_codes, agreement_scale, agreement_share, rgba_rows
from figures.matrix import passes_filter
from precompute.metrics import layer_semantics
from precompute.store import Store
from tests.browser.helpers import collect_logs, gd_js, pick, shot, text_of, wait, wait_idle

PICTURE = "picture_spearman/translated/{}/2d"
TRUST = "trust/translated/{}/2d"


def open_page(d, base, query="", timeout=90):
    d.get(base + "/" + query if base else query)
    wait(d, gd_js("matrix-graph", "g._fullData.length === 1 && g._fullData[0].x.length > 0"), timeout, "matrix drawn")
    wait(d, gd_js("matrix-overlay", "g._fullData.length === 3"), timeout, "matrix overlay drawn")
    wait_idle(d, 90)


def stored(store_dir, run, key):
    st = Store(store_dir, readonly=True)
    m = st.manifest(run)
    return m, {(l, h): (st.metrics(run, l, h) or {}).get(key) for l in m["layers"] for h in m["heads"]}


def cells(d):
    """(layer, head) -> (row from the top, column, label, hover) of every labelled Matrix View cell."""
    ann = d.execute_script(gd_js("matrix-overlay", """[g._fullLayout.xaxis.range[1], g._fullLayout.yaxis.range[1],
        g._fullLayout.annotations.map(a => [a.text, a.hovertext, a.x, a.y])]"""))
    width, height, items = ann
    out = {}
    for text, hover, x, y in items:
        if not hover or not hover.startswith("L"):
            continue
        layer, head = (int(p[1:]) for p in hover.split(" · ")[0].split())
        out[(layer, head)] = (text, hover, x, y)
    n_cols = len({round(x, 3) for _, _, x, _ in out.values()})
    cell = width / n_cols
    rows = round(height / cell)
    return {lh: (rows - 1 - int(y // cell), int(x // cell), text, hover) for lh, (text, hover, x, y) in out.items()}


def ranked_rows(c, layers):
    return {layer: [h for (l, h), _ in sorted(((lh, v[1]) for lh, v in c.items() if lh[0] == layer),
                                              key=lambda t: t[1])] for layer in layers}


def test_matrix_ranked_by_picture_faithfulness(real_store, real_server, driver):
    store_dir, ids = real_store
    run = ids["minilm"]
    m, pic = stored(store_dir, run, PICTURE.format("umap"))
    assert all(isinstance(v, float) for v in pic.values())
    open_page(driver, real_server, f"?run={run}&proj=umap&sort=fig:picture-shown")
    assert "sort=fig%3Apicture-shown" in driver.current_url
    c = cells(driver)
    assert len(c) == len(pic)
    for layer, heads in ranked_rows(c, m["layers"]).items():  # each row: most faithful picture first
        assert [(layer, h) for h in heads] == rank_heads({lh: v for lh, v in pic.items() if lh[0] == layer}, "lower")
    for lh, (_, _, text, hover) in c.items():  # every cell names the figure and its stored value
        assert f"picture ρ (shown: UMAP 2D) {pic[lh]:+.2f}".replace("-", "−") in hover
        assert f"H{lh[1]} " in text
    note = text_of(driver, "matrix-note")
    assert "ranked within each layer by picture ρ (shown: UMAP 2D), most faithful first" in note
    assert "ranked by picture ρ (shown: UMAP 2D)" in driver.execute_script(
        gd_js("matrix-graph", "g._fullLayout.xaxis.title.text"))
    shot(driver, "faith-matrix-ranked-picture")
    # the shareable link reopens the same view
    url = driver.current_url
    open_page(driver, "", url)
    assert cells(driver) == c and driver.current_url == url
    # through the menu, as a user would: rank by how trustworthy the shown picture's neighbours are
    trust = stored(store_dir, run, TRUST.format("umap"))[1]
    pick(driver, "sort-select", "by trustworthiness (cosine, shown: UMAP 2D) (highest first)")
    wait(driver, gd_js("matrix-graph", "g._fullLayout.xaxis.title.text.indexOf('trustworthiness') >= 0"), 60, "re-ranked")
    wait_idle(driver, 60)
    assert "sort=fig%3Atrust-shown" in driver.current_url
    c = cells(driver)
    for layer, heads in ranked_rows(c, m["layers"]).items():
        assert [(layer, h) for h in heads] == rank_heads({lh: v for lh, v in trust.items() if lh[0] == layer}, "higher")
    # the picture figure of the projection shown follows the projection menu
    pca = stored(store_dir, run, PICTURE.format("pca"))[1]
    open_page(driver, real_server, f"?run={run}&proj=pca&sort=fig:picture-shown&rho=0.1")
    c = cells(driver)
    hidden = {lh for lh, v in pca.items() if not passes_filter(v, "lower", 0.1)}
    assert {lh for lh, v in c.items() if "hidden by the ρ pic filter" in v[3]} == hidden
    assert text_of(driver, "rho-threshold-label") == "show heads with picture ρ (shown: PCA 2D) ≤ −"
    if hidden:
        assert f"{len(hidden)} heads hidden by the filter on picture ρ (shown: PCA 2D)" in text_of(driver, "matrix-note")
    collect_logs(driver)


@pytest.mark.parametrize("name,proj", [("minilm", "umap"), ("minilm", "pca"), ("smollm2", "pca")])
def test_cells_whose_picture_misleads_are_marked(real_store, real_server, driver, name, proj):
    store_dir, ids = real_store
    run = ids[name]
    st = Store(store_dir, readonly=True)
    m = st.manifest(run)
    by_head = {(l, h): st.metrics(run, l, h) for l in m["layers"] for h in m["heads"]}
    want = misleading_cells(by_head, "translated", proj, 2)
    open_page(driver, real_server, f"?run={run}&proj={proj}")
    c = cells(driver)
    # the hover line of each marked cell says why (grids of ≤ 8 heads also carry ⚠ in the label)
    assert {lh for lh, v in c.items() if "⚠" in v[3]} == want
    assert all("misleads" in v[3] for lh, v in c.items() if lh in want)
    assert {lh for lh, v in c.items() if v[2].startswith("⚠")} == (want if len(m["heads"]) <= 8 else set())
    width, n_cols, n_rows = driver.execute_script(gd_js("matrix-graph", "[g._fullLayout.xaxis.range[1], "
                                                        "g._fullLayout.xaxis.tickvals.length, "
                                                        "g._fullLayout.yaxis.tickvals.length]"))
    cell = width / n_cols
    outlined = driver.execute_script(gd_js("matrix-overlay", """(g._fullLayout.shapes || []).filter(s => s.name === 'misleading')
        .map(s => [(s.x0 + s.x1) / 2, (s.y0 + s.y1) / 2])"""))
    assert sorted((n_rows - 1 - int(y // cell), int(x // cell)) for x, y in outlined) == \
        sorted(c[lh][:2] for lh in want)
    legend = text_of(driver, "misleading-legend")
    assert "picture ρ" in legend and "positive" in legend and "LESS attention" in legend
    if want:
        label = f"picture ρ ({'UMAP' if proj == 'umap' else 'PCA'} 2D)"
        assert f"{len(want)} heads whose {label} is positive" in text_of(driver, "matrix-note")
        shot(driver, f"faith-misleading-{name}-{proj}")
    collect_logs(driver)


def test_some_real_picture_misleads(real_store):
    """The marking is exercised: on the real runs at least one shown picture has ρ > 0."""
    store_dir, ids = real_store
    st = Store(store_dir, readonly=True)
    n = 0
    for name, proj in (("minilm", "umap"), ("minilm", "pca"), ("smollm2", "pca")):
        m = st.manifest(ids[name])
        n += len(misleading_cells({(l, h): st.metrics(ids[name], l, h) for l in m["layers"] for h in m["heads"]},
                                  "translated", proj, 2))
    assert n > 0


def _expected_agreement(store_dir, run, layer, head, proj, dim):
    st = Store(store_dir, readonly=True)
    m = st.manifest(run)
    q, k = st.qk(run, layer, head)
    coords = st.coords(run, layer, head, "translated", proj, dim)
    return point_distortion(q, k, coords, np.asarray(st.tokens(run)["input_id"]),
                            **layer_semantics(m["model"], layer))


@pytest.mark.parametrize("name,layer,head,proj,dim", [("minilm", 5, 3, "umap", 2), ("minilm", 0, 7, "pca", 3),
                                                       ("smollm2", 29, 4, "pca", 2)])
def test_distortion_colouring_is_point_distortion(real_store, real_server, driver, name, layer, head, proj, dim):
    store_dir, ids = real_store
    run = ids[name]
    want = _expected_agreement(store_dir, run, layer, head, proj, dim)["values"]
    open_page(driver, real_server, f"?run={run}&proj={proj}&dim={dim}&layer={layer}&head={head}&color=picture_agreement")
    wait(driver, gd_js("single-graph", "g._fullData[0].marker.showscale === true"), 60, "agreement colours")
    wait_idle(driver, 60)
    codes, keys, bar, hover = driver.execute_script(gd_js("single-graph", """[Array.from(g._fullData[0].marker.color),
        Array.from(g._fullData[1].marker.color), g._fullData[0].marker.colorbar.ticktext, g._fullData[0].text]"""))
    got = agreement_share(np.asarray(codes))
    assert len(got) == len(want)
    assert np.array_equal(np.isnan(got), np.isnan(want))          # undefined queries grey
    np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    assert set(keys) == {0}                                        # keys are not coloured
    assert bar == ["0 of 3", "1 of 3", "2 of 3", "3 of 3"]
    j = int(np.flatnonzero(~np.isnan(want))[0])
    assert f"picture agreement {int(round(want[j] * 3))} of 3 (top-3 attended keys among the 3 nearest)" in hover[j]
    legend = text_of(driver, "color-legend")
    assert "the share of its 3 most-attended keys that are among its 3 nearest keys in this picture" in legend
    ok = want[~np.isnan(want)]
    info = text_of(driver, "single-info")
    assert f"picture agreement (top-3) of the {'UMAP' if proj == 'umap' else 'PCA'} {dim}D picture — mean " \
           f"{ok.mean():.2f} over {len(ok):,} queries" in info
    # the Matrix View colours each head's queries by its own 2D picture (every point drawn: lod=all)
    if dim == 2:
        open_page(driver, real_server, f"?run={run}&proj={proj}&layer={layer}&head={head}&color=picture_agreement&lod=0")
        m = Store(store_dir, readonly=True).manifest(run)
        i = m["layers"].index(layer) * len(m["heads"]) + m["heads"].index(head)
        n = len(want)
        rows = driver.execute_script(gd_js("matrix-graph", f"Array.from(g._fullData[0].marker.color.slice({2 * n * i}, "
                                                           f"{2 * n * (i + 1)}), c => Array.from(c))"))
        codes = np.zeros(2 * n, np.int64)                     # interleaved: each query, then its key (code 0)
        codes[0::2] = agreement_codes(want)
        np.testing.assert_array_equal(np.asarray(rows), rgba_rows(codes, agreement_scale()))
    shot(driver, f"faith-agreement-{name}-{proj}{dim}d")
    collect_logs(driver)


@pytest.mark.parametrize("name,layer,head,proj", [("minilm", 5, 3, "pca"), ("minilm", 0, 7, "umap"), ("smollm2", 0, 2, "pca")])
def test_single_view_shows_the_head_figures_as_stored(real_store, real_server, driver, name, layer, head, proj):
    from analysis.faithfulness import head_figure_table
    store_dir, ids = real_store
    st = Store(store_dir, readonly=True)
    run = ids[name]
    rows = head_figure_table(st.metrics(run, layer, head), st.manifest(run), "translated", proj, 2)
    open_page(driver, real_server, f"?run={run}&proj={proj}&layer={layer}&head={head}")
    wait(driver, "return document.querySelectorAll('#single-info .figure').length > 0", 60, "figure line")
    figs = driver.execute_script("""return Array.from(document.querySelectorAll('#single-info .figure'))
        .map(e => [e.dataset.figure, e.innerText, e.title])""")
    assert [f[0] for f in figs] == [r["id"] for r in rows]      # PCA: trustworthiness with both metrics
    for (fid, text, title), r in zip(figs, rows):
        assert text.startswith(f"{r['label']} {r['text']}") and title == r["definition"]
        assert isinstance(r["value"], float)                     # a real run holds every figure
    collect_logs(driver)
