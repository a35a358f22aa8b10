"""Helpers shared by the callbacks (no figure maths here)."""
from __future__ import annotations

import logging

from dash import html

from attention_atlas.dashboard_data import DataError
from figures.colors import IMAGE_SCHEMES, TEXT_SCHEMES
from figures.runinfo import RunInfo, as_runinfo

log = logging.getLogger("atlas")


def run_info(manifest) -> RunInfo:
    """The typed reader of a manifest (figures.runinfo.RunInfo); a RunInfo is returned as is."""
    return as_runinfo(manifest)


def is_image(run: RunInfo) -> bool:
    return as_runinfo(run).is_image


def schemes_for(run: RunInfo) -> dict:
    return IMAGE_SCHEMES if is_image(run) else TEXT_SCHEMES


def on(v) -> bool:
    return bool(v) and "on" in v


def resolve_variant(run: RunInfo, translate: bool, scaled: bool) -> tuple[str, str]:
    """(variant to show, note). Falls back to the unscaled/available variant with a note."""
    run = as_runinfo(run)
    available = list(run.variants)
    want = ("translated" if translate else "raw") + ("-scaled" if scaled else "")
    if want in available:
        return want, ""
    if scaled and want.replace("-scaled", "") in available:
        return want.replace("-scaled", ""), (f"norm scaling was not computed for run {run.id!r} "
                                             f"(stored variants: {', '.join(available)}); showing the unscaled embedding")
    return available[0], (f"variant {want!r} is not stored for run {run.id!r}; "
                          f"showing {available[0]!r}")


def resolve_projection(run: RunInfo, proj: str) -> tuple[str, str]:
    methods = list(as_runinfo(run).projections)
    if proj in methods:
        return proj, ""
    best = next((p for p in ("tsne", "umap", "pca") if p in methods), methods[0])
    return best, f"{proj} was not computed for this run; showing {best}"


# What a view's own code raises on a problem with the data or with the request's values (the
# browser sends whatever JSON it likes): shown in the view itself in one line (``friendly``).
# Anything else is a bug: it reaches the app's safety net (app.py, ``on_error``), which logs the
# traceback and shows one line at the top of the page.
VIEW_ERRORS = (DataError, ValueError, TypeError, LookupError, ArithmeticError, OSError)
# ... and what running the run's model adds (value norms, own input, ablation): loading refused
# (ModelLoadError), capture refused (CaptureRefused), torch (RuntimeError), a missing package.
MODEL_ERRORS = VIEW_ERRORS + (RuntimeError, ImportError, MemoryError)


def gate_fields(gate, *names):
    """The named fields of an analysis tab's gate store (callbacks/analysis.py): None for each when
    the gate has not been written yet."""
    gate = gate if isinstance(gate, dict) else {}
    return tuple(gate.get(n) for n in names)


def friendly(exc: Exception) -> str:
    """One line for the page; anything but a DataError is logged with its traceback."""
    if isinstance(exc, DataError):
        return str(exc)
    log.exception("callback failed")
    return f"something went wrong while drawing this view ({exc.__class__.__name__}: {exc}); the rest of the page still works"


def legend_children(legend: dict, title: str):
    kids = [html.B(title + ":", style={"marginRight": "6px"})]
    for label, colour in legend.get("items", []):
        kids.append(html.Span([html.Span(className="sw", style={"background": colour}), label]))
    if "gradient" in legend:
        from plotly.colors import sample_colorscale
        import numpy as np
        cols = sample_colorscale(legend["gradient"], list(np.linspace(0, 1, 7)), colortype="rgb")
        kids.append(html.Span([legend.get("lo", ""), html.Span(className="grad", style={
            "background": f"linear-gradient(to right, {', '.join(cols)})"}), legend.get("hi", "")]))
    for label, cols, lo, hi in legend.get("gradients", []):
        kids.append(html.Span([f"{label}: {lo}", html.Span(className="grad", style={
            "background": f"linear-gradient(to right, {', '.join(cols)})"}), hi]))
    if legend.get("definition"):  # a scheme that is a measured figure states its definition
        kids.append(html.Span(legend["definition"], className="legend-definition", title=legend["definition"],
                              style={"fontSize": "11px", "color": "#555", "flexBasis": "100%"}))
    return kids


def input_of_token(tokens, token):
    """(input id, token) for the selected token, defaulting to the first token of the first input."""
    import numpy as np
    if token is None or not (0 <= int(token) < tokens.n):
        first_input = int(tokens.index.input_ids[0]) if len(tokens.index.input_ids) else 0
        rows = tokens.index.rows(first_input)
        return first_input, (int(rows[0]) if len(rows) else None)
    return int(np.asarray(tokens.arrays["input_id"])[int(token)]), int(token)
