// Arrow keys move through heads (←/→) and layers (↑/↓) by clicking the Single View buttons.
document.addEventListener("keydown", function (ev) {
  var t = ev.target, tag = t && t.tagName ? t.tagName.toLowerCase() : "";
  if (tag === "input" || tag === "textarea" || tag === "select" || (t && t.isContentEditable)) { return; }
  if (ev.altKey || ev.ctrlKey || ev.metaKey) { return; }
  var map = {ArrowLeft: "prev-head-btn", ArrowRight: "next-head-btn", ArrowUp: "prev-layer-btn", ArrowDown: "next-layer-btn"};
  var id = map[ev.key];
  if (!id) { return; }
  var btn = document.getElementById(id);
  if (btn) { ev.preventDefault(); btn.click(); }
});
