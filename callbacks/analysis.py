"""Shows the chosen analysis tab (client side: no server round trip)."""
from dash import Input, Output, clientside_callback

from layouts.analysis import TABS
from layouts import ids


def register(app, data):
    values = [v for v, _, _ in TABS]
    clientside_callback(
        "function(tab) { return %s.map(function(v) { return {display: v === tab ? 'block' : 'none'}; }); }" % values,
        [Output(ids.analysis_body(v), "style") for v in values], Input(ids.ANALYSIS_TAB, "value"))
