"""The Docker image and the compose stack, built and run for real on a Docker engine.

- the image (scripts/docker-build.sh: Docker's layer cache makes a rebuild after a code change
  quick) holds the pinned packages and no compiler, and runs as the unprivileged user atlas;
- `python -m precompute run` inside a container writes a run into a named volume at /data;
- the server started from that volume (the image's ENTRYPOINT + CMD) answers /healthz without
  credentials, the image's HEALTHCHECK turns healthy, pages need the basic-auth login, and the
  logged-in page lists and opens the run; its processes run as atlas;
- `docker compose up` (docker-compose.yml + docker-compose.hostnet.yml: app + Redis + Celery
  worker, host networking) runs a precompute job started through the page's callbacks on the
  worker, and the run appears on the server; the three services' healthchecks pass.

When it runs (it is marked `docker` and `slow`):
- no docker client, no dockerd or not root, or dockerd fails to start: skipped, with the reason;
- an engine answers or starts (scripts/docker-engine.sh: --bridge=none --iptables=false; a dockerd
  started here is stopped at the end, by its pid) and ATLAS_DOCKER_TEST=1: the image is built
  (from scratch the first time: ~15 min on 2 cores, mostly the torch download and unpacking; then
  seconds) and everything runs: `bash scripts/docker-test.sh` does this;
- without ATLAS_DOCKER_TEST=1 it runs only when the image is built already and holds the pinned
  requirements (then only the application layer is rebuilt); otherwise it is skipped with the
  reason: a full image build inside the ordinary suite (CI: 2 cores) would cost more than the
  whole suite. With the image built, the three tests take ~4 min on 2 busy cores;
- ATLAS_DOCKER_TEST=0 skips them.
Every container, volume and compose project made here is removed at the end.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from bench.load import ROOT, DashClient, HttpTransport, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = os.environ.get("ATLAS_IMAGE", "attention-atlas:latest")
OPT_IN = os.environ.get("ATLAS_DOCKER_TEST") == "1"
OPT_OUT = os.environ.get("ATLAS_DOCKER_TEST") == "0"
USER, PASSWORD = "alice", "docker-test-pw"
TAG = f"atlas-test-{uuid.uuid4().hex[:8]}"
SENTENCES = ["The cat sat on the mat because it was tired.", "Where is the station, and when does the train leave?",
             "One, two, three: the list goes on.", "The trophy didn't fit in the suitcase because it was too big."]


def docker(*args, timeout=300, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def skip(reason: str):
    print(f"\ntest_docker: skipped: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine():
    """A Docker engine that answers: the one running, or a dockerd started here (stopped at the end)."""
    if OPT_OUT:
        skip("ATLAS_DOCKER_TEST=0")
    if not shutil.which("docker"):
        skip("no Docker engine can start here: no docker client (apt-get install -y docker.io)")
    started = False
    if not engine_answers():
        if not shutil.which("dockerd"):
            skip("no Docker engine can start here: no dockerd (apt-get install -y docker.io)")
        if os.geteuid() != 0:
            skip("no Docker engine can start here: dockerd must be started as root and none answers")
        p = subprocess.run(["bash", str(ROOT / "scripts" / "docker-engine.sh"), "start"], capture_output=True,
                           text=True, timeout=120)
        if p.returncode != 0 or not engine_answers():
            skip("no Docker engine can start here: " + (p.stderr.strip().splitlines() or ["dockerd failed"])[-1])
        started = True
        print(f"\ntest_docker: started dockerd (pid {p.stdout.strip()})", file=sys.stderr)
    try:
        yield
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "scripts" / "docker-engine.sh"), "stop"], timeout=120)


PIN_CHECK = """
import sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for path in sys.argv[1:]:
    for line in open(path):
        line = line.split("#")[0].strip()
        if "==" not in line:
            continue
        name, want = (s.strip() for s in line.split("=="))
        try:
            have = version(name)
        except PackageNotFoundError:
            have = None
        if have is None or have.split("+")[0] != want:
            bad.append(f"{name}: {have} (requirements: {want})")
print("; ".join(bad))
"""


def stale_packages() -> str:
    """'' when the image holds this checkout's requirement pins, else what differs."""
    p = docker("run", "--rm", "--network", "host", "--entrypoint", "python", "-v", f"{ROOT}:/src:ro", IMAGE,
               "-c", PIN_CHECK, "/src/requirements.txt", "/src/requirements-models.txt", timeout=120, check=False)
    return p.stdout.strip() if p.returncode == 0 else f"the check failed: {p.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def image(engine):
    """The image of this checkout (built, or rebuilt from Docker's cache)."""
    have = docker("image", "inspect", IMAGE, check=False).returncode == 0
    if not OPT_IN:
        if not have:
            skip(f"the image {IMAGE} is not built on this engine; `bash scripts/docker-test.sh` builds it "
                 "(~15 min the first time) and runs this test (or set ATLAS_DOCKER_TEST=1)")
        stale = stale_packages()
        if stale:
            skip(f"the image {IMAGE} was built from other requirements ({stale[:200]}); "
                 "`bash scripts/docker-test.sh` rebuilds it")
    t0 = time.time()
    p = subprocess.run(["bash", str(ROOT / "scripts" / "docker-build.sh")], capture_output=True, text=True,
                       timeout=3 * 3600, env={**os.environ, "ATLAS_IMAGE": IMAGE})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    print(f"\ntest_docker: {p.stderr.strip().splitlines()[-1]} (this build: {time.time() - t0:.0f} s)", file=sys.stderr)
    yield IMAGE


@pytest.fixture(scope="module")
def names():
    """Containers and volumes made by this module, removed at the end."""
    made = {"containers": [], "volumes": []}
    yield made
    for c in made["containers"]:
        subprocess.run(["docker", "rm", "-f", c], capture_output=True, timeout=120)
    for v in made["volumes"]:
        subprocess.run(["docker", "volume", "rm", "-f", v], capture_output=True, timeout=120)


def users_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "atlas_users"
    from attention_atlas.teamauth import hash_password   # issue 14: the users file holds bcrypt hashes (and the role)

    f.write_text(f"{USER}:{hash_password(PASSWORD, rounds=4)}:editor\n", encoding="utf-8")
    f.chmod(0o644)
    folder.chmod(0o755)
    return f


def wait_healthz(base: str, timeout: float, logs=lambda: "") -> None:
    end, last = time.time() + timeout, None
    while time.time() < end:
        try:
            r = requests.get(base + "/healthz", timeout=5)
            if r.status_code == 200 and r.text == "ok":
                return
            last = f"HTTP {r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1)
    raise AssertionError(f"{base}/healthz did not answer ok within {timeout:.0f}s ({last})\n{logs()[-4000:]}")


# ---------------------------------------------------------------------------------------- image
def test_image_packages_user_and_no_build_tools(image):
    assert stale_packages() == ""
    p = docker("run", "--rm", "--network", "host", image, "sh", "-c",
               "id -un; id -u; for t in gcc cc g++ make; do command -v $t || true; done; "
               "python -c 'import torch; print(torch.__version__)'; "
               "test -w /app && echo app-writable || echo app-read-only")
    lines = p.stdout.split()
    assert lines[:2] == ["atlas", "10001"], p.stdout
    assert lines[2].startswith("2.14.1"), p.stdout         # torch, no compiler path printed before it
    assert lines[-1] == "app-read-only", p.stdout
    size = int(docker("image", "inspect", image, "--format", "{{.Size}}").stdout)
    print(f"\ntest_docker: image {image}: {size / 1e9:.2f} GB, torch {lines[2]}", file=sys.stderr)


# ------------------------------------------------------------------- precompute, then serve it
def test_precompute_in_container_then_serve_it(image, names, tmp_path):
    vol = f"{TAG}-data"
    names["volumes"].append(vol)
    docker("volume", "create", vol)
    corpus = tmp_path / "corpora"
    corpus.mkdir()
    (corpus / "tiny.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    corpus.chmod(0o755)
    (corpus / "tiny.txt").chmod(0o644)
    t0 = time.time()
    p = docker("run", "--rm", "--network", "host", "-v", f"{vol}:/data", "-v", f"{corpus}:/corpora:ro", image,
               "python", "-m", "precompute", "run", "--model", "minilm", "--corpus", "/corpora/tiny.txt",
               "--cache", "/data/store", "--layers", "0-1", "--projections", "pca", "--dims", "2",
               "--variants", "translated", "--workers", "1", "--quiet", timeout=900, check=False)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    print(f"\ntest_docker: precompute in a container: {time.time() - t0:.0f} s", file=sys.stderr)
    owners = docker("run", "--rm", "--network", "host", "-v", f"{vol}:/data", image, "sh", "-c",
                    "stat -c '%U %n' /data/store /data/store/cache.db /data/models").stdout.split("\n")
    assert all(ln.startswith("atlas ") for ln in owners if ln), owners

    secrets = users_file(tmp_path / "secrets")
    port = free_port()
    name = f"{TAG}-app"
    names["containers"].append(name)
    docker("run", "-d", "--name", name, "--network", "host", "-v", f"{vol}:/data",
           "-v", f"{secrets}:/run/secrets/atlas_users:ro", "-e", "ATLAS_AUTH=basic",
           "-e", "ATLAS_USERS_FILE=/run/secrets/atlas_users", "-e", "ATLAS_HOST=127.0.0.1", "-e", f"ATLAS_PORT={port}",
           "--health-interval", "2s", "--health-start-period", "60s", image)
    base = f"http://127.0.0.1:{port}"
    logs = lambda: docker("logs", name, check=False).stdout + docker("logs", name, check=False).stderr  # noqa: E731
    wait_healthz(base, 120, logs)

    # the door: no page without the login; the login opens it
    assert requests.get(base + "/", timeout=10).status_code == 401
    assert requests.get(base + "/", auth=(USER, "wrong"), timeout=10).status_code == 401
    r = requests.get(base + "/", auth=(USER, PASSWORD), timeout=30)
    assert r.status_code == 200 and "_dash-config" in r.text, r.text[:500]
    detail = requests.get(base + "/healthz", auth=(USER, PASSWORD), timeout=10).json()
    assert len(detail["runs"]) == 1, detail
    run_id = detail["runs"][0]
    # the logged-in page, as a browser tab drives it: it lists and opens the run made in the container
    c = DashClient(HttpTransport(base, auth=(USER, PASSWORD)))
    assert all(x.status == 200 for x in c.load_page()), "page load failed"
    results = c.open_run(f"?run={run_id}")
    assert not [x for x in results if x.error], [(x.callback, x.error) for x in results if x.error]
    assert any(o.get("value") == run_id for o in c.state.get("run-select.options") or []), c.state.get("run-select.options")
    assert c.state.get("run-select.value") == run_id

    # the image's HEALTHCHECK (here every 2 s) and the server's processes: all the user atlas
    end = time.time() + 90
    while time.time() < end:
        health = docker("inspect", name, "--format", "{{.State.Health.Status}}").stdout.strip()
        if health != "starting":
            break
        time.sleep(1)
    assert health == "healthy", (health, docker("inspect", name, "--format", "{{json .State.Health}}").stdout)
    top = docker("top", name, "-eo", "pid,uid,args").stdout.strip().splitlines()[1:]
    assert top and all(ln.split()[1] == "10001" for ln in top), top
    assert any("gunicorn" in ln for ln in top), top
    log = logs()
    assert "Traceback" not in log, log[-4000:]
    assert PASSWORD not in log


# --------------------------------------------------------------------------------------- compose
def compose_cmd() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return []


def redis_image() -> str:
    if os.environ.get("ATLAS_REDIS_IMAGE"):
        return os.environ["ATLAS_REDIS_IMAGE"]
    local = "attention-atlas-redis:bookworm"       # scripts/docker-base.sh, from Debian packages
    return local if docker("image", "inspect", local, check=False).returncode == 0 else "redis:7"


def test_compose_app_redis_worker_run_a_job(image, tmp_path):
    cmd = compose_cmd()
    if not cmd:
        pytest.fail("no Docker Compose: neither `docker compose` nor `docker-compose` (apt-get install -y docker-compose)")
    # the compose files in a folder of their own, with the users file beside them (./secrets/)
    for f in ("docker-compose.yml", "docker-compose.hostnet.yml"):
        shutil.copy(ROOT / f, tmp_path / f)
    users_file(tmp_path / "secrets")
    port, redis_port = free_port(), free_port()
    env = {**os.environ, "ATLAS_IMAGE": image, "ATLAS_REDIS_IMAGE": redis_image(), "ATLAS_PORT": str(port),
           "ATLAS_REDIS_PORT": str(redis_port), "COMPOSE_PROJECT_NAME": TAG}
    compose = [*cmd, "-p", TAG, "-f", "docker-compose.yml", "-f", "docker-compose.hostnet.yml"]

    def run(*args, timeout=300, check=True):
        p = subprocess.run([*compose, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def logs() -> str:
        p = run("logs", "--no-color", "--tail", "200", check=False)
        return p.stdout + p.stderr

    try:
        t0 = time.time()
        run("up", "-d", "--no-build", timeout=600)
        base = f"http://127.0.0.1:{port}"
        wait_healthz(base, 180, logs)
        ps = run("ps").stdout
        for svc in ("app", "worker", "redis"):
            assert f"{TAG}_{svc}_1" in ps or f"{TAG}-{svc}-1" in ps, ps
        print(f"\ntest_docker: compose up: {time.time() - t0:.0f} s", file=sys.stderr)

        # a precompute job, started as the Runs page starts it, runs on the Celery worker
        c = DashClient(HttpTransport(base, auth=(USER, PASSWORD)))
        assert all(x.status == 200 for x in c.load_page("?atab=precompute"))
        c.act({"analysis-tab.value": "precompute"})
        assert "jobs run on the Celery workers" in str(c.state.get("jobs-limits.children")), c.state.get("jobs-limits.children")
        form = {"jobs-start.n_clicks": 1, "jobs-model.value": "minilm", "jobs-corpus.value": "demo",
                "jobs-layers.value": "0", "jobs-projections.value": ["pca"], "jobs-dims.value": [2],
                "jobs-variants.value": ["translated"], "jobs-max-tokens.value": 300}
        r = c.call(c.find("jobs-request.data"), ["jobs-start.n_clicks"], form)
        assert r.status == 200 and not r.error, (r.status, r.body[:1000])
        request = c.state.get("jobs-request.data")
        assert isinstance(request, dict) and request.get("job"), (request, c.state.get("jobs-msg.children"))
        t1 = time.time()
        answers = c.call_background(c.find("jobs-result.data"), ["jobs-request.data"], timeout=600, interval=1.0)
        bad = [(a.status, a.error, a.body[:300]) for a in answers if a.error or a.status not in (200, 204)]
        assert not bad, (bad, logs()[-4000:])
        # the last answer carries the job's final registry view; or it is a 204 when Dash's Celery manager
        # found no result an instant before the task ended (a race inside Dash: the page then learns the
        # end from the jobs registry, as it does for every job), so the worker's log is what tells
        last = answers[-1]
        assert last.status in (200, 204), [(a.status, a.body[:200]) for a in answers[-5:]]
        if last.status == 200:
            job = json.loads(last.body)["response"]["jobs-result"]["data"]
            assert job["state"] == "done" and job["run_id"], job
        done = re.compile(rf"job {request['job']} done: run (\S+),")
        end = time.time() + 300
        while not done.search(worker_log := run("logs", "--no-color", "worker").stdout) and time.time() < end:
            time.sleep(1)
        m = done.search(worker_log)
        assert m, worker_log[-6000:]       # it ran on the Celery worker (the web server only queued it)
        print(f"\ntest_docker: compose job {request['job']}: run {m.group(1)} in {time.time() - t1:.0f} s "
              f"(last answer HTTP {last.status})", file=sys.stderr)
        detail = requests.get(base + "/healthz", auth=(USER, PASSWORD), timeout=10).json()
        assert detail["runs"] == [m.group(1)], (detail, logs()[-4000:])
        assert "succeeded" in worker_log and "Traceback" not in worker_log, worker_log[-4000:]
        assert f"job {request['job']} done" not in run("logs", "--no-color", "app").stdout
        assert PASSWORD not in logs()
        # every service's healthcheck passes (the worker's answers a Celery ping, first after 60 s)
        ids = run("ps", "-q").stdout.split()
        end = time.time() + 180
        while True:
            health = {docker("inspect", i, "--format", "{{.Name}}").stdout.strip():
                      docker("inspect", i, "--format", "{{.State.Health.Status}}").stdout.strip() for i in ids}
            if all(h == "healthy" for h in health.values()) or time.time() > end:
                break
            time.sleep(3)
        assert len(health) == 3 and all(h == "healthy" for h in health.values()), (health, logs()[-3000:])
        print(f"\ntest_docker: compose services healthy after {time.time() - t0:.0f} s", file=sys.stderr)
    finally:
        run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)
    label = f"label=com.docker.compose.project={TAG}"
    left = docker("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split()
    left += docker("volume", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split()
    assert not left, left
