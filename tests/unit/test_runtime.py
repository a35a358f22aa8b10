"""The process runtime (attention_atlas/core/runtime.py): live models loaded once per process with
one lock per model, per-process handles, and the one fork handler that resets locks in a child."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from attention_atlas.core import runtime

ROOT = Path(__file__).resolve().parents[2]


class FakeAdapter:
    def __init__(self, source):
        self.source = source


@pytest.fixture
def fake_models(monkeypatch):
    import precompute.models

    loads = []

    def load_model(source, device="cpu"):
        loads.append(source)
        time.sleep(0.1)
        return FakeAdapter(source)
    monkeypatch.setattr(precompute.models, "load_model", load_model)
    runtime.release_models()
    yield loads
    runtime.release_models()


def test_live_model_loaded_once_and_one_kept(fake_models):
    out = []
    threads = [threading.Thread(target=lambda: out.append(runtime.live_model("a"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_models == ["a"] and len({id(a) for a in out}) == 1
    b = runtime.live_model("b")
    assert runtime.loaded_models() == [("b", "cpu")] and fake_models == ["a", "b"]   # MAX_MODELS = 1
    assert runtime.live_model("b") is b


def test_one_lock_per_model():
    a, b = FakeAdapter("a"), FakeAdapter("b")
    assert runtime.model_lock(a) is runtime.model_lock(a)
    assert runtime.model_lock(a) is not runtime.model_lock(b)


def test_handles_and_singletons_once_per_process(tmp_path):
    assert runtime.disk_cache(tmp_path / "c") is runtime.disk_cache(tmp_path / "c")
    made = []
    assert runtime.singleton("test.x", lambda: made.append(1) or "v") == "v"
    assert runtime.singleton("test.x", lambda: made.append(1) or "w") == "v" and made == [1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_fork_handler_gives_a_child_fresh_locks(tmp_path):
    """A lock another thread holds at the fork would never be released in the child: the child
    gets new ones (model locks, cache regions) and reopens its disk caches."""
    from attention_atlas.core.caches import Caches

    adapter = FakeAdapter("a")
    caches = Caches([("r", 4)])
    parent_cache = runtime.disk_cache(tmp_path / "d")
    held = runtime.model_lock(adapter)
    held.acquire()
    caches["r"]._lock.acquire()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: must not hang on either lock
            ok = (runtime.model_lock(adapter).acquire(timeout=2) and caches["r"]._lock.acquire(timeout=2)
                  and runtime.forked() and runtime.disk_cache(tmp_path / "d") is not parent_cache)
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
        os.close(w)
        got = os.read(r, 1)
        os.waitpid(pid, 0)
    finally:
        held.release()
        caches["r"]._lock.release()
    assert got == b"1"
    assert not runtime.forked()


def test_fork_handling_and_model_locks_live_only_in_the_runtime():
    """One runtime module: no other module registers a fork handler or keeps a model lock."""
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    offenders = []
    for name in files:
        if name.startswith("tests/") or name == "attention_atlas/core/runtime.py":
            continue
        text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
        for pattern in (r"register_at_fork", r"MODEL_LOCK", r"^_?[A-Z_]*LOCK\w*\s*=\s*threading\.", r"load_model\("):
            for m in re.finditer(pattern, text, re.M):
                offenders.append(f"{name}:{text[:m.start()].count(chr(10)) + 1}: {m.group(0)}")
    allowed_loaders = ("precompute/", "bench/")   # the pipeline and the benches load their own model
    offenders = [o for o in offenders if not (o.endswith("load_model(") and o.startswith(allowed_loaders))]
    assert not offenders, "\n".join(offenders)
