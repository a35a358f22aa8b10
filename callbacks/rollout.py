"""Attention rollout tab: rollout of the selected token's input over the run's stored layers."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, State, no_update

from analysis.rollout import layer_means, rollout
from figures.analysis_views import rollout_heatmap, rollout_image_figure
from figures.common import display_token
from figures.views import empty_figure
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields, input_of_token

BUDGET_FLOATS = 16_000_000  # cache every input's per-layer means when they fit (64 MB float32)
SHOW, HIDE = {"width": "520px", "display": "block"}, {"width": "520px", "display": "none"}


def input_layer_means(data, run: str, input_id: int) -> tuple[list[np.ndarray], list[int], list]:
    """Head-averaged attention per stored layer for one input ([A_l], layers, missing heads).
    One pass over the heads computes every input's means when they fit the budget (then every
    other input of the run is instant); otherwise only this input's. Cached per process."""
    m = data.info(run)
    tokens = data.tokens(run)
    layers, heads = list(m.layers), list(m.heads)
    from figures.encdec import grid_layers
    if m.is_encdec:  # the encoder stack over the source tokens (figures.encdec.NOT_FOR_KIND says why)
        layers = grid_layers(m, "encoder")
        index = [(i, tokens.side_rows(i, 0)) for i, _ in tokens.index]
    else:
        index = list(tokens.index)
    lengths = [len(rows) for _, rows in index]
    all_fit = sum(n * n for n in lengths) * len(layers) <= BUDGET_FLOATS
    region = data.caches["rollout"]
    key = "all" if all_fit else input_id
    hit = region.peek(run, key)
    if hit is not None and input_id in hit[0]:
        return hit[0][input_id], hit[1], hit[2]
    groups = {i: rows for i, rows in index} if all_fit else {input_id: dict(index)[input_id]}
    per_input, used, missing = layer_means(lambda l, h: data.qk(run, l, h), layers, heads, groups,
                                           m.scale, m.causal, m)
    if not missing:  # a partial run fills in later: don't keep its incomplete means
        region.put(run, key, (per_input, used, missing))
    return per_input[input_id], used, missing


def rollout_view(data, run, token, through):
    m = data.info(run)
    tokens = data.tokens(run)
    input_id, tok = input_of_token(tokens, token)
    rows = tokens.side_rows(input_id, 0)
    means, used, missing = input_layer_means(data, run, input_id)
    if not used:
        raise ValueError("no layer of this run has stored queries/keys yet")
    through = int(through) if through in used else used[-1]
    upto = used.index(through) + 1
    r = rollout(means[:upto])[-1]
    words = [display_token(t) for t in tokens.text[rows]]
    qpos = int(np.flatnonzero(rows == tok)[0]) if tok in set(rows.tolist()) else 0
    n_model = int(m.n_model_layers or len(used))
    notes = [f"input {input_id} ({len(rows)} tokens) · rollout over layers {', '.join(f'L{l}' for l in used[:upto])}"]
    from figures.encdec import NOT_FOR_KIND, grid_layers
    if m.is_encdec:
        n_model = len(grid_layers(m, "encoder"))
        notes.append(NOT_FOR_KIND[("rollout", "cross")])
    if len(used) < n_model:
        notes.append(f"this run stored {len(used)} of the model's {n_model} layers: the rollout is over the stored "
                     "layers only (the layers in between are skipped)")
    if missing:
        notes.append(f"{len(missing)} heads not stored yet (partial run): their layers average the stored heads only")
    if m.causal:
        notes.append("causal model: each token only draws from earlier tokens")
    title = f"rollout through L{through} · input {input_id}"
    heat = rollout_heatmap(words, r, title, qpos)
    img_fig, img_style = empty_figure(""), HIDE
    if m.is_image:
        rgb = data.image(run, input_id)
        pr = np.asarray(tokens.arrays["patch_row"])[rows].astype(int)
        pc = np.asarray(tokens.arrays["patch_col"])[rows].astype(int)
        patch = pr >= 0
        if rgb is not None and patch.any():
            grid = int(max(pr.max(), pc.max()) + 1)
            cls = int(np.flatnonzero(~patch)[0]) if (~patch).any() else 0
            w = np.zeros((grid, grid))
            w[pr[patch], pc[patch]] = r[cls, patch]
            mass = float(w.sum())
            img_fig = rollout_image_figure(rgb, grid, w, f"CLS row of the rollout (L{through}) · colour cap: 98th pct")
            img_style = SHOW
            notes.append(f"CLS draws {mass:.3f} of its mass from the patches, {1 - mass:.3f} from the prefix tokens")
    return heat, img_fig, img_style, " · ".join(notes), [{"label": f"L{l}", "value": l} for l in used], through, r


def register(app, context):
    data = context.data
    @app.callback(Output(ids.ROLLOUT_GRAPH, "figure"), Output(ids.ROLLOUT_IMAGE_GRAPH, "figure"),
                  Output(ids.ROLLOUT_IMAGE_GRAPH, "style"), Output(ids.ROLLOUT_INFO, "children"),
                  Output(ids.ROLLOUT_LAYER, "options"), Output(ids.ROLLOUT_LAYER, "value"),
                  # the shared selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_ROLLOUT, "data"), Input(ids.ROLLOUT_LAYER, "value"),
                  State(ids.ANALYSIS_TAB, "value"), State(ids.ROLLOUT_LAYER, "options"), prevent_initial_call=True)
    def draw_rollout(gate, through, tab, options):
        run, token = gate_fields(gate, "run", "token")
        if tab != "rollout" or not run:
            return (no_update,) * 6
        try:
            heat, img, style, info, opts, value, _ = rollout_view(data, run, token, through)
            return heat, img, style, info, (opts if opts != options else no_update), value
        except VIEW_ERRORS as exc:
            msg = str(exc) if isinstance(exc, ValueError) else friendly(exc)
            return empty_figure(msg), empty_figure(""), HIDE, msg, no_update, no_update
