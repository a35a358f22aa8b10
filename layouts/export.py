"""Layout of the export panel (placeholder until the feature lands)."""
from dash import html


def panel():
    return html.Div(id="export-bar", className="view", children=[html.Div("not built yet", className="note")])
