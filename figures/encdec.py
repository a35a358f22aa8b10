"""Head kinds of encoder–decoder runs: moved to the shared core (attention_atlas/core/encdec.py) so that
analysis uses them too without importing figures; imported from here as well."""
from attention_atlas.core.encdec import (  # noqa: F401 - re-exported
    KINDS,
    KIND_LABEL,
    KIND_SHORT,
    SIDES,
    layer_kind,
    is_encdec,
    kinds_of,
    resolve_kind,
    grid_layers,
    layer_label,
    head_label,
    HeadSides,
    head_sides,
    grid_sides,
    kind_options,
    joined_tables,
    NOT_FOR_KIND,
    not_applicable,
)
