"""Matrix View callbacks: full build on data changes; Patch-only updates for colour and search."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, Patch, State, clientside_callback, no_update

from dashboard_data import DataError
from figures.colors import PER_HEAD, color_spec
from figures.common import typed
from figures.matrix import BASE_SIZE, matrix_colors, matrix_emphasis, matrix_figure
from figures.search import search_tokens
from figures.views import empty_figure

from .common import friendly, legend_children, on, resolve_projection, resolve_variant, schemes_for

DATA_INPUTS = [Input("run-select", "value"), Input("projection-select", "value"), Input("translate-toggle", "value"),
               Input("scaled-toggle", "value"), Input("lod-select", "value"), Input("sort-select", "value"),
               Input("rho-threshold", "value")]
DATA_STATES = [State(i.component_id, i.component_property) for i in DATA_INPUTS]


def _matrix(data, run, proj, translate, scaled, lod, sort, rho):
    m = data.manifest(run)
    variant, note_v = resolve_variant(m, on(translate), on(scaled))
    method, note_p = resolve_projection(m, proj)
    md = data.matrix(run, variant, method, lod, sort or "grid", float(rho or 0))
    notes = [n for n in (note_v, note_p) if n]
    return m, md, notes


def _colors(data, run, md, scheme):
    tokens = data.tokens(run)
    arrays = tokens.arrays
    if scheme in PER_HEAD:
        def per_head(l, h):
            nr = data.norms(run, l, h)
            sel = np.r_[md.idx, tokens.n + md.idx]
            return color_spec(scheme, arrays, md.idx, norms=None if nr is None else nr[sel], freq=tokens.freq)
        return matrix_colors(md, per_head)
    spec = color_spec(scheme, arrays, md.idx, freq=tokens.freq)
    return matrix_colors(md, lambda l, h: spec)


def _note(md, tokens_n, lod, variant_notes):
    shown = len(md.shown)
    parts = []
    per = md.per_head
    if lod and per < 2 * tokens_n:
        parts.append(f"sampled: {per:,} of {2 * tokens_n:,} points per head (same seeded token sample in every head; "
                     f"Single View shows all points)")
    else:
        parts.append(f"all {2 * tokens_n:,} points per head")
    parts.append(f"{shown} heads drawn")
    if md.missing:
        parts.append(f"{len(md.missing)} heads not computed yet (pending)")
    if md.filtered:
        parts.append(f"{len(md.filtered)} heads hidden by the |ρ| filter")
    if md.score_label:
        parts.append(f"heads ranked within each layer and cells shaded by {md.score_label} (darker = higher)")
    if md.note:
        parts.append(md.note)
    return " · ".join(parts + variant_notes)


def matrix_key(run, proj, translate, scaled, lod, sort, rho) -> str:
    """What the Matrix View's points depend on (colour and search are patched separately)."""
    return f"{run}|{proj}|{on(translate)}|{on(scaled)}|{lod}|{sort or 'grid'}|{round(float(rho or 0), 3)}"


def drawn_points(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex):
    """What the Matrix View draws: (matrix data, notes, scheme used, colour codes, colour scale,
    opacity, size) — shared by the interactive figure and the server-drawn picture (preview.py)."""
    m, md, notes = _matrix(data, run, proj, translate, scaled, lod, sort, rho)
    if scheme not in schemes_for(m):
        scheme = "qk"
    colors, scale = _colors(data, run, md, scheme)
    res = search_tokens(data.tokens(run).norm_texts, query, on(regex))
    opacity, size = matrix_emphasis(md, res.mask)
    return md, notes, scheme, colors, scale, opacity, size


def matrix_outputs(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex):
    """(figure, note, message, meta) of a full Matrix View draw. ``meta`` records what was drawn
    (key, colour scheme, search) so the callbacks fired by the same page load skip redundant work."""
    try:
        md, notes, scheme, colors, scale, opacity, size = drawn_points(data, run, proj, translate, scaled, lod,
                                                                       sort, rho, scheme, query, regex)
        tokens = data.tokens(run)
        fig = matrix_figure(md, colors, scale, opacity, size, uirevision=f"{run}|{sort}|{rho}|{lod}")
        meta = {"offsets": md.offsets.tolist(), "heads": [f"L{l} H{h}" for l, h in md.shown],
                "key": matrix_key(run, proj, translate, scaled, lod, sort, rho), "scheme": scheme,
                "q": [query or "", on(regex)], "n": int(len(md.x))}
        return fig, _note(md, tokens.n, lod, notes), "", meta
    except Exception as exc:  # noqa: BLE001 - shown to the user, never a traceback
        return empty_figure(friendly(exc)), "", friendly(exc), None


def register(app, data):
    @app.callback(Output("matrix-graph", "figure"), Output("matrix-note", "children"), Output("msg-matrix", "children"),
                  Output("matrix-meta", "data"),
                  *DATA_INPUTS, State("color-select", "value"), State("search-input", "value"),
                  State("regex-toggle", "value"), State("matrix-meta", "data"), prevent_initial_call=True)
    def draw_matrix(run, proj, translate, scaled, lod, sort, rho, scheme, query, regex, meta=None):
        if not run:
            return no_update, no_update, no_update, no_update
        if meta and meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho):
            return no_update, no_update, no_update, no_update  # already drawn by the page-load reducer
        return matrix_outputs(data, run, proj, translate, scaled, lod, sort, rho, scheme, query, regex)

    @app.callback(Output("matrix-graph", "figure", allow_duplicate=True),
                  Output("matrix-meta", "data", allow_duplicate=True), Input("color-select", "value"),
                  *DATA_STATES, State("matrix-meta", "data"), prevent_initial_call=True)
    def recolor_matrix(scheme, run, proj, translate, scaled, lod, sort, rho, meta):
        if not run or not meta:  # no figure yet: the full draw applies the colours
            return no_update, no_update
        if meta.get("scheme") == scheme and meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho):
            return no_update, no_update  # drawn with these colours already
        try:
            m, md, _ = _matrix(data, run, proj, translate, scaled, lod, sort, rho)
            if scheme not in schemes_for(m):
                return no_update
            colors, scale = _colors(data, run, md, scheme)
        except Exception:  # noqa: BLE001 - the full redraw reports problems
            return no_update, no_update
        patch = Patch()
        patch["data"][0]["marker"]["color"] = typed(colors)
        patch["data"][0]["marker"]["colorscale"] = scale
        mpatch = Patch()
        mpatch["scheme"] = scheme
        return patch, mpatch

    @app.callback(Output("matrix-graph", "figure", allow_duplicate=True), Output("search-count", "children"),
                  Output("msg-search", "children"), Output("matrix-meta", "data", allow_duplicate=True),
                  Input("search-input", "value"), Input("regex-toggle", "value"), *DATA_STATES,
                  State("matrix-meta", "data"), prevent_initial_call=True)
    def search_matrix(query, regex, run, proj, translate, scaled, lod, sort, rho, meta):
        if not run:
            return no_update, no_update, no_update, no_update
        wanted = [query or "", on(regex)]
        drawn = bool(meta) and meta.get("q") == wanted and \
            meta.get("key") == matrix_key(run, proj, translate, scaled, lod, sort, rho)
        if not (query or "").strip() and (drawn or not meta):
            return no_update, "", "", no_update  # nothing to highlight or count (page load without a search)
        try:
            m, md, _ = _matrix(data, run, proj, translate, scaled, lod, sort, rho)
            tokens = data.tokens(run)
        except Exception as exc:  # noqa: BLE001
            return no_update, "", friendly(exc), no_update
        res = search_tokens(tokens.norm_texts, query, on(regex))
        if res.error:
            return no_update, "", res.message, no_update
        patch = Patch() if (meta and not drawn) else no_update  # no figure yet / already shown: count only
        mpatch = no_update
        if patch is not no_update:
            mpatch = Patch()
            mpatch["q"] = wanted
        opacity, size = matrix_emphasis(md, res.mask)
        if opacity is None:
            if patch is not no_update:
                patch["data"][0]["marker"]["opacity"] = 0.75
                patch["data"][0]["marker"]["size"] = BASE_SIZE
            return patch, "", "", mpatch
        if patch is not no_update:
            patch["data"][0]["marker"]["opacity"] = typed(opacity)
            patch["data"][0]["marker"]["size"] = typed(size)
        n_tok = res.n_tokens
        in_sample = int(np.asarray(res.mask)[md.idx].sum())
        heads = len(md.shown)
        count = (f"{res.message}: {2 * n_tok} points per head (query + key); "
                 f"{2 * in_sample * heads:,} points highlighted in {heads} heads of the matrix"
                 + (f" (sample holds {in_sample} of the {n_tok})" if in_sample < n_tok else "")) if n_tok else res.message
        return patch, count, "", mpatch

    @app.callback(Output("color-legend", "children"), Input("color-select", "value"), Input("run-select", "value"),
                  Input("matrix-painted", "data"), prevent_initial_call=True)
    def legend(scheme, run, painted=True):
        if not run or not painted:
            return no_update
        try:
            m = data.manifest(run)
            schemes = schemes_for(m)
            if scheme not in schemes:
                scheme = "qk"
            tokens = data.tokens(run)
            idx = np.arange(min(tokens.n, 2000))
            spec = color_spec(scheme if scheme != "embedding_norm" else "qk", tokens.arrays, idx, freq=tokens.freq)
            leg = spec.legend if scheme != "embedding_norm" else {"gradient": "Cividis", "lo": "min ‖v‖ (per head)",
                                                                  "hi": "max ‖v‖"}
            return legend_children(leg, schemes[scheme])
        except Exception:  # noqa: BLE001
            return ""

    @app.callback(Output("sort-select", "options"), Input("run-select", "value"), prevent_initial_call=True)
    def sort_choices(run):
        """Orders that apply to the run (the others stay listed, disabled, so a link's value stays valid)."""
        if not run:
            return no_update
        from analysis.head_scores import ablation_scores, available_orders
        from layouts.patterns import sort_options
        try:
            return sort_options(available_orders(data.manifest(run), ablation_scores(data, run)))
        except Exception:  # noqa: BLE001 - keep every option enabled; the matrix note explains a fallback
            return sort_options()

    # Page load draws the Matrix View first and alone: the other views wait for this flag, set
    # once the matrix's points are on screen (or after 8 s, whatever happened).
    clientside_callback(
        """
        function(fig, painted) {
            if (painted) { return window.dash_clientside.no_update; }
            var t0 = Date.now();
            var x = fig && fig.data && fig.data[0] ? fig.data[0].x : undefined;
            return new Promise(function(resolve) {
                function check() {
                    var g = document.querySelector('#matrix-graph .js-plotly-plot');
                    var drawn = g && g._fullLayout && g._fullData && (x === undefined || (g.data && g.data[0] && g.data[0].x === x));
                    if (drawn || Date.now() - t0 > 8000) {
                        requestAnimationFrame(function() { setTimeout(function() { resolve(true); }, 0); });
                    } else { setTimeout(check, 25); }
                }
                check();
            });
        }
        """,
        Output("matrix-painted", "data"), Input("matrix-graph", "figure"), State("matrix-painted", "data"),
        prevent_initial_call=True)

    clientside_callback(
        """
        function(hover, meta) {
            if (!hover || !hover.points || !hover.points.length || !meta) { return ""; }
            var p = hover.points[0].pointNumber, off = meta.offsets, lo = 0, hi = off.length - 1;
            while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (off[mid] <= p) { lo = mid; } else { hi = mid; } }
            var local = p - off[lo], half = (off[lo + 1] - off[lo]) / 2;
            return meta.heads[lo] + (local < half ? " · query" : " · key") + " — click to open in Single View";
        }
        """,
        Output("matrix-hover", "children"), Input("matrix-graph", "hoverData"), State("matrix-meta", "data"),
        prevent_initial_call=True)
