"""Shows the chosen analysis tab, and gates the tabs' server callbacks, both in the browser
(assets/clientside_analysis.js): a tab's gate store (ids.analysis_gate) is written only while the tab
is shown and only when a field the tab reads (ids.GATED_TABS, ids.GATED_DETAIL) changed, so hidden tabs make no server
round trip when the head, the run or the selected token changes. A tab's components are mounted the
first time it is shown (a server callback builds them), so the page carries only the tabs opened."""
from dash import ClientsideFunction, Input, Output, State, clientside_callback, no_update
from dash.exceptions import PreventUpdate

from layouts.analysis import TABS, tab_panel
from layouts import ids


def register(app, context):
    values = [v for v, _, _ in TABS]
    clientside_callback(
        ClientsideFunction(namespace="atlas_analysis", function_name="show_tab"),
        [Output(f"analysis-{v}", "style") for v in values], Input(ids.ANALYSIS_TAB, "value"))
    # a tab's components enter the page the first time it is shown, and stay (layouts/analysis.py):
    # Dash then makes the initial calls of that tab's callbacks, and the gate below, which waits for
    # the mount, hands the tab its selection
    @app.callback([Output(ids.analysis_body(v), "children") for v in values] + [Output(ids.ANALYSIS_MOUNTED, "data")],
                  Input(ids.ANALYSIS_TAB, "value"), State(ids.ANALYSIS_MOUNTED, "data"), prevent_initial_call=True)
    def mount(tab, mounted):
        mounted = [m for m in (mounted or []) if m in values]
        if tab not in values or tab in mounted:
            raise PreventUpdate
        return [tab_panel(v) if v == tab else no_update for v in values] + [mounted + [tab]]

    # the analysis tabs (keyed on analysis-tab, and only once mounted) and the detail panel's views
    # (Sentence, Image, Model View; keyed on detail-tab, always mounted) through the same gate
    for tab_control, gated, mounted in ((ids.ANALYSIS_TAB, ids.GATED_TABS, [Input(ids.ANALYSIS_MOUNTED, "data")]),
                                        (ids.DETAIL_TAB, ids.GATED_DETAIL, [])):
        clientside_callback(
            ClientsideFunction(namespace="atlas_analysis", function_name="gate_mounted" if mounted else "gate"),
            [Output(ids.analysis_gate(tab), "data") for tab in gated],
            Input(tab_control, "value"), Input(ids.RUN_SELECT, "value"), Input(ids.LAYER_SELECT, "value"),
            Input(ids.HEAD_SELECT, "value"), Input(ids.TOKEN_STORE, "data"), Input(ids.MATRIX_PAINTED, "data"),
            *mounted, State(ids.GATE_FIELDS, "data"))
