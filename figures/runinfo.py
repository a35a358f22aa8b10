"""A typed reader of a run's manifest (the views read runs through it, not through raw dicts).

Old manifests (without some fields) read with the defaults the older format implied."""
from __future__ import annotations

from dataclasses import dataclass, field


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
    special_tokens: tuple             # the tokenizer's real special tokens (adapter-stored)
    projections: tuple
    dims: tuple
    variants: tuple
    corpus_name: str
    corpus_kind: str
    n_tokens: int | None
    n_inputs: int | None
    created: str
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_manifest(cls, m: dict) -> "RunInfo":
        model, corpus = m.get("model", {}) or {}, m.get("corpus", {}) or {}
        head_dim = model.get("head_dim")
        scale = model.get("scale")
        if scale is None:
            scale = (1.0 / float(head_dim) ** 0.5) if head_dim else 1.0
        modality = model.get("modality") or ("image" if corpus.get("kind") == "image" else "text")
        return cls(id=str(m.get("id", "")), model_name=str(model.get("name", "?")), family=str(model.get("family", "")),
                   modality=modality, layers=tuple(m.get("layers") or ()), heads=tuple(m.get("heads") or ()),
                   head_dim=head_dim, n_kv_heads=model.get("n_kv_heads"), causal=bool(model.get("causal", False)),
                   scale=float(scale), special_tokens=tuple(model.get("special_tokens") or ()),
                   projections=tuple(m.get("projections") or ("pca",)), dims=tuple(int(d) for d in m.get("dims") or (2,)),
                   variants=tuple(m.get("variants") or ("translated",)), corpus_name=str(corpus.get("name", "?")),
                   corpus_kind=str(corpus.get("kind", "")), n_tokens=corpus.get("n_tokens"),
                   n_inputs=corpus.get("n_inputs"), created=str(m.get("created", "")), extra=m)

    @property
    def is_image(self) -> bool:
        return self.modality == "image" or self.corpus_kind == "image"

    @property
    def n_heads_total(self) -> int:
        return len(self.layers) * len(self.heads)

    def has_head(self, layer, head) -> bool:
        return layer in self.layers and head in self.heads
