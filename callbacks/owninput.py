"""Your own input in the global picture (see analysis/own_input.py for the maths).

Flow (heavy work runs in Dash background callbacks, results go through a disk cache beside the
jobs directory so the web process and the job processes share them):

  request_input (normal: validates, one-line messages)  → input-request
  compute_input (background: model capture, placement in every head) → input-store
  request_transform (normal: only when the real transform is asked for) → input-transform-request
  transform_input (background: openTSNE / umap transform for the current head) → input-transform-store
  draw_input (normal, fast: reads the disk cache) → grid of every head, current head, sentence view
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from dash import Input, Output, State, ctx, no_update

from analysis import own_input as oi
from attention_atlas.core import runtime
from attention_atlas.dashboard_data import DataError
from figures.analysis_views import own_grid_figure, own_head_figure
from figures.attention import attention
from figures.runinfo import RunInfo
from figures.common import display_token
from figures.views import attention_heatmap, empty_figure, image_figure, sentence_lines_figure
from precompute.faithfulness import method_label
from layouts import ids

from .common import VIEW_ERRORS, friendly, gate_fields, is_image, on, resolve_projection, resolve_variant

EXPIRE = 24 * 3600
AUTO_HEATMAP_ABOVE = 60
def disk_cache(settings):
    """The own-input disk cache under the settings' jobs folder (runtime.disk_cache: one handle per
    process, shared by the web process and the job processes through the files)."""
    return runtime.disk_cache(settings.jobs_path / "owninput", size_limit=2**30)


def _get(context, run, key):
    """A decoded entry of the own-input disk cache, memoised in the ``own-input`` cache region."""
    return context.caches["own-input"].get(run, key, lambda: disk_cache(context.settings).get(key))


def _variant_method(m, translate, scaled, proj):
    variant, vnote = resolve_variant(m, on(translate), on(scaled))
    method, pnote = resolve_projection(m, proj or "pca")
    return variant, method, " · ".join(x for x in (vnote, pnote) if x)


def grid_key(key, variant, method):
    return f"grid/{key}/{variant}/{method}"


def current_placement(context, store_data, run, layer, head):
    """The own input's (2n, 2) coordinates in head (layer, head) of the stored projection that
    ``store_data`` (the ``input-store`` value) was placed in, plus its tokens; None when there is
    no input for this run. For other views (Single / Matrix View) that want to overlay it."""
    if not store_data or store_data.get("run") != run:
        return None
    grid = _get(context, run, store_data.get("grid", ""))
    if grid is None or (layer, head) not in grid.new:
        return None
    return grid.new[(layer, head)], list(store_data.get("tokens") or [])


def compute_grid(store, m, own: oi.OwnInput, variant, method) -> oi.GridPlacement:
    run = m.id
    dims = list(m.dims)
    dim = 2 if 2 in dims else dims[0]
    n_tokens = int(m.n_tokens or len(store.tokens(run)["text"]))
    metric = m.metric
    return oi.place_all_heads(lambda l, h: store.qk(run, l, h),
                              lambda l, h: store.coords(run, l, h, variant, method, dim),
                              own, list(m.layers), list(m.heads), variant, method, n_tokens, metric)


def own_sentence_figure(own: oi.OwnInput, layer: int, head: int, scale: float, causal: bool,
                        window: int | None = None, softcap: float | None = None, bias=None):
    q, k = own.qk(layer, head)
    a = attention(q, k, scale, causal, window, softcap, bias)
    words = [display_token(t) for t in own.tokens]
    title = f"your input · L{layer} H{head} ({own.n} tokens)"
    if own.image is not None and own.grid:
        g = int(own.grid[0])
        p = own.n_prefix
        w = a[0, p:p + g * g].reshape(g, g)
        return image_figure(own.image, g, w, float(a[0, :p].sum()) if p else None, None, "heatmap", None,
                            title + " · attention from CLS"), a
    if own.n > AUTO_HEATMAP_ABOVE:
        return attention_heatmap(words, words, a, title), a
    return sentence_lines_figure(words, a, (), None, title), a


def compute_input(settings, req):
    """Your input through the model and into every head (background; imported by name by job processes)."""
    if not req or not req.get("key"):
        return no_update, no_update
    from analysis.live import run_model
    from precompute.models.base import ModelLoadError, first_line
    from precompute.store import Store

    t0 = time.time()
    cache = disk_cache(settings)
    key, run = req["key"], req["run"]
    try:
        with Store(Path(settings.cache).expanduser(), readonly=True) as store:
            m = RunInfo.from_manifest(store.manifest(run))
            capd = cache.get(f"cap/{key}")
            reused = capd is not None
            if capd is None:
                if "text" not in req and not req.get("image"):
                    return None, "your input is no longer cached: run the model again"
                adapter = run_model(m)
                if req.get("image"):
                    raw = cache.get(f"img/{key}")
                    if raw is None:
                        return None, "the uploaded image is no longer cached: upload it again"
                    own = oi.capture_own_input(adapter, list(m.layers), image=raw, label=req.get("label", ""))
                else:
                    own = oi.capture_own_input(adapter, list(m.layers), text=req["text"], label=req.get("label", ""))
                cache.set(f"cap/{key}", own.to_dict(), expire=EXPIRE)
            else:
                own = oi.OwnInput.from_dict(capd)
            gk = grid_key(key, req["variant"], req["method"])
            if cache.get(gk) is None:
                grid = compute_grid(store, m, own, req["variant"], req["method"])
                cache.set(gk, grid, expire=EXPIRE)
    except (oi.InputError, DataError, ValueError, ModelLoadError) as exc:
        return None, first_line(exc)
    except Exception as exc:  # noqa: BLE001 - the job's edge: one line for the page, the trace in the log
        return None, friendly(exc)
    note = f"{own.n} tokens"
    if own.truncated:
        note += f" (truncated: {own.truncated} tokens beyond the model's limit of {m.max_length} dropped)"
    out = {"key": key, "run": run, "variant": req["variant"], "method": req["method"], "n": own.n,
           "tokens": list(own.tokens), "truncated": own.truncated, "label": own.label or req.get("label", ""),
           "grid": gk, "note": req.get("note", "")}
    return out, f"done in {time.time() - t0:.1f} s{' (model output reused)' if reused else ''}: {note}"


def transform_input(settings, req):
    """openTSNE / UMAP transform for the current head (background; imported by name by job processes)."""
    if not req:
        return None
    from precompute.projections import ProjectionParams
    from precompute.store import Store

    tkey = "tf/{key}/{layer}/{head}/{variant}/{method}".format(**req)
    cache = disk_cache(settings)
    hit = cache.get(tkey)
    if hit is not None:
        return hit
    try:
        capd = cache.get(f"cap/{req['key']}")
        if capd is None:
            return {**req, "error": "your input is no longer cached: run the model again"}
        own = oi.OwnInput.from_dict(capd)
        with Store(Path(settings.cache).expanduser(), readonly=True) as store:
            m = RunInfo.from_manifest(store.manifest(req["run"]))
            qk = store.qk(req["run"], req["layer"], req["head"])
            coords = store.coords(req["run"], req["layer"], req["head"], req["variant"], req["method"], 2)
        if qk is None or coords is None:
            return {**req, "error": f"L{req['layer']} H{req['head']} is not stored yet"}
        params = ProjectionParams(**m.params)
        t0 = time.time()
        p = oi.transform_in_head(qk[0], qk[1], coords, *own.qk(req["layer"], req["head"]), req["variant"],
                                 req["method"], params, list(m.projections))
        out = {**req, "coords": p.coords.astype(np.float32).tolist(), "how": p.how,
               "seconds": round(time.time() - t0, 2)}
        cache.set(tkey, out, expire=EXPIRE)
        return out
    except ValueError as exc:  # e.g. an attention-graph layout: no transform, said in one line
        return {**req, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the job's edge: one line for the page, the trace in the log
        return {**req, "error": friendly(exc)}


def register(app, context):
    data = context.data
    # ------------------------------------------------------------------ text box or upload
    @app.callback(Output(ids.INPUT_TEXT_BOX, "style"), Output(ids.INPUT_UPLOAD_BOX, "style"),
                  Input(ids.RUN_SELECT, "value"), Input(ids.MATRIX_PAINTED, "data"))
    def show_box(run, painted=None):  # painted: held until the Matrix View answered (matrix.sort_choices)
        try:
            img = bool(run) and is_image(data.info(run))
        except DataError:
            img = False
        return ({"display": "none"}, {"display": "block"}) if img else ({"display": "block"}, {"display": "none"})

    # ------------------------------------------------------------------ request (cheap checks)
    @app.callback(Output(ids.INPUT_REQUEST, "data"), Output(ids.INPUT_STATUS, "children"),
                  Input(ids.INPUT_SUBMIT, "n_clicks"), Input(ids.INPUT_UPLOAD, "contents"),
                  Input(ids.TRANSLATE_TOGGLE, "value"), Input(ids.SCALED_TOGGLE, "value"),
                  Input(ids.PROJECTION_SELECT, "value"), Input(ids.RUN_SELECT, "value"),
                  State(ids.INPUT_TEXT, "value"), State(ids.INPUT_UPLOAD, "filename"), State(ids.INPUT_STORE, "data"),
                  Input(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)
    # painted: held until the Matrix View answered (matrix.sort_choices)
    def request_input(n_clicks, contents, translate, scaled, proj, run, text, filename, current, painted=None):
        trig = ctx.triggered_id
        if not run:
            return no_update, no_update
        try:
            m = data.info(run)
            from figures.encdec import not_applicable
            if not_applicable(m, "input"):
                return no_update, not_applicable(m, "input")
            variant, method, note = _variant_method(m, translate, scaled, proj)
            if trig in (ids.INPUT_SUBMIT, ids.INPUT_UPLOAD):
                identity = m.identity or (m.model_name if m.model_name != "?" else "")
                if is_image(m):
                    if trig == ids.INPUT_SUBMIT and not contents:
                        return no_update, "upload a PNG or JPEG image first"
                    img = oi.decode_image(contents, filename)
                    raw = np.asarray(img, np.uint8)
                    key = oi.input_key(run, identity, raw.tobytes() + str(raw.shape).encode())
                    disk_cache(context.settings).set(f"img/{key}", raw, expire=EXPIRE)
                    req = {"key": key, "run": run, "image": True, "label": filename or "uploaded image"}
                else:
                    text = oi.check_text(text)
                    key = oi.input_key(run, identity, text)
                    req = {"key": key, "run": run, "text": text, "label": text[:200]}
                req.update(variant=variant, method=method, note=note, t=time.time())
                return req, ""
            # a view control changed: re-place the current input (its capture is cached)
            if not current or current.get("run") != run:
                return no_update, ("" if current and current.get("run") != run else no_update)
            if (current.get("variant"), current.get("method")) == (variant, method):
                return no_update, no_update
            req = {"key": current["key"], "run": run, "variant": variant, "method": method, "t": time.time(),
                   "label": current.get("label", ""), "note": note}
            return req, ""
        except (oi.InputError, DataError) as exc:
            return no_update, str(exc)
        except VIEW_ERRORS as exc:
            return no_update, friendly(exc)

    # ------------------------------------------------------------------ the model + every head
    app.callback(Output(ids.INPUT_STORE, "data"), Output(ids.INPUT_JOB_MSG, "children"),
                 Input(ids.INPUT_REQUEST, "data"), background=True, interval=400, prevent_initial_call=True,
                 running=[(Output(ids.INPUT_SUBMIT, "disabled"), True, False),
                          (Output(ids.INPUT_RUNNING, "style"), {"display": "block"}, {"display": "none"})])(compute_input)

    # ------------------------------------------------------------------ real transform (opt-in)
    @app.callback(Output(ids.INPUT_TRANSFORM_REQUEST, "data"),
                  # the head through the tab's gate: a hidden tab asks for nothing on a head change
                  Input(ids.INPUT_STORE, "data"), Input(ids.GATE_INPUT, "data"),
                  Input(ids.INPUT_EXACT, "value"), prevent_initial_call=True)
    def request_transform(store_data, gate, exact):
        layer, head = gate_fields(gate, "layer", "head")
        if not on(exact) or not store_data or store_data.get("method") == "pca" or layer is None or head is None:
            return no_update  # no job (draw ignores a transform that is not for the current head)
        if store_data.get("method") in oi.ATTN_LAYOUTS:
            return no_update  # no transform exists: draw says so in one line
        return {"key": store_data["key"], "run": store_data["run"], "variant": store_data["variant"],
                "method": store_data["method"], "layer": int(layer), "head": int(head)}

    app.callback(Output(ids.INPUT_TRANSFORM_STORE, "data"), Input(ids.INPUT_TRANSFORM_REQUEST, "data"),
                 background=True, interval=400, prevent_initial_call=True)(transform_input)

    # ------------------------------------------------------------------ drawing
    @app.callback(Output(ids.INPUT_GRID_GRAPH, "figure"), Output(ids.INPUT_HEAD_GRAPH, "figure"),
                  Output(ids.INPUT_SENTENCE_GRAPH, "figure"), Output(ids.INPUT_INFO, "children"),
                  Input(ids.INPUT_STORE, "data"), Input(ids.INPUT_TRANSFORM_STORE, "data"),
                  # the shared selection through the tab's gate: no round trip while the tab is hidden
                  Input(ids.GATE_INPUT, "data"), Input(ids.INPUT_EXACT, "value"),
                  State(ids.ANALYSIS_TAB, "value"), prevent_initial_call=True)
    def draw_input(store_data, tf, gate, exact, tab):
        run, layer, head = gate_fields(gate, "run", "layer", "head")
        if tab != "input" or not run or layer is None or head is None:
            return (no_update,) * 4
        blank = empty_figure("")
        if not store_data:
            return (empty_figure("type a sentence (or upload an image for image runs) and press “Run the model”"),
                    blank, blank, "")
        if store_data.get("run") != run:
            return empty_figure("your input was run on another run: run the model again for this one"), blank, blank, ""
        if on(exact) and store_data.get("method") in oi.ATTN_LAYOUTS:  # refused in one line, no job
            tf = {**store_data, "layer": int(layer), "head": int(head),
                  "error": oi.attn_transform_refusal(store_data["method"])}
        try:
            return draw(context, store_data, tf if on(exact) else None, int(layer), int(head))
        except VIEW_ERRORS as exc:
            return empty_figure(friendly(exc)), blank, blank, friendly(exc)


def draw(context, sd, tf, layer, head):
    data = context.data
    m = data.info(sd["run"])
    capd = _get(context, sd["run"], f"cap/{sd['key']}")
    grid = _get(context, sd["run"], sd["grid"])
    if capd is None or grid is None:
        msg = "your input is no longer cached: run the model again"
        return empty_figure(msg), empty_figure(""), empty_figure(""), msg
    own = oi.OwnInput.from_dict(capd)
    words = [display_token(t) for t in own.tokens]
    layers, heads = list(m.layers), list(m.heads)
    name = method_label(sd["method"])
    n_exact = sum(bool(v) for v in grid.exact.values())
    gfig = own_grid_figure(layers, heads, grid.ref, grid.new, own.n, words, (layer, head), grid.exact,
                           f"your input in every head's stored {name} ({sd['variant']}) · grey: corpus sample "
                           f"({len(grid.sample)} tokens) · green: your queries · pink: your keys"
                           + ("" if n_exact == len(grid.new) else " · ≈ approximate placement"))
    cur = (layer, head)
    if cur in grid.new:
        coords = data.coords(sd["run"], layer, head, sd["variant"], sd["method"], 2)
        tokens = data.tokens(sd["run"])
        transformed, how = None, grid.how[cur]
        if tf and tf.get("key") == sd["key"] and (tf.get("layer"), tf.get("head")) == cur \
                and (tf.get("variant"), tf.get("method")) == (sd["variant"], sd["method"]):
            if tf.get("error"):
                how += (f" · {tf['error']}" if sd["method"] in oi.ATTN_LAYOUTS
                        else f" · real transform failed: {tf['error']}")
            else:
                transformed = np.asarray(tf["coords"], np.float64)
                how = f"{tf['how']} ({tf.get('seconds', '?')} s)"
        ctxs = tokens.contexts
        hfig = own_head_figure(coords, ctxs + ctxs if len(ctxs) * 2 == len(coords) else None, grid.new[cur], words,
                               f"L{layer} H{head} · {how.split(' (')[0]}", transformed)
    else:
        hfig, how = empty_figure(f"L{layer} H{head} is not in this run's stored heads"), ""
    sfig, _ = own_sentence_figure(own, layer, head, **m.layer_semantics(layer, head))
    label = sd.get("label") or ""
    info = (f"your input «{label[:120]}{'…' if len(label) > 120 else ''}»: {own.n} tokens"
            + (f" (truncated: {own.truncated} tokens dropped)" if own.truncated else "")
            + f" · placed in {len(grid.new)} heads ({n_exact} exactly)"
            + (f" · {len(grid.missing)} heads not stored" if grid.missing else "")
            + (f" · current head: {how}" if how else "")
            + (f" · {sd['note']}" if sd.get("note") else ""))
    return gfig, hfig, sfig, info
