"""A raster picture of the Matrix View, drawn on the server with numpy + Pillow.

The page shows it the moment the layout renders (before plotly.js has loaded and WebGL has
drawn), then the interactive Matrix View replaces it. It has the same tiling, the same colour
codes and the same labels as the interactive figure, so what appears first is what stays."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colors import colorscale_lut  # noqa: F401 - re-exported (tests, callers)

MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 50, 10, 10, 40


def rasterise(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colorscale: list, extent: tuple[float, float],
              size: tuple[int, int], alpha: np.ndarray | float = 0.75, dot: int = 2,
              background: np.ndarray | None = None) -> np.ndarray:
    """Points (data units, y up) → H × W × 3 uint8 on white (or ``background``), drawn in order
    (later on top), each a ``dot``-pixel square blended with ``alpha``."""
    w, h = size
    img = np.full((h, w, 3), 255.0) if background is None else np.asarray(background, np.float64).copy()
    if len(x) == 0:
        return img.astype(np.uint8)
    lut = colorscale_lut(colorscale).astype(np.float64)
    px = np.clip((np.asarray(x, np.float64) / extent[0] * (w - dot)).astype(np.int64), 0, w - dot)
    py = np.clip(((1 - np.asarray(y, np.float64) / extent[1]) * (h - dot)).astype(np.int64), 0, h - dot)
    col = lut[np.asarray(codes, np.int64).clip(0, 255)]
    a = np.broadcast_to(np.asarray(alpha, np.float64), px.shape)[:, None]
    # one blend per pixel offset of the dot; overlapping points: the last one drawn wins the
    # pixel before blending (numpy fancy assignment keeps the last write), like painter's order
    for dy in range(dot):
        for dx in range(dot):
            yy, xx = py + dy, px + dx
            img[yy, xx] = img[yy, xx] * (1 - a) + col * a
    return img.astype(np.uint8)


_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
          "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def _font(size: int = 11):
    """(font, has Greek and the minus sign): a system TrueType font if there is one."""
    for path in _FONTS:
        try:
            return ImageFont.truetype(path, size), True
        except OSError:
            continue
    return ImageFont.load_default(), False


def matrix_png(d: dict, width: int = 1000) -> bytes:
    """The Matrix View as a PNG from what callbacks.matrix.drawn_points says is drawn: cells with
    grid lines, layer/head labels, the points, the search hits and the selected input on top."""
    from figures.matrix import (BASE_OPACITY, FADED, MISLEADING_RGB, SHADE_MAX_ALPHA, SHADE_RGB, cell_labels,
                                score_shade)
    md, codes, colorscale = d["md"], d["colors"], d["scale"]
    n_rows, n_cols, cell = md.n_rows, md.n_cols, md.cell
    plot_w = max(100, width - MARGIN_L - MARGIN_R)
    cell_px = plot_w / max(n_cols, 1)
    plot_h = int(round(cell_px * n_rows))
    background = np.full((plot_h, plot_w, 3), 255.0)
    shaded = score_shade(md.order, md.scores, getattr(md, "score_fig", None)) if getattr(md, "score_label", "") else {}
    grey = {lh: 0.0 for lh in list(md.missing) + list(md.filtered)}
    for (layer, head), shade in list(shaded.items()) + list(grey.items()):
        if (layer, head) not in md.cells:
            continue
        row, col = md.cells[(layer, head)]
        ys = slice(int(round(row * cell_px)), int(round((row + 1) * cell_px)))
        xs = slice(int(round(col * cell_px)), int(round((col + 1) * cell_px)))
        if (layer, head) in grey:
            background[ys, xs] = background[ys, xs] * 0.955
        else:
            a = SHADE_MAX_ALPHA * shade
            background[ys, xs] = background[ys, xs] * (1 - a) + np.asarray(SHADE_RGB, np.float64) * a
    extent = (n_cols * cell, n_rows * cell)
    searching = d["search"].mask is not None
    body = rasterise(md.x, md.y, codes, colorscale, extent, (plot_w, plot_h), FADED if searching else BASE_OPACITY,
                     dot=1 if cell_px < 40 else 2, background=background)
    for ov, cols, dot in ((d["hits"], d["hit_colors"], 3), (d["selection"], d["selection_colors"], 2)):
        if len(ov.x):
            body = rasterise(ov.x, ov.y, cols, colorscale, extent, (plot_w, plot_h), 0.95, dot=dot, background=body)
    img = Image.new("RGB", (width, plot_h + MARGIN_T + MARGIN_B), "white")
    img.paste(Image.fromarray(body), (MARGIN_L, MARGIN_T))
    draw = ImageDraw.Draw(img)
    font, unicode_ok = _font()
    cell_font, _ = _font(10 if n_cols <= 8 else 8)
    grid = (221, 221, 221)
    for c in range(n_cols + 1):
        xx = MARGIN_L + int(round(c * cell_px))
        draw.line([(xx, MARGIN_T), (xx, MARGIN_T + plot_h)], fill=grid)
    for r in range(n_rows + 1):
        yy = MARGIN_T + int(round(r * cell_px))
        draw.line([(MARGIN_L, yy), (MARGIN_L + plot_w, yy)], fill=grid)
    for r, layer in list(enumerate(md.layers))[::max(1, n_rows // 32)]:
        draw.text((6, MARGIN_T + (r + 0.5) * cell_px - 5), f"L{layer}", fill=(68, 68, 68), font=font)
    for c, head in list(enumerate(md.heads))[::max(1, n_cols // 16)]:
        tick = f"#{c + 1}" if md.order != "grid" else f"H{head}"
        draw.text((MARGIN_L + (c + 0.5) * cell_px - 8, MARGIN_T + plot_h + 6), tick, fill=(68, 68, 68), font=font)
    for layer, head in getattr(md, "misleading", []):  # the picture misleads: outlined as in the live view
        if (layer, head) in md.cells:
            row, col = md.cells[(layer, head)]
            x0, y0 = MARGIN_L + int(round(col * cell_px)) + 1, MARGIN_T + int(round(row * cell_px)) + 1
            x1, y1 = MARGIN_L + int(round((col + 1) * cell_px)) - 2, MARGIN_T + int(round((row + 1) * cell_px)) - 2
            draw.rectangle([x0, y0, x1, y1], outline=MISLEADING_RGB, width=2)
    for layer, head, row, col, label, _, greyed in cell_labels(md):
        if not unicode_ok:
            label = label.replace("ρ", "rho").replace("−", "-").replace("⚠", "!")
        x0, y0 = MARGIN_L + col * cell_px + 2, MARGIN_T + row * cell_px + 1
        box = draw.textbbox((x0, y0), label, font=cell_font)
        draw.rectangle(box, fill=(255, 255, 255))
        draw.text((x0, y0), label, fill=(150, 150, 150) if greyed else (51, 51, 51), font=cell_font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()
