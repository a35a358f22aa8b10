/* Clientside callbacks of the export bar (callbacks/export.py): window.dash_clientside.atlas_export.<name>, referenced
 * there with dash.ClientsideFunction(namespace="atlas_export", function_name="<name>"). */
window.dash_clientside = window.dash_clientside || {};
window.dash_clientside.atlas_export = Object.assign(window.dash_clientside.atlas_export || {}, {
    /* PNG/SVG are drawn in the browser; HTML/CSV become a request to the server with the view's figures.
     * cfg (the export-config Store of layouts/export.py): the views by value, the upload and SVG limits */
    export_request: function(nPng, nSvg, nHtml, nCsv, view, run, layer, head, cfg) {
        var C = window.dash_clientside, NU = C.no_update;
        var V = cfg.views, MAXUP = cfg.max_upload_chars, MAXVEC = cfg.vector_svg_max_points;
        var trig = C.callback_context.triggered_id;
        var kind = {"export-png": "png", "export-svg": "svg", "export-html": "html", "export-csv": "csv"}[trig];
        if (!kind) { return [NU, NU]; }
        var v = V[view];
        if (!v) { return ["choose a view to export", NU]; }
        var box = document.getElementById(v.container), graphs = [];
        if (box) {
            var list = box.classList.contains("js-plotly-plot") ? [box] : box.querySelectorAll(".js-plotly-plot");
            for (var i = 0; i < list.length; i++) {
                var g = list[i];
                if (g._fullLayout && g._fullData && g.getClientRects().length && g.offsetParent !== null) { graphs.push(g); }
            }
        }
        if (!graphs.length) {
            return [v.label + " is not on screen: open it first (its tab or section), then export", NU];
        }
        // a graph drawn over the one before it (class matrix-overlay: search hits, selection, labels,
        // search veil) is exported with it, as one picture / one figure
        graphs.forEach(function(g) { g.__atlasOver = null; });
        graphs = graphs.filter(function(g, i) {
            if (i > 0 && g.closest(".matrix-overlay")) { graphs[i - 1].__atlasOver = g; return false; }
            return true;
        });
        if (v.table && kind === "csv") {
            return ["preparing CSV of the " + v.label + "…", {kind: kind, view: view, ts: Date.now(),
                                                              search: window.location.search}];
        }
        function rep(k, x) { return (x && ArrayBuffer.isView(x) && !(x instanceof DataView)) ? Array.from(x) : x; }
        function spec(g) {
            var o = g.__atlasOver;
            if (!o) { return {data: g.data, layout: g.layout}; }
            var veil = /rgba\([^)]*,\s*([\d.]+)\)/.exec(o.layout.plot_bgcolor || ""), keep = veil ? 1 - parseFloat(veil[1]) : 1;
            var data = g.data.map(function(t, i) {
                if (i || keep === 1) { return t; }
                var m = Object.assign({}, t.marker, {opacity: (t.marker && t.marker.opacity != null ? t.marker.opacity : 1) * keep});
                return Object.assign({}, t, {marker: m});
            });
            return {data: data.concat(o.data), layout: Object.assign({}, g.layout, {
                annotations: (g.layout.annotations || []).concat(o.layout.annotations || [])})};
        }
        function fig(g) { return JSON.stringify(spec(g), rep); }
        if (kind === "html" || kind === "csv") {
            var figs = graphs.map(fig), size = figs.reduce(function(s, f) { return s + f.length; }, 0);
            if (size > MAXUP) {
                return [v.label + ": " + Math.round(size / 1e6) + " MB of figure data, too large for a snapshot; " +
                        "lower the points per head or use PNG/CSV", NU];
            }
            var names = graphs.map(function(g) { var p = g.parentElement && g.parentElement.closest("[id]");
                                                 return p ? p.id : ""; });
            return ["preparing " + kind.toUpperCase() + " of the " + v.label + "…",
                    {kind: kind, view: view, ts: Date.now(), search: window.location.search, graphs: figs, names: names}];
        }
        var safe = function(s) { return String(s).replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[-.]+|[-.]+$/g, "") || "x"; };
        var base = safe(run || "no-run") + "_" + view + (v.head ? "_L" + layer + "_H" + head : "");
        function blobOf(url) {
            var i = url.indexOf(","), head = url.slice(5, i), body = url.slice(i + 1), type = head.split(";")[0];
            if (/;base64/.test(head)) {
                var b = atob(body), a = new Uint8Array(b.length);
                for (var k = 0; k < b.length; k++) { a[k] = b.charCodeAt(k); }
                return new Blob([a], {type: type});
            }
            return new Blob([decodeURIComponent(body)], {type: type});
        }
        function save(blob, name) {
            var u = URL.createObjectURL(blob), a = document.createElement("a");
            a.href = u; a.download = name; a.style.display = "none";
            document.body.appendChild(a); a.click(); a.remove();
            setTimeout(function() { URL.revokeObjectURL(u); }, 60000);
            window.__atlasExports = (window.__atlasExports || []).concat([{name: name, size: blob.size, type: blob.type}]);
        }
        var notes = [];
        function image(g) {
            var W = Math.round(g._fullLayout.width), H = Math.round(g._fullLayout.height);
            var src = g;
            if (g.__atlasOver) {
                var sp = spec(g);
                src = {data: sp.data, layout: Object.assign({}, sp.layout, {width: W, height: H}), config: {staticPlot: true}};
            }
            if (kind === "png") { return Plotly.toImage(src, {format: "png", width: W, height: H, scale: 2}); }
            var gl = 0;
            g._fullData.concat(g.__atlasOver ? g.__atlasOver._fullData : []).forEach(function(t) {
                if (t.type === "scattergl") { gl += (t._length || 0); }
                else if (/^(heatmap|image|histogram2d)$/.test(t.type)) { notes.push("heatmaps and images are pictures inside the SVG"); }
                else if (/3d$|^(surface|mesh3d|cone|streamtube|volume|isosurface|splom|parcoords)$|map/.test(t.type)) {
                    notes.push("3D/WebGL scenes are pictures inside the SVG");
                }
            });
            if (!gl) { return Plotly.toImage(src, {format: "svg", width: W, height: H}); }
            if (gl > MAXVEC) {
                notes.push(gl.toLocaleString() + " WebGL points embedded as a picture (vector markers up to " +
                           MAXVEC.toLocaleString() + " points)");
                return Plotly.toImage(src, {format: "svg", width: W, height: H});
            }
            var f = JSON.parse(fig(g));
            f.data.forEach(function(t) { if (t.type === "scattergl") { t.type = "scatter"; } });
            f.layout.width = W; f.layout.height = H;
            return Plotly.toImage({data: f.data, layout: f.layout, config: {staticPlot: true}},
                                  {format: "svg", width: W, height: H});
        }
        var t0 = Date.now();
        return Promise.all(graphs.map(image)).then(function(urls) {
            var names = [];
            urls.forEach(function(u, i) {
                var name = base + (urls.length > 1 ? "_" + (i + 1) : "") + "." + kind;
                save(blobOf(u), name); names.push(name);
            });
            var uniq = notes.filter(function(x, i) { return notes.indexOf(x) === i; });
            return ["saved " + names.join(", ") + (uniq.length ? " (" + uniq.join("; ") + ")" : ""), NU];
        }, function(err) {
            return [kind.toUpperCase() + " export failed: " + (err && err.message ? err.message : err), NU];
        });
    }
});
