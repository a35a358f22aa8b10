// Matrix View overlay: a second, transparent plotly graph (#matrix-overlay) drawn over the points
// (#matrix-graph) carries search hits, the selection, cell labels and the search veil, so that
// changing them never makes plotly.js recompute the (up to ~10^5–10^6) points. This keeps the
// overlay's axis ranges and size equal to the main graph's after every zoom, pan or redraw.
(function () {
  function gd(id) { return document.querySelector("#" + id + " .js-plotly-plot"); }
  function r6(v) { return Math.round(v * 1e6) / 1e6; }
  function want(fm) {
    return {"xaxis.range": fm.xaxis.range.map(r6), "yaxis.range": fm.yaxis.range.map(r6),
            width: Math.round(fm.width), height: Math.round(fm.height)};
  }
  function have(fo) {
    return {"xaxis.range": fo.xaxis.range.map(r6), "yaxis.range": fo.yaxis.range.map(r6),
            width: Math.round(fo.width), height: Math.round(fo.height)};
  }
  var busy = false;
  function sync() {
    var main = gd("matrix-graph"), ov = gd("matrix-overlay");
    if (busy || !main || !ov || !window.Plotly) { return; }
    var fm = main._fullLayout, fo = ov._fullLayout;
    if (!fm || !fo || !fm.xaxis || !fo.xaxis || !fm.yaxis || !fo.yaxis || !(ov.data || []).length) { return; }
    var w = want(fm), h = have(fo);
    if (JSON.stringify(w) === JSON.stringify(h)) { return; }
    // one relayout per state of the main graph: never a loop, even if plotly adjusts what we set
    var key = JSON.stringify(w) + "|" + ov.data.length + "|" + (ov.layout.annotations || []).length;
    if (ov.__atlasSynced === key && ov.__atlasSyncedFrom === JSON.stringify(h)) { return; }
    busy = true;
    window.Plotly.relayout(ov, w).then(function () {
      ov.__atlasSynced = key;
      ov.__atlasSyncedFrom = JSON.stringify(have(ov._fullLayout));
      busy = false;
    }, function () { busy = false; });
  }
  function hook() {
    var main = gd("matrix-graph"), ov = gd("matrix-overlay");
    if (main && main.on && !main.__atlasSync) {
      main.__atlasSync = true;
      main.on("plotly_afterplot", sync);
      main.on("plotly_relayout", sync);
      main.on("plotly_relayouting", sync);
    }
    if (ov && ov.on && !ov.__atlasSync) {
      ov.__atlasSync = true;
      ov.on("plotly_afterplot", function () { if (!busy) { setTimeout(sync, 0); } });
    }
  }
  setInterval(hook, 300);
  window.atlasSyncOverlay = sync;
})();
