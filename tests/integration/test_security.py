"""Team-server security of issue 14, through real gunicorn on 127.0.0.1 (the browser side is in
tests/browser/test_security_browser.py): hashed users file, login page and sessions (logout, idle and
absolute expiry), CSRF token and cross-site refusal, rate-limited sign-in with the attempted user
name logged, viewer/editor roles with per-user job and upload limits, proxy trust, security headers
and no server banner, TLS with gunicorn's certfile/keyfile, the loud warning for auth=none on a
non-loopback address."""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.load import ROOT, DashClient, Gunicorn, HttpTransport, free_port
from tests.integration.helpers import gunicorn_expecting_failure
from tests.store_fixture import make_test_store

RUN = "sec-run"
ALICE = ("alice", "Alice-pw-1234")      # editor
VICTOR = ("victor", "Victor-pw-5678")   # viewer
WENDY = ("wendy", "Wendy-pw-9012")      # editor, locked out by the rate-limit test


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sec") / "store"
    make_test_store(path, "text", n_layers=2, n_heads=2, n_inputs=6, run_id=RUN)
    return path


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    env = {"ATLAS_LOG_LEVEL": "INFO", "ATLAS_LOGIN_MAX_FAILURES": "3", "ATLAS_LOGIN_WINDOW": "120",
           "ATLAS_SESSION_IDLE_MINUTES": "0.1", "ATLAS_SESSION_HOURS": "0.004",    # 6 s idle, 14.4 s in all
           "ATLAS_MAX_JOBS_PER_USER": "1", "ATLAS_UPLOAD_QUOTA_BYTES": "1000"}
    with Gunicorn(store, workers=2, threads=2, users=dict([ALICE, VICTOR, WENDY]), roles={"victor": "viewer"},
                  env=env, workdir=tmp_path_factory.mktemp("sec-srv")) as g:
        yield g


def login(g, user=ALICE, s=None) -> requests.Session:
    s = s or requests.Session()
    page = s.get(g.base + "/_atlas/login", timeout=20)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = s.post(g.base + "/_atlas/login", data={"username": user[0], "password": user[1], "csrf_token": token,
                                                "next": "/?run=" + RUN}, allow_redirects=False, timeout=20)
    assert r.status_code == 303 and r.headers["Location"] == "/?run=" + RUN, (r.status_code, r.text[:300])
    s.headers["X-CSRFToken"] = s.cookies.get("_csrf_token")
    return s


def session_client(g, s: requests.Session) -> DashClient:
    t = HttpTransport(g.base, None, timeout=30)
    t.s = s
    c = DashClient(t)
    c.load_page()
    return c


# ------------------------------------------------------------------ users file
@pytest.mark.parametrize("content, message", [
    ("alice:plain-password\n", "holds a plain password, not a bcrypt hash"),
    ("alice\n", "is not user:hash"),
    ("alice:$2b$04$" + "x" * 53 + ":admin\n", "unknown role 'admin'"),
])
def test_users_file_must_hold_hashes(store, tmp_path, content, message):
    users = tmp_path / "users"
    users.write_text(content)
    p, _ = gunicorn_expecting_failure({"ATLAS_CACHE": str(store), "ATLAS_PORT": str(free_port()), "ATLAS_AUTH": "basic",
                                       "ATLAS_USERS_FILE": str(users), "ATLAS_JOBS_DIR": str(tmp_path / "jobs")})
    out = p.stdout + p.stderr
    assert p.returncode != 0 and message in out and "Traceback" not in out, out[-2000:]
    assert "plain-password" not in out


def test_hash_password_command_makes_a_working_line():
    p = subprocess.run([sys.executable, "-m", "attention_atlas", "hash-password", "carol", "--role", "editor", "--stdin",
                        "--rounds", "4"], input="Carol-pw-99\n", cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = p.stdout.strip()
    assert p.returncode == 0 and line.startswith("carol:$2b$04$") and line.endswith(":editor") and "Carol" not in line
    from attention_atlas.teamauth import check_password, parse_user_lines
    users = parse_user_lines([line], "test")
    assert check_password("Carol-pw-99", users["carol"][0]) and users["carol"][1] == "editor"


# ------------------------------------------------------------------ login page, sessions
def test_browser_gets_a_login_page_scripts_get_basic_challenge(server):
    r = requests.get(server.base + "/", headers={"Accept": "text/html"}, timeout=20)
    assert r.status_code == 401 and 'id="login-form"' in r.text and "WWW-Authenticate" not in r.headers
    assert RUN not in r.text
    r = requests.get(server.base + "/", timeout=20)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(server.base + "/", auth=ALICE, timeout=20).status_code == 200


def test_login_session_cookie_flags_logout_revokes(server):
    s = login(server)
    cookies = {c.name: c for c in s.cookies}
    assert set(cookies) >= {"atlas_session", "_csrf_token"}
    sess = requests.Session()
    page = sess.get(server.base + "/_atlas/login", timeout=20)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = sess.post(server.base + "/_atlas/login", data={"username": ALICE[0], "password": ALICE[1], "csrf_token": token},
                  allow_redirects=False, timeout=20)
    set_cookie = r.raw.headers.getlist("Set-Cookie")
    session_line = next(c for c in set_cookie if c.startswith("atlas_session="))
    csrf_line = next(c for c in set_cookie if c.startswith("_csrf_token="))
    assert "HttpOnly" in session_line and "SameSite=Lax" in session_line and "Secure" not in session_line
    assert "HttpOnly" not in csrf_line and "SameSite=Strict" in csrf_line
    # signed in: the page and a callback (with the CSRF header dash-renderer sends)
    r = s.get(server.base + "/?run=" + RUN, timeout=20)
    assert r.status_code == 200 and 'id="atlas-logout"' in r.text
    c = session_client(server, s)
    c.open_run(f"?run={RUN}")
    assert "2 layers × 2 heads" in str(c.state.get("run-info.children"))
    # logout needs the token; afterwards the same cookie is worthless (server-side revocation)
    stolen = s.cookies.get("atlas_session")
    assert s.post(server.base + "/_atlas/logout", data={}, headers={"X-CSRFToken": ""}, allow_redirects=False,
                  timeout=20).status_code == 403
    r = s.post(server.base + "/_atlas/logout", data={"csrf_token": s.cookies.get("_csrf_token")},
               allow_redirects=False, timeout=20)
    assert r.status_code == 303 and r.headers["Location"].endswith("/_atlas/login")
    replay = requests.get(server.base + "/", cookies={"atlas_session": stolen}, timeout=20)
    assert replay.status_code == 401
    log = server.log()
    assert "signed in user=alice" in log and "signed out user=alice" in log and ALICE[1] not in log


def test_sessions_expire_idle_and_absolute(server):
    s = login(server)
    assert s.get(server.base + "/_dash-layout", timeout=20).status_code == 200
    time.sleep(7.5)                                  # idle limit 6 s
    assert s.get(server.base + "/_dash-layout", timeout=20).status_code == 401
    s = login(server)
    t0 = time.monotonic()
    codes = []
    while time.monotonic() - t0 < 17:                 # active every second: the 14.4 s limit still ends it
        codes.append((round(time.monotonic() - t0, 1), s.get(server.base + "/_dash-layout", timeout=20).status_code))
        time.sleep(1.0)
    assert codes[0][1] == 200 and codes[-1][1] == 401, codes
    assert all(code == 200 for t, code in codes if t < 13), codes


def test_login_next_is_never_another_site(server):
    s = requests.Session()
    page = s.get(server.base + "/_atlas/login?next=//evil.example/x", timeout=20)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    for nxt in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = s.post(server.base + "/_atlas/login", data={"username": ALICE[0], "password": ALICE[1], "csrf_token": token,
                                                         "next": nxt}, allow_redirects=False, timeout=20)
        assert r.status_code == 303 and r.headers["Location"] == "/", (nxt, r.headers.get("Location"))


# ------------------------------------------------------------------ CSRF, cross-site
def test_csrf_token_required_for_session_posts(server):
    s = login(server)
    c = session_client(server, s)
    body = c.body(c.find("run-select.value", "url.search"), ["url.search"], {"url.search": f"?run={RUN}"})
    url = server.base + "/_dash-update-component"
    assert s.post(url, json=body, timeout=20).status_code == 200
    for token in (None, "", "wrong-token"):
        headers = {"X-CSRFToken": token} if token is not None else {}
        r = requests.post(url, json=body, cookies={"atlas_session": s.cookies.get("atlas_session")}, headers=headers,
                          timeout=20)
        assert r.status_code == 403 and "CSRF" in r.text, (token, r.status_code)
    # the login form without its token
    r = requests.post(server.base + "/_atlas/login", data={"username": ALICE[0], "password": ALICE[1]}, timeout=20)
    assert r.status_code == 403


def test_cross_site_requests_refused_whatever_the_credentials(server):
    c = DashClient(HttpTransport(server.base, ALICE))
    c.load_page()
    body = c.body(c.find("run-select.value", "url.search"), ["url.search"], {"url.search": f"?run={RUN}"})
    url = server.base + "/_dash-update-component"
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"},
                    {"Origin": server.base.replace("127.0.0.1", "localhost")}):
        r = requests.post(url, json=body, auth=ALICE, headers=headers, timeout=20)
        assert r.status_code == 403 and "cross-site" in r.text, (headers, r.status_code)
    assert requests.post(url, json=body, auth=ALICE, headers={"Origin": server.base, "Sec-Fetch-Site": "same-origin"},
                         timeout=20).status_code == 200
    preview = server.base + "/_atlas/matrix-preview.png"
    params = {"run": RUN, "regex": "1", "q": "(.|.|.|.|.|.|.)*!"}
    r = requests.get(preview, params=params, auth=ALICE, headers={"Sec-Fetch-Site": "cross-site"}, timeout=20)
    assert r.status_code == 403
    r = requests.get(preview, params=params, auth=ALICE, headers={"Sec-Fetch-Site": "same-origin"}, timeout=20)
    assert r.status_code in (200, 204)
    assert "cross-site request refused" in server.log()


# ------------------------------------------------------------------ rate limiting
def test_sign_in_rate_limited_and_logged_with_the_attempted_name(server):
    before = len(server.log().splitlines())
    for _ in range(3):
        assert requests.get(server.base + "/_dash-layout", auth=("mallory", "guess-1"), timeout=20).status_code == 401
    r = requests.get(server.base + "/_dash-layout", auth=("mallory", "guess-2"), timeout=20)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0 and "too many failed sign-ins" in r.text
    # a locked name stays locked even with its right password; other users are not affected
    for _ in range(3):
        requests.get(server.base + "/_dash-layout", auth=("wendy", "wrong"), timeout=20)
    assert requests.get(server.base + "/_dash-layout", auth=WENDY, timeout=20).status_code == 429
    assert requests.get(server.base + "/_dash-layout", auth=ALICE, timeout=20).status_code == 200
    # the login form says so too, and a name with a line break cannot forge log lines
    s = requests.Session()
    token = re.search(r'name="csrf_token" value="([^"]+)"', s.get(server.base + "/_atlas/login", timeout=20).text).group(1)
    r = s.post(server.base + "/_atlas/login", data={"username": "mallory", "password": "x", "csrf_token": token}, timeout=20)
    assert r.status_code == 429 and "too many failed sign-ins" in r.text
    requests.get(server.base + "/", auth=("eve\nINFO forged line", "x"), timeout=20)
    time.sleep(0.5)
    new = "\n".join(server.log().splitlines()[before:])
    assert "sign-in failed user=mallory ip=127.0.0.1 (unknown user)" in new
    assert "sign-in refused (rate limit) user=mallory" in new and "sign-in refused (rate limit) user=wendy" in new
    assert "user=eve?INFO?forged?line" in new and "\nINFO forged line" not in new
    assert "guess-1" not in server.log() and "Victor-pw" not in server.log()


# ------------------------------------------------------------------ roles and per-user limits
def test_viewers_look_editors_start_with_per_user_limits(server):
    from jobs.registry import Registry

    c = DashClient(HttpTransport(server.base, ALICE))
    c.load_page()
    url = server.base + "/_dash-update-component"
    start_states = {"jobs-model.value": "minilm", "jobs-corpus.value": "demo", "jobs-projections.value": ["pca"],
                    "jobs-dims.value": [2], "jobs-variants.value": ["translated"], "jobs-layers.value": "0",
                    "jobs-heads.value": "0", "jobs-max-tokens.value": 100}
    start = c.body(c.find("jobs-request.data"), ["jobs-start.n_clicks"], {"jobs-start.n_clicks": 1, **start_states})
    upload = c.body(c.find("jobs-upload-msg.children", "jobs-upload-raw.data"), ["jobs-upload-raw.data"],
                    {"jobs-upload-raw.data": {"contents": "data:text/plain;base64," + base64.b64encode(b"one\ntwo\n" * 80).decode(),
                                              "filename": "c.txt"}})
    ablation = c.find("ablation-result.data")
    # a viewer: refused at the door (403, one line), nothing queued
    for body in (start, upload):
        r = requests.post(url, json=body, auth=VICTOR, timeout=60)
        assert r.status_code == 403 and "your role is viewer" in r.text and "editor role" in r.text, r.text
    trigger = f"{ablation.inputs[0]['id']}.{ablation.inputs[0]['property']}"
    r = requests.post(url, json=c.body(ablation, [trigger], {trigger: 1}), auth=VICTOR, timeout=60)
    assert r.status_code == 403
    # ... but may look
    assert requests.get(server.base + "/?run=" + RUN, auth=VICTOR, timeout=20).status_code == 200
    # an editor: upload within the quota (1000 bytes: 640 fit once, not twice)
    r = requests.post(url, json=upload, auth=ALICE, timeout=60)
    assert r.status_code == 200 and "uploaded c.txt" in r.text, r.text[:300]
    r = requests.post(url, json=upload, auth=ALICE, timeout=60)
    assert r.status_code == 200 and "would exceed your upload space" in r.text, r.text[:300]
    # per-user job limit (1): a job of alice's already queued -> the next start is refused with a message
    reg = Registry(Path(server.env["ATLAS_JOBS_DIR"]))
    try:
        reg.create("alice", {"model": "minilm", "corpus": "demo"}, {"model": "minilm", "corpus": "demo"})
    finally:
        reg.close()
    r = requests.post(url, json=start, auth=ALICE, timeout=60)
    assert r.status_code == 200 and "limit 1 per user" in r.text, r.text[:300]
    assert "editor-only action refused for viewer victor" in server.log()


# ------------------------------------------------------------------ headers, banner
def test_security_headers_and_no_server_banner(server):
    r = requests.get(server.base + "/?run=" + RUN, auth=ALICE, timeout=20)
    h = r.headers
    assert h["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in h["Content-Security-Policy"]
    assert h["X-Content-Type-Options"] == "nosniff" and h["Cache-Control"] == "no-store"
    assert "Server" not in h, h.get("Server")
    for path in ("/_dash-layout", "/healthz"):
        r = requests.get(server.base + path, auth=ALICE, timeout=20)
        assert r.headers["Cache-Control"] == "no-store" and "Server" not in r.headers
    r = requests.get(server.base + "/", timeout=20)          # 401 answers too
    assert r.headers["X-Frame-Options"] == "DENY" and "Server" not in r.headers
    r = requests.get(server.base + "/_dash-component-suites/dash/dcc/dash_core_components.js", auth=ALICE, timeout=20)
    assert r.status_code == 200 and r.headers.get("Cache-Control") != "no-store" and "Server" not in r.headers


# ------------------------------------------------------------------ proxy mode
def _start(store, tmp_path, env_over) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update({"ATLAS_CACHE": str(store), "ATLAS_PORT": str(free_port()), "ATLAS_JOBS_DIR": str(tmp_path / "jobs")})
    env.update(env_over)
    return subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "attention_atlas.wsgi:server"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=90)


def test_proxy_mode_trusts_no_address_until_configured(store, tmp_path):
    p = _start(store, tmp_path, {"ATLAS_AUTH": "proxy"})
    assert p.returncode != 0 and "trusts no address by default" in p.stderr and "Traceback" not in p.stderr
    secret = tmp_path / "proxy-secret"
    secret.write_text("s" * 40)
    hdr = {"X-Forwarded-User": "pat"}
    # trusted: some other address only -> our requests are not from the proxy
    with Gunicorn(store, auth="proxy", workers=1, threads=2, workdir=tmp_path / "p1",
                  env={"ATLAS_TRUSTED_PROXIES": "10.9.9.9", "ATLAS_PROXY_SECRET_FILE": str(secret)}) as g:
        assert requests.get(g.base + "/", headers=hdr, timeout=20).status_code == 401
        assert requests.get(g.base + "/", headers={**hdr, "X-Atlas-Proxy-Secret": "s" * 39 + "t"}, timeout=20).status_code == 401
        assert requests.get(g.base + "/", headers={**hdr, "X-Atlas-Proxy-Secret": "s" * 40}, timeout=20).status_code == 200
    with Gunicorn(store, auth="proxy", workers=1, threads=2, workdir=tmp_path / "p2",
                  env={"ATLAS_TRUSTED_PROXIES": "127.0.0.0/8", "ATLAS_LOG_LEVEL": "INFO", "ATLAS_EDITORS": "pat"}) as g:
        assert requests.get(g.base + "/", timeout=20).status_code == 401
        r = requests.get(g.base + "/_dash-layout", headers={**hdr, "X-Forwarded-For": "203.0.113.7"}, timeout=20)
        assert r.status_code == 200
        time.sleep(0.5)
        assert any("203.0.113.7" in ln and "user=pat" in ln for ln in g.log().splitlines() if "atlas.http" in ln)


# ------------------------------------------------------------------ TLS
def test_tls_with_gunicorn_certfile_keyfile(store, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate here: {p.stderr.strip()[:200]}")
    with Gunicorn(store, workers=1, threads=2, users=dict([ALICE]), workdir=tmp_path / "tls",
                  env={"ATLAS_CERTFILE": str(cert), "ATLAS_KEYFILE": str(key)}) as g:
        assert g.base.startswith("https://")
        assert requests.get(g.base + "/healthz", verify=str(cert), timeout=20).text == "ok"
        s = requests.Session()   # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE
        page = s.get(g.base + "/_atlas/login", timeout=20, verify=str(cert))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = s.post(g.base + "/_atlas/login", data={"username": ALICE[0], "password": ALICE[1], "csrf_token": token},
                   allow_redirects=False, timeout=20, verify=str(cert))
        cookies = r.raw.headers.getlist("Set-Cookie")
        assert r.status_code == 303 and all("Secure" in c for c in cookies), cookies
        assert "max-age" in r.headers.get("Strict-Transport-Security", "")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(g.base.replace("https://", "http://") + "/healthz", timeout=5)


def test_tls_settings_need_both_files(store, tmp_path):
    p = _start(store, tmp_path, {"ATLAS_AUTH": "none", "ATLAS_CERTFILE": str(tmp_path / "c.pem")})
    assert p.returncode != 0 and "needs both ATLAS_CERTFILE and ATLAS_KEYFILE" in p.stderr


# ------------------------------------------------------------------ auth=none on a reachable address
def test_loud_warning_for_auth_none_on_non_loopback(tmp_path):
    """gunicorn.conf.py is what gunicorn reads before binding: run it as gunicorn would (nothing is bound)."""
    code = "import runpy; runpy.run_path('gunicorn.conf.py')"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    for host, warned in (("0.0.0.0", True), ("192.0.2.10", True), ("127.0.0.1", False), ("::1", False)):
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={**env, "ATLAS_AUTH": "none", "ATLAS_HOST": host, "ATLAS_CACHE": str(tmp_path)})
        assert p.returncode == 0, p.stderr
        assert ("WARNING: ATLAS_AUTH=none" in p.stderr) == warned, (host, p.stderr)
        if warned:
            assert "ANYONE who can connect" in p.stderr and host in p.stderr
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**env, "ATLAS_AUTH": "proxy", "ATLAS_HOST": "0.0.0.0", "ATLAS_TRUSTED_PROXIES": "10.0.0.1"})
    assert "WARNING" not in p.stderr


# ------------------------------------------------------------------ per-request time bound
def test_a_runaway_request_stops_its_worker_not_the_server(store, tmp_path):
    cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "tests.slow_wsgi:server"]
    with Gunicorn(store, auth="none", workers=1, threads=4, cmd=cmd, workdir=tmp_path / "wd",
                  env={"ATLAS_REQUEST_TIMEOUT": "2", "ATLAS_LOG_LEVEL": "INFO"}) as g:
        assert requests.get(g.base + "/_test/sleep?s=0.2", timeout=20).text == "slept"
        first = g.worker_pids()
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(g.base + "/_test/sleep?s=60", timeout=30)
        assert time.monotonic() - t0 < 10
        for _ in range(100):                     # the master has started a fresh worker
            try:
                if requests.get(g.base + "/_test/sleep?s=0.1", timeout=5).text == "slept":
                    break
            except requests.RequestException:
                time.sleep(0.2)
        assert requests.get(g.base + "/healthz", timeout=10).json()["status"] == "ok"   # auth=none: the detail
        assert g.worker_pids() and g.worker_pids() != first
        log = g.log()
    assert "request GET /_test/sleep (user=-) exceeded the 2 s limit" in log, log[-2000:]
    assert "Traceback" not in log
