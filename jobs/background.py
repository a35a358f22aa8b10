"""Background callbacks as plain functions: what a job process needs to run one without the web app.

A background callback of the dashboard is a **module-level function** whose first parameter is the
settings (attention_atlas.settings.Settings), then Dash's ``set_progress`` when the callback has a
progress output, then the callback's inputs::

    def run_ablation(settings, set_progress, n_clicks, run, ...): ...        # callbacks/ablation.py
    app.callback(Output(...), Input(...), background=True, progress=[...])(run_ablation)

The managers (jobs/manager.py) bind the settings when Dash registers the function and remember it by
name (``module:qualname``); a job process — a child of the fork server, or a Celery worker —
imports it by that name and runs it with ``run_callback`` below. No job process builds the Dash app:
the name is all it needs, as ``celery -A module`` or gunicorn's ``module:app`` name what to load.
"""
from __future__ import annotations

import functools
import importlib
import logging
import traceback
from contextvars import copy_context


class NotAJobBody(TypeError):
    """A background callback a job process could not import by name (a closure, a lambda)."""


def body_ref(fn) -> str:
    """``module:qualname`` of a background callback, checked to be importable by that name."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not qualname or "<" in qualname:
        raise NotAJobBody(f"background callback {qualname or fn!r} must be a module-level function "
                          "(settings, [set_progress,] *inputs): job processes import it by name")
    return f"{module}:{qualname}"


def load_body(ref: str):
    """The function named by ``body_ref``."""
    module, _, qualname = ref.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def bind(fn, settings):
    """The callback as Dash calls it (``[set_progress,] *inputs``), with the settings bound."""
    return functools.partial(fn, settings)


def run_callback(fn, progress: bool, store, result_key: str, progress_key: str, args, context) -> None:
    """Run one background callback the way Dash's managers do, writing through ``store(key, value)``:
    progress under ``progress_key``, ``set_props`` updates under ``<result_key>-set_props``, then the
    result (or Dash's no-update / error record) under ``result_key``."""
    from dash._callback_context import context_value
    from dash._utils import AttributeDict
    from dash.background_callback._proxy_set_props import ProxySetProps
    from dash.exceptions import PreventUpdate

    def set_progress(value):
        store(progress_key, list(value) if isinstance(value, (list, tuple)) else [value])

    def set_props(_id, props):
        store(f"{result_key}-set_props", {_id: props})

    call_args = [set_progress] if progress else []

    def run():
        c = AttributeDict(**(context or {}))
        c.ignore_register_page = False
        c.updated_props = ProxySetProps(set_props)
        context_value.set(c)
        try:
            if isinstance(args, dict):
                out = fn(*call_args, **args)
            elif isinstance(args, (list, tuple)):
                out = fn(*call_args, *args)
            else:
                out = fn(*call_args, args)
        except PreventUpdate:
            store(result_key, {"_dash_no_update": "_dash_no_update"})
            return
        except Exception as err:  # noqa: BLE001 - the edge: the page shows it as the callback's error
            logging.getLogger("atlas.jobs").exception("background callback %s failed", getattr(fn, "__name__", fn))
            store(result_key, {"background_callback_error": {"msg": str(err), "tb": traceback.format_exc()}})
            return
        store(result_key, out)

    copy_context().run(run)
