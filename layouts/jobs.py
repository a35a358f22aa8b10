"""Layout of the jobs panel (placeholder until the feature lands)."""
from dash import html


def panel():
    return html.Div(id="precompute-view", className="view", children=[html.Div("not built yet", className="note")])
