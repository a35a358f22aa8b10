// The Matrix View's measured draw cost, for the automatic level of detail (figures/lod.py).
// Cost = from the moment the page asks the server for a Matrix View figure (Dash's request_pre
// hook, wired in app.py) to the first frame after plotly.js drew it: the server, the transfer, the
// renderer and plotly.js together, i.e. everything of an interaction that grows with the points.
// (Timing from when the figure reached the page missed the draw itself: Dash hands the new figure
// to its clientside callbacks only after plotly.js has drawn it.)
(function () {
  // a full draw: the points AND the note saying how many (a recolour patches the points only: cheaper
  // on the server, so timing it would inflate the budget of the next full draw)
  var MATRIX = "matrix-graph.figure", FULL = "matrix-note.children";
  window.atlasRequestPre = function (payload) {
    var out = String((payload && payload.output) || "");
    if (out.indexOf(MATRIX) >= 0 && out.indexOf(FULL) >= 0) {
      var g = document.querySelector("#matrix-graph .js-plotly-plot");
      window.__atlasMatrixAsked = {t: performance.now(), before: g && g.data ? g.data[0] : undefined};
    }
  };
  function hook() {
    var g = document.querySelector("#matrix-graph .js-plotly-plot");
    if (!g || !g.on || g.__atlasCostHook) { return; }
    g.__atlasCostHook = true;
    g.on("plotly_afterplot", function () {
      var asked = window.__atlasMatrixAsked;
      // a redraw of the figure shown when the request left (a zoom, a resize) is not the answer
      if (!asked || !g.data || !g.data[0] || g.data[0] === asked.before) { return; }
      window.__atlasMatrixAsked = null;
      requestAnimationFrame(function () { setTimeout(function () {
        var n = 0;
        (g._fullData || []).forEach(function (t) { if (t.name === "points") { n += t._length || 0; } });
        // the Matrix View reads it (State) at its next full draw (figures/lod.py); small draws say little
        if (n >= 20000 && window.dash_clientside && window.dash_clientside.set_props) {
          window.dash_clientside.set_props("lod-cost", {data: {points: n, ms: performance.now() - asked.t}});
        }
      }, 0); });
    });
  }
  setInterval(hook, 200);
})();
