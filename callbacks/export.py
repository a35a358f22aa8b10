"""Export bar: PNG/SVG in the browser (Plotly.toImage on the graphs of the chosen view), HTML
snapshot and CSV on the server (dcc.Download).

The clientside callback finds the chosen view's graphs in the page (every drawn, visible
``.js-plotly-plot`` under the view's container), so analysis tabs built later export without
changes here. PNG and SVG never leave the browser. For HTML (and the CSV of views without a
table of their own) it sends the figures as the browser holds them — zoom included — to the
server callback; the CSV of the core views is recomputed on the server from the controls, with
the same functions the views use."""
from __future__ import annotations

import time

import numpy as np
from dash import ClientsideFunction, Input, Output, State, clientside_callback, dcc, no_update

from attention_atlas.dashboard_data import DataError
from figures.attention import hide_and_renormalise
from figures.export import (Table, arrows_table, attention_table, concat_tables, export_filename, figure_table,
                            html_snapshot, image_table, matrix_table, single_table, snapshot_payload_figures, to_csv)
from figures.search import search_tokens
from layouts.export import views
from layouts import ids

from .common import (MODEL_ERRORS, VIEW_ERRORS, friendly, input_of_token, is_image, on, resolve_projection,
                     resolve_variant)

MAX_CSV_ROWS = 1_000_000          # larger tables are refused with a message (never cut silently)

STATE = [State(ids.RUN_SELECT, "value"), State(ids.LAYER_SELECT, "value"), State(ids.HEAD_SELECT, "value"),
         State(ids.PROJECTION_SELECT, "value"), State(ids.DIM_SELECT, "value"), State(ids.TRANSLATE_TOGGLE, "value"),
         State(ids.SCALED_TOGGLE, "value"), State(ids.LOD_SELECT, "value"), State(ids.SORT_SELECT, "value"),
         State(ids.RHO_THRESHOLD, "value"), State(ids.SEARCH_INPUT, "value"), State(ids.REGEX_TOGGLE, "value"),
         State(ids.TOKEN_STORE, "data"), State(ids.EXPORT_ALL, "value"), State(ids.SENTENCE_MODE, "value"),
         State(ids.HIDE_SELECT, "value"), State(ids.IMAGE_MODE, "value"), State(ids.VNORM_TOGGLE, "value"),
         State(ids.MATRIX_META, "data"), State(ids.SENTENCE_HEADS, "value"), State(ids.SENTENCE_PAIR, "value"),
         State(ids.KIND_SELECT, "value")]
STATE_NAMES = ["run", "layer", "head", "proj", "dim", "translate", "scaled", "lod", "sort", "rho", "query", "regex",
               "token", "all", "smode", "hide", "imode", "vnorm", "meta", "sheads", "pair", "kind"]


class ExportError(Exception):
    """A one-line reason why this export cannot be made (shown in the export bar)."""


def _check_rows(n: int, what: str):
    if n > MAX_CSV_ROWS:
        raise ExportError(f"{what} would be {n:,} rows (limit {MAX_CSV_ROWS:,}): too many to download from the page; "
                          "export fewer points (e.g. a smaller sample) or one head with `python -m precompute export`")


# ---------------------------------------------------------------------------- per-view tables
def _head_ok(m, layer, head):
    if layer not in m.layers or head not in m.heads:
        raise ExportError(f"L{layer} H{head} is not in this run")


def matrix_export(data, s) -> tuple[Table, list]:
    from .matrix import matrix_data
    lod = 0 if on(s["all"]) else s["lod"]
    m, md, notes = matrix_data(data, s["run"], s["proj"], s["translate"], s["scaled"], lod, s["sort"], s["rho"],
                               meta=s.get("meta"), kind=s.get("kind"))
    tokens = data.tokens(s["run"])
    _check_rows(len(md.shown) * md.per_head, "the Matrix View's points")
    variant, _ = resolve_variant(m, on(s["translate"]), on(s["scaled"]))
    method, _ = resolve_projection(m, s["proj"])
    sampled = md.sampled
    note = (f"SAMPLE: the Matrix View shows {md.per_head:,} of {md.n_points:,} points per head (seeded token sample, "
            f"the same tokens in every head); these rows are exactly those points. Tick 'all points' for every point."
            if sampled else f"all {md.n_points:,} points per head")
    t = matrix_table(md, tokens.text, tokens.arrays["input_id"], tokens.arrays["position"],
                     lambda l, h: data.coords(s["run"], l, h, variant, method, 2), note)
    t.comments[:0] = [f"projection {method} 2D · variant {variant} · order {md.order}"
                      + (f" ({md.score_fig['label']})".replace("ρ", "rho") if md.score_fig else "")
                      + ((f" · {md.score_fig['label']} {'<= -' if md.score_fig['better'] == 'lower' else '>= '}"
                          f"{float(s['rho'] or 0):g}".replace("ρ", "rho") if md.score_fig else
                          f" · |rho| >= {float(s['rho'] or 0):g}") if float(s["rho"] or 0) > 0 else "")] + notes
    return t, ([md.kind] if md.kind else []) + [method, variant, f"sample{md.per_head}" if sampled else "all"]


def single_export(data, s) -> tuple[Table, list]:
    run, layer, head = s["run"], s["layer"], s["head"]
    m = data.info(run)
    _head_ok(m, layer, head)
    variant, note_v = resolve_variant(m, on(s["translate"]), on(s["scaled"]))
    method, note_p = resolve_projection(m, s["proj"])
    dim = int(s["dim"] or 2)
    if dim not in m.dims:
        dim = m.dims[0]
    tokens = data.tokens(run)
    sd = tokens.sides(m, layer)
    _check_rows(sd.n_points, "the Single View's points")
    coords = data.coords(run, layer, head, variant, method, dim)
    if coords is None or len(coords) != sd.n_points:
        raise ExportError(f"L{layer} H{head}: the {variant}/{method}/{dim}D projection is not computed yet")
    norms = data.norms(run, layer, head)
    res = search_tokens(tokens.norm_texts, s["query"], on(s["regex"]))
    row = None
    comments = [f"L{layer} H{head} · {method} {dim}D · variant {variant} · all {sd.n_points:,} points "
                "(queries first, then keys; token order)"] + [n for n in (note_v, note_p) if n]
    if sd.kind != "self":
        comments.insert(1, f"{sd.kind} head of an encoder–decoder run: token = row of the run's source-then-target "
                           f"token table; queries are {'target' if sd.q_off else 'source'} tokens, keys "
                           f"{'target' if sd.k_off else 'source'} tokens")
    tok = s["token"]
    if tok is not None and 0 <= int(tok) < tokens.n and sd.has_query([int(tok)])[0]:
        from .detail import head_attention
        input_id, _ = input_of_token(tokens, int(tok))
        rows, k_rows, a = head_attention(data, run, layer, head, input_id, tokens)
        if a is not None:
            i = int(np.flatnonzero(rows == int(tok))[0])
            row = {int(r): float(w) for r, w in zip(k_rows, a[i])}
            comments.append(f"attention_from_selected: attention of the selected query (token {int(tok)}, "
                            f"{tokens.contexts[int(tok)]}) to each key of its input")
    met = data.metrics(run, layer, head) or {}
    if met.get(f"spearman/{variant}") is not None:
        comments.append(f"distance-attention Spearman rho = {met[f'spearman/{variant}']:+.6f}")
    if res.mask is not None:
        comments.append(f"search_match: {res.message}")
    t = single_table(coords, dim, tokens.text, tokens.arrays["input_id"], tokens.arrays["position"], norms,
                     None if res.mask is None else np.asarray(res.mask), row, sides=None if sd.kind == "self" else sd)
    t.comments = comments
    return t, [f"L{layer}", f"H{head}", f"{method}{dim}d", variant]


def _value_norms(data, run, layer, head, input_id=None, rows=None):
    """(‖v‖ per key or None, note): the value norms the Sentence/Image Views weight by when their
    'weight by value norm' toggle is on (same functions as callbacks/detail.py; on failure the
    views show plain attention, and so does the export, saying why)."""
    try:
        from . import detail
        if input_id is None:
            return detail._run_vnorm(data, run, layer, head), ""
        return detail._input_vnorm(data, run, layer, head, input_id, rows), ""
    except MODEL_ERRORS as exc:
        text = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        return None, f"value norms unavailable ({text}): plain attention exported"


def sentence_matrix(data, run, layer, head, token, hide, mode, vnorm=False, key_words=None):
    """(input id, words, shown matrix, plain attention or None, description) of the Sentence View,
    computed as callbacks/detail.py draws it (hidden keys, value-norm weighting, aggregate)."""
    from figures.attention import value_weighted

    from .detail import AUTO_HEATMAP_ABOVE, aggregate_matrix, head_attention, hidden_keys, run_roles
    m = data.info(run)
    if is_image(m):
        raise ExportError("the Sentence View is for text runs; this is an image run (export the Image View)")
    tokens = data.tokens(run)
    input_id, _ = input_of_token(tokens, token)
    rows, k_rows, a = head_attention(data, run, layer, head, input_id, tokens)
    if a is None:
        raise ExportError(f"L{layer} H{head}: queries/keys not stored yet (partial run)")
    from figures.encdec import layer_kind
    kind = layer_kind(m, layer)
    if kind != "self" and mode == "aggregate":
        raise ExportError("aggregate by position is for runs of one token sequence; export lines or heatmap of this "
                          "encoder–decoder head")
    if kind != "self":
        vnorm = False
    words = [str(tokens.text[r]) for r in rows]
    kwords = [str(tokens.text[r]) for r in k_rows]
    if key_words is not None:          # the caller's list receives the keys' words (cross heads: the source)
        key_words[:] = kwords
    hidden = hidden_keys(kwords, hide, run_roles(data, run))
    desc = []
    if hidden:
        desc.append("hidden keys: " + ", ".join(f"{i} {kwords[i]}" for i in sorted(hidden))
                    + " (weight = rows renormalised over the other keys; attention = before hiding)")
    if mode == "aggregate":
        vn, note = _value_norms(data, run, layer, head) if vnorm else (None, "")
        agg = aggregate_matrix(data, run, layer, head, tokens, len(rows), vn) if vn is not None else \
            aggregate_matrix(data, run, layer, head, tokens, len(rows))
        if agg is None:
            raise ExportError("the aggregate needs this head's queries/keys")
        shown = hide_and_renormalise(agg, sorted(hidden))
        desc.insert(0, "mean attention by position over all inputs (rows renormalised, cropped to this input's length)"
                    + (" · each input's attention weighted by value norms a·‖v‖ before averaging" if vn is not None else ""))
        if note:
            desc.append(note)
        return input_id, [str(i) for i in range(len(rows))], shown, (agg if hidden else None), desc
    shown = a
    if vnorm:
        vn, note = _value_norms(data, run, layer, head, input_id, rows)
        if vn is not None:
            shown = value_weighted(a, vn)
            desc.append("weight = attention weighted by value norms a·‖v‖ (rows renormalised); attention = plain")
        else:
            desc.append(note)
    weighted = shown is not a
    shown = hide_and_renormalise(shown, sorted(hidden))
    what = ("heatmap" if (mode == "heatmap" or (mode in (None, "auto") and len(rows) > AUTO_HEATMAP_ABOVE))
            else "lines")
    desc.insert(0, f"attention of input {input_id} ({len(rows)} tokens), shown as {what}"
                + ("" if kind == "self" else f" · {kind} head: queries are "
                   f"{'source' if kind == 'encoder' else 'target'} tokens, keys "
                   f"{'target' if kind == 'decoder' else 'source'} tokens"))
    return input_id, words, shown, (a if (hidden or weighted) else None), desc


def sentence_export(data, s) -> tuple[Table, list]:
    """The Sentence View's numbers: every head it draws (the current head and the extra heads
    chosen), restricted to the sentence A/B filter's cells (weights as drawn, not renormalised)."""
    from figures.sentence import PAIR_FILTERS, pair_mask, segments

    from .detail import chosen_heads, run_roles
    m = data.info(s["run"])
    _head_ok(m, s["layer"], s["head"])
    aggregate = s["smode"] == "aggregate"
    heads = [s["head"]] if aggregate else chosen_heads(s["head"], s.get("sheads"), list(m.heads))
    tables, comments = [], []
    input_id = None
    for head in heads:
        kwords: list = []
        input_id, words, shown, raw, desc = sentence_matrix(data, s["run"], s["layer"], head, s["token"], s["hide"],
                                                           s["smode"], on(s.get("vnorm")), key_words=kwords)
        cross = len(kwords) != len(words) or shown.shape[0] != shown.shape[1]
        q_pos, k_pos = np.arange(shown.shape[0]), np.arange(shown.shape[1])
        pair = s.get("pair") or "all"
        segs = None if (aggregate or cross) else segments(words, run_roles(data, s["run"]))
        kwords = kwords if (cross and not aggregate) else words
        if segs is not None and pair in PAIR_FILTERS and pair != "all":
            mask = pair_mask(segs, pair)
            q_pos, k_pos = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            shown = shown[np.ix_(q_pos, k_pos)]
            raw = None if raw is None else raw[np.ix_(q_pos, k_pos)]
            if not comments:
                desc.append(f"sentence pair filter {PAIR_FILTERS[pair]}: queries of one sentence, keys of the other")
        if not comments:
            comments = desc
        tables.append(attention_table(shown, [words[i] for i in q_pos], [kwords[i] for i in k_pos], raw=raw,
                                      q_pos=q_pos, k_pos=k_pos, prefix=[("head", int(head))] if len(heads) > 1 else None))
    t = concat_tables(tables) if len(tables) > 1 else tables[0]
    t.comments = [f"L{s['layer']} H{', '.join(str(h) for h in heads)} · input {input_id}"] + comments
    return t, ([f"L{s['layer']}", f"H{'-'.join(str(h) for h in heads)}", f"input{input_id}"]
               + (["aggregate"] if aggregate else []))


def model_export(data, s) -> tuple[Table, list]:
    from figures.encdec import layer_kind

    from .detail import head_attention
    run = s["run"]
    m = data.info(run)
    tokens = data.tokens(run)
    input_id, _ = input_of_token(tokens, s["token"])
    rows = tokens.index.rows(input_id)
    n_heads = len(m.layers) * len(m.heads)
    _check_rows(n_heads * len(rows) ** 2, f"the attention of {n_heads} heads on input {input_id}")
    parts, missing = [], []
    kinds = any(layer_kind(m, l) != "self" for l in m.layers)
    for layer in m.layers:
        for head in m.heads:
            q_rows, k_rows, a = head_attention(data, run, layer, head, input_id, tokens)
            if a is None:
                missing.append(f"L{layer} H{head}")
                continue
            prefix = [("layer", int(layer))] + ([("kind", layer_kind(m, layer))] if kinds else []) + [("head", int(head))]
            parts.append(attention_table(a, [str(tokens.text[r]) for r in q_rows], [str(tokens.text[r]) for r in k_rows],
                                         prefix=prefix))
    comments = [f"input {input_id} ({len(rows)} tokens): full attention of every head (the Model View's thumbnails "
                "are block means of these, each scaled to its own max)"]
    if missing:
        comments.append(f"{len(missing)} heads without stored queries/keys (no rows): {', '.join(missing[:20])}")
    return concat_tables(parts, comments), [f"input{input_id}"]


def image_export(data, s) -> tuple[Table, list]:
    from .detail import input_attention
    run, layer, head = s["run"], s["layer"], s["head"]
    m = data.info(run)
    _head_ok(m, layer, head)
    if not is_image(m):
        raise ExportError("the Image View is for image runs; this is a text run")
    tokens = data.tokens(run)
    input_id, tok = input_of_token(tokens, s["token"])
    rows, a = input_attention(data, run, layer, head, input_id, tokens)
    if a is None:
        raise ExportError(f"L{layer} H{head}: queries/keys not stored yet (partial run)")
    vnote = ""
    if on(s.get("vnorm")):
        from figures.attention import value_weighted
        vn, vnote = _value_norms(data, run, layer, head, input_id, rows)
        if vn is not None:
            a = value_weighted(a, vn)
            vnote = "weighted by value norms a·‖v‖ (rows renormalised)"
    pr = np.asarray(tokens.arrays["patch_row"])[rows].astype(int)
    pc = np.asarray(tokens.arrays["patch_col"])[rows].astype(int)
    is_patch = pr >= 0
    qi = int(np.flatnonzero(rows == tok)[0]) if tok in set(rows.tolist()) else 0
    label = tokens.inputs[input_id] if input_id < len(tokens.inputs) else f"image {input_id}"
    if s["imode"] == "arrows":
        pidx = np.flatnonzero(is_patch)
        sub = a[np.ix_(pidx, pidx)]
        best = sub.argmax(1)
        strongest = [(int(pr[pidx[i]]), int(pc[pidx[i]]), int(pr[pidx[j]]), int(pc[pidx[j]]), float(sub[i, j]))
                     for i, j in enumerate(best) if float(sub[i, j]) >= 0.05 and i != j]
        t = arrows_table(strongest)
        t.comments = [f"L{layer} H{head} · {label}: strongest target patch of every patch (weight >= 0.05, "
                      "among patches), the arrows drawn"] + ([vnote] if vnote else [])
        return t, [f"L{layer}", f"H{head}", f"input{input_id}", "arrows"]
    words = [str(tokens.text[r]) for r in rows]
    t = image_table(words, a[qi], pr, pc, qi)
    t.comments = [f"L{layer} H{head} · {label}: attention from query position {qi} ({words[qi]}) to every token "
                  "(patch_row/patch_col -1: not a patch, e.g. CLS)"] + ([vnote] if vnote else [])
    return t, [f"L{layer}", f"H{head}", f"input{input_id}", f"q{qi}"]


TABLES = {"matrix": matrix_export, "single": single_export, "sentence": sentence_export, "model": model_export,
          "image": image_export}


def csv_export(data, view: str, s: dict, figures=None, search: str = "", req_names=None) -> tuple[str, str, int]:
    """(CSV text, file name, rows) of a view in state ``s``; ``figures`` for views without a table."""
    labels = {v: label for v, label, _, _ in views()}
    if view in TABLES:
        if not s.get("run"):
            raise ExportError("no run selected")
        table, parts = TABLES[view](data, s)
    else:
        if not figures:
            raise ExportError(f"{labels.get(view, view)} shows no figure to export")
        names = [str(n) for n in (req_names or [])]
        table = figure_table(figures, names if len(names) == len(figures) else None)
        _check_rows(table.n_rows, "the figure's points")
        parts = []
    head = _provenance(data, s.get("run"), labels.get(view, view), search)
    table.comments = head + list(table.comments) + [f"{table.n_rows:,} rows"]
    return to_csv(table), export_filename(s.get("run"), view, parts, "csv"), table.n_rows


def _provenance(data, run, label, search) -> list[str]:
    model = ""
    if run:
        try:
            m = data.info(run)
            model = f" ({m.model_name})"
        except DataError:
            pass
    return [f"Attention Atlas export: {label} · run {run}{model} · {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
            f"view state: {search or '(defaults)'}"]


def html_export(data, view: str, s: dict, figures: list, search: str = "") -> tuple[str, str]:
    label = {v: lab for v, lab, _, _ in views()}.get(view, view)
    if not figures:
        raise ExportError(f"{label} shows no figure to export")
    caption = _provenance(data, s.get("run"), label, search)
    parts = [f"L{s['layer']}", f"H{s['head']}"] if view in ("single", "sentence", "image") else []
    title = f"Attention Atlas · {label}" + (f" · {' '.join(parts)}" if parts else "")
    return html_snapshot(figures, title, caption), export_filename(s.get("run"), view, parts, "html")


def register(app, context):
    data = context.data
    # in the browser (assets/clientside_export.js): PNG and SVG drawn there, HTML and CSV sent up as
    # an export-request with the view's figures; export-config holds the views and the limits
    clientside_callback(
        ClientsideFunction(namespace="atlas_export", function_name="export_request"),
        Output(ids.EXPORT_MSG, "children"), Output(ids.EXPORT_REQUEST, "data"),
        Input(ids.EXPORT_PNG, "n_clicks"), Input(ids.EXPORT_SVG, "n_clicks"), Input(ids.EXPORT_HTML, "n_clicks"),
        Input(ids.EXPORT_CSV, "n_clicks"), State(ids.EXPORT_VIEW, "value"), State(ids.RUN_SELECT, "value"),
        State(ids.LAYER_SELECT, "value"), State(ids.HEAD_SELECT, "value"), State(ids.EXPORT_CONFIG, "data"),
        prevent_initial_call=True)

    @app.callback(Output(ids.EXPORT_DOWNLOAD, "data"), Output(ids.EXPORT_MSG, "children", allow_duplicate=True),
                  Input(ids.EXPORT_REQUEST, "data"), *STATE, prevent_initial_call=True)
    def export(req, *values):
        if not req or req.get("kind") not in ("html", "csv"):
            return no_update, no_update
        s = dict(zip(STATE_NAMES, values))
        view = req.get("view")
        try:
            figures = snapshot_payload_figures(req)
            if req["kind"] == "html":
                text, name = html_export(data, view, s, figures, req.get("search", ""))
                mb = len(text) / 1e6
                return (dcc.send_string(text, name, type="text/html"),
                        f"saved {name} ({mb:.1f} MB, plotly.js inside: opens offline)")
            text, name, n = csv_export(data, view, s, figures, req.get("search", ""), req.get("names"))
            return dcc.send_string(text, name, type="text/csv"), f"saved {name} ({n:,} rows)"
        except ExportError as exc:
            return no_update, str(exc)
        except VIEW_ERRORS as exc:  # a message in the bar, never a traceback
            return no_update, "export: " + friendly(exc)
