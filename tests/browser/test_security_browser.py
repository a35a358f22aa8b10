"""Sign-in, CSRF and cross-site requests with a real headless Chromium against real gunicorn
(issue 14): the login page, the session cookie's flags as the browser stores them, dash-renderer's
callbacks carrying the CSRF token by themselves, sign-out, and a hostile page on another site
(http://localhost:<port> is another site than http://127.0.0.1:<port>) whose auto-submitted form
and image tag do nothing — with the session cookie, and with basic credentials the browser sends
on its own."""
from __future__ import annotations

import base64
import functools
import http.server
import re
import threading
import time

import pytest

from bench.load import Gunicorn, free_port
from tests.store_fixture import make_test_store
from tests.browser.helpers import collect_logs, gd_js, wait, wait_idle

RUN = "secb-run"
USER = ("alice", "Alice-pw-1234")


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    path = tmp_path_factory.mktemp("secb") / "store"
    make_test_store(path, "text", n_layers=2, n_heads=3, n_inputs=8, run_id=RUN)
    with Gunicorn(path, workers=2, threads=4, users=dict([USER]), env={"ATLAS_LOG_LEVEL": "INFO"},
                  workdir=tmp_path_factory.mktemp("secb-srv")) as g:
        yield g


@pytest.fixture(scope="module")
def evil_site(tmp_path_factory, team):
    """A page on another site that tries to use the dashboard with the visitor's credentials."""
    root = tmp_path_factory.mktemp("evil")
    target = team.base
    (root / "index.html").write_text(f"""<!doctype html><html><body>
<img id="pic" src="{target}/_atlas/matrix-preview.png?run={RUN}&regex=1&q=(.|.|.|.|.|.|.)*!&from=evil">
<form id="f" method="post" action="{target}/_dash-update-component?from=evil" enctype="text/plain">
<input name='{{"output":"jobs-request.data","x":"' value='"}}'></form>
<script>setTimeout(function(){{document.getElementById('f').submit();}}, 300);</script>
</body></html>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://localhost:{httpd.server_port}"
    httpd.shutdown()


def http_lines(g, since: int):
    return [ln for ln in g.log().splitlines()[since:] if "atlas.http" in ln and re.search(r'" \d{3} ', ln)]


def evil_requests(g, since: int, timeout: float = 30.0) -> list[str]:
    """The hostile page's requests to the dashboard logged since line ``since``, once both of them
    (its image and its form's POST) are there: a fixed wait let a loaded machine's late answer to the
    first visit fall into the second visit's lines."""
    end = time.time() + timeout
    while True:
        evil = [ln for ln in http_lines(g, since) if "/_dash-update-component" in ln or "matrix-preview" in ln]
        both = any("matrix-preview" in ln for ln in evil) and any("/_dash-update-component" in ln for ln in evil)
        if both or time.time() > end:
            return evil
        time.sleep(0.2)


def test_login_page_session_csrf_and_logout_in_chromium(team, driver):
    g = team
    before = len(g.log().splitlines())
    driver.get(g.base + f"/?run={RUN}")
    wait(driver, "return !!document.getElementById('login-form')", 20, "login page")
    driver.find_element("id", "username").send_keys(USER[0])
    driver.find_element("id", "password").send_keys(USER[1])
    driver.find_element("id", "login-submit").click()
    wait(driver, gd_js("single-graph", "g._fullData.length > 0"), 40, "Single View drawn after sign-in")
    assert f"run={RUN}" in driver.current_url
    cookies = {c["name"]: c for c in driver.get_cookies()}
    assert cookies["atlas_session"]["httpOnly"] is True and cookies["atlas_session"]["sameSite"] == "Lax"
    assert cookies["_csrf_token"]["httpOnly"] is False and cookies["_csrf_token"]["sameSite"] == "Strict"
    assert driver.execute_script("return document.cookie.indexOf('atlas_session') < 0")   # not readable by scripts
    # interactions: every callback carries the token (dash-renderer reads the _csrf_token cookie)
    driver.find_element("id", "next-head-btn").click()
    wait_idle(driver, 40)
    wait(driver, "return location.search.indexOf('head=1') >= 0", 15, "the URL follows the head")
    driver.find_element("id", "search-input").send_keys("cat\n")
    wait_idle(driver, 40)
    wait(driver, "return document.getElementById('search-count').innerText.indexOf('cat') >= 0", 15, "search count")
    lines = http_lines(g, before)
    callbacks = [ln for ln in lines if "/_dash-update-component" in ln]
    assert len(callbacks) >= 6 and all(re.search(r'" (200|204) ', ln) and "user=alice" in ln for ln in callbacks), \
        [ln for ln in callbacks if not re.search(r'" (200|204) ', ln)][:5]
    assert not [ln for ln in lines if re.search(r'" (400|403|413|5\d\d) ', ln)]
    # sign out: back to the login page; the page is not reachable any more
    wait(driver, "var b = document.getElementById('atlas-logout'); return b && b.style.display === 'block'", 10,
         "sign-out button")
    driver.find_element("id", "atlas-logout-btn").click()
    wait(driver, "return !!document.getElementById('login-form')", 20, "login page after sign-out")
    driver.get(g.base + f"/?run={RUN}")
    wait(driver, "return !!document.getElementById('login-form')", 20, "still the login page")
    assert "atlas_session" not in {c["name"] for c in driver.get_cookies()}
    assert "signed out user=alice" in g.log()


def test_hostile_page_on_another_site_cannot_use_the_dashboard(team, evil_site, driver):
    g = team
    # 1. signed in with a session cookie, then visiting the other site
    driver.get(g.base + "/_atlas/login")
    driver.find_element("id", "username").send_keys(USER[0])
    driver.find_element("id", "password").send_keys(USER[1])
    driver.find_element("id", "login-submit").click()
    wait(driver, gd_js("matrix-graph", "g._fullData.length > 0"), 40, "signed in")
    wait_idle(driver, 40)
    time.sleep(2)                        # the dashboard's own requests are all answered before leaving it
    driver.get("about:blank")
    time.sleep(0.5)
    before = len(g.log().splitlines())
    driver.get(evil_site + "/index.html")
    evil = evil_requests(g, before)
    assert len(evil) >= 2, evil          # both requests reached the server ...
    assert all(re.search(r'" (401|403) ', ln) for ln in evil), evil     # ... and were refused
    # 2. basic credentials the browser sends by itself (as it does for cached basic auth)
    token = base64.b64encode(f"{USER[0]}:{USER[1]}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    try:
        before = len(g.log().splitlines())
        driver.get(evil_site + "/index.html")
        evil = evil_requests(g, before)
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    assert len(evil) >= 2 and all(re.search(r'" 403 ', ln) and "user=alice" in ln for ln in evil), evil
    assert "cross-site request refused" in g.log()
    collect_logs(driver)
