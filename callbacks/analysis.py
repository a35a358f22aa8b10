"""Shows the chosen analysis tab, and gates the tabs' server callbacks, both in the browser
(assets/clientside_analysis.js): a tab's gate store (ids.analysis_gate) is written only while the tab
is shown and only when a field the tab reads (ids.GATED_TABS, ids.GATED_DETAIL) changed, so hidden tabs make no server
round trip when the head, the run or the selected token changes."""
from dash import ClientsideFunction, Input, Output, State, clientside_callback

from layouts.analysis import TABS
from layouts import ids


def register(app, context):
    values = [v for v, _, _ in TABS]
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="show_tab"),
        [Output(f"analysis-{v}", "style") for v in values], Input(ids.ANALYSIS_TAB, "value"))
    # the analysis tabs (keyed on analysis-tab) and the detail panel's views (Sentence, Image, Model
    # View; keyed on detail-tab) through the same gate
    for tab_control, gated in ((ids.ANALYSIS_TAB, ids.GATED_TABS), (ids.DETAIL_TAB, ids.GATED_DETAIL)):
        clientside_callback(
            ClientsideFunction(namespace="atlas_analysis", function_name="gate"),
            [Output(ids.analysis_gate(tab), "data") for tab in gated],
            Input(tab_control, "value"), Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"),
            Input(ids.HEAD_SELECT, "value"), Input(ids.TOKEN_STORE, "data"), Input(ids.MATRIX_PAINTED, "data"),
            State(ids.GATE_FIELDS, "data"))
