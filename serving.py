"""What the dashboard needs to be served to a team: health endpoint, authentication, request
limits and request logging. ``install(app, settings, data)`` wires it into the Flask server.

- ``GET /healthz``: without credentials a bare liveness answer (``ok`` / 503), with credentials
  (or when auth is off) JSON with the store's reachability and its runs.
- auth ``basic``: HTTP basic through dash-auth (constant-time password check; a malformed
  ``Authorization`` header is simply "not authorised"); auth ``proxy``: trust the reverse proxy's
  user header, but only from the proxy's own address (``trusted_proxies``).
  Every route — page, assets, callbacks, ``/healthz`` detail — needs it.
- request body limit (uploads are the only big bodies) and a check that callback requests are
  well-formed JSON (400, not 500, for garbage).
- one log line per request (method, path, status, bytes, ms, user), never headers or bodies.
"""
from __future__ import annotations

import hmac
import json
import logging
import time

import flask
from dash_auth.auth import Auth

log = logging.getLogger("atlas.http")

LIVE_PATH = "/healthz"


class RobustBasicAuth(Auth):
    """dash-auth basic auth with werkzeug's header parsing and constant-time comparison."""

    def __init__(self, app, users: dict[str, str]):
        self._users = {u: p.encode() for u, p in users.items()}
        super().__init__(app)

    def user(self) -> str | None:
        auth = flask.request.authorization
        if auth is None or (auth.type or "").lower() != "basic" or auth.username is None:
            return None
        expected = self._users.get(auth.username)
        given = (auth.password or "").encode("utf-8", "surrogateescape")
        # compare against something even for unknown users (no timing oracle on user names)
        ok = hmac.compare_digest(expected if expected is not None else b"\0" * 32, given)
        return auth.username if ok and expected is not None else None

    def is_authorized(self) -> bool:
        return self.user() is not None

    def login_request(self):
        return flask.Response("authentication required", status=401, mimetype="text/plain",
                              headers={"WWW-Authenticate": 'Basic realm="Attention Atlas", charset="UTF-8"'})


class ProxyHeaderAuth(Auth):
    """Trust a reverse proxy's user header, only when the request comes from a trusted proxy."""

    def __init__(self, app, header: str, trusted: tuple[str, ...]):
        self.header = header
        self.trusted = set(trusted)
        super().__init__(app)

    def user(self) -> str | None:
        if flask.request.remote_addr not in self.trusted:
            return None
        value = (flask.request.headers.get(self.header) or "").strip()
        return value[:200] or None

    def is_authorized(self) -> bool:
        return self.user() is not None

    def login_request(self):
        return flask.Response("authentication required: sign in through the team's proxy", status=401,
                              mimetype="text/plain")


def _health(data, detail: bool):
    try:
        runs = data.run_ids()
        ok = True
    except Exception as exc:  # noqa: BLE001 - any store problem is "not healthy"
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
            except Exception:  # noqa: BLE001
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


def install(app, settings, data) -> None:
    server = app.server
    server.config["MAX_CONTENT_LENGTH"] = settings.upload_max_bytes * 4 // 3 + 16 * 2**20  # base64 + state
    auth = None

    @server.before_request
    def _early():  # registered before the auth hook, so it runs first
        flask.g.t0 = time.perf_counter()
        if flask.request.path == LIVE_PATH:
            return _health(data, detail=auth is None or auth.is_authorized())
        if flask.request.path.endswith("/_dash-update-component") and flask.request.method == "POST" \
                and _bad_callback_request(app.callback_map):
            if auth is not None and not auth.is_authorized():
                return auth.login_request()
            return flask.Response("malformed callback request", status=400, mimetype="text/plain")
        return None

    if settings.auth == "basic":
        auth = RobustBasicAuth(app, settings.basic_users())
    elif settings.auth == "proxy":
        auth = ProxyHeaderAuth(app, settings.proxy_user_header, settings.trusted_proxies)
    app.atlas_auth = auth

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
    def _log(response):
        ms = (time.perf_counter() - flask.g.get("t0", time.perf_counter())) * 1000
        user = "-"
        if auth is not None:
            try:
                user = auth.user() or "-"
            except Exception:  # noqa: BLE001
                user = "?"
        log.info('%s "%s %s" %s %s %.0fms user=%s', flask.request.remote_addr, flask.request.method,
                 flask.request.path, response.status_code, response.calculate_content_length() or "-", ms, user)
        return response
