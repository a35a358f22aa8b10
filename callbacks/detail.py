"""Sentence, Image and Model views (the detail panel under the Matrix/Single views)."""
from __future__ import annotations

import base64
import io
import itertools

import numpy as np
from dash import ClientsideFunction, Input, Output, State, clientside_callback, html, no_update

from figures.attention import (aggregate_by_position, attention, downsample, hide_and_renormalise,
                               value_weighted)
from figures.sentence import (CLS_TEXTS, PAIR_FILTERS, SEP_TEXTS, TokenRoles, below_note, head_colors,  # noqa: F401
                              hidden_keys, hide_options, segments, sentence_lines, token_roles)
from figures.views import (HEAD_LINE, MODEL_THUMB, attention_heatmap, empty_figure, image_figure,  # noqa: F401
                           model_view_figure, patch_of_point, sentence_figure)
from layouts import ids

from .common import MODEL_ERRORS, VIEW_ERRORS, friendly, gate_fields, input_of_token, is_image, on

AUTO_HEATMAP_ABOVE = 60
SHOW, HIDE = {"display": "block"}, {"display": "none"}
_REVISION = itertools.count(1)


def run_roles(data, run) -> TokenRoles | None:
    """The run's special tokens by role (manifest ``model.special_tokens`` + where they occur);
    old manifests without ``special_tokens``: the historical name sets. None for image runs."""
    m = data.info(run)
    if is_image(m):
        return None

    def build():
        tokens = data.tokens(run)
        return token_roles(m.special_tokens, tokens.arrays["text"],
                           tokens.arrays["position"])
    return data.caches["roles"].get(run, "roles", build)


def run_has_pairs(data, run) -> bool:
    """Whether any input of the run has two segments (sentence A / B)."""
    roles = run_roles(data, run)
    if roles is None or not roles.sep:
        return False

    def build():
        tokens = data.tokens(run)
        text = np.asarray(tokens.arrays["text"]).astype(str)
        pos = np.asarray(tokens.arrays["position"])
        length = np.asarray(tokens.arrays["input_length"])
        return bool((np.isin(text, list(roles.sep)) & (pos < length - 1)).any())
    return data.caches["pairs"].get(run, "pairs", build)


def chosen_heads(current, extra, heads) -> list:
    """Heads the Sentence View draws: the current head plus the extra heads chosen (the checklist's
    values are head numbers as strings, as the URL's ``sheads``), in layer order."""
    picked = set()
    for h in extra or []:
        try:
            picked.add(int(h))
        except (TypeError, ValueError):
            continue
    want = {current} | (picked & set(heads))
    return [h for h in heads if h in want] or [current]


def head_attention(data, run, layer, head, input_id, tokens):
    """(query rows, key rows, attention) of one head on one input: rows of the run's token table
    (encoder–decoder heads: their side's rows — a cross head's queries are the input's target
    tokens, its keys the source tokens), attention recomputed from the stored q/k with the layer's
    semantics; (None, None, None) when the head's q/k are not stored yet."""
    m = data.info(run)
    qk = data.qk(run, layer, head)
    if qk is None:
        return None, None, None
    sd = tokens.sides(m, layer)
    q_rows = tokens.side_rows(input_id, int(sd.kind in ("decoder", "cross")))
    k_rows = tokens.side_rows(input_id, int(sd.kind == "decoder"))
    a = attention(qk[0][q_rows - sd.q_off], qk[1][k_rows - sd.k_off], **m.layer_semantics(layer, head))
    return q_rows, k_rows, a


def input_attention(data, run, layer, head, input_id, tokens):
    """(rows, attention) of a self-attention head on one input (query rows = key rows)."""
    q_rows, _, a = head_attention(data, run, layer, head, input_id, tokens)
    return q_rows, a


def _input_vnorm(data, run, layer, head, input_id, rows):
    """‖v‖ of every token of one input for this head (stored norms, else the live model; cached)."""
    from analysis.values import input_value_norms
    m = data.info(run)
    norms = data.caches["value-norms"].get(run, ("input", input_id), lambda: input_value_norms(
        m, data.store(), input_id, m.layers, rows))
    return np.asarray(norms[int(layer)][int(head)], np.float64)


def _run_vnorm(data, run, layer, head):
    """‖v‖ of every token of the run for this head (all inputs: the aggregate view)."""
    from analysis.values import run_value_norms
    m = data.info(run)
    norms = data.caches["value-norms"].get(run, "run", lambda: run_value_norms(m, data.store(), m.layers))
    return np.asarray(norms[int(layer)][int(head)], np.float64)


def _vnorm_problem(exc: Exception) -> str:
    """One line for a value-norm failure (the view then shows plain attention)."""
    text = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
    return f"value norms unavailable ({text}); showing plain attention"


def aggregate_matrix(data, run, layer, head, tokens, length, vnorm=None):
    m = data.info(run)
    max_len = int(min(512, max(np.asarray(tokens.arrays["input_length"]).max(), length)))

    def build():
        qk = data.qk(run, layer, head)
        if qk is None:
            return None
        return aggregate_by_position(qk[0], qk[1], tokens.index, m.scale,
                                     m.causal, max_len, vnorm, m.layer_semantics(layer, head))
    agg = data.caches["aggregate"].get(run, (layer, head, max_len, vnorm is not None), build)
    if agg is None:
        return None
    crop = agg[:length, :length]
    s = crop.sum(1, keepdims=True)
    return np.where(s > 0, crop / np.where(s > 0, s, 1), 0.0)


def register(app, context):
    data = context.data
    # assets/clientside_detail.js: shows the chosen detail view
    clientside_callback(
        ClientsideFunction(namespace="atlas_detail", function_name="show_view"),
        Output(ids.SENTENCE_VIEW, "style"), Output(ids.IMAGE_VIEW, "style"), Output(ids.MODEL_VIEW, "style"),
        Input(ids.DETAIL_TAB, "value"))

    @app.callback(Output(ids.HIDE_SELECT, "options"), Output(ids.SENTENCE_HEADS, "options"),
                  Output(ids.SENTENCE_PAIR_CTL, "style"), Output(ids.SENTENCE_HIDE_NOTE, "children"),
                  Input(ids.RUN_SELECT, "value"), Input(ids.MATRIX_PAINTED, "data"))
    def detail_controls(run, painted=None):  # painted: held until the Matrix View answered (matrix.sort_choices)
        """Per run: the hide options named after the run's own special tokens, the head checklist
        of the layer (one colour per head), and the sentence A/B filter when the run has pairs. The
        current head's mark moves in the browser (mark_current_head below): a head change
        re-renders no option."""
        if not run:
            return no_update, no_update, no_update, no_update
        try:
            m = data.info(run)
            if is_image(m):
                return hide_options(None)[:1], [], HIDE, ""
            roles = run_roles(data, run)
            heads = list(m.heads)
            colours = head_colors(heads, heads)
            opts = [{"label": html.Span([html.Span(className="sw", style={"background": colours[h]}), f"H{h}"],
                                        style={"color": colours[h]}),
                     "value": str(h)} for h in heads]
            note = ""
            if roles.declared is not None and not (roles.cls or roles.sep):
                note = (f"none of this model's special tokens ({' '.join(roles.declared) or 'none'}) occurs in the "
                        f"run's inputs")
            return hide_options(roles), opts, (SHOW if run_has_pairs(data, run) else HIDE), note
        except VIEW_ERRORS as exc:
            return no_update, no_update, no_update, friendly(exc)

    # assets/clientside_detail.js: the current head's option is marked "(current, always drawn)" and
    # made unclickable by a style rule, in the page
    clientside_callback(
        ClientsideFunction(namespace="atlas_detail", function_name="mark_current_head"),
        Output(ids.SENTENCE_HEADS_MARK, "data"), Input(ids.HEAD_SELECT, "value"), Input(ids.SENTENCE_HEADS, "options"))

    @app.callback(Output(ids.SENTENCE_HEADS, "value", allow_duplicate=True),
                  Input(ids.SENTENCE_HEADS_ALL, "n_clicks"), Input(ids.SENTENCE_HEADS_NONE, "n_clicks"),
                  State(ids.RUN_SELECT, "value"), prevent_initial_call=True)
    def all_heads(n_all, n_none, run):
        from dash import ctx
        if ctx.triggered_id == ids.SENTENCE_HEADS_NONE:
            return []
        try:
            return [str(h) for h in data.info(run).heads]
        except VIEW_ERRORS:
            return no_update

    @app.callback(Output(ids.SENTENCE_GRAPH, "figure"), Output(ids.SENTENCE_INFO, "children"),
                  # the shared selection through the view's gate (callbacks/analysis.py): no round trip
                  # while another detail view is shown
                  Input(ids.GATE_SENTENCE, "data"), Input(ids.FOCUS_STORE, "data"), Input(ids.HIDE_SELECT, "value"),
                  Input(ids.SENTENCE_MODE, "value"), Input(ids.VNORM_TOGGLE, "value"), Input(ids.SENTENCE_HEADS, "value"),
                  Input(ids.SENTENCE_PAIR, "value"), State(ids.DETAIL_TAB, "value"), prevent_initial_call=True)
    def draw_sentence(gate, focus, hide, mode, vnorm=None, extra=None, pair=None, tab=None):
        run, layer, head, token, painted = gate_fields(gate, "run", "layer", "head", "token", "painted")
        if tab != "sentence" or not run or layer is None or head is None or not painted:
            return no_update, no_update
        try:
            m = data.info(run)
            if is_image(m):
                return empty_figure("Sentence View is for text runs; this is an image run (see Image View)"), ""
            return sentence_view(data, run, layer, head, token, focus, hide, mode, on(vnorm), extra, pair)
        except VIEW_ERRORS as exc:
            return empty_figure(friendly(exc)), friendly(exc)

    @app.callback(Output(ids.IMAGE_GRAPH, "figure"), Output(ids.IMAGE_INFO, "children"),
                  Input(ids.GATE_IMAGE, "data"), Input(ids.IMAGE_MODE, "value"), Input(ids.VNORM_TOGGLE, "value"),
                  State(ids.DETAIL_TAB, "value"), prevent_initial_call=True)
    def draw_image(gate, mode, vnorm=None, tab=None):
        run, layer, head, token, painted = gate_fields(gate, "run", "layer", "head", "token", "painted")
        if tab != "image" or not run or layer is None or head is None or not painted:
            return no_update, no_update
        try:
            m = data.info(run)
            if not is_image(m):
                return empty_figure("Image View is for image runs; this is a text run"), ""
            tokens = data.tokens(run)
            input_id, tok = input_of_token(tokens, token)
            rgb = data.image(run, input_id)
            if rgb is None:
                return empty_figure(f"image {input_id} is not stored in this run"), ""
            rows, a = input_attention(data, run, layer, head, input_id, tokens)
            if a is None:
                return empty_figure(f"L{layer} H{head}: queries/keys not stored yet (partial run)"), ""
            vnote = ""
            if on(vnorm):
                try:
                    a = value_weighted(a, _input_vnorm(data, run, layer, head, input_id, rows))
                    vnote = " · weighted by value norms a·‖v‖ (rows renormalised)"
                except MODEL_ERRORS as exc:
                    vnote = " · " + _vnorm_problem(exc)
            pr = np.asarray(tokens.arrays["patch_row"])[rows].astype(int)
            pc = np.asarray(tokens.arrays["patch_col"])[rows].astype(int)
            is_patch = pr >= 0
            grid = int(max(pr.max(), pc.max()) + 1) if is_patch.any() else 1
            qi = int(np.flatnonzero(rows == tok)[0]) if tok in set(rows.tolist()) else 0
            w = np.zeros((grid, grid))
            w[pr[is_patch], pc[is_patch]] = a[qi, is_patch]
            cls_w = float(a[qi, ~is_patch].sum()) if (~is_patch).any() else None
            sel_patch = (int(pr[qi]), int(pc[qi])) if is_patch[qi] else None
            strongest = []
            if mode == "arrows":
                pidx = np.flatnonzero(is_patch)
                sub = a[np.ix_(pidx, pidx)]
                best = sub.argmax(1)
                for i, j in enumerate(best):
                    wt = float(sub[i, j])
                    if wt >= 0.05 and i != j:
                        strongest.append((int(pr[pidx[i]]), int(pc[pidx[i]]), int(pr[pidx[j]]), int(pc[pidx[j]]), wt))
            label = tokens.inputs[input_id] if input_id < len(tokens.inputs) else f"image {input_id}"
            qname = f"patch {sel_patch}" if sel_patch else "CLS"
            title = f"L{layer} H{head} · {label} · query {qname}"
            fig = image_figure(rgb, grid, w, cls_w, sel_patch, mode or "heatmap", strongest, title)
            # a fresh datarevision per figure: without it Plotly.react sometimes skipped the redraw
            # when only the mode changed (heatmap -> arrows: Dash delivered the figure, nothing drawn)
            fig.update_layout(datarevision=next(_REVISION))
            info = (f"{len(strongest)} patches whose strongest target (another patch) has weight ≥ 0.05"
                    if mode == "arrows" else
                    f"attention from {qname} to the {grid}×{grid} patches; CLS receives {cls_w:.3f}" if cls_w is not None
                    else f"attention from {qname}")
            return fig, info + vnote + " · click a patch to make it the query"
        except VIEW_ERRORS as exc:
            return empty_figure(friendly(exc)), friendly(exc)

    @app.callback(Output(ids.PATCH_ZOOM, "src"), Input(ids.IMAGE_GRAPH, "hoverData"), State(ids.RUN_SELECT, "value"),
                  State(ids.TOKEN_STORE, "data"), prevent_initial_call=True)
    def zoom_patch(hover, run, token):
        try:
            pt = (hover or {}).get("points", [{}])[0]
            cd = patch_of_point(pt)
            if cd is None:
                return no_update
            tokens = data.tokens(run)
            input_id, _ = input_of_token(tokens, token)
            rgb = data.image(run, input_id)
            if rgb is None:  # not an image run (a stale hover), or the image is not stored
                return no_update
            rows = tokens.index.rows(input_id)
            grid = int(np.asarray(tokens.arrays["patch_row"])[rows].max() + 1)
            ph, pw = rgb.shape[0] // grid, rgb.shape[1] // grid
            r, c = int(cd[0]), int(cd[1])
            crop = rgb[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw]
            from PIL import Image
            buf = io.BytesIO()
            Image.fromarray(crop).resize((160, 160), Image.NEAREST).save(buf, format="PNG")
            return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        except VIEW_ERRORS:
            return no_update

    @app.callback(Output(ids.MODEL_GRAPH, "figure"), Output(ids.MODEL_INFO, "children"),
                  Input(ids.GATE_MODEL, "data"), State(ids.DETAIL_TAB, "value"), prevent_initial_call=True)
    def draw_model(gate, tab):
        run, token, painted = gate_fields(gate, "run", "token", "painted")
        if tab != "model" or not run or not painted:
            return no_update, no_update
        try:
            m = data.info(run)
            tokens = data.tokens(run)
            input_id, _ = input_of_token(tokens, token)

            def build():
                pats = {}
                for layer in m.layers:
                    for head in m.heads:
                        rows, a = input_attention(data, run, layer, head, input_id, tokens)
                        if a is not None:
                            pats[(layer, head)] = downsample(a, MODEL_THUMB).astype(np.float32)
                return pats
            pats = data.caches["model-view"].get(run, input_id, build)
            n = len(tokens.index.rows(input_id))
            fig = model_view_figure(pats, m.layers, m.heads, MODEL_THUMB,
                                    f"input {input_id}: attention pattern of every head (rows = queries, columns = keys"
                                    + (f"; {n} tokens shown as {MODEL_THUMB}×{MODEL_THUMB} block means" if n > MODEL_THUMB else "")
                                    + "; each thumbnail scaled to its own max)")
            return fig, f"{len(pats)} of {len(m.layers) * len(m.heads)} heads · click a thumbnail to open that head"
        except VIEW_ERRORS as exc:
            return empty_figure(friendly(exc)), friendly(exc)


def _pair_info(words, segs, pair) -> str:
    a_end = int(np.flatnonzero(segs == 0)[-1])
    return (f"sentence A = positions 0–{a_end} «{words[a_end]}», B = {a_end + 1}–{len(words) - 1}"
            + ("" if pair == "all" else f"; showing {PAIR_FILTERS[pair]} only (weights as in the full rows, "
                                        f"not renormalised)"))


def sentence_view(data, run, layer, head, token, focus, hide, mode, weighted=False, extra=None, pair=None):
    """(figure, info line) of the Sentence View: lines of one or several heads of ``layer``,
    a heatmap of the current head, or the aggregate by position."""
    m = data.info(run)
    tokens = data.tokens(run)
    input_id, tok = input_of_token(tokens, token)
    roles = run_roles(data, run)
    heads = chosen_heads(head, extra, list(m.heads))
    attn = {}
    rows = k_rows = None
    for h in heads:
        q_r, k_r, a = head_attention(data, run, layer, h, input_id, tokens)
        if a is not None:
            attn[h], rows, k_rows = a, q_r, k_r
    if head not in attn:
        return empty_figure(f"L{layer} H{head}: queries/keys not stored yet (partial run)"), ""
    missing = [h for h in heads if h not in attn]
    heads = [h for h in heads if h in attn]
    words = [tokens.text[r] for r in rows]
    n = len(rows)
    from figures.encdec import KIND_LABEL, layer_kind
    kind = layer_kind(m, layer)
    cross = kind == "cross"
    key_words = [tokens.text[r] for r in k_rows] if cross else None
    hidden = hidden_keys(key_words if cross else words, hide, roles)
    text = tokens.inputs[input_id] if input_id < len(tokens.inputs) else ""
    if isinstance(text, (list, tuple)):  # a sentence pair
        text = " ‖ ".join(str(t) for t in text)
    several = len(heads) > 1
    suffix = f" · input {input_id} ({n} tokens)"
    if kind != "self":
        suffix = (f" · {KIND_LABEL[kind]}" + (f" · input {input_id} ({n} target → {len(k_rows)} source tokens)"
                                               if cross else f" · input {input_id} ({n} {'target' if kind == 'decoder' else 'source'} tokens)"))
    label = f"L{layer} H{', '.join(str(h) for h in heads)}" + suffix
    one_label = f"L{layer} H{head}" + suffix  # what views of the current head only (heatmap, aggregate) show
    info = [f"input {input_id}: {str(text)[:160]}{'…' if len(str(text)) > 160 else ''}"]
    if kind != "self":
        info.append("target (what the decoder read): " + " ".join(tokens.display[r] for r in tokens.side_rows(input_id, 1)))
    if hidden:
        info.append(f"hidden keys: {', '.join((key_words or words)[i] for i in sorted(hidden))} (rows renormalised over the rest)")
    asked = [r for r in (hide or []) if r in ("cls", "sep") and not getattr(roles, r, ())]
    if asked and roles is not None:
        info.append("this run has no " + " or ".join({"cls": "CLS-like", "sep": "SEP-like"}[r] for r in asked)
                    + " special token to hide")
    if missing:
        info.append(f"heads {', '.join(f'H{h}' for h in missing)} not stored yet (partial run)")
    if weighted:
        label += " · weighted by ‖v‖"
    if mode == "aggregate" and kind != "self":
        return empty_figure("aggregate by position is for runs of one token sequence; choose lines or heatmap for "
                            "this encoder–decoder head"), " · ".join(info)
    if mode == "aggregate":
        vn = None
        if weighted:
            try:
                vn = _run_vnorm(data, run, layer, head)
                info.append("each input's attention weighted by the value norms ‖v_j‖ (a·‖v‖, rows "
                            "renormalised) before averaging")
            except MODEL_ERRORS as exc:  # the plain aggregate is still useful
                info.append(_vnorm_problem(exc))
                label = label.replace(" · weighted by ‖v‖", "")
        agg = aggregate_matrix(data, run, layer, head, tokens, n, vn)
        if agg is None:
            return empty_figure("aggregate needs this head's queries/keys"), ""
        agg = hide_and_renormalise(agg, sorted(hidden))
        if several:
            info.append(f"the aggregate shows the current head H{head} only")
        if pair not in (None, "all") and segments(words, roles) is not None:
            info.append("the sentence A/B filter applies to the lines and the heatmap, not to the aggregate")
        label = one_label + (" · weighted by ‖v‖" if vn is not None else "")
        pos = [str(i) for i in range(n)]
        fig = attention_heatmap(pos, pos, agg, f"{label} · mean attention by position over all inputs "
                                f"(rows renormalised, cropped to {n})", colorscale="Purples",
                                label_positions=False, axis_titles=("query position", "key position"))
        return fig, " · ".join(info)
    if weighted and kind != "self":
        info.append("value-norm weighting is not available for encoder–decoder runs yet; showing plain attention")
        weighted = False
        label = label.replace(" · weighted by ‖v‖", "")
    if weighted:  # every drawn head weighted, or none (one failure: plain attention, said why)
        try:
            vns = {h: _input_vnorm(data, run, layer, h, input_id, rows) for h in heads}
            attn = {h: value_weighted(attn[h], vns[h]) for h in heads}
            info.append(f"weighted by value norms a·‖v‖ (rows renormalised); ‖v‖ of H{head} from "
                        f"{vns[head].min():.2f} to {vns[head].max():.2f}")
        except MODEL_ERRORS as exc:
            info.append(_vnorm_problem(exc))
            label = label.replace(" · weighted by ‖v‖", "")
            weighted = False
    segs = None if cross else segments(words, roles)
    pair = pair if pair in PAIR_FILTERS else "all"
    if segs is not None:
        info.append(_pair_info(words, segs, pair))
    elif pair != "all":
        info.append(f"input {input_id} has a single segment: the sentence A/B filter does not apply")
    f = None
    if focus and focus.get("input") == input_id and \
            0 <= int(focus.get("pos", -1)) < (len(k_rows) if focus.get("side") == "key" else n):
        f = (focus.get("side", "query"), int(focus["pos"]))
    model = sentence_lines(words, attn, sorted(hidden), f, pair, segs,
                           colors=(head_colors(heads, list(m.heads)) if several else {head: HEAD_LINE}),
                           key_words=key_words)
    use_heatmap = mode == "heatmap" or (mode in (None, "auto") and n > AUTO_HEATMAP_ABOVE)
    if use_heatmap:
        info.append("heatmap" + (f" (auto: more than {AUTO_HEATMAP_ABOVE} tokens)" if mode != "heatmap" else ""))
        if several:
            info.append(f"the heatmap shows the current head H{head} only (lines show several heads)")
        label = one_label + (" · weighted by ‖v‖" if weighted else "")
        a2 = model.matrices[head]
        qi, ki = np.flatnonzero(model.query_active), np.flatnonzero(model.key_active)
        lab = [f"{i}\u2009{w}" for i, w in enumerate(words)]
        klab = [f"{i}\u2009{w}" for i, w in enumerate(model.kwords)]
        return attention_heatmap([lab[i] for i in qi], [klab[i] for i in ki], a2[np.ix_(qi, ki)], label,
                                 label_positions=False), " · ".join(info)
    if f is not None:
        fw = (model.kwords if f[0] == "key" else words)[f[1]]
        info.append(f"isolating the lines of {f[0]} {f[1]} «{fw}» (click it again to show all)")
    else:
        info.append("click a token to isolate its lines")
    note = below_note(model)
    if note:
        info.append(note)
    return sentence_figure(model, label), " · ".join(info)
