"""Figure builders for Single, Sentence, Image and Model views."""
from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go

from .colors import ColorSpec
from .common import KEY_PINK, QUERY_GREEN, html_escape

HEAD_LINE = "rgba(31,119,180,{a:.3f})"


def empty_figure(message: str = "", height: int = 300) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(height=height, xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=10, b=10),
                      annotations=[dict(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                                        font=dict(size=14, color="#666"))] if message else [])
    return fig


# ---------------------------------------------------------------------------- single view
def norm_sizes(norms: np.ndarray, lo: float = 3.0, hi: float = 12.0) -> np.ndarray:
    n = np.asarray(norms, np.float64)
    span = n.max() - n.min() if len(n) else 0.0
    return (lo + (hi - lo) * (n - n.min()) / span if span > 0 else np.full(len(n), (lo + hi) / 2)).astype(np.float32)


SINGLE_HEIGHT = 560
SINGLE_WIDTH_PX = 500   # plot area the label thinning plans for (the panel's typical width, conservative)


def single_labels(coords: np.ndarray, words: list[str], priority: np.ndarray | None = None,
                  x_range=None, y_range=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x, y, text) of the token labels kept by thinning over all 2n points (2D only)."""
    from .labels import thin_labels
    texts = list(words) if len(words) == len(coords) else list(words) * 2
    keep = thin_labels(coords[:, 0], coords[:, 1], texts, priority, x_range, y_range,
                       width_px=SINGLE_WIDTH_PX, height_px=SINGLE_HEIGHT - 120)
    return coords[keep, 0].astype(np.float32), coords[keep, 1].astype(np.float32), [texts[i] for i in keep]


def single_figure(coords: np.ndarray, words: list[str], positions: np.ndarray, norms: np.ndarray | None,
                  spec: ColorSpec, title: str, dim: int = 2, sizes: np.ndarray | None = None,
                  search_mask: np.ndarray | None = None, selected: int | None = None,
                  lines: list[tuple[int, float]] | None = None, uirevision: str = "single",
                  label_priority: np.ndarray | None = None, n_q: int | None = None) -> go.Figure:
    """``coords``: 2n × d (queries then keys, token order). Colour codes in ``spec`` cover all
    2n points. ``words``: display text per token. ``lines``: (key token, weight) for the selected
    query token. Trace 0 queries, 1 keys (numeric data as typed arrays; the hover text is the
    token alone), 2 the thinned token labels (2D), then lines, their targets and the selection.
    ``n_q``: the first n_q points are the queries when queries and keys are different tokens
    (cross-attention); ``words``, ``positions`` and ``search_mask`` are then given per point, the
    selection is a query index and the lines' keys are key indices."""
    n_all = len(coords)
    n = n_all // 2 if n_q is None else int(n_q)
    per_point = lambda v: None if v is None else (np.asarray(v) if len(v) == n_all else np.r_[v, v])  # noqa: E731
    words = list(words) if len(words) == n_all else list(words) * 2
    # token text is shown as text: Plotly reads '<…>' as markup (BART's '</s>' vanished)
    words = [html_escape(str(w)) for w in words]
    search_mask = per_point(search_mask)
    d3 = dim == 3 and coords.shape[1] >= 3
    Trace = go.Scatter3d if d3 else go.Scattergl
    base = 2.5 if d3 else 5.0
    # not validated by plotly.py: the same JSON, 10× faster for a few thousand points with text
    # (the Single View's server time is part of every head change; tests check the figure itself)
    fig = go.Figure(_validate=False)
    pos = per_point(np.asarray(positions, np.float32))
    coords = np.asarray(coords, np.float32)
    for part, (lo, hi), label in (("query", (0, n), "query"), ("key", (n, n_all), "key")):
        c = coords[lo:hi]
        marker = dict(color=spec.values[lo:hi], colorscale=spec.colorscale, cmin=spec.cmin, cmax=spec.cmax,
                      line=dict(width=0))
        if spec.colorbar is not None and part == "query":  # a measured figure per query: its scale beside the plot
            marker.update(showscale=True, colorbar=spec.colorbar)
        size = None if sizes is None else (sizes[lo:hi] * (0.5 if d3 else 1.0)).astype(np.float32)
        opacity = None
        if search_mask is not None:
            s0 = np.full(hi - lo, base, np.float32) if size is None else size
            size = np.where(search_mask[lo:hi], s0 * 1.8 + 2, s0 * 0.7).astype(np.float32)
            opacity = np.where(search_mask[lo:hi], 1.0, 0.12).astype(np.float32)
        marker["size"] = base if size is None else size
        if opacity is not None and not d3:
            marker["opacity"] = opacity
        else:
            marker["opacity"] = 0.85 if d3 else 0.8
        nm = np.zeros(hi - lo, np.float32) if norms is None else np.asarray(norms[lo:hi], np.float32)
        custom = np.stack([pos[lo:hi], nm], 1).astype(np.float32)
        xyz = dict(x=c[:, 0], y=c[:, 1]) | (dict(z=c[:, 2]) if d3 else {})
        w = words[lo:hi]
        text = w if spec.hover is None else [a + b for a, b in zip(w, spec.hover[lo:hi])]
        fig.add_trace(Trace(**xyz, mode="markers", marker=marker, text=text, customdata=custom, name=label,
                            hovertemplate="%{text} · " + label + " · position %{customdata[0]} · ‖" + label[0]
                                          + "‖ = %{customdata[1]:.2f}<extra></extra>", _validate=False))
    if not d3:
        lx, ly, lt = single_labels(coords, words, label_priority)
        fig.add_trace(go.Scatter(x=lx, y=ly, text=lt, mode="text", textposition="top center", hoverinfo="skip",
                                 textfont=dict(size=10, color="#555"), showlegend=False, name="labels"))
    else:
        fig.add_trace(go.Scatter3d(x=[], y=[], z=[], mode="text", hoverinfo="skip", showlegend=False, name="labels"))
    if selected is not None and 0 <= selected < n:
        sel_xyz = coords[selected]
        if lines:
            for key, w in lines:
                k_xyz = coords[n + key]  # key index → its point (after the n queries)
                pts = np.stack([sel_xyz, k_xyz])
                seg = dict(x=pts[:, 0], y=pts[:, 1]) | (dict(z=pts[:, 2]) if d3 else {})
                fig.add_trace((go.Scatter3d if d3 else go.Scatter)(
                    **seg, mode="lines", line=dict(color=f"rgba(40,40,40,{0.25 + 0.75 * w:.2f})", width=1 + 5 * w),
                    hoverinfo="skip", showlegend=False, name="attention"))
            kx = coords[[n + k for k, _ in lines]]
            fig.add_trace(Trace(**(dict(x=kx[:, 0], y=kx[:, 1]) | (dict(z=kx[:, 2]) if d3 else {})), mode="markers+text",
                                text=[f"{words[n + k]} {w:.2f}" for k, w in lines], textposition="top center",
                                textfont=dict(size=12, color="#111"),
                                marker=dict(size=11 if not d3 else 6, color="rgba(0,0,0,0)", line=dict(color="#222", width=2)),
                                hoverinfo="skip", showlegend=False, name="top keys"))
        fig.add_trace(Trace(**(dict(x=[sel_xyz[0]], y=[sel_xyz[1]]) | (dict(z=[sel_xyz[2]]) if d3 else {})),
                            mode="markers+text", text=[words[selected]], textposition="bottom center",
                            textfont=dict(size=12, color="#000"),
                            marker=dict(size=14 if not d3 else 7, color="rgba(0,0,0,0)", line=dict(color="#000", width=3)),
                            hoverinfo="skip", showlegend=False, name="selected query"))
    layout = dict(title=dict(text=title, x=0.01, font=dict(size=14)), margin=dict(l=10, r=10, t=40, b=10),
                  height=SINGLE_HEIGHT, uirevision=uirevision, legend=dict(orientation="h", y=-0.02),
                  plot_bgcolor="white", hovermode="closest")
    if d3:
        layout["scene"] = dict(xaxis=dict(title=""), yaxis=dict(title=""), zaxis=dict(title=""))
    else:
        layout["xaxis"] = dict(showticklabels=False, zeroline=False, showgrid=False)
        layout["yaxis"] = dict(showticklabels=False, zeroline=False, showgrid=False, scaleanchor="x")
    fig.update_layout(**layout)
    return fig


# ---------------------------------------------------------------------------- sentence view
def _labels(words: list[str]) -> list[str]:
    return [f"{i}\u2009{w}" for i, w in enumerate(words)]


def sentence_lines_figure(words: list[str], a: np.ndarray, hidden=(), focus: tuple[str, int] | None = None,
                          title: str = "", min_weight: float = 0.01) -> go.Figure:
    """BertViz head-view style for one head: queries left, keys right, line opacity = weight.
    ``focus`` = ("query"|"key", position) isolates that token's lines."""
    from .sentence import sentence_lines
    return sentence_figure(sentence_lines(words, {0: a}, hidden, focus, min_weight=min_weight,
                                          colors={0: HEAD_LINE}), title)


def _rgba(color: str, alpha: float) -> str:
    if "{a" in color:  # a template such as HEAD_LINE
        return color.format(a=alpha)
    c = color.lstrip("#")
    return f"rgba({int(c[0:2], 16)},{int(c[2:4], 16)},{int(c[4:6], 16)},{alpha:.3f})"


def sentence_figure(model, title: str = "") -> go.Figure:
    """The Sentence View of a ``figures.sentence.SentenceLines``: queries left, keys right; each
    head's lines in its colour, opacity and width by weight (10 bins a head). Several heads: a
    legend entry per head. The query and key markers are always the last two traces (clicks map
    pointNumber → position). Tokens outside the sentence A/B filter are greyed."""
    words, kwords = model.words, model.kwords
    n, nk = len(words), len(kwords)
    ys = -np.arange(max(n, nk), dtype=float)
    fig = go.Figure()
    bins = np.linspace(0, 1, 11)
    several = len(model.heads) > 1
    for hl in model.heads:
        if several:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"H{hl.head}", legendgroup=f"h{hl.head}",
                                     line=dict(color=_rgba(hl.color, 0.9), width=3), hoverinfo="skip"))
        which = np.clip(np.digitize(hl.weight, bins) - 1, 0, 9)
        for b in range(10):
            sel = which == b
            if not sel.any():
                continue
            xs = np.full(sel.sum() * 3, np.nan)
            yv = np.full(sel.sum() * 3, np.nan)
            xs[0::3], xs[1::3] = 0.0, 1.0
            yv[0::3], yv[1::3] = ys[hl.query[sel]], ys[hl.key[sel]]
            alpha = max(0.08, (b + 0.5) / 10)
            fig.add_trace(go.Scatter(x=xs, y=yv, mode="lines", hoverinfo="skip", showlegend=False,
                                     legendgroup=f"h{hl.head}", name=f"H{hl.head}",
                                     line=dict(color=_rgba(hl.color, alpha), width=1.5 + 2 * (b / 9))))
    hidden = set(int(h) for h in model.hidden)
    focus = model.focus
    qa, ka = model.query_active, model.key_active
    qcol = ["#c00" if (focus and focus == ("query", i)) else ("#000" if qa[i] else "#c8c8c8") for i in range(n)]
    kcol = ["#bbb" if i in hidden else ("#c00" if focus and focus == ("key", i) else ("#000" if ka[i] else "#c8c8c8"))
            for i in range(nk)]
    fig.add_trace(go.Scatter(x=np.zeros(n), y=ys[:n], mode="markers+text", text=[html_escape(str(w)) for w in words], textposition="middle left",
                             textfont=dict(color=qcol, size=12), marker=dict(size=8, color=QUERY_GREEN),
                             customdata=np.stack([np.arange(n), np.zeros(n, int)], 1), name="queries", showlegend=False,
                             hovertemplate="query %{customdata[0]}: %{text} (click to isolate)<extra></extra>"))
    fig.add_trace(go.Scatter(x=np.ones(nk), y=ys[:nk], mode="markers+text", text=[html_escape(str(w)) for w in kwords], textposition="middle right",
                             textfont=dict(color=kcol, size=12), marker=dict(size=8, color=KEY_PINK),
                             customdata=np.stack([np.arange(nk), np.ones(nk, int)], 1), name="keys", showlegend=False,
                             hovertemplate="key %{customdata[0]}: %{text} (click to isolate)<extra></extra>"))
    top = 70 if several else 40
    if model.key_words is not None:   # cross-attention: say which side is which
        fig.add_annotation(x=0, y=0.75, text="<b>target (decoder queries)</b>", showarrow=False, xanchor="right",
                           font=dict(size=11, color="#555"))
        fig.add_annotation(x=1, y=0.75, text="<b>source (encoder keys)</b>", showarrow=False, xanchor="left",
                           font=dict(size=11, color="#555"))
    n = max(n, nk)
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), height=max(260, top + 20 + 20 * n),
                      margin=dict(l=10, r=10, t=top, b=10), plot_bgcolor="white", hovermode="closest",
                      showlegend=several, legend=dict(orientation="h", x=0.01, y=1.0, yanchor="bottom",
                                                      font=dict(size=11), itemclick=False, itemdoubleclick=False),
                      xaxis=dict(range=[-0.9, 1.9], visible=False, fixedrange=True),
                      yaxis=dict(range=[-n + 0.4, 1.3 if model.key_words is not None else 0.8], visible=False,
                                 fixedrange=True))
    return fig


def _singular(axis_title: str) -> str:
    return {"queries": "query", "keys": "key"}.get(axis_title, axis_title)


def attention_heatmap(words_q: list[str], words_k: list[str], a: np.ndarray, title: str = "",
                      hidden=(), colorscale: str = "Blues", label_positions: bool = True,
                      axis_titles: tuple[str, str] = ("queries", "keys")) -> go.Figure:
    """Rows = queries, columns = keys (keys' axis on top). ``label_positions``: tick labels are
    "position token" (False: the labels are used as given, e.g. already positions). The title
    sits in its own band above the keys' axis title (they never overlap)."""
    xl = _labels(words_k) if label_positions else [str(w) for w in words_k]
    yl = _labels(words_q) if label_positions else [str(w) for w in words_q]
    fig = go.Figure(go.Heatmap(z=np.asarray(a, np.float32), x=xl, y=yl, zmin=0,
                               colorscale=colorscale, colorbar=dict(title="weight", thickness=12),
                               hovertemplate=f"{_singular(axis_titles[0])} %{{y}}<br>{_singular(axis_titles[1])} "
                                             "%{x}<br>weight %{z:.3f}<extra></extra>"))
    n = len(words_q)
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", y=1.0, yref="container", yanchor="top",
                                 pad=dict(t=8), font=dict(size=13)),
                      height=int(min(900, max(320, 150 + 9 * n))),
                      margin=dict(l=10, r=10, t=84, b=10),
                      xaxis=dict(title=dict(text=axis_titles[1], standoff=4), tickfont=dict(size=9), side="top",
                                 type="category"),
                      yaxis=dict(title=axis_titles[0], autorange="reversed", tickfont=dict(size=9), type="category"))
    return fig


# ---------------------------------------------------------------------------- image view
def png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_figure(rgb: np.ndarray, grid: int, weights: np.ndarray | None, cls_weight: float | None,
                 selected_patch: tuple[int, int] | None, mode: str = "heatmap",
                 strongest: list[tuple[int, int, int, int, float]] | None = None, title: str = "") -> go.Figure:
    """``weights``: grid×grid attention from the selected query to the patches.
    ``strongest``: (r, c, r2, c2, w) arrows from patch to its argmax patch."""
    h, w = rgb.shape[:2]
    ph, pw = h / grid, w / grid
    fig = go.Figure(go.Image(source=png_data_uri(rgb), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))
    if mode == "heatmap" and weights is not None:
        fig.add_trace(go.Heatmap(z=np.asarray(weights, np.float32), x0=pw / 2, dx=pw, y0=ph / 2, dy=ph, opacity=0.55,
                                 colorscale="Inferno", zmin=0, colorbar=dict(title="weight", thickness=12),
                                 hovertemplate="patch row %{y:.0f} col %{x:.0f}<br>weight %{z:.3f}<extra></extra>"))
    # a transparent hover grid so every patch reports its row/col
    rr, cc = np.mgrid[0:grid, 0:grid]
    fig.add_trace(go.Scatter(x=((cc + 0.5) * pw).ravel(), y=((rr + 0.5) * ph).ravel(), mode="markers",
                             marker=dict(size=max(4, int(300 / grid)), color="rgba(0,0,0,0)", symbol="square"),
                             text=[f"{r},{c}" for r, c in zip(rr.ravel(), cc.ravel())],
                             hovertemplate="patch (%{text}) — click to make it the query<extra></extra>",
                             showlegend=False, name="patches"))
    if mode == "arrows" and strongest:
        for r, c, r2, c2, wt in strongest:
            fig.add_annotation(x=(c2 + 0.5) * pw, y=(r2 + 0.5) * ph, ax=(c + 0.5) * pw, ay=(r + 0.5) * ph,
                               xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                               arrowsize=1, arrowwidth=1 + 2 * wt, arrowcolor=f"rgba(255,255,0,{0.35 + 0.65 * wt:.2f})")
    if selected_patch is not None:
        r, c = selected_patch
        fig.add_shape(type="rect", x0=c * pw, x1=(c + 1) * pw, y0=r * ph, y1=(r + 1) * ph,
                      line=dict(color="#00e5ff", width=3))
    sub = f"  ·  CLS weight {cls_weight:.3f}" if cls_weight is not None else ""
    # the title sits under the modebar's row (the graph is 560 px wide: side by side they overlapped)
    fig.update_layout(title=dict(text=title + sub, x=0.01, y=1 - 32 / 540, yref="container", yanchor="top",
                                 font=dict(size=13)), height=540,
                      margin=dict(l=10, r=10, t=60, b=10),
                      xaxis=dict(visible=False, range=[0, w]), yaxis=dict(visible=False, range=[h, 0], scaleanchor="x"))
    return fig


# ---------------------------------------------------------------------------- model view
def model_view_figure(patterns: dict, layers: list, heads: list, thumb: int, title: str = "") -> go.Figure:
    """``patterns[(l, h)]``: thumb×thumb (or smaller) attention; tiled into one heatmap with gaps.
    Each thumbnail is scaled by its own max so every head's pattern is visible."""
    gap = 1
    step = thumb + gap
    z = np.full((len(layers) * step, len(heads) * step), np.nan, np.float32)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            p = patterns.get((layer, head))
            if p is None:
                continue
            m = float(np.nanmax(p)) or 1.0
            z[r * step:r * step + p.shape[0], c * step:c * step + p.shape[1]] = p / m
    fig = go.Figure(go.Heatmap(z=z, colorscale="Blues", zmin=0, zmax=1, showscale=False, hoverinfo="none"))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), plot_bgcolor="white",
                      height=int(min(1600, max(300, 60 + len(layers) * max(30, min(80, 900 / max(len(heads), 1)))))),
                      margin=dict(l=40, r=10, t=40, b=10),
                      xaxis=dict(tickvals=[c * step + thumb / 2 for c in range(len(heads))],
                                 ticktext=[f"H{h}" for h in heads], side="top", showgrid=False, zeroline=False),
                      yaxis=dict(tickvals=[r * step + thumb / 2 for r in range(len(layers))],
                                 ticktext=[f"L{l}" for l in layers], autorange="reversed", showgrid=False,
                                 zeroline=False, scaleanchor="x"))
    return fig


def patch_of_point(pt) -> tuple[int, int] | None:
    """(row, col) of an Image View patch from click/hover data (the patch grid's text is 'r,c')."""
    t = pt.get("text")
    if isinstance(t, str) and t.count(",") == 1:
        try:
            r, c = t.split(",")
            return int(r), int(c)
        except ValueError:
            return None
    return None


MODEL_THUMB = 24  # the Model View's thumbnail size (cells of block means)


def model_view_cell(x: float, y: float, thumb: int, n_layers: int, n_heads: int) -> tuple[int, int] | None:
    step = thumb + 1
    r, c = int(y // step), int(x // step)
    if 0 <= r < n_layers and 0 <= c < n_heads:
        return r, c
    return None
