"""Page structure. Component ids are part of the contract (tests and callbacks use them)."""
from __future__ import annotations

from dash import dcc, html

from figures.colors import TEXT_SCHEMES
from figures.sentence import PAIR_FILTERS
from figures.urlstate import DEFAULTS
from layouts import export
from layouts.analysis import analysis_panel


def _ctl(label, component, cls="ctl"):
    return html.Div([html.Label(label), component], className=cls)


def _toggle(id_, label, on):
    return dcc.Checklist(id=id_, options=[{"label": label, "value": "on"}], value=["on"] if on else [],
                         className="toggle", inline=True)


def controls():
    d = DEFAULTS
    return html.Div(className="controls", children=[
        _ctl("Run", dcc.Dropdown(id="run-select", options=[], value=None, clearable=False, style={"minWidth": "260px"})),
        _ctl("Projection", dcc.Dropdown(id="projection-select", clearable=False, value=d["proj"],
                                        options=[{"label": "t-SNE", "value": "tsne"}, {"label": "UMAP", "value": "umap"},
                                                 {"label": "PCA", "value": "pca"}], style={"width": "100px"})),
        _ctl("Single View", dcc.RadioItems(id="dim-select", options=[{"label": "2D", "value": 2}, {"label": "3D", "value": 3}],
                                           value=d["dim"], inline=True)),
        _ctl("Embedding", html.Div([_toggle("translate-toggle", "key translation", d["translate"]),
                                    _toggle("scaled-toggle", "norm scaling", d["scaled"])])),
        _ctl("Colour", dcc.Dropdown(id="color-select", clearable=False, value=d["color"],
                                    options=[{"label": v, "value": k} for k, v in TEXT_SCHEMES.items()],
                                    style={"width": "200px"})),
        _ctl("Token search", html.Div([
            dcc.Input(id="search-input", type="text", debounce=True, placeholder="token, e.g. the", value="",
                      style={"width": "150px"}),
            _toggle("regex-toggle", "regex", d["regex"])], className="row-inline")),
        _ctl("Head", html.Div([
            # initial options hold the initial value: Dash clears a dropdown value missing from its options
            dcc.Dropdown(id="layer-select", options=[{"label": f"L{d['layer']}", "value": d["layer"]}],
                         value=d["layer"], clearable=False, style={"width": "104px"}),
            dcc.Dropdown(id="head-select", options=[{"label": f"H{d['head']}", "value": d["head"]}],
                         value=d["head"], clearable=False, style={"width": "80px"})],
            className="row-inline")),
    ])


FILTER_DEFAULT_LABEL = "show heads with |ρ euc| ≥"
MISLEADING_LEGEND = ("cell outlined in red, ⚠: that head's picture misleads — its picture ρ (the projection shown, 2D) "
                     "is positive, so nearer in the picture means LESS attention")


def matrix_panel():
    from layouts.patterns import sort_options
    d = DEFAULTS
    return html.Div(className="panel matrix-panel", children=[
        html.Div(className="panel-head", children=[
            html.H3("Matrix View"),
            html.Div(className="row-inline", children=[
                # encoder–decoder runs only (hidden otherwise): one grid per head kind
                html.Div(id="kind-ctl", style={"display": "none"}, children=_ctl("heads", dcc.RadioItems(
                    id="kind-select", value=d["kind"], inline=True, options=[]))),
                _ctl("points per head", dcc.RadioItems(
                    id="lod-select", value=d["lod"], inline=True,
                    options=[{"label": "auto", "value": "auto"}, {"label": "250", "value": 250},
                             {"label": "1000", "value": 1000}, {"label": "3000", "value": 3000},
                             {"label": "all", "value": 0}])),
                _ctl("order / shade / label cells by", dcc.Dropdown(
                    id="sort-select", value=d["sort"], clearable=False, style={"width": "290px"},
                    options=sort_options())),
                # the filter applies to the figure the cells are ranked by (else |ρ euc|); its label says which
                html.Div([html.Label(FILTER_DEFAULT_LABEL, id="rho-threshold-label",
                                     style={"textTransform": "none"}),  # upper case would turn ρ into Ρ
                          dcc.Slider(id="rho-threshold", min=0, max=1, step=0.05, value=d["rho"],
                                     marks={0: "0", 0.5: "0.5", 1: "1"}, tooltip={"placement": "bottom"})],
                         className="ctl slider"),
            ]),
        ]),
        html.Div(id="matrix-note", className="note"),
        html.Div(className="matrix-legend", children=[
            html.Span([html.Span(className="dot small"), "query and key points (colour: legend above; queries "
                       "and keys are drawn interleaved so neither role hides the other)"]),
            html.Span([html.Span(className="dot big"), "search hits (all of them, in every head)"]),
            html.Span([html.Span(className="dot ring"), "selected token; its input's tokens drawn in full"]),
            html.Span(id="misleading-legend", title=MISLEADING_LEGEND, children=[
                html.Span("⚠", style={"display": "inline-block", "border": "2px dotted #d62728", "color": "#d62728",
                                      "fontSize": "10px", "lineHeight": "12px", "padding": "0 3px",
                                      "marginRight": "4px"}),
                MISLEADING_LEGEND])]),
        html.Div(id="matrix-hover", className="hover-note"),
        # the points, and over them (same size and axes, clicks pass through) the search hits, the
        # selection, the labels and the search veil: changing those never recomputes the points
        html.Div(id="matrix-stack", className="matrix-stack", children=[
            dcc.Graph(id="matrix-graph", config={"displaylogo": False, "scrollZoom": True}, style={"minHeight": "320px"}),
            dcc.Graph(id="matrix-overlay", className="matrix-overlay", config={"staticPlot": True, "displayModeBar": False},
                      figure={"data": [], "layout": {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
                                                     "xaxis": {"visible": False}, "yaxis": {"visible": False}}}),
        ]),
    ])


def single_panel():
    d = DEFAULTS
    return html.Div(className="panel single-panel", children=[
        html.Div(className="panel-head", children=[
            html.H3("Single View"),
            html.Div(className="row-inline nav", children=[
                html.Button("↑ layer", id="prev-layer-btn", title="previous layer (↑)"),
                html.Button("← head", id="prev-head-btn", title="previous head (←)"),
                html.Button("head →", id="next-head-btn", title="next head (→)"),
                html.Button("layer ↓", id="next-layer-btn", title="next layer (↓)"),
            ]),
        ]),
        html.Div(className="row-inline", children=[
            _toggle("lines-toggle", "attention lines from the selected query", d["lines"]),
            _ctl("top-k", dcc.Input(id="topk-input", type="number", min=1, max=50, step=1, value=d["topk"],
                                    debounce=True, style={"width": "55px"})),
            _ctl("min weight", dcc.Input(id="minw-input", type="number", min=0, max=1, step=0.01, value=d["minw"],
                                         debounce=True, style={"width": "65px"})),
            _toggle("normsize-toggle", "dot size by vector norm", d["normsize"]),
        ]),
        html.Div(id="single-info", className="note"),
        html.Div(id="single-analysis", className="note"),  # dominant pattern, similar heads (analysis)
        dcc.Graph(id="single-graph", config={"displaylogo": False, "scrollZoom": True}),
    ])


def detail_panel():
    d = DEFAULTS
    return html.Div(className="panel detail-panel", children=[
        html.Div(className="row-inline", children=[
            dcc.RadioItems(id="detail-tab", value=d["tab"], inline=True, className="tabs",
                           options=[{"label": "Sentence View", "value": "sentence"}, {"label": "Image View", "value": "image"},
                                    {"label": "Model View", "value": "model"}]),
            # shared by the Sentence and Image views (and their exports)
            _toggle("vnorm-toggle", "weight by value norm (‖v‖·a, renormalised)", d["vnorm"]),
        ]),
        html.Div(id="sentence-view", className="view", children=[
            html.Div(className="row-inline", children=[
                _ctl("show", dcc.RadioItems(id="sentence-mode", value=d["smode"], inline=True, options=[
                    {"label": "auto (lines ≤ 60 tokens, else heatmap)", "value": "auto"},
                    {"label": "lines", "value": "lines"}, {"label": "heatmap", "value": "heatmap"},
                    {"label": "aggregate by position", "value": "aggregate"}])),
                # options are set per run from the run's own special tokens (callbacks/detail.py)
                _ctl("hide keys (rows renormalised)", html.Div([
                    dcc.Checklist(id="hide-select", value=[], inline=True, options=[
                        {"label": "first token", "value": "first"}, {"label": "[CLS]", "value": "cls"},
                        {"label": "[SEP]", "value": "sep"}]),
                    html.Span(id="sentence-hide-note", className="note")])),
                html.Div(id="sentence-pair-ctl", style={"display": "none"}, children=[
                    _ctl("sentence pair", dcc.RadioItems(id="sentence-pair", value=d.get("pair", "all"), inline=True,
                                                         options=[{"label": v, "value": k}
                                                                  for k, v in PAIR_FILTERS.items()]))]),
            ]),
            html.Div(className="row-inline", children=[
                # one colour per head (BertViz's head view); the current head is always drawn
                _ctl("also draw heads of this layer (lines, one colour a head when several)", html.Div(className="row-inline", children=[
                    dcc.Checklist(id="sentence-heads", value=[], inline=True, options=[], className="head-checklist"),
                    html.Button("all heads", id="sentence-heads-all", title="draw every head of this layer"),
                    html.Button("current only", id="sentence-heads-none", title="draw the current head only")])),
            ]),
            html.Div(id="sentence-info", className="note"),
            dcc.Graph(id="sentence-graph", config={"displaylogo": False}),
        ]),
        html.Div(id="image-view", className="view", style={"display": "none"}, children=[
            _ctl("show", dcc.RadioItems(id="image-mode", value=d["imode"], inline=True, options=[
                {"label": "attention from the selected patch", "value": "heatmap"},
                {"label": "strongest target of every patch (≥ 0.05)", "value": "arrows"}])),
            html.Div(id="image-info", className="note"),
            html.Div(className="row-inline", children=[
                dcc.Graph(id="image-graph", config={"displaylogo": False}, style={"width": "560px"}),
                html.Div(className="zoom", children=[html.Div("hovered patch", className="note"),
                                                     html.Img(id="patch-zoom", style={"width": "160px",
                                                                                      "imageRendering": "pixelated"})]),
            ]),
        ]),
        html.Div(id="model-view", className="view", style={"display": "none"}, children=[
            html.Div(id="model-info", className="note"),
            dcc.Graph(id="model-graph", config={"displaylogo": False}),
        ]),
    ])


def layout():
    return html.Div(className="page", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="token-store", data=None),
        dcc.Store(id="focus-store", data=None),
        dcc.Store(id="matrix-meta", data=None),
        dcc.Store(id="boot-store", data=None),
        dcc.Store(id="matrix-painted", data=None),  # set in the browser once the Matrix View has drawn
        dcc.Store(id="lod-cost", storage_type="local"),  # this browser's last measured Matrix View draw
        dcc.Store(id="last-run", storage_type="local"),  # the run this browser looked at last
        # a run that grows while shown (callbacks/live.py): {run, version, status, heads_done, heads_total,
        # methods}; written only when heads or projections were added — views redraw on it
        dcc.Store(id="run-progress", data=None),
        dcc.Interval(id="run-progress-tick", interval=3000),
        html.Div(className="topbar", children=[
            html.H2("Attention Atlas"), html.Div(id="run-info", className="run-info"), export.panel()]),
        controls(),
        html.Div(id="message-area", className="messages", children=[
            html.Div(id="msg-url"), html.Div(id="msg-matrix"), html.Div(id="msg-search"),
            html.Div(id="msg-single"), html.Div(id="msg-detail"), html.Div(id="msg-error")]),
        html.Div(className="legend-row", children=[html.Div(id="color-legend", className="legend"),
                                                   html.Div(id="search-count", className="search-count")]),
        html.Div(className="main", children=[matrix_panel(), single_panel()]),
        detail_panel(),
        analysis_panel(),
    ])
