/* Clientside callbacks of the detail views (callbacks/detail.py): window.dash_clientside.atlas_detail.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_detail", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_detail = Object.assign(window.dash_clientside.atlas_detail || {}, {
    /* shows the Sentence, Image or Model View chosen in the detail tabs */
    show_view: function(tab) {
        var s = function(t) { return {display: tab === t ? "block" : "none"}; };
        return [s("sentence"), s("image"), s("model")];
    }
});
