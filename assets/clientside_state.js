/* Clientside callbacks of the view state (callbacks/state.py): window.dash_clientside.atlas_state.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_state", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_state = Object.assign(window.dash_clientside.atlas_state || {}, {
    /* a control value -> its state value: Field.from_control of figures/urlstate.py */
    _from_control: function(f, v) {
        var key = f[0], comp = f[1], dflt = f[3], kind = f[4];
        if (kind === 'toggle') { return !!v && v.indexOf('on') >= 0; }
        if (kind === 'csv') { return (v || []).slice().sort().join(','); }
        if (kind === 'str' && dflt === '') { return v || ''; }
        if (kind === 'float01') {
            if (dflt === 0) { return Number(v || 0); }
            return (v === null || v === undefined || v === '') ? dflt : Number(v);
        }
        if ((kind === 'nonneg' || kind === 'int') && /-input$/.test(comp)) {
            return (v === null || v === undefined || v === '') ? dflt : Math.trunc(Number(v));
        }
        if (kind === 'choice' && typeof dflt === 'number') {
            return (v === null || v === undefined) ? dflt : Math.trunc(Number(v));
        }
        return v === undefined ? null : v;
    },
    /* state -> '?k=v&…' with only the values that differ from the defaults: urlstate.serialise */
    _serialise: function(fields, state) {
        var q = new URLSearchParams();
        fields.forEach(function(f) {
            var key = f[0], kind = f[4], v = state[key];
            if (v === null || v === undefined || v === f[3]) { return; }
            if (typeof v === 'boolean') { v = v ? '1' : '0'; }
            else if (kind === 'float01' && Number.isInteger(v)) { v = v.toFixed(1); }  // Python's str(1.0)
            q.append(key, String(v));
        });
        var s = q.toString();
        return s ? '?' + s : '';
    },
    /* a click on the Matrix View's points opens that head with that token selected (the Sentence
     * View's focus cleared), as figures/matrix.MatrixData.point_to_head maps it; a click on an overlay
     * point (trace 1-3) goes to the server reducer (matrix-click) */
    open_head: function(click, meta, layer, head, token, focus) {
        var nu = window.dash_clientside.no_update, none = [nu, nu, nu, nu, nu];
        if (!click || !click.points || !click.points.length || !meta) { return none; }
        var pt = click.points[0], c = pt.curveNumber || 0;
        var p = pt.pointNumber !== undefined ? pt.pointNumber : pt.pointIndex;
        if (c !== 0 || !meta.shown || !meta.pt) { return [nu, nu, nu, nu, {click: click, t: Date.now()}]; }
        var off = meta.offsets || [];
        if (p === undefined || p === null || p < 0 || !off.length || p >= off[off.length - 1]) { return none; }
        var lo = 0, hi = off.length - 1;
        while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (off[mid] <= p) { lo = mid; } else { hi = mid; } }
        var lh = meta.shown[lo], tok = meta.pt[p - off[lo]];
        if (!lh || tok === undefined) { return none; }
        return [lh[0] === layer ? nu : lh[0], lh[1] === head ? nu : lh[1], tok === token ? nu : tok,
                focus === null ? nu : null, nu];
    },
    /* prev/next head (wraps) and prev/next layer (stops at the ends), from the menus' options:
     * the order callbacks/state.py's reducer used */
    step: function(ph, nh, pl, nl, layer, layerOpts, head, headOpts) {
        var nu = window.dash_clientside.no_update;
        var trig = (window.dash_clientside.callback_context.triggered_id || '');
        var layers = (layerOpts || []).map(function(o) { return o.value; });
        var heads = (headOpts || []).map(function(o) { return o.value; });
        if (!layers.length || !heads.length) { return [nu, nu]; }
        var h = Math.max(0, heads.indexOf(head)), l = Math.max(0, layers.indexOf(layer));
        if (trig === 'prev-head-btn') { h = (h - 1 + heads.length) % heads.length; }
        else if (trig === 'next-head-btn') { h = (h + 1) % heads.length; }
        else if (trig === 'prev-layer-btn') { l = Math.max(0, l - 1); }
        else if (trig === 'next-layer-btn') { l = Math.min(layers.length - 1, l + 1); }
        else { return [nu, nu]; }
        return [layers[l] === layer ? nu : layers[l], heads[h] === head ? nu : heads[h]];
    },
    /* an encoder–decoder run's Matrix View shows the grid of the open layer's head kind */
    kind_of_layer: function(layer, kind, kinds) {
        var k = kinds ? kinds[String(layer)] : undefined;
        return (k && k !== kind) ? k : window.dash_clientside.no_update;
    },
    /* a control the server reducer does not see changed: write the URL here (a history entry, as
     * the Location component makes for the reducer's changes) — no server round trip */
    write_url: function() {
        var ns = window.dash_clientside.atlas_state, nu = window.dash_clientside.no_update;
        var n = arguments.length, fields = arguments[n - 2], booted = arguments[n - 1];
        if (!booted || !fields) { return nu; }
        var cc = window.dash_clientside.callback_context, vals = Object.assign({}, cc.inputs || {}, cc.states || {});
        var state = {};
        fields.forEach(function(f) { state[f[0]] = ns._from_control(f, vals[f[1] + '.' + f[2]]); });
        var search = ns._serialise(fields, state);
        if (search !== window.location.search) {
            window.history.pushState({}, '', window.location.pathname + search + window.location.hash);
        }
        return search;
    }
});
/* back/forward: the Location component tells the reducer only when the entry differs from the last
 * URL it wrote itself; entries written above would go unseen, so every pop is passed on (url-pop) */
window.addEventListener('popstate', function() {
    if (window.dash_clientside && window.dash_clientside.set_props) {
        window.dash_clientside.set_props('url-pop', {data: {search: window.location.search, t: Date.now()}});
    }
});
