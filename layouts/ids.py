"""Every Dash component id of the page, defined once (layouts and callbacks use these names, so a
misspelt id is an AttributeError at import time, not a silently dead callback).

* The view-state controls' ids come from the one field table (figures/urlstate.py, ``Field.component``):
  they are read from it here, not repeated.
* ``DYNAMIC``: ids of components that callbacks create inside an output (not in the initial layout).
* Pattern-matching ids (dicts with a ``type``): the ``*_TYPE`` constants name their type.
* assets/*.js and the tests may keep literal strings; tests/test_ids.py checks that every id here and
  every id the scripts look up exists in the built layout, and that no two components share one.
"""
from __future__ import annotations

from figures.urlstate import FIELD

# ---------------------------------------------------------------- view-state controls (figures.urlstate.FIELDS)

RUN_SELECT = FIELD["run"].component
PROJECTION_SELECT = FIELD["proj"].component
DIM_SELECT = FIELD["dim"].component
TRANSLATE_TOGGLE = FIELD["translate"].component
SCALED_TOGGLE = FIELD["scaled"].component
COLOR_SELECT = FIELD["color"].component
SEARCH_INPUT = FIELD["q"].component
REGEX_TOGGLE = FIELD["regex"].component
LAYER_SELECT = FIELD["layer"].component
HEAD_SELECT = FIELD["head"].component
LOD_SELECT = FIELD["lod"].component
SORT_SELECT = FIELD["sort"].component
RHO_THRESHOLD = FIELD["rho"].component
TOPK_INPUT = FIELD["topk"].component
MINW_INPUT = FIELD["minw"].component
LINES_TOGGLE = FIELD["lines"].component
NORMSIZE_TOGGLE = FIELD["normsize"].component
DETAIL_TAB = FIELD["tab"].component
SENTENCE_MODE = FIELD["smode"].component
HIDE_SELECT = FIELD["hide"].component
IMAGE_MODE = FIELD["imode"].component
ANALYSIS_TAB = FIELD["atab"].component
VNORM_TOGGLE = FIELD["vnorm"].component
TOKEN_STORE = FIELD["token"].component
SENTENCE_HEADS = FIELD["sheads"].component
SENTENCE_PAIR = FIELD["pair"].component
KIND_SELECT = FIELD["kind"].component

# ---------------------------------------------------------------- ablation
ABLATION_CANCEL = "ablation-cancel"
ABLATION_CAP = "ablation-cap"
ABLATION_GRAPH = "ablation-graph"
ABLATION_MODE = "ablation-mode"
ABLATION_MSG = "ablation-msg"
ABLATION_PLAN = "ablation-plan"
ABLATION_PROGRESS = "ablation-progress"
ABLATION_PROGRESS_TEXT = "ablation-progress-text"
ABLATION_RESULT = "ablation-result"
ABLATION_RUN = "ablation-run"
ABLATION_SCOPE = "ablation-scope"
ABLATION_SELECTION = "ablation-selection"
ABLATION_SUMMARY = "ablation-summary"
ABLATION_TABLE = "ablation-table"
ABLATION_VIEW = "ablation-view"

# ---------------------------------------------------------------- analysis
ANALYSIS_BODY = "analysis-body"

# ---------------------------------------------------------------- boot
BOOT_STORE = "boot-store"

# ---------------------------------------------------------------- color
COLOR_LEGEND = "color-legend"

# ---------------------------------------------------------------- export
EXPORT_ALL = "export-all"
EXPORT_BAR = "export-bar"
EXPORT_CSV = "export-csv"
EXPORT_DOWNLOAD = "export-download"
EXPORT_HTML = "export-html"
EXPORT_MSG = "export-msg"
EXPORT_CONFIG = "export-config"
EXPORT_PNG = "export-png"
EXPORT_REQUEST = "export-request"
EXPORT_SVG = "export-svg"
EXPORT_VIEW = "export-view"

# ---------------------------------------------------------------- focus
FOCUS_STORE = "focus-store"

# ---------------------------------------------------------------- image
IMAGE_GRAPH = "image-graph"
IMAGE_INFO = "image-info"
IMAGE_VIEW = "image-view"

# ---------------------------------------------------------------- input
INPUT_EXACT = "input-exact"
INPUT_GRID_GRAPH = "input-grid-graph"
INPUT_HEAD_GRAPH = "input-head-graph"
INPUT_INFO = "input-info"
INPUT_JOB_MSG = "input-job-msg"
INPUT_REQUEST = "input-request"
INPUT_RUNNING = "input-running"
INPUT_SENTENCE_GRAPH = "input-sentence-graph"
INPUT_STATUS = "input-status"
INPUT_STORE = "input-store"
INPUT_SUBMIT = "input-submit"
INPUT_TEXT = "input-text"
INPUT_TEXT_BOX = "input-text-box"
INPUT_TRANSFORM_REQUEST = "input-transform-request"
INPUT_TRANSFORM_STORE = "input-transform-store"
INPUT_UPLOAD = "input-upload"
INPUT_UPLOAD_BOX = "input-upload-box"
INPUT_VIEW = "input-view"

# ---------------------------------------------------------------- jobs
JOBS_BAR = "jobs-bar"
JOBS_BAR_LABEL = "jobs-bar-label"
JOBS_CANCEL = "jobs-cancel"
JOBS_CONFIG = "jobs-config"
JOBS_CORPUS = "jobs-corpus"
JOBS_CORPUS_PATH = "jobs-corpus-path"
JOBS_DIMS = "jobs-dims"
JOBS_GEN = "jobs-gen"
JOBS_HEADS = "jobs-heads"
JOBS_LAYERS = "jobs-layers"
JOBS_LIMITS = "jobs-limits"
JOBS_MAX_TOKENS = "jobs-max-tokens"
JOBS_MODEL = "jobs-model"
JOBS_MODEL_PATH = "jobs-model-path"
JOBS_MSG = "jobs-msg"
JOBS_PROJECTIONS = "jobs-projections"
JOBS_PUSH_BAR = "jobs-push-bar"
JOBS_PUSH_RUNS = "jobs-push-runs"
JOBS_REQUEST = "jobs-request"
JOBS_RESULT = "jobs-result"
JOBS_RUNS = "jobs-runs"
JOBS_SHOWN = "jobs-shown"  # what the jobs tick last found, for the Runs tab (mounted or not): table, status, runs
JOBS_START = "jobs-start"
JOBS_STATUS = "jobs-status"
JOBS_TABLE = "jobs-table"
JOBS_TARGET_COLUMN = "jobs-target-column"
JOBS_TEXT_COLUMN = "jobs-text-column"
JOBS_TICK = "jobs-tick"
JOBS_UPLOAD = "jobs-upload"
JOBS_UPLOAD_MSG = "jobs-upload-msg"
JOBS_UPLOAD_RAW = "jobs-upload-raw"
JOBS_VARIANTS = "jobs-variants"

# ---------------------------------------------------------------- kind
KIND_CTL = "kind-ctl"

# ---------------------------------------------------------------- last
LAST_RUN = "last-run"

# ---------------------------------------------------------------- lod
LOD_COST = "lod-cost"

# ---------------------------------------------------------------- matrix
MATRIX_GRAPH = "matrix-graph"
MATRIX_HOVER = "matrix-hover"
MATRIX_META = "matrix-meta"
MATRIX_NOTE = "matrix-note"
MATRIX_OVERLAY = "matrix-overlay"
MATRIX_PAINTED = "matrix-painted"
MATRIX_STACK = "matrix-stack"

# ---------------------------------------------------------------- message
MESSAGE_AREA = "message-area"

# ---------------------------------------------------------------- misleading
MISLEADING_LEGEND = "misleading-legend"

# ---------------------------------------------------------------- model
MODEL_GRAPH = "model-graph"
MODEL_INFO = "model-info"
MODEL_VIEW = "model-view"

# ---------------------------------------------------------------- msg
MSG_DETAIL = "msg-detail"
MSG_ERROR = "msg-error"
MSG_MATRIX = "msg-matrix"
MSG_SEARCH = "msg-search"
MSG_SINGLE = "msg-single"
MSG_URL = "msg-url"

# ---------------------------------------------------------------- neuron
NEURON_GRAPH = "neuron-graph"
NEURON_INFO = "neuron-info"
NEURON_KEY = "neuron-key"
NEURON_ROW_GRAPH = "neuron-row-graph"
NEURON_STATE = "neuron-state"
NEURON_VIEW = "neuron-view"

# ---------------------------------------------------------------- next
NEXT_HEAD_BTN = "next-head-btn"
NEXT_LAYER_BTN = "next-layer-btn"

# ---------------------------------------------------------------- patch
PATCH_ZOOM = "patch-zoom"

# ---------------------------------------------------------------- patterns
PATTERNS_GRAPH = "patterns-graph"
PATTERNS_HEAD = "patterns-head"
PATTERNS_HIGHLIGHT = "patterns-highlight"
PATTERNS_NOTE = "patterns-note"
PATTERNS_SCORE = "patterns-score"
PATTERNS_TABLE = "patterns-table"
PATTERNS_VIEW = "patterns-view"

# ---------------------------------------------------------------- precompute
PRECOMPUTE_VIEW = "precompute-view"

# ---------------------------------------------------------------- prev
PREV_HEAD_BTN = "prev-head-btn"
PREV_LAYER_BTN = "prev-layer-btn"

# ---------------------------------------------------------------- related
RELATED_COLOR = "related-color"
RELATED_GRAPH = "related-graph"
RELATED_LIST = "related-list"
RELATED_NOTE = "related-note"
RELATED_VIEW = "related-view"

# ---------------------------------------------------------------- rho
RHO_THRESHOLD_LABEL = "rho-threshold-label"

# ---------------------------------------------------------------- rollout
ROLLOUT_GRAPH = "rollout-graph"
ROLLOUT_IMAGE_GRAPH = "rollout-image-graph"
ROLLOUT_INFO = "rollout-info"
ROLLOUT_LAYER = "rollout-layer"
ROLLOUT_VIEW = "rollout-view"

# ---------------------------------------------------------------- run
RUN_INFO = "run-info"
RUN_PROGRESS = "run-progress"
RUN_PROGRESS_TICK = "run-progress-tick"

# ---------------------------------------------------------------- search
SEARCH_COUNT = "search-count"

# ---------------------------------------------------------------- sentence
SENTENCE_GRAPH = "sentence-graph"
SENTENCE_HEADS_ALL = "sentence-heads-all"
SENTENCE_HEADS_NONE = "sentence-heads-none"
SENTENCE_HEADS_MARK = "sentence-heads-mark"  # output of the clientside current-head mark (never written)
SENTENCE_HIDE_NOTE = "sentence-hide-note"
SENTENCE_INFO = "sentence-info"
SENTENCE_PAIR_CTL = "sentence-pair-ctl"
SENTENCE_VIEW = "sentence-view"

# ---------------------------------------------------------------- single
SINGLE_ANALYSIS = "single-analysis"
SINGLE_GRAPH = "single-graph"
SINGLE_INFO = "single-info"

# ---------------------------------------------------------------- url
URL = "url"
URL_POP = "url-pop"            # {search, t}: written by assets/clientside_state.js on back/forward
URL_WRITTEN = "url-written"    # the query string the browser last wrote for a control change
MATRIX_CLICK = "matrix-click"  # a click on a Matrix View overlay point, for the server reducer
LAYER_KINDS = "layer-kinds"    # {layer: head kind} of an encoder–decoder run shown (None for others)
STATE_FIELDS = "state-fields"  # figures/urlstate's field table, for the browser's URL writer

# ---------------------------------------------------------------- analysis tabs: one body per tab value
ANALYSIS_TABS = FIELD["atab"].choices


def analysis_body(tab: str) -> str:
    """The id of the analysis tab ``tab``'s body (``analysis-patterns`` …)."""
    return f"analysis-{tab}"


ANALYSIS_PATTERNS = analysis_body("patterns")
ANALYSIS_RELATED = analysis_body("related")
ANALYSIS_ABLATION = analysis_body("ablation")
ANALYSIS_NEURON = analysis_body("neuron")
ANALYSIS_ROLLOUT = analysis_body("rollout")
ANALYSIS_INPUT = analysis_body("input")
ANALYSIS_PRECOMPUTE = analysis_body("precompute")
# the analysis tabs mounted so far: a tab's components enter the page the first time it is shown
# (callbacks/analysis.py) and stay; every mounted Dash component costs each store update of the page
ANALYSIS_MOUNTED = "analysis-mounted"


def analysis_gate(tab: str) -> str:
    """The id of the store that feeds tab ``tab``'s server callback: set in the browser only while the
    tab is shown and only when what the tab reads changed (callbacks/analysis.py), so a hidden tab
    makes no server round trip on a head change or a token click."""
    return f"analysis-gate-{tab}"


# what each gated tab's server callback reads of the shared selection (the gate's fields)
GATED_TABS = {"patterns": ("run", "layer", "head", "painted"), "related": ("run", "layer", "head", "painted"),
              "neuron": ("run", "layer", "head", "token"), "rollout": ("run", "token"),
              "ablation": ("run", "layer", "head"), "input": ("run", "layer", "head")}
# the detail panel's views (detail-tab values) are gated the same way (ids analysis-gate-<view>)
GATED_DETAIL = {"sentence": ("run", "layer", "head", "token", "painted"),
                "image": ("run", "layer", "head", "token", "painted"), "model": ("run", "token", "painted")}
GATE_FIELDS = "analysis-gate-fields"  # GATED_TABS and GATED_DETAIL, for the browser's gate
GATE_PATTERNS = analysis_gate("patterns")
GATE_RELATED = analysis_gate("related")
GATE_NEURON = analysis_gate("neuron")
GATE_ROLLOUT = analysis_gate("rollout")
GATE_ABLATION = analysis_gate("ablation")
GATE_INPUT = analysis_gate("input")
GATE_SENTENCE = analysis_gate("sentence")
GATE_IMAGE = analysis_gate("image")
GATE_MODEL = analysis_gate("model")

# ---------------------------------------------------------------- made by callbacks (not in the initial layout)
SINGLE_PATTERN = "single-pattern"
NEURON_DOT = "neuron-dot"
NEURON_BIAS = "neuron-bias"
NEURON_SUM = "neuron-sum"
NEURON_SCALE = "neuron-scale"
NEURON_SCORE = "neuron-score"
NEURON_WEIGHT = "neuron-weight"
RELATED_SIMILAR = "related-similar"
PATTERNS_TABLE_EL = "patterns-table-el"
DYNAMIC = (SINGLE_PATTERN, NEURON_DOT, NEURON_BIAS, NEURON_SUM, NEURON_SCALE, NEURON_SCORE, NEURON_WEIGHT, RELATED_SIMILAR,
           PATTERNS_TABLE_EL)

# ---------------------------------------------------------------- pattern-matching ids: their types
SIMILAR_HEAD_TYPE = "similar-head"
RELATED_HEAD_TYPE = "related-head"
JOBS_ROW_TYPE = "jobs-row"
JOBS_ROW_CANCEL_TYPE = "jobs-row-cancel"
PATTERN_TYPES = (SIMILAR_HEAD_TYPE, RELATED_HEAD_TYPE, JOBS_ROW_TYPE, JOBS_ROW_CANCEL_TYPE)


def all_ids() -> dict[str, str]:
    """{constant name: id} of every plain id of the page (DYNAMIC ones included, pattern types not)."""
    return {k: v for k, v in globals().items()
            if k.isupper() and isinstance(v, str) and not k.endswith("_TYPE")}
