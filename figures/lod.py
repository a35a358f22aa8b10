"""Level of detail of the Matrix View: how many points of each head to draw.

AttentionViz draws every point of every head in one WebGL layer. We do too whenever the whole
matrix fits the point budget; beyond it every head shows the same seeded token sample (search
hits and the selected input are drawn in full on top, see figures.matrix.overlay_points).

The budget comes from measured cost: the page times its last full Matrix View draw (not a
recolour, which patches the points without a server draw), from the moment
it asked the server for the figure to the first frame after plotly.js drew it (server, transfer,
renderer and WebGL: assets/drawcost.js), and sends {"points": n, "ms": t}; the budget is the
number of points that fit TARGET_MS at that rate. The fixed part of t (a callback's round trip)
makes a small draw look dear per point, so the budget settles where n points take TARGET_MS. Without a measurement the default is what bench/dashboard.py measured in headless
Chromium with software WebGL on the 2-core reference machine (see bench/RESULTS.md)."""
from __future__ import annotations

# time from the Matrix View's request to its painted points that the automatic level of detail aims
# for: the 1-s interaction target less what comes before the request (the click, the menu and a
# callback that runs first: ~0.1-0.25 s, bench/RESULTS.md "Session 12")
TARGET_MS = 750.0
DEFAULT_BUDGET = 150_000     # points, before the browser has measured itself (bench/RESULTS.md)
MIN_BUDGET = 100_000
MAX_BUDGET = 2_000_000
FIXED = (250, 500, 1000, 3000)  # the fixed choices still offered (points per head); 0 = all


def measured(cost: dict | None) -> bool:
    """Whether ``cost`` is a draw this browser measured that the budget extrapolates from (else the
    budget is DEFAULT_BUDGET): a well-formed cost of a draw big enough to extrapolate from."""
    try:
        return float(cost["points"]) >= 20_000 and float(cost["ms"]) > 0
    except (TypeError, KeyError, ValueError):
        return False


def budget_from_cost(cost: dict | None) -> int:
    """Points the browser can draw in TARGET_MS, from its last measured draw."""
    if not measured(cost):
        return DEFAULT_BUDGET
    pts, ms = float(cost["points"]), float(cost["ms"])
    return int(min(MAX_BUDGET, max(MIN_BUDGET, TARGET_MS * pts / ms)))


def points_per_head(lod, n_heads: int, n_tokens: int, budget: int) -> int:
    """Points (queries + keys) per head to draw; 0 = all. ``lod``: 'auto' or a fixed count (0 = all)."""
    if lod not in ("auto", None):
        return int(lod)
    total = 2 * n_tokens * max(n_heads, 1)
    if total <= budget:
        return 0
    return max(2, 2 * (budget // (2 * max(n_heads, 1))))


def describe(per_head: int, n_tokens: int, lod, budget: int, from_measure: bool = True) -> str:
    """One line for the Matrix View note saying what is drawn and why (``from_measure``: the budget
    comes from a draw this browser measured, else it is the default until one is)."""
    if per_head == 0 or per_head >= 2 * n_tokens:
        return f"all {2 * n_tokens:,} points per head"
    why = ("fixed level of detail" if lod not in ("auto", None) else
           f"automatic level of detail: {budget:,} points fit this browser's measured draw budget" if from_measure else
           f"automatic level of detail: the default budget of {budget:,} points until this browser has timed a "
           f"Matrix View draw")
    return (f"sampled: {per_head:,} of {2 * n_tokens:,} points per head ({why}; the same seeded token sample in every "
            f"head; search hits and the selected input are always drawn in full; Single View shows all points)")
