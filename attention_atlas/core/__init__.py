"""The shared core below figures/ and analysis/ (docs/ARCHITECTURE.md, "Layers"): small pure pieces
both sides use — token indexing and sampling here; the attention maths itself is precompute.metrics,
the manifest reader figures/runinfo.py. Nothing here imports figures, analysis, callbacks or Dash."""
