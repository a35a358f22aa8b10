"""Unit tests of the store: round trips, checksums, status, locks, bad directories."""
import os
import sqlite3
import stat

import numpy as np
import pytest

from precompute.selection import SelectionError, parse_choices, parse_index_list
from precompute.store import CorruptEntry, Store, StoreError, decode, encode_arrays, encode_json


def _manifest(run_id="r1"):
    return {"id": run_id, "layers": [0, 1], "heads": [0, 2], "projections": ["pca"], "dims": [2],
            "variants": ["translated"], "forward_done": True, "model": {}, "corpus": {}}


def test_roundtrip_arrays_and_json(tmp_path):
    s = Store(tmp_path / "s")
    q = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    k = q[::-1].copy()
    s.put_qk("r1", 0, 2, q, k)
    q2, k2 = s.qk("r1", 0, 2)
    assert q2.dtype == np.float32 and np.array_equal(q2, q) and np.array_equal(k2, k)
    s.put_manifest("r1", _manifest())
    assert s.manifest("r1")["heads"] == [0, 2]
    assert s.run_ids() == ["r1"]
    s.put_tokens("r1", {"text": np.array(["a", "##b", "Ġc"]), "position": np.arange(3)})
    assert list(s.tokens("r1")["text"]) == ["a", "##b", "Ġc"]


def test_checksum_detects_flipped_byte():
    blob = bytearray(encode_arrays({"x": np.arange(10.0)}))
    blob[-5] ^= 0xFF
    with pytest.raises(CorruptEntry, match="checksum"):
        decode(bytes(blob), "k")
    with pytest.raises(CorruptEntry, match="truncated"):
        decode(b"AA", "k")
    assert decode(encode_json({"a": 1}), "k") == {"a": 1}


def test_corrupt_file_entry_is_reported_not_returned(tmp_path):
    s = Store(tmp_path / "s")
    big = np.ones((20000, 8), np.float32)  # > diskcache's inline limit: stored as a file
    s.put_qk("r1", 0, 0, big, big)
    files = [os.path.join(d, f) for d, _, fs in os.walk(s.path) for f in fs if f.endswith(".val")]
    assert files, "expected a file-backed entry"
    with open(files[0], "r+b") as f:  # truncate it, as a crash of the disk might
        f.truncate(1000)
    with pytest.raises(CorruptEntry):
        s.qk("r1", 0, 0)


def test_entry_whose_file_is_gone_is_flagged_for_recompute(tmp_path):
    """A listed entry whose value file vanished reads as absent (diskcache's answer): verify flags it,
    so a resumed run deletes and recomputes it instead of failing on it."""
    s = Store(tmp_path / "s")
    big = np.ones((20000, 8), np.float32)
    s.put_qk("r1", 0, 0, big, big)
    s.put_qk("r1", 0, 1, big, big)
    files = [os.path.join(d, f) for d, _, fs in os.walk(s.path) for f in fs if f.endswith(".val")]
    assert len(files) == 2
    os.remove(files[0])
    assert s.has_qk("r1", 0, 0) and s.has_qk("r1", 0, 1)
    bad = s.verify("r1")
    assert len(bad) == 1 and bad[0].endswith("/qk"), bad
    gone = 0 if s.qk("r1", 0, 0) is None else 1
    assert bad == [f"run/r1/head/0/{gone}/qk"]


def test_status_partial_then_complete(tmp_path):
    s = Store(tmp_path / "s")
    m = _manifest()
    s.put_manifest("r1", m)
    assert s.status("r1") == {"status": "partial", "heads_done": 0, "heads_total": 4}
    x = np.zeros((4, 2), np.float32)
    for l, h in [(0, 0), (0, 2), (1, 0), (1, 2)]:
        s.put_qk("r1", l, h, x, x)
        s.put_coords("r1", l, h, "translated", "pca", 2, np.zeros((8, 2)))
        assert s.head_missing("r1", l, h, m) == ["metrics"]
        s.put_metrics("r1", l, h, {"spearman/translated": -0.5})
    assert s.status("r1")["status"] == "complete"


def test_unknown_run_message(tmp_path):
    s = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="unknown run 'nope'.*precompute list"):
        s.manifest("nope")


def test_incompatible_format(tmp_path):
    s = Store(tmp_path / "s")
    s._cache.set("format", encode_json({"version": 999}))
    s.close()
    with pytest.raises(StoreError, match="incompatible version"):
        Store(tmp_path / "s")


def test_readonly_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no Attention Atlas store"):
        Store(tmp_path / "nothing", readonly=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.raises(StoreError, match="not writable"):
        Store(d)


def test_unwritable_dir_as_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StoreError, match="not writable"):
        Store(f / "sub")


def test_lock_taken_over_from_dead_process(tmp_path):
    s = Store(tmp_path / "s")
    assert s.try_lock("r1") is None
    holder = s.try_lock("r1")  # same pid is alive: refused
    assert holder["pid"] == os.getpid()
    s._cache.set("run/r1/lock", {"pid": 2**22 + 12345, "host": holder["host"], "since": 0})
    assert s.try_lock("r1") is None  # dead pid on this host: taken over
    s.unlock("r1")
    assert s.try_lock("r1") is None


def test_selection_parsing():
    assert parse_index_list("0-2,5", 6, "layer") == [0, 1, 2, 5]
    assert parse_index_list(None, 3, "head") == [0, 1, 2]
    with pytest.raises(SelectionError, match="unknown layer 9: this model has 6 layers"):
        parse_index_list("9", 6, "layer")
    with pytest.raises(SelectionError, match="cannot read"):
        parse_index_list("a-b", 6, "layer")
    assert parse_choices("umap,PCA", ("pca", "tsne", "umap"), "projection") == ["pca", "umap"]
    with pytest.raises(SelectionError, match="unknown projection 'mds'"):
        parse_choices("mds", ("pca", "tsne", "umap"), "projection")
