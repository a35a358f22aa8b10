"""What the dashboard needs to be served to a team: health endpoint, authentication, request
limits, security headers and request logging. ``install(app, settings, data)`` wires it into the
Flask server and returns what it built (:class:`Serving`: the sign-in object, the request
watchdog) for the application context (attention_atlas/context.py).

- ``GET /healthz``: without credentials a bare liveness answer (``ok`` / 503), with credentials
  (or when auth is off) JSON with the store's reachability and its runs.
- auth ``basic``: a login page and server-side sessions for browsers, HTTP basic for scripts;
  bcrypt-hashed users file, roles, CSRF tokens, rate-limited sign-in (teamauth.py);
  auth ``proxy``: trust the reverse proxy's user header, only from ``trusted_proxies`` or with the
  proxy's shared secret. Every route — page, assets, callbacks, ``/healthz`` detail — needs it.
- cross-site POSTs and cross-site fetches of the expensive matrix preview are refused (403);
  viewers cannot start runs, uploads or ablations (403).
- security headers on every answer (frame-ancestors 'none' / X-Frame-Options DENY, nosniff,
  Referrer-Policy, no-store on pages and callbacks, HSTS over HTTPS); no server banner
  (gunicorn.conf.py).
- request body limit (uploads are the only big bodies) and a check that callback requests are
  well-formed JSON (400, not 500, for garbage).
- one log line per request (method, path, status, bytes, ms, user), never headers or bodies.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import NamedTuple

import flask

from attention_atlas.dashboard_data import DataError
from attention_atlas.teamauth import cross_site  # noqa: F401 - used below; tests import it from here

log = logging.getLogger("atlas.http")

LIVE_PATH = "/healthz"


def _health(data, detail: bool):
    try:
        runs = data.run_ids()
        ok = True
    except Exception as exc:  # noqa: BLE001 - the health endpoint's edge: any store problem is "not healthy"
        if isinstance(exc, DataError):
            log.warning("health check: %s", exc)
        else:
            log.exception("health check: the store could not be read")
        runs, ok, problem = [], False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not detail:
        return flask.Response("ok" if ok else "unavailable", status=200 if ok else 503, mimetype="text/plain")
    body = {"status": "ok" if ok else "unavailable", "store": str(data.path), "runs": runs}
    if not ok:
        body["problem"] = problem
    else:
        statuses = {}
        for r in runs:
            try:
                statuses[r] = data.status(r)["status"]
            except (DataError, LookupError, TypeError) as exc:
                log.warning("health check: run %s unreadable: %s", r, exc)
                statuses[r] = "unreadable"
        body["run_status"] = statuses
    return flask.Response(json.dumps(body), status=200 if ok else 503, mimetype="application/json")


def _same_dep(given, want: dict) -> bool:
    """A body's input/state/output item against the registered one (pattern-matching ids: shape only)."""
    wid = want.get("id")
    if isinstance(wid, dict) or (isinstance(wid, str) and wid.startswith("{")):
        return isinstance(given, (dict, list))   # a concrete dict id, or a list of them (ALL)
    prop = given.get("property") if isinstance(given, dict) else None
    return (isinstance(given, dict) and given.get("id") == wid and isinstance(prop, str)
            and prop.split("@")[0] == str(want.get("property")).split("@")[0])


def _outputs_of(key: str) -> list[dict]:
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    out = []
    for part in parts:
        if part.startswith("{"):
            out.append({"id": part[:part.rindex("}") + 1], "property": part[part.rindex("}") + 2:]})
        else:
            cid, _, prop = part.rpartition(".")
            out.append({"id": cid, "property": prop})
    return out


def _bad_callback_request(callback_map) -> bool:
    """True when a POST to the callback route is not a well-formed body for a registered callback
    (Dash itself answers 500 to an unknown output, missing or extra inputs, garbage ids, ...)."""
    try:
        body = json.loads(flask.request.get_data(cache=True) or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return True
    if not (isinstance(body, dict) and isinstance(body.get("output"), str)):
        return True
    spec = callback_map.get(body["output"])
    inputs, state, changed = body.get("inputs"), body.get("state", []), body.get("changedPropIds", [])
    if spec is None or not isinstance(inputs, list) or not isinstance(state, list) or not isinstance(changed, list):
        return True
    want_in, want_state = spec.get("inputs", []), spec.get("state", [])
    if len(inputs) != len(want_in) or len(state) != len(want_state):
        return True
    if not all(_same_dep(g, w) for g, w in zip(inputs + state, want_in + want_state)):
        return True
    if not all(isinstance(c, str) for c in changed):
        return True
    want_out = _outputs_of(body["output"])
    outputs = body.get("outputs")
    if body["output"].startswith(".."):
        if not (isinstance(outputs, list) and len(outputs) == len(want_out)):
            return True
    else:
        outputs = [outputs]
    return not all(_same_dep(g, w) for g, w in zip(outputs, want_out))


_STATIC = ("/_dash-component-suites/", "/assets/", "/_favicon.ico")


def _clean(text) -> str:
    return "".join(ch if ch.isprintable() and not ch.isspace() else "?" for ch in str(text))[:100]


def _callback_output() -> str:
    try:
        body = json.loads(flask.request.get_data(cache=True) or b"null")
        return str(body.get("output", "")) if isinstance(body, dict) else ""
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""


class RequestWatchdog:
    """The per-request time bound of a team-server worker: a request still running after
    ``limit`` seconds (a pathological input the code did not foresee) stops this worker process,
    after one log line naming the request and the user; gunicorn's master starts a fresh worker at
    once. Python cannot stop one thread, and a worker held by a runaway request serves nobody.
    (Computations run as background jobs in their own processes, never inside a request.)"""

    def __init__(self, limit: float):
        self.limit = float(limit)
        self.active: dict[int, tuple[float, str, str]] = {}
        self.lock = threading.Lock()
        self.pid = None

    def _ensure_thread(self):
        if self.pid != os.getpid():          # started in the worker (after the fork), once
            self.pid = os.getpid()
            threading.Thread(target=self._loop, daemon=True, name="atlas-request-watchdog").start()

    def begin(self, what: str):
        self._ensure_thread()
        with self.lock:
            self.active[threading.get_ident()] = (time.monotonic(), what, "-")

    def user(self, user: str):
        with self.lock:
            t = self.active.get(threading.get_ident())
            if t:
                self.active[threading.get_ident()] = (t[0], t[1], user)

    def end(self):
        with self.lock:
            self.active.pop(threading.get_ident(), None)

    def _loop(self):
        while True:
            time.sleep(min(1.0, self.limit / 4))
            now = time.monotonic()
            with self.lock:
                late = [(now - t0, what, user) for t0, what, user in self.active.values() if now - t0 > self.limit]
            if late:
                secs, what, user = max(late)
                log.error("request %s (user=%s) exceeded the %.0f s limit (ATLAS_REQUEST_TIMEOUT): stopping this "
                          "worker; gunicorn starts a new one", what, user, self.limit)
                for h in logging.getLogger().handlers + log.handlers:
                    try:
                        h.flush()
                    except (OSError, ValueError):  # a closed or broken stream: nothing more to say
                        pass
                os._exit(1)       # not 3 or 4: gunicorn halts the whole server on those (boot errors)


class Serving(NamedTuple):
    auth: object | None          # teamauth.TeamAuth when sign-in is on
    watchdog: RequestWatchdog | None


def install(app, settings, data, embeddable: bool = False) -> Serving:
    """``embeddable``: the app is shown in a notebook's iframe (no frame-ancestors refusal)."""
    from attention_atlas import teamauth

    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = settings.upload_max_bytes * 4 // 3 + 16 * 2**20  # base64 + state
    prefix = app.config.requests_pathname_prefix.rstrip("/")
    auth = None
    public = {prefix + teamauth.LOGIN_PATH, prefix + teamauth.LOGOUT_PATH}

    watchdog = RequestWatchdog(settings.request_timeout) if settings.team and settings.request_timeout else None

    @server.before_request
    def _early():  # registered before the auth hook, so it runs first
        flask.g.t0 = time.perf_counter()
        if watchdog is not None:
            watchdog.begin(f"{flask.request.method} {flask.request.path}")
        if flask.request.path == LIVE_PATH:
            return _health(data, detail=auth is None or auth.is_authorized())
        # another site's page must not make this server work, whatever the credentials the browser
        # attaches by itself (cookies, cached basic auth) and also without authentication (laptop)
        method = flask.request.method
        if (method not in ("GET", "HEAD", "OPTIONS") or flask.request.path.endswith("/_atlas/matrix-preview.png")) \
                and cross_site():
            log.warning("cross-site request refused: %s %s from %s", method, flask.request.path,
                        _clean(flask.request.headers.get("Origin", "?")))
            return flask.Response("cross-site request refused: open the dashboard itself to do this", status=403,
                                  mimetype="text/plain")
        if flask.request.path.endswith("/_dash-update-component") and flask.request.method == "POST" \
                and _bad_callback_request(app.callback_map):
            if auth is not None and not auth.is_authorized():
                return auth.login_request()
            return flask.Response("malformed callback request", status=400, mimetype="text/plain")
        return None

    if settings.auth in ("basic", "proxy"):
        auth = teamauth.TeamAuth(app, settings, settings.auth)
        if settings.auth == "basic":
            teamauth.install_routes(app, auth)
            app.index_string = app.index_string.replace(
                "{%app_entry%}", teamauth.LOGOUT_SNIPPET.format(action=prefix + teamauth.LOGOUT_PATH) + "{%app_entry%}", 1)

        @server.before_request
        def _authenticate():
            if flask.request.path in public:
                return None
            if not auth.is_authorized():
                return auth.login_request()
            return None

    @server.before_request
    def _cross_site_and_roles():
        path, method = flask.request.path, flask.request.method
        if path in public:
            return None
        if watchdog is not None and auth is not None:
            watchdog.user(auth.user() or "-")
        if auth is None or method in ("GET", "HEAD", "OPTIONS"):
            return None
        if not auth.csrf_ok():
            log.warning("request without a valid CSRF token refused: %s %s user=%s", method, path, auth.user())
            return flask.Response("missing or wrong CSRF token: reload the page", status=403, mimetype="text/plain")
        if path.endswith("/_dash-update-component") and auth.role() != "editor":
            output = _callback_output()
            if any(o in output for o in teamauth.EDITOR_OUTPUTS):
                log.info("editor-only action refused for viewer %s: %s", auth.user(), output[:80])
                return flask.Response(f"your role is {auth.role()}: starting runs, uploading corpora and running "
                                      "ablations needs the editor role — ask the admin", status=403, mimetype="text/plain")
        return None

    from dash.exceptions import DependencyException, InvalidResourceError

    @server.errorhandler(DependencyException)
    @server.errorhandler(InvalidResourceError)
    def _no_such_resource(_exc):  # e.g. an encoded ``..`` or an unknown file under /_dash-component-suites/
        return flask.Response("not found: no such script or style file (reload the page)", status=404,
                              mimetype="text/plain")

    @server.errorhandler(413)
    def _too_large(_exc):
        return flask.Response(f"request too large (limit {settings.upload_max_bytes // 2**20} MB for uploads): "
                              "use a smaller file", status=413, mimetype="text/plain")

    @server.after_request
    def _headers(response):
        h = response.headers
        if not embeddable:   # the notebook shows the app in an iframe
            h.setdefault("X-Frame-Options", "DENY")
            h.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "same-origin")
        if auth is not None:
            if not flask.request.path.startswith(tuple(prefix + p for p in _STATIC)) and \
                    not flask.request.path.endswith("/_atlas/matrix-preview.png"):
                h["Cache-Control"] = "no-store"
            if auth.is_https():
                h.setdefault("Strict-Transport-Security", "max-age=31536000")
        h.pop("Server", None)
        return response

    if watchdog is not None:
        @server.teardown_request
        def _done(_exc=None):      # also when a request ends in an exception
            watchdog.end()

    @server.after_request
    def _log(response):
        ms = (time.perf_counter() - flask.g.get("t0", time.perf_counter())) * 1000
        user = "-" if auth is None else auth.user_name(unknown="-")
        if watchdog is not None:
            watchdog.end()
        log.info('%s "%s %s" %s %s %.0fms user=%s', auth.client_ip() if auth is not None else flask.request.remote_addr,
                 flask.request.method, flask.request.path, response.status_code,
                 response.calculate_content_length() or "-", ms, user)
        return response

    return Serving(auth, watchdog)
