"""Related-heads panel: the map of all heads and the selected head's most similar heads; clicks
on the map or on a similar head (here or in the Single View) open that head."""
from __future__ import annotations

from dash import ALL, ClientsideFunction, Input, Output, State, ctx, html, no_update

from analysis.head_scores import run_patterns
from figures.patterns import related_figure
from figures.views import empty_figure
from layouts.patterns import describe
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields

N_SIMILAR = 5


def related_outputs(data, run, layer, head, color_by):
    """(figure, note, list) of the related-heads panel."""
    m = data.info(run)
    from figures.encdec import not_applicable
    na = not_applicable(m, "related")
    if na:
        return empty_figure(na), na, ""
    rp = run_patterns(data, run)
    rel = rp.related
    if not rel.get("heads"):
        msg = "no head of this run has stored queries/keys yet"
        return empty_figure(msg), msg, ""
    heads = [tuple(h) for h in rel["heads"]]
    dominant = {h: rp.dominant(*h) for h in heads if rp.dominant(*h)}
    sel = (layer, head)
    sim = rp.similar(layer, head, N_SIMILAR)
    sub = (f"{len(heads)} heads · MDS of {rel.get('metric', 'hellinger')} distances "
           f"({100 * (rel.get('explained') or 0):.0f}% of the spectrum shown)")
    fig = related_figure(heads, rel["xy"], color_by or "layer", dominant, sel, sim, list(m.layers), sub)
    note = (f"signature: attention of {rel.get('n_rows', 0):,} sampled queries per head "
            f"(same queries for every head) · {rp.sample_note()}")
    items = [html.B(f"most similar to L{layer} H{head}:")]
    if sel not in heads:
        items.append(html.Div("this head has no stored queries/keys yet"))
    rows = []
    for (l, h), d in sim:
        dom = dominant.get((l, h))
        rows.append(html.Li([html.Button(f"L{l} H{h}", id={"type": ids.RELATED_HEAD_TYPE, "index": f"{l}:{h}"}, n_clicks=0,
                                          style={"fontSize": "12px", "padding": "1px 6px", "cursor": "pointer"}),
                             f" distance {d:.3f}", html.Span(f" · {describe(*dom)}" if dom else "",
                                                             style={"color": "#666"})],
                            **{"data-head": f"{l}:{h}", "data-dist": f"{d:.6f}"}))
    items.append(html.Ol(rows, id=ids.RELATED_SIMILAR, style={"paddingLeft": "18px", "margin": "4px 0"}))
    return fig, note, items


def register(app, context):
    data = context.data
    @app.callback(Output(ids.RELATED_GRAPH, "figure"), Output(ids.RELATED_NOTE, "children"), Output(ids.RELATED_LIST, "children"),
                  # the shared selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_RELATED, "data"), Input(ids.RELATED_COLOR, "value"),
                  State(ids.ANALYSIS_TAB, "value"), prevent_initial_call=True)
    def draw_related(gate, color_by, tab):
        run, layer, head, painted = gate_fields(gate, "run", "layer", "head", "painted")
        if tab != "related" or not run or layer is None or head is None or not painted:
            return no_update, no_update, no_update
        try:
            return related_outputs(data, run, layer, head, color_by)
        except VIEW_ERRORS as exc:  # one line in the page, never a traceback
            msg = friendly(exc)
            return empty_figure(msg), msg, ""

    # clientside: the "most similar heads" buttons are re-rendered with every head, and each
    # re-render fires this callback (new n_clicks inputs); a server round trip for that would
    # queue behind the head's views and hold their drawing back (assets/clientside_related.js)
    # Two callbacks, because the map is in the page only once this tab was shown (layouts/analysis.py)
    # while the Single View's buttons always are: Dash refuses to call a callback one of whose
    # inputs is missing, so the buttons would do nothing before the tab was opened.
    for inputs in ([Input(ids.RELATED_GRAPH, "clickData")],
                   [Input({"type": "similar-head", "index": ALL}, "n_clicks"),
                    Input({"type": "related-head", "index": ALL}, "n_clicks")]):
        app.clientside_callback(
            ClientsideFunction(namespace="atlas_related", function_name="open_head"),
            Output(ids.LAYER_SELECT, "value", allow_duplicate=True),
            Output(ids.HEAD_SELECT, "value", allow_duplicate=True), *inputs, prevent_initial_call=True)
