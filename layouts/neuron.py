"""Layout of the neuron view tab: how one query's score for one key is built, per dimension."""
from dash import dcc, html

from layouts import ids


def panel():
    return html.Div(id=ids.NEURON_VIEW, className="view", children=[
        html.Div("For the current head and the selected token (the query), pick a key token: the bars show "
                 "q_d, k_d and q_d·k_d for every head dimension d; their sum is q·k, the score is scale·q·k and "
                 "the weight is the softmax of the scores over the input's keys. Computed from the stored "
                 "queries and keys (exactly as the attention multiplies them: after RoPE, GQA expanded).",
                 className="note"),
        html.Div(className="row-inline", children=[
            html.Div([html.Label("key token"),
                      dcc.Dropdown(id=ids.NEURON_KEY, options=[], value=None, clearable=False,
                                   style={"width": "280px"})], className="ctl"),
            html.Div(id=ids.NEURON_INFO, className="note", style={"flex": "1"}),
        ]),
        dcc.Store(id=ids.NEURON_STATE, data=None),
        dcc.Loading(type="dot", children=[
            dcc.Graph(id=ids.NEURON_GRAPH, config={"displaylogo": False}),
            dcc.Graph(id=ids.NEURON_ROW_GRAPH, config={"displaylogo": False}),
        ]),
    ])
