"""Attention Atlas: the dashboard's settings, serving, sign-in, data access and entry points (the Dash
app itself is the top-level module ``app`` (app.py, with ``assets/`` beside it); the packages
``precompute``, ``figures``, ``analysis``, ``callbacks``, ``layouts`` and ``jobs`` sit beside this one; the layers
between them are in docs/ARCHITECTURE.md and checked by tests/integration/test_layers.py).

Console command: ``atlas`` (attention_atlas/cli.py); ``python -m attention_atlas`` is the same."""
