"""Shows the chosen analysis tab, and gates the tabs' server callbacks, both in the browser
(assets/clientside_analysis.js): a tab's gate store (ids.analysis_gate) is written only while the tab
is shown and only when a field the tab reads (ids.GATED_TABS) changed, so hidden tabs make no server
round trip when the head, the run or the selected token changes."""
from dash import ClientsideFunction, Input, Output, State, clientside_callback

from layouts.analysis import TABS
from layouts import ids


def register(app, context):
    values = [v for v, _, _ in TABS]
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="show_tab"),
        [Output(f"analysis-{v}", "style") for v in values], Input(ids.ANALYSIS_TAB, "value"))
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="gate"),
        [Output(ids.analysis_gate(tab), "data") for tab in ids.GATED_TABS],
        Input(ids.ANALYSIS_TAB, "value"), Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"),
        Input(ids.HEAD_SELECT, "value"), Input(ids.TOKEN_STORE, "data"), Input(ids.MATRIX_PAINTED, "data"),
        State(ids.GATE_FIELDS, "data"))
    # the detail panel's views (Sentence, Image, Model View) through the same gate, keyed on detail-tab
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="gate"),
        [Output(ids.analysis_gate(tab), "data") for tab in ids.GATED_DETAIL],
        Input(ids.DETAIL_TAB, "value"), Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"),
        Input(ids.HEAD_SELECT, "value"), Input(ids.TOKEN_STORE, "data"), Input(ids.MATRIX_PAINTED, "data"),
        State(ids.GATE_FIELDS, "data"))
