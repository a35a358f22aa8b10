"""Helpers of the browser tests (headless Debian Chromium driven by Selenium): waiting on the page,
reading Plotly graphs, picking dropdown options, screenshots, the dashboard served in a thread, and
the Runs & precompute page's form. The fixtures that use them are in tests/browser/conftest.py.

Screenshots land in tests/screenshots/ (gitignored)."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from jobs.registry import Registry
from precompute.store import Store, decode

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# the run ids of the synthetic store of the store_dir fixture (tests/browser/conftest.py)
TEXT, IMAGE, PARTIAL = "text-run", "image-run", "partial-run"

SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
             "She said yes to the offer, then changed her mind.", "One, two, three: the list goes on.",
             "The trophy didn't fit in the suitcase because it was too big."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(app):
    """A Dash app served by werkzeug in a thread on a free loopback port: yields its base URL."""
    import logging

    from werkzeug.serving import make_server
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = make_server("127.0.0.1", 0, app.server, threaded=True)   # port 0: the OS picks, no race
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def serve(store_dir):
    """The dashboard on ``store_dir`` in a thread: yields its base URL."""
    from app import create_app
    yield from serve_app(create_app(store_dir))


# ------------------------------------------------------------------ the page
def collect_logs(d):
    for entry in d.get_log("browser"):
        if entry["level"] == "SEVERE":
            d.severe.append(entry["message"])


def wait(d, js, timeout=15.0, what=""):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = d.execute_script(js)
        except Exception as exc:  # noqa: BLE001 - page still loading
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.15)
    raise AssertionError(f"timed out waiting for {what or js!r} (last: {last!r})")


GD = "document.querySelector('#{id} .js-plotly-plot')"


def gd_js(id_, expr):
    return f"var g = {GD.format(id=id_)}; if (!g || !g._fullData) return null; return {expr};"


def text_of(d, id_):
    return d.find_element(By.ID, id_).text


def open_url(d, base, query="", settle=True):
    d.get(base + "/" + query)
    wait(d, gd_js("matrix-graph", "g._fullData.length"), what="matrix drawn")
    wait(d, gd_js("matrix-overlay", "g._fullLayout.annotations.length > 0 && g._fullData.length === 3"), what="matrix overlay")
    if settle:
        wait_idle(d)


RECORD_CALLBACKS = """
window.__atlasCalls = [];
if (!window.__atlasFetch) {
    window.__atlasFetch = window.fetch;
    window.fetch = function(url, opts) {
        var entry = null;
        if (String(url).includes('_dash-update-component') && opts && opts.body) {
            try { entry = [JSON.parse(opts.body).output, performance.now(), null]; window.__atlasCalls.push(entry); }
            catch (e) {}
        }
        var got = window.__atlasFetch.apply(this, arguments);
        if (entry) { got.then(function(r) { r.clone().text().then(function(t) { entry[2] = t.length; }); }); }
        return got;
    };
}
"""


def record_calls(d):
    """From now on, record every server callback the page makes: [its outputs, start time in ms,
    characters of its answer (None until it came; 0: no update)]."""
    d.execute_script(RECORD_CALLBACKS)


def recorded_calls(d) -> list:
    return d.execute_script("return window.__atlasCalls.slice()")


def wait_idle(d, timeout=30):
    """No Dash callback in flight (the renderer marks loading components with data-dash-is-loading)."""
    time.sleep(0.3)
    wait(d, "return document.querySelectorAll('[data-dash-is-loading=\"true\"]').length === 0", timeout, "idle")
    time.sleep(0.2)


def pick(d, dropdown_id, label):
    d.find_element(By.ID, dropdown_id).click()
    opt = wait(d, f"""var xs = document.evaluate("//*[normalize-space(text())='{label}']", document, null,
                   XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
                   for (var i = xs.snapshotLength - 1; i >= 0; i--) {{ var n = xs.snapshotItem(i);
                     if (!n.closest('#{dropdown_id}')) return n; }} return null;""", 5, f"option {label}")
    opt.click()
    wait_idle(d)


def dropdown_value(d, id_):
    return d.find_element(By.ID, id_).text.strip()


def click_matrix_point(d, point):
    """A real mouse click on point ``point`` of the Matrix View's WebGL trace."""
    xy = d.execute_script(gd_js("matrix-graph", f"""[g._fullLayout.xaxis.d2p(g._fullData[0].x[{point}]) + g._fullLayout.xaxis._offset,
                                                     g._fullLayout.yaxis.d2p(g._fullData[0].y[{point}]) + g._fullLayout.yaxis._offset]"""))
    el = d.find_element(By.CSS_SELECTOR, "#matrix-graph .js-plotly-plot .nsewdrag")
    rect = d.execute_script("var r = arguments[0].getBoundingClientRect(); return [r.left, r.top];", el)
    box = d.execute_script(f"var r = {GD.format(id='matrix-graph')}.getBoundingClientRect(); return [r.left, r.top];")
    ActionChains(d).move_to_element_with_offset(el, 0, 0).perform()
    w, h = el.size["width"], el.size["height"]
    x = box[0] + xy[0] - rect[0] - w / 2
    y = box[1] + xy[1] - rect[1] - h / 2
    ActionChains(d).move_to_element_with_offset(el, int(round(x)), int(round(y))).pause(0.3).click().perform()


def shot(d, name, height=None):
    SHOTS.mkdir(exist_ok=True)
    full = d.execute_script("return document.body.scrollHeight")
    d.set_window_size(1400, height or max(1000, min(full + 40, 2600)))
    time.sleep(0.6)
    d.save_screenshot(str(SHOTS / f"{name}.png"))
    d.set_window_size(1400, 1000)
    time.sleep(0.8)  # let dcc.Graph finish its responsive resize before the next interaction


def expected_matches(store_dir, run, word):
    from attention_atlas.dashboard_data import Data
    toks = Data(store_dir).tokens(run)
    return int((toks.norm_texts == word).sum())


# ------------------------------------------------------------------ the Runs & precompute page
def all_entries_decode(store_dir) -> int:
    """Every stored entry reads back with a valid checksum; returns how many were read."""
    st = Store(store_dir, readonly=True)
    n = 0
    try:
        for key in st.keys():
            if key.endswith("/lock"):
                continue
            decode(st._cache.get(key), key)  # noqa: SLF001 - raw blob, checksum checked
            n += 1
    finally:
        st.close()
    return n


def open_page(driver, base):
    driver.get(base + "/?atab=precompute")
    # with an empty store the URL reducer stops early (no run to show): pick the tab by hand
    tab = wait(driver, """var xs = document.querySelectorAll('#analysis-tab input');
                        for (var i = 0; i < xs.length; i++) if (xs[i].value === 'precompute') return xs[i]; return null;""",
               20, "analysis tabs")
    if not tab.is_selected():
        tab.click()
    wait(driver, "return document.getElementById('jobs-limits') && "
                 "document.getElementById('jobs-limits').innerText.includes('limits')", 20, "jobs form")


def set_text(driver, id_, value):
    el = driver.find_element(By.ID, id_)
    el.send_keys(Keys.CONTROL, "a")  # a real edit: React's controlled input ignores el.clear()
    el.send_keys(Keys.DELETE)
    if value:
        el.send_keys(value)
    wait(driver, f"return document.getElementById('{id_}').value === {value!r}", 5, f"{id_} = {value!r}")


def set_checklist(driver, id_, wanted):
    for box in driver.find_elements(By.CSS_SELECTOR, f"#{id_} input[type=checkbox]"):
        if box.is_selected() != (box.get_attribute("value") in wanted):
            box.find_element(By.XPATH, "./ancestor::label").click()


def upload(driver, path):
    driver.find_element(By.CSS_SELECTOR, "#jobs-upload input[type=file]").send_keys(str(path))
    wait(driver, "return document.getElementById('jobs-upload-msg').innerText.startsWith('uploaded')", 20, "upload")


def job_of(settings, job_id):
    reg = Registry(settings.jobs_path)
    try:
        return reg.get(job_id)
    finally:
        reg.close()


def start_job(driver, before=None) -> str:
    """Press Start; returns the id of the job it queued (different from ``before``)."""
    wait(driver, "return !document.getElementById('jobs-start').disabled", 20, "start enabled")
    driver.find_element(By.ID, "jobs-start").click()
    return wait(driver, "var t = document.getElementById('jobs-msg').innerText; var m = t.match(/^job ([0-9a-f]{8}) queued/);"
                        f" return m && m[1] !== {json.dumps(before)} ? m[1] : null;", 15, "job queued")


def wait_job(settings, job_id, pred, timeout, what):
    end = time.time() + timeout
    e = None
    while time.time() < end:
        e = job_of(settings, job_id)
        if e is not None and pred(e):
            return e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {e}")
