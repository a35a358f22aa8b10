"""Shows the chosen analysis tab (client side: no server round trip; assets/clientside_analysis.js)."""
from dash import ClientsideFunction, Input, Output, clientside_callback

from layouts.analysis import TABS
from layouts import ids


def register(app, context):
    values = [v for v, _, _ in TABS]
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="show_tab"),
        [Output(f"analysis-{v}", "style") for v in values], Input(ids.ANALYSIS_TAB, "value"))
