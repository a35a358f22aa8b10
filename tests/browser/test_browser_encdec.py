"""An encoder–decoder run in headless Chromium: a tiny seeded random BART saved as a local folder (no
download), run through the documented CLI on a .csv of source/target pairs, served by the real app.

The Matrix View shows one grid per head kind, switched by a control that exists only for such runs
and travels in the URL; the cross-attention grid holds the decoder's (target) queries and the
encoder's (source) keys; the Single View of a cross head too, its lines going from a target query to
the source keys with the recomputed weights; the Sentence View draws lines from target tokens (left)
to source tokens (right) whose weights are the attention recomputed from the stored q/k (which
tests/integration/test_any_model.py holds equal to the model's own within 1e-4)."""
from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.common.by import By

from figures.common import display_token, html_escape
from precompute.metrics import attention_from_qk, layer_semantics
from precompute.store import Store
from tests.browser.helpers import TEXT, collect_logs, gd_js, open_url, serve, shot, text_of, wait, wait_idle

SOURCES = ["The cat sat on the mat.", "Hi there!", "Alice gave Bob the book."]
TARGETS = ["Le chat.", "Salut !", "Alice a donné le livre."]


@pytest.fixture(scope="module")
def bart_run():
    """(store dir, run id): the tiny BART through `python -m precompute run` with a target column."""
    from precompute.cli import main
    from tests.helpers import save_tiny, seq2seq_specs
    d = Path(tempfile.mkdtemp(prefix="atlas-encdec-"))
    model_cls, config = seq2seq_specs()["bart"]
    folder = save_tiny(model_cls, config, d / "model")
    with open(d / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "fr"])
        w.writerows(zip(SOURCES, TARGETS))
    assert main(["run", "--model", folder, "--corpus", str(d / "pairs.csv"), "--text-column", "source",
                 "--target-column", "fr", "--cache", str(d / "store"), "--projections", "pca", "--dims", "2",
                 "--variants", "translated", "--quiet", "--workers", "1"]) == 0
    (run_id,) = Store(d / "store", readonly=True).run_ids()
    yield d / "store", run_id
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def bart_server(bart_run):
    yield from serve(bart_run[0])


def _tables(store_dir, run_id):
    st = Store(store_dir, readonly=True)
    return st, st.manifest(run_id), st.tokens(run_id), st.target_tokens(run_id)


def test_cross_grid_single_and_sentence_views(bart_server, bart_run, driver):
    store_dir, run_id = bart_run
    st, m, src, tgt = _tables(store_dir, run_id)
    n_src, n_tgt = len(src["text"]), len(tgt["text"])
    cross_layers = [l for l in m["layers"] if m["model"]["attention"][l]["kind"] == "cross"]
    layer, head = cross_layers[0], 1
    src0 = np.flatnonzero(src["input_id"] == 0)
    tgt0 = np.flatnonzero(tgt["input_id"] == 0)
    sel = 3                                              # the selected query: target token 3 of input 0
    token = n_src + int(tgt0[sel])                       # its row in the source-then-target table
    open_url(driver, bart_server, f"?run={run_id}&kind=cross&layer={layer}&head={head}&proj=pca&token={token}"
                                  "&smode=lines")
    wait(driver, gd_js("single-graph", "g._fullData.length >= 2 && g.layout.title.text.indexOf('(cross)') >= 0"),
         30, "cross head in the Single View")
    wait(driver, gd_js("sentence-graph", "g._fullData.length >= 2"), 30, "sentence view")
    wait_idle(driver)

    # the head-kind control exists for this run and names the three kinds; the URL carries the kind
    kinds = driver.find_element(By.ID, "kind-ctl")
    assert kinds.is_displayed() and "cross-attention" in kinds.text and "encoder self-attention" in kinds.text
    assert "kind=cross" in driver.execute_script("return location.search")

    # Matrix View: one row per cross layer; every head's points = its target queries + source keys
    ticks = driver.execute_script(gd_js("matrix-graph", "g.layout.yaxis.ticktext"))
    assert ticks == [f"L{l}" for l in cross_layers]
    n_points = driver.execute_script(gd_js("matrix-graph", "g._fullData[0].x.length"))
    assert n_points == len(cross_layers) * len(m["heads"]) * (n_tgt + n_src)
    assert "cross heads drawn" in text_of(driver, "matrix-note")
    assert "queries are target (decoder) tokens, keys source (encoder) tokens" in text_of(driver, "matrix-note")

    # Single View of the cross head: its queries are the target tokens, its keys the source tokens
    q_text = driver.execute_script(gd_js("single-graph", "Array.from(g._fullData[0].text)"))
    k_text = driver.execute_script(gd_js("single-graph", "Array.from(g._fullData[1].text)"))
    # (escaped for Plotly, which would read "</s>" as markup: what shows is the token itself)
    from figures.common import html_escape
    assert q_text == [html_escape(display_token(t)) for t in tgt["text"]]
    assert k_text == [html_escape(display_token(t)) for t in src["text"]]
    q, k = st.qk(run_id, layer, head)
    a = attention_from_qk(q[tgt0], k[src0], **layer_semantics(m["model"], layer))
    info = text_of(driver, "single-info")
    assert f"{n_tgt} target queries + {n_src} source keys" in info
    shown = re.findall(r"(\S+) (\d\.\d\d)", info.split("lines to its top keys:")[1].split("·")[0])
    top = np.argsort(-a[sel])[:len(shown)]
    assert len(shown) >= 1
    for (word, w), j in zip(shown, top):
        assert abs(float(w) - a[sel, j]) < 0.006 and word == display_token(src["text"][src0[j]]).strip()

    # Sentence View: target tokens on the left, source tokens on the right, lines target → source
    fig = driver.execute_script(gd_js("sentence-graph", "g._fullData.map(function(t) { return {name: t.name, "
                                                         "x: Array.from(t.x || []), y: Array.from(t.y || []), "
                                                         "text: t.text ? Array.from(t.text) : null, "
                                                         "color: t.line ? t.line.color : null}; })"))
    queries, keys = fig[-2], fig[-1]
    assert queries["text"] == [html_escape(str(t)) for t in tgt["text"][tgt0]] and set(queries["x"]) == {0}
    assert keys["text"] == [html_escape(str(t)) for t in src["text"][src0]] and set(keys["x"]) == {1}
    assert queries["text"][0] == "&lt;/s&gt;"      # BART's decoder start token, shown (not read as an HTML tag)
    drawn = {}
    for tr in fig[:-2]:
        if tr["name"] is None or tr["color"] is None or not tr["x"]:
            continue
        alpha = float(tr["color"].rsplit(",", 1)[1].rstrip(")"))
        for i in range(0, len(tr["x"]) - 1, 3):
            if tr["x"][i] == 0 and tr["x"][i + 1] == 1:
                drawn[(int(round(-tr["y"][i])), int(round(-tr["y"][i + 1])))] = alpha
    hidden = set()                                        # the default view hides no key
    expect = {(i, j) for i in range(len(tgt0)) for j in range(len(src0)) if a[i, j] >= 0.01 and j not in hidden}
    assert set(drawn) == expect                           # every line goes from a target query to a source key
    for (i, j), alpha in drawn.items():                   # and its opacity is the bin of the recomputed weight
        b = min(9, int(np.digitize(a[i, j], np.linspace(0, 1, 11)) - 1))
        assert alpha == pytest.approx(max(0.08, (b + 0.5) / 10), abs=1e-3)
    assert "cross-attention (decoder queries → encoder keys)" in \
        driver.execute_script(gd_js("sentence-graph", "g.layout.title.text"))
    shot(driver, "encdec-cross")
    collect_logs(driver)
    assert not [e for e in driver.severe if "encdec" in e or "Error" in e]


def test_kind_switch_changes_grid_and_url(bart_server, bart_run, driver):
    store_dir, run_id = bart_run
    st, m, src, tgt = _tables(store_dir, run_id)
    enc = [l for l in m["layers"] if m["model"]["attention"][l]["kind"] == "encoder"]
    dec = [l for l in m["layers"] if m["model"]["attention"][l]["kind"] == "decoder"]
    open_url(driver, bart_server, f"?run={run_id}&kind=cross&layer=3&proj=pca")
    driver.find_element(By.CSS_SELECTOR, "#kind-select input[value='decoder']").click()
    want = json.dumps(json.dumps([f"L{l}" for l in dec], separators=(",", ":")))
    wait(driver, gd_js("matrix-graph", f"JSON.stringify(Array.from(g.layout.yaxis.ticktext)) === {want}"), 30,
         "decoder grid")
    wait_idle(driver)
    url = driver.execute_script("return location.search")
    assert "kind=decoder" in url and f"layer={dec[0]}" in url     # a decoder head is opened with its grid
    n_points = driver.execute_script(gd_js("matrix-graph", "g._fullData[0].x.length"))
    assert n_points == len(dec) * len(m["heads"]) * 2 * len(tgt["text"])
    driver.find_element(By.CSS_SELECTOR, "#kind-select input[value='encoder']").click()
    wait(driver, "return location.search.indexOf('kind=encoder') >= 0", 30, "encoder grid in the URL")
    wait_idle(driver)
    assert driver.execute_script(gd_js("matrix-graph", "g.layout.yaxis.ticktext")) == [f"L{l}" for l in enc]
    assert driver.execute_script(gd_js("matrix-graph", "g._fullData[0].x.length")) == \
        len(enc) * len(m["heads"]) * 2 * len(src["text"])
    # the open layer picks its grid (in the browser): stepping past the last encoder layer shows the next kind's
    nxt = m["layers"][m["layers"].index(enc[-1]) + 1]
    kind = m["model"]["attention"][nxt]["kind"]
    assert kind != "encoder"
    open_url(driver, bart_server, f"?run={run_id}&layer={enc[-1]}&proj=pca")
    assert "kind=encoder" in driver.execute_script("return location.search")
    driver.find_element(By.ID, "next-layer-btn").click()
    wait(driver, f"return location.search.indexOf('kind={kind}') >= 0 && location.search.indexOf('layer={nxt}') >= 0",
         30, "the grid of the next layer's kind")
    wait_idle(driver)
    assert driver.execute_script(gd_js("matrix-graph", "g.layout.yaxis.ticktext")) == \
        [f"L{l}" for l in m["layers"] if m["model"]["attention"][l]["kind"] == kind]
    # the rollout tab of an encoder–decoder run: the encoder stack, and one line saying why
    driver.find_element(By.CSS_SELECTOR, "#analysis-tab input[value='rollout']").click()
    wait(driver, "var e = document.getElementById('rollout-info'); return e && e.innerText.indexOf('cannot be "
                 "chained') >= 0", 30, "rollout note")


def test_plain_run_has_no_kind_control(server, driver):
    """Runs without head kinds (every other run): the control is not shown and the URL has no kind."""
    open_url(driver, server[0], f"?run={TEXT}")
    assert not driver.find_element(By.ID, "kind-ctl").is_displayed()
    assert "kind=" not in driver.execute_script("return location.search")




@pytest.fixture(scope="module")
def t5_run():
    """(store dir, run id): a tiny T5 (learned relative-position bias) through the CLI, target column."""
    from precompute.cli import main
    from tests.helpers import save_tiny, seq2seq_specs
    d = Path(tempfile.mkdtemp(prefix="atlas-t5-"))
    model_cls, config = seq2seq_specs()["t5"]
    folder = save_tiny(model_cls, config, d / "model")
    long = " ".join(["the cat sat on the mat"] * 4)                     # > max_distance (12) tokens
    with open(d / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "fr"])
        w.writerows(zip(SOURCES + [long], TARGETS + [long]))
    assert main(["run", "--model", folder, "--corpus", str(d / "pairs.csv"), "--text-column", "source",
                 "--target-column", "fr", "--cache", str(d / "store"), "--projections", "pca", "--dims", "2",
                 "--variants", "translated", "--quiet", "--workers", "1"]) == 0
    (run_id,) = Store(d / "store", readonly=True).run_ids()
    yield d / "store", run_id
    shutil.rmtree(d, ignore_errors=True)


def test_t5_position_bias_in_single_and_neuron_views(t5_run, driver):  # noqa: F811
    """A T5 decoder head: the Single View's line weights are the recompute WITH the head's stored
    relative-position bias (they differ without it), and the neuron view shows the bias term."""
    store_dir, run_id = t5_run
    st, m, src, tgt = _tables(store_dir, run_id)
    assert m["model"]["position_bias"] and all(("bias" in a) for a in m["model"]["attention"])
    layer = [l for l in m["layers"] if m["model"]["attention"][l]["kind"] == "decoder"][0]
    head, inp = 2, 3                                     # the long input
    tgt_rows = np.flatnonzero(tgt["input_id"] == inp)
    sel = len(tgt_rows) - 1                              # its last target token: sees every earlier one
    token = len(src["text"]) + int(tgt_rows[sel])
    q, k = st.qk(run_id, layer, head)
    a = attention_from_qk(q[tgt_rows], k[tgt_rows], **layer_semantics(m["model"], layer, head))
    sem = {key: v for key, v in layer_semantics(m["model"], layer, head).items() if key != "bias"}
    assert np.abs(attention_from_qk(q[tgt_rows], k[tgt_rows], **sem) - a).max() > 1e-3
    for server in serve(store_dir):
        open_url(driver, server, f"?run={run_id}&kind=decoder&layer={layer}&head={head}&proj=pca&token={token}"
                                 "&atab=neuron")
        wait(driver, "var e = document.getElementById('single-info'); return !!e && "
                     "e.innerText.indexOf('lines to its top keys:') >= 0", 40, "single view lines")
        info = text_of(driver, "single-info")
        shown = re.findall(r"(\S+) (\d\.\d\d)", info.split("lines to its top keys:")[1].split("·")[0])
        top = np.argsort(-a[sel])[:len(shown)]
        assert len(shown) >= 1
        for (word, w), j in zip(shown, top):
            assert abs(float(w) - a[sel, j]) < 0.006
        wait(driver, "return !!document.getElementById('neuron-bias')", 40, "neuron view with the bias term")
        assert "position bias" in text_of(driver, "neuron-info")
        collect_logs(driver)
        assert not [e for e in driver.severe if "Error" in e]
