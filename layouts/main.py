"""Page structure. Component ids are part of the contract (tests and callbacks use them): they are
defined once in layouts/ids.py, and the layout names them through it."""
from __future__ import annotations

from dash import dcc, html

from figures.colors import TEXT_SCHEMES
from figures.sentence import PAIR_FILTERS
from figures.urlstate import DEFAULTS, FIELDS
from layouts import export
from layouts.analysis import analysis_panel
from layouts import ids


def _ctl(label, component, cls="ctl"):
    return html.Div([html.Label(label), component], className=cls)


def _toggle(id_, label, on):
    return dcc.Checklist(id=id_, options=[{"label": label, "value": "on"}], value=["on"] if on else [],
                         className="toggle", inline=True)


def controls():
    d = DEFAULTS
    return html.Div(className="controls", children=[
        _ctl("Run", dcc.Dropdown(id=ids.RUN_SELECT, options=[], value=None, clearable=False, style={"minWidth": "260px"})),
        _ctl("Projection", dcc.Dropdown(id=ids.PROJECTION_SELECT, clearable=False, value=d["proj"],
                                        options=[{"label": "t-SNE", "value": "tsne"}, {"label": "UMAP", "value": "umap"},
                                                 {"label": "PCA", "value": "pca"}], style={"width": "100px"})),
        _ctl("Single View", dcc.RadioItems(id=ids.DIM_SELECT, options=[{"label": "2D", "value": 2}, {"label": "3D", "value": 3}],
                                           value=d["dim"], inline=True)),
        _ctl("Embedding", html.Div([_toggle(ids.TRANSLATE_TOGGLE, "key translation", d["translate"]),
                                    _toggle(ids.SCALED_TOGGLE, "norm scaling", d["scaled"])])),
        _ctl("Colour", dcc.Dropdown(id=ids.COLOR_SELECT, clearable=False, value=d["color"],
                                    options=[{"label": v, "value": k} for k, v in TEXT_SCHEMES.items()],
                                    style={"width": "200px"})),
        _ctl("Token search", html.Div([
            dcc.Input(id=ids.SEARCH_INPUT, type="text", debounce=True, placeholder="token, e.g. the", value="",
                      style={"width": "150px"}),
            _toggle(ids.REGEX_TOGGLE, "regex", d["regex"])], className="row-inline")),
        _ctl("Head", html.Div([
            # initial options hold the initial value: Dash clears a dropdown value missing from its options
            dcc.Dropdown(id=ids.LAYER_SELECT, options=[{"label": f"L{d['layer']}", "value": d["layer"]}],
                         value=d["layer"], clearable=False, style={"width": "104px"}),
            dcc.Dropdown(id=ids.HEAD_SELECT, options=[{"label": f"H{d['head']}", "value": d["head"]}],
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
                html.Div(id=ids.KIND_CTL, style={"display": "none"}, children=_ctl("heads", dcc.RadioItems(
                    id=ids.KIND_SELECT, value=d["kind"], inline=True, options=[]))),
                _ctl("points per head", dcc.RadioItems(
                    id=ids.LOD_SELECT, value=d["lod"], inline=True,
                    options=[{"label": "auto", "value": "auto"}, {"label": "250", "value": 250},
                             {"label": "1000", "value": 1000}, {"label": "3000", "value": 3000},
                             {"label": "all", "value": 0}])),
                _ctl("order / shade / label cells by", dcc.Dropdown(
                    id=ids.SORT_SELECT, value=d["sort"], clearable=False, style={"width": "290px"},
                    options=sort_options())),
                # the filter applies to the figure the cells are ranked by (else |ρ euc|); its label says which
                html.Div([html.Label(FILTER_DEFAULT_LABEL, id=ids.RHO_THRESHOLD_LABEL,
                                     style={"textTransform": "none"}),  # upper case would turn ρ into Ρ
                          dcc.Slider(id=ids.RHO_THRESHOLD, min=0, max=1, step=0.05, value=d["rho"],
                                     marks={0: "0", 0.5: "0.5", 1: "1"}, tooltip={"placement": "bottom"})],
                         className="ctl slider"),
            ]),
        ]),
        html.Div(id=ids.MATRIX_NOTE, className="note"),
        html.Div(className="matrix-legend", children=[
            html.Span([html.Span(className="dot small"), "query and key points (colour: legend above; queries "
                       "and keys are drawn interleaved so neither role hides the other)"]),
            html.Span([html.Span(className="dot big"), "search hits (all of them, in every head)"]),
            html.Span([html.Span(className="dot ring"), "selected token; its input's tokens drawn in full"]),
            html.Span(id=ids.MISLEADING_LEGEND, title=MISLEADING_LEGEND, children=[
                html.Span("⚠", style={"display": "inline-block", "border": "2px dotted #d62728", "color": "#d62728",
                                      "fontSize": "10px", "lineHeight": "12px", "padding": "0 3px",
                                      "marginRight": "4px"}),
                MISLEADING_LEGEND])]),
        html.Div(id=ids.MATRIX_HOVER, className="hover-note"),
        # the points, and over them (same size and axes, clicks pass through) the search hits, the
        # selection, the labels and the search veil: changing those never recomputes the points
        html.Div(id=ids.MATRIX_STACK, className="matrix-stack", children=[
            dcc.Graph(id=ids.MATRIX_GRAPH, config={"displaylogo": False, "scrollZoom": True}, style={"minHeight": "320px"}),
            dcc.Graph(id=ids.MATRIX_OVERLAY, className="matrix-overlay", config={"staticPlot": True, "displayModeBar": False},
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
                html.Button("↑ layer", id=ids.PREV_LAYER_BTN, title="previous layer (↑)"),
                html.Button("← head", id=ids.PREV_HEAD_BTN, title="previous head (←)"),
                html.Button("head →", id=ids.NEXT_HEAD_BTN, title="next head (→)"),
                html.Button("layer ↓", id=ids.NEXT_LAYER_BTN, title="next layer (↓)"),
            ]),
        ]),
        html.Div(className="row-inline", children=[
            _toggle(ids.LINES_TOGGLE, "attention lines from the selected query", d["lines"]),
            _ctl("top-k", dcc.Input(id=ids.TOPK_INPUT, type="number", min=1, max=50, step=1, value=d["topk"],
                                    debounce=True, style={"width": "55px"})),
            _ctl("min weight", dcc.Input(id=ids.MINW_INPUT, type="number", min=0, max=1, step=0.01, value=d["minw"],
                                         debounce=True, style={"width": "65px"})),
            _toggle(ids.NORMSIZE_TOGGLE, "dot size by vector norm", d["normsize"]),
        ]),
        html.Div(id=ids.SINGLE_INFO, className="note"),
        html.Div(id=ids.SINGLE_ANALYSIS, className="note"),  # dominant pattern, similar heads (analysis)
        dcc.Graph(id=ids.SINGLE_GRAPH, config={"displaylogo": False, "scrollZoom": True}),
    ])


def detail_panel():
    d = DEFAULTS
    return html.Div(className="panel detail-panel", children=[
        html.Div(className="row-inline", children=[
            dcc.RadioItems(id=ids.DETAIL_TAB, value=d["tab"], inline=True, className="tabs",
                           options=[{"label": "Sentence View", "value": "sentence"}, {"label": "Image View", "value": "image"},
                                    {"label": "Model View", "value": "model"}]),
            # shared by the Sentence and Image views (and their exports)
            _toggle(ids.VNORM_TOGGLE, "weight by value norm (‖v‖·a, renormalised)", d["vnorm"]),
        ]),
        html.Div(id=ids.SENTENCE_VIEW, className="view", children=[
            html.Div(className="row-inline", children=[
                _ctl("show", dcc.RadioItems(id=ids.SENTENCE_MODE, value=d["smode"], inline=True, options=[
                    {"label": "auto (lines ≤ 60 tokens, else heatmap)", "value": "auto"},
                    {"label": "lines", "value": "lines"}, {"label": "heatmap", "value": "heatmap"},
                    {"label": "aggregate by position", "value": "aggregate"}])),
                # options are set per run from the run's own special tokens (callbacks/detail.py)
                _ctl("hide keys (rows renormalised)", html.Div([
                    dcc.Checklist(id=ids.HIDE_SELECT, value=[], inline=True, options=[
                        {"label": "first token", "value": "first"}, {"label": "[CLS]", "value": "cls"},
                        {"label": "[SEP]", "value": "sep"}]),
                    html.Span(id=ids.SENTENCE_HIDE_NOTE, className="note")])),
                html.Div(id=ids.SENTENCE_PAIR_CTL, style={"display": "none"}, children=[
                    _ctl("sentence pair", dcc.RadioItems(id=ids.SENTENCE_PAIR, value=d.get("pair", "all"), inline=True,
                                                         options=[{"label": v, "value": k}
                                                                  for k, v in PAIR_FILTERS.items()]))]),
            ]),
            html.Div(className="row-inline", children=[
                # one colour per head (BertViz's head view); the current head is always drawn
                _ctl("also draw heads of this layer (lines, one colour a head when several)", html.Div(className="row-inline", children=[
                    dcc.Checklist(id=ids.SENTENCE_HEADS, value=[], inline=True, options=[], className="head-checklist"),
                    html.Button("all heads", id=ids.SENTENCE_HEADS_ALL, title="draw every head of this layer"),
                    html.Button("current only", id=ids.SENTENCE_HEADS_NONE, title="draw the current head only"),
                    dcc.Store(id=ids.SENTENCE_HEADS_MARK)])),
            ]),
            html.Div(id=ids.SENTENCE_INFO, className="note"),
            dcc.Graph(id=ids.SENTENCE_GRAPH, config={"displaylogo": False}),
        ]),
        html.Div(id=ids.IMAGE_VIEW, className="view", style={"display": "none"}, children=[
            _ctl("show", dcc.RadioItems(id=ids.IMAGE_MODE, value=d["imode"], inline=True, options=[
                {"label": "attention from the selected patch", "value": "heatmap"},
                {"label": "strongest target of every patch (≥ 0.05)", "value": "arrows"}])),
            html.Div(id=ids.IMAGE_INFO, className="note"),
            html.Div(className="row-inline", children=[
                dcc.Graph(id=ids.IMAGE_GRAPH, config={"displaylogo": False}, style={"width": "560px"}),
                html.Div(className="zoom", children=[html.Div("hovered patch", className="note"),
                                                     html.Img(id=ids.PATCH_ZOOM, style={"width": "160px",
                                                                                      "imageRendering": "pixelated"})]),
            ]),
        ]),
        html.Div(id=ids.MODEL_VIEW, className="view", style={"display": "none"}, children=[
            html.Div(id=ids.MODEL_INFO, className="note"),
            dcc.Graph(id=ids.MODEL_GRAPH, config={"displaylogo": False}),
        ]),
    ])


def layout():
    return html.Div(className="page", children=[
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.URL_POP, data=None),
        dcc.Store(id=ids.URL_WRITTEN, data=None),
        dcc.Store(id=ids.LAYER_KINDS, data=None),
        dcc.Store(id=ids.MATRIX_CLICK, data=None),
        dcc.Store(id=ids.STATE_FIELDS, data=[[f.key, f.component, f.prop, f.default, f.kind] for f in FIELDS]),
        dcc.Store(id=ids.TOKEN_STORE, data=None),
        dcc.Store(id=ids.FOCUS_STORE, data=None),
        dcc.Store(id=ids.MATRIX_META, data=None),
        dcc.Store(id=ids.BOOT_STORE, data=None),
        dcc.Store(id=ids.MATRIX_PAINTED, data=None),  # set in the browser once the Matrix View has drawn
        dcc.Store(id=ids.LOD_COST, storage_type="local"),  # this browser's last measured Matrix View draw
        dcc.Store(id=ids.LAST_RUN, storage_type="local"),  # the run this browser looked at last
        # a run that grows while shown (callbacks/live.py): {run, version, status, heads_done, heads_total,
        # methods}; written only when heads or projections were added — views redraw on it
        dcc.Store(id=ids.RUN_PROGRESS, data=None),
        dcc.Interval(id=ids.RUN_PROGRESS_TICK, interval=3000),
        html.Div(className="topbar", children=[
            html.H2("Attention Atlas"), html.Div(id=ids.RUN_INFO, className="run-info"), export.panel()]),
        controls(),
        html.Div(id=ids.MESSAGE_AREA, className="messages", children=[
            html.Div(id=ids.MSG_URL), html.Div(id=ids.MSG_MATRIX), html.Div(id=ids.MSG_SEARCH),
            html.Div(id=ids.MSG_SINGLE), html.Div(id=ids.MSG_DETAIL), html.Div(id=ids.MSG_ERROR)]),
        html.Div(className="legend-row", children=[html.Div(id=ids.COLOR_LEGEND, className="legend"),
                                                   html.Div(id=ids.SEARCH_COUNT, className="search-count")]),
        html.Div(className="main", children=[matrix_panel(), single_panel()]),
        detail_panel(),
        analysis_panel(),
    ])
