"""What each interaction costs Dash's renderer in the browser: store updates and their main-thread time.

Every update of the page's Redux store runs the selector of every mounted Dash component, and
every newly mounted component dispatches one more update (RESET_COMPONENT_STATE). This script
wraps `window.store.dispatch` in headless Chromium and prints, per interaction, how many updates
ran, their synchronous time (selectors and React's subscriptions included) by action type, and
the mounted components by the nearest id above them. It is how bench/RESULTS.md (session 13)
found the 733-component patterns table.

    python -m bench.storeupdates STORE RUN [OTHER_RUN]
"""
from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from bench.dashboard import AFTERPLOT, _driver, _idle, _option, _pick, serve

WRAP = """
if (!window.__suWrapped) { window.__suWrapped = true;
  var s = window.store, d0 = s.dispatch;
  s.dispatch = function(a) {
    var t0 = performance.now(), r = d0.apply(this, arguments), kind = (typeof a === 'function') ? 'thunk' : a.type;
    if (a && a.type === 'RESET_COMPONENT_STATE' && a.payload && a.payload.itempath) {
      var node = window.store.getState().layout, under = '';
      a.payload.itempath.forEach(function(k) { node = node && node[k]; if (node && node.props && typeof node.props.id === 'string') { under = node.props.id; } });
      kind += ' under ' + under;
    }
    window.__su.push([kind, performance.now() - t0]); return r; }; }
window.__su = [];
"""

MOUNTED = """
var counts = {}, total = 0;
function walk(n, top) {
  if (Array.isArray(n)) { n.forEach(function(c) { walk(c, top); }); return; }
  if (!n || typeof n !== 'object') { return; }
  if (!n.props) { Object.keys(n).forEach(function(k) { if (n[k] && typeof n[k] === 'object') { walk(n[k], top); } }); return; }
  total++; var id = (typeof n.props.id === 'string' && n.props.id) ? n.props.id : top;
  counts[id] = (counts[id] || 0) + 1;
  // a dcc.Store's data is not rendered, whatever it holds (the jobs-shown store carries component trees)
  Object.keys(n.props).forEach(function(k) { var v = n.props[k];
    if (v && typeof v === 'object' && !(n.type === 'Store' && k === 'data')) { walk(v, id); } });
}
walk(window.store.getState().layout, '(page)');
return [total, Object.entries(counts).sort(function(a, b) { return b[1] - a[1]; }).slice(0, 8)];
"""


def _report(d, name: str, graph: str):
    paint = d.execute_script(f"return window.__plots['{graph}'] ? window.__plots['{graph}'] - window.__t0 : null")
    rows = d.execute_script("return window.__su")
    n, ms = collections.Counter(), collections.Counter()
    for kind, dt in rows:
        n[kind] += 1
        ms[kind] += dt
    paint_txt = f"{paint:.0f} ms" if paint is not None else "no repaint"
    print(f"\n{name}: painted {paint_txt}; {len(rows)} store updates, {sum(ms.values()):.0f} ms synchronous")
    for kind, t in ms.most_common(6):
        print(f"  {t:7.1f} ms  ×{n[kind]:<4d} {kind[:90]}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("run")
    ap.add_argument("other", nargs="?", help="a second run to switch to")
    args = ap.parse_args(argv)
    proc, base = serve(args.store)
    d = _driver()
    try:
        d.get(f"{base}/?run={args.run}&preview=0")
        while not d.execute_script("var g = document.querySelector('#matrix-graph .js-plotly-plot');"
                                   "return !!(g && g._fullData && g._fullData[0] && g._fullData[0].x.length);"):
            time.sleep(0.05)
        _idle(d)
        total, top = d.execute_script(MOUNTED)
        print(f"mounted Dash components: {total} (most under: " + ", ".join(f"{k} {v}" for k, v in top) + ")")

        def measure(name, act, graph):
            d.execute_script(WRAP)
            d.execute_script(AFTERPLOT)
            act()
            _idle(d)
            _report(d, name, graph)

        measure("open a head (Matrix View click)", lambda: d.execute_script(
            "var g = document.querySelector('#matrix-graph .js-plotly-plot');"
            "g.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: 2 * 37 + g._fullData[0].x.length / 4 | 0}]});"),
            "single-graph")
        measure("next head", lambda: d.find_element("id", "next-head-btn").click(), "single-graph")
        measure("change colour", lambda: _pick(d, "color-select", "token frequency"), "matrix-graph")
        if args.other:
            d.find_element("id", "run-select").click()
            opt = _option(d, args.other)
            measure("switch run", opt.click, "matrix-graph")
    finally:
        d.quit()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
