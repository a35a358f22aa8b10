"""`python -m precompute run | list | export` — the command line of the precompute engine."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from .executor import pid_alive  # light (stdlib only); attention_atlas/serve_when_ready.py imports it from here




def _expected_errors() -> tuple[type[BaseException], ...]:
    """The one-line error classes, from the modules already imported (an error of a module that was
    never imported cannot have been raised; importing them here would load torch just to print it)."""
    wanted = (("precompute.corpus", "CorpusError"), ("precompute.models.base", "ModelLoadError"),
              ("precompute.pipeline", "RunError"), ("precompute.selection", "SelectionError"),
              ("precompute.store", "StoreError"))
    return tuple(getattr(sys.modules[m], n) for m, n in wanted if m in sys.modules)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m precompute",
                                description="Precompute joint query-key embeddings of every attention head.")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run a corpus through a model and store every head's embeddings",
                       description="Run a corpus through a model, capture every head's queries and keys, "
                                   "project the joint embeddings and store them. Re-running reuses what is stored.")
    r.add_argument("--model", required=True,
                   help="built-in name (minilm, smollm2, dinov2-small), a local Hugging Face model folder, "
                        "a model id already in your HF cache, or timm:<folder> for a timm ViT")
    r.add_argument("--corpus", required=True,
                   help="demo | demo-images | a .txt (one input a line), .jsonl or .csv file | a folder of images")
    r.add_argument("--cache", default="./cache/demo", help="store directory (default: ./cache/demo)")
    r.add_argument("--layers", help="layers to keep, e.g. 0-5 or 0,3,7 (default: all)")
    r.add_argument("--heads", help="heads to keep in each layer, e.g. 0,3 (default: all)")
    r.add_argument("--projections", help="comma list of pca,tsne,umap,attn-umap,attn-tsne (default: pca,tsne,umap; "
                                         "attn-umap / attn-tsne lay out a graph built from attention itself)")
    r.add_argument("--dims", help="comma list of 2,3 (default: both)")
    r.add_argument("--variants", default="translated,raw",
                   help="joint-embedding variants to project: translated (keys moved to the query centroid), raw, "
                        "translated-scaled, raw-scaled (norm scaling) (default: translated,raw)")
    r.add_argument("--text-column", help="column/key holding the text in .csv/.jsonl corpora (default: text)")
    r.add_argument("--target-column", help="encoder-decoder models: column of a .csv corpus holding each input's "
                                           "target text (default: the model generates it, greedy, bounded)")
    r.add_argument("--max-tokens", type=int, help="cap on the run's total tokens (whole inputs are kept, in order)")
    r.add_argument("--max-inputs", type=int, help="use only the first N inputs of the corpus")
    r.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass (default: 16)")
    r.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda or mps")
    r.add_argument("--workers", type=int, help="parallel processes for per-head work (default: all cores)")
    r.add_argument("--dask", metavar="ADDRESS", help="run per-head work on a Dask distributed scheduler at ADDRESS")
    r.add_argument("--seed", type=int, default=0, help="random seed of the projections (default: 0)")
    r.add_argument("--perplexity", type=float, help="t-SNE perplexity")
    r.add_argument("--neighbors", type=int, help="UMAP number of neighbours")
    r.add_argument("--force", action="store_true", help="recompute everything even if stored")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--fast-first", action="store_true",
                   help="PCA of every head first (seconds; a dashboard can show every head), then t-SNE/UMAP "
                        "and the metrics head by head; the stored result is the same")
    r.add_argument("--ready-file", metavar="PATH",
                   help="write PATH (JSON: run id, store) once every head can be shown: after the PCA phase "
                        "with --fast-first, else when the run is complete")
    r.add_argument("--stop-with", metavar="PID", type=int,
                   help="stop (with every worker process) as soon as process PID has ended, e.g. the dashboard "
                        "this run computes for; what is finished stays stored")

    ls = sub.add_parser("list", help="list stored runs", description="List every run in a store.")
    ls.add_argument("--cache", default="./cache/demo", help="store directory (default: ./cache/demo)")
    ls.add_argument("--json", action="store_true", help="print a JSON list of objects (with an id key)")
    ls.add_argument("--verify", action="store_true",
                    help="read every entry and check its checksum; corrupt entries are listed (re-running the "
                         "run's command recomputes exactly those)")

    ex = sub.add_parser("export", help="export one head to .npz or .csv",
                        description="Export one head's queries, keys, token fields, projections and metrics.")
    ex.add_argument("--cache", default="./cache/demo", help="store directory (default: ./cache/demo)")
    ex.add_argument("--run", required=True, help="run id (or a unique prefix) from `list`")
    ex.add_argument("--layer", type=int, required=True, help="layer index")
    ex.add_argument("--head", type=int, required=True, help="head index")
    ex.add_argument("--out", required=True, help="output file (.npz or .csv)")
    ex.add_argument("--variant", default="translated", help="embedding variant of the coordinates (default: translated)")
    ex.add_argument("--format", choices=("npz", "csv"), help="output format (default: from --out's extension)")
    ex.add_argument("--projection", default="pca", help="csv only: which projection (default: pca)")
    ex.add_argument("--dim", type=int, default=2, help="csv only: 2 or 3 (default: 2)")
    return p


def cmd_run(args) -> int:
    from precompute.selection import check_index_syntax

    check_index_syntax(args.layers, "layer")   # before the model loads: a typo fails at once
    check_index_syntax(args.heads, "head")
    try:  # our own bars say what happens; transformers' weight-loading bar is noise here
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    from precompute.pipeline import RunConfig, run
    from precompute.projections import ProjectionParams

    params = ProjectionParams(seed=args.seed)
    if args.perplexity is not None:
        params.tsne_perplexity = args.perplexity
    if args.neighbors is not None:
        params.umap_n_neighbors = args.neighbors
    cfg = RunConfig(model=args.model, corpus=args.corpus, cache=args.cache, layers=args.layers, heads=args.heads,
                    projections=args.projections, dims=args.dims, variants=args.variants, device=args.device,
                    batch_size=args.batch_size, max_tokens=args.max_tokens, max_inputs=args.max_inputs,
                    text_column=args.text_column, target_column=args.target_column, force=args.force,
                    workers=args.workers, dask=args.dask, params=params, fast_first=args.fast_first)
    if args.ready_file:
        cfg.on_ready = lambda run_id: _write_ready(args.ready_file, run_id, args.cache)
    if args.stop_with:
        stop_with(args.stop_with)
    progress = None if args.quiet else _progress_factory()
    t0 = time.perf_counter()
    summary = run(cfg, progress=progress)
    for w in summary.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"run id:   {summary.run_id}")
    print(f"status:   {summary.status['status']} ({summary.status['heads_done']}/{summary.status['heads_total']} heads; "
          f"computed now: {summary.layers_forwarded} layers forwarded, {summary.heads_computed} heads projected)")
    for stage, secs in summary.timings.items():
        print(f"  {stage:<22} {secs:8.1f} s")
    print(f"  {'total':<22} {time.perf_counter() - t0:8.1f} s")
    for line in figure_lines(summary.figures):
        print(line)
    print(f"stored in: {os.path.abspath(summary.store_path)}")
    return 0


def figure_lines(figures: list[dict]) -> list[str]:
    """The run's faithfulness figures, one line each: a figure's own mean and median over heads."""
    if not figures:
        return []
    variant = figures[0]["variant"]
    out = [f"faithfulness figures (embedding variant {variant}; mean and median over heads, each head's figure "
           "computed as its definition says; definitions: README, 'Faithfulness figures'):",
           f"  {'figure':<52} {'mean':>7} {'median':>7}  heads"]
    for f in figures:
        if f["n"] == 0 and not f["nan"]:
            continue
        fmt = "{:.3f}" if f["kind"] == "trust" else "{:+.3f}"
        mean = "n/a" if f["mean"] is None else fmt.format(f["mean"])
        med = "n/a" if f["median"] is None else fmt.format(f["median"])
        extra = "".join([f", {f['nan']} undefined" if f["nan"] else "",
                         f", {f['missing']} not computed" if f["missing"] else ""])
        out.append(f"  {f['label']:<52} {mean:>7} {med:>7}  {f['n']}{extra}")
    pic = [f for f in figures if f["kind"] == "picture" and f["n"]]
    if pic:
        out.append("  joint-space ρ: distance between q and k' in the head's embedding; picture ρ: the same in the "
                   "picture's coordinates (positive: nearer in the picture means less attention)")
    return out


def _write_ready(path: str, run_id: str, cache: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"run_id": run_id, "cache": os.path.abspath(cache), "pid": os.getpid(), "time": time.time()}, f)
    os.replace(tmp, path)  # whoever waits for the file never sees it half-written


class _LineStream:
    """tqdm's carriage-return redraws as one line each: readable in a log file."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s):
        s = s.replace("\r", "\n")
        lines = [line for line in s.split("\n") if line.strip()]
        if lines:
            self.stream.write("\n".join(lines) + "\n")

    def flush(self):
        self.stream.flush()


def _progress_factory():
    """tqdm bars on stderr. Head stages show the pipeline's own ETA (HeadETA, in the postfix) instead of
    tqdm's rate-based one, which counts one-off start-up costs and ignores parallel workers. Not a
    terminal (a log file): one line per update, at most every 5 s."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    stream = sys.stderr if tty else _LineStream(sys.stderr)

    def make(**kw):
        opts = {"dynamic_ncols": True} if tty else {"mininterval": 5, "ncols": 170, "ascii": True}
        if kw.get("unit") == "head":
            opts["bar_format"] = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
        return tqdm(file=stream, **opts, **kw)
    return make


def stop_with(pid: int, poll: float = 1.0) -> None:
    """Stop this run and every process it started (the per-head worker pool, its fork server)
    once process ``pid`` has ended. The run becomes the leader of a new process group, so one
    signal to the group ends the whole tree; the store stays consistent (every entry is written
    whole or not at all) and the same command resumes. SIGKILL, not SIGTERM: multiprocessing's
    resource tracker ignores SIGTERM, and a worker in a long t-SNE would only die at its end."""
    import signal
    import threading

    try:
        os.setsid()
    except OSError:  # already a group leader (e.g. started with setsid)
        pass
    group = os.getpgid(0)
    if group != os.getpid():
        raise SystemExit("error: --stop-with needs this run to lead its own process group")

    def alive() -> bool:
        return pid_alive(pid)

    def watch():
        while alive():
            time.sleep(poll)
        print(f"process {pid} (the dashboard) has ended: stopping this run and its workers; what is finished "
              "is stored and the same command completes the rest", file=sys.stderr, flush=True)
        os.killpg(group, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="atlas-stop-with").start()


def list_rows(store, verify: bool = False) -> list[dict]:
    from precompute.store import CorruptEntry

    rows = []
    for rid in store.run_ids():
        bad = store.verify(rid) if verify else []
        try:
            m = store.manifest(rid)
        except CorruptEntry:
            rows.append({"id": rid, "model": "?", "corpus": "?", "tokens": 0, "layers": 0, "heads_per_layer": 0,
                         "heads": 0, "heads_done": 0, "projections": [], "variants": [],
                         "size_bytes": store.volume(f"run/{rid}/"), "status": "corrupt", "created": None,
                         "corrupt": bad or [f"run/{rid}/manifest"]})
            continue
        st = store.status(rid, m)
        if bad:
            st["status"] = "corrupt"
        rows.append({"corrupt": bad, "id": rid, "model": m["model"]["name"], "corpus": m["corpus"]["name"],
                     "tokens": m["corpus"]["n_tokens"], "layers": len(m["layers"]), "heads_per_layer": len(m["heads"]),
                     "heads": st["heads_total"], "heads_done": st["heads_done"],
                     "projections": [f"{p}{d}d" for p in m["projections"] for d in m["dims"]],
                     "variants": m["variants"], "size_bytes": store.volume(f"run/{rid}/"),
                     "status": st["status"], "created": m.get("created")})
    return rows


def cmd_list(args) -> int:
    from precompute.store import Store

    store = Store(args.cache, readonly=True)
    rows = list_rows(store, verify=args.verify)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no runs in {store.path}")
        return 0
    print(f"{'id':<13} {'model':<28} {'corpus':<16} {'tokens':>7} {'heads':>9} {'projections':<36} {'size':>9}  status")
    for r in rows:
        heads = f"{r['heads_done']}/{r['heads']}"
        print(f"{r['id']:<13} {r['model'][:28]:<28} {r['corpus'][:16]:<16} {r['tokens']:>7} {heads:>9} "
              f"{','.join(r['projections'])[:36]:<36} {r['size_bytes'] / 2**20:7.1f}MB  {r['status']}"
              + (f" ({len(r['corrupt'])} corrupt entries)" if r["corrupt"] else ""))
    for r in rows:
        for key in r["corrupt"][:20]:
            print(f"corrupt: {key}")
        if r["corrupt"]:
            more = f" (and {len(r['corrupt']) - 20} more)" if len(r["corrupt"]) > 20 else ""
            print(f"  run {r['id']}{more}: re-run the command that made it (same --model, --corpus and options, "
                  f"--cache {store.path}): it recomputes exactly these entries")
    if args.verify:
        print(f"verified: {sum(1 for r in rows if not r['corrupt'])}/{len(rows)} runs have no corrupt entry")
    if store.read_only_mount:
        print(f"(store opened read-only: {store.path} is on a read-only mount or not writable by this user)")
    return 0


def cmd_export(args) -> int:
    from precompute.export import export_csv, export_npz, head_arrays, resolve_run
    from precompute.store import Store

    store = Store(args.cache, readonly=True)
    run_id = resolve_run(store, args.run)
    arrays = head_arrays(store, run_id, args.layer, args.head, args.variant)
    fmt = args.format or ("csv" if args.out.lower().endswith(".csv") else "npz")
    path = export_csv(arrays, args.projection, args.dim, args.out) if fmt == "csv" else export_npz(arrays, args.out)
    print(f"wrote {path} (run {run_id}, layer {args.layer}, head {args.head}, {len(arrays['tokens'])} tokens)")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    handler = {"run": cmd_run, "list": cmd_list, "export": cmd_export}[args.command]
    try:
        return handler(args)
    except _expected_errors() as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was finished is stored; re-run the same command to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's edge: never a traceback for users unless asked
        if args.debug:
            raise
        logging.getLogger("precompute").debug("command failed", exc_info=True)
        from precompute.store import _is_disk_full, disk_full_message
        if _is_disk_full(exc):
            print(f"error: {disk_full_message(getattr(args, 'cache', '.'))}", file=sys.stderr)
            return 2
        print(f"error: unexpected {exc.__class__.__name__}: {exc} (re-run with --debug for the traceback)",
              file=sys.stderr)
        return 1
