"""Token labels that do not overlap (AttentionViz's Single View thins its labels the same way).

Pure: screen-space greedy placement. Candidates are taken in priority order; a label is kept
when its box (text width × line height, centred just above its point) overlaps no kept box
(tested on a pixel mask of the kept boxes).
Recomputed for the visible range after a zoom, so zooming in reveals more labels."""
from __future__ import annotations

import numpy as np

CHAR_W = 0.62  # average glyph width / font size
LINE_H = 1.25  # line height / font size


def thin_labels(x: np.ndarray, y: np.ndarray, texts, priority: np.ndarray | None = None,
                x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                width_px: int = 640, height_px: int = 500, font_px: float = 10.0, max_labels: int = 200,
                equal_aspect: bool = True) -> np.ndarray:
    """Indices of the points to label (kept boxes never overlap, all inside the view).
    ``equal_aspect``: the plot keeps one scale for both axes (the data range is centred in the
    plot area), as the Single View does."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64)
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return np.zeros(0, np.int64)
    x0, x1 = x_range if x_range else (float(x[finite].min()), float(x[finite].max()))
    y0, y1 = y_range if y_range else (float(y[finite].min()), float(y[finite].max()))
    sx = width_px / max(x1 - x0, 1e-12)
    sy = height_px / max(y1 - y0, 1e-12)
    if equal_aspect:
        sx = sy = min(sx, sy)
        x0 -= (width_px / sx - (x1 - x0)) / 2
        y1 += (height_px / sy - (y1 - y0)) / 2
    px, py = (x - x0) * sx, (y1 - y) * sy            # pixels, y down
    inside = finite & (px >= 0) & (px <= width_px) & (py >= 0) & (py <= height_px)
    order = np.flatnonzero(inside)
    if priority is not None:
        order = order[np.argsort(-np.asarray(priority, np.float64)[order], kind="stable")]
    h = font_px * LINE_H
    w = np.array([max(1, len(str(texts[i]))) for i in order], np.float64) * font_px * CHAR_W
    bx0, bx1 = px[order] - w / 2, px[order] + w / 2
    by0, by1 = py[order] - h - 2, py[order] - 2
    ok = (bx0 >= 0) & (bx1 <= width_px) & (by0 >= 0)
    # kept boxes mark the pixels they touch; a candidate touching a marked pixel is dropped. Boxes that
    # overlap share a pixel, so kept boxes never overlap (boxes closer than a pixel also count as
    # overlapping). One slice test per candidate instead of one test against every kept box.
    occ = np.zeros((int(np.ceil(height_px)) + 2, int(np.ceil(width_px)) + 2), bool)
    c0, c1 = np.floor(bx0).astype(np.int64).tolist(), np.ceil(bx1).astype(np.int64).tolist()
    r0, r1 = np.floor(by0).astype(np.int64).tolist(), np.ceil(by1).astype(np.int64).tolist()
    kept: list[int] = []
    for k, i in enumerate(order.tolist()):
        if not ok[k]:
            continue
        cell = occ[r0[k]:max(r1[k], r0[k] + 1), c0[k]:max(c1[k], c0[k] + 1)]
        if cell.any():
            continue
        cell[...] = True
        kept.append(i)
        if len(kept) >= max_labels:
            break
    return np.asarray(kept, np.int64)
