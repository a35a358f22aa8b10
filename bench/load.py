"""Team-server load test: gunicorn on loopback, N simulated users doing real Dash callbacks.

    python -m bench.load                                  # synthetic store, 16 users × 60 s
    python -m bench.load --cache ./cache/demo             # a real store
    python -m bench.load --duration 5 --users 4           # smoke run (the test suite does this)

Starts ``gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server`` (2 workers × 4 threads, basic auth with a
generated test user) on a free loopback port, then:

1. baseline: the same mix with 1 user (``--baseline`` seconds, default duration/6, ≥ 5 s);
2. load: ``--users`` users for ``--duration`` seconds, each a thread with its own HTTP session.

Each simulated user acts like a browser tab: it loads the page (``/``, ``/_dash-layout``,
``/_dash-dependencies``), opens a run through the URL (the reducer callback, then every server
callback the renderer would fire from the reducer's outputs), drills into heads (layer/head
change), searches a token, switches projection and selects a token. Callback bodies are built
from the app's own ``/_dash-dependencies`` exactly as dash-renderer builds them (the page's
``endId`` token echoed in the query string), with the values the user's page holds (layout
defaults updated by every response); callbacks cascade one wave at a time like the renderer's.
Background callbacks (jobs started from the UI) are not part of the mix (``DashClient.
call_background`` runs one the renderer's way: start, then poll). An error is a non-200/204
answer, a transport error, or an answer whose side update carries the app's "something went
wrong" safety-net message.

Prints p50/p95 latency per action kind and per callback request, throughput, errors, and the
load/baseline ratio. ``--json`` writes the figures to a file. Exit status 1 if any error.

The pieces (``Gunicorn``, ``DashClient``) are reused by tests/integration/test_server.py, test_faults.py and
test_fuzz.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]

ERROR_MARK = "something went wrong"   # app.py's on_error safety-net message
log = logging.getLogger("atlas.bench")
WILDCARDS = ("ALL", "MATCH", "ALLSMALLER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ====================================================================== gunicorn
class Gunicorn:
    """``gunicorn -c gunicorn.conf.py attention_atlas.wsgi:server`` (or ``cmd``) in its own process group on a
    free loopback port; settings through ATLAS_* variables. Always stopped by ``stop()`` /
    the context manager (SIGTERM to the group, then SIGKILL)."""

    def __init__(self, store, *, workers: int = 2, threads: int = 4, auth: str = "basic",
                 users: dict[str, str] | None = None, env: dict | None = None, cmd: list[str] | None = None,
                 workdir: str | os.PathLike | None = None, timeout: int = 60, roles: dict[str, str] | None = None):
        self.store = str(store)
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="atlas-gunicorn-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = users if users is not None else ({"loadtest": "pw-" + os.urandom(6).hex()} if auth == "basic" else {})
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cmd = cmd or [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "attention_atlas.wsgi:server"]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
        self.env.update({"ATLAS_CACHE": self.store, "ATLAS_HOST": "127.0.0.1", "ATLAS_PORT": str(self.port),
                         "ATLAS_WORKERS": str(workers), "ATLAS_THREADS": str(threads), "ATLAS_AUTH": auth,
                         "ATLAS_JOBS_DIR": str(self.dir / "jobs"), "ATLAS_LOG_LEVEL": "WARNING",
                         "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
        if self.users:
            users_file = self.dir / "users"
            from attention_atlas.teamauth import hash_password   # the users file holds bcrypt hashes (cost 4: tests and benches)
            roles = roles if roles is not None else {}
            users_file.write_text("".join(f"{u}:{hash_password(p, rounds=4)}:{roles.get(u, 'editor')}\n"
                                          for u, p in self.users.items()))
            users_file.chmod(0o600)
            self.env["ATLAS_USERS_FILE"] = str(users_file)
        self.env.update(env or {})
        if self.env.get("ATLAS_CERTFILE"):   # gunicorn serves HTTPS itself
            self.base = f"https://127.0.0.1:{self.port}"
        self.timeout = timeout
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def auth(self):
        return next(iter(self.users.items())) if self.users else None

    def start(self) -> "Gunicorn":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise RuntimeError(f"server exited with {code}:\n{self.log()[-3000:]}")
            try:
                if requests.get(self.base + "/healthz", timeout=2, verify=False).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {self.timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        import psutil
        try:
            return sorted(c.pid for c in psutil.Process(self.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return []

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # anything left in the group (workers mid-shutdown)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ====================================================================== Dash client
class HttpTransport:
    def __init__(self, base: str, auth=None, timeout: float = 60):
        self.base, self.timeout = base, timeout
        self.s = requests.Session()
        if auth:
            self.s.auth = tuple(auth)

    def get(self, path: str):
        r = self.s.get(self.base + path, timeout=self.timeout)
        return r.status_code, r.text

    def post(self, path: str, body: bytes):
        r = self.s.post(self.base + path, data=body, timeout=self.timeout,
                        headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"})
        return r.status_code, r.text


class FlaskTransport:
    """The same requests through Flask's test client (in-process; used by the fuzz tests)."""

    def __init__(self, server, auth=None):
        import base64
        self.c = server.test_client()
        self.h = {"Authorization": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()} if auth else {}

    def get(self, path: str):
        r = self.c.get(path, headers=self.h)
        return r.status_code, r.get_data(as_text=True)

    def post(self, path: str, body: bytes):
        r = self.c.post(path, data=body, headers={**self.h, "Content-Type": "application/json"})
        return r.status_code, r.get_data(as_text=True)


def _page_config(html: str) -> dict:
    """The ``_dash-config`` JSON of the index page (dash-renderer reads it at start-up)."""
    marker = '<script id="_dash-config" type="application/json">'
    if marker not in html:
        return {}
    try:
        return json.loads(html.split(marker, 1)[1].split("</script>", 1)[0])
    except ValueError:
        return {}


def is_pattern(cid) -> bool:
    return isinstance(cid, dict) and any(isinstance(v, list) for v in cid.values())


def _parse_id(raw):
    if isinstance(raw, str) and raw.startswith("{"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _id_key(cid) -> str:
    return json.dumps(cid, sort_keys=True, separators=(",", ":")) if isinstance(cid, dict) else str(cid)


def split_output(key: str) -> list[dict]:
    """Dash's output string ('a.b' or '..a.b...c.d..') → [{id, property}] (property keeps '@hash')."""
    parts = key[2:-2].split("...") if key.startswith("..") else [key]
    out = []
    for part in parts:
        if part.startswith("{"):
            end = part.rindex("}")
            out.append({"id": _parse_id(part[:end + 1]), "property": part[end + 2:]})
        else:
            cid, prop = part.rsplit(".", 1)
            out.append({"id": cid, "property": prop})
    return out


@dataclass
class Callback:
    output: str
    outputs: list
    inputs: list
    state: list
    background: bool = False
    prevent_initial: bool = False
    wildcard: bool = False

    @property
    def name(self) -> str:
        return "+".join(f"{_id_key(o['id'])}.{o['property'].split('@')[0]}" for o in self.outputs)[:120]

    def input_keys(self) -> set[str]:
        return {f"{_id_key(i['id'])}.{i['property']}" for i in self.inputs}


def parse_dependencies(deps: list) -> list[Callback]:
    """The server-side callbacks from ``/_dash-dependencies`` (clientside ones run in the browser)."""
    cbs = []
    for d in deps:
        if d.get("clientside_function") or d.get("no_output"):
            if d.get("clientside_function"):
                continue
        outs = split_output(d["output"]) if not d.get("no_output") else []
        ins = [{"id": _parse_id(i["id"]), "property": i["property"]} for i in d["inputs"]]
        st = [{"id": _parse_id(s["id"]), "property": s["property"]} for s in d.get("state", [])]
        wild = any(isinstance(x["id"], dict) and any(isinstance(v, list) for v in x["id"].values())
                   for x in ins + st + outs)
        cbs.append(Callback(d["output"], outs, ins, st, background=bool(d.get("background")),
                            prevent_initial=bool(d.get("prevent_initial_call")), wildcard=wild))
    return cbs


def layout_components(layout) -> dict[str, dict]:
    """id → {"type", "namespace", "props"} for every component with an id in a /_dash-layout tree."""
    comps: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict) and "props" in node and "type" in node:
            p = node["props"] or {}
            if "id" in p:
                comps[_id_key(p["id"])] = {"type": node["type"], "namespace": node.get("namespace"), "props": p}
            for v in p.values():
                if isinstance(v, (dict, list)):
                    walk(v)
    walk(layout)
    return comps


def layout_props(layout) -> dict[str, object]:
    """'id.prop' → value for every component with an id in a /_dash-layout tree."""
    return {f"{cid}.{k}": v for cid, c in layout_components(layout).items() for k, v in c["props"].items() if k != "id"}


@dataclass
class Result:
    callback: str
    status: int
    seconds: float
    error: str | None = None
    body: str = ""
    started: float = 0.0   # wall clock (time.time()) when the request was sent


class DashClient:
    """A browser tab, as far as the server can tell: page state, callback bodies, cascades."""

    def __init__(self, transport, *, cascade: int = 3):
        self.t = transport
        self.cascade = cascade
        self.state: dict[str, object] = {}
        self.callbacks: list[Callback] = []
        self.components: dict[str, dict] = {}
        self.end_id: str | None = None       # the page's signed token, echoed on every callback request

    # ---------------------------------------------------------------- page
    def load_page(self, query: str = "") -> list[Result]:
        out = []
        for path in (f"/{query}", "/_dash-layout", "/_dash-dependencies"):
            started, t0 = time.time(), time.perf_counter()
            try:
                status, text = self.t.get(path)
            except requests.RequestException as exc:
                out.append(Result("GET " + path, 0, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc)[:120]}",
                                  "", started))
                continue
            dt = time.perf_counter() - t0
            err = None if status == 200 else f"HTTP {status}"
            out.append(Result("GET " + path.split("?")[0], status, dt, err, "", started))
            if status != 200:
                continue
            if path.startswith("/?") or path == "/":
                self.end_id = _page_config(text).get("end_id")
            if path == "/_dash-layout":
                self.components = layout_components(json.loads(text))
                self.state = {f"{cid}.{k}": v for cid, c in self.components.items()
                              for k, v in c["props"].items() if k != "id"}
            elif path == "/_dash-dependencies":
                self.callbacks = parse_dependencies(json.loads(text))
        return out

    def find(self, output_prefix: str, trigger: str | None = None) -> Callback:
        for cb in self.callbacks:
            if cb.outputs and f"{_id_key(cb.outputs[0]['id'])}.{cb.outputs[0]['property']}".startswith(output_prefix) \
                    and (trigger is None or trigger in cb.input_keys()):
                return cb
        raise KeyError(output_prefix)

    # ---------------------------------------------------------------- bodies
    def _dep_value(self, dep, overrides):
        key = f"{_id_key(dep['id'])}.{dep['property']}"
        return overrides[key] if key in overrides else self.state.get(key)

    def body(self, cb: Callback, changed: list[str], overrides: dict | None = None) -> dict:
        """The JSON body dash-renderer posts for ``cb`` (values from the page state + overrides)."""
        overrides = overrides or {}

        def filled(deps):
            vals = []
            for d in deps:
                if is_pattern(d["id"]):   # ALL: the list of matching components (none on a fresh page)
                    v = overrides.get(f"{_id_key(d['id'])}.{d['property']}")
                    vals.append(v if isinstance(v, list) else [])
                    continue
                item = {"id": d["id"], "property": d["property"]}
                v = self._dep_value(d, overrides)
                if v is not None:
                    item["value"] = v
                vals.append(item)
            return vals
        outs = [{"id": o["id"], "property": o["property"]} for o in cb.outputs]
        b = {"output": cb.output, "outputs": outs if cb.output.startswith("..") else (outs[0] if outs else []),
             "inputs": filled(cb.inputs), "changedPropIds": list(changed), "parsedChangedPropsIds": list(changed)}
        if cb.state:
            b["state"] = filled(cb.state)
        return b

    def post_body(self, name: str, body, query: dict | None = None) -> Result:
        from urllib.parse import urlencode
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        args = ({"endId": self.end_id} if self.end_id else {}) | (query or {})
        path = "/_dash-update-component" + ("?" + urlencode(args) if args else "")
        started, t0 = time.time(), time.perf_counter()
        try:
            status, text = self.t.post(path, raw.encode() if isinstance(raw, str) else raw)
        except requests.RequestException as exc:
            return Result(name, 0, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc)[:120]}", "", started)
        dt = time.perf_counter() - t0
        err = None
        if status not in (200, 204):
            err = f"HTTP {status}"
        elif ERROR_MARK in text:
            err = "safety net: " + _safety_message(text)
        return Result(name, status, dt, err, text, started)

    def call(self, cb: Callback, changed: list[str], overrides: dict | None = None, apply: bool = True) -> Result:
        r = self.post_body(cb.name, self.body(cb, changed, overrides))
        if apply:
            for k, v in (overrides or {}).items():
                self.state[k] = v
            if r.status == 200:
                self._apply(r.body)
        return r

    def call_background(self, cb: Callback, changed: list[str], overrides: dict | None = None,
                        timeout: float = 30.0, interval: float = 0.2) -> list[Result]:
        """A background callback as dash-renderer runs it: the first request starts the job and
        returns signed cacheKey/job handles; then poll (inputs blanked, handles in the query)
        until the answer carries the result, or 204. Every answer is returned."""
        body = self.body(cb, changed, overrides)
        first = self.post_body(cb.name, body)
        out = [first]
        try:
            handles = json.loads(first.body) if first.status == 200 else {}
        except ValueError:
            handles = {}
        if not isinstance(handles, dict) or "cacheKey" not in handles:
            return out
        blank = json.loads(json.dumps(body))
        for dep in blank["inputs"] + blank.get("state", []):
            if isinstance(dep, dict):
                dep["value"] = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(interval)
            r = self.post_body(cb.name, blank, {"cacheKey": handles["cacheKey"], "job": handles["job"]})
            out.append(r)
            try:
                done = r.status != 200 or "response" in json.loads(r.body) or ERROR_MARK in r.body
            except ValueError:
                done = True
            if done:
                return out
        out.append(Result(cb.name, 0, timeout, f"background job gave no answer within {timeout:.0f}s"))
        self.post_body(cb.name, blank, {"oldJob": handles["job"]})   # as the renderer does: end the job
        return out

    def _apply(self, text: str) -> list[str]:
        try:
            resp = json.loads(text)
        except ValueError:
            return []
        changed = []
        for section in ("response", "sideUpdate"):
            for cid, props in (resp.get(section) or {}).items():
                if not isinstance(props, dict):
                    continue
                for prop, val in props.items():
                    key = f"{cid}.{prop}"
                    changed.append(key)
                    if not (isinstance(val, dict) and "__dash_patch_update" in val):
                        self.state[key] = val
        return changed

    # ---------------------------------------------------------------- actions
    def act(self, changes: dict[str, object]) -> list[Result]:
        """Set props as the user would and run every server callback the renderer would fire,
        cascading through the responses' outputs (each callback at most once per action)."""
        for k, v in changes.items():
            self.state[k] = v
        fired: set[str] = set()
        wave = list(changes)
        out = []
        for _ in range(self.cascade):
            todo = [cb for cb in self.callbacks if cb.output not in fired and not cb.wildcard and not cb.background
                    and cb.input_keys() & set(wave)]
            if not todo:
                break
            next_wave = []
            for cb in todo:
                fired.add(cb.output)
                trig = [k for k in wave if k in cb.input_keys()]
                r = self.call(cb, trig, apply=False)
                out.append(r)
                if r.status == 200:
                    next_wave += self._apply(r.body)
            wave = next_wave
        return out

    def open_run(self, query: str) -> list[Result]:
        """The page's first callbacks: the URL reducer, then what it triggers; then the browser
        marks the Matrix View as painted."""
        out = self.act({"url.search": query, "url.pathname": "/", "url.href": None})
        out += self.act({"matrix-painted.data": True})
        return out


def _safety_message(text: str) -> str:
    i = text.find(ERROR_MARK)
    return text[i:i + 200]


# ====================================================================== simulated users
KINDS = ("page", "open", "drill", "search", "projection", "token")


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    actions: dict = field(default_factory=lambda: {k: [] for k in KINDS})
    requests: list = field(default_factory=list)
    by_callback: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    n_actions: int = 0

    def add(self, kind: str, seconds: float, results: list[Result]):
        with self.lock:
            self.actions[kind].append(seconds)
            self.n_actions += 1
            for r in results:
                self.requests.append(r.seconds)
                self.by_callback.setdefault(r.callback, []).append(r.seconds)
                if r.error:
                    self.errors.append((kind, r.callback, r.error))


def user_loop(base: str, auth, runs: list[str], stop_at: float, tally: Tally, seed: int, think: float = 0.0):
    rng = random.Random(seed)
    words = ["the", "cat", "park", "sun", "a", "bird", "un", "paris", "one", "##able"]
    while time.time() < stop_at:
        client = DashClient(HttpTransport(base, auth))
        run = runs[rng.randrange(len(runs))]

        def timed(kind, fn):
            t0 = time.perf_counter()
            try:
                res = fn()
            except Exception as exc:  # noqa: BLE001 - the bench's edge: a broken answer is an error of the run, not of the bench
                log.debug("%s failed", kind, exc_info=True)
                res = [Result(kind, 0, time.perf_counter() - t0, f"{type(exc).__name__}: {str(exc)[:160]}")]
            tally.add(kind, time.perf_counter() - t0, res)
            if think:
                time.sleep(rng.uniform(0, 2 * think))
            return res

        timed("page", client.load_page)
        timed("open", lambda: client.open_run(f"?run={run}"))
        steps = ["drill", "drill", "search", "drill", "projection", "token", "search", "projection"]
        for kind in steps:
            if time.time() >= stop_at:
                break
            if kind == "drill":
                layers = [o["value"] for o in client.state.get("layer-select.options") or []] or [0]
                heads = [o["value"] for o in client.state.get("head-select.options") or []] or [0]
                timed(kind, lambda: client.act({"layer-select.value": rng.choice(layers)}
                                               if rng.random() < 0.5 else {"head-select.value": rng.choice(heads)}))
            elif kind == "search":
                q = "" if client.state.get("search-input.value") else rng.choice(words)
                timed(kind, lambda: client.act({"search-input.value": q}))
            elif kind == "projection":
                cur = client.state.get("projection-select.value")
                opts = [p for p in ("tsne", "pca", "umap") if p != cur]
                timed(kind, lambda: client.act({"projection-select.value": rng.choice(opts)}))
            elif kind == "token":
                timed(kind, lambda: client.act({"token-store.data": rng.randrange(40)}))


def run_phase(base: str, auth, runs: list[str], users: int, duration: float, think: float = 0.0,
              seed: int = 0) -> dict:
    tally = Tally()
    stop_at = time.time() + duration
    t0 = time.perf_counter()
    threads = [threading.Thread(target=user_loop, args=(base, auth, runs, stop_at, tally, seed * 1000 + i, think),
                                daemon=True) for i in range(users)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(duration + 120)
    wall = time.perf_counter() - t0
    return summarise(tally, wall, users)


def summarise(tally: Tally, wall: float, users: int) -> dict:
    ms = lambda xs, p: round(pct(xs, p) * 1000, 1)  # noqa: E731
    kinds = {k: {"n": len(v), "p50_ms": ms(v, 50), "p95_ms": ms(v, 95)} for k, v in tally.actions.items() if v}
    slow = sorted(tally.by_callback.items(), key=lambda kv: -sum(kv[1]))[:8]   # where the server time goes
    callbacks = {name: {"n": len(v), "p50_ms": ms(v, 50), "p95_ms": ms(v, 95), "total_s": round(sum(v), 1)}
                 for name, v in slow}
    return {"users": users, "wall_s": round(wall, 1), "actions": tally.n_actions, "requests": len(tally.requests),
            "errors": len(tally.errors), "error_samples": tally.errors[:10],
            "actions_per_s": round(tally.n_actions / wall, 2), "requests_per_s": round(len(tally.requests) / wall, 2),
            "request_p50_ms": ms(tally.requests, 50), "request_p95_ms": ms(tally.requests, 95), "kinds": kinds,
            "callbacks": callbacks}


def print_report(base: dict, load: dict, out=sys.stdout):
    p = lambda *a: print(*a, file=out)  # noqa: E731
    users = f"{load['users']} users"
    p(f"\n{'':14}{'1 user (baseline)':>26}{users:>26}{'ratio p50 / p95':>20}")
    p(f"{'kind':14}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}")
    for k in KINDS:
        b, l_ = base["kinds"].get(k), load["kinds"].get(k)
        if not l_:
            continue
        b = b or {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan")}
        p(f"{k:14}{b['n']:>6}{b['p50_ms']:>10.0f}{b['p95_ms']:>10.0f}{l_['n']:>6}{l_['p50_ms']:>10.0f}"
          f"{l_['p95_ms']:>10.0f}{l_['p50_ms'] / b['p50_ms']:>10.1f}×{l_['p95_ms'] / b['p95_ms']:>8.1f}×")
    p(f"{'any request':14}{base['requests']:>6}{base['request_p50_ms']:>10.0f}{base['request_p95_ms']:>10.0f}"
      f"{load['requests']:>6}{load['request_p50_ms']:>10.0f}{load['request_p95_ms']:>10.0f}"
      f"{load['request_p50_ms'] / base['request_p50_ms']:>10.1f}×{load['request_p95_ms'] / base['request_p95_ms']:>8.1f}×")
    p(f"throughput: {base['requests_per_s']} req/s ({base['actions_per_s']} actions/s) with 1 user; "
      f"{load['requests_per_s']} req/s ({load['actions_per_s']} actions/s) with {load['users']} users "
      f"({load['requests_per_s'] / base['requests_per_s']:.1f}×)")
    p(f"errors: {base['errors']} (baseline), {load['errors']} (load) of {base['requests'] + load['requests']} requests")
    p(f"requests taking the most time under load ({load['users']} users): n, p50 / p95 ms, total s")
    for name, c in load["callbacks"].items():
        p(f"   {name[:70]:70} {c['n']:>6} {c['p50_ms']:>8.0f} / {c['p95_ms']:<8.0f} {c['total_s']:>7.1f}")
    for e in (base["error_samples"] + load["error_samples"])[:10]:
        p("  ", e)


def machine() -> str:
    import platform
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load1 = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, "
            f"load average at start {load1:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", help="store to serve (default: a synthetic store from tests/store_fixture.py)")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--baseline", type=float, help="seconds of the 1-user baseline (default duration/6, ≥ 5)")
    ap.add_argument("--think", type=float, default=0.0, help="mean think time between actions (s); 0 = back to back")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="atlas-load-"))
    try:
        if args.cache:
            store = Path(args.cache)
        else:
            from tests.store_fixture import make_test_store
            store = tmp / "store"
            make_test_store(store, "text", n_layers=4, n_heads=6, n_inputs=40, seed=0, run_id="load-text")
            make_test_store(store, "image", n_layers=3, n_heads=4, n_inputs=6, grid=8, seed=1, run_id="load-image")
        from precompute.store import Store
        s = Store(store, readonly=True)
        runs = s.run_ids()
        s.close()
        if not runs:
            print(f"error: the store {store} holds no runs", file=sys.stderr)
            return 2
        desc = machine()
        print(f"machine: {desc}")
        print(f"store {store}: runs {', '.join(runs)}")
        with Gunicorn(store, workers=args.workers, threads=args.threads, workdir=tmp / "srv", timeout=90) as g:
            print(f"gunicorn {g.base}: {args.workers} workers × {args.threads} threads, basic auth", flush=True)
            warm = DashClient(HttpTransport(g.base, g.auth))  # first requests import/plot; not measured
            for _ in range(args.workers * 2):
                warm.load_page()
                warm.open_run(f"?run={runs[0]}")
            baseline_s = args.baseline or max(5.0, args.duration / 6)
            print(f"baseline: 1 user × {baseline_s:.0f}s", flush=True)
            base = run_phase(g.base, g.auth, runs, 1, baseline_s, args.think, seed=1)
            print(f"load: {args.users} users × {args.duration:.0f}s", flush=True)
            load = run_phase(g.base, g.auth, runs, args.users, args.duration, args.think, seed=2)
            alive = requests.get(g.base + "/healthz", timeout=5).status_code
        print_report(base, load)
        print(f"server healthy after the run: {alive == 200}")
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": desc, "store": str(store), "runs": runs,
                                                   "baseline": base, "load": load}, indent=1))
        return 0 if base["errors"] == 0 and load["errors"] == 0 and alive == 200 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
