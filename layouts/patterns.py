"""Layout of the patterns panel (placeholder until the feature lands)."""
from dash import html


def panel():
    return html.Div(id="patterns-view", className="view", children=[html.Div("not built yet", className="note")])
