"""Layout of the related-heads panel: a map of all heads placed by how alike their attention is
(click a point to open that head) and the list of the selected head's most similar heads."""
from dash import dcc, html

from layouts import ids


def _ctl(label, component):
    return html.Div([html.Label(label), component], className="ctl")


def panel():
    return html.Div(id=ids.RELATED_VIEW, className="view", children=[
        html.Div(className="note", children=(
            "One point per head. Distance between two heads = root-mean-square over a shared, seeded sample of "
            "queries of the Hellinger distance between their attention rows (0 = the same attention everywhere, "
            "1 = never the same keys); placed in 2D by classical MDS of those distances. Click a point to open "
            "the head.")),
        html.Div(id=ids.RELATED_NOTE, className="note"),
        _ctl("colour by", dcc.RadioItems(id=ids.RELATED_COLOR, value="layer", inline=True, options=[
            {"label": "layer", "value": "layer"}, {"label": "dominant pattern", "value": "pattern"}])),
        html.Div(style={"display": "grid", "gridTemplateColumns": "minmax(0, 2.2fr) minmax(0, 1fr)", "gap": "10px"},
                 children=[dcc.Graph(id=ids.RELATED_GRAPH, config={"displaylogo": False}),
                           html.Div(id=ids.RELATED_LIST, className="note")]),
    ])
