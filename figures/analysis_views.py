"""Figure builders of the neuron view, attention rollout and "your own input" tabs (pure)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import KEY_PINK, QUERY_GREEN
from .tiling import cell_size, fit_into_cell
from .views import attention_heatmap, image_figure

POS, NEG = "#2c7bb6", "#d7191c"
MAX_LABELS = 60  # own-input head view: token labels up to this many tokens (hover beyond)


def _labels(words: list[str]) -> list[str]:
    return [f"{i}\u2009{w}" for i, w in enumerate(words)]


# ----------------------------------------------------------------------------- neuron view
def neuron_figure(bd, q_label: str, k_label: str, title: str = "") -> go.Figure:
    """Three bar rows over the head dimensions: q_d, k_d and q_d·k_d (sign-coloured), with the
    sum annotated. ``bd``: analysis.neuron.NeuronBreakdown."""
    d = len(bd.q)
    dims = np.arange(d)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=(f"query {q_label}: q_d", f"key {k_label}: k_d",
                                        f"q_d · k_d  (sum = q·k = {bd.dot:.4f})"))
    hov = "dim %{x}<br>%{y:.4f}<extra>%{fullData.name}</extra>"
    fig.add_trace(go.Bar(x=dims, y=bd.q, marker_color=QUERY_GREEN, name="q", hovertemplate=hov), 1, 1)
    fig.add_trace(go.Bar(x=dims, y=bd.k, marker_color=KEY_PINK, name="k", hovertemplate=hov), 2, 1)
    fig.add_trace(go.Bar(x=dims, y=bd.prod, marker_color=np.where(bd.prod >= 0, POS, NEG).tolist(),
                         name="q·k per dim", hovertemplate=hov), 3, 1)
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), height=520, showlegend=False,
                      margin=dict(l=50, r=10, t=60, b=30), plot_bgcolor="white", bargap=0.15)
    fig.update_xaxes(showgrid=False, zeroline=False)
    fig.update_xaxes(title="head dimension d", row=3, col=1)
    fig.update_yaxes(zeroline=True, zerolinecolor="#999", gridcolor="#eee")
    for ann in fig.layout.annotations:
        ann.update(x=0.0, xanchor="left", font=dict(size=12))
    return fig


def neuron_row_figure(bd, words: list[str], query_pos: int, key_pos: int, causal: bool,
                      query_word: str | None = None) -> go.Figure:
    """The selected query's attention over every key of its input (click a bar to pick the key).
    Hover shows q·k, the scaled score and the weight. ``query_word``: the query's word when the
    keys are other tokens (cross-attention: ``words`` are the source keys, the query a target token)."""
    n = len(words)
    if query_word is not None:
        words_q, query_pos = {query_pos: query_word}, -1 if query_pos is None else query_pos
    else:
        words_q = words
    x = _labels(words)
    dots = np.where(np.isfinite(bd.scores), bd.scores / bd.scale if bd.scale else bd.scores, np.nan)
    score = np.where(np.isfinite(bd.scores), bd.scores, np.nan)
    colours = [("#333" if j == key_pos else QUERY_GREEN if (j == query_pos and query_word is None) else "#9ecae1")
               for j in range(n)]
    custom = np.stack([np.arange(n), dots, score], 1)
    fig = go.Figure(go.Bar(x=x, y=bd.weights, marker_color=colours, customdata=custom, name="weight",
                           hovertemplate="key %{x}<br>q·k %{customdata[1]:.4f}<br>score %{customdata[2]:.4f}"
                                         "<br>weight %{y:.4f}<br>(click to inspect this key)<extra></extra>"))
    note = " (keys after the query are masked: causal)" if causal else ""
    fig.update_layout(title=dict(text=f"attention of query {query_pos} «{words_q[query_pos]}» over the keys{note} "
                                      f"— click a bar to pick the key", x=0.01, font=dict(size=13)),
                      height=300, margin=dict(l=50, r=10, t=40, b=90), plot_bgcolor="white",
                      yaxis=dict(title="weight", rangemode="tozero", gridcolor="#eee"),
                      xaxis=dict(tickfont=dict(size=9), tickangle=-60 if n > 12 else 0))
    return fig


# ----------------------------------------------------------------------------- rollout
def rollout_heatmap(words: list[str], r: np.ndarray, title: str, selected: int | None = None) -> go.Figure:
    fig = attention_heatmap(words, words, r, title, colorscale="Viridis")
    fig.data[0].update(colorbar=dict(title="rollout", thickness=12),
                       hovertemplate="output token %{y}<br>input token %{x}<br>rollout %{z:.4f}<extra></extra>")
    fig.update_xaxes(title="input tokens (what flows in)")
    fig.update_yaxes(title="tokens at the top layer")
    fig.update_layout(margin=dict(l=10, r=10, t=90, b=10), title=dict(y=0.99, yanchor="top"),
                      height=int(min(1000, max(460, 140 + 14 * len(words)))))
    n = len(words)
    if selected is not None and 0 <= selected < n:
        fig.add_shape(type="rect", x0=-0.5, x1=n - 0.5, y0=selected - 0.5, y1=selected + 0.5, xref="x", yref="y",
                      line=dict(color="#ff7f0e", width=2))
    return fig


def rollout_image_figure(rgb: np.ndarray, grid: int, patch_weights: np.ndarray, title: str) -> go.Figure:
    """The CLS row of the rollout over the image's patches (grid × grid). The colour scale tops out
    at the 98th percentile so one or two outlier patches (ViTs' high-norm "register-like" patches)
    do not wash out the rest; hover shows the true values."""
    w = np.asarray(patch_weights, np.float64)
    top = float(np.percentile(w, 98)) if w.size else 0.0
    fig = image_figure(rgb, grid, w, None, None, "heatmap", None, title)
    fig.data[1].update(colorbar=dict(title="rollout", thickness=12), zmax=top if top > 0 else None, opacity=0.7,
                       hovertemplate="patch row %{y:.0f} col %{x:.0f}<br>rollout %{z:.4f}<extra></extra>")
    return fig


# ----------------------------------------------------------------------------- own input
def own_grid_figure(layers: list[int], heads: list[int], ref: dict, new: dict, n_new: int, words: list[str],
                    current: tuple[int, int] | None = None, exact: dict | None = None,
                    title: str = "") -> go.Figure:
    """Small multiples: every head's stored 2-D projection (down-sampled corpus, grey) with the new
    input's queries (green) and keys (pink) highlighted. One scattergl trace per colour, heads
    tiled into grid cells (rows = layers, columns = heads) as in the Matrix View.

    ``ref[(l, h)]``: (m, 2) stored coords; ``new[(l, h)]``: (2·n_new, 2) (queries then keys)."""
    n_rows, n_cols = max(1, len(layers)), max(1, len(heads))
    cell = cell_size(n_rows, n_cols)
    gx, gy, qx, qy, kx, ky, qtxt, ktxt = [], [], [], [], [], [], [], []
    anns = []
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            key = (layer, head)
            mark = "" if exact is None or key not in exact else ("" if exact[key] else "≈")
            anns.append(dict(x=c * cell + cell * 0.03, y=(n_rows - r) * cell - cell * 0.02, xref="x", yref="y",
                             text=f"L{layer} H{head}{mark}", showarrow=False, xanchor="left", yanchor="top",
                             font=dict(size=9, color="#444")))
            if key not in ref or key not in new:
                continue
            a, b = np.asarray(ref[key], np.float64), np.asarray(new[key], np.float64)
            x, y = fit_into_cell(np.vstack([a, b]), r, c, n_rows, cell)
            m = len(a)
            gx.append(x[:m]); gy.append(y[:m])
            qx.append(x[m:m + n_new]); qy.append(y[m:m + n_new])
            kx.append(x[m + n_new:]); ky.append(y[m + n_new:])
            qtxt += [f"L{layer} H{head} · query {i} «{w}»" for i, w in enumerate(words)]
            ktxt += [f"L{layer} H{head} · key {i} «{w}»" for i, w in enumerate(words)]
    cat = (lambda xs: np.concatenate(xs).astype(np.float32) if xs else np.zeros(0, np.float32))
    fig = go.Figure()
    fig.add_trace(go.Scattergl(x=cat(gx), y=cat(gy), mode="markers", name="corpus (sample)", hoverinfo="skip",
                               marker=dict(size=2.5, color="rgba(150,150,150,0.45)")))
    fig.add_trace(go.Scattergl(x=cat(qx), y=cat(qy), mode="markers", name="your queries", text=qtxt,
                               hovertemplate="%{text}<extra></extra>",
                               marker=dict(size=5, color=QUERY_GREEN, line=dict(width=0.5, color="#fff"))))
    fig.add_trace(go.Scattergl(x=cat(kx), y=cat(ky), mode="markers", name="your keys", text=ktxt,
                               hovertemplate="%{text}<extra></extra>",
                               marker=dict(size=5, color=KEY_PINK, line=dict(width=0.5, color="#fff"))))
    shapes = []
    for r in range(n_rows + 1):
        shapes.append(dict(type="line", x0=0, x1=n_cols * cell, y0=r * cell, y1=r * cell, line=dict(color="#ddd", width=1)))
    for c in range(n_cols + 1):
        shapes.append(dict(type="line", x0=c * cell, x1=c * cell, y0=0, y1=n_rows * cell, line=dict(color="#ddd", width=1)))
    if current in ref and current[0] in layers and current[1] in heads:
        r, c = layers.index(current[0]), heads.index(current[1])
        shapes.append(dict(type="rect", x0=c * cell, x1=(c + 1) * cell, y0=(n_rows - 1 - r) * cell,
                           y1=(n_rows - r) * cell, line=dict(color="#ff7f0e", width=3)))
    height = int(min(1800, max(320, 70 + n_rows * min(170, 1100 / n_cols))))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), height=height, plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=40, b=10), annotations=anns, shapes=shapes, hovermode="closest",
                      legend=dict(orientation="h", y=1.0, x=1.0, xanchor="right", yanchor="bottom"),
                      xaxis=dict(visible=False, range=[0, n_cols * cell]),
                      yaxis=dict(visible=False, range=[0, n_rows * cell], scaleanchor="x"))
    return fig


def own_head_figure(ref: np.ndarray, ref_text: list[str] | None, new: np.ndarray, words: list[str], title: str,
                    transformed: np.ndarray | None = None) -> go.Figure:
    """One head's stored projection (all points, light) with the new input's queries and keys
    labelled. ``transformed``: the real-transform positions (shown instead of ``new``)."""
    ref = np.asarray(ref, np.float64)
    n_ref = len(ref) // 2
    pts = np.asarray(transformed if transformed is not None else new, np.float64)
    n = len(words)
    fig = go.Figure()
    for lo, hi, name, colour in ((0, n_ref, "corpus queries", "rgba(26,152,80,0.28)"),
                                 (n_ref, 2 * n_ref, "corpus keys", "rgba(231,41,138,0.28)")):
        kw = dict(text=ref_text[lo:hi], hovertemplate="%{text}<extra>" + name + "</extra>") if ref_text else dict(hoverinfo="skip")
        fig.add_trace(go.Scattergl(x=ref[lo:hi, 0], y=ref[lo:hi, 1], mode="markers", name=name,
                                   marker=dict(size=4, color=colour), **kw))
    labelled = n <= MAX_LABELS
    for lo, name, colour, symbol in ((0, "your queries", QUERY_GREEN, "circle"), (n, "your keys", KEY_PINK, "diamond")):
        p = pts[lo:lo + n]
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="markers+text" if labelled else "markers", name=name,
                                 text=words,
                                 textposition="top center", textfont=dict(size=10, color=colour),
                                 customdata=np.arange(n),
                                 hovertemplate=name[5:-1] + " %{customdata} «%{text}»<extra></extra>",
                                 marker=dict(size=10 if labelled else 7, color=colour, symbol=symbol,
                                             line=dict(width=1, color="#222"))))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), height=560, plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=40, b=10), hovermode="closest",
                      legend=dict(orientation="h", y=-0.02),
                      xaxis=dict(showticklabels=False, zeroline=False, showgrid=False),
                      yaxis=dict(showticklabels=False, zeroline=False, showgrid=False, scaleanchor="x"))
    return fig
