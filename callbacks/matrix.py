"""Matrix View callbacks: a full build on data changes; Patch-only updates for colour, search and
the selected token (the search hits and the selected input are overlay traces drawn in full in
every head, whatever the level of detail)."""
from __future__ import annotations

import numpy as np
from dash import ClientsideFunction, Input, Output, Patch, State, clientside_callback, no_update

from analysis.faithfulness import distortion_definition, sort_figure_options
from figures.colors import AGREEMENT_K, PER_HEAD, color_spec, rgba_rows
from figures.common import typed
from figures.lod import budget_from_cost, describe, measured as lod_measured, points_per_head
from figures.matrix import (FADE, overlay_figure, cell_hover, faithfulness_note, matrix_colors, matrix_figure,
                            overlay_colors, overlay_points, overlay_rgba, ring_points)
from figures.search import search_tokens
from figures.views import empty_figure
from layouts import ids

EMPTY_OVERLAY = {"data": [], "layout": {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                                        "xaxis": {"visible": False}, "yaxis": {"visible": False}}}

from .common import VIEW_ERRORS, friendly, input_of_token, on, resolve_projection, resolve_variant, schemes_for
from .live import progress_value

DATA_INPUTS = [Input(ids.RUN_SELECT, "value"), Input(ids.PROJECTION_SELECT, "value"), Input(ids.TRANSLATE_TOGGLE, "value"),
               Input(ids.SCALED_TOGGLE, "value"), Input(ids.LOD_SELECT, "value"), Input(ids.SORT_SELECT, "value"),
               Input(ids.RHO_THRESHOLD, "value"), Input(ids.KIND_SELECT, "value")]
DATA_STATES = [State(i.component_id, i.component_property) for i in DATA_INPUTS]
AGREEMENT_LEGEND = (distortion_definition(AGREEMENT_K) + " Matrix View: each head's own 2D picture; Single View: the "
                    "picture shown (2D or 3D).")
SEL_SHARE = 4  # the selected input's overlay may use at most budget / SEL_SHARE points


def resolved_per_head(data, run, lod, cost=None, meta=None) -> tuple[int, int]:
    """(points per head, budget) of the level of detail ``lod`` ('auto' or a count; 0 = all). An
    automatic level reuses what the drawn view chose (``meta``) so clicks map onto the same points."""
    m = data.info(run)
    if lod not in ("auto", None):
        return int(lod), 0
    if meta and meta.get("run") == run and meta.get("lod") in ("auto", None) and "pph" in meta:
        return int(meta["pph"]), int(meta.get("budget", 0))
    budget = budget_from_cost(cost)
    n_heads = len(m.layers) * len(m.heads)
    return points_per_head("auto", n_heads, data.tokens(run).n, budget), budget


def matrix_data(data, run, proj, translate, scaled, lod, sort, rho, cost=None, meta=None, kind=None):
    """(RunInfo, MatrixData, notes) of the Matrix View for these controls (``kind``: the grid of
    one head kind of an encoder–decoder run, figures.encdec)."""
    m = data.info(run)
    variant, note_v = resolve_variant(m, on(translate), on(scaled))
    method, note_p = resolve_projection(m, proj)
    pph, budget = resolved_per_head(data, run, lod, cost, meta)
    md = data.matrix(run, variant, method, pph, sort or "grid", float(rho or 0), budget, kind=kind)
    notes = [n for n in (note_v, note_p) if n]
    return m, md, notes


def _coords_of(data, run, m, translate, scaled, proj):
    variant, _ = resolve_variant(m, on(translate), on(scaled))
    method, _ = resolve_projection(m, proj)
    return lambda l, h: data.coords(run, l, h, variant, method, 2)


def _view(data, run, translate, scaled, proj):
    """(variant, method) the Matrix View shows."""
    m = data.info(run)
    return resolve_variant(m, on(translate), on(scaled))[0], resolve_projection(m, proj)[0]


def _spec_for(data, run, scheme, tokens, idx, rows=None, view=None):
    """ColorSpec per head over the points' tokens ``idx`` (queries then keys); ``rows``: the points'
    stored rows (the norms of the embedding-norm scheme); ``view``: (variant, method) of the
    picture, for the picture-agreement scheme (each head's own 2D picture)."""
    idx = np.asarray(idx, np.int64)
    if scheme == "picture_agreement" and view is not None:
        def agreement(l, h):
            pa = data.picture_agreement(run, l, h, view[0], view[1], 2)
            return color_spec(scheme, tokens.arrays, idx, agreement=None if pa is None else pa["values"][idx],
                              agreement_k=AGREEMENT_K)
        return agreement
    if scheme in PER_HEAD:
        def per_head(l, h):
            nr = data.norms(run, l, h)
            r = np.asarray(rows if rows is not None else np.r_[idx, tokens.n + idx], np.int64)
            r = r if len(r) == 2 * len(idx) else np.r_[r, r]
            return color_spec(scheme, tokens.arrays, idx, norms=None if nr is None else nr[r], freq=tokens.freq)
        return per_head
    spec = color_spec(scheme, tokens.arrays, idx, freq=tokens.freq)
    return lambda l, h: spec


def _cap(tokens: np.ndarray, heads: int, limit: int) -> tuple[np.ndarray, int]:
    """At most ``limit`` overlay points (2 per token per head): (tokens drawn, tokens left out)."""
    most = max(1, limit // max(1, 2 * heads))
    if len(tokens) <= most:
        return tokens, 0
    return tokens[:most], len(tokens) - most


def hit_tokens(data, run, query, regex):
    """(search result, matching token indices)."""
    res = search_tokens(data.tokens(run).norm_texts, query, on(regex))
    return res, (np.flatnonzero(res.mask) if res.mask is not None else np.zeros(0, np.int64))


def selection_tokens(data, run, token, md) -> tuple[np.ndarray, int | None]:
    """Tokens of the selected token's input (drawn in full in every head) and the token; the
    input is cut to the selected token alone when it would not fit the overlay budget
    (``selection_note`` says so)."""
    tokens = data.tokens(run)
    if token is None or not (0 <= int(token) < tokens.n):
        return np.zeros(0, np.int64), None
    input_id, tok = input_of_token(tokens, int(token))
    rows = np.sort(tokens.index.rows(input_id))
    limit = max(md.budget or 400_000, 50_000) // SEL_SHARE
    if 2 * len(rows) * max(1, len(md.shown)) > limit:
        rows = np.array([tok])
    return rows, tok


def selection_note(data, run, sel: np.ndarray, tok) -> str:
    """One line when the selected input could not be drawn in full in every head."""
    if tok is None:
        return ""
    tokens = data.tokens(run)
    input_id, _ = input_of_token(tokens, int(tok))
    n = len(tokens.index.rows(input_id))
    if len(sel) < n:
        return (f"the selected token's input ({n} tokens) is too long to draw in every head within the draw "
                f"budget: only the selected token is ringed")
    return ""


def drawn_points(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex, token=None, cost=None,
                 meta=None, kind=None):
    """Everything the Matrix View draws — shared by the interactive figure, the server-drawn picture
    (preview.py) and the CSV export: a dict with the matrix data, notes, scheme, base colours, the
    search-hit and selection overlays with their colours, and the search result."""
    m, md, notes = matrix_data(data, run, proj, translate, scaled, lod, sort, rho, cost, meta, kind)
    if scheme not in schemes_for(m):
        scheme = "qk"
    tokens = data.tokens(run)
    view = _view(data, run, translate, scaled, proj)
    colors, scale = matrix_colors(md, _spec_for(data, run, scheme, tokens, md.pt_tok, md.pt_rows, view))
    coords_of = _coords_of(data, run, m, translate, scaled, proj)
    res, hits = hit_tokens(data, run, query, regex)
    hits, hits_left = _cap(hits, len(md.shown), max(md.budget or 0, 400_000))
    hit_ov = overlay_points(md, coords_of, hits)
    hit_cols = overlay_colors(hit_ov, _spec_for(data, run, scheme, tokens, hit_ov.pt_tok, hit_ov.pt_rows, view))
    sel, tok = selection_tokens(data, run, token, md)
    sel_ov = overlay_points(md, coords_of, sel)
    sel_cols = overlay_colors(sel_ov, _spec_for(data, run, scheme, tokens, sel_ov.pt_tok, sel_ov.pt_rows, view))
    return dict(run=m, md=md, notes=notes, scheme=scheme, colors=colors, scale=scale, search=res,
                hits=hit_ov, hit_colors=hit_cols, hits_left=hits_left, selection=sel_ov, selection_colors=sel_cols,
                token=tok, sel_note=selection_note(data, run, sel, tok))


def _note(d, tokens_n, lod, from_measure: bool = True) -> str:
    md = d["md"]
    parts = [describe(md.per_head if md.sampled else 0, md.n_points // 2, lod, md.budget, from_measure),
             f"{len(md.shown)} {md.kind + ' ' if md.kind else ''}heads drawn"]
    if md.kind == "cross":
        parts.append("cross-attention: queries are target (decoder) tokens, keys source (encoder) tokens")
    if md.missing:
        parts.append(f"{len(md.missing)} heads not computed yet (pending, grey)")
    if md.filtered and not md.score_fig:
        parts.append(f"{len(md.filtered)} heads hidden by the |ρ| filter")
    if md.score_label and not md.score_fig:
        parts.append(f"heads ranked within each layer and cells shaded by {md.score_label} (darker = higher)")
    elif not md.score_label and md.n_cols <= 16:
        parts.append("cell labels: head and ρ (Spearman of Euclidean distance vs attention in the joint space; "
                     "each head's other figures in the Single View)")
    parts += faithfulness_note(md)  # the figure ranking the cells, its filter, cells whose picture misleads
    if md.note:
        parts.append(md.note)
    parts.append(d.get("sel_note", ""))
    return " · ".join([p for p in parts if p] + d["notes"])


def search_count(d, tokens_n) -> str:
    res, md, ov = d["search"], d["md"], d["hits"]
    if res.mask is None or not res.n_tokens:
        return res.message
    heads = len(md.shown)
    msg = (f"{res.message}: {2 * res.n_tokens} points per head (query + key); " if md.interleaved and not md.kind else
           f"{res.message} (source and target tokens); ")
    msg += f"{len(ov.pt_tok) * heads:,} points highlighted in {heads} heads of the matrix"
    if d["hits_left"]:
        msg += (f" — only the first {len(ov.tokens):,} matches are drawn in the matrix ({d['hits_left']:,} left out "
                f"to stay within the draw budget; narrow the search)")
    return msg


def _meta(d, run, proj, translate, scaled, lod, sort, rho, query, regex, token, kind=None):
    md = d["md"]
    return {"offsets": md.offsets.tolist(), "heads": [cell_hover(md, l, h) for l, h in md.shown],
            # point -> (layer, head, token) of a click, in the browser (assets/clientside_state.js)
            "shown": [[int(l), int(h)] for l, h in md.shown], "pt": md.pt_tok.astype(int).tolist(),
            "key": matrix_key(run, proj, translate, scaled, lod, sort, rho, kind), "scheme": d["scheme"],
            **_roles(md, d["hits"], d["selection"], d["token"]),
            "q": [query or "", on(regex)], "n": int(len(md.x)), "run": run, "lod": lod,
            "pph": int(md.per_head if md.sampled else 0), "budget": int(md.budget),
            "hits": [int(t) for t in d["hits"].tokens], "sel": [int(t) for t in d["selection"].tokens],
            "token": token}


def _roles(md, hits, sel, token) -> dict:
    """Roles of the points (0 query, 1 key) for the hover line, only where they do not alternate
    (cross-attention grids): base points of one head, hit/selection/ring blocks of one head."""
    if md.interleaved:
        return {}
    ring = sel.pt_key[sel.pt_tok == token] if token is not None else np.zeros(0, bool)
    return {"kp": md.pt_key.astype(int).tolist(), "hk": hits.pt_key.astype(int).tolist(),
            "sk": sel.pt_key.astype(int).tolist(), "rk": np.asarray(ring).astype(int).tolist()}


def matrix_key(run, proj, translate, scaled, lod, sort, rho, kind=None) -> str:
    """What the Matrix View's points depend on (colour, search and selection are patched separately)."""
    return (f"{run}|{proj}|{on(translate)}|{on(scaled)}|{lod}|{sort or 'grid'}|{round(float(rho or 0), 3)}"
            + (f"|{kind}" if kind not in (None, "auto") else ""))


def overlay_of(d) -> "go.Figure":
    """The overlay graph (search hits, selected input, ring, labels, search veil) of ``drawn_points``."""
    return overlay_figure(d["md"], d["scale"], d["hits"], d["hit_colors"], d["selection"], d["selection_colors"],
                          d["token"], searching=d["search"].mask is not None)


def coverage(data, run, proj):
    """How many heads hold every coordinate of the projection ``proj`` now (``Data.progress``, cached
    until the store changes): recorded with each draw, so a later ``run-progress`` value with the same
    coverage — the page's first poll after a draw or a run switch — redraws nothing."""
    value = progress_value(data, run)
    if not value:
        return None
    try:
        method, _ = resolve_projection(data.info(run), proj)
    except VIEW_ERRORS:
        method = proj
    return (value.get("methods") or {}).get(method)


def matrix_outputs(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex, token=None, cost=None,
                   kind=None):
    """(figure, overlay figure, note, message, meta) of a full Matrix View draw. ``meta`` records
    what was drawn (key, colour scheme, search, level of detail, overlays) so later callbacks patch
    the overlay, not redraw the points."""
    try:
        d = drawn_points(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex, token, cost,
                         kind=kind)
        md = d["md"]
        fig = matrix_figure(md, d["colors"], d["scale"], uirevision=f"{run}|{sort}|{rho}|{lod}")
        meta = _meta(d, run, proj, translate, scaled, lod, sort, rho, query, regex, d["token"], kind)
        meta["cov"] = coverage(data, run, proj)
        return fig, overlay_of(d), _note(d, data.tokens(run).n, lod, lod_measured(cost)), "", meta
    except VIEW_ERRORS as exc:  # shown to the user, never a traceback
        return empty_figure(friendly(exc)), EMPTY_OVERLAY, "", friendly(exc), None


def register(app, context):
    data = context.data
    @app.callback(Output(ids.MATRIX_GRAPH, "figure"), Output(ids.MATRIX_OVERLAY, "figure"),
                  Output(ids.MATRIX_NOTE, "children"), Output(ids.MSG_MATRIX, "children"), Output(ids.MATRIX_META, "data"),
                  *DATA_INPUTS, Input(ids.RUN_PROGRESS, "data"), State(ids.COLOR_SELECT, "value"),
                  State(ids.SEARCH_INPUT, "value"), State(ids.REGEX_TOGGLE, "value"), State(ids.TOKEN_STORE, "data"),
                  State(ids.LOD_COST, "data"), State(ids.MATRIX_META, "data"), prevent_initial_call=True)
    def draw_matrix(run, proj, translate, scaled, lod, sort, rho, kind, progress, scheme, query, regex, token, cost,
                    meta=None):
        if not run:
            return (no_update,) * 5
        from dash import ctx
        growing = ctx.triggered_id == ids.RUN_PROGRESS
        if growing and (not isinstance(progress, dict) or progress.get("run") != run):
            return (no_update,) * 5  # another run grew
        cov = None
        if growing:
            try:
                method, _ = resolve_projection(data.info(run), proj)
            except VIEW_ERRORS:  # the full draw below reports problems
                method = proj
            cov = (progress.get("methods") or {}).get(method)
            if meta and meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho, kind) \
                    and meta.get("cov") == cov:
                return (no_update,) * 5  # no new head in the projection shown
        if not growing and meta and meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho, kind):
            return (no_update,) * 5  # already drawn by the page-load reducer
        return matrix_outputs(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex, token, cost,
                              kind)

    def _current(meta, run, proj, translate, scaled, lod, sort, rho, kind=None):
        return bool(meta) and meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho, kind)

    @app.callback(Output(ids.MATRIX_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.MATRIX_OVERLAY, "figure", allow_duplicate=True),
                  Output(ids.MATRIX_META, "data", allow_duplicate=True), Input(ids.COLOR_SELECT, "value"),
                  *DATA_STATES, State(ids.MATRIX_META, "data"), prevent_initial_call=True)
    def recolor_matrix(scheme, run, proj, translate, scaled, lod, sort, rho, kind, meta):
        if not run or not _current(meta, run, proj, translate, scaled, lod, sort, rho, kind) or meta.get("scheme") == scheme:
            return no_update, no_update, no_update  # no figure yet (the full draw applies the colours) or drawn already
        try:
            m, md, _ = matrix_data(data, run, proj, translate, scaled, lod, sort, rho, meta=meta, kind=kind)
            if scheme not in schemes_for(m):
                return no_update, no_update, no_update
            tokens = data.tokens(run)
            view = _view(data, run, translate, scaled, proj)
            colors, scale = matrix_colors(md, _spec_for(data, run, scheme, tokens, md.pt_tok, md.pt_rows, view))
            patch = Patch()
            patch["data"][0]["marker"]["color"] = typed(rgba_rows(colors, scale))
            opatch = Patch()
            for i, key in ((0, "hits"), (1, "sel")):
                toks = np.asarray(meta.get(key) or [], np.int64)
                ov = overlay_points(md, None, toks)
                opatch["data"][i]["marker"]["color"] = typed(overlay_rgba(
                    overlay_colors(ov, _spec_for(data, run, scheme, tokens, ov.pt_tok, ov.pt_rows, view))
                    if len(toks) else np.zeros(0, np.uint8), scale))
        except VIEW_ERRORS:  # the full redraw reports problems
            return no_update, no_update, no_update
        mpatch = Patch()
        mpatch["scheme"] = scheme
        return patch, opatch, mpatch

    @app.callback(Output(ids.MATRIX_OVERLAY, "figure", allow_duplicate=True), Output(ids.SEARCH_COUNT, "children"),
                  Output(ids.MSG_SEARCH, "children"), Output(ids.MATRIX_META, "data", allow_duplicate=True),
                  Input(ids.SEARCH_INPUT, "value"), Input(ids.REGEX_TOGGLE, "value"), *DATA_STATES,
                  State(ids.COLOR_SELECT, "value"), State(ids.MATRIX_META, "data"), prevent_initial_call=True)
    def search_matrix(query, regex, run, proj, translate, scaled, lod, sort, rho, kind, scheme, meta):
        if not run:
            return no_update, no_update, no_update, no_update
        wanted = [query or "", on(regex)]
        current = _current(meta, run, proj, translate, scaled, lod, sort, rho, kind)
        drawn = current and meta.get("q") == wanted
        if not (query or "").strip() and (drawn or not meta):
            return no_update, "", "", no_update  # nothing to highlight or count (page load without a search)
        try:
            res, _ = hit_tokens(data, run, query, regex)
            if res.error:
                return no_update, "", res.message, no_update
            d = drawn_points(data, run, proj, translate, scaled, lod, sort, rho, meta.get("scheme", scheme) if meta
                             else scheme, query, regex, meta.get("token") if meta else None, meta=meta, kind=kind)
        except VIEW_ERRORS as exc:
            return no_update, "", friendly(exc), no_update
        count = search_count(d, data.tokens(run).n)
        if not current or drawn:  # no figure yet / already shown: count only
            return no_update, count, "", no_update
        patch = Patch()  # the overlay only: the points beneath are not redrawn
        patch["layout"]["plot_bgcolor"] = FADE if res.mask is not None else "rgba(0,0,0,0)"
        patch["data"][0]["x"] = typed(d["hits"].x)
        patch["data"][0]["y"] = typed(d["hits"].y)
        patch["data"][0]["marker"]["color"] = typed(overlay_rgba(d["hit_colors"], d["scale"]))
        mpatch = Patch()
        mpatch["q"] = wanted
        mpatch["hits"] = [int(t) for t in d["hits"].tokens]
        if not d["md"].interleaved:
            mpatch["hk"] = d["hits"].pt_key.astype(int).tolist()
        return patch, count, "", mpatch

    @app.callback(Output(ids.MATRIX_OVERLAY, "figure", allow_duplicate=True),
                  Output(ids.MATRIX_META, "data", allow_duplicate=True), Input(ids.TOKEN_STORE, "data"),
                  *DATA_STATES, State(ids.MATRIX_META, "data"), prevent_initial_call=True)
    def select_in_matrix(token, run, proj, translate, scaled, lod, sort, rho, kind, meta):
        """The selected token's input drawn in full in every head, the token itself ringed."""
        if not run or not _current(meta, run, proj, translate, scaled, lod, sort, rho, kind) or meta.get("token") == token:
            return no_update, no_update
        try:
            m, md, _ = matrix_data(data, run, proj, translate, scaled, lod, sort, rho, meta=meta, kind=kind)
            tokens = data.tokens(run)
            sel, tok = selection_tokens(data, run, token, md)
            ov = overlay_points(md, _coords_of(data, run, m, translate, scaled, proj), sel)
            spec_for = _spec_for(data, run, meta.get("scheme", "qk"), tokens, ov.pt_tok, ov.pt_rows,
                                 _view(data, run, translate, scaled, proj))
            cols = overlay_colors(ov, spec_for)
            cols = overlay_rgba(cols, spec_for(*ov.heads[0]).colorscale) if len(cols) else cols
            rx, ry = ring_points(ov, tok)
        except VIEW_ERRORS:  # the selection ring is an extra; the views report problems
            return no_update, no_update
        patch = Patch()
        patch["data"][1]["x"], patch["data"][1]["y"] = typed(ov.x), typed(ov.y)
        patch["data"][1]["marker"]["color"] = typed(cols)
        patch["data"][2]["x"], patch["data"][2]["y"] = typed(rx), typed(ry)
        mpatch = Patch()
        mpatch["sel"] = [int(t) for t in ov.tokens]
        mpatch["token"] = tok
        mpatch.update(_roles(md, ov, ov, tok) if not md.interleaved else {})
        return patch, mpatch

    @app.callback(Output(ids.COLOR_LEGEND, "children"), Input(ids.COLOR_SELECT, "value"), Input(ids.RUN_SELECT, "value"),
                  Input(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)
    def legend(scheme, run, painted=True):
        if not run or not painted:
            return no_update
        from .common import legend_children
        try:
            m = data.info(run)
            schemes = schemes_for(m)
            if scheme not in schemes:
                scheme = "qk"
            tokens = data.tokens(run)
            idx = np.arange(min(tokens.n, 2000))
            spec = color_spec(scheme if scheme != "embedding_norm" else "qk", tokens.arrays, idx, freq=tokens.freq,
                              agreement_definition=AGREEMENT_LEGEND)
            leg = spec.legend if scheme != "embedding_norm" else {"gradient": "Cividis", "lo": "min ‖v‖ (per head)",
                                                                  "hi": "max ‖v‖"}
            return legend_children(leg, schemes[scheme])
        except VIEW_ERRORS:
            return ""

    @app.callback(Output(ids.SORT_SELECT, "options"), Input(ids.RUN_SELECT, "value"), Input(ids.PROJECTION_SELECT, "value"),
                  State(ids.SORT_SELECT, "value"), Input(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)
    def sort_choices(run, proj=None, current=None, painted=None):
        """Orders that apply to the run (the others stay listed, disabled, so a link's value stays
        valid), with the faithfulness figures the run holds (the picture shown named).
        ``painted`` (ids.MATRIX_PAINTED, downstream of the Matrix View's figure) is an input only so
        that Dash holds this call until the Matrix View has answered: on a run switch the small
        controls' callbacks (this, the filter label, the detail and own-input controls) no longer
        share the 2-core server with the Matrix View's draw (bench/RESULTS.md session 13)."""
        if not run:
            return no_update
        from analysis.head_scores import ablation_scores, available_orders
        from layouts.patterns import sort_options, with_current
        try:
            m = data.info(run)
            method, _ = resolve_projection(m, proj)
            return with_current(sort_options(available_orders(m, ablation_scores(data, run)),
                                             sort_figure_options(m, m.variants[0], method)),
                                current)
        except VIEW_ERRORS:  # keep every option enabled; the matrix note explains a fallback
            return sort_options()

    # Page load draws the Matrix View first and alone: the other views wait for this flag, set
    # once the matrix's points are on screen (or after 8 s, whatever happened). The measured cost of
    # each full draw, for the automatic level of detail, is written to LOD_COST by assets/drawcost.js.
    # (assets/clientside_matrix.js, as the hover text below)
    clientside_callback(
        ClientsideFunction(namespace="atlas_matrix", function_name="painted"),
        Output(ids.MATRIX_PAINTED, "data"), Input(ids.MATRIX_GRAPH, "figure"),
        State(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)

    clientside_callback(
        ClientsideFunction(namespace="atlas_matrix", function_name="hover_text"),
        Output(ids.MATRIX_HOVER, "children"), Input(ids.MATRIX_GRAPH, "hoverData"), State(ids.MATRIX_META, "data"),
        prevent_initial_call=True)
