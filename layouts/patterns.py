"""Layout of the head-patterns panel: a layers × heads map of one pattern score (click a cell to
open that head) and the table of every head's scores; plus the Matrix View's order options."""
from dash import dcc, html

from analysis.patterns import LABELS, PATTERNS
from layouts import ids

DEFAULT_SCORE = "first"


def sort_options(available=None, figures=None) -> list[dict]:
    """Matrix View orders: grid, |ρ|, every faithfulness figure (``figures``: the run's options from
    analysis.faithfulness.sort_figure_options; None = every figure a link can name), each
    head-pattern score and stored ablation effects. Every non-figure value is always listed (a
    link's value must stay valid); those that don't apply to the current run are disabled
    (``available``: the values that apply; None = all)."""
    from analysis.faithfulness import all_figure_sort_options
    from analysis.head_scores import SCORE_LABELS, SORT_SCORES
    opts = [{"label": "grid (layer × head)", "value": "grid"},
            {"label": "by |ρ euc| within layer (joint space, Euclidean)", "value": "rho"}]
    opts += [{"label": o["label"], "value": o["value"], "title": o.get("title", "")}
             for o in (all_figure_sort_options() if figures is None else figures)]
    opts += [{"label": f"by {SCORE_LABELS[s]}", "value": s} for s in SORT_SCORES]
    if available is not None:
        for o in opts:
            o["disabled"] = o["value"] not in available and not o["value"].startswith("fig:")
    return opts


def with_current(options: list[dict], current) -> list[dict]:
    """``options`` plus the current value (disabled) when the run's menu lacks it, so a link's
    order naming a figure this run does not hold is kept (the matrix note says why)."""
    if current and all(o["value"] != current for o in options):
        options = options + [{"label": f"{current} (not in this run)", "value": current, "disabled": True}]
    return options


def _ctl(label, component):
    return html.Div([html.Label(label), component], className="ctl")


def panel():
    return html.Div(id=ids.PATTERNS_VIEW, className="view", children=[
        html.Div(className="note", children=(
            "Which classic pattern does each head follow? Mass scores = mean attention a query puts on the "
            "pattern's keys (first token/[CLS]; [SEP]/punctuation; previous; next; itself — disjoint key sets, "
            "neighbours counted as prev/self/next); broad = row entropy ÷ log(#keys); positional = 1 − mean "
            "total-variation distance between each row and the head's mean attention by relative offset "
            "(cross-fitted; 1 − positional = content-dependent share). n/a: the pattern can't occur (causal "
            "'next'; text-only patterns on images). The Matrix View's order menu ranks and shades heads by any "
            "of these.")),
        html.Div(id=ids.PATTERNS_NOTE, className="note"),
        html.Div(className="row-inline", children=[
            _ctl("map", dcc.RadioItems(id=ids.PATTERNS_SCORE, value=DEFAULT_SCORE, inline=True,
                                       options=[{"label": LABELS[p], "value": p} for p in PATTERNS])),
        ]),
        html.Div(id=ids.PATTERNS_HEAD, className="note"),
        dcc.Graph(id=ids.PATTERNS_GRAPH, config={"displaylogo": False}),  # as tall as its figure
        html.Div(id=ids.PATTERNS_TABLE, style={"maxHeight": "380px", "overflowY": "auto"}),
        dcc.Store(id=ids.PATTERNS_HIGHLIGHT),  # output of the clientside row highlight (never written)
    ])


def describe(name: str, value: float) -> str:
    """'previous token 0.93' (content: the score is 1 − positional)."""
    if name == "content":
        return f"{LABELS['content']} {value:.2f} (= 1 − positional)"
    return f"{LABELS[name]} {value:.2f}"


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


MAX_TABLE_ROWS = 80


def scores_table_html(rp, order_by: str, selected=None, max_rows: int = MAX_TABLE_ROWS) -> tuple[str, str]:
    """(caption, table HTML) of the heads' scores ranked by ``order_by`` (n/a last): every head up
    to ``max_rows``, else the top ``max_rows`` plus the selected head; the selected head
    highlighted. Rows carry data-head="l:h", cells data-score="<pattern>" (tests and readers).
    Every text is escaped. One HTML string, not one Dash component per cell: the browser's Dash
    renderer pays per mounted component on every store update (733 new components cost 2.2 s of
    main thread on a run switch, bench/RESULTS.md session 13)."""
    from html import escape
    from analysis.patterns import SHORT
    heads = sorted(rp.heads, key=lambda h: (rp.scores[h].get(order_by) is None,
                                            -(rp.scores[h].get(order_by) or 0.0), h))
    sel = tuple(selected) if selected else None
    shown = heads[:max_rows]
    if sel in heads and sel not in shown:
        shown = shown + [sel]
    th = "padding:2px 8px;position:sticky;top:0;background:#fff"
    left = "text-align:left;padding:1px 8px"
    out = [f'<table id="{ids.PATTERNS_TABLE_EL}" style="border-collapse:collapse;font-size:12px;width:100%;'
           'text-align:right;font-variant-numeric:tabular-nums"><thead><tr>',
           f'<th style="{th};text-align:left">head</th><th style="{th};text-align:left">dominant</th>']
    out += [f'<th style="{th};color:{"#000" if p == order_by else "#555"}">{escape(SHORT[p])}</th>' for p in PATTERNS]
    out.append("</tr></thead><tbody>")
    for h in shown:
        s = rp.scores[h]
        dom = rp.dominant(*h)
        is_sel = tuple(h) == sel
        out.append(f'<tr data-head="{h[0]}:{h[1]}"' + (' style="background:#fff3cd"' if is_sel else "") + ">")
        out.append(f'<td style="{left}' + (';font-weight:700' if is_sel else "") + f'">L{h[0]} H{h[1]}</td>')
        out.append(f'<td style="{left}">{escape(describe(*dom)) if dom else ""}</td>')
        out += [f'<td data-score="{p}"' + (' style="font-weight:700"' if p == order_by else "") + f">{_fmt(s.get(p))}</td>"
                for p in PATTERNS]
        out.append("</tr>")
    out.append("</tbody></table>")
    caption = (f"all {len(heads)} heads, ranked by {LABELS[order_by]}" if len(shown) >= len(heads) else
               f"top {max_rows} of {len(heads)} heads by {LABELS[order_by]}"
               + (" + the selected head" if len(shown) > max_rows else "") + " (the map shows every head)")
    return caption, "".join(out)


def scores_table(rp, order_by: str, selected=None, max_rows: int = MAX_TABLE_ROWS) -> html.Div:
    """The scores table (``scores_table_html``) as two components: its caption and one Markdown
    component holding the table."""
    caption, table = scores_table_html(rp, order_by, selected, max_rows)
    return html.Div([html.Div(caption, className="note"),
                     dcc.Markdown(table, dangerously_allow_html=True, className="patterns-table-md")])
