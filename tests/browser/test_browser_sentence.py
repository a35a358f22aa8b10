"""The Sentence View on REAL runs in headless Chromium: aggregate ticks and title, hide options
named after each run's own special tokens (minilm: [CLS]/[SEP]; smollm2: none), several heads in
their colours (smollm2), the sentence A/B filter (minilm on a .tsv pair corpus), and the colour by
sentence length. What is drawn is compared with attention recomputed from the stored q/k."""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from figures.attention import aggregate_by_position, attention, hide_and_renormalise
from figures.sentence import head_colors, segments, token_roles
from precompute.store import Store
from tests.browser.helpers import collect_logs, free_port, gd_js, open_url, pick, shot, text_of, wait, wait_idle

PAIRS = [("The cat sat on the mat.", "It was tired because it had run all day."),
         ("Where is the station?", "The train leaves at noon."),
         ("She said yes to the offer.", "Then she changed her mind.")]


@pytest.fixture(scope="module")
def pair_run():
    """minilm on a .tsv sentence-pair corpus, served by its own app."""
    import logging

    from werkzeug.serving import make_server

    from app import create_app
    from precompute.pipeline import RunConfig, run
    d = Path(tempfile.mkdtemp(prefix="atlas-pairs-"))
    corpus = d / "pairs.tsv"
    corpus.write_text("\n".join(f"{a}\t{b}" for a, b in PAIRS) + "\n", encoding="utf-8")
    s = run(RunConfig(model="minilm", corpus=str(corpus), cache=str(d / "store"), variants="translated", workers=1,
                      layers="0,5", projections="pca", dims="2"))
    assert s.status["status"] == "complete"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = make_server("127.0.0.1", free_port(), create_app(d / "store").server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", d / "store", s.run_id
    srv.shutdown()
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ helpers
def _open(driver, base, query):
    """open_url with patience: the shared 2-core machine can take long to settle."""
    open_url(driver, base, query, settle=False)
    wait_idle(driver, 60)


def input_attention(store_dir, run, layer, head, input_id=0):
    st = Store(store_dir, readonly=True)
    m, toks = st.manifest(run), st.tokens(run)
    rows = np.flatnonzero(np.asarray(toks["input_id"]) == input_id)
    q, k = st.qk(run, layer, head)
    a = attention(q[rows], k[rows], float(m["model"]["scale"]), bool(m["model"]["causal"]))
    return a, [str(t) for t in np.asarray(toks["text"])[rows]], m, toks


SEGMENTS_JS = gd_js("sentence-graph", """g._fullData.filter(t => t.mode === 'lines' && t.x.length >= 3).map(t => {
    var out = []; for (var i = 0; i < t.y.length; i += 3) out.push([-t.y[i], -t.y[i + 1]]);
    return [t.line.color, out]; })""")


def _drawn(driver):
    """{rgb: {(query, key)}} of every line segment the Sentence View draws."""
    by = {}
    for color, segs in driver.execute_script(SEGMENTS_JS) or []:
        rgb = color[color.index("(") + 1:].rsplit(",", 1)[0].replace(" ", "")
        by.setdefault(rgb, set()).update((int(round(q)), int(round(k))) for q, k in segs)
    return by


def _rgb(hex_colour):
    h = hex_colour.lstrip("#")
    return ",".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4))


def _hide_labels(driver):
    return [e.text.strip() for e in driver.find_elements(By.CSS_SELECTOR, "#hide-select label")]


def _click_label(driver, container, text):
    driver.find_element(By.XPATH, f"//div[@id='{container}']//label[normalize-space(.)='{text}']").click()


# ------------------------------------------------------------------ tests
def test_aggregate_by_position_ticks_once_title_clear_real_minilm(real_store, real_server, driver):
    store_dir, ids = real_store
    run = ids["minilm"]
    _open(driver, real_server, f"?run={run}&layer=5&head=3&smode=aggregate")
    wait(driver, gd_js("sentence-graph", "g._fullData[0].type === 'heatmap' && "
                                         "g._fullLayout.title.text.indexOf('mean attention') >= 0"), 30, "aggregate")
    wait_idle(driver, 60)
    ticks = driver.execute_script("return Array.from(document.querySelectorAll('#sentence-graph .xtick text'))"
                                  ".map(t => t.textContent)")
    _, words, m, toks = input_attention(store_dir, run, 5, 3)
    n = len(words)
    assert ticks == [str(i) for i in range(n)], ticks  # one label a position, not "0 0", "1 1"
    boxes = driver.execute_script("""var r = s => { var e = document.querySelector('#sentence-graph ' + s);
        var b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
        return [r('.gtitle'), r('.g-xtitle text'), r('.g-ytitle text')];""")
    title, xt, yt = boxes
    for other in (xt, yt):
        overlap = not (title[2] <= other[0] or other[2] <= title[0] or title[3] <= other[1] or other[3] <= title[1])
        assert not overlap, (title, other)
    # what is drawn = the aggregate recomputed from the stored q/k (cropped to this input, rows renormalised)
    st = Store(store_dir, readonly=True)
    q, k = st.qk(run, 5, 3)
    ids_arr = np.asarray(toks["input_id"])
    groups = [(i, np.flatnonzero(ids_arr == i)) for i in np.unique(ids_arr)]
    max_len = int(min(512, max(np.asarray(toks["input_length"]).max(), n)))
    agg = aggregate_by_position(q, k, groups, float(m["model"]["scale"]), False, max_len)[:n, :n]
    agg = agg / agg.sum(1, keepdims=True)
    z = np.array(driver.execute_script(gd_js("sentence-graph", "g._fullData[0].z.map(r => Array.from(r))")), float)
    np.testing.assert_allclose(z, agg, atol=1e-6)
    shot(driver, "sentence-aggregate-minilm")
    collect_logs(driver)


def test_hide_options_follow_the_runs_special_tokens(real_store, real_server, driver):
    store_dir, ids = real_store
    _open(driver, real_server, f"?run={ids['minilm']}&layer=0&head=0")
    wait(driver, "return document.querySelectorAll('#hide-select label').length === 3", 20, "minilm hide options")
    assert _hide_labels(driver) == ["first token", "[CLS]", "[SEP]"]
    # switching the run in the menu re-derives the options: SmolLM2 adds no special token to its inputs
    driver.get("about:blank")
    _open(driver, real_server, f"?run={ids['smollm2']}&layer=0&head=0&hide=first,cls,sep")
    wait(driver, "return document.querySelectorAll('#hide-select label').length === 1", 20, "smollm2 hide options")
    assert _hide_labels(driver) == ["first token"]
    m = Store(store_dir, readonly=True).manifest(ids["smollm2"])
    note = text_of(driver, "sentence-hide-note")
    assert "<|im_start|>" in note and all(t in note for t in m["model"]["special_tokens"])
    # an old link's hide=cls,sep stays valid: the first token is hidden, cls/sep say the run has none
    info = wait(driver, "var t = document.getElementById('sentence-info').innerText; "
                        "return t.includes('hidden keys') ? t : null;", 20, "hidden keys")
    _, words, _, _ = input_attention(store_dir, ids["smollm2"], 0, 0)
    assert f"hidden keys: {words[0]} (rows" in info and "no CLS-like or SEP-like special token" in info
    from urllib.parse import parse_qs, urlparse
    assert sorted(parse_qs(urlparse(driver.current_url).query)["hide"][0].split(",")) == ["cls", "first", "sep"]
    from callbacks.state import run_label
    st = Store(store_dir, readonly=True)
    try:
        pick(driver, "run-select", run_label(st.manifest(ids["minilm"]), st.status(ids["minilm"])))
    except AssertionError:  # pick's own 15 s idle wait; the machine is shared
        wait_idle(driver, 60)
    wait(driver, "return document.querySelectorAll('#hide-select label').length === 3", 20, "options after switch")
    assert _hide_labels(driver) == ["first token", "[CLS]", "[SEP]"]
    shot(driver, "sentence-hide-options")
    collect_logs(driver)


def test_several_heads_one_colour_each_real_smollm2(real_store, real_server, driver):
    store_dir, ids = real_store
    run, layer = ids["smollm2"], 29
    _open(driver, real_server, f"?run={run}&layer={layer}&head=2&token=0")
    wait(driver, gd_js("sentence-graph", "g._fullData.length > 2"), 30, "sentence lines")
    wait_idle(driver, 60)
    a2, words, m, _ = input_attention(store_dir, run, layer, 2)
    drawn = _drawn(driver)  # one head: the classic blue head view, no legend
    assert list(drawn) == ["31,119,180"] and drawn["31,119,180"] == set(zip(*np.nonzero(a2 >= 0.01)))
    assert not driver.execute_script(gd_js("sentence-graph", "g._fullLayout.showlegend"))
    for h in ("H0", "H5"):
        _click_label(driver, "sentence-heads", h)
    wait(driver, gd_js("sentence-graph", "g._fullData.filter(t => t.showlegend).length === 3"), 30, "three heads")
    wait_idle(driver, 60)
    assert "sheads=0%2C5" in driver.current_url or "sheads=0,5" in driver.current_url
    colours = head_colors([0, 2, 5], list(m["heads"]))
    drawn = _drawn(driver)
    assert set(drawn) == {_rgb(colours[h]) for h in (0, 2, 5)}
    for h in (0, 2, 5):  # every head's lines = its recomputed attention ≥ 0.01, in its colour
        a, _, _, _ = input_attention(store_dir, run, layer, h)
        assert drawn[_rgb(colours[h])] == set(zip(*np.nonzero(a >= 0.01))), h
    legend = driver.execute_script(gd_js("sentence-graph", "g._fullData.filter(t => t.showlegend).map(t => t.name)"))
    assert legend == ["H0", "H2", "H5"]
    assert "lines under weight 0.01 not drawn" in text_of(driver, "sentence-info")
    shot(driver, "sentence-three-heads-smollm2")
    # a focused query isolates its lines in every head
    pts = driver.find_elements(By.CSS_SELECTOR, "#sentence-graph .scatterlayer .trace:nth-last-child(2) .point")
    from selenium.webdriver.common.action_chains import ActionChains
    ActionChains(driver).move_to_element(pts[6]).pause(0.3).click().perform()
    wait(driver, "return document.getElementById('sentence-info').innerText.includes('isolating the lines of query 6')",
         30, "isolate query 6")
    wait_idle(driver, 60)
    drawn = _drawn(driver)
    for h in (0, 2, 5):
        a, _, _, _ = input_attention(store_dir, run, layer, h)
        assert drawn.get(_rgb(colours[h]), set()) == {(6, int(j)) for j in np.nonzero(a[6] >= 0.01)[0]}
    shot(driver, "sentence-three-heads-isolated")
    # all heads of the layer, then back to the current head only
    driver.find_element(By.ID, "sentence-heads-all").click()
    wait(driver, gd_js("sentence-graph", f"g._fullData.filter(t => t.showlegend).length === {len(m['heads'])}"),
         30, "all heads")
    driver.find_element(By.ID, "sentence-heads-none").click()
    wait(driver, gd_js("sentence-graph", "!g._fullLayout.showlegend"), 30, "current head only")
    wait_idle(driver, 60)
    # the current head is marked (and not a choice); the mark follows the head on the page: a head
    # change asks the server for no option list (re-rendering it cost the page a store update per option)
    mark = ("return Array.from(document.querySelectorAll('#sentence-heads label')).filter(function(l) {"
            "  return getComputedStyle(l, '::after').content.includes('current, always drawn')"
            "      && getComputedStyle(l).pointerEvents === 'none'; })"
            ".map(function(l) { return l.innerText.trim(); });")
    assert driver.execute_script(mark) == ["H2"]
    from tests.browser.helpers import record_calls, recorded_calls
    record_calls(driver)
    driver.find_element(By.ID, "next-head-btn").click()
    wait(driver, "var m = (function() {" + mark + "})(); return m.length === 1 && m[0] === 'H3';", 20, "mark on H3")
    wait_idle(driver, 60)
    calls = recorded_calls(driver)
    assert calls and not [c for c in calls if "sentence-heads.options" in c[0]], calls
    # nor the patterns map or table: the map's outline moves by a patch (the head's line beside it)
    assert all(c[2] < 2000 for c in calls if "patterns-graph.figure" in c[0]), calls
    collect_logs(driver)


def test_sentence_pair_filter_real_minilm(pair_run, driver):
    base, store_dir, run = pair_run
    layer, head = 5, 1
    _open(driver, base, f"?run={run}&layer={layer}&head={head}&token=0")
    wait(driver, gd_js("sentence-graph", "g._fullData.length > 2"), 30, "sentence lines")
    wait_idle(driver, 60)
    assert driver.find_element(By.ID, "sentence-pair-ctl").is_displayed()
    a, words, m, toks = input_attention(store_dir, run, layer, head)
    seg = segments(words, token_roles(m["model"]["special_tokens"], toks["text"], toks["position"]))
    from precompute.models.hf import load_tokenizer
    from precompute.models.packaged import builtin_folder
    assert list(seg) == load_tokenizer(str(builtin_folder("minilm")[0]))(*PAIRS[0])["token_type_ids"]
    for value, (qs, ks) in (("A → B", (0, 1)), ("B → A", (1, 0))):
        _click_label(driver, "sentence-pair", value)
        wait(driver, f"return document.getElementById('sentence-info').innerText.includes('showing {value} only')",
             30, value)
        wait_idle(driver, 60)
        mask = (seg[:, None] == qs) & (seg[None, :] == ks)
        drawn = _drawn(driver)["31,119,180"]
        assert drawn == set(zip(*np.nonzero(mask & (a >= 0.01))))  # only cross-sentence lines, as computed
        assert all(seg[q] == qs and seg[k] == ks for q, k in drawn)
        shot(driver, f"sentence-pair-{'ab' if qs == 0 else 'ba'}")
    assert "pair=ba" in driver.current_url
    # the heatmap keeps only the filtered block: rows of sentence B, columns of sentence A
    _click_label(driver, "sentence-mode", "heatmap")
    wait(driver, gd_js("sentence-graph", "g._fullData[0].type === 'heatmap'"), 30, "heatmap")
    wait_idle(driver, 60)
    x, y, z = driver.execute_script(gd_js("sentence-graph", "[g._fullData[0].x, g._fullData[0].y, "
                                                            "g._fullData[0].z.map(r => Array.from(r))]"))
    bq, ak = np.flatnonzero(seg == 1), np.flatnonzero(seg == 0)
    assert [int(t.split("\u2009")[0]) for t in y] == list(bq) and [int(t.split("\u2009")[0]) for t in x] == list(ak)
    np.testing.assert_allclose(np.array(z, float), a[np.ix_(bq, ak)], atol=1e-6)
    # hide [SEP] with the filter on: rows renormalised over the other keys first
    _click_label(driver, "sentence-mode", "lines")
    _click_label(driver, "hide-select", "[SEP]")
    wait(driver, "return document.getElementById('sentence-info').innerText.includes('hidden keys')", 30, "hide sep")
    wait_idle(driver, 60)
    sep = [i for i, w in enumerate(words) if w == "[SEP]"]
    a2 = hide_and_renormalise(a, sep)
    mask = (seg[:, None] == 1) & (seg[None, :] == 0)
    assert _drawn(driver)["31,119,180"] == set(zip(*np.nonzero(mask & (a2 >= 0.01))))
    collect_logs(driver)


def test_colour_by_sentence_length_real_minilm(real_store, real_server, driver):
    store_dir, ids = real_store
    _open(driver, real_server, f"?run={ids['minilm']}&color=input_length")
    legend = wait(driver, "var t = document.getElementById('color-legend').innerText; "
                          "return t.includes('tokens') ? t : null;", 20, "sentence length legend")
    lengths = np.asarray(Store(store_dir, readonly=True).tokens(ids["minilm"])["input_length"])
    assert f"{lengths.min()} tokens" in legend and f"{lengths.max()} tokens" in legend
    n_colours = driver.execute_script(gd_js("matrix-graph", "new Set(Array.from(g._fullData[0].marker.color, c => Array.from(c).join(','))).size"))
    assert n_colours == len(np.unique(lengths))  # one colour per distinct input length
    shot(driver, "matrix-sentence-length")
    collect_logs(driver)


def test_no_severe_console_errors(driver):
    collect_logs(driver)
    real = [m for m in driver.severe if "favicon" not in m]
    assert not real, "\n".join(real)
