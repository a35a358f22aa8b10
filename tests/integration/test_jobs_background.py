"""Background callbacks are plain functions (jobs/background.py): the managers know them by name, and a
job process runs one by importing it — without building the Dash app (issue 15)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_background_callback_is_named_and_importable(tmp_path):
    from app import create_app
    from jobs.background import load_body

    app = create_app(tmp_path / "store")
    refs = app._background_manager.refs  # noqa: SLF001
    names = sorted(ref for ref, _ in refs.values())
    assert {"callbacks.ablation:run_ablation", "callbacks.jobs:run_in_background", "callbacks.owninput:compute_input",
            "callbacks.owninput:transform_input"} <= set(names), names
    for ref, _ in refs.values():
        assert callable(load_body(ref)), ref


def test_a_closure_is_refused_at_registration():
    from jobs.background import NotAJobBody, body_ref

    def inner(settings, x):
        return x

    with pytest.raises(NotAJobBody, match="module-level function"):
        body_ref(inner)


def test_job_process_runs_the_body_by_name_without_the_app(tmp_path):
    """What a fork-server child does, in a fresh interpreter: the result lands in the manager's cache,
    and neither the app module nor any Dash app was loaded."""
    code = f"""
import json, sys
import diskcache
from attention_atlas.settings import load_settings
from jobs.spawned import run_spawned
settings = load_settings(env={{}}, cache={str(tmp_path / 'store')!r}, jobs_dir={str(tmp_path / 'jobs')!r})
cache_dir = {str(tmp_path / 'bg')!r}
run_spawned(settings, "callbacks.jobs:run_in_background", True, cache_dir, "rk", "rk-progress", [None], {{}})
run_spawned(settings, "callbacks.gone:nothing", False, cache_dir, "rk2", "rk2-progress", [None], {{}})
c = diskcache.Cache(cache_dir)
print(json.dumps({{"result": c.get("rk"), "gone": c.get("rk2"), "app": "app" in sys.modules,
                  "layouts": sorted(m for m in sys.modules if m.startswith("layouts") and m not in ("layouts", "layouts.ids"))}}))
"""
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["result"] == {"_dash_no_update": "_dash_no_update"}   # the body ran: no request → PreventUpdate
    assert "unknown to the job process" in out["gone"]["background_callback_error"]["msg"]
    # the component-id constants (layouts.ids) may load; no page layout and no Dash app does
    assert out["app"] is False and out["layouts"] == []
