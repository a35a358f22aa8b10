"""Callbacks of the rollout panel (placeholder until the feature lands)."""


def register(app, data):
    return None
