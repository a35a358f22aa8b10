"""Callbacks of the "Runs & precompute" tab.

- the form's choices (built-in models/corpora, folders under the allowed roots, limits);
- upload: size-checked in the browser first (no oversize body is sent), then checked again,
  stored under a random name and validated by the corpus loader on the server (jobs/paths.py);
- Start: parameters checked (allowed roots, limits) and a job queued in the shared registry;
- the job itself runs as a Dash background callback (DiskcacheManager or CeleryManager, see
  jobs/manager.py) with a progress bar and a Cancel button (jobs/runner.py does the work);
- a 2-second tick shows every user's jobs from the registry and, when a job has changed state,
  refreshes the Run dropdown (``run-select``) so a finished run appears without a restart.
"""
from __future__ import annotations

import hashlib
import json
import time

from dash import ALL, ClientsideFunction, Input, Output, State, clientside_callback, ctx, no_update
from dash.exceptions import PreventUpdate

from attention_atlas.dashboard_data import DataError
from layouts import ids


def _can_cancel(context, user):
    return lambda e: context.auth is None or e.get("user") == user


def _stored_runs(data) -> list[str]:
    try:
        return data.run_ids()
    except DataError:
        return []


def _run_summaries(data, runs, entries=()):
    """Stored runs for the list; an uploaded corpus is named as the user named it (the store only
    knows the server's random file name)."""
    corpus_label = {}
    for e in reversed(list(entries)):  # oldest first: the newest job's label wins
        if e.get("run_id") and e.get("labels", {}).get("corpus", "").startswith("upload "):
            corpus_label[e["run_id"]] = e["labels"]["corpus"]
    out = []
    for r in runs:
        try:
            m = data.info(r)
            st = data.status(r)
        except DataError:
            out.append({"id": r, "status": "unreadable"})
            continue
        status = "complete" if st["status"] == "complete" else f"partial {st['heads_done']}/{st['heads_total']}"
        out.append({"id": r, "model": m.model_name, "corpus": corpus_label.get(r) or m.corpus_name, "status": status})
    return out


def run_in_background(settings, set_progress, request):
    """The background job (a plain function: job processes import it by name, jobs/background.py)."""
    from jobs.runner import run_job

    if not request or not request.get("job"):
        raise PreventUpdate
    return run_job(str(request["job"]), settings, set_progress)


def register(app, context):
    data = context.data
    from jobs.paths import PathRefused, human_size, list_corpora, list_models, save_upload, source_label
    from jobs.registry import ACTIVE, Registry
    from jobs.runner import JobInvalid, validate_params
    from layouts.jobs import jobs_table, runs_table

    settings = context.settings

    def registry() -> Registry:
        return Registry(settings.jobs_path)

    # ------------------------------------------------------------------ form choices and limits
    @app.callback(Output(ids.JOBS_MODEL, "options"), Output(ids.JOBS_CORPUS, "options"), Output(ids.JOBS_LIMITS, "children"),
                  Output(ids.JOBS_CONFIG, "data"), Output(ids.JOBS_MAX_TOKENS, "placeholder"),
                  Input(ids.ANALYSIS_TAB, "value"), State(ids.JOBS_CORPUS, "options"))
    def form_choices(tab, corpus_options):
        limits = (f"limits on this server: at most {settings.job_max_tokens} tokens per run, uploads up to "
                  f"{human_size(settings.upload_max_bytes)}; model folders under "
                  f"{', '.join(settings.model_roots) or '(none configured)'}; corpus paths under "
                  f"{', '.join(settings.corpus_roots) or '(none configured)'}; runs are written to {settings.cache}"
                  + ("; jobs run on the Celery workers" if settings.redis_url else "; jobs run on this server"))
        config = {"upload_max_bytes": settings.upload_max_bytes, "job_max_tokens": settings.job_max_tokens}
        if tab != "precompute":
            return no_update, no_update, limits, config, f"≤ {settings.job_max_tokens}"
        uploads = [o for o in corpus_options or [] if isinstance(o, dict) and str(o.get("value", "")).startswith("upload:")]
        return (list_models(settings), list_corpora(settings) + uploads, limits, config,
                f"≤ {settings.job_max_tokens}")

    # ------------------------------------------------------------------ upload
    # size-checked in the browser first (assets/clientside_jobs.js)
    clientside_callback(ClientsideFunction(namespace="atlas_jobs", function_name="check_upload"),
                        Output(ids.JOBS_UPLOAD_RAW, "data"), Output(ids.JOBS_UPLOAD_MSG, "children"),
                        Input(ids.JOBS_UPLOAD, "contents"), State(ids.JOBS_UPLOAD, "filename"), State(ids.JOBS_CONFIG, "data"),
                        prevent_initial_call=True)

    @app.callback(Output(ids.JOBS_UPLOAD_MSG, "children", allow_duplicate=True),
                  Output(ids.JOBS_CORPUS, "options", allow_duplicate=True),
                  Output(ids.JOBS_CORPUS, "value", allow_duplicate=True),
                  Output(ids.JOBS_CORPUS_PATH, "value", allow_duplicate=True),
                  Input(ids.JOBS_UPLOAD_RAW, "data"), State(ids.JOBS_TEXT_COLUMN, "value"), State(ids.JOBS_CORPUS, "options"),
                  prevent_initial_call=True)
    def store_upload(raw, column, options):
        if not raw or not isinstance(raw, dict):
            raise PreventUpdate
        try:
            info = save_upload(raw.get("contents"), raw.get("filename"), settings, text_column=column or None,
                               user=context.user() if context.auth is not None else None)
        except PathRefused as exc:
            return str(exc), no_update, no_update, no_update
        warn = f" ({info['warnings'][0]})" if info["warnings"] else ""
        opt = {"label": f"uploaded: {info['name']} — {info['n_inputs']} inputs", "value": info["token"]}
        opts = [o for o in options or [] if isinstance(o, dict) and o.get("value") != info["token"]] + [opt]
        return (f"uploaded {info['name']}: {info['n_inputs']} inputs, {info['bytes']} bytes, stored on the server "
                f"under a new random name{warn}", opts, info["token"], "")

    # ------------------------------------------------------------------ start
    @app.callback(Output(ids.JOBS_REQUEST, "data"), Output(ids.JOBS_MSG, "children"),
                  Input(ids.JOBS_START, "n_clicks"),
                  State(ids.JOBS_MODEL, "value"), State(ids.JOBS_MODEL_PATH, "value"),
                  State(ids.JOBS_CORPUS, "value"), State(ids.JOBS_CORPUS_PATH, "value"),
                  State(ids.JOBS_TEXT_COLUMN, "value"), State(ids.JOBS_PROJECTIONS, "value"), State(ids.JOBS_DIMS, "value"),
                  State(ids.JOBS_VARIANTS, "value"), State(ids.JOBS_LAYERS, "value"), State(ids.JOBS_HEADS, "value"),
                  State(ids.JOBS_MAX_TOKENS, "value"), State(ids.JOBS_TARGET_COLUMN, "value"), prevent_initial_call=True)
    def start(n, model, model_path, corpus, corpus_path, column, projections, dims, variants, layers, heads,
              max_tokens, target=None):
        if not n:
            raise PreventUpdate
        model_spec = str(model_path or "").strip() or model
        corpus_spec = str(corpus_path or "").strip() or corpus
        params = {"model": model_spec, "corpus": corpus_spec, "text_column": column, "projections": projections,
                  "dims": dims, "variants": variants, "layers": layers, "heads": heads, "max_tokens": max_tokens,
                  "target_column": target}
        try:
            checked = validate_params(params, settings)
        except (PathRefused, JobInvalid) as exc:
            return no_update, str(exc)
        labels = {"model": source_label(model_spec, checked["model"]),
                  "corpus": source_label(corpus_spec, checked["corpus"])}
        user = context.user()
        reg = registry()
        try:
            if context.auth is not None:   # per-user limit (signed-in users only)
                from jobs.registry import ACTIVE

                mine = [e for e in reg.entries() if e.get("user") == user and e.get("state") in ACTIVE]
                if len(mine) >= settings.max_jobs_per_user:
                    return no_update, (f"you already have {len(mine)} job(s) queued or running (limit "
                                       f"{settings.max_jobs_per_user} per user): wait for one to finish or cancel one")
            job_id = reg.create(user, params, labels)
        finally:
            reg.close()
        return {"job": job_id, "n": n}, f"job {job_id} queued: {labels['model']} on {labels['corpus']}"

    # ------------------------------------------------------------------ the background job
    app.callback(Output(ids.JOBS_RESULT, "data"), Input(ids.JOBS_REQUEST, "data"),
                 background=True, interval=1000, prevent_initial_call=True,
                 progress=[Output(ids.JOBS_BAR, "value"), Output(ids.JOBS_BAR_LABEL, "children")],
                 running=[(Output(ids.JOBS_START, "disabled"), True, False),
                          (Output(ids.JOBS_CANCEL, "disabled"), False, True)],
                 cancel=[Input(ids.JOBS_CANCEL, "n_clicks")])(run_in_background)

    # ------------------------------------------------------------------ everyone's jobs, run list
    # The tick writes only to this tab's own components (and two stores when there is news): an
    # output of a callback in flight is marked "loading" by Dash, and the Run dropdown must not
    # flicker every 2 s, so run-select and the progress bar are set by callbacks of their own.
    # The tick and every store it writes are always in the page (layouts/jobs.watcher), the tab's own
    # components only once the tab was shown: the tick writes the tab's tables into jobs-shown (only
    # the parts that changed, all of them when the tab has just been mounted) and the tab copies them
    # in the browser.
    @app.callback(Output(ids.JOBS_SHOWN, "data"), Output(ids.JOBS_GEN, "data"),
                  Output(ids.JOBS_PUSH_RUNS, "data"), Output(ids.JOBS_PUSH_BAR, "data"),
                  # not jobs-result: Dash holds back a callback while one of its inputs is the output of a
                  # callback still running, and the background job is one (the registry tells the end too)
                  Input(ids.JOBS_TICK, "n_intervals"), Input(ids.JOBS_REQUEST, "data"), Input(ids.ANALYSIS_MOUNTED, "data"),
                  State(ids.JOBS_GEN, "data"), State(ids.RUN_SELECT, "options"), State(ids.RUN_SELECT, "value"),
                  prevent_initial_call=False)
    def tick(_n, request, mounted, seen, run_options, run_value):
        from callbacks.state import _run_label

        if ctx.triggered_id == ids.ANALYSIS_MOUNTED and "precompute" not in (mounted or []):
            raise PreventUpdate  # another tab was mounted: nothing for this one

        reg = registry()
        try:
            reg.reap()
            gen = reg.generation()
            entries = reg.entries()
        finally:
            reg.close()
        # the first tick of a page is the one that finds no earlier tick's record: under load the
        # page's initial call can take longer than the interval, and Dash then drops its (older)
        # answer in favour of the next tick's, so "triggered by nothing" alone is not enough
        initial = ctx.triggered_id is None or not isinstance(seen, dict)
        # the Runs tab has just been mounted: it gets everything once (its components start empty)
        full = initial or ctx.triggered_id == ids.ANALYSIS_MOUNTED
        seen = seen if isinstance(seen, dict) else {}
        active = any(e["state"] in ACTIVE for e in entries)
        now = time.time()
        changed_at = now if seen.get("gen") != gen else float(seen.get("changed_at") or 0)
        # after a change, keep refreshing a little while: run labels and status are cached for 5 s
        refresh_runs = full or now - changed_at < 12 or (active and (_n or 0) % 5 == 0)
        runs = _stored_runs(data) if refresh_runs else None

        user = context.user()
        table = jobs_table(entries, _can_cancel(context, user), set(runs if runs is not None else seen.get("runs", [])))
        sig = hashlib.sha1(json.dumps([[e["id"], e["state"], round(100 * float(e.get("progress") or 0)),
                                        e.get("message"), e.get("stage"), e.get("run_id"), e.get("cancel_requested"),
                                        int(e.get("finished") or 0)] for e in entries[:30]]
                                      + [runs if runs is not None else seen.get("runs")]).encode()).hexdigest()
        mine = ""
        push_bar = no_update
        job_id = (request or {}).get("job") if isinstance(request, dict) else None
        ended = seen.get("ended")
        if job_id:
            e = next((x for x in entries if x["id"] == job_id), None)
            if e is not None:
                text = e.get("message") if e["state"] not in ACTIVE else e.get("stage")
                mine = f"your job {job_id}: {e['state']}" + (f" — {text}" if text else "")
                if e["state"] not in ACTIVE and ended != job_id:  # the bar's last word is the job's end
                    push_bar = {"value": "100" if e["state"] == "done" else str(round(100 * float(e.get("progress") or 0))),
                                "label": e["state"] + (f" · {e.get('stage')}" if e["state"] != "done" and e.get("stage")
                                                       else "")}
                    ended = job_id

        # did the page load on a store without runs? then the first finished run is shown when it
        # appears; otherwise run-select belongs to the page (the URL's run, filled by state.py)
        empty_at_load = (not runs) if initial else bool(seen.get("empty_at_load"))
        push_runs = out_runs = no_update
        runs_sig = seen.get("runs_sig")
        if runs is not None:
            summaries = _run_summaries(data, runs, entries)
            # the table only when it changed: each re-render mounts its ~20 components again, and every
            # mounted component costs the page a store update (bench/storeupdates.py)
            runs_sig = hashlib.sha1(json.dumps(summaries, sort_keys=True, default=str).encode()).hexdigest()
            if full or runs_sig != seen.get("runs_sig"):
                out_runs = runs_table(summaries)
            if not initial:  # the page's own first load fills run-select (callbacks/state.py)
                push = {}
                opts = [{"label": _run_label(data, r), "value": r} for r in runs]
                if opts != (run_options or []):
                    push["options"] = opts
                # the store had no run when the page loaded: show the first finished one (but never
                # replace the run the URL asked for before the page has filled run-select)
                if run_value not in runs and (run_value is not None or empty_at_load):
                    complete = [r["id"] for r in summaries if r.get("status") == "complete"]  # finished one
                    if complete:
                        push["value"] = complete[0]
                push_runs = push or no_update
        new_seen = {"gen": gen, "sig": sig, "runs_sig": runs_sig, "runs": runs if runs is not None else seen.get("runs", []),
                    "changed_at": changed_at, "ended": ended, "mine": mine, "empty_at_load": empty_at_load}
        shown = {}
        if seen.get("sig") != sig or full:
            shown["table"] = table
        if seen.get("mine") != mine or full:
            shown["status"] = mine
        if out_runs is not no_update:
            shown["runs"] = out_runs
        return shown or no_update, new_seen, push_runs, push_bar

    clientside_callback(ClientsideFunction(namespace="atlas_jobs", function_name="show_tables"),
                        Output(ids.JOBS_TABLE, "children"), Output(ids.JOBS_STATUS, "children"),
                        Output(ids.JOBS_RUNS, "children"), Input(ids.JOBS_SHOWN, "data"))

    @app.callback(Output(ids.RUN_SELECT, "options", allow_duplicate=True),
                  Output(ids.RUN_SELECT, "value", allow_duplicate=True),
                  Input(ids.JOBS_PUSH_RUNS, "data"), prevent_initial_call=True)
    def push_runs_to_dropdown(push):
        if not isinstance(push, dict) or not push:
            raise PreventUpdate
        return push.get("options", no_update), push.get("value", no_update)

    @app.callback(Output(ids.JOBS_BAR, "value", allow_duplicate=True),
                  Output(ids.JOBS_BAR_LABEL, "children", allow_duplicate=True),
                  Input(ids.JOBS_PUSH_BAR, "data"), prevent_initial_call=True)
    def push_end_to_bar(push):
        if not isinstance(push, dict):
            raise PreventUpdate
        return push.get("value", no_update), push.get("label", no_update)

    # ------------------------------------------------------------------ cancel from the list
    @app.callback(Output(ids.JOBS_MSG, "children", allow_duplicate=True),
                  Input({"type": ids.JOBS_ROW_CANCEL_TYPE, "job": ALL}, "n_clicks"), prevent_initial_call=True)
    def cancel_row(_clicks):
        trig = ctx.triggered_id
        if not trig or not any((t.get("value") or 0) for t in ctx.triggered):
            raise PreventUpdate
        job_id = trig["job"]
        reg = registry()
        try:
            e = reg.get(job_id)
            if e is None:
                return f"job {job_id} is not in the list any more"
            user = context.user()
            if not _can_cancel(context, user)(e):
                return f"job {job_id} was started by {e['user']}: only they can cancel it"
            if e["state"] not in ACTIVE:
                return f"job {job_id} has already ended ({e['state']})"
            if e["state"] == "queued":
                reg.request_cancel(job_id)
                reg.finish(job_id, "cancelled", "cancelled before it started")
                return f"job {job_id} cancelled before it started"
            handle = e.get("handle")
        finally:
            reg.close()
        if handle:
            app._background_manager.terminate_job(handle)  # noqa: SLF001 - flag first, then stop what is left
        return f"job {job_id}: cancel requested"
