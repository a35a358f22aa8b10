"""Thin Dash callbacks: read controls, fetch data through dashboard_data, build figures.

Feature modules each own their callbacks (``register(app, context)``, context: attention_atlas.context.AppContext,
built once by app.build_app); the order does not matter."""

FEATURES = ("state", "matrix", "preview", "single", "detail", "analysis", "patterns", "related", "ablation",
            "neuron", "rollout", "owninput", "jobs", "export", "live", "faithfulness")


def register_all(app, context):
    import importlib
    for name in FEATURES:
        importlib.import_module(f"{__name__}.{name}").register(app, context)
