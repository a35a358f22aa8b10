"""Hostile input for every server callback and for the URL state: no 500, no traceback.

Bodies are posted to /_dash-update-component in the exact format dash-renderer uses, built
from the app's own /_dash-dependencies (so callbacks added later are fuzzed too), with a real
page's values (layout defaults + the answers to opening a run) and one input or state replaced
by a hostile value (a table), or every value drawn by hypothesis (seeded: derandomize=True).
The app is the team server's (``wsgi.build``: debug off) driven in-process through Flask's test
client; a last pass sends hostile URLs and bodies to real gunicorn on loopback.

A response fails when it is a 5xx, or carries traceback text ("Traceback", 'File "', "<class '",
a "module.SomeError:" dump). Callbacks that hit the app's safety net ("something went wrong
(…)": one line, but not a message written for the input) are listed; for the URL reducer they
fail the test (a shared link must always open a working view with a clear note)."""
from __future__ import annotations

import json
import re
import time
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.load import ERROR_MARK, DashClient, FlaskTransport, Gunicorn, HttpTransport, is_pattern
from figures.urlstate import CHOICES, DEFAULTS
from tests.store_fixture import make_test_store

TEXT, IMAGE = "fz-text", "fz-image"
TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|<class '[\w.]+'>|"
                   r"\b(?:[a-z_]+\.)+[A-Z]\w*(?:Error|Exception): ")

HOSTILE = [
    None, "", " ", "0", "-1", -1, 0, 1, -2**31, 2**63, 10**30, 1.5, -0.0, 1e308, float("inf"),
    float("nan"), True, False, [], {}, [None], [[[]]], {"a": 1}, {"points": [{"pointNumber": -5}]},
    {"points": "x"}, {"points": [None]}, {"points": [{"x": "nan", "y": [], "z": {}, "text": "9,9"}]},
    "x" * 20000, "\x00", "../../etc/passwd", "<script>alert(1)</script>", "'; DROP TABLE runs; --",
    "%s%s%n", "{{7*7}}", "ü🙂\u202e", "\ud800", "(a+)+$", "[", "*", "1e999", "NaN", "tsne\n", "L0 H0",
    ["on", "on", 3], list(range(300)),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "store"
    make_test_store(path, "text", n_layers=2, n_heads=3, n_inputs=6, run_id=TEXT, causal=True)
    make_test_store(path, "image", n_layers=2, n_heads=2, n_inputs=3, grid=4, run_id=IMAGE, seed=1,
                    methods=("pca",), dims=(2,), variants=("translated",))
    return path


@pytest.fixture(scope="module")
def app(store, tmp_path_factory):
    from attention_atlas import wsgi
    return wsgi.build({"ATLAS_CACHE": str(store), "ATLAS_AUTH": "none",
                       "ATLAS_JOBS_DIR": str(tmp_path_factory.mktemp("fuzz-jobs")), "ATLAS_LOG_LEVEL": "CRITICAL"})


@pytest.fixture(scope="module")
def page(app):
    """A page that has opened the text run and selected a token: the baseline values."""
    c = DashClient(FlaskTransport(app.server))
    c.load_page()
    assert c.callbacks, "no server callbacks found in /_dash-dependencies"
    c.open_run(f"?run={TEXT}&head=1&token=3")
    assert c.state.get("run-select.value") == TEXT and c.state.get("head-select.value") == 1
    return c


def check(r, where: str) -> str | None:
    """None when the answer is acceptable, else what is wrong."""
    if r.status >= 500 or r.status == 0:
        return f"{where}: HTTP {r.status} {r.body[:200]!r}"
    m = TRACE.search(r.body or "")
    if m:
        return f"{where}: traceback text {m.group(0)!r} in {r.body[max(0, m.start() - 80):m.end() + 80]!r}"
    return None


def safety(r) -> bool:
    return ERROR_MARK in (r.body or "")


def positions(cb):
    return [("inputs", i, d) for i, d in enumerate(cb.inputs)] + [("state", i, d) for i, d in enumerate(cb.state)]


def fuzzable(page):
    """The server callbacks a request runs at once (background ones: test_background_callbacks)."""
    return [cb for cb in page.callbacks if not cb.background]


def as_sent(dep, value):
    """The value as the body carries it: pattern-matching (ALL) inputs are lists of matching
    components, here one made-up component with hostile id values and the hostile value."""
    if not is_pattern(dep["id"]):
        return value
    concrete = {k: (v if not isinstance(v, list) else value if isinstance(value, (str, int)) else 0)
                for k, v in dep["id"].items()}
    return [{"id": concrete, "property": dep["property"], "value": value}]


def trigger_of(dep, value=None) -> str:
    if not is_pattern(dep["id"]):
        return key(dep)
    return json.dumps(as_sent(dep, value)[0]["id"], sort_keys=True, separators=(",", ":")) + "." + dep["property"]


def post_with(page, cb, overrides: dict, changed: list[str]):
    saved = dict(page.state)
    try:
        return page.call(cb, changed, overrides, apply=False)
    finally:
        page.state = saved


def key(d) -> str:
    return f"{d['id']}.{d['property']}"


# ---------------------------------------------------------------------- tables
CORE = [None, "", -1, 2**63, float("nan"), [], {}, "x" * 20000, "\ud800", {"points": [None]}]


def table_for(position: int) -> list:
    """The core type-confusers plus a rotating fifth of the rest (every value is sent somewhere)."""
    rest = [v for v in HOSTILE if not any(v is c for c in CORE)]
    return CORE + rest[position % 5::5]


def test_hostile_table_every_callback_every_input(page):
    failures, net = [], {}
    t0 = time.time()
    n = pos = 0
    for cb in fuzzable(page):
        for section, _, dep in positions(cb):
            pos += 1
            for value in table_for(pos):
                trig = [trigger_of(dep, value) if section == "inputs" else trigger_of(cb.inputs[0])]
                r = post_with(page, cb, {key(dep): as_sent(dep, value)}, trig)
                n += 1
                bad = check(r, f"{cb.name} {key(dep)}={value!r:.60}")
                if bad:
                    failures.append(bad)
                elif safety(r):
                    net.setdefault(cb.name, set()).add(key(dep))
    print(f"\n{n} hostile bodies in {time.time() - t0:.1f}s")
    for name, keys in net.items():  # hand-made bodies only: the values no component can produce
        print(f"  safety net (one line, generic) in {name[:60]} for {sorted(keys)}")
    assert n > 1000
    assert not failures, "\n".join(failures[:20])


TEXTS = ["", " ", "x" * 5000, "<script>alert(1)</script>", "(a+)+$", "[", "*", "\\", "%s%n", "ü🙂\u202e",
         "'; DROP TABLE runs; --", "[CLS]", "##"]
CLICKS = [None, {"points": []}, {"points": [{"curveNumber": 0, "pointNumber": 10**6, "pointIndex": 10**6, "x": 0, "y": 0}]},
          {"points": [{"curveNumber": 9, "pointNumber": 0, "x": 1e9, "y": -1e9, "text": "99,99"}]},
          {"points": [{"curveNumber": 0, "pointNumber": -1, "x": -3, "y": 1e9}]}, {"points": [{"x": 0.5, "y": 0.5}]}]
HEATMAP_CLICKS = [{"points": [{"curveNumber": 0, "x": "9999\u2009zz", "y": "9999\u2009zz", "z": 0.5}]},
                  {"points": [{"curveNumber": 0, "x": "0\u2009[CLS]", "y": "-1\u2009x", "z": 0.5}]}]


def ui_values(page, cid: str, prop: str) -> list:
    """Values the component itself can send (what a person can do in the page, stale values after a
    run switch included): these must get a clear message, never the generic safety net."""
    comp = page.components.get(cid, {})
    kind, props = comp.get("type"), comp.get("props", {})
    if prop in ("clickData", "hoverData", "selectedData"):
        return CLICKS + (HEATMAP_CLICKS if cid == "sentence-graph" else [])
    if prop == "n_clicks":
        return [None, 0, 1, 10**9]
    if prop == "search":
        return ["", "?", "?run=nope&layer=99", "?token=99999999"]
    if prop != "value" and not (kind == "Store" and cid in ("token-store", "matrix-painted")):
        return []
    if cid == "token-store":
        return [None, 0, 10**6]
    if cid == "matrix-painted":
        return [None, True]
    opts = page.state.get(f"{cid}.options") or props.get("options") or []
    vals = [o["value"] if isinstance(o, dict) else o for o in opts]
    if kind == "Dropdown" or kind == "RadioItems":
        stale = [99] if vals and all(isinstance(v, int) for v in vals) else []
        stale += [IMAGE] if cid == "run-select" else []
        return [None] + vals + stale
    if kind == "Checklist":
        return [[], vals, vals[:1]]
    if kind == "Slider":
        return [props.get("min"), props.get("max"), None]
    if kind == "Input" and props.get("type") == "number":
        lo, hi = props.get("min"), props.get("max")
        return [None, 0, 1.5, 1e308, -1e308] + ([lo - 1] if lo is not None else []) + ([hi + 1] if hi is not None else [])
    if kind in ("Input", "Textarea"):
        return TEXTS
    return []


def test_values_the_page_can_send_get_clear_messages(page):
    failures, net, n = [], [], 0
    for cb in fuzzable(page):
        for section, _, dep in positions(cb):
            for value in ui_values(page, str(dep["id"]), dep["property"]):
                trig = [trigger_of(dep, value) if section == "inputs" else trigger_of(cb.inputs[0])]
                r = post_with(page, cb, {key(dep): as_sent(dep, value)}, trig)
                n += 1
                bad = check(r, f"{cb.name} {key(dep)}={value!r:.60}")
                if bad:
                    failures.append(bad)
                elif safety(r):
                    i = r.body.find(ERROR_MARK)
                    net.append(f"{cb.name[:50]} {key(dep)}={value!r:.40}: {r.body[i:i + 140]}")
    assert n > 150
    assert not failures, "\n".join(failures[:20])
    assert not net, f"{len(net)} page-producible values fell into the safety net:\n" + "\n".join(net[:25])


# ---------------------------------------------------------------------- background callbacks
def _long_lived(proc) -> bool:
    """The jobs fork server (jobs/manager.py) and multiprocessing's resource tracker live as long as
    the web process by design (started by whichever test runs the first job); jobs must not."""
    import os
    try:
        cmd, parent = " ".join(proc.cmdline()), proc.ppid()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return True
    # job processes are forked BY the fork server (same command line, but its children)
    return parent == os.getpid() and ("forkserver" in cmd or "resource_tracker" in cmd)


def test_background_callbacks(page):
    """Background callbacks (jobs, ablation, own input) as the renderer runs them: start, poll
    until the answer; hostile inputs (a few each: every one starts a job process) and states."""
    import psutil
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    bgs = [cb for cb in page.callbacks if cb.background]
    failures, n, t0 = [], 0, time.time()
    try:
        for cb in bgs:
            for section, i, dep in positions(cb):
                values = [None, {"job": "../../etc/passwd"}, "x" * 5000, -1] if section == "inputs" \
                    else [HOSTILE[(7 * i + n) % len(HOSTILE)]]
                for value in values:
                    trig = [trigger_of(dep, value) if section == "inputs" else trigger_of(cb.inputs[0])]
                    saved = dict(page.state)
                    try:
                        answers = page.call_background(cb, trig, {key(dep): as_sent(dep, value)}, timeout=40)
                    finally:
                        page.state = saved
                    n += 1
                    for r in answers:
                        bad = check(r, f"{cb.name} {key(dep)}={value!r:.60}") or (
                            r.error if r.error and r.error.startswith("background job") else None)
                        if bad:
                            failures.append(bad)
    finally:
        deadline = time.time() + 20      # job processes end with their job; none may be left behind
        left = []
        while time.time() < deadline:
            left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
                    and p.status() != psutil.STATUS_ZOMBIE and not _long_lived(p)]
            if not left:
                break
            time.sleep(0.3)
        for p in left:
            p.kill()
    print(f"\n{n} background jobs from {len(bgs)} callbacks in {time.time() - t0:.1f}s")
    assert n >= len(bgs)
    assert not failures, "\n".join(failures[:20])
    assert not left, f"job processes left running: {[p.pid for p in left]}"


# ---------------------------------------------------------------------- structure of the body
def test_hostile_body_structure(page, app):
    cb = page.find("single-graph.figure")
    good = page.body(cb, [key(cb.inputs[1])])
    variants = {
        "missing inputs": {**good, "inputs": good["inputs"][:2]},
        "extra inputs": {**good, "inputs": good["inputs"] + good["inputs"]},
        "no inputs key": {k: v for k, v in good.items() if k != "inputs"},
        "input without id": {**good, "inputs": [{"property": "value", "value": 1}] + good["inputs"][1:]},
        "unknown output": {**good, "output": "nope.children", "outputs": {"id": "nope", "property": "children"}},
        "output of another callback": {**good, "output": page.find("color-legend.children").output},
        "outputs mismatch": {**good, "outputs": [{"id": "a", "property": "b"}]},
        "changedPropIds garbage": {**good, "changedPropIds": [None, 3, {"x": 1}]},
        "changedPropIds unknown": {**good, "changedPropIds": ["nope.value"]},
        "state garbage": {**good, "state": [{"id": 1}]},
        "inputs dicts not lists": {**good, "inputs": [{"id": {"type": "x", "index": ["ALL"]}, "property": "value"}]},
        "deep nesting": json.dumps({**good, "inputs": [{"id": "x", "property": "v", "value": json.loads("[" * 900 + "]" * 900)}]}),
        "very deep nesting": '{"output": "x.y", "inputs": [' + "[" * 200000 + "]" * 200000 + "]}",
        "huge number": json.dumps(good).replace('"value": 1', '"value": 1' + "0" * 5000, 1),
        "lone surrogate": json.dumps({**good, "output": "\ud800"}),
        "NaN literal": json.dumps(good).replace('"value": 1', '"value": NaN', 1),
        "not utf-8": b'{"output": "\xff\xfe"}',
    }
    failures = []
    for name, body in variants.items():
        r = page.post_body(name, body)
        bad = check(r, name)
        if bad:
            failures.append(bad)
    assert not failures, "\n".join(failures)
    # and the app still answers a good body afterwards
    r = page.post_body("good", good)
    assert r.status == 200 and not safety(r)


# ---------------------------------------------------------------------- hypothesis: every callback
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def test_hypothesis_every_callback(page):
    failures = []
    cbs = fuzzable(page)
    per_cb = max(12, 240 // max(1, len(cbs)))
    t0 = time.time()

    def make(cb):
        deps = positions(cb)

        @settings(max_examples=per_cb, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def one(data):
            overrides = {}
            for _, _, dep in deps:
                if data.draw(st.booleans(), label=f"replace {key(dep)}"):
                    value = data.draw(json_values | st.sampled_from(HOSTILE), label=key(dep))
                    overrides[key(dep)] = as_sent(dep, value)
            trig = data.draw(st.sampled_from([trigger_of(d, 0) for d in cb.inputs]), label="trigger")
            r = post_with(page, cb, overrides, [trig])
            bad = check(r, f"{cb.name} {overrides!r:.300}")
            assert not bad, bad
        return one

    for cb in cbs:
        try:
            make(cb)()
        except AssertionError as exc:   # hypothesis re-raises the shrunk failing example
            failures.append(str(exc).splitlines()[0])
    print(f"\nhypothesis: {len(cbs)} callbacks × {per_cb} examples in {time.time() - t0:.1f}s")
    assert not failures, "\n".join(sorted(set(failures))[:20])


# ---------------------------------------------------------------------- URL state
URL_KEYS = list(DEFAULTS) + ["x", "run ", "RUN", ""]
url_values = st.one_of(st.text(max_size=40), st.sampled_from([str(v) for v in HOSTILE if not isinstance(v, (list, dict))]),
                       st.integers().map(str), st.floats().map(str),
                       st.sampled_from(sorted({str(c) for cs in CHOICES.values() for c in cs} | {TEXT, IMAGE})))
url_pairs = st.lists(st.tuples(st.sampled_from(URL_KEYS), url_values), max_size=8)


def open_url(page, search):
    cb = page.find("run-select.value", "url.search")
    return post_with(page, cb, {"url.search": search, "boot-store.data": None}, ["url.search"])


def assert_valid_view(r, search):
    bad = check(r, f"url {search!r:.200}")
    assert not bad, bad
    assert r.status == 200 and not safety(r), (search, r.body[:300])
    resp = json.loads(r.body)["response"]
    run = resp["run-select"]["value"]
    assert run in (TEXT, IMAGE)
    layers = [o["value"] for o in resp["layer-select"]["options"]]
    heads = [o["value"] for o in resp["head-select"]["options"]]
    assert layers == [0, 1] and heads == ([0, 1, 2] if run == TEXT else [0, 1])
    assert resp["layer-select"]["value"] in layers and resp["head-select"]["value"] in heads
    assert resp["projection-select"]["value"] in CHOICES["proj"]
    assert resp["dim-select"]["value"] in (2, 3)
    msg = resp["msg-url"]["children"]
    assert isinstance(msg, str) and "\n" not in msg
    assert isinstance(resp["url"]["search"], str)
    tok = resp["token-store"]["data"]
    assert tok is None or (isinstance(tok, int) and tok >= 0)
    return resp


HOSTILE_URLS = [
    "", "?", "??", "?&&&", "?=", "?run", "?run=", f"?run={TEXT}&run={IMAGE}", "?run=nope", "?run=../../etc",
    "?layer=-1", "?layer=99999999999999999999", "?head=1e3", "?token=-3", "?token=10000000", "?token=abc",
    "?proj=tsne%00", "?proj=%ZZ", "?dim=4", "?dim=NaN", "?rho=nan", "?rho=inf", "?rho=-0.0", "?minw=1e-400",
    "?topk=0", "?topk=-1", "?lod=7", "?q=%3Cscript%3E", "?q=" + "a" * 5000, "?regex=1&q=(a%2B)%2B%24",
    "?regex=1&q=%5B", "?hide=" + ",".join(["x"] * 500), "?color=frequency", "?color=../../", "?tab=image",
    f"?run={IMAGE}&tab=sentence&token=9999", "?translate=maybe", "?scaled=1&translate=0",
    "?" + "&".join(f"k{i}=v" for i in range(2000)), "?%ud800=1", "?q=%ED%A0%80", "?run=%F0%9F%99%82",
    "?atab=precompute", "?smode=heatmap&imode=arrows&normsize=yes", "#?run=x", "run=" + TEXT, None,
]


def test_hostile_urls_open_a_valid_view(page):
    for search in HOSTILE_URLS:
        r = open_url(page, search)
        assert_valid_view(r, search)
    r = open_url(page, f"?run={IMAGE}&layer=1&head=1&proj=pca&token=5")
    resp = assert_valid_view(r, "image")
    assert (resp["run-select"]["value"], resp["layer-select"]["value"], resp["head-select"]["value"]) == (IMAGE, 1, 1)
    r = open_url(page, "?run=nope&layer=7")
    resp = assert_valid_view(r, "notes")
    assert "unknown run 'nope'" in resp["msg-url"]["children"] and "layer 7" in resp["msg-url"]["children"]


@settings(max_examples=150, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(pairs=url_pairs, raw=st.booleans(), text=st.text(max_size=60))
def test_hypothesis_url_state(page, pairs, raw, text):
    search = ("?" + text) if raw else ("?" + urlencode(pairs))
    assert_valid_view(open_url(page, search), search)


# ---------------------------------------------------------------------- over real HTTP (gunicorn)
def test_hostile_requests_through_gunicorn(store, tmp_path):
    with Gunicorn(store, workers=1, threads=2, workdir=tmp_path / "srv") as g:
        c = DashClient(HttpTransport(g.base, g.auth))
        c.load_page()
        c.open_run(f"?run={TEXT}")
        failures = []
        for search in [s for s in HOSTILE_URLS if isinstance(s, str)][:40]:
            path = "/" + (search if search.startswith(("?", "#")) else "?" + quote(search))
            r = requests.get(g.base + path[:8000], auth=g.auth, timeout=30)
            if r.status_code >= 500 or TRACE.search(r.text):
                failures.append(f"GET {path[:80]}: {r.status_code}")
            res = open_url(c, search)
            bad = check(res, f"reducer {search!r:.80}")
            if bad or safety(res):
                failures.append(bad or f"safety net for {search!r:.80}")
        for cb in fuzzable(c):
            for value in HOSTILE[::6]:
                dep = cb.inputs[-1]
                res = post_with(c, cb, {key(dep): as_sent(dep, value)}, [trigger_of(dep, value)])
                bad = check(res, f"{cb.name} {key(dep)}={value!r:.60}")
                if bad:
                    failures.append(bad)
        for raw in (b"\x00" * 100, b"{" * 100000, "{\"output\": \"\ud800\"}".encode("utf-8", "surrogatepass")):
            r = requests.post(g.base + "/_dash-update-component", data=raw, auth=g.auth, timeout=30,
                              headers={"Content-Type": "application/json"})
            if r.status_code >= 500 or TRACE.search(r.text):
                failures.append(f"raw body {raw[:20]!r}: {r.status_code}")
        r = requests.get(g.base + "/?" + "a" * 20000, auth=g.auth, timeout=30)
        assert r.status_code < 500
        assert requests.get(g.base + "/healthz", timeout=10).text == "ok"
    assert not failures, "\n".join(failures[:20])
