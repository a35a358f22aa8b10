"""First run (issue 11, item 9): PCA of every head first, the rest in the background, an honest ETA,
a page that learns when heads land, a background run that stops with the dashboard and resumes.

Real minilm runs, real worker processes, real `bash scripts/run.sh`."""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest

from precompute.eta import HeadETA
from precompute.pipeline import RunConfig, run
from precompute.store import Store

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
             "She said \"yes\" to the offer, then changed her mind.", "One, two, three: the list goes on.",
             "The trophy didn't fit in the suitcase because it was too big."]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def _cfg(cache, corpus, **kw):
    base = dict(model="minilm", corpus=str(corpus), cache=str(cache), layers="0,5", heads="0,3,7",
                projections="pca,umap", dims="2,3", variants="translated", workers=2)
    return RunConfig(**{**base, **kw})


def _slow_done(s, run_id, layer, head) -> bool:
    """The head's slow phase is finished: its UMAP stored and its figures too (a run stores a head's
    coordinates, then its figures)."""
    return s.has_coords(run_id, layer, head, "translated", "umap", 3) and \
        "trust/translated/umap/3d" in (s.metrics(run_id, layer, head) or {})


def _store_times(cache) -> dict:
    """key -> diskcache store_time: an entry rewritten gets a new one."""
    con = sqlite3.connect(f"file:{cache}/cache.db?mode=ro", uri=True)
    try:
        return {k: t for k, t in con.execute("SELECT key, store_time FROM Cache") if isinstance(k, str)}
    finally:
        con.close()


def _tree_alive(procs) -> list:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


# ------------------------------------------------------------------ two phases = one phase
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from attention_atlas.dashboard_data import Data

    d = tmp_path_factory.mktemp("firstrun")
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES), encoding="utf-8")
    one = run(_cfg(d / "one", corpus))
    seen = {}
    two_cache = d / "two"

    def on_ready(run_id):
        # called by the run between its phases: what does a reader (the dashboard) see now?
        s = Store(two_cache, readonly=True)
        m = s.manifest(run_id)
        heads = [(l, h) for l in m["layers"] for h in m["heads"]]
        seen["pca"] = sum(all(s.has_coords(run_id, l, h, "translated", "pca", dim) for dim in (2, 3)) for l, h in heads)
        seen["umap"] = sum(s.has_coords(run_id, l, h, "translated", "umap", 2) for l, h in heads)
        seen["spearman"] = sum("spearman/translated" in (s.metrics(run_id, l, h) or {}) for l, h in heads)
        seen["heads"] = len(heads)
        data = Data(two_cache)
        seen["data"] = data
        seen["progress"] = data.progress(run_id)
        seen["metrics"] = data.metrics(run_id, 0, 0)  # cached by the dashboard while the run goes on

    two = run(_cfg(two_cache, corpus, fast_first=True, on_ready=on_ready))
    return one, two, d / "one", two_cache, seen


def test_two_phase_run_has_the_same_id_and_store_as_one_phase(two_runs):
    one, two, a, b, _ = two_runs
    assert one.run_id == two.run_id
    assert one.status["status"] == two.status["status"] == "complete"
    sa, sb = Store(a, readonly=True), Store(b, readonly=True)
    keys_a = sorted(k for k in sa.keys() if not k.endswith("/lock"))
    keys_b = sorted(k for k in sb.keys() if not k.endswith("/lock"))
    assert keys_a == keys_b and len([k for k in keys_a if "/proj/" in k]) == 6 * 4
    for k in keys_a:
        if "/proj/" in k:
            assert np.array_equal(sa._get(k)["coords"], sb._get(k)["coords"]), k
        elif k.endswith("/metrics"):
            ma = {n: v for n, v in sa._get(k).items() if not n.startswith("time/")}
            mb = {n: v for n, v in sb._get(k).items() if not n.startswith("time/")}
            assert ma == mb, k
            assert {"trust/translated/pca/2d", "trust/translated/umap/3d"} <= set(mb)
    man_a, man_b = sa.manifest(one.run_id), sb.manifest(two.run_id)
    for field in ("layers", "heads", "projections", "dims", "variants", "settings"):
        assert man_a[field] == man_b[field]

    def example_free(corpus):  # the run's warning names the first head to finish as its example: any order
        return {**corpus, "warnings": [re.sub(r"\(e\.g\. L\d+ H\d+: L\d+H\d+", "(e.g. ", w) for w in corpus["warnings"]]}
    assert example_free(man_a["corpus"]) == example_free(man_b["corpus"])
    assert two.heads_computed == one.heads_computed == 6  # a head's PCA task and full task count once


def test_pca_of_every_head_is_stored_before_any_slow_projection(two_runs):
    *_, seen = two_runs
    assert seen["pca"] == seen["heads"] == 6 and seen["spearman"] == 6  # every head drawable, ρ known
    assert seen["umap"] == 0


def test_dashboard_sees_the_run_grow(two_runs):
    """Data.progress moves from PCA-only to complete and the metrics Data cached mid-run are not kept."""
    one, two, _, _, seen = two_runs
    data, before = seen["data"], seen["progress"]
    assert before["status"] == "partial" and before["methods"] == {"pca": 6, "umap": 0}
    assert "trust/translated/umap/2d" not in seen["metrics"]
    time.sleep(0.3)  # FRESH_EVERY
    after = data.progress(two.run_id)
    assert after["version"] != before["version"]
    assert after["status"] == "complete" and after["methods"] == {"pca": 6, "umap": 6}
    assert data.status(two.run_id)["status"] == "complete"
    assert "trust/translated/umap/2d" in data.metrics(two.run_id, 0, 0)


def test_live_store_is_written_only_when_the_run_changed(two_runs):
    from callbacks.live import progress_text, update
    from attention_atlas.dashboard_data import Data

    _, two, _, cache, seen = two_runs
    value = update(Data(cache), two.run_id, None)
    assert value["status"] == "complete" and value["methods"] == {"pca": 6, "umap": 6}
    assert update(Data(cache), two.run_id, value) is None  # nothing new: no write, no redraw
    mid = {**value, "version": seen["progress"]["version"], "status": "partial", "methods": seen["progress"]["methods"],
           "heads_done": 0}
    assert update(Data(cache), two.run_id, mid)["version"] == value["version"]  # grown since: written
    assert "PCA 6/6" in progress_text(mid) and "UMAP 0/6" in progress_text(mid)
    assert "being computed now" in progress_text({**mid, "writing": True})
    assert "re-run the same command" in progress_text({**mid, "writing": False})
    assert seen["progress"]["writing"] and not Data(cache).progress(two.run_id)["writing"]  # the lock is gone


# ------------------------------------------------------------------ the ETA
def test_eta_is_right_from_the_first_head(tmp_path):
    """The slow phase's ETA shown when its first head finishes is within 2x of the time it then took
    (tqdm's own rate counted the one-off warm-up and ignored the parallel workers)."""
    events = []

    class Bar:
        def __init__(self, total=None, desc="", unit="", **_):
            self.desc, self.n, self.t0 = desc, 0, time.monotonic()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append((self.desc, "end", time.monotonic(), self.n, ""))
            return False

        def set_postfix_str(self, s, refresh=True):
            events.append((self.desc, "eta", time.monotonic(), self.n, s))

        def update(self, n=1):
            self.n += n
            events.append((self.desc, "n", time.monotonic(), self.n, ""))

    summary = run(RunConfig(model="minilm", corpus="demo", cache=str(tmp_path / "s"), max_tokens=500,
                            layers="0-5", heads="0,4,8,11", projections="pca,umap", dims="2",
                            variants="translated", workers=2, fast_first=True), progress=Bar)
    assert summary.status["status"] == "complete" and summary.timings["start workers"] > 0
    slow = [e for e in events if e[0] == "projections: t-SNE/UMAP per head"]
    first = next(e for e in slow if e[1] == "eta" and e[3] == 1)  # ETA shown after the first head
    end = next(e for e in slow if e[1] == "end")
    m = re.search(r"ETA (?:(\d+)m)?([\d.]+)s", first[4])
    predicted = float(m.group(1) or 0) * 60 + float(m.group(2))
    actual = end[2] - first[2]
    start = next(e for e in slow if e[1] == "eta")[2]
    naive = (first[2] - start) * 23  # tqdm: elapsed per head × heads left
    print(f"ETA at the first head {predicted:.1f} s, took {actual:.1f} s (tqdm would have said {naive:.0f} s)")
    assert 0.5 <= predicted / actual <= 2.0, (predicted, actual)


def test_eta_accounts_for_parallel_workers_and_mixed_heads():
    eta = HeadETA([1.0, 1.0, 1.0, 1.0, 3.0], workers=2)
    assert eta.remaining() is None
    eta.done(2.0, 1.0)  # 2 s per unit of cost, 6 units left, 2 at a time
    assert eta.remaining() == pytest.approx(6.0)
    for _ in range(3):
        eta.done(2.0, 1.0)
    assert eta.remaining() == pytest.approx(6.0)  # one head left: no parallelism
    eta.done(6.0, 3.0)
    assert eta.remaining() == 0.0


# ------------------------------------------------------------------ kill, stop with the dashboard, resume
def test_stop_with_kills_the_whole_tree_and_the_rerun_redoes_nothing(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 4), encoding="utf-8")
    cache, ready = tmp_path / "s", tmp_path / "ready.json"
    dashboard = subprocess.Popen(["sleep", "600"])  # stands in for the dashboard process
    args = ["--model", "minilm", "--corpus", str(corpus), "--cache", str(cache), "--layers", "0-5",
            "--heads", "0,3,7,11", "--projections", "pca,umap", "--dims", "2,3", "--variants", "translated",
            "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "precompute", "run", *args, "--fast-first", "--ready-file",
                             str(ready), "--stop-with", str(dashboard.pid)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-2000:]
            time.sleep(0.1)
        run_id = json.loads(ready.read_text())["run_id"]
        assert os.getpgid(proc.pid) == proc.pid  # leads its own group
        s = Store(cache, readonly=True)
        heads = [(l, h) for l in range(6) for h in (0, 3, 7, 11)]
        assert all(s.has_coords(run_id, l, h, "translated", "pca", 3) for l, h in heads)
        # wait for the slow phase to be under way: workers started, a first head done
        while not any(_slow_done(s, run_id, l, h) for l, h in heads):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        assert len(tree) >= 3  # the run, its fork server and its workers
        dashboard.kill()
        dashboard.wait()
        t_kill = time.monotonic()
        while _tree_alive(tree) and time.monotonic() - t_kill < 10:
            time.sleep(0.1)
        assert not _tree_alive(tree), [p.cmdline() for p in _tree_alive(tree)]
        out = proc.stdout.read().decode()
        assert "has ended: stopping this run" in out
    finally:
        dashboard.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    # a head is done when its figures are stored too: a kill between a head's coordinates and its
    # figures leaves it to be measured again (and counted) by the resumed run
    done = [(l, h) for l, h in heads if _slow_done(s, run_id, l, h)]
    assert 0 < len(done) < len(heads), "the kill did not land inside the t-SNE/UMAP phase"
    before = _store_times(cache)
    summary = run(RunConfig(model="minilm", corpus=str(corpus), cache=str(cache), layers="0-5", heads="0,3,7,11",
                            projections="pca,umap", dims="2,3", variants="translated", workers=2, fast_first=True))
    after = _store_times(cache)
    assert summary.run_id == run_id and summary.status["status"] == "complete"
    assert summary.layers_forwarded == 0 and summary.heads_computed == len(heads) - len(done)
    rewritten = {k for k, t in before.items() if after.get(k) != t}
    # nothing finished before the kill is written again: q/k, tokens, every PCA, the finished heads
    assert not {k for k in rewritten if k.endswith("/qk") or "/proj/" in k or k.endswith("/tokens")}
    assert not {k for k in rewritten if any(k.startswith(f"run/{run_id}/head/{l}/{h}/") for l, h in done)}
    for l, h in heads:  # resumed heads still got PCA's trustworthiness (their PCA came from the fast phase)
        assert "trust/translated/pca/2d" in s.metrics(run_id, l, h)


# ------------------------------------------------------------------ the first command
def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_run_sh(cache, port, log):
    env = {**ENV, "ATLAS_CACHE": str(cache), "ATLAS_DEMO_MAX_TOKENS": "600"}
    return subprocess.Popen(["bash", "scripts/run.sh", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_served(port, server, timeout=240) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert server.poll() is None, "run.sh ended"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("not served in time")


def _background(cache) -> list:
    pid = int(Path(f"{cache}.precompute.pid").read_text())
    p = psutil.Process(pid)
    return [p] + p.children(recursive=True)


@pytest.mark.slow  # two real `scripts/run.sh` starts: 56-86 s on the loaded 2-core machine
def test_run_sh_serves_after_pca_and_the_background_stops_with_the_server(tmp_path):
    cache = tmp_path / "demo"
    port = _free_port()
    with open(tmp_path / "out.txt", "wb") as out:
        server = _start_run_sh(cache, port, out)
        try:
            served = _wait_served(port, server)
            s = Store(cache, readonly=True)
            (run_id,) = s.run_ids()
            m = s.manifest(run_id)
            heads = [(l, h) for l in m["layers"] for h in m["heads"]]
            assert m["projections"] == ["pca", "tsne", "umap"] and len(heads) == 72
            assert all(s.has_coords(run_id, l, h, "translated", "pca", 2) for l, h in heads)
            tree = _background(cache)
            assert _tree_alive(tree) and os.getpgid(tree[0].pid) == tree[0].pid
            assert psutil.Process(tree[0].pid).ppid() != server.pid  # not the server's child: no zombie
            time.sleep(3)  # the slow phase starts its workers
            tree = _tree_alive(_background(cache))
            print(f"served after {served:.0f} s; background tree {[p.name() for p in tree]}")
            server.send_signal(signal.SIGINT)  # Ctrl-C on the server
            server.wait(timeout=30)
            t0 = time.monotonic()
            while _tree_alive(tree) and time.monotonic() - t0 < 10:
                time.sleep(0.2)
            assert not _tree_alive(tree), [p.cmdline() for p in _tree_alive(tree)]
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
            for p in _tree_alive(_background(cache)):
                p.kill()
    log = Path(f"{cache}.precompute.log").read_text()
    assert "has ended: stopping this run" in log
    pca_times = {k: t for k, t in _store_times(cache).items() if "/pca/" in k or k.endswith("/qk")}

    # the second command resumes: no forward pass, no PCA again, served at once
    size = len(log)
    with open(tmp_path / "out2.txt", "wb") as out:
        server = _start_run_sh(cache, port, out)
        try:
            _wait_served(port, server)
            t0 = time.monotonic()
            while "t-SNE/UMAP per head" not in Path(f"{cache}.precompute.log").read_text()[size:]:
                assert time.monotonic() - t0 < 120
                time.sleep(0.5)
            tree = _tree_alive(_background(cache))
            server.kill()  # SIGKILL: no handler runs, the run notices on its own
            server.wait(timeout=30)
            t0 = time.monotonic()
            while _tree_alive(tree) and time.monotonic() - t0 < 10:
                time.sleep(0.2)
            assert not _tree_alive(tree)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)
    second = Path(f"{cache}.precompute.log").read_text()[size:]
    assert "forward passes" not in second and "PCA of every head" not in second
    now = _store_times(cache)
    assert all(now.get(k) == t for k, t in pca_times.items())
