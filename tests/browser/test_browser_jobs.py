"""Background precompute from the page, DiskcacheManager (the laptop default), in headless Chromium:
upload a corpus, start a real minilm run, watch its progress, see it finish and appear in the Run
dropdown without a restart, open it; cancel a second job and check the store is consistent and the
run resumes (only the missing heads are computed)."""
from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from jobs.paths import BUILTIN_CORPORA
from precompute.store import Store
from tests.browser.helpers import (DOCS_SHOTS, SENTENCES, all_entries_decode, collect_logs, free_port, gd_js, job_of,
                                   open_page, pick, set_checklist, set_text, shot, start_job, text_of, upload, wait,
                                   wait_idle, wait_job)

DOCS_SHOT = DOCS_SHOTS / "precompute-page.png"


@pytest.fixture(scope="module")
def jobs_app():
    import logging

    from werkzeug.serving import make_server

    from app import create_app
    from attention_atlas.settings import load_settings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    d = Path(tempfile.mkdtemp(prefix="atlas-jobs-browser-"))
    corpus = d / "five.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    (d / "corpora").mkdir()
    (d / "models").mkdir()
    settings = load_settings(env={}, cache=str(d / "store"), jobs_dir=str(d / "jobs"),
                             corpus_roots=str(d / "corpora"), model_roots=str(d / "models"), job_max_tokens=4000,
                             upload_max_bytes=20000)
    app = create_app(settings=settings)
    srv = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"base": f"http://127.0.0.1:{srv.server_port}", "dir": d, "corpus": corpus, "settings": settings}
    srv.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def test_start_progress_finish_cancel_resume(jobs_app, driver):
    base, settings, store_dir = jobs_app["base"], jobs_app["settings"], jobs_app["dir"] / "store"
    open_page(driver, base)
    # bad input: one line in the page, no job, no error overlay
    big = jobs_app["dir"] / "big.txt"
    big.write_text("a long line of text\n" * 2000, encoding="utf-8")  # 40 KB > the 20 KB limit
    driver.find_element(By.CSS_SELECTOR, "#jobs-upload input[type=file]").send_keys(str(big))
    wait(driver, "return document.getElementById('jobs-upload-msg').innerText.includes('over the 19.5 KB limit')",
         10, "oversize upload refused in the browser")
    set_text(driver, "jobs-model-path", "../../etc")
    driver.find_element(By.ID, "jobs-start").click()
    wait(driver, 'return document.getElementById("jobs-msg").innerText.includes("contains \'..\'")', 10,
         "traversal refused")
    set_text(driver, "jobs-model-path", "")
    assert not driver.find_elements(By.CSS_SELECTOR, ".dash-fe-error__title, .dash-debug-menu")
    assert not list((Path(settings.jobs_path) / "uploads").glob("*.txt"))  # nothing was stored
    # a good upload
    upload(driver, jobs_app["corpus"])
    assert "5 inputs" in text_of(driver, "jobs-upload-msg")
    set_checklist(driver, "jobs-projections", {"pca"})
    set_checklist(driver, "jobs-variants", {"translated"})
    set_text(driver, "jobs-layers", "0-1")

    # ---- job 1: runs to the end, progress visible, run appears in run-select without a restart
    job1 = start_job(driver)
    wait(driver, "return document.getElementById('jobs-start').disabled && !document.getElementById('jobs-cancel').disabled",
         10, "running state (start disabled, cancel enabled)")
    seen = set()
    end = time.time() + 90
    while time.time() < end:
        label = text_of(driver, "jobs-bar-label")
        seen.add(label)
        if "done" in text_of(driver, "jobs-status"):
            break
        time.sleep(0.25)
    e1 = job_of(settings, job1)
    assert e1["state"] == "done", e1
    moving = [s for s in seen if re.match(r"^\d+% · ", s) and 0 < int(s.split("%")[0]) < 100]
    assert moving, seen  # the progress bar showed the job part-way (forward passes, projections k/24 heads)
    assert e1["heads_total"] == 24 and e1["heads_computed"] == 24
    run1 = e1["run_id"]
    st = Store(store_dir, readonly=True)
    assert st.status(run1)["status"] == "complete"
    m = st.manifest(run1)
    assert m["layers"] == [0, 1] and m["projections"] == ["pca"] and m["corpus"]["n_inputs"] == 5
    st.close()
    # the page loaded with an empty store: the tick fills run-select and selects the new run
    wait(driver, f"return document.getElementById('run-select').innerText.includes('{run1}')", 15, "run in run-select")
    wait(driver, gd_js("matrix-overlay", "g._fullLayout.annotations.length > 0 && g._fullData.length"), 20, "matrix drawn")
    cells = driver.execute_script(gd_js("matrix-overlay", "g._fullLayout.annotations.filter(a => (a.hovertext || a.text || '').startsWith('L')).length"))
    assert cells == 24
    wait(driver, "return document.getElementById('jobs-bar-label').innerText === 'done' && "
                 "document.getElementById('jobs-bar').value === 100", 10, "the bar ends on done")
    # the job list shows it, with a link that opens the run
    wait(driver, f"return document.getElementById('jobs-table').innerText.includes('open {run1}')", 10, "open link")
    assert "done" in text_of(driver, "jobs-table")

    # ---- job 2: another run (the built-in demo corpus, 400 tokens), all 72 heads; cancelled mid-run
    pick(driver, "jobs-corpus", "demo — " + BUILTIN_CORPORA["demo"])
    set_text(driver, "jobs-layers", "")
    set_text(driver, "jobs-max-tokens", "400")
    job2 = start_job(driver, job1)
    e2 = wait_job(settings, job2, lambda e: (e.get("heads_done") or 0) >= 2, 90, "job 2 in the heads stage")
    driver.find_element(By.ID, "jobs-cancel").click()
    t_cancel = time.time()
    e2 = wait_job(settings, job2, lambda e: e["state"] not in ("queued", "running"), 30, "job 2 cancelled")
    cancel_s = time.time() - t_cancel
    assert e2["state"] == "cancelled", e2
    wait(driver, "return document.getElementById('jobs-status').innerText.includes('cancelled')", 15, "cancel shown")
    wait(driver, "return !document.getElementById('jobs-start').disabled", 15, "start enabled again")
    run2 = e2["run_id"]
    assert run2 and run2 != run1
    st = Store(store_dir)
    status = st.status(run2)
    assert status["status"] == "partial" and 0 < status["heads_done"] < 72, status
    assert st.try_lock(run2) is None, "the cancelled job left its writer lock behind"  # resumable: lock free
    st.unlock(run2)
    st.close()
    n_read = all_entries_decode(store_dir)
    assert n_read > 24 * 3
    # the partial run is listed as partial in the run dropdown's labels
    wait(driver, f"return document.getElementById('jobs-runs').innerText.includes('partial')", 15, "partial run listed")

    # ---- resume: the same job again computes only the missing heads
    job3 = start_job(driver, job2)
    wait_job(settings, job3, lambda e: e["state"] != "running" or "projections" in (e.get("stage") or ""), 60,
             "resume job in its heads stage")
    wait(driver, f"var r = document.querySelector('tr.job-running'); return r && r.innerText.includes('{job3}') && "
                 "r.innerText.includes('projections')", 10, "job 3 listed as running")
    shot(driver, "jobs-page")
    panel = driver.find_element(By.CSS_SELECTOR, ".analysis-panel")
    driver.execute_script("arguments[0].scrollIntoView()", panel)
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    panel.screenshot(str(DOCS_SHOT))
    e3 = wait_job(settings, job3, lambda e: e["state"] not in ("queued", "running"), 120, "resume finished")
    print(f"\nRESULTS diskcache: job 1 (24 heads) {e1['finished'] - e1['created']:.1f} s from Start to done; "
          f"job 2 cancelled {cancel_s:.1f} s after Cancel at {status['heads_done']}/72 heads stored; "
          f"resume computed {e3['heads_computed']} heads in {e3['finished'] - e3['created']:.1f} s")
    assert e3["state"] == "done" and e3["run_id"] == run2, e3
    assert e3["heads_computed"] == 72 - status["heads_done"], (e3, status)
    st = Store(store_dir, readonly=True)
    assert st.status(run2)["status"] == "complete"
    st.close()
    wait(driver, "return document.getElementById('jobs-status').innerText.includes('done')", 15, "resume done shown")
    wait_idle(driver)
    collect_logs(driver)
    assert not [m for m in driver.severe if "jobs" in m], driver.severe

    # ---- open the finished run from the list
    driver.find_element(By.LINK_TEXT, f"open {run1}").click()
    wait(driver, f"return location.search.includes('run={run1}')", 10, "URL has the run")
    wait(driver, gd_js("matrix-overlay", "g._fullLayout.annotations.filter(a => (a.hovertext || a.text || '').startsWith('L')).length === 24"),
         20, "opened run drawn")


def test_new_run_reaches_the_run_menu_with_the_runs_tab_never_opened(driver, tmp_path):
    """The jobs tick lives outside the Runs tab (layouts/jobs.watcher), which is mounted only when first
    shown: a page loaded on an empty store, on the default tab, still gets the first run that lands."""
    import logging

    from werkzeug.serving import make_server

    from app import create_app
    from attention_atlas.settings import load_settings
    from tests.store_fixture import make_test_store

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    settings = load_settings(env={}, cache=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"))
    srv = make_server("127.0.0.1", free_port(), create_app(settings=settings).server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        driver.get(f"http://127.0.0.1:{srv.server_port}/")
        wait(driver, "return document.querySelectorAll('#analysis-tab input').length > 0", 20, "analysis tabs")
        assert driver.execute_script("return document.getElementById('analysis-precompute').children.length") == 0
        # a run written by another process while the page watches (the tick re-reads the store's runs
        # for 12 s after the page's first tick and whenever a job changes)
        run = make_test_store(tmp_path / "store", n_layers=2, n_heads=2, n_inputs=4, run_id="landed-run",
                              methods=("pca",), dims=(2,), variants=("translated",))
        wait(driver, f"return document.getElementById('run-select').innerText.includes('{run}')", 20,
             "the new run in the Run menu")
        wait(driver, gd_js("matrix-overlay", "g._fullLayout.annotations.length > 0 && g._fullData.length"), 30,
             "its Matrix View drawn")
        assert driver.execute_script("return document.getElementById('analysis-precompute').children.length") == 0
        # opening the tab mounts it with the tables filled at once (not at the next change)
        driver.execute_script("document.querySelector('#analysis-tab input[value=precompute]').click()")
        wait(driver, f"return (document.getElementById('jobs-runs') || {{innerText: ''}}).innerText.includes('{run}')",
             10, "the Runs tab's table lists the run")
        collect_logs(driver)
        assert not driver.severe, driver.severe
    finally:
        srv.shutdown()
