"""A run that grows while the page shows it (issue 11, first run), in headless Chromium: a real
minilm run with PCA only is open; the same run is extended with UMAP by a real background run;
without a reload the page's run-info line follows it (PCA n/n, UMAP k/n) to complete."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from precompute.pipeline import RunConfig, run
from tests.browser.helpers import collect_logs, free_port, wait

SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
             "She said yes to the offer, then changed her mind.", "One, two, three: the list goes on.",
             "The trophy didn't fit in the suitcase because it was too big."]


def _cfg(d, projections, **kw):
    return RunConfig(model="minilm", corpus=str(d / "c.txt"), cache=str(d / "store"), layers="0,5", heads="0,3,7",
                     projections=projections, dims="2", variants="translated", workers=1, **kw)


@pytest.fixture(scope="module")
def live_app():
    import logging

    from werkzeug.serving import make_server

    from app import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    d = Path(tempfile.mkdtemp(prefix="atlas-live-"))
    (d / "c.txt").write_text("\n".join(SENTENCES), encoding="utf-8")
    summary = run(_cfg(d, "pca"))
    assert summary.status["status"] == "complete"
    srv = make_server("127.0.0.1", free_port(), create_app(d / "store").server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", d, summary.run_id
    srv.shutdown()
    shutil.rmtree(d, ignore_errors=True)


def test_run_info_follows_a_run_growing_in_the_background(live_app, driver):
    base, d, run_id = live_app
    driver.get(f"{base}/?run={run_id}")
    info = "return (document.getElementById('run-info') || {}).innerText || ''"
    wait(driver, "var t = (document.getElementById('run-info') || {}).innerText || ''; "
                 "return t.includes('complete') ? t : null;", 60, "run-info of the PCA run")
    driver.execute_script("window.__sameLoad = 1;")

    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("summary", run(_cfg(d, "pca,umap", fast_first=True))))
    worker.start()
    try:
        seen = []  # the run-info texts, in the order they were shown
        t0 = time.time()
        while time.time() - t0 < 400:
            text = driver.execute_script(info)
            if not seen or seen[-1] != text:
                seen.append(text)
            if "PARTIAL" in " ".join(seen) and text.endswith("complete"):
                break
            time.sleep(0.5)
    finally:
        worker.join(timeout=400)
    collect_logs(driver)
    assert result["summary"].run_id == run_id and result["summary"].status["status"] == "complete"
    growing = [i for i, t in enumerate(seen) if "PARTIAL run" in t]
    assert growing, seen
    # every head drawable (its PCA) while UMAP is being computed, said so while it happens
    assert all("PCA 6/6" in seen[i] and "being computed now" in seen[i] for i in growing), seen
    assert seen[-1].endswith("complete") and growing[-1] < len(seen) - 1, seen  # and then complete, no reload
    assert driver.execute_script("return window.__sameLoad") == 1  # no reload: the page followed by itself
    assert not [m for m in driver.severe if "run-progress" in m or "live" in m]
