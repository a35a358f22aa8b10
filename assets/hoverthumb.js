// Image View: the hovered patch's thumbnail travels with the hover label (cropped in the browser
// from the image the figure already holds: no server round trip while the mouse moves).
(function () {
  var tip = null, cache = {src: null, img: null};
  function tipBox() {
    if (!tip) {
      tip = document.createElement("div");
      tip.id = "patch-hover-thumb";
      tip.className = "patch-hover-thumb";
      tip.innerHTML = '<canvas width="96" height="96"></canvas><div class="cap"></div>';
      document.body.appendChild(tip);
    }
    return tip;
  }
  function imageOf(gd) {
    var tr = (gd.data || []).filter(function (t) { return t.type === "image" && t.source; })[0];
    if (!tr) { return null; }
    if (cache.src !== tr.source) { cache.src = tr.source; cache.img = new Image(); cache.img.src = tr.source; }
    return cache.img;
  }
  function onHover(gd, ev) {
    var pt = (ev.points || []).filter(function (p) { return p.data && p.data.name === "patches"; })[0];
    var img = imageOf(gd);
    if (!pt || !img || !img.complete || !img.naturalWidth) { return; }
    var rc = String(pt.text || "").split(",");
    if (rc.length !== 2) { return; }
    var xs = (pt.fullData && pt.fullData.x) || [], grid = Math.round(Math.sqrt(xs.length)), r = +rc[0], c = +rc[1];
    if (!grid) { return; }
    var pw = img.naturalWidth / grid, ph = img.naturalHeight / grid;
    var box = tipBox(), cv = box.querySelector("canvas"), cx = cv.getContext("2d");
    cx.imageSmoothingEnabled = false;
    cx.clearRect(0, 0, cv.width, cv.height);
    cx.drawImage(img, c * pw, r * ph, pw, ph, 0, 0, cv.width, cv.height);
    box.querySelector(".cap").textContent = "patch " + r + "," + c;
    var e = ev.event || {};
    box.style.left = ((e.clientX || 0) + 18) + "px";
    box.style.top = ((e.clientY || 0) + 18) + "px";
    box.style.display = "block";
  }
  function hide() { if (tip) { tip.style.display = "none"; } }
  function bind() {
    var gd = document.querySelector("#image-graph .js-plotly-plot");
    if (!gd || !gd.on || gd.__thumbBound) { return; }
    gd.__thumbBound = true;
    gd.on("plotly_hover", function (ev) { onHover(gd, ev); });
    gd.on("plotly_unhover", hide);
    gd.addEventListener("mouseleave", hide);
  }
  new MutationObserver(bind).observe(document.documentElement, {childList: true, subtree: true});
})();
