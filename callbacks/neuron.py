"""Callbacks of the neuron panel (placeholder until the feature lands)."""


def register(app, data):
    return None
