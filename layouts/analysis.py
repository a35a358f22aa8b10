"""The analysis section under the detail panel: one tab per analysis view, each a module of
its own (``layouts/<feature>.py`` with ``panel()``, ``callbacks/<feature>.py`` with ``register``).
The precompute (runs) tab is the team page for starting runs in the background."""
from __future__ import annotations

from dash import dcc, html

from figures.urlstate import DEFAULTS
from layouts import ablation, jobs, neuron, owninput, patterns, related, rollout
from layouts import ids

# (tab value, label, layout module); the tab values are the URL's ``atab`` choices
TABS = [
    ("patterns", "Head patterns", patterns),
    ("related", "Related heads", related),
    ("ablation", "Ablation", ablation),
    ("neuron", "Neuron view", neuron),
    ("rollout", "Attention rollout", rollout),
    ("input", "Your input", owninput),
    ("precompute", "Runs & precompute", jobs),
]


def analysis_panel():
    return html.Div(className="panel analysis-panel", children=[
        dcc.RadioItems(id=ids.ANALYSIS_TAB, value=DEFAULTS["atab"], inline=True, className="tabs",
                       options=[{"label": label, "value": value} for value, label, _ in TABS]),
        dcc.Store(id=ids.GATE_FIELDS, data={tab: list(fields) for tab, fields in {**ids.GATED_TABS,
                                                                                   **ids.GATED_DETAIL}.items()}),
        *[dcc.Store(id=ids.analysis_gate(tab), data=None) for tab in (*ids.GATED_TABS, *ids.GATED_DETAIL)],
        html.Div(id=ids.ANALYSIS_BODY, children=[
            html.Div(mod.panel(), id=ids.analysis_body(value), className="analysis-tab-body",
                     style={"display": "block" if value == DEFAULTS["atab"] else "none"})
            for value, _, mod in TABS]),
    ])
