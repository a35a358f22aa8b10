"""Faithfulness figures in the Matrix View's controls: the filter's label names the figure it
applies to (the figure the cells are ranked by, else the joint-space Euclidean ρ)."""
from __future__ import annotations

from dash import Input, Output, no_update

from analysis.faithfulness import filter_label, order_figure_id
from layouts import ids

from .common import VIEW_ERRORS, on, resolve_projection, resolve_variant


def filter_label_for(data, run: str, sort: str | None, proj: str | None, translate=None, scaled=None) -> str:
    """The filter's label for these controls (the |ρ euc| filter when the cells fall back to
    another order because the run lacks the figure)."""
    fid = order_figure_id(sort)
    if fid is None:
        return filter_label(None)
    m = data.info(run)
    variant, _ = resolve_variant(m, on(translate), on(scaled))
    method, _ = resolve_projection(m, proj)
    scores, entry, _ = data.figure_scores(run, fid, variant, method)
    return filter_label(entry if scores is not None else None)


def register(app, context):
    data = context.data
    @app.callback(Output(ids.RHO_THRESHOLD_LABEL, "children"), Input(ids.SORT_SELECT, "value"),
                  Input(ids.RUN_SELECT, "value"), Input(ids.PROJECTION_SELECT, "value"), Input(ids.TRANSLATE_TOGGLE, "value"),
                  Input(ids.SCALED_TOGGLE, "value"), Input(ids.MATRIX_PAINTED, "data"), prevent_initial_call=True)
    # painted: held until the Matrix View answered (matrix.sort_choices)
    def label_filter(sort, run, proj, translate, scaled, painted=None):
        if not run:
            return no_update
        try:
            return filter_label_for(data, run, sort, proj, translate, scaled)
        except VIEW_ERRORS:  # a label; the matrix note reports problems
            return no_update
