"""Figures of the head-patterns and related-heads views (pure: numbers in, plotly figures out)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

PATTERN_COLORS = {"first": "#1f77b4", "sep": "#9467bd", "prev": "#2ca02c", "next": "#17becf", "self": "#d62728",
                  "broad": "#7f7f7f", "positional": "#bcbd22", "content": "#ff7f0e"}


def selected_shapes(layers: list, heads: list, selected=None) -> list[dict]:
    """The score map's outline of the selected head (none when it is not on the map)."""
    if not (selected and selected[0] in layers and selected[1] in heads):
        return []
    r, c = layers.index(selected[0]), heads.index(selected[1])
    return [dict(type="rect", xref="x", yref="y", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                 line=dict(color="#000", width=2))]



def map_height(n_layers: int) -> int:
    """Pixel height of the layers × heads score map: ~40 px a layer for few layers, capped for many
    (its graph takes this height: layouts/patterns.py sets none)."""
    return max(260, min(720, 70 + 40 * n_layers))


def score_map_figure(layers: list, heads: list, scores: dict, title: str, selected=None,
                     na_text: str = "n/a") -> go.Figure:
    """Layers × heads heatmap of one score in [0, 1] (rows = layers, top = first layer), values
    written in the cells; the selected head outlined. ``scores``: (l, h) -> float or None."""
    z = np.full((len(layers), len(heads)), np.nan)
    text = [["" for _ in heads] for _ in layers]
    for r, l in enumerate(layers):
        for c, h in enumerate(heads):
            v = scores.get((l, h))
            if v is not None:
                z[r, c] = v
                text[r][c] = f"{v:.2f}"
            else:
                text[r][c] = na_text
    custom = [[[l, h] for h in heads] for l in layers]
    small = len(heads) <= 16 and len(layers) <= 16
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"H{h}" for h in heads], y=[f"L{l}" for l in layers], zmin=0, zmax=1, colorscale="Oranges",
        text=text, texttemplate="%{text}" if small else None, textfont=dict(size=9), customdata=custom,
        hovertemplate="L%{customdata[0]} H%{customdata[1]}: %{text}<extra>click to open</extra>",
        colorbar=dict(thickness=10, len=0.9), xgap=1, ygap=1))
    shapes = selected_shapes(layers, heads, selected)
    fig.update_layout(title=dict(text=title, font=dict(size=13), x=0.01), shapes=shapes,
                      margin=dict(l=45, r=10, t=30, b=30), height=map_height(len(layers)),
                      yaxis=dict(autorange="reversed"), plot_bgcolor="white")
    return fig


def related_figure(heads: list, xy: np.ndarray, color_by: str, dominant: dict, selected=None,
                   neighbours: list | None = None, layers: list | None = None, subtitle: str = "") -> go.Figure:
    """The map of all heads: one point per head at its MDS position; colour by layer (continuous)
    or by dominant pattern (one trace per pattern). Every point carries customdata [layer, head].
    The selected head is ringed and joined to its nearest heads."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    heads = [tuple(h) for h in heads]
    label = [f"L{l} H{h}" for l, h in heads]
    dom_txt = [f"{dominant[h][0]} {dominant[h][1]:.2f}" if h in dominant else "" for h in heads]
    traces = []
    if color_by == "pattern":
        groups = {}
        for i, h in enumerate(heads):
            groups.setdefault(dominant.get(h, ("?", 0))[0], []).append(i)
        for name in [n for n in PATTERN_COLORS if n in groups] + [n for n in groups if n not in PATTERN_COLORS]:
            idx = groups[name]
            traces.append(go.Scatter(
                x=xy[idx, 0], y=xy[idx, 1], mode="markers", name=name,
                marker=dict(size=9, color=PATTERN_COLORS.get(name, "#333"), line=dict(width=0.5, color="#fff")),
                customdata=[list(heads[i]) for i in idx], text=[f"{label[i]} · {dom_txt[i]}" for i in idx],
                hovertemplate="%{text}<extra>click to open</extra>"))
    else:
        layer_vals = [l for l, _ in heads]
        lmin, lmax = (min(layers), max(layers)) if layers else (min(layer_vals), max(layer_vals))
        traces.append(go.Scatter(
            x=xy[:, 0], y=xy[:, 1], mode="markers", name="heads", showlegend=False,
            marker=dict(size=9, color=layer_vals, colorscale="Viridis", cmin=lmin, cmax=max(lmax, lmin + 1),
                        colorbar=dict(title="layer", thickness=10), line=dict(width=0.5, color="#fff")),
            customdata=[list(h) for h in heads], text=[f"{label[i]} · {dom_txt[i]}" for i in range(len(heads))],
            hovertemplate="%{text}<extra>click to open</extra>"))
    if selected in heads:
        i = heads.index(selected)
        for (h2, _d) in (neighbours or []):
            if h2 in heads:
                j = heads.index(h2)
                traces.append(go.Scatter(x=[xy[i, 0], xy[j, 0]], y=[xy[i, 1], xy[j, 1]], mode="lines",
                                         line=dict(color="rgba(0,0,0,0.35)", width=1), hoverinfo="skip",
                                         showlegend=False))
        traces.append(go.Scatter(x=[xy[i, 0]], y=[xy[i, 1]], mode="markers+text", name="selected",
                                 text=[label[i]], textposition="top center", showlegend=False,
                                 customdata=[list(selected)], hovertemplate=f"{label[i]} (selected)<extra></extra>",
                                 marker=dict(size=16, color="rgba(0,0,0,0)", line=dict(width=2.5, color="#000"))))
    fig = go.Figure(traces)
    fig.update_layout(title=dict(text=subtitle, font=dict(size=12), x=0.01), height=460, hovermode="closest",
                      margin=dict(l=30, r=10, t=34, b=30), plot_bgcolor="white", legend=dict(title="dominant"),
                      xaxis=dict(title="MDS 1", zeroline=False, showgrid=True, gridcolor="#eee"),
                      yaxis=dict(title="MDS 2", zeroline=False, showgrid=True, gridcolor="#eee",
                                 scaleanchor="x", scaleratio=1))
    return fig
