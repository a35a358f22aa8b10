"""Analyses beyond the anchors: head pattern scores, related heads, ablation, value norms,
attention rollout, the neuron view and placing new inputs into stored projections.

Pure functions over numpy arrays (testable without Dash or a model) plus thin readers of the
run store; the dashboard's callbacks call them."""
