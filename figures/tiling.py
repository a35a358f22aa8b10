"""Matrix View tiling: every head's 2D coords rescaled into its own grid cell.

Coordinates are quantised to uint16 in a grid of ``cell`` units per head so that the whole
matrix travels as two uint16 typed arrays (4 bytes a point before gzip)."""
from __future__ import annotations

import numpy as np

from attention_atlas.core.tokens import sample_tokens  # noqa: F401 - moved to the shared core, imported from here too

PAD = 0.06  # fraction of a cell left empty on each side
LABEL_STRIP = 0.17  # fraction of a cell kept free of points at its top for the cell's label


def cell_size(n_rows: int, n_cols: int) -> int:
    """Units per cell: as fine as uint16 allows for this grid (capped at 4096)."""
    return int(min(4096, 65000 // max(1, n_rows, n_cols)))


class CellFit:
    """How one head's 2D coordinates map into its grid cell: tiled = (c − centre)·scale + anchor.

    Fitted once on ALL of the head's points, so any subset (a sample, search hits, the selected
    input) lands exactly where it lies in the full picture."""
    __slots__ = ("centre", "scale", "anchor", "fill")

    def __init__(self, centre, scale, anchor, fill):
        self.centre, self.scale, self.anchor, self.fill = centre, scale, anchor, fill

    def apply(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(coords, np.float64)[:, :2]
        if len(c) == 0:
            return np.zeros(0, np.uint16), np.zeros(0, np.uint16)
        c = np.where(np.isfinite(c), c, self.fill)
        t = (c - self.centre) * self.scale + self.anchor
        return np.rint(t[:, 0]).astype(np.uint16), np.rint(t[:, 1]).astype(np.uint16)


def fit_cell(coords: np.ndarray, row: int, col: int, n_rows: int, cell: int, top: float = PAD) -> CellFit:
    """Min–max rescale (aspect kept) of ``coords`` into cell (row, col) (row 0 = top row), leaving
    PAD on three sides and ``top`` (a label strip) above."""
    c = np.asarray(coords, np.float64)[:, :2]
    finite = np.isfinite(c).all(1) if len(c) else np.zeros(0, bool)
    fill = np.nanmean(c[finite], 0) if finite.any() else np.zeros(2)
    c = np.where(finite[:, None], c, fill) if len(c) else np.zeros((1, 2))
    lo, hi = c.min(0), c.max(0)
    w, h = cell * (1 - 2 * PAD), cell * (1 - PAD - top)
    span = np.maximum(hi - lo, 1e-12)
    scale = float(min(w / span[0], h / span[1]))
    if not np.isfinite(scale) or (hi - lo).max() < 1e-12:
        scale = 0.0
    anchor = np.array([col * cell + cell / 2, (n_rows - 1 - row) * cell + cell * PAD + h / 2])
    return CellFit((lo + hi) / 2, scale, anchor, fill)


def fit_into_cell(coords: np.ndarray, row: int, col: int, n_rows: int, cell: int,
                  top: float = PAD) -> tuple[np.ndarray, np.ndarray]:
    """Min–max rescale (aspect kept) into cell (row, col); row 0 is the top row."""
    if len(coords) == 0:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint16)
    return fit_cell(coords, row, col, n_rows, cell, top).apply(coords)


def cell_of_point(x: float, y: float, n_rows: int, cell: int) -> tuple[int, int]:
    col = int(x // cell)
    row = n_rows - 1 - int(y // cell)
    return row, col


def tile_heads(head_coords: list[np.ndarray | None], cells: list[tuple[int, int]], n_rows: int, cell: int):
    """Concatenate tiled heads. ``head_coords[i]`` (or None for a missing head) goes to
    ``cells[i]``. Returns x, y (uint16) and offsets (len(heads)+1) into the point arrays."""
    xs, ys, offsets = [], [], [0]
    for coords, (row, col) in zip(head_coords, cells):
        if coords is None:
            offsets.append(offsets[-1])
            continue
        x, y = fit_into_cell(coords, row, col, n_rows, cell)
        xs.append(x)
        ys.append(y)
        offsets.append(offsets[-1] + len(x))
    if not xs:
        return np.zeros(0, np.uint16), np.zeros(0, np.uint16), np.array(offsets)
    return np.concatenate(xs), np.concatenate(ys), np.array(offsets)


def head_of_point(point_index: int, offsets: np.ndarray) -> int:
    """Index (into the heads list) of the head owning a point of the tiled trace."""
    return int(np.searchsorted(offsets, point_index, side="right") - 1)


def grid_cells(layers: list[int], heads: list[int], rho: dict | None = None, order: str = "grid"):
    """(row, col) per (layer, head). order='grid' keeps head order; 'rho' sorts the heads of
    each layer by |ρ| (strongest first) so columns read as a ranking within a layer."""
    cells = {}
    for r, layer in enumerate(layers):
        hs = list(heads)
        if order == "rho" and rho is not None:
            hs.sort(key=lambda h: -abs(rho.get((layer, h)) or 0.0))
        for c, head in enumerate(hs):
            cells[(layer, head)] = (r, c)
    return cells
