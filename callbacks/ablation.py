"""Callbacks of the ablation panel: Matrix View selection → heads, the plan line, the background
ablation job (progress bar, cancel) and the ranked table / per-input chart of the results."""
from __future__ import annotations

import logging
from pathlib import Path

from dash import ClientsideFunction, Input, Output, State, ctx, html, no_update

from analysis import ablation as abl
from attention_atlas.dashboard_data import DataError
from figures.ablation import effects_figure, fmt, ranked_rows
from figures.runinfo import RunInfo
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields, on, resolve_projection, resolve_variant

log = logging.getLogger("atlas")
HIDDEN, SHOWN = {"display": "none"}, {"display": "block"}


def _objective_guess(run: RunInfo) -> str:
    if run.modality == "image":
        return abl.OBJECTIVES["cls-cosine-distance"]
    if run.causal:
        return abl.OBJECTIVES["next-token-loss"]
    return ("masked-LM loss if the checkpoint has a masked-LM head, else 1 − cosine of the sentence embedding "
            "(mean-pooled last hidden states) with and without the ablation")


def _stored_entry(data, run: str):
    try:
        got = data._read(lambda s: s.analysis(run, abl.NAME))
    except DataError as exc:  # unreadable (Data turns every store problem into a DataError): nothing stored
        log.warning("reading the stored ablation results of run %s failed: %s", run, exc)
        return None
    return got if isinstance(got, dict) else None


def _table(rows: list[dict], entry: dict):
    th = {"textAlign": "left", "padding": "3px 10px", "borderBottom": "2px solid #ccc", "fontSize": "12px"}
    td = {"padding": "2px 10px", "borderBottom": "1px solid #eee", "fontSize": "12px", "fontFamily": "monospace"}
    head = html.Tr([html.Th(t, style=th) for t in
                    ("#", "head(s)", f"Δ {entry.get('objective', '')}", "95 % CI", "per input: min … median … max",
                     "inputs")])
    body = []
    for r in rows:
        style = dict(td, background="#fff6d5") if r["new"] else td
        key = ",".join(f"{l}:{h}" for l, h in r["heads"])
        body.append(html.Tr(className="ablation-row", **{"data-heads": key}, children=[
            html.Td(str(r["rank"]), style=style), html.Td(r["label"], style=dict(style, fontFamily="inherit")),
            html.Td(fmt(r["delta"]), className="abl-delta", style=style),
            html.Td(f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]", className="abl-ci", style=style),
            html.Td(r["spread"], style=style), html.Td(str(len(r["per_input"])), style=style)]))
    return html.Table([html.Thead(head), html.Tbody(body)], style={"borderCollapse": "collapse", "margin": "6px 0"})


def run_ablation(settings, set_progress, n_clicks, run, layer, head, scope, mode, cap, selection):
    """The ablation job (a plain function: job processes import it by name, jobs/background.py)."""
    if not n_clicks or not run:
        return no_update, no_update
    try:
        if cap is not None and (not isinstance(cap, (int, float)) or cap < 1):
            return no_update, "the number of inputs must be at least 1"
        from precompute.store import Store
        with Store(Path(settings.cache).expanduser(), readonly=True) as store:
            m = RunInfo.from_manifest(store.manifest(run))
            from figures.encdec import not_applicable
            if not_applicable(m, "ablation"):
                return no_update, not_applicable(m, "ablation")
            singles, sets, what = abl.heads_for(scope, m, layer, head, selection)

            last = []

            def progress(done, total, text):
                last[:] = [str(done), str(max(total, 1)), text]
                set_progress(tuple(last))

            fragment = abl.ablation_job(m, store, singles, sets, mode, int(cap) if cap else None, progress)
            stored = store.analysis(run, abl.NAME)
        merged, note = abl.save(Path(settings.cache).expanduser(), run, mode, fragment)
        if merged is None:
            merged = abl.merge(stored if isinstance(stored, dict) else None, mode, fragment)
        new = [[[l, h]] for l, h in singles] + [s for s in ([[list(x) for x in hs] for hs in sets])]
        msg = (f"ablated {what} on {fragment['sample']} — {note}"
               + (f"; inputs {fragment['skipped']} skipped (one token: nothing to predict)"
                  if fragment.get("skipped") else ""))
        # the final progress ("done (n/n, t s)") rides on the result: the background poll may stop
        # before it delivers the last set_progress, leaving the bar at e.g. 7/9 beside "ablated …"
        return {"run": run, "mode": mode, "entry": merged[mode], "new": new, "note": note,
                "progress": last}, msg
    except ValueError as exc:
        return no_update, str(exc)
    except Exception as exc:  # noqa: BLE001 - the job's edge: one line for the page, the trace in the log
        log.exception("ablation job failed")
        name = exc.__class__.__name__
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        return no_update, f"the ablation could not run ({name}: {text})"


def register(app, context):
    data = context.data
    @app.callback(Output(ids.ABLATION_SELECTION, "data"),
                  Input(ids.MATRIX_GRAPH, "selectedData"),
                  State(ids.RUN_SELECT, "value"), State(ids.TRANSLATE_TOGGLE, "value"), State(ids.SCALED_TOGGLE, "value"),
                  State(ids.PROJECTION_SELECT, "value"), State(ids.LOD_SELECT, "value"), State(ids.SORT_SELECT, "value"),
                  State(ids.RHO_THRESHOLD, "value"), State(ids.MATRIX_META, "data"), prevent_initial_call=True)
    def select_heads(selected, run, translate, scaled, proj, lod, sort, rho, meta=None):
        points = (selected or {}).get("points") or []
        if not run or not points:
            return []
        try:
            from .matrix import matrix_data
            _, md, _ = matrix_data(data, run, proj, translate, scaled, lod, sort, rho, meta=meta)
            heads = set()
            for pt in points:
                if int(pt.get("curveNumber") or 0) != 0:
                    continue  # overlays repeat points of the same heads
                hit = md.point_to_head(int(pt.get("pointNumber", pt.get("pointIndex", -1))))
                if hit:
                    heads.add((int(hit[0]), int(hit[1])))
            return sorted([l, h] for l, h in heads)
        except VIEW_ERRORS as exc:
            log.warning("matrix selection could not be mapped to heads: %s", exc)
            return []

    @app.callback(Output(ids.ABLATION_PLAN, "children"),
                  # the selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_ABLATION, "data"),
                  Input(ids.ABLATION_SCOPE, "value"), Input(ids.ABLATION_MODE, "value"), Input(ids.ABLATION_CAP, "value"),
                  Input(ids.ABLATION_SELECTION, "data"), prevent_initial_call=True)
    def plan(gate, scope, mode, cap, selection):
        run, layer, head = gate_fields(gate, "run", "layer", "head")
        if not run:
            return ""
        try:
            m = data.info(run)
            from figures.encdec import not_applicable
            if not_applicable(m, "ablation"):
                return not_applicable(m, "ablation")
            singles, sets, what = abl.heads_for(scope, m, layer, head, selection)
            n_inputs = int(m.n_inputs or 0)
            cap_ok = cap is None or (isinstance(cap, (int, float)) and cap >= 1)
            if not cap_ok:
                return "the number of inputs must be at least 1"
            sample = abl.sample_inputs(n_inputs, int(cap) if cap else None)
            runs = len(singles) + len(sets)
            how = ("zero the head's output" if mode == "zero" else
                   "replace the head's attention by its mean pattern over these inputs (by position, rows "
                   "renormalised)")
            return (f"will ablate {what} — {how} — on {abl.describe_sample(sample, n_inputs)} "
                    f"({runs} ablated pass{'es' if runs != 1 else ''} over them); measure: {_objective_guess(m)}")
        except ValueError as exc:
            return str(exc)
        except VIEW_ERRORS as exc:
            return friendly(exc)

    app.callback(Output(ids.ABLATION_RESULT, "data"), Output(ids.ABLATION_MSG, "children"),
                 Input(ids.ABLATION_RUN, "n_clicks"),
                 State(ids.RUN_SELECT, "value"), State(ids.LAYER_SELECT, "value"), State(ids.HEAD_SELECT, "value"),
                 State(ids.ABLATION_SCOPE, "value"), State(ids.ABLATION_MODE, "value"), State(ids.ABLATION_CAP, "value"),
                 State(ids.ABLATION_SELECTION, "data"),
                 background=True,
                 progress=[Output(ids.ABLATION_PROGRESS, "value"), Output(ids.ABLATION_PROGRESS, "max"),
                           Output(ids.ABLATION_PROGRESS_TEXT, "children")],
                 running=[(Output(ids.ABLATION_RUN, "disabled"), True, False),
                          (Output(ids.ABLATION_CANCEL, "disabled"), False, True)],
                 cancel=[Input(ids.ABLATION_CANCEL, "n_clicks")],
                 prevent_initial_call=True)(run_ablation)

    # assets/clientside_ablation.js
    app.clientside_callback(
        ClientsideFunction(namespace="atlas_ablation", function_name="progress_from_result"),
        Output(ids.ABLATION_PROGRESS, "value", allow_duplicate=True),
        Output(ids.ABLATION_PROGRESS, "max", allow_duplicate=True),
        Output(ids.ABLATION_PROGRESS_TEXT, "children", allow_duplicate=True),
        Input(ids.ABLATION_RESULT, "data"), prevent_initial_call=True)

    @app.callback(Output(ids.ABLATION_TABLE, "children"), Output(ids.ABLATION_GRAPH, "figure"),
                  Output(ids.ABLATION_GRAPH, "style"), Output(ids.ABLATION_SUMMARY, "children"),
                  # the run through the tab's gate: no round trip while the tab is hidden
                  Input(ids.ABLATION_RESULT, "data"), Input(ids.GATE_ABLATION, "data"), Input(ids.ABLATION_MODE, "value"),
                  State(ids.ANALYSIS_TAB, "value"), prevent_initial_call=True)
    def show(result, gate, mode, atab):
        run, = gate_fields(gate, "run")
        if ctx.triggered_id == ids.GATE_ABLATION and not {"run", "tab"} & set((gate or {}).get("changed") or ()):
            return no_update, no_update, no_update, no_update  # only the head moved: the table is the run's
        if atab != "ablation" or not run:
            return no_update, no_update, no_update, no_update
        try:
            if result and result.get("run") == run and result.get("mode") == mode:
                entry, new = result["entry"], result.get("new") or []
            else:
                entry, new = (_stored_entry(data, run) or {}).get(mode), []
            if not entry:
                return (html.Div(f"no {mode}-mode ablation results for this run yet: choose heads and press Run",
                                 className="note"), {}, HIDDEN, "")
            rows = ranked_rows(entry, new)
            kind = "images" if data.info(run).is_image else "inputs"
            summary = (f"{mode} ablation · objective: {entry.get('objective_description', entry.get('objective'))}"
                       f" · {entry.get('n_inputs')} {kind}"
                       + (f" · unablated loss {entry['baseline']:.4f} nats" if entry.get("objective", "").endswith("loss")
                          else "") + f" · 95 % percentile bootstrap CI over {kind} "
                       f"({entry.get('resamples', abl.RESAMPLES)} resamples, seed {entry.get('seed', abl.SEED)})"
                       + (f" — with only {entry.get('n_inputs')} {kind} the interval is rough"
                          if (entry.get("n_inputs") or 0) < 5 else "")
                       + (" · highlighted: the last job" if new else ""))
            fig = effects_figure(rows, entry.get("objective", ""), entry.get("inputs") or [],
                                 f"per-{kind[:-1]} effect of the top {min(len(rows), 15)} ablations "
                                 "(dots: one per input; diamond: mean with 95 % CI)")
            return _table(rows, entry), fig, SHOWN, summary
        except VIEW_ERRORS as exc:
            return html.Div(friendly(exc), className="note"), {}, HIDDEN, ""
