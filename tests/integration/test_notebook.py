"""notebooks/attention_atlas.ipynb executed headless (nbclient, an ipykernel of this interpreter):
no error, the app shown inline is served on a local port with its layout, and the figure drawn
by the notebook holds the attention recomputed from the store it built."""
from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "attention_atlas.ipynb"


@pytest.fixture
def kernel_env(monkeypatch):
    """A kernelspec for this interpreter (whatever is on PATH) and a scratch store directory."""
    d = Path(tempfile.mkdtemp(prefix="atlas-nb-"))
    spec = d / "jupyter" / "kernels" / "atlas-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "atlas test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(d / "jupyter"))
    monkeypatch.setenv("ATLAS_NOTEBOOK_CACHE", str(d / "store"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _get(url: str, timeout: float = 10) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
        return r.status, r.read().decode("utf-8", "replace")


def test_notebook_runs_and_serves_the_app(kernel_env):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="atlas-test",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)  # raises CellExecutionError on an error
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        # the inline app: an iframe on a local port that answers with the dashboard
        frames = [o for o in outputs if o.output_type == "display_data" and "<iframe" in o.data.get("text/html", "")]
        assert len(frames) == 1, [o.data.keys() for o in outputs if o.output_type == "display_data"]
        src = re.search(r'src="([^"]+)"', frames[0].data["text/html"]).group(1)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", src), src
        status, page = _get(src)
        assert status == 200 and "<title>Attention Atlas</title>" in page
        status, layout = _get(src + "_dash-layout")
        assert status == 200
        for cid in ('"matrix-graph"', '"single-graph"', '"export-bar"', '"export-view"', '"run-select"'):
            assert cid in layout
        status, health = _get(src + "healthz")
        health = json.loads(health)
        assert status == 200 and health["status"] == "ok" and len(health["runs"]) == 1
        run_id = health["runs"][0]
        assert health["run_status"][run_id] == "complete"
        # the figure the notebook drew: its heatmap is the attention recomputed from the store
        figs = [o for o in outputs if o.output_type == "display_data" and "application/vnd.plotly.v1+json" in o.data]
        assert len(figs) == 1
        fig = figs[0].data["application/vnd.plotly.v1+json"]
        from figures.attention import attention
        from figures.export import decode_array
        from precompute.store import Store
        store = Store(kernel_env / "store", readonly=True)
        m = store.manifest(run_id)
        assert m["model"]["name"] and m["layers"] == [0, 5] and m["projections"] == ["pca"]
        tokens = store.tokens(run_id)
        rows = np.flatnonzero(np.asarray(tokens["input_id"]) == 0)
        rows = rows[np.argsort(np.asarray(tokens["position"])[rows])]
        q, k = store.qk(run_id, 5, 3)
        a = attention(q[rows], k[rows], m["model"]["scale"], m["model"]["causal"])
        z = decode_array(fig["data"][0]["z"])
        z = np.asarray(z.tolist() if z.dtype == object else z, np.float64)
        assert z.shape == (len(rows), len(rows))
        assert np.allclose(z, a, atol=1e-6)
        assert [t.split("\u2009", 1)[1] for t in fig["data"][0]["y"]] == [str(t) for t in tokens["text"][rows]]
        store.close()
        text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
        assert f"run: {run_id}" in text and f"dashboard at {src}" in text and "rows sum to 1: True" in text
