"""The shared core below figures/ and analysis/ (docs/ARCHITECTURE.md, "Layers"): small pure pieces
both sides use — token indexing and sampling here; the attention maths itself is precompute.metrics,
the typed manifest reader (runinfo.py: RunInfo). Nothing here imports figures, analysis, callbacks or Dash."""
