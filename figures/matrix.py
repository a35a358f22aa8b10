"""Matrix View: every head in one Scattergl trace (layers = rows, heads = columns)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from .colors import ColorSpec
from .tiling import cell_size, grid_cells, sample_tokens, tile_heads

BASE_SIZE = 3
HIT_SIZE = 6
FADED = 0.07


@dataclass
class MatrixData:
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

    @property
    def n_rows(self):
        return len(self.layers)

    @property
    def n_cols(self):
        return len(self.heads)

    @property
    def per_head(self) -> int:
        return 2 * len(self.idx)

    def point_to_head(self, p: int) -> tuple[int, int, int, bool] | None:
        """Point index -> (layer, head, token, is_key)."""
        if p < 0 or not len(self.shown) or p >= self.offsets[-1]:
            return None
        i = int(np.searchsorted(self.offsets, p, side="right") - 1)
        local = p - int(self.offsets[i])
        m = len(self.idx)
        layer, head = self.shown[i]
        return layer, head, int(self.idx[local % m]), local >= m


def score_rank_value(order: str, value: float | None) -> float:
    """What an order ranks by (higher first): |value| for ρ and ablation effects, else the value."""
    if value is None or not np.isfinite(value):
        return -np.inf
    return abs(value) if (order == "rho" or order.startswith("ablation")) else float(value)


def score_cells(layers, heads, scores: dict, order: str) -> dict:
    """(row, col) per head: each layer's heads ranked by the score (highest first; heads without
    a value last; ties keep head order)."""
    cells = {}
    for r, layer in enumerate(layers):
        hs = sorted(heads, key=lambda h: -score_rank_value(order, scores.get((layer, h))))
        for c, head in enumerate(hs):
            cells[(layer, head)] = (r, c)
    return cells


def score_shade(order: str, scores: dict) -> dict:
    """(l, h) -> shade in [0, 1]: pattern scores as they are, ρ / ablation as |v| / max |v|."""
    vals = {k: score_rank_value(order, v) for k, v in scores.items()}
    vals = {k: v for k, v in vals.items() if np.isfinite(v)}
    if order == "rho" or order.startswith("ablation"):
        top = max(vals.values(), default=0.0)
        return {k: (v / top if top > 0 else 0.0) for k, v in vals.items()}
    return {k: float(min(1.0, max(0.0, v))) for k, v in vals.items()}


def build_matrix_data(layers, heads, n_tokens: int, get_coords, rho: dict, points_per_head: int | None,
                      order: str = "grid", rho_threshold: float = 0.0, seed: int = 0, scores: dict | None = None,
                      score_label: str = "", note: str = "") -> MatrixData:
    """``get_coords(l, h)`` -> (2·n_tokens × ≥2) array or None (not computed yet). ``order`` 'grid',
    'rho' or the name of a per-head score given in ``scores`` ((l, h) -> value): cells are then
    ranked by it within each layer and shaded by it."""
    if order in ("grid", "rho") or scores is None:
        cells = grid_cells(layers, heads, rho, order if order in ("grid", "rho") else "grid")
        order = order if order in ("grid", "rho") else "grid"
        scores, score_label = {}, ""
    else:
        cells = score_cells(layers, heads, scores, order)
    idx = sample_tokens(n_tokens, points_per_head, seed)
    sel = np.r_[idx, n_tokens + idx]
    shown, coords, where, missing, filtered = [], [], [], [], []
    for layer in layers:
        for head in heads:
            r = rho.get((layer, head))
            if rho_threshold > 0 and (r is None or abs(r) < rho_threshold):
                filtered.append((layer, head))
                continue
            c = get_coords(layer, head)
            if c is None or len(c) != 2 * n_tokens:
                missing.append((layer, head))
                continue
            shown.append((layer, head))
            coords.append(c[sel])
            where.append(cells[(layer, head)])
    cell = cell_size(len(layers), len(heads))
    x, y, offsets = tile_heads(coords, where, len(layers), cell)
    return MatrixData(list(layers), list(heads), cells, shown, offsets, x, y, idx, cell, rho, missing, filtered, n_tokens,
                      order, dict(scores), score_label, note)


def matrix_colors(md: MatrixData, spec_for_head) -> tuple[np.ndarray, list]:
    """Tile per-head colour codes. ``spec_for_head(l, h)`` -> ColorSpec (same scale for all)."""
    specs = [spec_for_head(l, h) for l, h in md.shown]
    if not specs:
        return np.zeros(0, np.uint8), [[0, "#000"], [1, "#000"]]
    if all(s is specs[0] for s in specs):
        return np.tile(specs[0].values, len(specs)), specs[0].colorscale
    return np.concatenate([s.values for s in specs]), specs[0].colorscale


def matrix_emphasis(md: MatrixData, token_mask: np.ndarray | None):
    """Search highlight: (opacity f4, size u1) per point, or (None, None) when no search."""
    if token_mask is None:
        return None, None
    hit = np.asarray(token_mask, bool)[md.idx]
    hit = np.tile(np.r_[hit, hit], len(md.shown))
    opacity = np.where(hit, 1.0, FADED).astype(np.float32)
    size = np.where(hit, HIT_SIZE, BASE_SIZE).astype(np.uint8)
    return opacity, size


COMPACT_LABELS_ABOVE = 8  # columns; wider grids label cells with ρ only (the axes name layer and head)


def _fmt_score(md: MatrixData, layer: int, head: int) -> str:
    v = md.scores.get((layer, head))
    if v is None:
        return f"{md.score_label} n/a"
    return f"{md.score_label} {v:.2f}".replace("-", "−")


def _label(md: MatrixData, layer: int, head: int, show_rho: bool, compact: bool = False, full: bool = False) -> str:
    r = md.rho.get((layer, head))
    rho = f"ρ {r:+.2f}".replace("-", "−") if show_rho and r is not None else ""
    if md.score_label:
        score = _fmt_score(md, layer, head)
        if compact:
            return score
        return f"L{layer} H{head}  {score}" + (f"  {rho}" if (rho and full) else "")
    if compact:
        return rho or f"H{head}"
    return f"L{layer} H{head}" + (f"  {rho}" if rho else "")


SHADE_RGB = (255, 127, 14)
SHADE_MAX_ALPHA = 0.45


def shade_shapes(md: MatrixData) -> list[dict]:
    """One filled rectangle per cell with a score, opacity ∝ the score (under the points)."""
    if not md.score_label:
        return []
    shapes = []
    cell = md.cell
    for (layer, head), s in score_shade(md.order, md.scores).items():
        if (layer, head) not in md.cells:
            continue
        row, col = md.cells[(layer, head)]
        y0 = (md.n_rows - 1 - row) * cell
        shapes.append(dict(type="rect", xref="x", yref="y", x0=col * cell, x1=(col + 1) * cell, y0=y0, y1=y0 + cell,
                           layer="below", line=dict(width=0),
                           fillcolor=f"rgba({SHADE_RGB[0]},{SHADE_RGB[1]},{SHADE_RGB[2]},{SHADE_MAX_ALPHA * s:.3f})"))
    return shapes


def matrix_figure(md: MatrixData, colors: np.ndarray, colorscale: list, opacity=None, size=None,
                  show_rho: bool = True, height: int | None = None, uirevision: str = "matrix") -> go.Figure:
    cell = md.cell
    marker = dict(color=colors, colorscale=colorscale, cmin=0, cmax=255, size=BASE_SIZE if size is None else size,
                  opacity=0.75 if opacity is None else opacity, line=dict(width=0))
    trace = go.Scattergl(x=md.x, y=md.y, mode="markers", marker=marker, hoverinfo="none",
                         name="points", showlegend=False)
    fig = go.Figure(trace)
    annotations = []
    missing, filtered = set(md.missing), set(md.filtered)
    compact = md.n_cols > COMPACT_LABELS_ABOVE
    for (layer, head), (row, col) in md.cells.items():
        x0 = col * cell
        y1 = (md.n_rows - row) * cell
        grey = (layer, head) in missing or (layer, head) in filtered
        text = _label(md, layer, head, show_rho, compact)
        if (layer, head) in missing:
            text += " · pending"
        elif (layer, head) in filtered:
            text += " · filtered"
        annotations.append(dict(x=x0 + 0.03 * cell, y=y1 - 0.01 * cell, xref="x", yref="y", text=text,
                                hovertext=_label(md, layer, head, show_rho, full=True), showarrow=False,
                                xanchor="left", yanchor="top",
                                font=dict(size=8 if compact else 9, color="#aaa" if grey else "#444")))
    cols = list(range(md.n_cols))
    ranked = md.order != "grid"
    title = ("heads ranked by |ρ| within each layer" if md.order == "rho" else
             f"heads ranked by {md.score_label} within each layer (cells shaded by it)" if ranked else "head")
    fig.update_layout(
        annotations=annotations, shapes=shade_shapes(md), margin=dict(l=50, r=10, t=10, b=40), plot_bgcolor="white",
        height=height or int(min(1400, max(320, 40 + md.n_rows * min(110, 900 / max(md.n_cols, 1))))),
        dragmode="zoom", uirevision=uirevision, hovermode="closest",
        xaxis=dict(range=[0, md.n_cols * cell], tickvals=[(c + 0.5) * cell for c in cols],
                   ticktext=[f"#{c + 1}" for c in cols] if ranked else [f"H{md.heads[c]}" for c in cols],
                   title=title,
                   showgrid=False, zeroline=False, constrain="domain", minor=dict(tickvals=[c * cell for c in range(md.n_cols + 1)],
                                                               showgrid=True, gridcolor="#ddd", ticklen=0)),
        yaxis=dict(range=[0, md.n_rows * cell], tickvals=[(md.n_rows - 1 - r + 0.5) * cell for r in range(md.n_rows)],
                   ticktext=[f"L{l}" for l in md.layers], title="layer", showgrid=False, zeroline=False,
                   scaleanchor="x", scaleratio=1, constrain="domain",
                   minor=dict(tickvals=[r * cell for r in range(md.n_rows + 1)], showgrid=True, gridcolor="#ddd", ticklen=0)),
    )
    return fig
