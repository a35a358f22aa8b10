"""The doors of the "Runs & precompute" page, each tried for real: allowed roots (traversal, absolute
paths elsewhere, symlinks out of a root, remote code in a model folder), uploads (size limit, names
with paths, .py files, bad UTF-8 — stored under a random name, never run), the job registry's view of
dead jobs, the store lock between two real jobs on the same run, and logs without secrets during a
basic-auth run."""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.paths import (PathRefused, check_corpus, check_model, display_name, list_corpora, list_models,
                        save_upload, upload_path)
from jobs.registry import STALE_S, Registry
from jobs.runner import JobInvalid, run_job, validate_params
from precompute.store import Store, decode
from attention_atlas.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def data_url(raw: bytes, mime="text/plain") -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def post_callback(client, output_prefix, inputs: dict, states: dict | None = None, headers=None, pattern=None):
    """POST what dash-renderer would for the callback whose first output starts with ``output_prefix``.
    ``pattern``: (id dict, property, value) of the one pattern-matching input that changed."""
    deps = client.get("/_dash-dependencies", headers=headers).get_json()
    dep = next(d for d in deps if d["output"].lstrip(".").startswith(output_prefix))
    outs = [dict(zip(("id", "property"), o.split(".", 1))) for o in dep["output"].strip(".").split("...")]
    states = states or {}
    if pattern is not None:
        pid, prop, value = pattern
        ins = [[{"id": pid, "property": prop, "value": value}]]
        changed = [json.dumps(pid, sort_keys=True, separators=(",", ":")) + "." + prop]
    else:
        ins = [{**i, "value": inputs[f"{i['id']}.{i['property']}"]} for i in dep["inputs"]]
        changed = list(inputs)
    body = {"output": dep["output"], "outputs": outs if len(outs) > 1 else outs[0], "inputs": ins,
            "state": [{**s, "value": states.get(f"{s['id']}.{s['property']}")} for s in dep["state"]],
            "changedPropIds": changed}
    r = client.post("/_dash-update-component", json=body, headers=headers)
    assert r.status_code in (200, 204), r.get_data(as_text=True)[:300]
    return r.get_json()["response"] if r.status_code == 200 else {}


def one_line(exc) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.fixture
def doors(tmp_path):
    models, corpora, outside = tmp_path / "models", tmp_path / "corpora", tmp_path / "outside"
    for d in (models, corpora, outside):
        d.mkdir()
    bert = {"model_type": "bert", "hidden_size": 8}
    for name, cfg in {"good-bert": bert, "remote": {**bert, "auto_map": {"AutoModel": "modeling_evil.Evil"}},
                      "remote-flag": {**bert, "trust_remote_code": True}, "with-code": bert, "sneaky": bert}.items():
        (models / name).mkdir()
        (models / name / "config.json").write_text(json.dumps(cfg))
    (models / "with-code" / "modeling_evil.py").write_text("open('/tmp/pwned', 'w')\n")
    (outside / "secret-model").mkdir()
    (outside / "secret-model" / "config.json").write_text(json.dumps(bert))
    (outside / "weights.bin").write_bytes(b"\0" * 16)
    (models / "escape").symlink_to(outside / "secret-model")                 # a folder link out of the root
    (models / "sneaky" / "model.safetensors").symlink_to(outside / "weights.bin")  # a file link out of it
    (corpora / "notes.txt").write_text("alpha\nbeta\n")
    (outside / "private.txt").write_text("payroll\n")
    (corpora / "leak.txt").symlink_to(outside / "private.txt")
    (corpora / "script.py").write_text("print('hi')\n")
    (corpora / "pics").mkdir()
    from PIL import Image
    Image.new("RGB", (8, 8), (200, 10, 10)).save(corpora / "pics" / "red.png")
    settings = load_settings(env={}, cache=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"),
                             model_roots=str(models), corpus_roots=str(corpora), upload_max_bytes=2000,
                             job_max_tokens=500)
    return settings, tmp_path


# ------------------------------------------------------------------ allowed roots
def test_models_only_builtin_or_under_the_roots(doors):
    settings, tmp = doors
    assert check_model("minilm", settings) == "minilm"
    good = str((tmp / "models" / "good-bert").resolve())
    assert check_model("good-bert", settings) == good
    assert check_model(good, settings) == good
    cases = {
        "../outside/secret-model": "contains '..'",
        "good-bert/../../outside/secret-model": "contains '..'",
        str(tmp / "outside" / "secret-model"): "outside the allowed model folders",
        "escape": "symlink that leads out",
        "sneaky": "symlink that leads outside",
        "remote": "asks for remote code",
        "remote-flag": "asks for remote code",
        "with-code": "carries code (modeling_evil.py)",
        "timm:/etc": "timm:",
        "no-such-model": "not found under the allowed model folders",
        "": "no model given",
        "bert-base-uncased/x\0": "not a usable path",
    }
    for spec, needle in cases.items():
        with pytest.raises(PathRefused) as exc:
            check_model(spec, settings)
        assert needle in one_line(exc), (spec, str(exc.value))
    assert not Path("/tmp/pwned").exists()
    # the picker offers built-ins and the clean folders only
    values = {o["value"] for o in list_models(settings)}
    assert {"minilm", "smollm2", "dinov2-small", good} <= values
    assert str(tmp / "outside" / "secret-model") not in values
    # no roots configured: built-ins only, and the message names the setting
    bare = load_settings(env={}, cache=settings.cache, jobs_dir=settings.jobs_dir)
    with pytest.raises(PathRefused) as exc:
        check_model(good, bare)
    assert "ATLAS_MODEL_ROOTS" in one_line(exc)


def test_corpora_only_builtin_upload_or_under_the_roots(doors):
    settings, tmp = doors
    assert check_corpus("demo", settings) == "demo" and check_corpus("demo-images", settings) == "demo-images"
    assert check_corpus("notes.txt", settings) == str((tmp / "corpora" / "notes.txt").resolve())
    assert check_corpus("pics", settings) == str((tmp / "corpora" / "pics").resolve())
    for spec, needle in {"../outside/private.txt": "'..'", str(tmp / "outside" / "private.txt"): "outside",
                         "leak.txt": "symlink that leads out", "script.py": "unsupported file type",
                         "/etc/passwd": "outside", "upload:../../etc/passwd": "unknown upload",
                         "upload:" + "a" * 32 + ".txt": "no longer on the server"}.items():
        with pytest.raises(PathRefused) as exc:
            check_corpus(spec, settings)
        assert needle in one_line(exc), (spec, str(exc.value))
    labels = " ".join(o["label"] for o in list_corpora(settings))
    assert "notes.txt" in labels and "pics/ (images)" in labels and "leak" not in labels and "script" not in labels
    # a job's parameters go through the same doors, plus the limits
    with pytest.raises(PathRefused):
        validate_params({"model": "minilm", "corpus": "leak.txt"}, settings)
    with pytest.raises(JobInvalid) as exc:
        validate_params({"model": "minilm", "corpus": "demo", "max_tokens": 501}, settings)
    assert "outside 1–500" in one_line(exc)
    with pytest.raises(JobInvalid):
        validate_params({"model": "minilm", "corpus": "demo", "layers": "0-x"}, settings)
    with pytest.raises(JobInvalid):
        validate_params({"model": "minilm", "corpus": "demo", "projections": ["pca", "evil"]}, settings)
    p = validate_params({"model": "minilm", "corpus": "demo"}, settings)
    assert p["max_tokens"] == 500 and p["projections"] == ["pca"] and p["layers"] is None
    # the attention-graph layouts are accepted wherever the other projections are (issue 13)
    p = validate_params({"model": "minilm", "corpus": "demo", "projections": ["attn-tsne", "pca", "attn-umap"]}, settings)
    assert p["projections"] == ["pca", "attn-umap", "attn-tsne"]


# ------------------------------------------------------------------ uploads
def test_uploads_random_names_size_limit_never_run(doors):
    settings, tmp = doors
    uploads = Path(settings.jobs_path) / "uploads"
    code = b"import os\nopen(os.path.expanduser('~/ATLAS_PWNED'), 'w').write('x')\nprint('hello')\n"
    for name in ("../../etc/evil.txt", "C:\\Users\\me\\evil.txt", "/etc/cron.d/evil.txt"):
        info = save_upload(data_url(code), name, settings)
        stored = upload_path(info["token"], settings)
        assert info["name"] == "evil.txt" and stored.parent.resolve() == uploads.resolve()
        assert stored.name != "evil.txt" and len(stored.stem) == 32 and stored.suffix == ".txt"
        assert stored.read_bytes() == code and info["n_inputs"] == 3
        mode = stat.S_IMODE(stored.stat().st_mode)
        assert mode & 0o111 == 0, oct(mode)  # never executable
    assert not (tmp / "etc").exists() and not Path("~/ATLAS_PWNED").expanduser().exists()
    before = sorted(uploads.iterdir())
    refusals = {
        ("evil.py", code): "only .txt, .jsonl, .csv",
        ("big.txt", b"x" * 2001): "over the",
        ("bad.txt", b"caf\xe9\n"): "bad.txt is not valid UTF-8",
        ("rows.jsonl", b'{"body": "hi"}\n'): "no column 'text'",
        ("empty.txt", b"\n\n"): "empty",
    }
    for (name, raw), needle in refusals.items():
        with pytest.raises(PathRefused) as exc:
            save_upload(data_url(raw), name, settings)
        msg = one_line(exc)
        assert needle in msg, (name, msg)
        assert not re.search(r"[0-9a-f]{32}", msg), msg  # the server's random name is not shown
    with pytest.raises(PathRefused) as exc:  # refused from its base64 length, before decoding
        save_upload("data:text/plain;base64," + "A" * 4000, "huge.txt", settings)
    assert "is 2.9 KB, over the 2.0 KB limit" in one_line(exc)
    with pytest.raises(PathRefused):
        save_upload("not a data url", "x.txt", settings)
    assert sorted(uploads.iterdir()) == before  # nothing stored by a refusal
    assert display_name("a/b\\c/\x00d.csv") == "?d.csv"


def test_upload_and_start_through_http(doors):
    """The same doors through the page's own callbacks (what a crafted request would hit)."""
    from app import create_app

    settings, tmp = doors
    app = create_app(settings=settings)
    c = app.server.test_client()

    def post(output_prefix, inputs, states, **kw):
        return post_callback(c, output_prefix, inputs, states, **kw)

    # oversize upload sent straight to the server (the browser's own check bypassed): refused
    resp = post("jobs-upload-msg.children", {"jobs-upload-raw.data": {"contents": data_url(b"y" * 5000),
                                                                       "filename": "big.txt"}}, {})
    assert "over the" in resp["jobs-upload-msg"]["children"] and "jobs-corpus" not in resp
    # a path in the file name: stored under a random name, offered as an upload
    resp = post("jobs-upload-msg.children", {"jobs-upload-raw.data": {"contents": data_url(b"one\ntwo\n"),
                                                                       "filename": "../../../tmp/x/evil.txt"}},
                {"jobs-corpus.options": []})
    token = resp["jobs-corpus"]["value"]
    assert token.startswith("upload:") and "evil" not in token and "uploaded evil.txt: 2 inputs" in \
        resp["jobs-upload-msg"]["children"]
    # Start with a path outside the roots: one line, no job queued
    start_states = {"jobs-model.value": "minilm", "jobs-corpus.value": token, "jobs-projections.value": ["pca"],
                    "jobs-dims.value": [2], "jobs-variants.value": ["translated"], "jobs-max-tokens.value": None}
    resp = post("jobs-request.data", {"jobs-start.n_clicks": 1},
                {**start_states, "jobs-corpus-path.value": str(tmp / "outside" / "private.txt")})
    assert "outside the allowed corpus folders" in resp["jobs-msg"]["children"] and "jobs-request" not in resp
    resp = post("jobs-request.data", {"jobs-start.n_clicks": 2},
                {**start_states, "jobs-model-path.value": "remote"})
    assert "remote code" in resp["jobs-msg"]["children"]
    resp = post("jobs-request.data", {"jobs-start.n_clicks": 3}, {**start_states, "jobs-max-tokens.value": 10**6})
    assert "outside 1–500" in resp["jobs-msg"]["children"]
    reg = Registry(settings.jobs_path)
    assert reg.entries() == []
    resp = post("jobs-request.data", {"jobs-start.n_clicks": 4}, start_states)
    job = resp["jobs-request"]["data"]["job"]
    e = reg.get(job)
    assert e["state"] == "queued" and e["labels"] == {"model": "minilm", "corpus": "upload evil.txt"}
    # the list's cancel button: a queued job is cancelled before it starts (no auth: anyone may)
    resp = post("jobs-msg.children", {}, {}, pattern=({"type": "jobs-row-cancel", "job": job}, "n_clicks", 1))
    assert resp["jobs-msg"]["children"] == f"job {job} cancelled before it started"
    assert reg.get(job)["state"] == "cancelled"
    assert run_job(job, settings)["state"] == "cancelled"  # a worker picking it up later does nothing
    reg.close()


# ------------------------------------------------------------------ registry
def test_registry_shows_dead_jobs_as_interrupted(tmp_path):
    reg = Registry(tmp_path)
    g0 = reg.generation()
    a = reg.create("alice", {"model": "minilm"}, {"model": "minilm"})
    assert reg.get(a)["state"] == "queued" and reg.generation() == g0 + 1
    reg.start(a, "handle-a")
    assert reg.get(a)["state"] == "running" and reg.by_handle("handle-a")["id"] == a  # we are alive
    # a job whose process has exited on this host
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    b = reg.create("bob", {}, {})
    reg.update(b, state="running", pid=p.pid, host=reg.get(a)["host"], created_at=None, heartbeat=time.time(),
               run_id="r1", heads_done=3, heads_total=12)
    vb = reg.get(b)
    assert vb["state"] == "interrupted" and "after 3/12 heads" in vb["message"] and "run r1" in vb["message"]
    # a job on another host whose heartbeat stopped
    c = reg.create("carol", {}, {})
    reg.update(c, state="running", pid=1, host="elsewhere", heartbeat=time.time() - STALE_S - 1)
    assert reg.get(c)["state"] == "interrupted"
    reg.update(c, heartbeat=time.time())
    assert reg.get(c)["state"] == "running"
    # cancel requested, then the process went away: cancelled
    reg.request_cancel(b)
    assert reg.get(b)["state"] == "cancelled"
    assert reg.reap() == 1  # b recorded for good (c is alive again; a is us)
    assert reg._c.get(f"job/{b}")["state"] == "cancelled"  # noqa: SLF001
    reg.beat(b, progress=0.5)  # a late heartbeat does not revive a finished job
    reg.update(b, state_change=True, state="running")
    assert reg.get(b)["state"] == "cancelled"
    reg.finish(a, "done", "ok")
    assert [e["id"] for e in reg.entries()] == [c, b, a]
    reg.close()


# ------------------------------------------------------------------ real jobs
def _job_env(settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLAS_")}
    env.update({"ATLAS_CACHE": settings.cache, "ATLAS_JOBS_DIR": str(settings.jobs_path),
                "ATLAS_JOB_MAX_TOKENS": str(settings.job_max_tokens), "ATLAS_CORPUS_ROOTS": ":".join(settings.corpus_roots)})
    return env


def test_second_job_on_the_same_run_fails_clearly_and_cancel_keeps_store_consistent(tmp_path):
    settings = load_settings(env={}, cache=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"), job_max_tokens=4000)
    params = {"model": "minilm", "corpus": "demo", "projections": ["pca"], "dims": [2], "variants": ["translated"],
              "max_tokens": 400}
    reg = Registry(settings.jobs_path)
    a = reg.create("alice", params, {"model": "minilm", "corpus": "demo"})
    b = reg.create("bob", params, {"model": "minilm", "corpus": "demo"})
    proc = subprocess.Popen([sys.executable, "-c", f"from attention_atlas.settings import load_settings; from jobs.runner import run_job; "
                                                   f"run_job({a!r}, load_settings())"],
                            cwd=ROOT, env=_job_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.time() + 120
        while time.time() < end and not (reg.get(a).get("run_id") and reg.get(a)["state"] == "running"):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        ea = reg.get(a)
        assert ea["run_id"], ea
        eb = run_job(b, settings)  # the same run, while job a holds its lock
        assert eb["state"] == "failed", eb
        assert eb["message"].startswith(f"run {ea['run_id']} is already running by job {a} (started by alice")
        assert "\n" not in eb["message"]
        if reg.get(a)["state"] == "running":  # cancel a (cooperatively, between two heads)
            reg.request_cancel(a)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    ea = reg.get(a)
    assert ea["state"] in ("cancelled", "done"), ea
    st = Store(settings.cache)
    try:
        status = st.status(ea["run_id"])
        if ea["state"] == "cancelled":
            assert status["status"] == "partial" and "start the same job again" in ea["message"]
        assert st.try_lock(ea["run_id"]) is None  # the lock was released
        st.unlock(ea["run_id"])
        for key in st.keys():
            if not key.endswith("/lock"):
                decode(st._cache.get(key), key)  # noqa: SLF001 - every entry passes its checksum
    finally:
        st.close()
    reg.close()


def test_no_secrets_in_logs_during_a_basic_auth_run(tmp_path, caplog):
    from app import create_app

    password = "Sup3r-secret-pw!"
    from attention_atlas.teamauth import hash_password

    # issue 14: users are given as bcrypt hashes (with a role); plain passwords are refused
    settings = load_settings(env={}, cache=str(tmp_path / "store"), jobs_dir=str(tmp_path / "jobs"), auth="basic",
                             users=f"alice:{hash_password(password, 4)}:editor,bob:{hash_password('bobs-Other-pw', 4)}:editor",
                             job_max_tokens=200, log_level="DEBUG")
    caplog.set_level(logging.DEBUG)
    app = create_app(settings=settings)
    c = app.server.test_client()
    good = "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"alice:wrong-Guess-42").decode()
    assert c.get("/", headers={"Authorization": bad}).status_code == 401
    assert c.get("/", headers={"Authorization": good}).status_code == 200
    values = {"jobs-model.value": "minilm", "jobs-corpus.value": "demo", "jobs-projections.value": ["pca"],
              "jobs-dims.value": [2], "jobs-variants.value": ["translated"], "jobs-layers.value": "0",
              "jobs-heads.value": "0-1", "jobs-max-tokens.value": 120}
    resp = post_callback(c, "jobs-request.data", {"jobs-start.n_clicks": 1}, values, headers={"Authorization": good})
    job = resp["jobs-request"]["data"]["job"]
    bob = {"Authorization": "Basic " + base64.b64encode(b"bob:bobs-Other-pw").decode()}
    resp = post_callback(c, "jobs-msg.children", {}, {}, headers=bob,
                         pattern=({"type": "jobs-row-cancel", "job": job}, "n_clicks", 1))
    assert resp["jobs-msg"]["children"] == f"job {job} was started by alice: only they can cancel it"
    e = run_job(job, settings)  # what the background callback runs
    assert e["state"] == "done" and e["user"] == "alice" and e["heads_computed"] == 2, e
    text = "\n".join(f"{rec.name} {rec.getMessage()} {rec.exc_text or ''}" for rec in caplog.records)
    assert "job " + job in text and "user=alice" in text  # the logs are there ...
    for secret in (password, "wrong-Guess-42", "bobs-Other-pw", good.split()[1], bad.split()[1], "Authorization"):
        assert secret not in text, secret  # ... without any credential
    assert password not in json.dumps(Registry(settings.jobs_path).entries())
