"""The typed reader of a run's manifest — it lives in the shared core (attention_atlas/core/runinfo.py),
so that figures and analysis both read runs through it; re-exported here for the views."""
from attention_atlas.core.runinfo import LayerAttention, RunInfo, as_runinfo  # noqa: F401
