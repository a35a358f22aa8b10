"""Team-server sign-in: hashed passwords, sessions, CSRF, roles, rate limiting, proxy trust.

Wired by ``serving.install``; everything here is per request and shared across gunicorn workers
through one small diskcache directory (``<jobs dir>/auth``): sessions and failed-sign-in counters.

- **Users file** (``ATLAS_USERS_FILE``): ``user:<bcrypt hash>[:role]`` lines — the format of
  ``htpasswd -nB user`` (``$2y$``/``$2b$``/``$2a$`` hashes, checked with the ``bcrypt`` library).
  ``atlas hash-password alice --role editor`` prints such a line. A plain password is
  refused at start-up with one line naming that command. ``ATLAS_USERS`` takes the same entries
  (comma-separated), hashes only.
- **Sessions**: the browser signs in on a login page (``/_atlas/login``); the server keeps a random
  session id (only its SHA-256 is stored) with the user, role, creation and last-seen time; the
  cookie is HttpOnly, SameSite=Lax, Secure on HTTPS. Expiry: ``ATLAS_SESSION_HOURS`` after sign-in
  and ``ATLAS_SESSION_IDLE_MINUTES`` without a request. ``POST /_atlas/logout`` ends it.
  Scripts may keep sending HTTP basic credentials (verified with bcrypt; a successful check is
  remembered for a few minutes inside the worker, keyed by an HMAC of the credentials, so a page
  load does not pay bcrypt for each of its requests).
- **CSRF**: state-changing requests (POST) authenticated by the session cookie must carry the
  session's token — dash-renderer sends it itself, as ``X-CSRFToken`` from the ``_csrf_token``
  cookie; the login and logout forms carry it as a field. Any request whose browser says it is
  cross-site (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not this server) is refused
  for POSTs and for the expensive GET of the matrix preview, whatever the credentials (a browser
  resends cached basic credentials cross-site).
- **Roles**: ``viewer`` looks; ``editor`` also starts runs, uploads corpora and runs ablations
  (the role is the users file's third field, else ``ATLAS_EDITORS`` names, else
  ``ATLAS_DEFAULT_ROLE``).
- **Rate limiting**: ``ATLAS_LOGIN_MAX_FAILURES`` failed sign-ins per user name (and 4× that per
  client address) within ``ATLAS_LOGIN_WINDOW`` seconds, then 429 until the window passes; every
  failure is logged with the attempted user name (sanitised) and the address; never the password.
- **Proxy mode** trusts the user header only from ``ATLAS_TRUSTED_PROXIES`` (addresses or
  networks; none by default) or with the shared secret of ``ATLAS_PROXY_SECRET_FILE`` in
  ``X-Atlas-Proxy-Secret``.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path

import diskcache
import flask

# the users-file format lives one layer down (settings.py checks it at start-up); re-exported here
from attention_atlas.accounts import (HASH_PREFIXES, ROLES, UsersFileError, _in, _networks,  # noqa: F401
                                      check_password, hash_password, parse_user_lines)

log = logging.getLogger("atlas.auth")
# what the sessions/counters folder (diskcache) and a malformed stored value can raise
AUTH_STORE_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout, ValueError, TypeError)

SESSION_COOKIE = "atlas_session"
CSRF_COOKIE = "_csrf_token"          # the cookie dash-renderer reads (X-CSRFToken header)
LOGIN_CSRF_COOKIE = "atlas_login_csrf"
LOGIN_PATH = "/_atlas/login"
LOGOUT_PATH = "/_atlas/logout"
PROXY_SECRET_HEADER = "X-Atlas-Proxy-Secret"
VERIFIED_TTL = 300.0                 # seconds a successful basic-auth check is remembered in a worker

# callback outputs that start work or store files: editors only
EDITOR_OUTPUTS = ("jobs-request.data", "jobs-result.data", "jobs-upload-msg.children", "ablation-result.data")


def cross_site() -> bool:
    """True when the browser says this request comes from another site (Sec-Fetch-Site), or its
    Origin is not this server (browsers without Sec-Fetch-*); scripts send neither."""
    from urllib.parse import urlsplit

    site = flask.request.headers.get("Sec-Fetch-Site", "").lower()
    if site == "cross-site":
        return True
    origin = flask.request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != (flask.request.host or "").lower()


def _clean_name(name) -> str:
    """An attempted user name as it may appear in the log (printable, bounded, no spaces)."""
    s = "".join(ch if ch.isprintable() and not ch.isspace() else "?" for ch in str(name or ""))[:64]
    return s or "(empty)"


# ------------------------------------------------------------------ the auth object
class TeamAuth:
    """Authentication, sessions, roles and request checks of one server (one per worker)."""

    def __init__(self, app, settings, mode: str):
        self.app = app
        self.settings = settings
        self.mode = mode                              # basic | proxy
        self.prefix = app.config.requests_pathname_prefix.rstrip("/")
        self.users = settings.hashed_users() if mode == "basic" else {}
        self.editors = set(settings.editors)
        self.proxy_nets = _networks(settings.trusted_proxies)
        self.proxy_secret = settings.proxy_secret() if mode == "proxy" else ""
        path = Path(settings.jobs_path) / "auth"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = diskcache.Cache(str(path), timeout=30)
        self._verified: dict[bytes, float] = {}
        self._vlock = threading.Lock()
        self._key = secrets.token_bytes(32)          # per worker: keys the verified-credentials memo
        self._dummy = hash_password(secrets.token_hex(8), rounds=4)

    # ---------------------------------------------------------- identity of the current request
    def identify(self) -> dict | None:
        """{'user', 'role', 'via'} of this request (cached on flask.g), or None."""
        if "atlas_ident" in flask.g:
            return flask.g.atlas_ident
        ident = self._proxy_user() if self.mode == "proxy" else (self._session_user() or self._basic_user())
        flask.g.atlas_ident = ident
        return ident

    def user(self) -> str | None:
        ident = self.identify()
        return ident["user"] if ident else None

    def user_name(self, unknown: str = "?") -> str:
        """The user for logs and the jobs list: ``unknown`` when nobody is signed in or the session
        store cannot be read (logged)."""
        try:
            return self.user() or unknown
        except AUTH_STORE_ERRORS as exc:
            log.warning("user of this request unknown (%s: %s)", exc.__class__.__name__, exc)
            return "?"

    def role(self) -> str | None:
        ident = self.identify()
        return ident["role"] if ident else None

    def is_authorized(self) -> bool:
        return self.identify() is not None

    def _role_of(self, user: str, file_role: str | None = None) -> str:
        if file_role:
            return file_role
        if user in self.editors:
            return "editor"
        return self.settings.default_role

    def client_ip(self) -> str:
        """The client's address: the socket peer, or the address a trusted proxy forwarded."""
        peer = flask.request.remote_addr or "-"
        if self.proxy_nets and _in(peer, self.proxy_nets):
            hops = [h.strip() for h in flask.request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
            for hop in reversed(hops):
                if not _in(hop, self.proxy_nets):
                    return hop[:64]
        return peer

    def is_https(self) -> bool:
        if flask.request.is_secure:
            return True
        return (bool(self.proxy_nets) and _in(flask.request.remote_addr, self.proxy_nets)
                and flask.request.headers.get("X-Forwarded-Proto", "").lower() == "https")

    # proxy
    def _proxy_user(self) -> dict | None:
        trusted = _in(flask.request.remote_addr, self.proxy_nets)
        if not trusted and self.proxy_secret:
            given = flask.request.headers.get(PROXY_SECRET_HEADER, "")
            trusted = hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.proxy_secret.encode())
        if not trusted:
            return None
        value = (flask.request.headers.get(self.settings.proxy_user_header) or "").strip()[:200]
        return {"user": value, "role": self._role_of(value), "via": "proxy"} if value else None

    # sessions
    def _session_user(self) -> dict | None:
        sid = flask.request.cookies.get(SESSION_COOKIE)
        if not sid or len(sid) > 200:
            return None
        key = "session/" + hashlib.sha256(sid.encode("utf-8", "surrogateescape")).hexdigest()
        rec = self.db.get(key)
        now = time.time()
        if not isinstance(rec, dict):
            return None
        if now - rec["created"] > self.settings.session_hours * 3600 or \
                now - rec["seen"] > self.settings.session_idle_minutes * 60:
            self.db.delete(key)
            return None
        if rec["user"] not in self.users:   # removed from the users file since
            self.db.delete(key)
            return None
        if now - rec["seen"] > min(30.0, self.settings.session_idle_minutes * 60 / 4):
            rec["seen"] = now
            self.db.set(key, rec, expire=self.settings.session_hours * 3600)
        flask.g.atlas_session_key = key
        return {"user": rec["user"], "role": self._role_of(rec["user"], self.users[rec["user"]][1]),
                "via": "session", "csrf": rec["csrf"]}

    def start_session(self, user: str) -> tuple[str, str]:
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        self.db.set("session/" + hashlib.sha256(sid.encode()).hexdigest(),
                    {"user": user, "created": now, "seen": now, "csrf": csrf},
                    expire=self.settings.session_hours * 3600)
        return sid, csrf

    def end_session(self) -> None:
        key = flask.g.get("atlas_session_key")
        if key:
            self.db.delete(key)

    # basic credentials
    def _basic_user(self) -> dict | None:
        auth = flask.request.authorization
        if auth is None or (auth.type or "").lower() != "basic" or auth.username is None:
            return None
        name = auth.username
        if not self.verify(name, auth.password or ""):
            return None
        return {"user": name, "role": self._role_of(name, self.users[name][1]), "via": "basic"}

    def verify(self, name: str, password: str) -> bool:
        """Check a user name and password (rate limited, logged on failure)."""
        memo = hmac.new(self._key, f"{name}\0{password}".encode("utf-8", "surrogateescape"), "sha256").digest()
        now = time.monotonic()
        with self._vlock:
            t = self._verified.get(memo)
            if t is not None and now - t < VERIFIED_TTL and name in self.users:
                return True
        limited = self.rate_limited(name)
        if limited:
            flask.g.atlas_rate_limited = limited
            log.warning("sign-in refused (rate limit) user=%s ip=%s", _clean_name(name), self.client_ip())
            return False
        entry = self.users.get(name)
        ok = check_password(password, entry[0] if entry else self._dummy) and entry is not None
        if ok:
            with self._vlock:
                if len(self._verified) > 1000:
                    self._verified.clear()
                self._verified[memo] = now
        else:
            self.record_failure(name)
            log.warning("sign-in failed user=%s ip=%s%s", _clean_name(name), self.client_ip(),
                        "" if entry else " (unknown user)")
        return ok

    # ---------------------------------------------------------- rate limiting
    def _counters(self, name: str):
        """(key prefix, limit) of the failure counters this attempt is counted in: user name and address."""
        limit = int(self.settings.login_max_failures)
        return [(f"fail/user/{_clean_name(name)}", limit), (f"fail/ip/{self.client_ip()}", 4 * limit)]

    def rate_limited(self, name: str) -> int:
        """Seconds to wait when this user name or address failed too often in the last window(s), else 0.
        Failures are counted in fixed windows; the current and the previous window both count."""
        w = max(1, int(self.settings.login_window))
        now = time.time()
        slot = int(now // w)
        for prefix, limit in self._counters(name):
            cur, prev = self.db.get(f"{prefix}/{slot}", 0), self.db.get(f"{prefix}/{slot - 1}", 0)
            if cur + prev >= limit:
                return max(1, int((slot + (2 if cur else 1)) * w - now))
        return 0

    def record_failure(self, name: str) -> None:
        w = max(1, int(self.settings.login_window))
        slot = int(time.time() // w)
        for prefix, _ in self._counters(name):
            try:
                self.db.incr(f"{prefix}/{slot}", 1, default=0)
                self.db.touch(f"{prefix}/{slot}", expire=3 * w)
            except AUTH_STORE_ERRORS as exc:  # counting is best effort
                log.warning("failed sign-in not counted (%s: %s)", exc.__class__.__name__, exc)

    # ---------------------------------------------------------- responses
    def wants_html(self) -> bool:
        accept = flask.request.headers.get("Accept", "")
        return flask.request.method == "GET" and "text/html" in accept

    def login_request(self):
        wait = flask.g.get("atlas_rate_limited")
        if wait:
            return flask.Response(f"too many failed sign-ins: wait {wait} s, then try again", status=429,
                                  mimetype="text/plain", headers={"Retry-After": str(wait)})
        if self.mode == "proxy":
            return flask.Response("authentication required: sign in through the team's proxy", status=401,
                                  mimetype="text/plain")
        if self.wants_html():   # a browser: the login page (no basic-auth dialog)
            return self.login_page(status=401, next_url=flask.request.full_path.rstrip("?"))
        return flask.Response("authentication required", status=401, mimetype="text/plain",
                              headers={"WWW-Authenticate": 'Basic realm="Attention Atlas", charset="UTF-8"'})

    def login_page(self, status=200, message="", next_url="/"):
        token = flask.request.cookies.get(LOGIN_CSRF_COOKIE)
        if not token or len(token) > 100:
            token = secrets.token_urlsafe(24)
        body = _LOGIN_HTML.format(action=html.escape(self.prefix + LOGIN_PATH), csrf=html.escape(token),
                                  next=html.escape(_safe_next(next_url, self.prefix)),
                                  message=f'<p class="msg">{html.escape(message)}</p>' if message else "")
        resp = flask.Response(body, status=status, mimetype="text/html")
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=self.is_https(),
                        path=self.prefix + LOGIN_PATH, max_age=3600)
        return resp

    def set_session_cookies(self, resp, sid: str, csrf: str):
        age = int(self.settings.session_hours * 3600)
        secure = self.is_https()
        path = self.prefix + "/" if self.prefix else "/"
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Lax", secure=secure, path=path, max_age=age)
        resp.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="Strict", secure=secure, path=path, max_age=age)
        return resp

    def clear_session_cookies(self, resp):
        path = self.prefix + "/" if self.prefix else "/"
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            resp.delete_cookie(name, path=path)
        return resp

    # ---------------------------------------------------------- cross-site and role checks
    def cross_site(self) -> bool:
        return cross_site()

    def csrf_ok(self) -> bool:
        ident = self.identify()
        if not ident or ident.get("via") != "session":
            return True     # basic/proxy: no ambient cookie (the cross-site check covers browsers)
        given = flask.request.headers.get("X-CSRFToken") or flask.request.form.get("csrf_token", "")
        return hmac.compare_digest(str(given).encode("utf-8", "surrogateescape"), ident["csrf"].encode())


def _safe_next(url: str, prefix: str) -> str:
    """A same-site path to return to after sign-in (never another host, never the login page)."""
    url = str(url or "")
    if not url.startswith("/") or url.startswith("//") or "\\" in url or any(ord(c) < 32 for c in url):
        return prefix + "/"
    if url.split("?")[0].endswith((LOGIN_PATH, LOGOUT_PATH)):
        return prefix + "/"
    return url[:2000]


_LOGIN_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Attention Atlas · sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#f5f6f8;display:flex;justify-content:center;margin-top:12vh}}
form{{background:#fff;padding:2em 2.4em;border-radius:8px;box-shadow:0 1px 4px #0002;min-width:18em}}
label{{display:block;margin:.8em 0 .2em}}input[type=text],input[type=password]{{width:100%;padding:.4em;box-sizing:border-box}}
button{{margin-top:1.2em;padding:.5em 1.4em}}.msg{{color:#b00020}}</style></head>
<body><form method="post" action="{action}" id="login-form">
<h2>Attention Atlas</h2>{message}
<input type="hidden" name="csrf_token" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="username">User</label><input type="text" id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" id="login-submit">Sign in</button></form></body></html>
"""

# the page's sign-out control (only shown when signed in through the login page)
LOGOUT_SNIPPET = """<form method="post" action="{action}" id="atlas-logout" style="display:none;position:fixed;top:6px;right:10px;z-index:9999;margin:0">
<input type="hidden" name="csrf_token" value=""><button type="submit" id="atlas-logout-btn" style="font-size:12px">sign out</button></form>
<script>(function(){{var m=document.cookie.match(/(?:^|; )_csrf_token=([^;]*)/);if(!m)return;
var f=document.getElementById('atlas-logout');f.elements.csrf_token.value=decodeURIComponent(m[1]);f.style.display='block';}})();</script>
"""


def install_routes(app, auth: TeamAuth) -> None:
    server = app.server
    prefix = auth.prefix

    @server.route(prefix + LOGIN_PATH, methods=["GET", "POST"])
    def atlas_login():
        if flask.request.method == "GET":
            return auth.login_page(next_url=flask.request.args.get("next", prefix + "/"))
        form = flask.request.form
        next_url = form.get("next", prefix + "/")
        cookie = flask.request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if auth.cross_site() or not cookie or not hmac.compare_digest(cookie.encode(), str(form.get("csrf_token", "")).encode()):
            log.warning("sign-in form refused (missing or wrong CSRF token / cross-site) ip=%s", auth.client_ip())
            return auth.login_page(status=403, message="the sign-in form expired: sign in again", next_url=next_url)
        name = str(form.get("username", ""))[:200]
        password = str(form.get("password", ""))[:1000]
        if auth.verify(name, password):
            sid, csrf = auth.start_session(name)
            log.info("signed in user=%s ip=%s", _clean_name(name), auth.client_ip())
            resp = flask.redirect(_safe_next(next_url, prefix), code=303)
            return auth.set_session_cookies(resp, sid, csrf)
        wait = flask.g.get("atlas_rate_limited")
        if wait:
            resp = auth.login_page(status=429, message=f"too many failed sign-ins: wait {wait} s, then try again",
                                   next_url=next_url)
            resp.headers["Retry-After"] = str(wait)
            return resp
        return auth.login_page(status=401, message="wrong user name or password", next_url=next_url)

    @server.route(prefix + LOGOUT_PATH, methods=["POST"])
    def atlas_logout():
        ident = auth.identify()
        if ident and ident.get("via") == "session":
            if not auth.csrf_ok():
                return flask.Response("sign-out refused: missing or wrong CSRF token (reload the page)", status=403,
                                      mimetype="text/plain")
            auth.end_session()
            log.info("signed out user=%s", _clean_name(ident["user"]))
        resp = flask.redirect(prefix + LOGIN_PATH, code=303)
        return auth.clear_session_cookies(resp)


def main(argv=None) -> int:
    import argparse
    import getpass
    import sys

    p = argparse.ArgumentParser(prog="atlas", description="Attention Atlas team-server accounts")
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hash-password", help="print a users-file line (user:bcrypt-hash[:role])")
    h.add_argument("user")
    h.add_argument("--role", choices=ROLES, help="viewer or editor (default: ATLAS_DEFAULT_ROLE, viewer)")
    h.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")
    args = p.parse_args(argv)
    if ":" in args.user or not args.user.strip():
        print("error: a user name cannot be empty or contain ':'", file=sys.stderr)
        return 2
    pw = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass(f"password for {args.user}: ")
    if len(pw) < 8:
        print("error: use a password of at least 8 characters", file=sys.stderr)
        return 2
    print(f"{args.user}:{hash_password(pw, args.rounds)}" + (f":{args.role}" if args.role else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["TeamAuth", "UsersFileError", "hash_password", "check_password", "parse_user_lines", "install_routes",
           "EDITOR_OUTPUTS", "json"]
