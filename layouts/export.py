"""The export bar in the page's top bar: pick a view, download it as PNG, SVG, HTML or CSV.

Views are listed in :data:`VIEWS` (core views) plus one entry per analysis tab (its graphs are
found in the page by container id, so a new tab needs no change here)."""
from __future__ import annotations

from dash import dcc, html

from layouts import ids

# (value, label, container id, has its own CSV table on the server)
VIEWS = [
    ("matrix", "Matrix View", ids.MATRIX_STACK, True),   # the points and the overlay drawn over them
    ("single", "Single View", ids.SINGLE_GRAPH, True),
    ("sentence", "Sentence View", ids.SENTENCE_GRAPH, True),
    ("image", "Image View", ids.IMAGE_GRAPH, True),
    ("model", "Model View", ids.MODEL_GRAPH, True),
]


def views() -> list[tuple[str, str, str, bool]]:
    """Every exportable view: the core views, then each analysis tab (generic export of the
    graphs it shows)."""
    try:
        from layouts.analysis import TABS
    except ImportError:  # the analysis section is optional for the export bar
        TABS = []
    core = {v for v, *_ in VIEWS}
    return VIEWS + [(f"analysis-{value}", f"{label} (analysis)", f"analysis-{value}", False)
                    for value, label, _ in TABS if f"analysis-{value}" not in core]


MAX_UPLOAD_CHARS = 15_000_000     # figures sent up for an HTML snapshot
VECTOR_SVG_MAX_POINTS = 60_000    # WebGL scatter points redrawn as SVG markers up to this many


def client_views() -> dict:
    head_views = {"single", "sentence", "image"}
    return {v: {"label": label, "container": cont, "table": table, "head": v in head_views}
            for v, label, cont, table in views()}


def client_config() -> dict:
    """What the export's clientside callback (assets/clientside_export.js) reads from the
    export-config Store: the views by value, the upload and vector-SVG limits."""
    return {"views": client_views(), "max_upload_chars": MAX_UPLOAD_CHARS,
            "vector_svg_max_points": VECTOR_SVG_MAX_POINTS}


_BTN = {"padding": "2px 8px", "fontSize": "12px", "cursor": "pointer"}


def panel():
    return html.Div(id=ids.EXPORT_BAR, className="export-bar", style={
        "marginLeft": "auto", "display": "flex", "flexDirection": "column", "alignItems": "flex-end",
        "gap": "2px", "fontSize": "12px"}, children=[
        html.Div(style={"display": "flex", "alignItems": "center", "gap": "6px"}, children=[
            html.Span("Export", style={"color": "#666", "textTransform": "uppercase", "fontSize": "11px",
                                       "letterSpacing": ".03em"}),
            dcc.Dropdown(id=ids.EXPORT_VIEW, value="single", clearable=False, searchable=False,
                         options=[{"label": label, "value": value} for value, label, _, _ in views()],
                         style={"width": "160px", "fontSize": "12px"}),
            html.Button("PNG", id=ids.EXPORT_PNG, title="picture of the view (2× resolution)", style=_BTN),
            html.Button("SVG", id=ids.EXPORT_SVG, title="vector picture of the view", style=_BTN),
            html.Button("HTML", id=ids.EXPORT_HTML, style=_BTN,
                        title="interactive snapshot of the view in one file (works offline)"),
            html.Button("CSV", id=ids.EXPORT_CSV, title="the numbers behind the view", style=_BTN),
            html.Span(dcc.Checklist(id=ids.EXPORT_ALL, value=[], inline=True, className="toggle",
                                    options=[{"label": "all points", "value": "on"}]),
                      title="Matrix View CSV: every point instead of the sampled points the view shows"),
        ]),
        html.Div(id=ids.EXPORT_MSG, className="export-msg",
                 style={"color": "#555", "fontSize": "11px", "maxWidth": "560px", "textAlign": "right"}),
        dcc.Store(id=ids.EXPORT_REQUEST, data=None),
        dcc.Store(id=ids.EXPORT_CONFIG, data=client_config()),
        dcc.Download(id=ids.EXPORT_DOWNLOAD),
    ])
