"""Capture cost: the registered attention function (new) vs the per-family q/k hooks (old, taken
from git ``main`` before issue 12) on MiniLM and SmolLM2, measured in the same run.

Each measurement is one subprocess (so peak memory is its own): load the model, warm up with one
batch, then time ``adapter.capture`` over the corpus (all layers, batches of 16) ``--reps`` times
(wall clock and the process's CPU time — on a shared, loaded machine the CPU time is the steadier
figure; torch runs one thread)
while a sampler thread records the peak RSS above the warmed-up baseline. Old and new alternate.
The script also checks that both capture the same q/k (max |Δ|).

    .venv/bin/python -m bench.capture [--models minilm,smollm2] [--inputs 48] [--rounds 3] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # run as a module from the root (bench/precompute.py is not the package)
OLD_REF = "d8fd8d7"          # main before issue 12: per-family hooks (bert.py, llama.py, hf.py)


def old_package(dest: Path) -> None:
    """The old adapters as package ``oldmodels`` (their own hf.py; base.py's hook path is unchanged)."""
    pkg = dest / "oldmodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("hf", "bert", "llama"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_REF}:precompute/models/{name}.py"],
                             check=True, capture_output=True, text=True).stdout
        src = re.sub(r"precompute\.models\.hf\b", "oldmodels.hf", src)
        (pkg / f"{name}.py").write_text(src)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(variant: str, model: str, n_inputs: int, reps: int, old_dir: str, dump: str | None) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from precompute.corpus import load_corpus
    from precompute.models import load_model
    from precompute.models.packaged import DISPLAY_NAMES, builtin_folder

    texts = load_corpus("demo").items[:n_inputs]
    if variant == "new":
        adapter = load_model(model)
    else:
        from transformers import AutoConfig

        family = {"minilm": "bert", "smollm2": "llama"}[model]
        module = __import__(f"oldmodels.{family}", fromlist=["load"])
        folder, identity = builtin_folder(model)
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        adapter = module.load(str(folder), config, name=DISPLAY_NAMES[model], identity=identity)
    enc = adapter.encode_texts(texts)
    batches = [enc[i:i + 16] for i in range(0, len(enc), 16)]
    adapter.capture(batches[0])                              # warm-up (and the new path's self-check)
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)                  # freed heap back to the OS: a clean baseline
    base, peak, stop = rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            out = adapter.capture(b)
            del out
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    stop.set()
    sampler.join()
    if dump:
        out = adapter.capture(batches[-1])
        np.savez(dump, **{f"{l}_{w}_{i}": a for l, (qs, ks) in out.items() for w, xs in (("q", qs), ("k", ks))
                          for i, a in enumerate(xs)})
    return {"variant": variant, "model": model, "times": times, "cpu": cpu, "peak_mib": (peak[0] - base) / 2**20,
            "tokens": sum(len(e.tokens) for e in enc)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,smollm2")
    ap.add_argument("--inputs", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        variant, model, old_dir, dump = json.loads(args.child)
        print("RESULT " + json.dumps(measure(variant, model, args.inputs, args.reps, old_dir, dump)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        # the child imports the old adapters (package ``oldmodels`` in tmp) beside the project
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(ROOT), tmp]))
        old_package(Path(tmp))
        report = {}
        for model in args.models.split(","):
            runs = {"old": [], "new": []}
            for r in range(args.rounds):
                for variant in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    dump = str(Path(tmp) / f"{model}-{variant}.npz") if r == 0 else None
                    cmd = [sys.executable, "-m", "bench.capture", "--inputs", str(args.inputs), "--reps", str(args.reps),
                           "--child", json.dumps([variant, model, tmp, dump])]
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
                    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                    if not line:
                        raise SystemExit(f"{variant} {model} failed: {out.stderr.strip().splitlines()[-1:]}")
                    runs[variant].append(json.loads(line[0][7:]))
            import numpy as np

            a, b = np.load(Path(tmp) / f"{model}-old.npz"), np.load(Path(tmp) / f"{model}-new.npz")
            same = max(float(np.abs(a[key] - b[key]).max()) for key in a.files)
            med = {v: statistics.median(t for run in runs[v] for t in run["times"]) for v in runs}
            cpu = {v: statistics.median(t for run in runs[v] for t in run["cpu"]) for v in runs}
            peak = {v: statistics.median(run["peak_mib"] for run in runs[v]) for v in runs}
            report[model] = {"tokens": runs["new"][0]["tokens"], "median_s": med, "ratio": med["new"] / med["old"],
                             "median_cpu_s": cpu, "cpu_ratio": cpu["new"] / cpu["old"],
                             "peak_mib": peak, "max_abs_diff_qk": same, "load": os.getloadavg()}
            print(f"{model}: {report[model]['tokens']} tokens, capture median wall old {med['old']:.3f}s new "
                  f"{med['new']:.3f}s (new/old {med['new'] / med['old']:.3f}), CPU old {cpu['old']:.3f}s new "
                  f"{cpu['new']:.3f}s (new/old {cpu['new'] / cpu['old']:.3f}); peak RSS above baseline old "
                  f"{peak['old']:.1f} MiB new {peak['new']:.1f} MiB; max |Δq/k| old vs new {same:.1e}; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
