"""Matrix View: every head in one Scattergl trace (layers = rows, heads = columns)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from .colors import ColorSpec, rgba_rows
from .tiling import LABEL_STRIP, PAD, cell_size, fit_cell, grid_cells, sample_tokens

BASE_SIZE = 3
BASE_OPACITY = 0.55     # semi-transparent: dense regions read as density, and overlaps stay visible
FADED = 0.07            # the other points while a search is active
LABELLED_COLS = 16      # wider grids carry no per-cell labels (axes and hover name the heads)


@dataclass
class MatrixData:
    """What the Matrix View draws (a pure view model: the Plotly figure, the server-drawn picture
    and the CSV export all read it).

    Points of one head are interleaved — query of token ``idx[0]``, its key, query of ``idx[1]``,
    its key, … — so neither role is drawn over the other. Every head's coordinates are fitted
    into its cell on ALL of its points (``fits``), so overlays of any tokens (search hits, the
    selected input) land where they lie in the full picture whatever the sample."""
    layers: list
    heads: list
    cells: dict                  # (l, h) -> (row, col)
    shown: list                  # (l, h) heads that have points, in concatenation order
    offsets: np.ndarray          # len(shown)+1 point offsets
    x: np.ndarray                # uint16
    y: np.ndarray                # uint16
    idx: np.ndarray              # token subset shared by every head
    cell: int
    rho: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    filtered: list = field(default_factory=list)
    n_tokens: int = 0
    order: str = "grid"
    scores: dict = field(default_factory=dict)   # (l, h) -> value of the score the cells are ordered/shaded by
    score_label: str = ""                        # its name for labels ("" = order grid/rho, no shading)
    note: str = ""                               # e.g. why a requested order fell back to the grid
    fits: list = field(default_factory=list)     # CellFit per shown head
    budget: int = 0                              # point budget the level of detail was chosen for (0 = fixed)
    # encoder–decoder grids (figures.encdec): which token rows the heads' queries and keys are, and
    # each drawn point of one head as (stored row, token, is_key); None = self-attention over n_tokens,
    # points interleaved (query of idx[0], its key, …)
    sides: object = None
    pt_rows: np.ndarray | None = None
    pt_tok: np.ndarray | None = None
    pt_key: np.ndarray | None = None
    kind: str | None = None
    # ordered by a faithfulness figure: its catalogue entry (id, label, short, better, definition);
    # the |ρ| filter then applies to that figure, on its faithful side (passes_filter)
    score_fig: dict | None = None
    misleading: list = field(default_factory=list)  # (l, h) whose shown picture misleads (picture ρ > 0)
    misleading_label: str = ""                   # that picture figure's name, e.g. "picture ρ (UMAP 2D)"

    def __post_init__(self):
        if self.pt_rows is None:
            self.pt_rows = interleaved_rows(self.idx, self.n_tokens)
        if self.pt_tok is None:
            self.pt_tok, self.pt_key = interleaved_tokens(self.idx)

    @property
    def n_rows(self):
        return len(self.layers)

    @property
    def n_cols(self):
        return len(self.heads)

    @property
    def per_head(self) -> int:
        return len(self.pt_rows)

    @property
    def n_points(self) -> int:
        """Points of one head in full (queries + keys)."""
        return 2 * self.n_tokens if self.sides is None else self.sides.n_points

    @property
    def sampled(self) -> bool:
        return self.per_head < self.n_points

    @property
    def interleaved(self) -> bool:
        """Each drawn query is followed by its token's key (every grid but cross-attention)."""
        return self.sides is None or self.sides.square

    def point_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(token, is_key) of each point of one head, in trace order."""
        return self.pt_tok, self.pt_key

    def point_to_head(self, p: int) -> tuple[int, int, int, bool] | None:
        """Point index -> (layer, head, token, is_key)."""
        if p < 0 or not len(self.shown) or p >= self.offsets[-1]:
            return None
        i = int(np.searchsorted(self.offsets, p, side="right") - 1)
        local = p - int(self.offsets[i])
        layer, head = self.shown[i]
        return layer, head, int(self.pt_tok[local]), bool(self.pt_key[local])


def interleaved_tokens(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token, is_key) per point when each token's query is followed by its key."""
    t = np.asarray(tokens, np.int64)
    return np.repeat(t, 2), np.tile(np.array([False, True]), len(t))


def interleaved_rows(tokens: np.ndarray, n_tokens: int) -> np.ndarray:
    """Rows of a head's stored coordinates (queries first, then keys) in interleaved order."""
    t = np.asarray(tokens, np.int64)
    rows = np.empty(2 * len(t), np.int64)
    rows[0::2], rows[1::2] = t, n_tokens + t
    return rows


def interleave(values: np.ndarray) -> np.ndarray:
    """Per-point values given queries-then-keys (2m) -> interleaved order."""
    v = np.asarray(values)
    m = len(v) // 2
    return np.stack([v[:m], v[m:]], 1).reshape(-1, *v.shape[1:])


@dataclass
class Overlay:
    """Points of chosen tokens drawn over the matrix in every shown head (search hits, the
    selected input): per token its query then its key (only the roles the grid's heads have: in a
    cross-attention grid a target token has a query, a source token a key), heads in ``md.shown``
    order, one block of ``len(pt_tok)`` points per head."""
    tokens: np.ndarray           # the tokens with a point in the grid
    x: np.ndarray
    y: np.ndarray
    heads: list                  # (l, h) per block
    pt_tok: np.ndarray | None = None     # token of each point of one block (None: interleaved tokens)
    pt_key: np.ndarray | None = None
    pt_rows: np.ndarray | None = None    # stored row of each point of one block

    def __post_init__(self):
        if self.pt_tok is None:
            self.pt_tok, self.pt_key = interleaved_tokens(self.tokens)

    def point_to_head(self, p: int) -> tuple[int, int, int, bool] | None:
        k = len(self.pt_tok)
        if k == 0 or p < 0 or p >= k * len(self.heads):
            return None
        layer, head = self.heads[p // k]
        local = p % k
        return layer, head, int(self.pt_tok[local]), bool(self.pt_key[local])


def overlay_layout(md: MatrixData, tokens) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens present, token per point, is_key per point, stored row per point) of one head's
    block for ``tokens`` in ``md``'s grid."""
    tokens = np.asarray(sorted(set(int(t) for t in np.asarray(tokens).ravel())), np.int64)
    if md.sides is None:
        tokens = tokens[(tokens >= 0) & (tokens < md.n_tokens)]
        t, k = interleaved_tokens(tokens)
        return tokens, t, k, interleaved_rows(tokens, md.n_tokens)
    sd = md.sides
    tq, tk = tokens[sd.has_query(tokens)], tokens[sd.has_key(tokens)]
    t = np.r_[tq, tk]
    k = np.r_[np.zeros(len(tq), bool), np.ones(len(tk), bool)]
    rows = np.r_[sd.query_row(tq), sd.key_row(tk)]
    order = np.lexsort((k, t))
    return np.unique(t), t[order], k[order], rows[order]


def overlay_points(md: MatrixData, get_coords, tokens) -> Overlay:
    """Tile ``tokens`` (queries and keys) into every shown head with that head's own fit
    (``get_coords`` None: the layout only, coordinates zero — for colouring and clicks)."""
    tokens, pt_tok, pt_key, rows = overlay_layout(md, tokens)
    heads = list(md.shown) if len(rows) else []
    if get_coords is None:
        z = np.zeros(len(rows) * len(heads), np.uint16)
        return Overlay(tokens, z, z, heads, pt_tok, pt_key, rows)
    xs, ys = [], []
    if len(rows):
        for (layer, head), fit in zip(md.shown, md.fits):
            c = get_coords(layer, head)
            x, y = fit.apply(np.asarray(c)[rows])
            xs.append(x)
            ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros(0, np.uint16)
    y = np.concatenate(ys) if ys else np.zeros(0, np.uint16)
    return Overlay(tokens, x, y, heads, pt_tok, pt_key, rows)


def score_rank_value(order: str, value: float | None, better: str = "higher") -> float:
    """What an order ranks by (higher first): |value| for ρ and ablation effects, −value for a
    figure whose lower values are more faithful (``better="lower"``: Spearman figures), else the value."""
    if value is None or not np.isfinite(value):
        return -np.inf
    if better == "lower":
        return -float(value)
    return abs(value) if (order == "rho" or order.startswith("ablation")) else float(value)


def score_cells(layers, heads, scores: dict, order: str, better: str = "higher") -> dict:
    """(row, col) per head: each layer's heads ranked by the score (best first; heads without
    a value last; ties keep head order)."""
    cells = {}
    for r, layer in enumerate(layers):
        hs = sorted(heads, key=lambda h: -score_rank_value(order, scores.get((layer, h)), better))
        for c, head in enumerate(hs):
            cells[(layer, head)] = (r, c)
    return cells


def score_shade(order: str, scores: dict, figure: dict | None = None) -> dict:
    """(l, h) -> shade in [0, 1]: pattern scores as they are, ρ / ablation as |v| / max |v|; a
    faithfulness ``figure`` (its catalogue entry) from its least (0) to its most faithful head (1)
    over the heads that have it (min–max in the faithful direction)."""
    better = (figure or {}).get("better", "higher")
    vals = {k: score_rank_value(order, v, better) for k, v in scores.items()}
    vals = {k: v for k, v in vals.items() if np.isfinite(v)}
    if figure is not None:
        lo, hi = min(vals.values(), default=0.0), max(vals.values(), default=0.0)
        return {k: ((v - lo) / (hi - lo) if hi > lo else 1.0) for k, v in vals.items()}
    if order == "rho" or order.startswith("ablation"):
        top = max(vals.values(), default=0.0)
        return {k: (v / top if top > 0 else 0.0) for k, v in vals.items()}
    return {k: float(min(1.0, max(0.0, v))) for k, v in vals.items()}


def sample_points(sides, points_per_head: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stored row, token, is_key) of the drawn points of one head of a grid whose queries and keys
    are different tokens (cross-attention): a seeded sample of queries and of keys in proportion
    to their numbers (all of them when they fit), the two roles mixed evenly in drawing order."""
    nq, nk = sides.n_q, sides.n_k
    if points_per_head and nq + nk > points_per_head:
        mq = int(round(points_per_head * nq / (nq + nk)))
        sq, sk = sample_tokens(nq, 2 * mq, seed), sample_tokens(nk, 2 * (points_per_head - mq), seed + 1)
    else:
        sq, sk = np.arange(nq), np.arange(nk)
    rows = np.r_[sq, nq + sk]
    tok = np.r_[sides.q_off + sq, sides.k_off + sk]
    key = np.r_[np.zeros(len(sq), bool), np.ones(len(sk), bool)]
    order = np.argsort(np.r_[(np.arange(len(sq)) + 0.5) / max(len(sq), 1),
                             (np.arange(len(sk)) + 0.5) / max(len(sk), 1)], kind="stable")
    return rows[order], tok[order], key[order]


def passes_filter(value, better: str, threshold: float) -> bool:
    """The Matrix View's filter on a faithfulness figure, on its faithful side: Spearman figures
    (``better="lower"``) keep ρ ≤ −t, trustworthiness keeps values ≥ t. Undefined or missing values
    fail any threshold above 0."""
    t = float(threshold or 0)
    if t <= 0:
        return True
    if value is None or not isinstance(value, (int, float)) or not np.isfinite(float(value)):
        return False
    return float(value) <= -t if better == "lower" else float(value) >= t


def build_matrix_data(layers, heads, n_tokens: int, get_coords, rho: dict, points_per_head: int | None,
                      order: str = "grid", rho_threshold: float = 0.0, seed: int = 0, scores: dict | None = None,
                      score_label: str = "", note: str = "", budget: int = 0, sides=None,
                      score_fig: dict | None = None, misleading=(), misleading_label: str = "") -> MatrixData:
    """``get_coords(l, h)`` -> (2·n_tokens × ≥2) array or None (not computed yet). ``order`` 'grid',
    'rho' or the name of a per-head score given in ``scores`` ((l, h) -> value): cells are then
    ranked by it within each layer and shaded by it. ``sides`` (figures.encdec.HeadSides, one grid
    of an encoder–decoder run): the heads' queries and keys are those token rows; their coordinates
    are ``sides.n_points`` rows (queries, then keys). ``score_fig``: the scores are that
    faithfulness figure (catalogue entry): ranked in its faithful direction, and the threshold
    filters by it (:func:`passes_filter`) instead of |ρ|. ``misleading``: heads whose shown
    picture misleads (marked)."""
    if order in ("grid", "rho") or scores is None:
        cells = grid_cells(layers, heads, rho, order if order in ("grid", "rho") else "grid")
        order = order if order in ("grid", "rho") else "grid"
        scores, score_label, score_fig = {}, "", None
    else:
        cells = score_cells(layers, heads, scores, order, (score_fig or {}).get("better", "higher"))
    pt_tok = pt_key = None
    if sides is None:
        idx = sample_tokens(n_tokens, points_per_head, seed)
        rows = interleaved_rows(idx, n_tokens)
        n_rows = 2 * n_tokens
    elif sides.square:
        n_tokens = sides.n_q
        idx = sample_tokens(n_tokens, points_per_head, seed)
        rows = interleaved_rows(idx, n_tokens)
        pt_tok, pt_key = interleaved_tokens(sides.q_off + idx)
        n_rows = 2 * n_tokens
    else:
        n_tokens = sides.n_q
        rows, pt_tok, pt_key = sample_points(sides, points_per_head, seed)
        idx = np.unique(pt_tok)
        n_rows = sides.n_points
    cell = cell_size(len(layers), len(heads))
    top = LABEL_STRIP if len(heads) <= LABELLED_COLS else PAD
    shown, fits, xs, ys, offsets, missing, filtered = [], [], [], [], [0], [], []
    for layer in layers:
        for head in heads:
            r = rho.get((layer, head))
            if score_fig is not None:
                if not passes_filter(scores.get((layer, head)), score_fig.get("better", "higher"), rho_threshold):
                    filtered.append((layer, head))
                    continue
            elif rho_threshold > 0 and (r is None or abs(r) < rho_threshold):
                filtered.append((layer, head))
                continue
            c = get_coords(layer, head)
            if c is None or len(c) != n_rows:
                missing.append((layer, head))
                continue
            row, col = cells[(layer, head)]
            fit = fit_cell(c, row, col, len(layers), cell, top)
            x, y = fit.apply(np.asarray(c)[rows])
            shown.append((layer, head))
            fits.append(fit)
            xs.append(x)
            ys.append(y)
            offsets.append(offsets[-1] + len(x))
    x = np.concatenate(xs) if xs else np.zeros(0, np.uint16)
    y = np.concatenate(ys) if ys else np.zeros(0, np.uint16)
    return MatrixData(list(layers), list(heads), cells, shown, np.array(offsets), x, y, idx, cell, rho, missing,
                      filtered, n_tokens, order, dict(scores), score_label, note, fits, int(budget or 0), sides,
                      rows, pt_tok, pt_key, getattr(sides, "kind", None),
                      dict(score_fig) if score_fig else None, sorted(set(misleading)), misleading_label)


def pick_roles(values: np.ndarray, is_key: np.ndarray) -> np.ndarray:
    """Per point, its role's code from a ColorSpec over the points' tokens (queries, then keys).
    A ColorSpec over the interleaved grid's token sample instead (queries of ``idx`` then keys,
    half as many codes: the older contract) is interleaved."""
    m = len(is_key)
    v = np.asarray(values)
    if len(v) == m:
        return interleave(v)
    return np.where(np.asarray(is_key, bool), v[m:2 * m], v[:m])


def matrix_colors(md: MatrixData, spec_for_head) -> tuple[np.ndarray, list]:
    """Tile per-head colour codes (in the points' order). ``spec_for_head(l, h)`` -> ColorSpec over
    md.pt_tok, queries then keys (same scale for all); each point takes its role's code."""
    specs = [spec_for_head(l, h) for l, h in md.shown]
    if not specs:
        return np.zeros(0, np.uint8), [[0, "#000"], [1, "#000"]]
    if all(s is specs[0] for s in specs):
        return np.tile(pick_roles(specs[0].values, md.pt_key), len(specs)), specs[0].colorscale
    return np.concatenate([pick_roles(s.values, md.pt_key) for s in specs]), specs[0].colorscale


def overlay_colors(ov: Overlay, spec_for_head) -> np.ndarray:
    """Colour codes of an overlay's points. ``spec_for_head(l, h)`` -> ColorSpec over ov.pt_tok."""
    if not len(ov.pt_tok) or not ov.heads:
        return np.zeros(0, np.uint8)
    specs = [spec_for_head(l, h) for l, h in ov.heads]
    if all(s is specs[0] for s in specs):
        return np.tile(pick_roles(specs[0].values, ov.pt_key), len(specs))
    return np.concatenate([pick_roles(s.values, ov.pt_key) for s in specs])


def overlay_rgba(codes: np.ndarray, colorscale: list) -> np.ndarray:
    """An overlay trace's colours as RGBA rows (n × 4 uint8), as the main trace's: plotly.js maps
    colour codes through a colorscale point by point, which cost ~0.2 s for the ~25,000 hits of a
    frequent word in a 72-head run. No point: an empty code array (nothing to colour)."""
    codes = np.asarray(codes)
    if not len(codes):
        return np.zeros(0, np.uint8)
    return rgba_rows(codes, colorscale)


def base_marker_size(md: MatrixData, width_px: int = 540) -> float:
    """Small points: about 1/40 of a cell on screen, 1–3 px."""
    cell_px = width_px / max(md.n_cols, 1)
    return float(np.clip(cell_px / 40, 1.0, BASE_SIZE))


def _fmt(v: float, signed: bool = True, short: bool = False) -> str:
    t = (f"{v:+.2f}" if signed else f"{v:.2f}").replace("-", "−")
    return t.replace("0.", ".", 1) if short else t


def cell_label(md: MatrixData, layer: int, head: int, wide: bool = True) -> str:
    """The label of a cell: its head id and the figure the cells are ordered by (ρ by default).
    ``wide``: room for the figure's name."""
    if md.score_label:
        v = md.scores.get((layer, head))
        signed = bool(md.score_fig) and md.score_fig.get("better") == "lower"
        fig = "n/a" if v is None or not np.isfinite(v) else _fmt(v, signed=signed, short=not wide)
        fig = f"{md.score_label} {fig}" if wide else fig
    else:
        r = md.rho.get((layer, head))
        fig = "" if r is None else (f"ρ {_fmt(r)}" if wide else _fmt(r, short=True))
    if (layer, head) in set(md.missing):
        fig = "pending" if wide else "…"
    elif (layer, head) in set(md.filtered):
        fig = "filtered" if wide else "·"
    # narrow cells have no room for the mark: their red outline and hover line say it
    mark = MISLEADING_MARK if wide and (layer, head) in set(md.misleading) else ""
    return f"{mark}H{head} {fig}".strip()


def cell_hover(md: MatrixData, layer: int, head: int) -> str:
    """Full description of a cell (tooltips, the hover line)."""
    parts = [f"L{layer} H{head}" + (f" ({md.kind})" if md.kind else "")]
    r = md.rho.get((layer, head))
    if r is not None:
        parts.append(f"ρ {_fmt(r)}")
    if md.score_label:
        v = md.scores.get((layer, head))
        signed = bool(md.score_fig) and md.score_fig.get("better") == "lower"
        name = md.score_fig["label"] if md.score_fig else md.score_label
        parts.append(f"{name} {'n/a' if v is None or not np.isfinite(v) else _fmt(v, signed=signed)}")
    if (layer, head) in set(md.misleading):
        parts.append(f"{MISLEADING_MARK} {md.misleading_label or 'picture ρ'} > 0: nearer in this picture means LESS "
                     "attention (the picture misleads)")
    if (layer, head) in set(md.missing):
        parts.append("not computed yet")
    elif (layer, head) in set(md.filtered):
        parts.append(f"hidden by the {md.score_fig['short'] if md.score_fig else '|ρ|'} filter")
    return " · ".join(parts)


def cell_labels(md: MatrixData) -> list[tuple[int, int, int, int, str, str, bool]]:
    """(layer, head, row, col, label, hover, greyed) per labelled cell; none on grids wider than
    LABELLED_COLS (the axes and the hover line name the heads there)."""
    if md.n_cols > LABELLED_COLS:
        return []
    wide = md.n_cols <= 8
    grey = set(md.missing) | set(md.filtered)
    return [(layer, head, row, col, cell_label(md, layer, head, wide), cell_hover(md, layer, head), (layer, head) in grey)
            for (layer, head), (row, col) in sorted(md.cells.items(), key=lambda kv: kv[1])]


def faithfulness_note(md: MatrixData) -> list[str]:
    """The Matrix View note's lines about faithfulness figures: which figure ranks/shades/filters
    the cells (named by its definition's label) and the cells marked because their picture misleads."""
    parts = []
    f = md.score_fig
    if f:
        parts.append(f"heads ranked within each layer by {f['label']}, most faithful first "
                     f"({f['better']} = more faithful) and shaded by it (darker = more faithful; min–max over heads)")
        if md.filtered:
            parts.append(f"{len(md.filtered)} heads hidden by the filter on {f['label']} "
                         f"({'ρ ≤ −t' if f['better'] == 'lower' else 'value ≥ t'})")
    if md.misleading:
        parts.append(f"{MISLEADING_MARK} red dotted outline: {len(md.misleading)} heads whose {md.misleading_label} "
                     "is positive — nearer in that picture means LESS attention (the picture misleads)")
    return parts


SHADE_RGB = (255, 127, 14)
SHADE_MAX_ALPHA = 0.45
MISLEADING_RGB = (214, 39, 40)  # the outline of a cell whose picture misleads
MISLEADING_MARK = "⚠"


def shade_shapes(md: MatrixData) -> list[dict]:
    """One filled rectangle per cell with a score, opacity ∝ the score (under the points), and a
    light grey one per pending/filtered cell."""
    shapes = []
    cell = md.cell

    def rect(row, col, fill):
        y0 = (md.n_rows - 1 - row) * cell
        return dict(type="rect", xref="x", yref="y", x0=col * cell, x1=(col + 1) * cell, y0=y0, y1=y0 + cell,
                    layer="below", line=dict(width=0), fillcolor=fill)
    if md.score_label:
        for (layer, head), s in score_shade(md.order, md.scores, md.score_fig).items():
            if (layer, head) in md.cells:
                shapes.append(rect(*md.cells[(layer, head)],
                                   f"rgba({SHADE_RGB[0]},{SHADE_RGB[1]},{SHADE_RGB[2]},{SHADE_MAX_ALPHA * s:.3f})"))
    for lh in list(md.missing) + list(md.filtered):
        if lh in md.cells:
            shapes.append(rect(*md.cells[lh], "rgba(0,0,0,0.045)"))
    return shapes


KIND_AXIS = {"encoder": "encoder", "decoder": "decoder self-attn", "cross": "cross-attn"}


def misleading_shapes(md: MatrixData) -> list[dict]:
    """A red dotted outline per cell whose shown picture misleads (drawn by the overlay graph, so it
    stays visible above the points and above the search fade)."""
    cell = md.cell
    r, g, b = MISLEADING_RGB
    inset = 0.012 * cell
    shapes = []
    for lh in md.misleading:
        if lh in md.cells:
            row, col = md.cells[lh]
            y0 = (md.n_rows - 1 - row) * cell
            shapes.append(dict(type="rect", xref="x", yref="y", x0=col * cell + inset, x1=(col + 1) * cell - inset,
                               y0=y0 + inset, y1=y0 + cell - inset, layer="above", fillcolor="rgba(0,0,0,0)",
                               line=dict(color=f"rgb({r},{g},{b})", width=2, dash="dot"), name="misleading"))
    return shapes


MATRIX_PLOT_PX = 540  # width of the Matrix View's plot area in the page's two-column layout


def matrix_height(md: MatrixData) -> int:
    """Figure height that fits the square cells at the panel's width (no empty band above)."""
    return int(min(1400, max(320, 60 + MATRIX_PLOT_PX * md.n_rows / max(md.n_cols, 1))))


def _typed(a):
    """Arrays go to Plotly as numpy arrays: plotly.py sends them as base64 typed arrays."""
    return np.ascontiguousarray(a)


def ring_points(selection: Overlay | None, token: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The selected token's query and key in every head (picked from the selection overlay)."""
    empty = np.zeros(0, np.uint16)
    if selection is None or token is None or not len(selection.tokens):
        return empty, empty
    k = len(selection.pt_tok)
    mine = np.flatnonzero(selection.pt_tok == int(token))
    if not len(mine):
        return empty, empty
    pick = (np.arange(len(selection.heads))[:, None] * k + mine[None, :]).ravel()
    return selection.x[pick], selection.y[pick]


def label_annotations(md: MatrixData) -> list[dict]:
    """Cell labels, in a strip above each cell's points on a white background (drawn by the
    overlay graph, so they stay readable above the points and above the search fade)."""
    cell = md.cell
    return [dict(x=col * cell + PAD * cell * 0.5, y=(md.n_rows - row) * cell - 0.012 * cell, xref="x", yref="y",
                 text=label, hovertext=hover, showarrow=False, xanchor="left", yanchor="top",
                 bgcolor="rgba(255,255,255,0.85)", borderpad=1,
                 font=dict(size=10 if md.n_cols <= 8 else 8, color="#999" if grey else "#333"))
            for layer, head, row, col, label, hover, grey in cell_labels(md)]


OVERLAY_TRACES = ("search hits", "selected input", "selected token")


def matrix_figure(md: MatrixData, colors: np.ndarray, colorscale: list, height: int | None = None,
                  uirevision: str = "matrix") -> go.Figure:
    """The Matrix View's points: one WebGL trace of every drawn point, colours as RGBA rows (the
    colour codes mapped through ``colorscale`` here, once), coordinates as typed arrays. Search
    hits and the selection live in :func:`overlay_figure`, a second graph drawn over this one, so
    that changing them never makes plotly.js recompute this trace."""
    cell = md.cell
    size = base_marker_size(md)
    traces = [go.Scattergl(x=_typed(md.x), y=_typed(md.y), mode="markers", hoverinfo="none", name="points",
                           showlegend=False, marker=dict(color=rgba_rows(colors, colorscale), size=size,
                                                         line=dict(width=0),
                                                         opacity=BASE_OPACITY))]
    fig = go.Figure(traces, _validate=False)  # plain JSON out; validation cost ~40 ms a draw (tests check the figure)
    cols = list(range(md.n_cols))
    ranked = md.order != "grid"
    title = ("heads ranked by |ρ| within each layer (cell labels name the head)" if md.order == "rho" else
             f"heads ranked by {md.score_fig['label']}, most faithful first" if ranked and md.score_fig else
             f"heads ranked by {md.score_label} within each layer (cells shaded by it)" if ranked else "head")
    every = max(1, md.n_cols // 16)
    rows_every = max(1, md.n_rows // 32)
    fig.update_layout(
        shapes=shade_shapes(md), margin=dict(l=50, r=10, t=30, b=40), plot_bgcolor="white",
        height=height or matrix_height(md),
        dragmode="zoom", uirevision=uirevision, hovermode="closest",
        xaxis=dict(range=[0, md.n_cols * cell], tickvals=[(c + 0.5) * cell for c in cols[::every]],
                   ticktext=[f"#{c + 1}" if ranked else f"H{md.heads[c]}" for c in cols[::every]],
                   title=dict(text=title, standoff=4), tickfont=dict(size=10),
                   showgrid=False, zeroline=False, constrain="domain",
                   minor=dict(tickvals=[c * cell for c in range(md.n_cols + 1)], showgrid=True, gridcolor="#ddd", ticklen=0)),
        yaxis=dict(range=[0, md.n_rows * cell], tickfont=dict(size=10),
                   tickvals=[(md.n_rows - 1 - r + 0.5) * cell for r in range(md.n_rows)][::rows_every],
                   ticktext=[f"L{l}" for l in md.layers][::rows_every],
                   title="layer" + (f" ({KIND_AXIS.get(md.kind, md.kind)})" if md.kind else ""), showgrid=False, zeroline=False,
                   scaleanchor="x", scaleratio=1, constrain="domain",
                   minor=dict(tickvals=[r * cell for r in range(md.n_rows + 1)], showgrid=True, gridcolor="#ddd", ticklen=0)),
    )
    return fig


def overlay_axes(md: MatrixData) -> tuple[dict, dict]:
    """The Matrix View's x and y axes without ticks or labels: the overlay graph's axes (same
    ranges and aspect, so its points land on the main graph's), with the cell grid."""
    cell = md.cell
    bare = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="", showline=False, title=None)
    return (dict(range=[0, md.n_cols * cell], constrain="domain", **bare,
                 minor=dict(tickvals=[c * cell for c in range(md.n_cols + 1)], showgrid=True, gridcolor="#ddd",
                            ticklen=0)),
            dict(range=[0, md.n_rows * cell], scaleanchor="x", scaleratio=1, constrain="domain", **bare,
                 minor=dict(tickvals=[r * cell for r in range(md.n_rows + 1)], showgrid=True, gridcolor="#ddd",
                            ticklen=0)))


FADE = f"rgba(255,255,255,{1 - FADED / BASE_OPACITY:.3f})"  # over the points while a search is active


def overlay_figure(md: MatrixData, colorscale: list, hits: Overlay | None = None,
                   hit_colors: np.ndarray | None = None, selection: Overlay | None = None,
                   selection_colors: np.ndarray | None = None, selected_token: int | None = None,
                   searching: bool = False, height: int | None = None) -> go.Figure:
    """What is drawn over the Matrix View's points, in a transparent graph of the same size and
    axes: traces 0 search hits (every hit in every head, whatever the sample), 1 the selected
    token's input, 2 the selected token (ringed); the cell labels; while searching, a white veil
    that fades the points beneath (plot background, opacity ``FADE``). Small, so search and
    selection redraw only this, never the main graph's points."""
    size = base_marker_size(md)
    empty = np.zeros(0, np.uint16)
    traces = []
    for ov, cols, name, msize, op in ((hits, hit_colors, OVERLAY_TRACES[0], max(3.0, size * 1.8), 0.95),
                                      (selection, selection_colors, OVERLAY_TRACES[1], max(4, size * 1.6), 0.9)):
        x = ov.x if ov is not None else empty
        y = ov.y if ov is not None else empty
        c = cols if cols is not None and len(cols) == len(x) else np.zeros(len(x), np.uint8)
        traces.append(go.Scattergl(x=_typed(x), y=_typed(y), mode="markers", hoverinfo="skip", name=name,
                                   showlegend=False, marker=dict(color=_typed(overlay_rgba(c, colorscale)), size=msize,
                                                                 opacity=op, line=dict(width=0))))
    sx, sy = ring_points(selection, selected_token)
    traces.append(go.Scattergl(x=_typed(sx), y=_typed(sy), mode="markers", hoverinfo="skip", name=OVERLAY_TRACES[2],
                               showlegend=False, marker=dict(size=max(7, size * 3), color="rgba(0,0,0,0)",
                                                             line=dict(color="#111", width=2))))
    xaxis, yaxis = overlay_axes(md)
    fig = go.Figure(traces, _validate=False)  # plain JSON out; validation cost ~40 ms a draw (tests check the figure)
    fig.update_layout(margin=dict(l=50, r=10, t=30, b=40), height=height or matrix_height(md),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor=FADE if searching else "rgba(0,0,0,0)",
                      xaxis=xaxis, yaxis=yaxis, annotations=label_annotations(md), shapes=misleading_shapes(md),
                      hovermode=False, dragmode=False, showlegend=False)
    return fig
