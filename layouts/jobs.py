"""The "Runs & precompute" tab: a form that starts a precompute run in the background (progress
bar, cancel button) and the list of every job started from the page, visible to all users.

``panel()`` is static; the choices that depend on the server's settings (model and corpus folders
under the allowed roots, limits) are filled in by callbacks/jobs.py. ``jobs_table`` and
``runs_table`` are pure functions of registry entries / run summaries."""
from __future__ import annotations

import time

from dash import dcc, html

from layouts import ids

STATE_COLOURS = {"queued": "#8a6d00", "running": "#1f5fbf", "done": "#1b7f3b", "failed": "#b3261e",
                 "cancelled": "#6b6b6b", "interrupted": "#b35c00"}
_CELL = {"padding": "3px 8px", "borderBottom": "1px solid #eee", "fontSize": "12px", "verticalAlign": "top"}
_HEAD = {**_CELL, "fontWeight": 600, "color": "#555", "textAlign": "left", "borderBottom": "1px solid #ccc"}


def _ctl(label, component, width=None):
    return html.Div([html.Label(label), component], className="ctl",
                    style={"minWidth": width} if width else None)


def panel():
    return html.Div(id=ids.PRECOMPUTE_VIEW, className="view", children=[
        html.Div(className="row-inline", style={"alignItems": "flex-start", "gap": "14px 22px"}, children=[
            _ctl("Model", dcc.Dropdown(id=ids.JOBS_MODEL, value="minilm", clearable=False, style={"width": "330px"},
                                       options=[{"label": "minilm", "value": "minilm"}])),
            _ctl("or a model folder under the allowed roots",
                 dcc.Input(id=ids.JOBS_MODEL_PATH, type="text", value="", debounce=False,
                           placeholder="e.g. my-bert (relative to a model root)", style={"width": "260px"})),
            _ctl("Corpus", dcc.Dropdown(id=ids.JOBS_CORPUS, value="demo", clearable=False, style={"width": "330px"},
                                        options=[{"label": "demo", "value": "demo"}])),
            _ctl("or a corpus path under the allowed roots",
                 dcc.Input(id=ids.JOBS_CORPUS_PATH, type="text", value="", placeholder="e.g. reviews.jsonl",
                           style={"width": "220px"})),
        ]),
        html.Div(className="row-inline", style={"alignItems": "flex-start", "gap": "14px 22px", "marginTop": "6px"},
                 children=[
            dcc.Upload(id=ids.JOBS_UPLOAD, multiple=False, children=html.Div([
                "Upload a corpus: drop a file here or ", html.A("choose one", style={"textDecoration": "underline"}),
                html.Span(" (.txt one input per line, .jsonl, .csv)", style={"color": "#666"})]),
                style={"border": "1px dashed #999", "borderRadius": "5px", "padding": "8px 12px", "fontSize": "13px",
                       "cursor": "pointer", "background": "#fafafa"}),
            _ctl("text column (.jsonl / .csv)", dcc.Input(id=ids.JOBS_TEXT_COLUMN, type="text", value="",
                                                           placeholder="text", style={"width": "110px"})),
            # encoder–decoder models: each input's target; empty = the model generates it (greedy, bounded)
            _ctl("target column (encoder–decoder, .csv / .tsv)",
                 dcc.Input(id=ids.JOBS_TARGET_COLUMN, type="text", value="", style={"width": "150px"},
                           placeholder="empty: model generates")),
            html.Div(id=ids.JOBS_UPLOAD_MSG, className="note", style={"maxWidth": "520px", "alignSelf": "center"}),
        ]),
        html.Div(className="row-inline", style={"alignItems": "flex-start", "gap": "14px 22px", "marginTop": "6px"},
                 children=[
            _ctl("Projections", dcc.Checklist(id=ids.JOBS_PROJECTIONS, inline=True, value=["pca"], className="toggle",
                                              # labels differ from the page's own controls (tests pick by text)
                                              options=[{"label": "PCA (fast)", "value": "pca"},
                                                       {"label": "t-SNE (slow)", "value": "tsne"},
                                                       {"label": "UMAP (slow)", "value": "umap"},
                                                       {"label": "attention-graph UMAP (slow)", "value": "attn-umap"},
                                                       {"label": "attention-graph t-SNE (slow)", "value": "attn-tsne"}])),
            _ctl("Dimensions", dcc.Checklist(id=ids.JOBS_DIMS, inline=True, value=[2], className="toggle",
                                             options=[{"label": "2 dims", "value": 2}, {"label": "3 dims", "value": 3}])),
            _ctl("Embeddings", dcc.Checklist(id=ids.JOBS_VARIANTS, inline=True, value=["translated", "raw"],
                                             className="toggle",
                                             options=[{"label": "translated keys", "value": "translated"},
                                                      {"label": "raw keys", "value": "raw"},
                                                      {"label": "translated, norm-scaled", "value": "translated-scaled"},
                                                      {"label": "raw, norm-scaled", "value": "raw-scaled"}])),
            _ctl("Layers", dcc.Input(id=ids.JOBS_LAYERS, type="text", value="", placeholder="all, or 0-2,5",
                                     style={"width": "100px"})),
            _ctl("Heads", dcc.Input(id=ids.JOBS_HEADS, type="text", value="", placeholder="all", style={"width": "80px"})),
            _ctl("Max tokens", dcc.Input(id=ids.JOBS_MAX_TOKENS, type="number", min=1, value=None, placeholder="limit",
                                         style={"width": "90px"})),
        ]),
        html.Div(className="row-inline", style={"marginTop": "8px", "gap": "12px"}, children=[
            html.Button("Start run", id=ids.JOBS_START, n_clicks=0,
                        style={"fontWeight": 600, "padding": "4px 14px", "cursor": "pointer"}),
            html.Button("Cancel", id=ids.JOBS_CANCEL, n_clicks=0, disabled=True,
                        style={"padding": "4px 12px", "cursor": "pointer"}),
            html.Progress(id=ids.JOBS_BAR, value="0", max="100", style={"width": "260px", "height": "14px"}),
            html.Span(id=ids.JOBS_BAR_LABEL, style={"fontSize": "12px", "color": "#333"}),
        ]),
        html.Div(id=ids.JOBS_MSG, className="note", style={"fontWeight": 600}),
        html.Div(id=ids.JOBS_STATUS, className="note"),
        html.Div(id=ids.JOBS_LIMITS, className="note", style={"color": "#777"}),
        html.H4("Jobs started from this page (everyone's)", style={"margin": "10px 0 4px", "fontSize": "14px"}),
        html.Div(id=ids.JOBS_TABLE, children=html.Div("no jobs yet", className="note")),
        html.H4("Runs in the store", style={"margin": "10px 0 4px", "fontSize": "14px"}),
        html.Div(id=ids.JOBS_RUNS, className="note"),
        dcc.Store(id=ids.JOBS_RESULT), dcc.Store(id=ids.JOBS_UPLOAD_RAW), dcc.Store(id=ids.JOBS_CONFIG),
    ])


def watcher():
    """What follows everyone's jobs and the store's runs whether or not the tab has been mounted
    (layouts/analysis.py mounts a tab the first time it is shown): the tick, its record, the stores
    it writes (new runs for the Run menu, the tab's tables) and the started job's request."""
    return [dcc.Interval(id=ids.JOBS_TICK, interval=2000), dcc.Store(id=ids.JOBS_GEN, data=-1),
            dcc.Store(id=ids.JOBS_REQUEST), dcc.Store(id=ids.JOBS_SHOWN),
            dcc.Store(id=ids.JOBS_PUSH_RUNS), dcc.Store(id=ids.JOBS_PUSH_BAR)]


def _when(t, now=None) -> str:
    if not t:
        return ""
    now = now or time.time()
    fmt = "%H:%M:%S" if now - t < 20 * 3600 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(t))


def _duration(e, now) -> str:
    if not e.get("started"):
        return ""
    end = e.get("finished") or now
    s = max(0, int(end - e["started"]))
    return f"{s // 60}:{s % 60:02d}"


def jobs_table(entries: list[dict], can_cancel, stored_runs: set, now: float | None = None, limit: int = 30):
    """The job list: one row per job, newest first. ``can_cancel(entry)`` says whether this user
    may cancel it; ``stored_runs`` are the run ids the store holds (for the "open" links)."""
    now = now or time.time()
    if not entries:
        return html.Div("no jobs yet: start one above", className="note")
    head = html.Tr([html.Th(h, style=_HEAD) for h in
                    ("job", "user", "model", "corpus", "state", "progress", "details", "started", "time", "run", "")])
    rows = []
    for e in entries[:limit]:
        state = e["state"]
        pct = 100 if state == "done" else round(100 * float(e.get("progress") or 0))
        details = e.get("message") or e.get("stage") or ""
        if state == "running" and e.get("cancel_requested"):
            details = "cancelling… " + (e.get("stage") or "")
        run = e.get("run_id")
        run_cell = (dcc.Link(f"open {run}", href=f"?run={run}")
                    if run and run in stored_runs else (run or ""))
        cancel = (html.Button("cancel", id={"type": ids.JOBS_ROW_CANCEL_TYPE, "job": e["id"]}, n_clicks=0,
                              style={"fontSize": "11px", "padding": "1px 6px", "cursor": "pointer"})
                  if state in ("queued", "running") and not e.get("cancel_requested") and can_cancel(e) else "")
        rows.append(html.Tr(id={"type": ids.JOBS_ROW_TYPE, "job": e["id"]}, className=f"job-{state}", children=[
            html.Td(e["id"], style={**_CELL, "fontFamily": "monospace"}),
            html.Td(e.get("user") or "-", style=_CELL),
            html.Td(e.get("labels", {}).get("model", ""), style=_CELL),
            html.Td(e.get("labels", {}).get("corpus", ""), style=_CELL),
            html.Td(html.Span(state, className="job-state",
                              style={"color": "#fff", "background": STATE_COLOURS.get(state, "#555"),
                                     "borderRadius": "3px", "padding": "1px 6px"}), style=_CELL),
            html.Td([html.Progress(value=str(pct), max="100", style={"width": "90px", "height": "10px"}),
                     html.Span(f" {pct}%")], style={**_CELL, "whiteSpace": "nowrap"}),
            html.Td(details, className="job-details", style={**_CELL, "maxWidth": "520px"}),
            html.Td(_when(e.get("started") or e.get("created"), now), style=_CELL),
            html.Td(_duration(e, now), style=_CELL),
            html.Td(run_cell, style=_CELL),
            html.Td(cancel, style=_CELL),
        ]))
    more = [html.Div(f"… and {len(entries) - limit} older jobs", className="note")] if len(entries) > limit else []
    return html.Div([html.Table([html.Thead(head), html.Tbody(rows)],
                                style={"borderCollapse": "collapse", "width": "100%"})] + more)


def runs_table(runs: list[dict]):
    """Stored runs: id, model, corpus, status, with a link that opens each."""
    if not runs:
        return "the store holds no runs yet"
    rows = [html.Tr([html.Th(h, style=_HEAD) for h in ("run", "model", "corpus", "status", "")])]
    for r in runs:
        rows.append(html.Tr([
            html.Td(r["id"], style={**_CELL, "fontFamily": "monospace"}),
            html.Td(r.get("model", "?"), style=_CELL),
            html.Td(r.get("corpus", "?"), style=_CELL),
            html.Td(r.get("status", "?"), style=_CELL),
            html.Td(dcc.Link("open", href=f"?run={r['id']}"), style=_CELL),
        ]))
    return html.Table(rows, style={"borderCollapse": "collapse"})
