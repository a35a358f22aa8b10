"""Integration: real packaged models through the CLI into a store, resume, export, bad input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from precompute.cli import main
from precompute.metrics import attention_from_qk
from precompute.store import Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "The cat sat on the mat.",
    "Where did the trophy go, and why didn't it fit in the suitcase?",
    "Paris is the capital of France.",
    "She said \"hello\" twice, then left.",
    "One, two, three, four, five.",
    "A very long sentence that keeps going with many words so that padding is exercised in the batch.",
]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("corpus") / "small.txt"
    p.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return p


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory, corpus_file):
    cache = tmp_path_factory.mktemp("store")
    args = ["run", "--model", "minilm", "--corpus", str(corpus_file), "--cache", str(cache), "--layers", "0,5",
            "--heads", "0,3", "--projections", "pca,tsne,umap", "--dims", "2,3", "--quiet", "--workers", "2"]
    assert main(args) == 0
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    return cache, run_id, args


def test_run_stores_complete_head_data(minilm_run):
    cache, run_id, _ = minilm_run
    store = Store(cache, readonly=True)
    m = store.manifest(run_id)
    assert m["model"]["family"] == "bert" and m["layers"] == [0, 5] and m["heads"] == [0, 3]
    assert store.status(run_id)["status"] == "complete"
    tokens = store.tokens(run_id)
    n = len(tokens["text"])
    assert n == m["corpus"]["n_tokens"] and tokens["text"][0] == "[CLS]"
    assert set(tokens["input_id"]) == set(range(len(SENTENCES)))
    for l in (0, 5):
        for h in (0, 3):
            q, k = store.qk(run_id, l, h)
            assert q.shape == (n, 32) and k.shape == (n, 32)
            for v in ("translated", "raw"):
                for meth in ("pca", "tsne", "umap"):
                    for d in (2, 3):
                        c = store.coords(run_id, l, h, v, meth, d)
                        assert c.shape == (2 * n, d) and np.isfinite(c).all()
            met = store.metrics(run_id, l, h)
            assert -1 <= met["spearman/translated"] <= 1
            assert 0 <= met["trust/translated/tsne/2d"] <= 1


def test_stored_qk_reproduce_model_attention(minilm_run):
    """Faithfulness end to end: attention recomputed from the STORED q/k equals the model's own."""
    from precompute.models import load_model

    cache, run_id, _ = minilm_run
    store = Store(cache, readonly=True)
    adapter = load_model("minilm")
    enc = adapter.encode_texts(SENTENCES)
    own = adapter.attentions(enc)
    tokens = store.tokens(run_id)
    m = store.manifest(run_id)
    for l in (0, 5):
        for h in (0, 3):
            q, k = store.qk(run_id, l, h)
            for i in range(len(SENTENCES)):
                sel = tokens["input_id"] == i
                a = attention_from_qk(q[sel], k[sel], causal=m["model"]["causal"], scale=m["model"]["scale"])
                np.testing.assert_allclose(a, own[l][i][h], atol=1e-4)


def test_rerun_reuses_everything_and_extends(minilm_run, capsys):
    cache, run_id, args = minilm_run
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "0 layers forwarded, 0 heads projected" in out
    # more heads: only the new ones are computed
    extended = [a if a != "0,3" else "0,3,7" for a in args]
    code, out, err = run_cli(capsys, *extended)
    assert code == 0 and "1 layers forwarded" not in out and "2 heads projected" in out, out
    code, out, _ = run_cli(capsys, "list", "--cache", str(cache), "--json")
    rows = json.loads(out)
    assert rows[0]["id"] == run_id and rows[0]["status"] == "complete" and rows[0]["heads"] == 6


def test_list_table_and_export(minilm_run, capsys, tmp_path):
    cache, run_id, _ = minilm_run
    code, out, _ = run_cli(capsys, "list", "--cache", str(cache))
    assert code == 0 and run_id in out and "complete" in out and "minilm" in out
    out_file = tmp_path / "head.npz"
    code, out, _ = run_cli(capsys, "export", "--cache", str(cache), "--run", run_id[:6], "--layer", "5",
                           "--head", "3", "--out", str(out_file))
    assert code == 0, out
    z = np.load(out_file)
    n = len(z["tokens"])
    assert z["queries"].shape == (n, 32) and z["queries"].dtype == np.float32
    for meth in ("pca", "tsne", "umap"):
        for d in (2, 3):
            assert z[f"coords_{meth}_{d}d"].shape == (2 * n, d)
    assert json.loads(str(z["metrics"]))["layer"] == 5
    q, k = Store(cache, readonly=True).qk(run_id, 5, 3)
    assert np.array_equal(z["queries"], q) and np.array_equal(z["keys"], k)
    csv_file = tmp_path / "head.csv"
    code, _, _ = run_cli(capsys, "export", "--cache", str(cache), "--run", run_id, "--layer", "5", "--head", "3",
                         "--out", str(csv_file), "--projection", "umap", "--dim", "3")
    lines = csv_file.read_text(encoding="utf-8").splitlines()
    assert code == 0 and lines[0] == "kind,token,input_id,position,x,y,z" and len(lines) == 2 * n + 1


@pytest.mark.parametrize("args,expect", [
    (["export", "--run", "zzz", "--layer", "0", "--head", "0", "--out", "x.npz"], "unknown run"),
    (["export", "--run", "RUN", "--layer", "4", "--head", "0", "--out", "x.npz"], "unknown layer 4"),
    (["export", "--run", "RUN", "--layer", "0", "--head", "11", "--out", "x.npz"], "unknown head 11"),
])
def test_export_bad_input(minilm_run, capsys, args, expect):
    cache, run_id, _ = minilm_run
    args = [a.replace("RUN", run_id) for a in args] + ["--cache", str(cache)]
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_one_line_errors(tmp_path, capsys, corpus_file):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    unsupported = tmp_path / "weird_model"
    unsupported.mkdir()
    (unsupported / "config.json").write_text(json.dumps({"model_type": "speech_to_text_9000"}))
    cache = tmp_path / "c"
    cases = [
        (["--model", str(tmp_path / "no_such_model"), "--corpus", str(corpus_file)], "no_such_model"),
        (["--model", str(unsupported), "--corpus", str(corpus_file)], "bert"),
        (["--model", "minilm", "--corpus", str(empty)], "empty"),
        (["--model", "minilm", "--corpus", str(latin)], "UTF-8"),
        (["--model", "minilm", "--corpus", str(tmp_path / "missing.txt")], "missing.txt"),
        (["--model", "minilm", "--corpus", str(corpus_file), "--layers", "6"], "unknown layer 6"),
        (["--model", "minilm", "--corpus", str(corpus_file), "--heads", "12"], "unknown head 12"),
        (["--model", "minilm", "--corpus", "demo-images"], "pick a text corpus"),
        (["--model", "minilm", "--corpus", str(corpus_file), "--projections", "mds"], "unknown projection"),
    ]
    for extra, expect in cases:
        code, out, err = run_cli(capsys, "run", "--cache", str(cache), "--quiet", *extra)
        assert code == 2, (extra, err)
        assert expect in err, (extra, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    code, _, err = run_cli(capsys, "run", "--cache", str(blocked / "sub"), "--model", "minilm",
                           "--corpus", str(corpus_file), "--quiet")
    assert code == 2 and "not writable" in err


def test_incompatible_store_untouched(tmp_path, capsys, corpus_file):
    from precompute.store import encode_json
    s = Store(tmp_path / "c")
    s._cache.set("format", encode_json({"version": 999}))
    s._cache.set("run/old/manifest", b"precious")
    s.close()
    code, _, err = run_cli(capsys, "run", "--cache", str(tmp_path / "c"), "--model", "minilm",
                           "--corpus", str(corpus_file), "--quiet")
    assert code == 2 and "incompatible version" in err
    import diskcache
    with diskcache.Cache(str(tmp_path / "c")) as c:
        assert c.get("run/old/manifest") == b"precious"


@pytest.mark.slow  # two real CLI runs (kill, resume): 41-61 s on the loaded 2-core machine
def test_sigkill_mid_run_then_resume(tmp_path, corpus_file):
    cache = tmp_path / "kill"
    # two of minilm's six layers (24 heads): enough to kill it mid-run and resume, a third of the work
    n_heads = 2 * 12
    cmd = [sys.executable, "-m", "precompute", "run", "--model", "minilm", "--corpus", str(corpus_file),
           "--cache", str(cache), "--layers", "0,5", "--projections", "pca,umap", "--dims", "2", "--workers", "1",
           "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 300
    done_before = 0
    while time.time() < deadline:
        time.sleep(0.5)
        if (cache / "cache.db").exists():
            try:
                s = Store(cache, readonly=True)
            except StoreError:  # the run has created cache.db but not written the format marker yet
                continue
            ids = s.run_ids()
            if ids and s.has(f"run/{ids[0]}/manifest"):
                done_before = s.status(ids[0])["heads_done"]
                s.close()
                if done_before >= 3:
                    break
        assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its worker processes, mid-write
    proc.wait()
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    st = store.status(run_id)
    assert st["status"] == "partial" and 3 <= st["heads_done"] < n_heads == st["heads_total"], st
    listed = subprocess.run([sys.executable, "-m", "precompute", "list", "--cache", str(cache), "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert json.loads(listed.stdout)[0]["status"] == "partial"
    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{n_heads - st['heads_done']} heads projected" in resumed.stdout, resumed.stdout
    assert Store(cache, readonly=True).status(run_id)["status"] == "complete"


def test_dinov2_image_run(tmp_path, capsys):
    cache = tmp_path / "img"
    code, out, err = run_cli(capsys, "run", "--model", "dinov2-small", "--corpus", "demo-images", "--cache", str(cache),
                             "--max-inputs", "3", "--layers", "0,11", "--heads", "0", "--projections", "pca",
                             "--quiet")
    assert code == 0, err
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    tokens = store.tokens(run_id)
    assert len(tokens["text"]) == 3 * 257
    patches = tokens["patch_row"] >= 0
    assert patches.sum() == 3 * 256 and tokens["patch_row"].max() == 15 and tokens["patch_col"].max() == 15
    assert store.image(run_id, 0).shape == (224, 224, 3)
    assert tokens["patch_rgb"].shape == (3 * 257, 3) and tokens["patch_rgb"][patches].std() > 1


def test_smollm2_causal_run(tmp_path, capsys, corpus_file):
    cache = tmp_path / "llm"
    code, out, err = run_cli(capsys, "run", "--model", "smollm2", "--corpus", str(corpus_file), "--cache", str(cache),
                             "--layers", "0,29", "--heads", "0,8", "--projections", "pca", "--dims", "2", "--quiet")
    assert code == 0, err
    store = Store(cache, readonly=True)
    (run_id,) = store.run_ids()
    m = store.manifest(run_id)
    assert m["model"]["causal"] and m["model"]["n_heads"] == 9 and m["model"]["n_kv_heads"] == 3
    assert store.status(run_id)["status"] == "complete"
    assert store.metrics(run_id, 29, 8)["spearman/translated"] < 0.5


def test_dask_executor_path(tmp_path, capsys, corpus_file):
    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        code, out, err = run_cli(capsys, "run", "--model", "minilm", "--corpus", str(corpus_file), "--cache",
                                 str(tmp_path / "dask"), "--layers", "1", "--heads", "0,1", "--projections", "pca",
                                 "--dask", cluster.scheduler_address, "--quiet")
    assert code == 0, err
    assert "2 heads projected" in out


def test_truncation_and_token_cap_are_reported(tmp_path, capsys):
    corpus = tmp_path / "long.txt"
    corpus.write_text("word " * 700 + "\nA short line.\nAnother short line here.\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "run", "--model", "minilm", "--corpus", str(corpus), "--cache", str(tmp_path / "c"),
                             "--layers", "0", "--heads", "0", "--projections", "pca", "--dims", "2", "--quiet")
    assert code == 0, err
    assert "1 inputs were longer than the model's limit of 512 tokens and were truncated (190 tokens cut)" in err
    store = Store(tmp_path / "c", readonly=True)
    (run_id,) = store.run_ids()
    m = store.manifest(run_id)
    assert m["corpus"]["truncated_inputs"] == 1 and m["corpus"]["truncated_tokens"] == 190
    code, out, err = run_cli(capsys, "run", "--model", "minilm", "--corpus", str(corpus), "--cache", str(tmp_path / "c"),
                             "--layers", "0", "--heads", "0", "--projections", "pca", "--dims", "2", "--quiet",
                             "--max-tokens", "520")
    assert code == 0, err
    assert "--max-tokens 520: kept the first 2 inputs, dropped 1 (7 tokens)" in err  # 512 + 6 fit, 7 do not
