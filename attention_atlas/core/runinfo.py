"""A typed reader of a run's manifest: the dashboard (callbacks, figures, analysis, dashboard_data) reads
runs through ``RunInfo``, not through raw manifest dicts. Only precompute/ (which writes manifests) reads
them raw; ``RunInfo.raw`` is the dict itself, for handing a manifest back to precompute (e.g. the store).

Old manifests (without some fields) read with the defaults the older format implied:

* ``scale``: 1/√head_dim (1.0 without head_dim); ``modality``: "image" when the corpus is an image folder;
* ``projections`` ("pca",), ``dims`` (2,), ``variants`` ("translated",);
* ``special_tokens``: None when the manifest does not store the tokenizer's special tokens (then the
  Sentence View falls back to the historical name sets) — a tuple otherwise;
* ``attention`` (per stored layer: kind, causal, window, softcap): empty for runs made before per-layer
  semantics were stored — every layer then has kind "self", the model-wide ``causal``, no window and no
  softcap (``layer_kind``, ``layer_semantics``);
* ``n_target_tokens`` 0 and ``targets`` "" (runs that are not encoder–decoder);
* ``metric`` (the joint-space kNN metric, ``settings.params.metric``) "cosine"; ``params`` {}.

Build one per manifest (``Data.info(run_id)`` caches it); ``as_runinfo`` takes either and returns a
RunInfo (tests and old callers may still pass a dict).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class LayerAttention:
    """One stored layer's attention semantics (``model.attention[l]`` of the manifest)."""
    kind: str = "self"                # self | encoder | decoder | cross
    causal: bool | None = None        # None: the model-wide ``causal``
    window: int | None = None         # sliding window (keys within the last ``window`` positions)
    softcap: float | None = None      # logit soft-capping
    bias: str | None = None           # its relative-position bias table in ``RunInfo.position_bias`` (T5, ALiBi)


@dataclass(frozen=True)
class RunInfo:
    id: str
    model_name: str
    family: str
    modality: str                     # "text" | "image"
    layers: tuple
    heads: tuple
    head_dim: int | None
    n_kv_heads: int | None
    causal: bool
    scale: float
    special_tokens: tuple | None      # the tokenizer's real special tokens (adapter-stored); None: not stored
    projections: tuple
    dims: tuple
    variants: tuple
    corpus_name: str
    corpus_kind: str
    n_tokens: int | None              # source tokens (every token of a run without a target side)
    n_inputs: int | None
    created: str
    attention: tuple = ()             # LayerAttention per stored layer index; () for old manifests
    n_target_tokens: int = 0          # encoder–decoder runs: the target tokens the decoder read
    targets: str = ""                 # encoder–decoder runs: where the targets came from ("given" | …)
    n_model_layers: int | None = None  # the model's layer count (model.n_layers), not only the stored ones
    source: str | None = None         # what load_model reloads the model from (model.source)
    identity: str | None = None       # the model's identity stamp (model.identity)
    max_length: int | None = None     # the tokenizer's limit (model.max_length)
    params: dict = field(default_factory=dict, compare=False)   # projection settings (settings.params)
    forward_done: bool = False        # stage 1 (forward passes) finished
    extra: dict = field(default_factory=dict, compare=False)    # the manifest itself (see ``raw``)

    @classmethod
    def from_manifest(cls, m: dict) -> "RunInfo":
        model, corpus = m.get("model", {}) or {}, m.get("corpus", {}) or {}
        head_dim = model.get("head_dim")
        scale = model.get("scale")
        if scale is None:
            scale = (1.0 / float(head_dim) ** 0.5) if head_dim else 1.0
        modality = model.get("modality") or ("image" if corpus.get("kind") == "image" else "text")
        special = model.get("special_tokens")
        attention = tuple(LayerAttention(kind=str(a.get("kind", "self")),
                                         causal=None if a.get("causal") is None else bool(a.get("causal")),
                                         window=a.get("window"), softcap=a.get("softcap"), bias=a.get("bias"))
                          for a in ((x if isinstance(x, dict) else {}) for x in model.get("attention") or []))
        params = (m.get("settings") or {}).get("params") or {}
        return cls(id=str(m.get("id", "")), model_name=str(model.get("name", "?")), family=str(model.get("family", "")),
                   modality=modality, layers=tuple(m.get("layers") or ()), heads=tuple(m.get("heads") or ()),
                   head_dim=head_dim, n_kv_heads=model.get("n_kv_heads"), causal=bool(model.get("causal", False)),
                   scale=float(scale), special_tokens=None if special is None else tuple(special),
                   projections=tuple(m.get("projections") or ("pca",)), dims=tuple(int(d) for d in m.get("dims") or (2,)),
                   variants=tuple(m.get("variants") or ("translated",)), corpus_name=str(corpus.get("name", "?")),
                   corpus_kind=str(corpus.get("kind", "")), n_tokens=corpus.get("n_tokens"),
                   n_inputs=corpus.get("n_inputs"), created=str(m.get("created", "")), attention=attention,
                   n_target_tokens=int(corpus.get("n_target_tokens") or 0), targets=str(corpus.get("targets") or ""),
                   n_model_layers=model.get("n_layers"), source=model.get("source"), identity=model.get("identity"),
                   max_length=model.get("max_length"), params=dict(params), forward_done=bool(m.get("forward_done")),
                   extra=m)

    # ------------------------------------------------------------------ whole run
    @property
    def raw(self) -> dict:
        """The manifest dict this was read from (for precompute functions that take one)."""
        return self.extra

    @property
    def is_image(self) -> bool:
        return self.modality == "image" or self.corpus_kind == "image"

    @property
    def n_heads_total(self) -> int:
        return len(self.layers) * len(self.heads)

    @property
    def n_tokens_joined(self) -> int | None:
        """Rows of the dashboard's token table: source tokens, then target tokens (None: unknown)."""
        return None if self.n_tokens is None else int(self.n_tokens) + self.n_target_tokens

    @property
    def metric(self) -> str:
        """The joint-space kNN metric of the run (t-SNE/UMAP neighbours, trustworthiness)."""
        return self.params.get("metric", "cosine")

    def has_head(self, layer, head) -> bool:
        return layer in self.layers and head in self.heads

    def with_causal(self, causal: bool) -> "RunInfo":
        """The same run read as model-wide causal (or not) — e.g. the decoder side of an encoder–decoder run."""
        return replace(self, causal=bool(causal))

    # ------------------------------------------------------------------ per stored layer
    def layer(self, layer) -> LayerAttention:
        layer = int(layer)
        return self.attention[layer] if 0 <= layer < len(self.attention) else LayerAttention()

    def layer_kind(self, layer) -> str:
        """encoder | decoder | cross, or self for runs without kinds."""
        return self.layer(layer).kind

    @property
    def position_bias(self) -> dict:
        """The run's relative-position bias tables by name (``model.position_bias``; T5 rows, ALiBi slopes)."""
        return (self.extra.get("model") or {}).get("position_bias") or {}

    def layer_semantics(self, layer, head=None) -> dict:
        """Keyword arguments of ``precompute.metrics.attention_from_qk`` for one stored layer (and query
        head): ``{causal, scale, window, softcap}``, plus ``bias`` (the head's relative-position bias) on
        layers that add one, which need ``head`` — as ``precompute.metrics.layer_semantics`` reads them."""
        sem = self.layer(layer)
        out = {"causal": bool(self.causal if sem.causal is None else sem.causal), "scale": float(self.scale),
               "window": sem.window, "softcap": sem.softcap}
        if sem.bias:
            from precompute.metrics import head_bias
            out["bias"] = head_bias(self.position_bias, sem.bias, layer, head)
        return out

    @property
    def is_encdec(self) -> bool:
        """An encoder–decoder run: some stored layer is cross-attention."""
        return any(self.layer_kind(l) == "cross" for l in self.layers)


def as_runinfo(m) -> RunInfo:
    """``m`` itself when it is a RunInfo, else the RunInfo of the manifest dict ``m``."""
    return m if isinstance(m, RunInfo) else RunInfo.from_manifest(m or {})
