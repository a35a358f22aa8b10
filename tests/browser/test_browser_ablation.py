"""Ablation panel and value-norm weighting in headless Chromium, on REAL runs (minilm, smollm2)
made by the real pipeline (session fixtures ``real_store`` / ``real_server`` of conftest.py)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from analysis import ablation as abl
from figures.ablation import fmt
from precompute.store import Store
from tests.browser.helpers import SHOTS, collect_logs, gd_js, open_url, text_of, wait, wait_idle


def element_shot(d, element_id, name):
    SHOTS.mkdir(exist_ok=True)
    el = d.find_element(By.ID, element_id)
    d.execute_script("arguments[0].scrollIntoView()", el)
    time.sleep(0.6)
    path = SHOTS / f"{name}.png"
    el.screenshot(str(path))
    return path


def run_and_wait(d, timeout=150):
    """Press Run; return the progress texts seen while the job ran and the table rows."""
    d.find_element(By.ID, "ablation-run").click()
    seen, end = [], time.time() + timeout
    while time.time() < end:
        txt = text_of(d, "ablation-progress-text")
        if txt and (not seen or seen[-1] != txt):
            seen.append(txt)
        if "ablated" in text_of(d, "ablation-msg") and d.find_element(By.ID, "ablation-run").is_enabled():
            # the final "done (n/n, …)" comes with the result, whatever progress polls were missed
            wait(d, "return document.getElementById('ablation-progress-text').innerText.startsWith('done (')",
                 10, "final progress text")
            txt = text_of(d, "ablation-progress-text")
            if seen[-1:] != [txt]:
                seen.append(txt)
            return seen
        if "could not" in text_of(d, "ablation-msg"):
            raise AssertionError(text_of(d, "ablation-msg"))
        time.sleep(0.15)
    raise AssertionError(f"ablation did not finish; progress seen {seen}, message {text_of(d, 'ablation-msg')!r}")


def table_rows(d):
    return {r.get_attribute("data-heads"): (r.find_element(By.CLASS_NAME, "abl-delta").text,
                                            r.find_element(By.CLASS_NAME, "abl-ci").text)
            for r in d.find_elements(By.CSS_SELECTOR, "#ablation-table tr.ablation-row")}


def set_cap(d, n):
    box = d.find_element(By.ID, "ablation-cap")
    box.clear()
    box.send_keys(str(n), Keys.ENTER)
    wait(d, f"return document.getElementById('ablation-plan').innerText.includes('{n} of ')", 10, "plan updated")


def test_mean_ablate_one_head_on_smollm2(real_store, real_server, driver):
    store_dir, ids = real_store
    run = ids["smollm2"]
    open_url(driver, real_server, f"?run={run}&atab=ablation&layer=29&head=4")
    driver.find_element(By.CSS_SELECTOR, "#ablation-mode input[value='mean']").click()
    wait(driver, "return document.getElementById('ablation-plan').innerText.includes('L29 H4')", 15, "plan")
    set_cap(driver, 2)
    plan = text_of(driver, "ablation-plan")
    assert "next-token cross-entropy" in plan and "seeded random sample" in plan
    seen = run_and_wait(driver)
    wait(driver, "return document.querySelectorAll('#ablation-table tr.ablation-row').length >= 1", 15, "table")
    # the bar reports each stage (polled about once a second: quick stages may be skipped)
    assert len(seen) >= 2 and seen[-1].startswith("done (2/2"), seen   # mean patterns, then the head
    assert "2 of 5 inputs (seeded random sample" in text_of(driver, "ablation-msg")
    rows = table_rows(driver)
    assert list(rows) == ["29:4"]
    # the same numbers as analysis.ablation on the same inputs, and stored in the run's store
    with Store(store_dir, readonly=True) as st:
        m = st.manifest(run)
        stored = st.analysis(run, "ablation")["mean"]
        direct = abl.ablation_job(m, st, [(29, 4)], [], "mean", 2)
    got = direct["single"]["29:4"]
    assert stored["single"]["29:4"]["delta"] == pytest.approx(got["delta"], abs=1e-9)
    assert stored["n_inputs"] == 2 and stored["objective"] == "next-token-loss"
    assert rows["29:4"] == (fmt(got["delta"]), f"[{fmt(got['ci_low'])}, {fmt(got['ci_high'])}]")
    n_dots = driver.execute_script(gd_js("ablation-graph", "g._fullData[0].x.length"))
    assert n_dots == 2
    collect_logs(driver)
    assert not driver.severe, driver.severe


def test_layer_sweep_and_cancel(real_store, real_server, driver):
    store_dir, ids = real_store
    run = ids["smollm2"]
    open_url(driver, real_server, f"?run={run}&atab=ablation&layer=0&head=0")
    driver.find_element(By.CSS_SELECTOR, "#ablation-scope input[value='layer']").click()
    wait(driver, "return document.getElementById('ablation-plan').innerText.includes('each head of layer 0')", 10, "plan")
    seen = run_and_wait(driver)
    # 9 heads, reported as they go
    assert seen[-1].startswith("done (9/9") and sum("/9," in s for s in seen) >= 3, seen
    wait(driver, "return document.querySelectorAll('#ablation-table tr.ablation-row').length >= 9", 15, "table")
    rows = table_rows(driver)
    assert len(rows) >= 9 and {f"0:{h}" for h in range(9)} <= set(rows)
    deltas = [float(v[0]) for v in rows.values()]
    assert deltas == sorted(deltas, reverse=True)       # ranked, largest effect first
    with Store(store_dir, readonly=True) as st:
        entry = st.analysis(run, "ablation")["zero"]
    assert entry["n_inputs"] == 5 and len(entry["single"]) == 9
    for key, (delta, _) in rows.items():
        assert delta == fmt(entry["single"][key]["delta"])
    path = element_shot(driver, "analysis-ablation", "ablation")
    assert path.stat().st_size > 20000
    # cancel: a sweep over every head stops, and the Run button comes back
    driver.find_element(By.CSS_SELECTOR, "#ablation-scope input[value='all-each']").click()
    driver.find_element(By.ID, "ablation-run").click()
    wait(driver, "return !document.getElementById('ablation-cancel').disabled", 20, "cancel enabled")
    driver.find_element(By.ID, "ablation-cancel").click()
    wait(driver, "return !document.getElementById('ablation-run').disabled", 20, "run enabled again")
    collect_logs(driver)
    assert not driver.severe, driver.severe


def test_matrix_selection_names_the_heads(real_store, real_server, driver):
    store_dir, ids = real_store
    run = ids["minilm"]
    open_url(driver, real_server, f"?run={run}&atab=ablation&proj=pca")
    driver.find_element(By.CSS_SELECTOR, "#ablation-scope input[value='selected-set']").click()
    with Store(store_dir, readonly=True) as st:
        man = st.manifest(run)
    n_cells = len(man["layers"]) * len(man["heads"])
    # a box drag with the select tool around the points of the first two heads (plotly's own selection
    # code; the mouse events are dispatched in the page: WebDriver pointer actions do not reach plotly's drag layer)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.find_element(By.CSS_SELECTOR, "#matrix-graph .modebar-btn[data-val='select']").click()
    time.sleep(0.3)
    driver.execute_script(gd_js("matrix-graph", """(function() {
        var xa = g._fullLayout.xaxis, ya = g._fullLayout.yaxis, r = g.getBoundingClientRect(), xs = [], ys = [];
        var per = g._fullData[0].x.length / N_HEADS;
        [0, per].forEach(function(o) { for (var i = o; i < o + 40; i++) {
            xs.push(r.left + xa._offset + xa.d2p(g._fullData[0].x[i]));
            ys.push(r.top + ya._offset + ya.d2p(g._fullData[0].y[i])); } });
        var b = [Math.min.apply(null, xs) - 4, Math.min.apply(null, ys) - 4,
                 Math.max.apply(null, xs) + 4, Math.max.apply(null, ys) + 4];
        var el = g.querySelector('.nsewdrag');
        function ev(t, type, x, y) { t.dispatchEvent(new MouseEvent(type, {bubbles: true, cancelable: true,
            clientX: x, clientY: y, buttons: type === 'mouseup' ? 0 : 1, button: 0, view: window})); }
        ev(el, 'mousedown', b[0], b[1]);
        ev(document, 'mousemove', (b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
        ev(document, 'mousemove', b[2], b[3]);
        ev(document, 'mouseup', b[2], b[3]);
        return true; })()""".replace("N_HEADS", str(n_cells))))
    wait(driver, "return document.getElementById('ablation-plan').innerText.includes('selected heads together')",
         10, "selection in plan")
    selected = driver.execute_script(gd_js("matrix-graph", "g._fullData[0].selectedpoints || []"))
    assert selected
    from callbacks.common import resolve_variant
    from attention_atlas.dashboard_data import Data
    data = Data(store_dir)
    m = data.manifest(run)
    variant, _ = resolve_variant(m, True, False)
    md = data.matrix(run, variant, "pca", 250, "grid", 0.0)
    heads = sorted({md.point_to_head(int(p))[:2] for p in selected})
    plan = text_of(driver, "ablation-plan")
    assert len(heads) >= 2 and f"the {len(heads)} selected heads together" in plan
    assert all(f"L{l} H{h}" in plan for l, h in heads[:8]), (plan, heads)


def test_value_norm_toggle_changes_sentence_view(real_store, real_server, driver):
    from analysis.values import input_value_norms
    from figures.attention import attention, value_weighted
    store_dir, ids = real_store
    run = ids["minilm"]
    open_url(driver, real_server, f"?run={run}&tab=sentence&smode=heatmap&layer=5&head=2&token=14")
    wait(driver, gd_js("sentence-graph", "g._fullData[0].type === 'heatmap'"), 20, "heatmap")
    wait_idle(driver)
    before = np.array(driver.execute_script(gd_js("sentence-graph", "g._fullData[0].z")), float)
    before_shot = element_shot(driver, "sentence-view", "value-norm-off")
    driver.find_element(By.CSS_SELECTOR, "#vnorm-toggle input").click()
    wait(driver, gd_js("sentence-graph", "g._fullLayout.title.text.includes('‖v‖')"), 90, "weighted heatmap")
    after = np.array(driver.execute_script(gd_js("sentence-graph", "g._fullData[0].z")), float)
    assert "weighted by value norms" in text_of(driver, "sentence-info")
    # the figure is the stored attention weighted by ‖v‖ of the live model's value projection
    with Store(store_dir, readonly=True) as st:
        m = st.manifest(run)
        input_of = np.asarray(st.tokens(run)["input_id"])
        rows = np.flatnonzero(input_of == input_of[14])
        q, k = st.qk(run, 5, 2)
        vn = input_value_norms(m, st, int(input_of[14]), [5], rows)[5][2]
    a = attention(q[rows], k[rows], m["model"]["scale"], False)
    np.testing.assert_allclose(before, a, atol=1e-6)
    np.testing.assert_allclose(after, value_weighted(a, vn), atol=1e-6)
    assert np.abs(after - before).max() > 0.05
    after_shot = element_shot(driver, "sentence-view", "value-norm-on")
    from PIL import Image
    left, right = Image.open(before_shot), Image.open(after_shot)
    both = Image.new("RGB", (max(left.width, right.width), left.height + right.height + 12), "white")
    both.paste(left, (0, 0))                 # top: plain attention; bottom: weighted by ‖v‖
    both.paste(right, (0, left.height + 12))
    both.save(SHOTS / "value-norm.png")
    collect_logs(driver)
    assert not driver.severe, driver.severe
