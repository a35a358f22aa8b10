"""The dashboard on REAL runs of the three packaged models (minilm, smollm2, dinov2-small),
made by the real precompute pipeline, in headless Chromium (fixtures ``real_store`` and
``real_server`` live in conftest.py, built once per test session)."""
from __future__ import annotations

import shutil
import tempfile
import threading

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from precompute.pipeline import RunConfig, run
from precompute.store import Store
from tests.browser.helpers import collect_logs, gd_js, open_url, shot, text_of, wait, wait_idle


@pytest.mark.parametrize("name", ["minilm", "smollm2", "dinov2"])
def test_matrix_and_single_view_on_real_run(real_store, real_server, driver, name):
    store_dir, ids = real_store
    m = Store(store_dir, readonly=True).manifest(ids[name])
    n_heads = len(m["layers"]) * len(m["heads"])
    open_url(driver, real_server, f"?run={ids[name]}")
    labels = driver.execute_script(gd_js("matrix-overlay", "g._fullLayout.annotations.map(a => a.hovertext || a.text)"))
    cells = [t for t in labels if t.startswith("L")]
    assert len(cells) == n_heads, cells
    n_traces, kind, n_points = driver.execute_script(gd_js(
        "matrix-graph", "[g.data.length, g._fullData[0].type, g._fullData[0].x.length]"))
    assert n_traces == 1 and kind == "scattergl" and n_points > 0 and n_points % n_heads == 0
    title = driver.execute_script(gd_js("single-graph", "g._fullLayout.title.text"))
    assert title.startswith("L0 H0")
    # the runs load one after another in one browser: the head dropdowns must not come up blank
    assert text_of(driver, "layer-select").strip() == "L0" and text_of(driver, "head-select").strip() == "H0"
    n_single = driver.execute_script(gd_js("single-graph", "g._fullData.reduce((s, t) => s + (t.x ? t.x.length : 0), 0)"))
    assert n_single >= 2 * m["corpus"]["n_tokens"]  # Single View shows every point
    collect_logs(driver)
    shot(driver, f"real-{name}")


def test_search_on_real_minilm(real_store, real_server, driver):
    store_dir, ids = real_store
    open_url(driver, real_server, f"?run={ids['minilm']}")
    box = driver.find_element(By.ID, "search-input")
    box.clear()
    box.send_keys("the", Keys.ENTER)
    wait(driver, "return document.getElementById('search-count').innerText.includes('match')", 15, "search count")
    tokens = Store(store_dir, readonly=True).tokens(ids["minilm"])["text"]
    expected = sum(t.lower() == "the" for t in tokens)
    assert expected > 3 and f"{expected} tokens match" in text_of(driver, "search-count")


def test_image_view_on_real_dinov2(real_store, real_server, driver):
    _, ids = real_store
    open_url(driver, real_server, f"?run={ids['dinov2']}&tab=image&layer=11&token=100")
    wait(driver, gd_js("image-graph", "g._fullData.length >= 2 && g._fullData[0].type === 'image'"), 20, "image view")
    wait_idle(driver)
    shot(driver, "real-dinov2-image")
    assert not driver.severe, driver.severe
