/* Clientside callbacks of the analysis tabs (callbacks/analysis.py): window.dash_clientside.atlas_analysis.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_analysis", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_analysis = Object.assign(window.dash_clientside.atlas_analysis || {}, {
    /* shows the chosen analysis tab, hides the others (no server round trip) */
    show_tab: function(tab) {
        // one style per Output, in order: the outputs are analysis-<tab value> (callbacks/analysis.py)
        return window.dash_clientside.callback_context.outputs_list.map(function(o) {
            return {display: o.id === 'analysis-' + tab ? 'block' : 'none'};
        });
    }
});
