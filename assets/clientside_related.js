/* Clientside callbacks of the related-heads tab (callbacks/related.py): window.dash_clientside.atlas_related.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_related", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_related = Object.assign(window.dash_clientside.atlas_related || {}, {
    /* a click on the map or on a similar/related head button opens that head */
    /* (two callbacks call it: the map's clickData, or the buttons' n_clicks lists; the trigger tells which) */
    open_head: function(click) {
        var C = window.dash_clientside, NU = C.no_update, ctx = C.callback_context;
        var t = ctx.triggered && ctx.triggered.length === 1 ? ctx.triggered[0] : null;
        if (!t || !t.value) { return [NU, NU]; }
        try {
            if (t.prop_id === "related-graph.clickData") {
                var cd = click.points[0].customdata;
                return [parseInt(cd[0], 10), parseInt(cd[1], 10)];
            }
            var id = JSON.parse(t.prop_id.slice(0, t.prop_id.lastIndexOf(".")));
            var lh = String(id.index).split(":").map(function (v) { return parseInt(v, 10); });
            if (lh.length === 2 && !isNaN(lh[0]) && !isNaN(lh[1])) { return lh; }
        } catch (e) { /* a malformed click: nothing to open */ }
        return [NU, NU];
    }
});
