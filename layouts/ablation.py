"""Layout of the ablation panel (placeholder until the feature lands)."""
from dash import html


def panel():
    return html.Div(id="ablation-view", className="view", children=[html.Div("not built yet", className="note")])
