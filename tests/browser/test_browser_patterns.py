"""Head patterns + related heads in the browser, on REAL runs (minilm, smollm2, dinov2-small made
by the real pipeline; fixtures ``real_store``/``real_server`` in conftest.py): the panel's numbers equal analysis.patterns computed independently from
the store, the Matrix View sorts by a pattern score, clicks on the map and on similar heads open
those heads, and the console stays clean."""
from __future__ import annotations

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from analysis.head_scores import compute_run_patterns
from analysis.patterns import PATTERNS, SHORT
from figures.common import InputIndex
from layouts.patterns import describe
from precompute.store import Store
from tests.browser.helpers import collect_logs, gd_js, open_url, pick, shot, text_of, wait, wait_idle

_EXPECTED = {}
NA = {"minilm": set(), "smollm2": {"next"}, "dinov2": {"sep", "prev", "next"}}
SORT_BY = {"minilm": ("prev", "by previous token"), "smollm2": ("first", "by first token / [CLS]"),
           "dinov2": ("self", "by self")}


def expected(real_store, name):
    """The run's patterns computed straight from the store (not through the app)."""
    store_dir, ids = real_store
    if name not in _EXPECTED:
        st = Store(store_dir, readonly=True)
        m, arrays = st.manifest(ids[name]), st.tokens(ids[name])
        index = InputIndex(np.asarray(arrays["input_id"]), np.asarray(arrays["position"]))
        _EXPECTED[name] = (m, compute_run_patterns(m, arrays, index, lambda l, h: st.qk(ids[name], l, h)))
    return _EXPECTED[name]


def open_run(driver, base, run_id, query):
    """open_url, then make sure the page stayed on ``run_id``. The Runs & precompute tab's timer
    (callbacks/jobs.py ``tick``) can switch run-select to the first stored run when it fires before
    the page's first state has landed (its State still None): reported to the lead; reopen once."""
    for attempt in range(3):
        open_url(driver, base, f"?run={run_id}&{query}")
        wait_idle(driver, 40)
        if run_id in driver.find_element(By.ID, "run-select").text:
            return
        print(f"page switched away from run {run_id} (attempt {attempt + 1}); reopening")
    raise AssertionError(f"the page would not stay on run {run_id}")


def table_row(driver, layer, head):
    return driver.execute_script(f"""var tr = document.querySelector('#patterns-table-el tr[data-head="{layer}:{head}"]');
        if (!tr) return null; var out = {{}};
        tr.querySelectorAll('td[data-score]').forEach(function(td) {{ out[td.getAttribute('data-score')] = td.innerText; }});
        out.style = tr.getAttribute('style') || ''; return out;""")


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_patterns_panel_numbers_on_real_run(real_store, real_server, driver, name):
    _, ids = real_store
    m, rp = expected(real_store, name)
    layer, head = m["layers"][-1], m["heads"][1]
    n_heads = len(m["layers"]) * len(m["heads"])
    open_run(driver, real_server, ids[name], f"atab=patterns&layer={layer}&head={head}")
    wait(driver, f"return document.querySelectorAll('#patterns-table-el tr[data-head]').length === {n_heads}", 30,
         "patterns table")
    assert not rp.missing and len(rp.heads) == n_heads
    # the score map's graph is as tall as its figure (no blank band under the heatmap), ≥ 30 px a layer
    wait(driver, gd_js("patterns-graph", "g._fullData.length > 0"), 30, "patterns map")
    box, fig_h = driver.execute_script(gd_js("patterns-graph", "[g.getBoundingClientRect().height, g._fullLayout.height]"))
    assert abs(box - fig_h) <= 2 and (fig_h - 100) / len(m["layers"]) >= 30, (box, fig_h)
    for h in [(layer, head), (m["layers"][0], m["heads"][0])]:
        row = table_row(driver, *h)
        for p in PATTERNS:
            v = rp.scores[h][p]
            if p in NA[name]:
                assert v is None and row[p] == "n/a", (h, p, row[p])
            else:
                assert v is not None and row[p] == f"{v:.3f}", (h, p, row[p], v)
    assert "fff3cd" in table_row(driver, layer, head)["style"].replace(" ", "") or \
        "255, 243, 205" in table_row(driver, layer, head)["style"]  # the selected head is highlighted
    # the map shows the same numbers (default score: first token / [CLS])
    z = driver.execute_script(gd_js("patterns-graph", f"g._fullData[0].z[{m['layers'].index(layer)}][{m['heads'].index(head)}]"))
    assert z == pytest.approx(rp.scores[(layer, head)]["first"], abs=1e-12)
    # Single View names the dominant pattern with its score, and lists 5 similar heads
    wait(driver, "return !!document.getElementById('single-pattern')", 20, "single pattern")
    assert text_of(driver, "single-pattern") == describe(*rp.dominant(layer, head))
    sims = driver.execute_script("""return Array.from(document.querySelectorAll('#single-analysis button'))
        .map(function(b) { return b.innerText; });""")
    assert sims == [f"L{l} H{h} ({d:.2f})" for (l, h), d in rp.similar(layer, head, 5)]
    assert "scores from all" in text_of(driver, "patterns-note")
    shot(driver, f"patterns-{name}")
    # the next head: the map's outline (a patch of the figure) and the table's highlight follow it
    nxt = m["heads"][2]
    driver.find_element(By.ID, "next-head-btn").click()
    c, r = m["heads"].index(nxt), m["layers"].index(layer)
    wait(driver, gd_js("patterns-graph", f"(g._fullLayout.shapes || []).length === 1 && "
                                         f"g._fullLayout.shapes[0].x0 === {c - 0.5} && g._fullLayout.shapes[0].y0 === {r - 0.5}"),
         20, "map outline on the next head")
    wait(driver, f"""var tr = document.querySelector('#patterns-table-el tr[data-head="{layer}:{nxt}"]');
        return !!tr && tr.style.background !== '';""", 20, "table highlight on the next head")
    old_style = table_row(driver, layer, head)["style"].replace(" ", "")
    assert "fff3cd" not in old_style and "255,243,205" not in old_style, old_style
    assert text_of(driver, "patterns-head").startswith(f"L{layer} H{nxt}")
    collect_logs(driver)


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_matrix_sorted_and_shaded_by_pattern_score(real_store, real_server, driver, name):
    _, ids = real_store
    m, rp = expected(real_store, name)
    score, label = SORT_BY[name]
    open_run(driver, real_server, ids[name], "")
    pick(driver, "sort-select", label)  # through the order menu, as a user would
    wait(driver, gd_js("matrix-graph", "g._fullLayout.xaxis.title.text.indexOf('ranked by') >= 0"), 30, "sorted matrix")
    wait_idle(driver)
    assert f"sort={score}" in driver.current_url
    ann = driver.execute_script(gd_js("matrix-overlay", "g._fullLayout.annotations.map(a => [a.hovertext, a.x, a.y])"))
    cells = [(t, x, y) for t, x, y in ann if t and t.startswith("L")]
    assert len(cells) == len(rp.heads)
    for layer in m["layers"]:
        row = sorted([(x, t) for t, x, _ in cells if t.startswith(f"L{layer} ")])
        shown = [int(t.split()[1][1:]) for _, t in row]
        ranked = sorted(m["heads"], key=lambda h: (-rp.scores[(layer, h)][score], h))
        assert shown == ranked, (layer, shown, ranked)
        for (_, t), h in zip(row, ranked):  # each cell names its score
            assert f"{SHORT[score]} {rp.scores[(layer, h)][score]:.2f}" in t
    n_shapes = driver.execute_script(gd_js("matrix-graph", "(g._fullLayout.shapes || []).length"))
    assert n_shapes == len(rp.heads)
    assert "shaded by" in text_of(driver, "matrix-note")
    # an order that can't apply to this run is disabled in the menu
    if name != "minilm":
        driver.find_element(By.ID, "sort-select").click()
        dis = wait(driver, """return Array.from(document.querySelectorAll('.dash-dropdown-option input[disabled]'))
            .map(function(i) { return i.value; });""", 5, "menu options")
        driver.find_element(By.TAG_NAME, "body").click()
        # ablation orders apply once the run has ablation results (other tests of the session
        # share this store and may have stored some)
        stored = Store(real_store[0], readonly=True).analysis(ids[name], "ablation") or {}
        assert set(dis) == {"next", "sep", "prev", "ablation-zero", "ablation-mean"} - (
            {"sep", "prev"} if name == "smollm2" else set()) - {f"ablation-{mode}" for mode in stored}, dis
    collect_logs(driver)
    shot(driver, f"matrix-sorted-{name}")


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_related_heads_click_opens_head(real_store, real_server, driver, name):
    _, ids = real_store
    m, rp = expected(real_store, name)
    layer, head = m["layers"][0], m["heads"][0]
    open_run(driver, real_server, ids[name], f"atab=related&layer={layer}&head={head}")
    wait(driver, gd_js("related-graph", "g._fullData.length >= 2 && !!g._fullData[0].customdata"), 30, "related map")
    wait_idle(driver)
    # the list: top-5 most similar heads with their distances
    listed = driver.execute_script("""return Array.from(document.querySelectorAll('#related-similar li'))
        .map(function(li) { return [li.getAttribute('data-head'), parseFloat(li.getAttribute('data-dist'))]; });""")
    exp = rp.similar(layer, head, 5)
    assert [h for h, _ in listed] == [f"{l}:{h}" for (l, h), _ in exp]
    assert [d for _, d in listed] == pytest.approx([d for _, d in exp], abs=1e-6)
    # one point per head, at its MDS position
    pts = driver.execute_script(gd_js("related-graph", "g._fullData[0].customdata.map(function(c, i) { return [c[0], c[1], g._fullData[0].x[i], g._fullData[0].y[i]]; })"))
    heads = rp.related["heads"]
    assert len(pts) == len(heads)
    for l, h, x, y in pts:
        k = heads.index((l, h))
        assert (x, y) == pytest.approx(tuple(rp.related["xy"][k]), abs=1e-9)
    shot(driver, f"related-{name}")
    # click the point of the farthest head: that head opens
    k_sel = heads.index((layer, head))
    far = int(np.argmax(rp.related["dist"][k_sel]))
    target = heads[far]
    idx = [i for i, (l, h, _, _) in enumerate(pts) if (l, h) == target][0]
    pt = driver.find_elements(By.CSS_SELECTOR, "#related-graph .scatterlayer .trace:first-child .point")[idx]
    ActionChains(driver).move_to_element(pt).pause(0.3).click().perform()
    wait(driver, f"return document.getElementById('layer-select').innerText.trim() === 'L{target[0]}' && "
                 f"document.getElementById('head-select').innerText.trim() === 'H{target[1]}'", 15, "head opened")
    wait(driver, f"return location.search.indexOf('head={target[1]}') >= 0 || {target[1]} === 0", 10, "url")
    wait(driver, gd_js("single-graph", f"g._fullLayout.title.text.indexOf('L{target[0]} H{target[1]}') === 0"), 15,
         "single view follows")
    # a similar head in the Single View opens on click
    wait_idle(driver)
    (l2, h2), _ = rp.similar(*target, 1)[0]
    btn = wait(driver, f"""return Array.from(document.querySelectorAll('#single-analysis button'))
        .find(function(b) {{ return b.innerText.indexOf('L{l2} H{h2} ') === 0; }}) || null;""", 15, "similar button")
    btn.click()
    wait(driver, f"return document.getElementById('layer-select').innerText.trim() === 'L{l2}' && "
                 f"document.getElementById('head-select').innerText.trim() === 'H{h2}'", 15, "similar head opened")
    collect_logs(driver)


def test_no_console_errors(driver):
    collect_logs(driver)
    real = [m for m in driver.severe if "favicon" not in m]
    assert not real, "\n".join(real)
