"""dash-renderer's own requests (headless Chromium) through the team server: gunicorn, basic
auth, the request checks of serving.py. The page draws, head navigation works, and no callback
request is refused (400/401/403/413/5xx)."""
from __future__ import annotations

import base64
import re

import pytest

from bench.load import Gunicorn
from tests.store_fixture import make_test_store
from tests.browser.helpers import collect_logs, gd_js, open_url, shot, wait, wait_idle

RUN = "team-text"


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    path = tmp_path_factory.mktemp("team") / "store"
    make_test_store(path, "text", n_layers=3, n_heads=4, n_inputs=10, run_id=RUN)
    with Gunicorn(path, workers=2, threads=4, users={"alice": "s3cret-Pw"}, env={"ATLAS_LOG_LEVEL": "INFO"},
                  workdir=tmp_path_factory.mktemp("team-srv")) as g:
        yield g


def test_real_browser_through_gunicorn_with_basic_auth(team_server, driver):
    g = team_server
    token = base64.b64encode(b"alice:s3cret-Pw").decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    try:
        before = len(g.log().splitlines())
        open_url(driver, g.base, f"?run={RUN}")
        wait(driver, gd_js("single-graph", "g._fullData.length > 0"), 30, "Single View drawn")
        driver.find_element("id", "next-head-btn").click()
        wait_idle(driver)
        wait(driver, "return location.search.indexOf('head=1') >= 0", 15, "the URL follows the head")
        wait(driver, "return document.getElementById('single-info').innerText.length > 0", 15, "Single View note")
        driver.find_element("id", "search-input").send_keys("cat\n")
        wait_idle(driver)
        wait(driver, "return document.getElementById('search-count').innerText.indexOf('cat') >= 0", 15, "search count")
        collect_logs(driver)
        shot(driver, "team-server-gunicorn")
        assert not [m for m in driver.severe if "_dash-update-component" in m or "401" in m], driver.severe
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    lines = [ln for ln in g.log().splitlines()[before:] if "atlas.http" in ln]
    callbacks = [ln for ln in lines if "/_dash-update-component" in ln]
    assert len(callbacks) >= 8 and all("user=alice" in ln for ln in callbacks)
    refused = [ln for ln in lines if re.search(r'" (400|401|403|413|5\d\d) ', ln)]
    assert not refused, refused[:5]
