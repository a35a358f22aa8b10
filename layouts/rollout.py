"""Layout of the attention rollout tab (Abnar & Zuidema)."""
from dash import dcc, html

from layouts import ids


def panel():
    return html.Div(id=ids.ROLLOUT_VIEW, className="view", children=[
        html.Div("Attention rollout (Abnar & Zuidema 2020) for the selected token's input: per layer the "
                 "attention averaged over heads, A, mixed with the residual as 0.5·A + 0.5·I (rows renormalised), "
                 "multiplied from the first layer up: R = Â_L ⋯ Â_1. Row i: how much of token i at the top flows "
                 "from each input token (rows sum to 1). Recomputed from the stored queries and keys.",
                 className="note"),
        html.Div(className="row-inline", children=[
            html.Div([html.Label("through layer"),
                      dcc.Dropdown(id=ids.ROLLOUT_LAYER, options=[], value=None, clearable=False,
                                   style={"width": "120px"})], className="ctl"),
            html.Div(id=ids.ROLLOUT_INFO, className="note", style={"flex": "1"}),
        ]),
        dcc.Loading(type="dot", children=[
            html.Div(className="row-inline", style={"alignItems": "flex-start"}, children=[
                dcc.Graph(id=ids.ROLLOUT_GRAPH, config={"displaylogo": False}, style={"flex": "1", "minWidth": "420px"}),
                dcc.Graph(id=ids.ROLLOUT_IMAGE_GRAPH, config={"displaylogo": False},
                          style={"width": "520px", "display": "none"}),
            ]),
        ]),
    ])
