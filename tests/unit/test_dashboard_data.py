"""The data layer (attention_atlas.dashboard_data) on a synthetic store that vanishes or is
corrupted: a one-line DataError, which is what every callback shows."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.store_fixture import make_test_store

TEXT = "text-run"


@pytest.fixture(scope="module")
def store_dir():
    d = Path(tempfile.mkdtemp(prefix="atlas-data-"))
    make_test_store(d, "text", n_layers=3, n_heads=4, n_inputs=12, run_id=TEXT)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_store_disappearing_gives_message(store_dir):
    """The data layer turns a vanished store into a one-line message (what every callback shows)."""
    from attention_atlas.dashboard_data import Data, DataError
    copy = Path(tempfile.mkdtemp(prefix="atlas-gone-")) / "store"
    shutil.copytree(store_dir, copy)
    data = Data(copy)
    assert TEXT in data.run_ids()
    shutil.rmtree(copy)
    with pytest.raises(DataError, match="is not reachable"):
        data.run_ids()
    with pytest.raises(DataError, match="is not reachable"):
        data.coords(TEXT, 0, 0, "translated", "pca", 2)


def test_corrupt_entry_gives_message(store_dir):
    from attention_atlas.dashboard_data import Data, DataError
    from precompute.store import Store, head_prefix
    copy = Path(tempfile.mkdtemp(prefix="atlas-corrupt-")) / "store"
    shutil.copytree(store_dir, copy)
    s = Store(copy)
    s._cache.set(f"{head_prefix(TEXT, 0, 0)}/qk", b"AAS1garbage-garbage-garbage")
    s.close()
    with pytest.raises(DataError, match="truncated|checksum|not ours"):
        Data(copy).qk(TEXT, 0, 0)
    shutil.rmtree(copy.parent, ignore_errors=True)
