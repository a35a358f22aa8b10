"""The one cache helper (attention_atlas/core/caches.py) and how the data layer uses it: named
regions with a size bound, entries tagged by run, one invalidation path (Data.clear, Data.fresh)."""
from __future__ import annotations

import threading
import time

import pytest

from attention_atlas.core.caches import FIXED, GROWS, STORE, Caches, Region


def test_region_is_a_bounded_lru_tagged_by_run():
    r = Region("x", 2)
    calls = []
    assert r.get("a", 1, lambda: calls.append(1) or "one") == "one"
    assert r.get("a", 1, lambda: calls.append(1) or "again") == "one" and calls == [1]
    r.get("a", 2, lambda: "two")
    r.get("a", 1, lambda: "x")            # 1 is now the most recent
    r.get("b", 3, lambda: "three")        # evicts 2, the least recently used
    assert r.peek("a", 2) is None and r.peek("a", 1) == "one" and len(r) == 2
    assert r.get("a", 9, lambda: None) is None and r.peek("a", 9, "none") == "none"  # None is not kept...
    assert r.get("a", 9, lambda: None, cache_none=True) is None and r.peek("a", 9, "none") is None  # ...unless asked
    with pytest.raises(ValueError):
        Region("bad", 1, kind="sometimes")


def test_keep_decides_when_a_cached_value_is_stale():
    r = Region("ttl", 4)
    r.put("a", "k", "old")
    assert r.get("a", "k", lambda: "new", keep=lambda v, age: age < 60) == "old"
    assert r.get("a", "k", lambda: "new", keep=lambda v, age: v != "old") == "new"
    assert r.peek("a", "k") == "new"


def test_invalidate_by_run_predicate_kind_and_region():
    c = Caches([("f", 10, FIXED), ("g", 10, GROWS), ("s", 10, STORE)])
    for name in ("f", "g", "s"):
        for run in ("r1", "r2", None):
            c[name].put(run, "k", name)
    assert c.invalidate(run="r1") == 3
    assert all(c[n].peek("r1", "k") is None and c[n].peek("r2", "k") == n for n in ("f", "g", "s"))
    assert c.invalidate(kinds=(STORE,)) == 2 and len(c["s"]) == 0 and len(c["g"]) == 2
    assert c.invalidate(run=lambda run: run != "r2", kinds=(GROWS,)) == 1  # the untagged entry
    assert c["g"].peek("r2", "k") == "g" and c["g"].peek(None, "k") is None
    assert c.invalidate(regions=("f",)) == 2 and len(c["f"]) == 0
    assert c.invalidate() == 1 and sum(len(r) for r in c) == 0
    with pytest.raises(KeyError, match="no cache region 'nope'"):
        c["nope"]
    with pytest.raises(ValueError, match="declared twice"):
        c.add("f", 1)


def test_single_flight_builds_once_for_concurrent_callers():
    r = Region("m", 4, single_flight=True)
    builds, out = [], []

    def build():
        builds.append(1)
        time.sleep(0.2)
        return "built"
    threads = [threading.Thread(target=lambda: out.append(r.get("a", "k", build))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["built"] * 4 and builds == [1]
    with pytest.raises(RuntimeError):  # a failed build is not cached and does not block the next one
        r.get("a", "boom", lambda: (_ for _ in ()).throw(RuntimeError("no")))
    assert r.get("a", "boom", lambda: "ok") == "ok"


def test_data_keeps_every_cache_in_its_regions(tmp_path):
    """Data.clear() drops every region (the head-pattern scores included, which used to live in a
    module-level dict it missed); Data.fresh() after a store write drops run-level state for every
    run and the growing results of runs not known complete, and keeps what never changes."""
    from analysis.head_scores import run_patterns
    from attention_atlas.dashboard_data import REGIONS, Data
    from precompute.store import Store
    from tests.store_fixture import make_test_store

    make_test_store(tmp_path, "text", n_layers=2, n_heads=2, n_inputs=3, run_id="done",
                    variants=("translated",), methods=("pca",), dims=(2,))
    make_test_store(tmp_path, "text", n_layers=2, n_heads=2, n_inputs=3, run_id="part", seed=3,
                    variants=("translated",), methods=("pca",), dims=(2,), missing_heads=[(1, 1)])
    data = Data(tmp_path)
    assert {r.name for r in data.caches} == {name for name, *_ in REGIONS}
    for run in ("done", "part"):
        assert data.status(run)["status"] == ("complete" if run == "done" else "partial")
        data.coords(run, 0, 0, "translated", "pca", 2)
        data.metrics(run, 0, 0)
        data.matrix(run, "translated", "pca", 0, "grid", 0.0)
        data.caches["roles"].put(run, "roles", "x")
    rp = run_patterns(data, "done")
    assert run_patterns(data, "done") is rp            # cached in the "patterns" region
    assert data.caches["patterns"].peek("done", data.info("done").created) is not None

    st = Store(tmp_path)                               # a writer touches the store
    st.put_analysis("part", "note", {"x": 1})
    st.close()
    data.fresh(force=True)
    c = data.caches
    assert len(c["manifest"]) == len(c["status"]) == 0                              # every run
    assert c["metrics"].peek("done", (0, 0)) is not None and c["metrics"].peek("part", (0, 0)) is None
    assert c["roles"].peek("done", "roles") == "x" and c["roles"].peek("part", "roles") is None
    mkey = ("translated", "pca", 0, "grid", 0.0)
    assert c["matrix"].peek("done", mkey) is not None and c["matrix"].peek("part", mkey) is None
    assert c["coords"].peek("part", (0, 0, "translated", "pca", 2)) is not None    # fixed: kept
    assert c["patterns"].peek("done", data.info("done").created) is not None

    data.clear()
    assert sum(len(r) for r in data.caches) == 0
    assert run_patterns(data, "done") is not rp
