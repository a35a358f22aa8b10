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
    },
    /* one gate store per analysis tab (outputs analysis-gate-<tab>, callbacks/analysis.py): the shown tab's
     * gets {run, layer, head, token, painted} (the fields that tab reads: layouts/ids.GATED_TABS,
     * given in the store analysis-gate-fields)
     * plus `changed`, the fields that differ from what it last got; a hidden tab's, or one whose fields did
     * not change, gets no_update, so its server callback is not called */
    /* the gate of tabs that are mounted when first shown (the analysis tabs): a tab not yet mounted is
     * treated as hidden (its callbacks' components are not in the page yet, so Dash could not call
     * them); `mounted` changes when the mount lands, and the gate then runs with the tab shown */
    gate_mounted: function(tab, run, layer, head, token, painted, mounted, fieldsOf) {
        var ns = window.dash_clientside.atlas_analysis;
        if ((mounted || []).indexOf(tab) < 0) {
            return window.dash_clientside.callback_context.outputs_list.map(function() {
                return window.dash_clientside.no_update; });
        }
        return ns.gate(tab, run, layer, head, token, painted, fieldsOf);
    },
    _last: {},
    _tab: {},
    gate: function(tab, run, layer, head, token, painted, fieldsOf) {
        var ns = window.dash_clientside.atlas_analysis, nu = window.dash_clientside.no_update;
        var now = {run: run, layer: layer, head: head, token: token, painted: !!painted};
        var outs = window.dash_clientside.callback_context.outputs_list, group = outs[0].id;
        // a tab just shown always gets its gate (with "tab" in `changed`): its own inputs that are
        // not in the gate (focus, hide, modes) may have changed while it was hidden
        var shown = ns._tab[group] !== tab;
        ns._tab[group] = tab;
        return outs.map(function(o) {
            var name = o.id.replace('analysis-gate-', '');
            if (name !== tab || !run) { return nu; }
            var fields = (fieldsOf || {})[name] || [], last = ns._last[name], out = {}, changed = shown ? ['tab'] : [];
            fields.forEach(function(f) {
                out[f] = now[f];
                if (!last || JSON.stringify(last[f]) !== JSON.stringify(now[f])) { changed.push(f); }
            });
            if (!changed.length) { return nu; }
            ns._last[name] = out;
            return Object.assign({changed: changed}, out);
        });
    }
});
