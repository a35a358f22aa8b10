"""Callbacks of the ablation panel (placeholder until the feature lands)."""


def register(app, data):
    return None
