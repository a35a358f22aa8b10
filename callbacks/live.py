"""A run that grows while it is shown: the page learns when heads or projections were added.

The first command serves the demo once every head has its PCA and computes t-SNE/UMAP in the
background (scripts/run.sh); a job can extend a run too. Every ``POLL_MS`` the page asks
``Data.progress`` (one key scan of the run, redone only after the store changed) and, only when
the run's coverage changed, writes a small value to the ``run-progress`` store:

    {"run": id, "version": str, "status": "partial"|"complete", "heads_done": n, "heads_total": n,
     "methods": {"pca": heads with all their PCA coordinates, "tsne": …, "umap": …}}

Views that show a run redraw when ``run-progress`` changes (its ``version`` differs). The run-info
line says how far the run is. Nothing is written while nothing changes, so an idle page costs one
small request per poll and no redraw.
"""
from __future__ import annotations

from dash import Input, Output, State, no_update
from dash.exceptions import PreventUpdate

from attention_atlas.dashboard_data import DataError
from layouts import ids

POLL_MS = 3000
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def progress_value(data, run_id) -> dict | None:
    """The value ``run-progress`` holds for a run (None: no run, or it cannot be read)."""
    if not run_id:
        return None
    try:
        p = data.progress(run_id)
    except DataError:
        return None
    return {k: p[k] for k in ("run", "version", "status", "heads_done", "heads_total", "methods", "forward_done",
                              "writing")}


def update(data, run_id, previous) -> dict | None:
    """New ``run-progress`` value, or None when the page already has it (nothing to redraw)."""
    value = progress_value(data, run_id)
    if value is None:
        return None if previous is None else {"run": run_id, "version": None}
    if isinstance(previous, dict) and previous.get("run") == value["run"] and previous.get("version") == value["version"]:
        return None
    return value


def progress_text(value: dict) -> str:
    """The run's state for the run-info line: complete, or how far it is per method and whether a
    process is computing the rest now."""
    if not value or not value.get("version"):
        return ""
    total = value.get("heads_total") or 0
    if value.get("status") == "complete":
        return "complete"
    if not value.get("forward_done"):
        return "PARTIAL run: forward passes " + ("running, no head to show yet" if value.get("writing")
                                                 else "not finished; re-run the same command")
    per = ", ".join(f"{METHOD_NAMES.get(m, m)} {n}/{total}" for m, n in (value.get("methods") or {}).items())
    return (f"PARTIAL run: {value.get('heads_done', 0)}/{total} heads done ({per}) — "
            + ("being computed now, the views fill in as heads land" if value.get("writing")
               else "showing what exists; re-run the same command to complete it"))


def run_info_text(data, run_id, value: dict) -> str:
    """The run-info line (same first part as callbacks/state.py writes) with the run's progress."""
    m = data.info(run_id)
    return (f"{m.model_name} · {len(m.layers)} layers × {len(m.heads)} heads"
            f"{' · causal' if m.causal else ''} · {'?' if m.n_tokens is None else m.n_tokens} "
            + (f"source + {m.n_target_tokens} target ({m.targets or 'given'}) "
               if m.n_target_tokens else "") + "tokens in "
            f"{'?' if m.n_inputs is None else m.n_inputs} {'images' if m.is_image else 'inputs'} · " + progress_text(value))


def register(app, context):
    data = context.data
    @app.callback(Output(ids.RUN_PROGRESS, "data"), Output(ids.RUN_INFO, "children", allow_duplicate=True),
                  # the run is read, not listened to: the Matrix View (an input of which is run-progress)
                  # would otherwise wait for this poll on every run switch; the next tick (POLL_MS) tells
                  # the new run's progress, and a draw records its coverage so that tick redraws nothing
                  Input(ids.RUN_PROGRESS_TICK, "n_intervals"), State(ids.RUN_SELECT, "value"),
                  State(ids.RUN_PROGRESS, "data"), prevent_initial_call=True)
    def poll(_n, run_id, previous):
        value = update(data, run_id, previous)
        if value is None:
            raise PreventUpdate
        if not value.get("version"):
            return value, no_update
        same_run = isinstance(previous, dict) and previous.get("run") == run_id
        if not same_run and not value.get("writing"):
            return value, no_update  # a run opened that nothing is writing: state.py's line says it all
        try:
            return value, run_info_text(data, run_id, value)
        except DataError:
            return value, no_update
