"""Ablation results as a ranked table (rows of plain values) and a per-input chart."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

MAX_CHART_ROWS = 15


def fmt(x) -> str:
    """The number format of the table (also used by tests to compare with analysis results)."""
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.4f}" if abs(x) >= 1e-4 or x == 0 else f"{x:+.2e}"


def head_label(heads) -> str:
    heads = [tuple(h) for h in heads]
    if len(heads) == 1:
        return f"L{heads[0][0]} H{heads[0][1]}"
    shown = ", ".join(f"L{l} H{h}" for l, h in heads[:4])
    return f"{len(heads)} heads together ({shown}{' …' if len(heads) > 4 else ''})"


def ranked_rows(entry: dict | None, highlight=()) -> list[dict]:
    """One row per single head and per set of the mode's entry, largest effect first."""
    if not entry:
        return []
    highlight = {tuple(map(tuple, h)) for h in highlight}
    rows = []
    for key, r in (entry.get("single") or {}).items():
        l, h = (int(x) for x in key.split(":"))
        rows.append(dict(heads=[(l, h)], **r))
    for s in entry.get("sets") or []:
        rows.append(dict(s, heads=[tuple(x) for x in s["heads"]]))
    rows.sort(key=lambda r: (-(r["delta"] if np.isfinite(r["delta"]) else -np.inf), r["heads"]))
    out = []
    for rank, r in enumerate(rows, 1):
        per = np.asarray(r.get("per_input") or [], np.float64)
        out.append({
            "rank": rank, "heads": r["heads"], "label": head_label(r["heads"]),
            "delta": r["delta"], "ci_low": r["ci_low"], "ci_high": r["ci_high"], "per_input": per.tolist(),
            "spread": (f"{fmt(per.min())} … {fmt(np.median(per))} … {fmt(per.max())}" if per.size else "–"),
            "new": tuple(r["heads"]) in highlight,
        })
    return out


def effects_figure(rows: list[dict], objective: str, input_ids: list[int], title: str = "") -> go.Figure:
    """Per-input deltas (dots, one per input) and the mean with its bootstrap interval, for the
    top-ranked rows."""
    rows = rows[:MAX_CHART_ROWS]
    fig = go.Figure()
    labels = [f"#{r['rank']} {r['label']}" for r in rows]
    xs, ys, texts = [], [], []
    for label, r in zip(labels, rows):
        for j, d in enumerate(r["per_input"]):
            xs.append(d)
            ys.append(label)
            texts.append(f"input {input_ids[j] if j < len(input_ids) else j}")
    if xs:
        fig.add_trace(go.Box(x=xs, y=ys, orientation="h", boxpoints="all", jitter=0.5, pointpos=0,
                             fillcolor="rgba(0,0,0,0)", line=dict(color="rgba(0,0,0,0)"),
                             marker=dict(size=6, color="rgba(31,119,180,0.55)"), text=texts, name="per input",
                             hovertemplate="%{text}: Δ = %{x:.4f}<extra></extra>", showlegend=True))
    fig.add_trace(go.Scatter(
        x=[r["delta"] for r in rows], y=labels, mode="markers", name="mean (95 % bootstrap CI)",
        marker=dict(size=11, color="#d62728", symbol="diamond"),
        error_x=dict(type="data", symmetric=False, array=[r["ci_high"] - r["delta"] for r in rows],
                     arrayminus=[r["delta"] - r["ci_low"] for r in rows], color="#d62728", thickness=2),
        hovertemplate="%{y}: mean Δ = %{x:.4f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, x=0.01, font=dict(size=13)), height=max(260, 90 + 34 * len(rows)),
                      margin=dict(l=10, r=10, t=40, b=40), plot_bgcolor="white", hovermode="closest",
                      legend=dict(orientation="h", y=-0.12),
                      xaxis=dict(title=f"Δ {objective} (per input)", zeroline=True, zerolinecolor="#999",
                                 gridcolor="#eee"),
                      yaxis=dict(autorange="reversed", automargin=True, categoryorder="array", categoryarray=labels))
    return fig
