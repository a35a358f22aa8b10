"""Head-patterns panel (map + table of every head's pattern scores) and the Single View's line
naming the head's dominant pattern and its most similar heads."""
from __future__ import annotations

from dash import ClientsideFunction, Input, Output, Patch, State, ctx, html, no_update

from analysis.head_scores import run_patterns
from analysis.patterns import LABELS
from figures.patterns import score_map_figure, selected_shapes
from figures.views import empty_figure
from layouts.patterns import MAX_TABLE_ROWS, describe, scores_table
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields

N_SIMILAR = 5


def patterns_outputs(data, run, layer, head, score):
    """(figure, table, note, head summary) of the patterns panel."""
    m = data.info(run)
    rp = run_patterns(data, run)
    score = score if score in LABELS else "first"
    sel = (layer, head)
    vals = {h: s.get(score) for h, s in rp.scores.items()}
    if not rp.applies.get(score, True):
        from analysis.patterns import na_reason
        title = f"{LABELS[score]}: n/a for this run ({na_reason(score, rp.causal, rp.image)})"
    else:
        title = f"{LABELS[score]} score per head (click a cell to open the head)"
    fig = score_map_figure(list(m.layers), list(m.heads), vals, title, sel)
    note = [rp.sample_note(), f"{len(rp.heads)} heads"]
    if m.is_encdec:
        from analysis.head_scores import CROSS_NA
        note.append("encoder heads scored over the source tokens, decoder heads over the target tokens; " + CROSS_NA)
    if rp.missing:
        note.append(f"{len(rp.missing)} heads not stored yet (partial run)")
    note.append(f"computed in {rp.seconds:.1f}s" if rp.source == "computed" else "read from the store")
    summary = head_summary(rp, layer, head, m)
    return fig, scores_table(rp, score, sel), " · ".join(note), summary


def _cross(run, layer) -> bool:
    from figures.encdec import layer_kind
    return layer_kind(run, layer) == "cross"


def head_summary(rp, layer, head, run=None) -> str:
    dom = rp.dominant(layer, head)
    if dom is None and run is not None and _cross(run, layer):
        from analysis.head_scores import CROSS_NA
        return f"L{layer} H{head} (cross): {CROSS_NA}"
    if dom is None:
        return f"L{layer} H{head}: no scores (queries/keys not stored yet)"
    return f"L{layer} H{head}: dominant pattern {describe(*dom)}"


def single_analysis_children(rp, layer, head, run=None):
    """Single View line: dominant pattern + score, then the most similar heads as buttons."""
    dom = rp.dominant(layer, head)
    if dom is None and run is not None and _cross(run, layer):
        from analysis.head_scores import CROSS_NA
        return "pattern: n/a — " + CROSS_NA
    if dom is None:
        return "pattern scores: this head's queries/keys are not stored yet"
    kids = [html.B("pattern: "), html.Span(describe(*dom), id=ids.SINGLE_PATTERN)]
    sim = rp.similar(layer, head, N_SIMILAR)
    if sim:
        kids.append(html.Span(" · most similar heads: "))
        for (l, h), d in sim:
            kids.append(html.Button(f"L{l} H{h} ({d:.2f})", id={"type": ids.SIMILAR_HEAD_TYPE, "index": f"{l}:{h}"},
                                    n_clicks=0, title=f"open L{l} H{h}: attention distance {d:.3f}",
                                    style={"fontSize": "11px", "padding": "1px 5px", "margin": "0 3px",
                                           "cursor": "pointer"}))
    return kids


def register(app, context):
    data = context.data
    @app.callback(Output(ids.PATTERNS_GRAPH, "figure"), Output(ids.PATTERNS_TABLE, "children"),
                  Output(ids.PATTERNS_NOTE, "children"), Output(ids.PATTERNS_HEAD, "children"),
                  # the shared selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_PATTERNS, "data"), Input(ids.PATTERNS_SCORE, "value"),
                  State(ids.ANALYSIS_TAB, "value"), prevent_initial_call=True)
    def draw_patterns(gate, score, tab):
        run, layer, head, painted = gate_fields(gate, "run", "layer", "head", "painted")
        if tab != "patterns" or not run or layer is None or head is None or not painted:
            return no_update, no_update, no_update, no_update
        try:
            head_only = ctx.triggered_id == ids.GATE_PATTERNS and set(gate.get("changed") or ()) <= {"layer", "head"}
            rp = run_patterns(data, run) if head_only else None
            if head_only and len(rp.heads) <= MAX_TABLE_ROWS:
                # every head's row is on screen already: the table's highlight moves in the browser
                # (below) and the map's outline by a patch — no map or table is re-sent or redrawn
                m = data.info(run)
                patch = Patch()
                patch["layout"]["shapes"] = selected_shapes(list(m.layers), list(m.heads), (layer, head))
                return patch, no_update, no_update, head_summary(rp, layer, head, m)
            return patterns_outputs(data, run, layer, head, score)
        except VIEW_ERRORS as exc:  # one line in the page, never a traceback
            msg = friendly(exc)
            return empty_figure(msg), "", msg, ""

    # assets/clientside_patterns.js
    app.clientside_callback(
        ClientsideFunction(namespace="atlas_patterns", function_name="highlight_row"),
        Output(ids.PATTERNS_HIGHLIGHT, "data"), Input(ids.LAYER_SELECT, "value"), Input(ids.HEAD_SELECT, "value"),
        prevent_initial_call=True)

    @app.callback(Output(ids.LAYER_SELECT, "value", allow_duplicate=True),
                  Output(ids.HEAD_SELECT, "value", allow_duplicate=True),
                  Input(ids.PATTERNS_GRAPH, "clickData"), prevent_initial_call=True)
    def open_from_map(click):
        try:
            l, h = click["points"][0]["customdata"]
            return int(l), int(h)
        except (TypeError, KeyError, IndexError, ValueError):
            return no_update, no_update

    @app.callback(Output(ids.SINGLE_ANALYSIS, "children"),
                  Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"), Input(ids.HEAD_SELECT, "value"),
                  Input(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)
    def single_analysis(run, layer, head, painted=True):
        if not run or layer is None or head is None or not painted:
            return no_update
        try:
            m = data.info(run)
            if not m.has_head(layer, head):
                return no_update
            return single_analysis_children(run_patterns(data, run), layer, head, m)
        except VIEW_ERRORS as exc:
            return f"pattern scores unavailable: {friendly(exc)}"
