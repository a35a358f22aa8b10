"""Single View: one head with every point, thinned token labels, attention lines, norm sizes."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, Patch, State, no_update

from figures.attention import attention, top_keys
from analysis.faithfulness import distortion_definition
from figures.colors import AGREEMENT_K, color_spec
from precompute.faithfulness import method_label
from figures.search import search_tokens
from figures.common import html_escape
from figures.views import empty_figure, norm_sizes, single_figure, single_labels
from layouts import ids

from .common import VIEW_ERRORS, friendly, input_of_token, on, resolve_projection, resolve_variant, schemes_for


def label_priority(tokens, search_mask=None) -> np.ndarray:
    """Which labels win when they would overlap: search hits, then rarer tokens (queries and keys)."""
    p = -np.log1p(np.asarray(tokens.freq, np.float64))
    if search_mask is not None:
        p = p + 100.0 * np.asarray(search_mask, np.float64)
    return np.r_[p, p]


def figure_line(rows: list[dict]):
    """The head's faithfulness figures, one compact line; each figure's definition on hover; a
    picture whose distance–attention correlation is positive is marked as misleading."""
    from dash import html
    kids = [html.B("figures: ")]
    for i, r in enumerate(rows):
        text = f"{r['label']} {r['text']}" + (" ⚠ nearer in this picture means LESS attention" if r["misleading"] else "")
        kids.append(html.Span(text, title=r["definition"], className="figure" + (" misleading" if r["misleading"] else ""),
                              **{"data-figure": r["id"]}))
        if i < len(rows) - 1:
            kids.append(" · ")
    return html.Div(kids, className="figure-line")


def agreement_line(agreement: dict, method: str, dim: int) -> str:
    """One line summing up the picture-agreement colouring of the head shown (its definition on hover
    in the legend)."""
    v = np.asarray(agreement["values"], np.float64)
    ok = v[~np.isnan(v)]
    k = agreement["k"]
    if not len(ok):
        return f"colour: {agreement['label']} of the {method_label(method)} {dim}D picture — undefined for every query"
    return (f"colour: {agreement['label']} of the {method_label(method)} {dim}D picture — mean {ok.mean():.2f} over "
            f"{len(ok):,} queries; {int((ok == 0).sum()):,} see none of their top-{k} keys among their {k} nearest"
            + (f"; {agreement['undefined']:,} undefined (≤ {k} attendable keys)" if agreement["undefined"] else ""))


def _head(data, run, layer, head, proj, dim, translate, scaled):
    """(RunInfo, variant, method, dim, coords, notes) of the Single View's head, or None if absent."""
    m = data.info(run)
    if not m.has_head(layer, head):
        return None
    variant, note_v = resolve_variant(m, on(translate), on(scaled))
    method, note_p = resolve_projection(m, proj)
    dim = int(dim or 2)
    if dim not in m.dims:
        dim = m.dims[0]
    coords = data.coords(run, layer, head, variant, method, dim)
    return m, variant, method, dim, coords, [n for n in (note_v, note_p) if n]


def _single_encdec(data, run, m, layer, head, variant, method, dim, coords, notes, sd, tokens, scheme, query,
                   regex, token, lines, topk, minw, normsize):
    """The Single View of an encoder–decoder head: its queries and keys are the token rows of its
    sides (figures.encdec.HeadSides) — a cross head's joint embedding is the decoder's (target)
    queries with the encoder's (source) keys; lines go from a selected target query to the source
    keys it attends to most, weights recomputed exactly from the stored q/k."""
    from figures.encdec import KIND_LABEL
    from figures.matrix import pick_roles
    from figures.colors import ColorSpec
    from analysis.faithfulness import head_figure_table
    from .detail import head_attention
    if coords is None or len(coords) != sd.n_points:
        msg = (f"L{layer} H{head}: the {variant}/{method}/{dim}D projection is not computed yet"
               + (" (this run is still partial)" if data.status(run)["status"] == "partial" else ""))
        return empty_figure(msg, 560), msg, ""
    scheme = scheme if scheme in schemes_for(m) else "qk"
    norms = data.norms(run, layer, head)
    pt_tok, pt_key = sd.point_tokens()
    full = color_spec(scheme, tokens.arrays, pt_tok, norms=None if norms is None else np.r_[norms, norms],
                      freq=tokens.freq)
    spec = ColorSpec(pick_roles(full.values, pt_key), full.colorscale, full.legend, full.cmin, full.cmax)
    res = search_tokens(tokens.norm_texts, query, on(regex))
    sizes = norm_sizes(norms) if (on(normsize) and norms is not None) else None
    words = [tokens.display[t] for t in pt_tok]
    positions = np.asarray(tokens.arrays["position"])[pt_tok]
    sel = line_list = None
    if token is not None and sd.has_query([int(token)])[0]:
        sel = int(token)
        if on(lines):
            input_id, _ = input_of_token(tokens, sel)
            q_rows, k_rows, a = head_attention(data, run, layer, head, input_id, tokens)
            if a is not None:
                i = int(np.flatnonzero(q_rows == sel)[0])
                line_list = [(int(k_rows[j]) - sd.k_off, w) for j, w in
                             top_keys(a[i], int(topk or 2), float(minw if minw is not None else 0.05))]
    met = data.metrics(run, layer, head) or {}
    figures = head_figure_table(met, m, variant, method, dim)
    title = (f"L{layer} H{head} ({sd.kind}) · {method.upper() if method == 'pca' else method} {dim}D · {variant}")
    prio = label_priority(tokens, res.mask)[:tokens.n][pt_tok]
    fig = single_figure(coords, words, positions, norms, spec, title, dim, sizes,
                        None if res.mask is None else np.asarray(res.mask)[pt_tok],
                        None if sel is None else sel - sd.q_off, line_list,
                        uirevision=f"{run}|{layer}|{head}|{method}|{dim}|{variant}", label_priority=prio, n_q=sd.n_q)
    info = [f"{KIND_LABEL[sd.kind]}: {sd.n_q:,} {'target' if sd.q_off else 'source'} queries + {sd.n_k:,} "
            f"{'target' if sd.k_off else 'source'} keys (all points)"]
    if sel is not None:
        info.append(f"selected: {tokens.contexts[sel]}")
        if line_list is not None:
            info.append("lines to its top keys: " + (", ".join(f"{words[sd.n_q + k]} {w:.2f}" for k, w in line_list)
                                                    or "no key above the minimum weight"))
    elif token is not None and 0 <= int(token) < tokens.n:
        info.append(f"the selected token ({tokens.contexts[int(token)]}) is not a query of this head: click one of "
                    f"its queries ({'target' if sd.q_off else 'source'} tokens) for attention lines")
    else:
        info.append("click a point to select a token")
    if dim == 2:
        info.append("labels thinned to avoid overlap (zoom in for more)")
    if res.mask is not None:
        info.append(res.message)
    return fig, [" · ".join(info + notes), figure_line(figures)], ""


def register(app, context):
    data = context.data
    @app.callback(Output(ids.SINGLE_GRAPH, "figure"), Output(ids.SINGLE_INFO, "children"), Output(ids.MSG_SINGLE, "children"),
                  Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"), Input(ids.HEAD_SELECT, "value"),
                  Input(ids.PROJECTION_SELECT, "value"), Input(ids.DIM_SELECT, "value"), Input(ids.TRANSLATE_TOGGLE, "value"),
                  Input(ids.SCALED_TOGGLE, "value"), Input(ids.COLOR_SELECT, "value"), Input(ids.SEARCH_INPUT, "value"),
                  Input(ids.REGEX_TOGGLE, "value"), Input(ids.TOKEN_STORE, "data"), Input(ids.LINES_TOGGLE, "value"),
                  Input(ids.TOPK_INPUT, "value"), Input(ids.MINW_INPUT, "value"), Input(ids.NORMSIZE_TOGGLE, "value"),
                  Input(ids.MATRIX_PAINTED, "data"), Input(ids.RUN_PROGRESS, "data"), State(ids.SINGLE_INFO, "children"),
                  prevent_initial_call=True)
    def draw_single(run, layer, head, proj, dim, translate, scaled, scheme, query, regex, token, lines, topk, minw,
                    normsize, painted=True, progress=None, shown_info=None):
        if not run or layer is None or head is None or not painted:  # page load: after the Matrix View
            return no_update, no_update, no_update
        from dash import ctx
        # a progress tick alone (ctx.triggered_id names only the first of several inputs that changed
        # together). When the page's first tick lands while this callback is in flight, Dash drops the
        # answer in flight and calls again with the tick as the only trigger: so "drawn already" is read
        # from what the page shows (the info line), never assumed
        tick_only = set(ctx.triggered_prop_ids) == {f"{ids.RUN_PROGRESS}.data"}
        if tick_only and (not isinstance(progress, dict) or progress.get("run") != run):
            return no_update, no_update, no_update  # another run grew
        if tick_only and shown_info and "not computed yet" not in str(shown_info):
            return no_update, no_update, no_update  # this head was drawn already: nothing new to show
        try:
            got = _head(data, run, layer, head, proj, dim, translate, scaled)
            if got is None:
                return no_update, no_update, no_update
            m, variant, method, dim, coords, notes = got
            tokens = data.tokens(run)
            sd = tokens.sides(m, layer)
            if sd.kind != "self":
                return _single_encdec(data, run, m, layer, head, variant, method, dim, coords, notes, sd, tokens,
                                      scheme, query, regex, token, lines, topk, minw, normsize)
            if coords is None or len(coords) != 2 * tokens.n:
                msg = (f"L{layer} H{head}: the {variant}/{method}/{dim}D projection is not computed yet"
                       + (" (this run is still partial)" if data.status(run)["status"] == "partial" else ""))
                return empty_figure(msg, 560), msg, ""
            schemes = schemes_for(m)
            scheme = scheme if scheme in schemes else "qk"
            norms = data.norms(run, layer, head)
            allidx = np.arange(tokens.n)
            agreement = None
            if scheme == "picture_agreement":  # each query coloured by how well this picture shows what it attends
                agreement = data.picture_agreement(run, layer, head, variant, method, dim)
            spec = color_spec(scheme, tokens.arrays, allidx, norms=norms, freq=tokens.freq,
                              agreement=None if agreement is None else agreement["values"],
                              agreement_k=AGREEMENT_K, agreement_definition=distortion_definition(AGREEMENT_K))
            res = search_tokens(tokens.norm_texts, query, on(regex))
            sizes = norm_sizes(norms) if (on(normsize) and norms is not None) else None
            sel = None
            line_list = None
            if token is not None and 0 <= int(token) < tokens.n:
                sel = int(token)
                if on(lines):
                    qk = data.qk(run, layer, head)
                    if qk is not None:
                        input_id, _ = input_of_token(tokens, sel)
                        rows = tokens.index.rows(input_id)
                        a = attention(qk[0][rows], qk[1][rows], **m.layer_semantics(layer, head))
                        i = int(np.flatnonzero(rows == sel)[0])
                        line_list = [(int(rows[j]), w) for j, w in
                                     top_keys(a[i], int(topk or 2), float(minw if minw is not None else 0.05))]
            met = data.metrics(run, layer, head) or {}
            from analysis.faithfulness import head_figure_table
            figures = head_figure_table(met, m, variant, method, dim)
            title = f"L{layer} H{head} · {method.upper() if method == 'pca' else method} {dim}D · {variant}"
            fig = single_figure(coords, tokens.display, np.asarray(tokens.arrays["position"]), norms, spec, title, dim,
                                sizes, None if res.mask is None else res.mask, sel, line_list,
                                uirevision=f"{run}|{layer}|{head}|{method}|{dim}|{variant}",
                                label_priority=label_priority(tokens, res.mask))
            info = [f"{tokens.n:,} tokens → {2 * tokens.n:,} points (all)"]
            if sel is not None:
                info.append(f"selected: {tokens.contexts[sel]}")
                if line_list is not None:
                    info.append("lines to its top keys: " + (", ".join(f"{tokens.display[j]} {w:.2f}" for j, w in line_list)
                                                            or "no key above the minimum weight"))
            else:
                info.append("click a point to select a token")
            if dim == 2:
                info.append("labels thinned to avoid overlap (zoom in for more)")
            if res.mask is not None:
                info.append(res.message)
            if agreement is not None:
                info.append(agreement_line(agreement, method, dim))
            return fig, [" · ".join(info + notes), figure_line(figures)], ""
        except VIEW_ERRORS as exc:
            return empty_figure(friendly(exc), 560), "", friendly(exc)

    @app.callback(Output(ids.SINGLE_GRAPH, "figure", allow_duplicate=True), Input(ids.SINGLE_GRAPH, "relayoutData"),
                  State(ids.RUN_SELECT, "value"), State(ids.LAYER_SELECT, "value"), State(ids.HEAD_SELECT, "value"),
                  State(ids.PROJECTION_SELECT, "value"), State(ids.DIM_SELECT, "value"),
                  State(ids.TRANSLATE_TOGGLE, "value"), State(ids.SCALED_TOGGLE, "value"), State(ids.SEARCH_INPUT, "value"),
                  State(ids.REGEX_TOGGLE, "value"), prevent_initial_call=True)
    def relabel_on_zoom(relayout, run, layer, head, proj, dim, translate, scaled, query, regex):
        """Zooming re-thins the labels for the visible range (more labels appear as space opens)."""
        if not relayout or not run or not any(k.startswith(("xaxis.range", "xaxis.autorange")) for k in relayout):
            return no_update
        try:
            got = _head(data, run, layer, head, proj, dim, translate, scaled)
            if got is None or got[3] != 2 or got[4] is None:
                return no_update
            coords = got[4]
            tokens = data.tokens(run)
            if relayout.get("xaxis.autorange"):
                xr = yr = None
            else:
                xr = (float(relayout["xaxis.range[0]"]), float(relayout["xaxis.range[1]"]))
                yr = (float(relayout.get("yaxis.range[0]", np.nanmin(coords[:, 1]))),
                      float(relayout.get("yaxis.range[1]", np.nanmax(coords[:, 1]))))
            res = search_tokens(tokens.norm_texts, query, on(regex))
            sd = tokens.sides(got[0], layer)
            if sd.kind != "self":
                pt_tok, _ = sd.point_tokens()
                words = [tokens.display[t] for t in pt_tok]
                prio = label_priority(tokens, res.mask)[:tokens.n][pt_tok]
                lx, ly, lt = single_labels(coords, words, prio, xr, yr)
            else:
                lx, ly, lt = single_labels(coords, tokens.display, label_priority(tokens, res.mask), xr, yr)
        except VIEW_ERRORS:  # the labels are an extra; the view itself is unchanged
            return no_update
        patch = Patch()
        patch["data"][2]["x"], patch["data"][2]["y"] = lx.tolist(), ly.tolist()
        patch["data"][2]["text"] = [html_escape(str(t)) for t in lt]  # as single_figure: '<…>' is not markup
        return patch
