"""Layout of the ablation panel: which heads, how, on how many inputs; a background job with a
progress bar and a cancel button; a ranked table and a per-input chart of the effects."""
from dash import dcc, html

from analysis.ablation import DEFAULT_CAP
from layouts import ids

SCOPES = [
    ("head", "the Single View head"),
    ("layer", "each head of its layer, one by one"),
    ("selected-each", "heads selected in the Matrix View, one by one"),
    ("selected-set", "heads selected in the Matrix View, together"),
    ("all-each", "every head, one by one"),
    ("all-set", "every head at once"),
]


def _ctl(label, component):
    return html.Div([html.Label(label), component], className="ctl")


def panel():
    return html.Div(id=ids.ABLATION_VIEW, className="view", children=[
        html.Div(className="note", children=(
            "Does this head matter? Ablate heads and measure the change of the model's own objective on the "
            "run's inputs (causal LM: next-token loss; encoder with a masked-LM head: masked-LM loss; sentence "
            "encoder without one: 1 − cosine of its sentence embedding; vision: 1 − cosine of the CLS embedding). "
            "Select heads in the Matrix View with the box or lasso tool of its toolbar.")),
        html.Div(className="row-inline", children=[
            _ctl("heads", dcc.RadioItems(id=ids.ABLATION_SCOPE, value="head", inline=True,
                                         options=[{"label": label, "value": v} for v, label in SCOPES])),
        ]),
        html.Div(className="row-inline", children=[
            _ctl("mode", dcc.RadioItems(id=ids.ABLATION_MODE, value="zero", inline=True, options=[
                {"label": "zero the head's output", "value": "zero"},
                {"label": "replace its attention by its mean pattern", "value": "mean"}])),
            _ctl("inputs (at most)", dcc.Input(id=ids.ABLATION_CAP, type="number", min=1, max=100000, step=1,
                                                value=DEFAULT_CAP, debounce=True, style={"width": "80px"})),
            html.Button("Run ablation", id=ids.ABLATION_RUN, n_clicks=0, className="btn"),
            html.Button("Cancel", id=ids.ABLATION_CANCEL, n_clicks=0, disabled=True, className="btn"),
        ]),
        html.Div(id=ids.ABLATION_PLAN, className="note"),
        html.Div(className="row-inline", children=[
            html.Progress(id=ids.ABLATION_PROGRESS, value="0", max="1", style={"width": "260px"}),
            html.Span(id=ids.ABLATION_PROGRESS_TEXT, className="note"),
        ]),
        html.Div(id=ids.ABLATION_MSG, className="note"),
        dcc.Store(id=ids.ABLATION_SELECTION, data=[]),
        dcc.Store(id=ids.ABLATION_RESULT, data=None),
        html.Div(id=ids.ABLATION_SUMMARY, className="note"),
        html.Div(id=ids.ABLATION_TABLE, className="ablation-table"),
        dcc.Graph(id=ids.ABLATION_GRAPH, config={"displaylogo": False}, style={"display": "none"}),
    ])
