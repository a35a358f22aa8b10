"""Single View: one head with every point, hover context, attention lines, norm sizes."""
from __future__ import annotations

import numpy as np
from dash import Input, Output, no_update

from figures.attention import attention, top_keys
from figures.colors import color_spec
from figures.search import search_tokens
from figures.views import empty_figure, norm_sizes, single_figure

from .common import friendly, input_of_token, on, resolve_projection, resolve_variant, schemes_for


def register(app, data):
    @app.callback(Output("single-graph", "figure"), Output("single-info", "children"), Output("msg-single", "children"),
                  Input("run-select", "value"), Input("layer-select", "value"), Input("head-select", "value"),
                  Input("projection-select", "value"), Input("dim-select", "value"), Input("translate-toggle", "value"),
                  Input("scaled-toggle", "value"), Input("color-select", "value"), Input("search-input", "value"),
                  Input("regex-toggle", "value"), Input("token-store", "data"), Input("lines-toggle", "value"),
                  Input("topk-input", "value"), Input("minw-input", "value"), Input("normsize-toggle", "value"),
                  Input("matrix-painted", "data"), prevent_initial_call=True)
    def draw_single(run, layer, head, proj, dim, translate, scaled, scheme, query, regex, token, lines, topk, minw,
                    normsize, painted=True):
        if not run or layer is None or head is None or not painted:  # page load: after the Matrix View
            return no_update, no_update, no_update
        try:
            m = data.manifest(run)
            if layer not in m["layers"] or head not in m["heads"]:
                return no_update, no_update, no_update
            variant, note_v = resolve_variant(m, on(translate), on(scaled))
            method, note_p = resolve_projection(m, proj)
            dim = int(dim or 2)
            if dim not in (m.get("dims") or [2]):
                dim = (m.get("dims") or [2])[0]
            tokens = data.tokens(run)
            coords = data.coords(run, layer, head, variant, method, dim)
            if coords is None or len(coords) != 2 * tokens.n:
                msg = (f"L{layer} H{head}: the {variant}/{method}/{dim}D projection is not computed yet"
                       + (" (this run is still partial)" if data.status(run)["status"] == "partial" else ""))
                return empty_figure(msg, 560), msg, ""
            schemes = schemes_for(m)
            scheme = scheme if scheme in schemes else "qk"
            norms = data.norms(run, layer, head)
            allidx = np.arange(tokens.n)
            spec = color_spec(scheme, tokens.arrays, allidx, norms=norms, freq=tokens.freq)
            res = search_tokens(tokens.norm_texts, query, on(regex))
            sizes = norm_sizes(norms) if (on(normsize) and norms is not None) else None
            sel = None
            line_list = None
            notes = [n for n in (note_v, note_p) if n]
            if token is not None and 0 <= int(token) < tokens.n:
                sel = int(token)
                if on(lines):
                    qk = data.qk(run, layer, head)
                    if qk is not None:
                        input_id, _ = input_of_token(tokens, sel)
                        rows = tokens.index.rows(input_id)
                        a = attention(qk[0][rows], qk[1][rows], float(m["model"]["scale"]), bool(m["model"].get("causal")))
                        i = int(np.flatnonzero(rows == sel)[0])
                        line_list = [(int(rows[j]), w) for j, w in
                                     top_keys(a[i], int(topk or 2), float(minw if minw is not None else 0.05))]
            met = data.metrics(run, layer, head) or {}
            rho = met.get(f"spearman/{variant}")
            trust = met.get(f"trust/{variant}/{method}/{dim}d")
            title = f"L{layer} H{head} · {method.upper() if method == 'pca' else method} {dim}D · {variant}"
            fig = single_figure(coords, tokens.contexts, np.asarray(tokens.arrays["position"]), norms, spec, title, dim,
                                sizes, None if res.mask is None else res.mask, sel, line_list,
                                uirevision=f"{run}|{layer}|{head}|{method}|{dim}|{variant}")
            info = [f"{tokens.n:,} tokens → {2 * tokens.n:,} points (all)"]
            if rho is not None:
                info.append(f"distance–attention Spearman ρ = {rho:+.3f}")
            if trust is not None:
                info.append(f"trustworthiness {trust:.3f}")
            if sel is not None:
                info.append(f"selected: {tokens.contexts[sel]}")
                if line_list is not None:
                    info.append("lines: " + (", ".join(f"{tokens.text[j]} {w:.2f}" for j, w in line_list) or
                                             "no key above the minimum weight"))
            else:
                info.append("click a point to select a query token")
            if res.mask is not None:
                info.append(res.message)
            return fig, " · ".join(info + notes), ""
        except Exception as exc:  # noqa: BLE001
            return empty_figure(friendly(exc), 560), "", friendly(exc)
