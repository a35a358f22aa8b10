/* Clientside callbacks of the Matrix View (callbacks/matrix.py): window.dash_clientside.atlas_matrix.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_matrix", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_matrix = Object.assign(window.dash_clientside.atlas_matrix || {}, {
    /* the matrix's points are on screen (or 8 s passed): the flag the other views wait for */
    painted: function(fig, painted) {
        if (painted) { return window.dash_clientside.no_update; }
        var t0 = performance.now();
        var x = fig && fig.data && fig.data[0] ? fig.data[0].x : undefined;
        return new Promise(function(resolve) {
            function check() {
                var g = document.querySelector('#matrix-graph .js-plotly-plot');
                var drawn = g && g._fullLayout && g._fullData && (x === undefined || (g.data && g.data[0] && g.data[0].x === x));
                if (drawn || performance.now() - t0 > 8000) {
                    requestAnimationFrame(function() { setTimeout(function() { resolve(true); }, 0); });
                } else { setTimeout(check, 25); }
            }
            check();
        });
    },

    /* the hovered point's head and role, under the matrix */
    hover_text: function(hover, meta) {
        if (!hover || !hover.points || !hover.points.length || !meta) { return ""; }
        var pt = hover.points[0], p = pt.pointNumber, c = pt.curveNumber || 0, head, role;
        var kk = [meta.kp, meta.hk, meta.sk, meta.rk][c];
        if (c === 0) {
            var off = meta.offsets, lo = 0, hi = off.length - 1;
            while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (off[mid] <= p) { lo = mid; } else { hi = mid; } }
            head = meta.heads[lo]; role = (kk ? kk[p - off[lo]] : (p - off[lo]) % 2) ? "key" : "query";
        } else if (kk && kk.length) {
            head = meta.heads[Math.floor(p / kk.length)]; role = kk[p % kk.length] ? "key" : "query";
        } else {
            var toks = c === 1 ? meta.hits : (c === 2 ? meta.sel : [meta.token]);
            var k = 2 * Math.max(1, toks.length);
            head = meta.heads[Math.floor(p / k)]; role = (p % k) % 2 ? "key" : "query";
        }
        return (head || "") + " · " + role + " — click to open in Single View";
    }
});
