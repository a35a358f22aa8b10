"""One reducer keeps controls, clicks and the URL query string in sync.

Triggered by the URL (first load, back/forward), a run switch, a head-kind change or a click on
a graph, it parses or updates and validates the state, sets the controls that changed and writes
the URL. Every other control (projection, colour, search, layer, head, …) changes nothing but
itself: its change goes straight to the views, and the browser writes the URL
(assets/clientside_state.js, from the same field table), steps prev/next head and layer and makes
the head kind follow the layer — so those views do not wait for a server round trip of this
reducer first. Views listen to the controls, so only what changed is redrawn."""
from __future__ import annotations

import numpy as np
from dash import ClientsideFunction, Input, Output, State, clientside_callback, ctx, no_update

from attention_atlas.dashboard_data import DataError
from figures.runinfo import RunInfo, as_runinfo
from figures.urlstate import DEFAULTS, FIELDS, parse, serialise
from figures.views import MODEL_THUMB, model_view_cell, patch_of_point
from layouts import ids

from .common import VIEW_ERRORS, friendly, on, schemes_for

_tog = (lambda v: ["on"] if v else [], on)
# (URL key, component id, property, (to control, from control)) — derived from the one field table
CONTROLS = [(f.key, f.component, f.prop, (f.to_control, f.from_control)) for f in FIELDS]
# the controls whose change the reducer must see (it may change other controls: a run switch
# revalidates the view, a head kind of an encoder–decoder run opens a layer of that kind); the
# others are States here and the browser writes the URL for them. The browser also steps through
# heads and layers (prev/next buttons) and makes the head kind follow the layer
# (assets/clientside_state.js; the run's layer kinds come in LAYER_KINDS)
REDUCED = ("run", "kind")
BROWSER_WRITTEN = [(cid, prop) for key, cid, prop, _ in CONTROLS if key not in REDUCED]
CLICKS = [ids.MATRIX_GRAPH, ids.SINGLE_GRAPH, ids.SENTENCE_GRAPH, ids.IMAGE_GRAPH, ids.MODEL_GRAPH]
# a click on the Matrix View's points opens its head in the browser (the matrix meta maps a point to
# its head and token); a click on an overlay point (search hit, selected input) comes here through
# MATRIX_CLICK, as the server knows the overlays' layout
CLICK_INPUTS = [(ids.MATRIX_CLICK, "data")] + [(c, "clickData") for c in CLICKS[1:]]
BUTTONS = [ids.PREV_HEAD_BTN, ids.NEXT_HEAD_BTN, ids.PREV_LAYER_BTN, ids.NEXT_LAYER_BTN]
EXTRA_OUT = [(ids.RUN_SELECT, "options"), (ids.LAYER_SELECT, "options"), (ids.HEAD_SELECT, "options"),
             (ids.COLOR_SELECT, "options"), (ids.DETAIL_TAB, "options"), (ids.PROJECTION_SELECT, "options"),
             (ids.DIM_SELECT, "options"), (ids.KIND_SELECT, "options"), (ids.KIND_CTL, "style"), (ids.FOCUS_STORE, "data"),
             (ids.URL, "search"), (ids.MSG_URL, "children"), (ids.RUN_INFO, "children"), (ids.BOOT_STORE, "data"),
             (ids.LAST_RUN, "data"), (ids.LAYER_KINDS, "data")]
PROJ_LABELS = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA", "attn-umap": "attention graph (UMAP)",
               "attn-tsne": "attention graph (t-SNE)"}


def run_label(run: RunInfo, status: dict) -> str:
    """What tells runs apart in the Run menu: model, corpus, size, coverage, when, and the id."""
    run = as_runinfo(run)
    when = run.created[:16].replace("T", " ")
    tag = "" if status.get("status") == "complete" else f" · partial {status['heads_done']}/{status['heads_total']}"
    projs = ",".join(PROJ_LABELS.get(p, p) for p in run.projections)
    size = (f"{run.n_tokens:,} source + {run.n_target_tokens:,} target tokens" if run.is_encdec and run.n_target_tokens
            else f"{run.n_tokens:,} tokens") if isinstance(run.n_tokens, int) else ""
    return (f"{run.model_name} · {run.corpus_name} · {size} · "
            f"{len(run.layers)}×{len(run.heads)} heads · {projs}{tag} · {when} · "
            f"{run.id}") if isinstance(run.n_tokens, int) else f"{run.id}"


def _run_label(data, run_id):
    try:
        return run_label(data.info(run_id), data.status(run_id))
    except DataError:
        return run_id


def default_run(data, runs: list, last: str | None) -> str:
    """The run a page opens without one in its link: the one this browser looked at last, else the
    bundled demo (minilm on the demo corpus), else the newest complete run, else the newest."""
    if last in runs:
        return last
    complete = []
    for r in runs:
        try:
            m = data.info(r)
            done = data.status(r)["status"] == "complete"
        except DataError:
            continue
        if m.corpus_name == "demo" and m.model_name.startswith("minilm"):
            if done:
                return r
        if done:
            complete.append(r)
    return complete[0] if complete else runs[0]


def held_projections(run: RunInfo) -> list[str]:
    """The run's projections in the order the page prefers them (t-SNE, UMAP, PCA, then others)."""
    stored = list(as_runinfo(run).projections)
    return [p for p in ("tsne", "umap", "pca") if p in stored] + [p for p in stored if p not in ("tsne", "umap", "pca")]


def resolve_view_projection(run: RunInfo, proj: str | None) -> str:
    held = held_projections(run)
    return proj if proj in held else held[0]


def layer_kinds(run: RunInfo) -> dict | None:
    """{layer: head kind} of an encoder–decoder run (the grid a layer belongs to), None for others."""
    from figures.encdec import kinds_of
    kinds = kinds_of(run)
    if not kinds:
        return None
    return {str(l): run.layer_kind(l) for l in run.layers if run.layer_kind(l) in kinds}


def _apply_click(data, state, trig, click, focus, meta=None):
    """Update state for a click on one of the graphs. Returns the new focus."""
    if not click or not click.get("points"):
        return focus
    pt = click["points"][0]
    run = state["run"]
    if trig == ids.MATRIX_GRAPH:
        from .matrix import matrix_data
        _, md, _ = matrix_data(data, run, state["proj"], _tog[0](state["translate"]), _tog[0](state["scaled"]),
                               state["lod"], state["sort"], state["rho"], meta=meta, kind=state.get("kind"))
        p, curve = int(pt.get("pointNumber", pt.get("pointIndex", -1))), int(pt.get("curveNumber") or 0)
        hit = None
        if curve == 0:
            hit = md.point_to_head(p)
        elif meta and curve in (1, 2, 3):
            from figures.matrix import overlay_points
            toks = {1: meta.get("hits"), 2: meta.get("sel"), 3: [meta.get("token")]}[curve] or []
            toks = [t for t in toks if t is not None]
            if toks:  # an overlay's layout (the ring = the selected token's own points), one block per head
                hit = overlay_points(md, None, toks).point_to_head(p)
        if hit:
            state["layer"], state["head"], state["token"], _ = hit
            return None
    elif trig == ids.SINGLE_GRAPH:
        if pt.get("curveNumber") in (0, 1) and pt.get("pointNumber") is not None:
            tokens = data.tokens(run)
            sd = tokens.sides(data.info(run), state["layer"])
            # trace 0: the head's queries, 1: its keys (encoder–decoder heads: rows of one side each)
            tok = int(pt["pointNumber"]) + (sd.q_off if pt["curveNumber"] == 0 else sd.k_off)
            if not 0 <= tok < tokens.n:
                return focus
            state["token"] = tok
            # the Sentence View isolates the selected token's lines (a query's, or a key's)
            from .common import input_of_token
            input_id, _ = input_of_token(tokens, tok)
            rows = tokens.side_rows(input_id, int(tokens.side[tok]))
            pos = int(np.flatnonzero(rows == tok)[0])
            return {"input": input_id, "side": "query" if pt["curveNumber"] == 0 else "key", "pos": pos}
    elif trig == ids.SENTENCE_GRAPH:
        tokens = data.tokens(run)
        from .common import input_of_token
        input_id, _ = input_of_token(tokens, state["token"])
        from figures.encdec import SIDES
        q_side, k_side = SIDES.get(tokens.sides(data.info(run), state["layer"]).kind, ("src", "src"))
        q_rows = tokens.side_rows(input_id, int(q_side == "tgt"))
        k_rows = tokens.side_rows(input_id, int(k_side == "tgt"))
        side = pos = None
        if "z" not in pt and pt.get("x") in (0, 1) and pt.get("pointNumber") is not None:
            # token markers: x = 0 queries (left), x = 1 keys (right); pointNumber = position
            pos, side = int(pt["pointNumber"]), ("query" if pt["x"] == 0 else "key")
        elif "z" in pt and isinstance(pt.get("y"), str):  # heatmap: y label "pos token"
            try:
                pos, side = int(str(pt["y"]).split("\u2009")[0]), "query"
            except ValueError:
                pos = None
        if pos is not None and 0 <= pos < len(q_rows if side == "query" else k_rows):
            new = {"input": input_id, "side": side, "pos": pos}
            if focus == new:
                return None
            if side == "query":
                state["token"] = int(q_rows[pos])
            return new
    elif trig == ids.IMAGE_GRAPH:
        cd = patch_of_point(pt)
        if cd is not None:
            tokens = data.tokens(run)
            from .common import input_of_token
            input_id, _ = input_of_token(tokens, state["token"])
            rows = tokens.index.rows(input_id)
            pr = np.asarray(tokens.arrays["patch_row"])[rows]
            pc = np.asarray(tokens.arrays["patch_col"])[rows]
            hit = np.flatnonzero((pr == int(cd[0])) & (pc == int(cd[1])))
            if len(hit):
                state["token"] = int(rows[hit[0]])
    elif trig == ids.MODEL_GRAPH:
        m = data.info(run)
        cell = model_view_cell(float(pt.get("x", -1)), float(pt.get("y", -1)), MODEL_THUMB,
                               len(m.layers), len(m.heads))
        if cell:
            state["layer"], state["head"] = m.layers[cell[0]], m.heads[cell[1]]
    return focus


def register(app, context):
    data = context.data
    from .matrix import matrix_outputs
    # the page load's Matrix View comes with the controls (one round trip instead of two)
    matrix_out = [Output(ids.MATRIX_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.MATRIX_OVERLAY, "figure", allow_duplicate=True),
                  Output(ids.MATRIX_NOTE, "children", allow_duplicate=True),
                  Output(ids.MSG_MATRIX, "children", allow_duplicate=True), Output(ids.MATRIX_META, "data", allow_duplicate=True)]
    outputs = [Output(cid, prop) for _, cid, prop, _ in CONTROLS] + [Output(c, p) for c, p in EXTRA_OUT] + matrix_out
    inputs = ([Input(ids.URL, "search"), Input(ids.URL_POP, "data")]
              + [Input(cid, prop) for key, cid, prop, _ in CONTROLS if key in REDUCED]
              + [Input(c, p) for c, p in CLICK_INPUTS])
    n_ctl = len(CONTROLS)
    n_in = len(inputs) - 2
    MSG_URL = n_ctl + EXTRA_OUT.index((ids.MSG_URL, "children"))

    @app.callback(outputs, inputs, *[State(cid, prop) for _, cid, prop, _ in CONTROLS],
                  State(ids.FOCUS_STORE, "data"), State(ids.RUN_SELECT, "options"), State(ids.BOOT_STORE, "data"),
                  State(ids.MATRIX_META, "data"), State(ids.LAST_RUN, "data"), State(ids.LOD_COST, "data"),
                  prevent_initial_call="initial_duplicate")
    def reduce_state(search, popped, *args):
        n_red = len(REDUCED)
        clicks = list(args[n_red:n_red + len(CLICKS)])
        clicks[0] = clicks[0].get("click") if isinstance(clicks[0], dict) else None  # MATRIX_CLICK: {click, t}
        values = args[n_in:n_in + n_ctl]   # every control's current value (the triggering one's new value)
        focus, run_options, booted, meta, last_run, cost = args[-6:]
        focus0 = focus
        trig = ctx.triggered_id
        if trig == ids.MATRIX_CLICK:
            trig = ids.MATRIX_GRAPH
        if trig == ids.URL_POP:  # back/forward to an entry the Location component already held
            if isinstance(popped, dict) and isinstance(popped.get("search"), str):
                search = popped["search"]
            elif booted:
                return [no_update] * len(outputs)
        current = {key: conv[1](v) for (key, _, _, conv), v in zip(CONTROLS, values)}
        first = not booted or trig in (ids.URL, ids.URL_POP)
        problems = []
        if first:
            state, problems = parse(search)
            focus = None
        else:
            state = dict(current)
        keep = [no_update] * len(outputs)
        try:
            runs = data.run_ids()
        except DataError as exc:
            keep[MSG_URL] = str(exc)
            return keep
        if not runs:
            keep[MSG_URL] = (f"the store at {data.path} holds no runs yet: start one in the Runs & precompute tab "
                             f"or run `python -m precompute run ... --cache {data.path}`")
            if first:
                keep[[c[0] for c in CONTROLS].index("atab")] = "precompute"
            return keep
        try:
            if state["run"] not in runs:
                pick = default_run(data, runs, last_run)
                if state["run"] is not None:
                    problems.append(f"unknown run {state['run']!r} in the link; showing {pick!r} "
                                    f"(stored runs: {', '.join(runs)})")
                state["run"] = pick
            run = data.info(state["run"])
            # the run menu has already changed when this runs: the run shown before is the URL's
            shown_before = parse(search)[0]["run"] if search else last_run
            run_changed = not first and trig == ids.RUN_SELECT and state["run"] != shown_before
            if run_changed:  # what was selected belongs to the other run's tokens
                state["token"] = None
                focus = None
            if trig in CLICKS:
                focus = _apply_click(data, state, trig, clicks[CLICKS.index(trig)], focus, meta)
            # ----- encoder–decoder runs: one Matrix View grid per head kind (figures.encdec)
            from figures.encdec import grid_layers, resolve_kind
            if run.is_encdec:
                if trig == ids.KIND_SELECT and state["layer"] in run.layers \
                        and run.layer_kind(state["layer"]) != state["kind"] and grid_layers(run, state["kind"]):
                    state["layer"] = grid_layers(run, state["kind"])[0]   # open a head of the grid shown
                elif first and state["kind"] == "auto":
                    state["kind"] = resolve_kind(run, None, state["layer"])
                state["kind"] = resolve_kind(run, state["kind"], state["layer"])
            else:
                state["kind"] = "auto"
            # ----- validate against the run
            if state["layer"] not in run.layers:
                problems.append(f"layer {state['layer']} is not in run {state['run']!r} "
                                f"(layers {run.layers[0]}–{run.layers[-1]}); showing layer {run.layers[0]}")
                state["layer"] = run.layers[0]
            if state["head"] not in run.heads:
                problems.append(f"head {state['head']} is not in run {state['run']!r} "
                                f"(heads {run.heads[0]}–{run.heads[-1]}); showing head {run.heads[0]}")
                state["head"] = run.heads[0]
            held = held_projections(run)
            if state["proj"] not in held:
                asked = first and "proj=" in (search or "")
                if asked or (not first and trig == ids.PROJECTION_SELECT):
                    problems.append(f"{PROJ_LABELS.get(state['proj'], state['proj'])} is not stored in run "
                                    f"{state['run']!r} (it holds {', '.join(PROJ_LABELS.get(p, p) for p in held)}); "
                                    f"showing {PROJ_LABELS.get(held[0], held[0])} — add it with "
                                    f"`python -m precompute run ... --projections {state['proj']}`")
                state["proj"] = held[0]
            dims = sorted(run.dims)
            if state["dim"] not in dims:
                if first and "dim=" in (search or ""):
                    problems.append(f"{state['dim']}D is not stored in run {state['run']!r}; showing {dims[0]}D")
                state["dim"] = dims[0]
            schemes = schemes_for(run)
            if state["color"] not in schemes:
                if first and state["color"] != DEFAULTS["color"]:
                    problems.append(f"colour scheme {state['color']!r} does not apply to this run; showing query/key")
                state["color"] = "qk"
            image = run.is_image
            if run_changed or first:
                if image and state["tab"] == "sentence":
                    state["tab"] = "image"
                if not image and state["tab"] == "image":
                    state["tab"] = "sentence"
            if state["token"] is not None:
                n_tok = run.n_tokens_joined   # source then target rows
                if n_tok is not None and state["token"] >= n_tok:
                    problems.append(f"token {state['token']} is not in run {state['run']!r}; no token selected")
                    state["token"] = None
            st = data.status(state["run"])
            info = (f"{run.model_name} · {len(run.layers)} layers × {len(run.heads)} heads"
                    f"{' · causal' if run.causal else ''} · {'?' if run.n_tokens is None else run.n_tokens} "
                    + (f"source + {run.n_target_tokens} target ({run.targets or 'given'}) " if run.n_target_tokens else "")
                    + f"tokens in "
                    f"{'?' if run.n_inputs is None else run.n_inputs} {'images' if image else 'inputs'} · "
                    + ("complete" if st["status"] == "complete"
                       else f"PARTIAL run: {st['heads_done']}/{st['heads_total']} heads done — showing what exists"))
        except DataError as exc:
            keep[MSG_URL] = str(exc)
            return keep
        except VIEW_ERRORS as exc:
            keep[MSG_URL] = friendly(exc)
            return keep

        out = []
        for key, cid, prop, conv in CONTROLS:
            if first or state[key] != current[key]:
                out.append(conv[0](state[key]))
            else:
                out.append(no_update)
        opts_needed = first or run_changed or trig == ids.RUN_SELECT or not run_options
        listed = [o.get("value") for o in (run_options or [])]
        run_opts = [{"label": _run_label(data, r), "value": r} for r in runs]
        fresh = opts_needed or listed != runs or [o.get("label") for o in run_options or []] != [o["label"] for o in run_opts]
        out.append(run_opts if fresh else no_update)
        if opts_needed:
            from figures.encdec import layer_label
            out.append([{"label": layer_label(run, l), "value": l} for l in run.layers])
            out.append([{"label": f"H{h}", "value": h} for h in run.heads])
            out.append([{"label": v, "value": k} for k, v in schemes.items()])
            out.append([{"label": "Sentence View", "value": "sentence", "disabled": image},
                        {"label": "Image View", "value": "image", "disabled": not image},
                        {"label": "Model View", "value": "model"}])
            out.append([{"label": PROJ_LABELS.get(p, p), "value": p} for p in held])
            out.append([{"label": f"{d}D", "value": d} for d in dims])
            from figures.encdec import kind_options
            kopts = kind_options(run)
            out.append(kopts)
            out.append({"display": "block"} if kopts else {"display": "none"})
        else:
            out += [no_update] * 8
        out.append(focus if (first or focus != focus0) else no_update)
        out.append(serialise(state))
        out.append(" · ".join(problems) if problems else ("" if first else no_update))
        out.append(info)
        out.append(True)
        out.append(state["run"] if state["run"] != last_run else no_update)
        out.append(layer_kinds(run) if opts_needed else no_update)
        if first:
            out += list(matrix_outputs(data, state["run"], state["proj"], _tog[0](state["translate"]),
                                       _tog[0](state["scaled"]), state["lod"], state["sort"], state["rho"],
                                       state["color"], state["q"], _tog[0](state["regex"]), state["token"], cost,
                                       state["kind"]))
        else:
            out += [no_update] * len(matrix_out)
        return out

    # a click on the Matrix View's points: its head and token, in the browser
    clientside_callback(
        ClientsideFunction(namespace="atlas_state", function_name="open_head"),
        Output(ids.LAYER_SELECT, "value", allow_duplicate=True), Output(ids.HEAD_SELECT, "value", allow_duplicate=True),
        Output(ids.TOKEN_STORE, "data", allow_duplicate=True), Output(ids.FOCUS_STORE, "data", allow_duplicate=True),
        Output(ids.MATRIX_CLICK, "data"), Input(ids.MATRIX_GRAPH, "clickData"), State(ids.MATRIX_META, "data"),
        State(ids.LAYER_SELECT, "value"), State(ids.HEAD_SELECT, "value"), State(ids.TOKEN_STORE, "data"),
        State(ids.FOCUS_STORE, "data"), prevent_initial_call=True)

    # prev/next head and layer, and the head kind that follows the layer: in the browser
    clientside_callback(
        ClientsideFunction(namespace="atlas_state", function_name="step"),
        Output(ids.LAYER_SELECT, "value", allow_duplicate=True), Output(ids.HEAD_SELECT, "value", allow_duplicate=True),
        [Input(b, "n_clicks") for b in BUTTONS], State(ids.LAYER_SELECT, "value"), State(ids.LAYER_SELECT, "options"),
        State(ids.HEAD_SELECT, "value"), State(ids.HEAD_SELECT, "options"), prevent_initial_call=True)
    clientside_callback(
        ClientsideFunction(namespace="atlas_state", function_name="kind_of_layer"),
        Output(ids.KIND_SELECT, "value", allow_duplicate=True), Input(ids.LAYER_SELECT, "value"),
        State(ids.KIND_SELECT, "value"), State(ids.LAYER_KINDS, "data"), prevent_initial_call=True)

    # the URL for a control the reducer does not see (assets/clientside_state.js): no server call
    clientside_callback(
        ClientsideFunction(namespace="atlas_state", function_name="write_url"),
        Output(ids.URL_WRITTEN, "data"), [Input(c, p) for c, p in BROWSER_WRITTEN],
        [State(cid, prop) for key, cid, prop, _ in CONTROLS if (cid, prop) not in BROWSER_WRITTEN],
        State(ids.STATE_FIELDS, "data"), State(ids.BOOT_STORE, "data"), prevent_initial_call=True)
