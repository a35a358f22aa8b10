// Matrix View first paint: show the server-drawn picture of the matrix as soon as the page's
// layout is in the DOM, then hide it when the interactive (WebGL) Matrix View has drawn.
// Turn off with ?preview=0 in the page's address.
(function () {
  if (/[?&]preview=0(&|$)/.test(window.location.search)) { return; }
  var shown = false;
  function interactiveDrawn(graph) {
    var gd = graph.querySelector(".js-plotly-plot");
    return !!(gd && gd._fullData && gd._fullData.length && gd._fullData[0].type === "scattergl" &&
              gd.querySelector(".gl-canvas-context"));
  }
  function attach() {
    var graph = document.getElementById("matrix-graph");
    if (!graph || shown) { return !!graph; }
    shown = true;
    var box = document.createElement("div");
    box.id = "matrix-preview";
    box.className = "matrix-preview";
    var img = document.createElement("img");
    img.alt = "Matrix View (picture; the interactive view is loading)";
    var w = Math.max(300, Math.min(2400, Math.round(graph.getBoundingClientRect().width || 1000)));
    var q = window.location.search.replace(/^\?/, "");
    try {  // without a run in the link the page opens the run this browser looked at last
      var last = JSON.parse(window.localStorage.getItem("last-run") || "null");
      if (typeof last === "string" && !/(^|&)run=/.test(q)) { q += (q ? "&" : "") + "last=" + encodeURIComponent(last); }
    } catch (e) { /* no storage: the server's default run */ }
    var painted = function () {
      if (img.naturalWidth < 10) { box.remove(); } else if (!box.dataset.painted) { box.dataset.painted = String(performance.now()); }
    };
    img.onerror = function () { box.remove(); };
    img.onload = painted;
    img.src = (window.location.pathname.replace(/\/$/, "") + "/_atlas/matrix-preview.png?" + q +
               (q ? "&" : "") + "w=" + w);
    var note = document.createElement("div");
    note.className = "note";
    note.textContent = "picture of the Matrix View — the interactive view is loading…";
    box.appendChild(note);
    box.appendChild(img);
    // laid over the graph's place (no layout shift when the interactive view takes over)
    var parent = graph.parentNode;
    if (getComputedStyle(parent).position === "static") { parent.style.position = "relative"; }
    box.style.top = graph.offsetTop + "px";
    box.style.left = graph.offsetLeft + "px";
    box.style.width = (graph.offsetWidth || w) + "px";
    parent.appendChild(box);
    if (img.complete && img.naturalWidth) { painted(); }
    var timer = setInterval(function () {
      var g = document.getElementById("matrix-graph"), msg = document.getElementById("msg-matrix");
      if (!g || interactiveDrawn(g) || (msg && msg.innerText.trim())) { clearInterval(timer); box.remove(); }
    }, 100);
    setTimeout(function () { clearInterval(timer); box.remove(); }, 30000);
    return true;
  }
  if (!attach()) {
    var obs = new MutationObserver(function () { if (attach()) { obs.disconnect(); } });
    obs.observe(document.documentElement, {childList: true, subtree: true});
  }
})();
