"""Serve the dashboard as soon as the background precompute has every head's PCA (scripts/run.sh).

    atlas serve-when-ready READY_FILE PRECOMPUTE_PID LOG [atlas serve options]
    python -m attention_atlas.serve_when_ready READY_FILE PRECOMPUTE_PID LOG [atlas serve options]

The dashboard's imports (dash, plotly, the analysis modules) take seconds; they run here while the
precompute does its forward passes and PCA, so the page is up the moment the data is. This process
becomes the dashboard (run.sh execs it, so it keeps the pid the precompute watches with --stop-with).
"""
from __future__ import annotations

import os
import sys
import time

from precompute.cli import pid_alive


def _last_line(log: str) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4000))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").replace("\r", "\n").split("\n")]
        return next((ln for ln in reversed(lines) if ln), "")[:110]
    except OSError:
        return ""


def pca_stored(cache: str) -> bool:
    """Does the store already hold a run with the PCA of every head (a resumed first run)?"""
    from attention_atlas.dashboard_data import Data, DataError

    data = Data(cache)
    try:
        for run_id in data.run_ids():
            p = data.progress(run_id)
            if p["forward_done"] and p["methods"].get("pca") == p["heads_total"]:
                return True
    except DataError:
        pass
    return False


def wait_ready(ready: str, pid: int, log: str, t0: float, cache: str) -> bool:
    """True once READY exists or the store has every head's PCA already; False if the precompute
    ended without either."""
    if pca_stored(cache):
        return True
    said = 0.0
    while not os.path.exists(ready):
        if not pid_alive(pid):
            return os.path.exists(ready)
        if time.monotonic() - said >= 10:
            said = time.monotonic()
            line = _last_line(log)
            if line:
                print(f"  {time.monotonic() - t0:4.0f} s: {line}", flush=True)
        time.sleep(0.2)
    return True


def main(argv: list[str]) -> None:
    t0 = time.monotonic()
    ready, pid, log, rest = argv[0], int(argv[1]), argv[2], argv[3:]
    import app  # noqa: F401 - the heavy imports happen now, while the precompute runs
    import callbacks  # noqa: F401
    from attention_atlas import dashboard_data  # noqa: F401
    import layouts.main  # noqa: F401
    for name in callbacks.FEATURES:
        __import__(f"callbacks.{name}")
    cache = rest[rest.index("--cache") + 1] if "--cache" in rest else "cache/demo"
    if wait_ready(ready, pid, log, t0, cache):
        print(f"every head has its PCA after {time.monotonic() - t0:.0f} s: serving; t-SNE/UMAP go on in "
              f"the background (progress and ETA: {log})", flush=True)
    else:
        print(f"the precompute stopped before every head was ready; its last line ({log}):\n  {_last_line(log)}",
              file=sys.stderr, flush=True)
        from precompute.store import Store, StoreError
        try:
            if not Store(cache, readonly=True).run_ids():
                raise StoreError("empty")
        except StoreError:
            raise SystemExit(1) from None
        print("serving what is stored", file=sys.stderr, flush=True)
    app.main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
