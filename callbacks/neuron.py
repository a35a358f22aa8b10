"""Neuron view: q_d, k_d and q_d·k_d of the selected query token and a chosen key (stored q/k)."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, ctx, html, no_update

from analysis.neuron import breakdown
from figures.analysis_views import neuron_figure, neuron_row_figure
from figures.attention import relative_bias
from figures.common import display_token
from figures.views import empty_figure
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields, input_of_token


class Missing(Exception):
    """The head's queries/keys are not stored (yet)."""


def _fmt(x: float) -> str:
    return "masked (−∞)" if not np.isfinite(x) else f"{x:.6g}"


def neuron_view(data, run, layer, head, token, key, clicked_key=None, state=None):
    """(figure, row figure, info children, key options, key value, new state) for the controls."""
    m = data.info(run)
    tokens = data.tokens(run)
    input_id, tok = input_of_token(tokens, token)
    qk = data.qk(run, layer, head)
    if qk is None:
        raise Missing(f"L{layer} H{head}: queries/keys not stored yet (partial run)")
    # encoder–decoder heads: queries and keys are the rows of their sides (a cross head: target
    # queries, source keys); every other run: the input's tokens on both sides
    sd = tokens.sides(m, layer)
    q_rows = tokens.side_rows(input_id, int(sd.kind in ("decoder", "cross")))
    rows = tokens.side_rows(input_id, int(sd.kind == "decoder"))
    q, k = qk[0][q_rows - sd.q_off], qk[1][rows - sd.k_off]
    words = [display_token(t) for t in tokens.text[rows]]
    qwords = [display_token(t) for t in tokens.text[q_rows]]
    qpos = int(np.flatnonzero(q_rows == tok)[0]) if tok is not None and tok in set(q_rows.tolist()) else 0
    sem = m.layer_semantics(layer, head)
    scale, causal = sem["scale"], sem["causal"]
    extra = {"window": sem["window"], "softcap": sem["softcap"], "bias": sem.get("bias")}
    same_input = isinstance(state, dict) and state.get("run") == run and state.get("input") == input_id
    if clicked_key is not None and 0 <= clicked_key < len(rows):
        kpos = int(clicked_key)
    elif same_input and key is not None and 0 <= int(key) < len(rows):
        kpos = int(key)
    else:  # new input: start from the key this query attends to most
        kpos = int(np.argmax(breakdown(q, k, qpos, 0, scale, causal, **extra).weights))
    bd = breakdown(q, k, qpos, kpos, scale, causal, **extra)
    qlab, klab = f"{qpos} «{qwords[qpos].strip()}»", f"{kpos} «{words[kpos].strip()}»"
    if sd.kind == "cross":
        qlab, klab = f"target {qlab}", f"source {klab}"
    fig = neuron_figure(bd, qlab, klab, f"L{layer} H{head}{f' ({sd.kind})' if sd.kind != 'self' else ''} · input "
                                        f"{input_id} · query {qlab} → key {klab}")
    row = neuron_row_figure(bd, words, qpos, kpos, causal, qwords[qpos] if sd.kind == "cross" else None)
    n_allowed = int(np.isfinite(bd.scores).sum())
    info = [html.Span(f"query {qlab}, key {klab}: "),
            html.Span("q·k = Σ_d q_d·k_d = "), html.B(_fmt(bd.dot), id=ids.NEURON_DOT),
            html.Span(f" (sum of the {len(bd.q)} products: "), html.Span(_fmt(float(bd.prod.sum())), id=ids.NEURON_SUM),
            html.Span(") · scale "), html.Span(_fmt(bd.scale), id=ids.NEURON_SCALE),
            *([html.Span(" + position bias "),
               html.Span(_fmt(float(relative_bias(extra["bias"], 1, len(k), rows=[qpos])[0][kpos])), id=ids.NEURON_BIAS)]
              if extra["bias"] is not None else []),
            html.Span(" → score "), html.B(_fmt(bd.score), id=ids.NEURON_SCORE),
            html.Span(f" · softmax over {n_allowed} key{'s' if n_allowed != 1 else ''} → weight "),
            html.B(_fmt(bd.weight), id=ids.NEURON_WEIGHT)]
    if bd.masked:
        info.append(html.Span(" (this key comes after the query: the causal mask gives it weight 0)"))
    options = [{"label": f"{j} {w}", "value": j} for j, w in enumerate(words)]
    return fig, row, info, options, kpos, {"run": run, "input": input_id}


def register(app, context):
    data = context.data
    @app.callback(Output(ids.NEURON_GRAPH, "figure"), Output(ids.NEURON_ROW_GRAPH, "figure"),
                  Output(ids.NEURON_INFO, "children"), Output(ids.NEURON_KEY, "options"), Output(ids.NEURON_KEY, "value"),
                  Output(ids.NEURON_STATE, "data"),
                  # the shared selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_NEURON, "data"), Input(ids.NEURON_KEY, "value"), Input(ids.NEURON_ROW_GRAPH, "clickData"),
                  State(ids.ANALYSIS_TAB, "value"), State(ids.NEURON_STATE, "data"), prevent_initial_call=True)
    def draw_neuron(gate, key, click, tab, state):
        run, layer, head, token = gate_fields(gate, "run", "layer", "head", "token")
        if tab != "neuron" or not run or layer is None or head is None:
            return (no_update,) * 6
        clicked = None
        if ctx.triggered_id == ids.NEURON_ROW_GRAPH and click and click.get("points"):
            pt = click["points"][0]
            cd = pt.get("customdata")
            if isinstance(cd, (list, tuple)) and cd:
                clicked = int(cd[0])
            elif isinstance(pt.get("pointNumber"), int):  # bars are in key-position order
                clicked = int(pt["pointNumber"])
        try:
            return neuron_view(data, run, int(layer), int(head), token, key, clicked, state)
        except (Missing,) + VIEW_ERRORS as exc:
            msg = str(exc) if isinstance(exc, Missing) else friendly(exc)
            return empty_figure(msg), empty_figure(""), msg, no_update, no_update, no_update
