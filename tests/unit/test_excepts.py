"""Broad excepts only at the edges (docs/ARCHITECTURE.md, rule 11).

``except Exception`` / ``except BaseException`` / a bare ``except:`` may appear only in the functions
listed below — the process and request edges (job bodies and runners, the Celery broker calls, the
HTTP and CLI entry points, the benches), optional-feature probes, third-party algorithm and decoder
boundaries, and cleanup handlers that re-raise — and each of them logs (or re-raises). Everywhere
else the specific exceptions are caught (callbacks: ``callbacks.common.VIEW_ERRORS`` /
``MODEL_ERRORS``; anything else reaches the app's ``on_error`` safety net, which logs it and shows
one line). A new broad except fails here until it is made specific or listed with its reason."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (file, function qualname): (how many broad handlers, why it is an edge)
ALLOWED = {
    # process / job edges: one line for the page, the traceback in the log
    ("jobs/background.py", "run_callback.run"): (1, "a job process runs a background callback"),
    ("jobs/runner.py", "run_job"): (2, "a precompute job: unexpected error -> failed job; final progress to the manager"),
    ("jobs/runner.py", "Reporter._push_loop"): (1, "progress to the manager's store (Redis may be down)"),
    ("callbacks/owninput.py", "compute_input"): (1, "background job body"),
    ("callbacks/owninput.py", "transform_input"): (1, "background job body"),
    ("callbacks/ablation.py", "run_ablation"): (1, "background job body"),
    ("jobs/preload.py", "<module>"): (1, "the job fork server's optional preloading"),
    # the broker (Celery / kombu / redis-py raise unrelated types when Redis is down)
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.call_job_fn"): (1, "queue a job"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.terminate_job"): (1, "revoke a job"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.job_running"): (1, "poll"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.get_progress"): (1, "poll"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.result_ready"): (1, "poll"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.get_result"): (1, "poll"),
    ("jobs/manager.py", "make_manager.AtlasCeleryManager.get_updated_props"): (1, "poll"),
    # HTTP and CLI entry points
    ("attention_atlas/serving.py", "_health"): (1, "GET /healthz: any store problem is 'not healthy'"),
    ("callbacks/preview.py", "register.matrix_preview"): (1, "GET of the matrix picture: 204, the view draws"),
    ("precompute/cli.py", "main"): (1, "`atlas precompute`: one line, never a traceback unless --debug"),
    ("bench/dashboard.py", "interactions"): (1, "bench"),
    ("bench/load.py", "user_loop.timed"): (1, "bench: a failed answer is a result"),
    ("bench/precompute.py", "load_qk"): (1, "bench: falls back to synthetic q/k"),
    # optional-feature probes
    ("precompute/executor.py", "worker_init"): (3, "threadpoolctl, numba, warm-up"),
    ("precompute/executor.py", "cache_umap_numba"): (1, "numba's caching switch on umap's functions: an optimisation"),
    ("precompute/models/__init__.py", "_resolve_folder"): (1, "the local Hugging Face cache"),
    ("precompute/demo_images.py", "_skimage_images"): (1, "optional demo images"),
    ("precompute/demo_images.py", "_sklearn_images"): (1, "optional demo images"),
    # third-party algorithms on one head: a failure is a warning and a PCA fallback, never a stopped run
    ("precompute/projections.py", "project"): (2, "t-SNE, UMAP"),
    ("precompute/projections.py", "_attention_layouts"): (3, "attention graph, its UMAP and t-SNE"),
    ("precompute/headwork.py", "compute_head"): (1, "the Spearman figures of one head"),
    # re-raised: cleanup, or a third-party decoder's many types translated to ours
    ("precompute/pipeline.py", "Run.execute"): (1, "removes a store it created, re-raises"),
    ("precompute/models/packaged.py", "cached_conversion"): (1, "removes its temporary folder, re-raises"),
    ("precompute/models/vit_timm.py", "build"): (1, "torch/safetensors errors -> ModelLoadError"),
}
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
# helpers that log what they are given (checked in test_logging_helpers_log below)
LOGGING_HELPERS = {"friendly", "warn", "_unreachable"}


def _broad(t) -> bool:
    if t is None:
        return True
    if isinstance(t, ast.Name):
        return t.id in ("Exception", "BaseException")
    if isinstance(t, ast.Tuple):
        return any(_broad(e) for e in t.elts)
    return False


def _logs_or_reraises(handler: ast.ExceptHandler) -> bool:
    for node in ast.walk(handler):
        if isinstance(node, ast.Raise):
            return True
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and (f.attr in LOG_METHODS or f.attr in LOGGING_HELPERS):
                return True
            if isinstance(f, ast.Name) and f.id in LOGGING_HELPERS:
                return True
    return False


def broad_excepts() -> list[tuple[str, str, int, bool]]:
    """(file, qualname, line, logs) of every broad handler outside tests/."""
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    found = []
    for name in out.stdout.split():
        if name.startswith("tests/"):
            continue
        path = ROOT / name
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))

        def walk(node, stack):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    walk(child, stack + [child.name])
                    continue
                if isinstance(child, ast.ExceptHandler) and _broad(child.type):
                    found.append((name, ".".join(stack) or "<module>", child.lineno, _logs_or_reraises(child)))
                walk(child, stack)
        walk(tree, [])
    return found


def test_broad_excepts_only_at_the_edges_and_each_logs():
    found = broad_excepts()
    outside = [f"{f}:{line} in {q}" for f, q, line, _ in found if (f, q) not in ALLOWED]
    assert not outside, ("broad except outside the edges: catch the specific exceptions (or let the app's "
                         "on_error net have it), or list it in ALLOWED with its reason:\n" + "\n".join(outside))
    silent = [f"{f}:{line} in {q}" for f, q, line, logs in found if not logs]
    assert not silent, "broad except that neither logs nor re-raises:\n" + "\n".join(silent)
    counts = {}
    for f, q, _, _ in found:
        counts[(f, q)] = counts.get((f, q), 0) + 1
    wrong = {k: (counts.get(k, 0), n) for k, (n, _) in ALLOWED.items() if counts.get(k, 0) != n}
    assert not wrong, f"(found, allowed) broad excepts differ — update ALLOWED: {wrong}"
    assert len(found) == sum(n for n, _ in ALLOWED.values())


def test_the_scan_sees_broad_excepts(tmp_path):
    code = ("def f():\n    try:\n        pass\n    except Exception:\n        pass\n"
            "def g():\n    try:\n        pass\n    except (ValueError, BaseException) as e:\n        log.warning('x')\n"
            "def h():\n    try:\n        pass\n    except ValueError:\n        pass\n")
    handlers = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.ExceptHandler)]
    assert [_broad(h.type) for h in handlers] == [True, True, False]
    assert [_logs_or_reraises(h) for h in handlers[:2]] == [False, True]


def test_logging_helpers_log(caplog):
    """friendly() (callbacks/common.py) logs every error but a DataError's one-liner."""
    from callbacks.common import friendly
    with caplog.at_level("ERROR", logger="atlas"):
        assert "RuntimeError: boom" in friendly(RuntimeError("boom"))
    assert any("callback failed" in r.message for r in caplog.records)
    src = (ROOT / "precompute" / "projections.py").read_text(encoding="utf-8")
    assert "def warn(msg: str) -> None:\n        res.warnings.append(msg)\n        log.info(msg)" in src
    src = (ROOT / "jobs" / "manager.py").read_text(encoding="utf-8")
    assert "def _unreachable(" in src and "log.warning(" in src.split("def _unreachable(")[1].split("def ")[0]
