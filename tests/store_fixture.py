"""Build a small, structured Attention Atlas store for tests and benchmarks.

``make_test_store(path, kind="text"|"image", ...)`` writes one run through
``precompute.store.Store`` with every documented key (manifest, tokens, inputs,
per-head q/k, metrics, coords; images for image runs). The q/k vectors carry a
positional component so the attention recomputed from them has a visible pattern.
Projections: PCA of the joint query–key embedding; t-SNE/UMAP are perturbed PCA
(it's a fixture, not a projection test).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

from precompute.store import Store

WORDS = ("the cat sat on mat a dog ran to park and bird sang in tree while sun "
         "shone over hill , . ! ? un ##believ ##able token ##ization is fun").split()


def _text_tokens(n_inputs: int, rng: np.random.Generator, tokens_per_input: int | None):
    texts, rows = [], []
    for i in range(n_inputs):
        length = tokens_per_input or int(rng.integers(6, 15))
        words = [str(w) for w in rng.choice(WORDS, size=max(1, length - 2))]
        toks = ["[CLS]"] + words + ["[SEP]"]
        texts.append(" ".join(w for w in words).replace(" ##", ""))
        for p, t in enumerate(toks):
            rows.append((t, i, p, len(toks)))
    return texts, rows


def _image(i: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.2, 0.9, 3)
    img = np.stack([base[0] * (1 - yy), base[1] * xx, base[2] * (0.5 + 0.5 * yy * xx)], -1)
    cy, cx, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.1, 0.22)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    img[disc] = rng.uniform(0, 1, 3)
    return (img * 255).clip(0, 255).astype(np.uint8)


def _pca(x: np.ndarray, d: int) -> np.ndarray:
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc[:: max(1, len(xc) // 4000)], full_matrices=False)
    return (xc @ vt[:d].T).astype(np.float32)


def make_test_store(path, kind: str = "text", n_layers: int = 3, n_heads: int = 4, n_inputs: int = 12,
                    seed: int = 0, run_id: str | None = None, head_dim: int = 16,
                    tokens_per_input: int | None = None, grid: int = 4,
                    variants=("translated", "raw"), methods=("pca", "tsne", "umap"), dims=(2, 3),
                    missing_heads=(), causal: bool = False) -> str:
    """Write one run and return its id. ``missing_heads``: (l, h) pairs left without
    coords/metrics (and forward_done False) to mimic a partial run."""
    rng = np.random.default_rng(seed)
    run_id = run_id or f"test-{kind}-{n_layers}x{n_heads}-s{seed}"
    store = Store(path)
    if kind == "image":
        texts, rows, images = [], [], []
        for i in range(n_inputs):
            img = _image(i, rng)
            images.append(img)
            texts.append(f"image {i}")
            ps = img.shape[0] // grid
            rows.append(("[CLS]", i, 0, grid * grid + 1, -1, -1, img.reshape(-1, 3).mean(0)))
            for r in range(grid):
                for c in range(grid):
                    patch = img[r * ps:(r + 1) * ps, c * ps:(c + 1) * ps].reshape(-1, 3).mean(0)
                    rows.append((f"patch r{r} c{c}", i, 1 + r * grid + c, grid * grid + 1, r, c, patch))
    else:
        texts, trows = _text_tokens(n_inputs, rng, tokens_per_input)
        rows = [(t, i, p, n, -1, -1, np.zeros(3)) for t, i, p, n in trows]
    n = len(rows)
    vocab = {w: j for j, w in enumerate(sorted({r[0] for r in rows}))}
    tokens = {
        "text": np.array([r[0] for r in rows]),
        "token_id": np.array([-1 if kind == "image" else vocab[r[0]] for r in rows], np.int32),
        "input_id": np.array([r[1] for r in rows], np.int32),
        "position": np.array([r[2] for r in rows], np.int32),
        "input_length": np.array([r[3] for r in rows], np.int32),
        "patch_row": np.array([r[4] for r in rows], np.int16),
        "patch_col": np.array([r[5] for r in rows], np.int16),
        "patch_rgb": np.array([r[6] for r in rows], np.float64).round().astype(np.uint8),
    }
    tokens["norm_position"] = (tokens["position"] / np.maximum(tokens["input_length"] - 1, 1)).astype(np.float32)
    store.put_tokens(run_id, tokens)
    store.put_inputs(run_id, texts)
    if kind == "image":
        for i, img in enumerate(images):
            store.put_image(run_id, i, img)

    pos = tokens["position"].astype(np.float64)
    freqs = np.arange(1, head_dim // 2 + 1)
    posenc = np.concatenate([np.sin(pos[:, None] * freqs / 7.0), np.cos(pos[:, None] * freqs / 7.0)], 1)
    tok_emb = np.random.default_rng(seed + 1).normal(size=(max(vocab.values()) + 1, head_dim))
    emb = tok_emb[np.maximum(tokens["token_id"], 0)]
    if kind == "image":
        emb = np.concatenate([np.stack([tokens["patch_row"], tokens["patch_col"]], 1).astype(float) / grid,
                              tokens["patch_rgb"] / 255.0, np.zeros((n, head_dim - 5))], 1)
    manifest_layers, manifest_heads = list(range(n_layers)), list(range(n_heads))
    missing = {tuple(m) for m in missing_heads}
    t0 = time.time()
    for layer in manifest_layers:
        for head in manifest_heads:
            hr = np.random.default_rng(seed * 100_003 + layer * 1009 + head)
            wq = hr.normal(size=(head_dim, head_dim)) / np.sqrt(head_dim)
            wk = hr.normal(size=(head_dim, head_dim)) / np.sqrt(head_dim)
            mix = 0.3 + 0.6 * hr.random()
            base = mix * posenc * 2.5 + (1 - mix) * emb * 2.0
            q = base @ wq + 0.2 * hr.normal(size=(n, head_dim)) + hr.normal(size=head_dim)
            k = base @ wq + 0.4 * (emb @ wk) + 0.2 * hr.normal(size=(n, head_dim)) + 2 * hr.normal(size=head_dim)
            q, k = (0.45 * q).astype(np.float32), (0.45 * k).astype(np.float32)
            store.put_qk(run_id, layer, head, q, k)
            if (layer, head) in missing:
                continue
            rho = float(-0.95 + 0.7 * hr.random())
            store.put_metrics(run_id, layer, head, {
                **{f"spearman/{v}": rho + (0.05 if v.startswith("raw") else 0.0) for v in variants},
                **{f"trust/{v}/{m}/{d}d": float(0.8 + 0.2 * hr.random()) for v in variants for m in methods for d in dims},
                "timings": {"total_s": float(hr.random())}, "warnings": []})
            for v in variants:
                kk = k - k.mean(0) + q.mean(0) if v.startswith("translated") else k
                qq = q
                if v.endswith("-scaled"):
                    c = np.sqrt(np.linalg.norm(q, axis=1).mean() / np.linalg.norm(k, axis=1).mean())
                    qq, kk = q / c, kk * c
                joint = np.concatenate([qq, kk])
                for d in dims:
                    pca = _pca(joint, d)
                    for m in methods:
                        coords = pca if m == "pca" else (
                            pca * (1.0 if m == "tsne" else 0.8) + hr.normal(scale=0.15 * pca.std(), size=pca.shape))
                        store.put_coords(run_id, layer, head, v, m, d, coords.astype(np.float32))
    scale = head_dim ** -0.5
    manifest = {
        "id": run_id, "format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"name": f"fixture-{kind}", "family": "vit" if kind == "image" else "bert",
                  "modality": "image" if kind == "image" else "text", "n_layers": n_layers, "n_heads": n_heads,
                  "n_kv_heads": n_heads, "head_dim": head_dim, "causal": bool(causal), "scale": scale,
                  "max_length": 512, "identity": f"fixture:{seed}",
                  "special_tokens": ["[CLS]"] if kind == "image" else ["[CLS]", "[SEP]"]},
        "corpus": {"name": f"fixture-{kind}", "kind": "image" if kind == "image" else "text",
                   "hash": hashlib.sha256(repr(texts).encode()).hexdigest()[:16], "n_inputs": n_inputs,
                   "n_tokens": n, "truncated_inputs": 0, "truncated_tokens": 0, "skipped": 0, "warnings": []},
        "settings": {"tsne": {"perplexity": 30}, "umap": {"n_neighbors": 15, "min_dist": 0.1}, "max_tokens": n},
        "versions": {"fixture": 1},
        "layers": manifest_layers, "heads": manifest_heads, "projections": list(methods),
        "dims": list(dims), "variants": list(variants), "forward_done": not missing,
        "timings": {"fixture_s": round(time.time() - t0, 3)},
    }
    store.put_manifest(run_id, manifest)
    store.close()
    return run_id


if __name__ == "__main__":  # python -m tests.store_fixture DIR
    import sys
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "cache/demo")
    print(make_test_store(out, "text", n_layers=4, n_heads=6, n_inputs=40))
    print(make_test_store(out, "image", n_layers=3, n_heads=4, n_inputs=8, grid=8))
