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


PANELS = {value: mod.panel for value, _, mod in TABS}


def tab_panel(tab: str):
    """The components of analysis tab ``tab`` (mounted the first time it is shown)."""
    return PANELS[tab]()


def analysis_panel():
    """The tab control and one body per tab; only the default tab's body holds its components at
    first, the others are mounted when first shown (callbacks/analysis.py) and then kept, so the page
    carries only the tabs the user opened. The jobs watcher is always mounted: a run finished by a
    job (anyone's) reaches the Run menu whether or not the Runs tab was opened."""
    shown = DEFAULTS["atab"]
    return html.Div(className="panel analysis-panel", children=[
        dcc.RadioItems(id=ids.ANALYSIS_TAB, value=shown, inline=True, className="tabs",
                       options=[{"label": label, "value": value} for value, label, _ in TABS]),
        dcc.Store(id=ids.GATE_FIELDS, data={tab: list(fields) for tab, fields in {**ids.GATED_TABS,
                                                                                   **ids.GATED_DETAIL}.items()}),
        *[dcc.Store(id=ids.analysis_gate(tab), data=None) for tab in (*ids.GATED_TABS, *ids.GATED_DETAIL)],
        dcc.Store(id=ids.ANALYSIS_MOUNTED, data=[shown]),
        *jobs.watcher(),
        html.Div(id=ids.ANALYSIS_BODY, children=[
            html.Div(tab_panel(value) if value == shown else [], id=ids.analysis_body(value),
                     className="analysis-tab-body", style={"display": "block" if value == shown else "none"})
            for value, _, _ in TABS]),
    ])
