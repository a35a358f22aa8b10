import numpy as np
import pytest

from precompute.executor import make_executor, run_tasks
from precompute.headwork import HeadResult, HeadTask, compute_head
from precompute.projections import ProjectionParams

FAST = ProjectionParams(tsne_perplexity=8, tsne_early_iter=10, tsne_n_iter=20,
                        tsne_3d_early_iter=10, tsne_3d_n_iter=10, tsne_3d_from2d_n_iter=10,
                        umap_n_epochs=10)


def _task(layer=0, head=0, n=60, d=8, variants=("translated",), methods=("pca", "tsne", "umap"),
          dims=(2, 3)):
    rng = np.random.default_rng(layer * 10 + head)
    return HeadTask(layer=layer, head=head,
                    queries=rng.normal(size=(n, d)).astype(np.float32) + 1,
                    keys=rng.normal(size=(n, d)).astype(np.float32),
                    input_index=np.repeat(np.arange(n // 10), 10).astype(np.int32),
                    causal=True, scale=d ** -0.5, variants=list(variants), methods=methods,
                    dims=dims, params=FAST, trust_sample=200, trust_neighbors=5)


def test_compute_head_end_to_end():
    t = _task(variants=("translated", "raw", "translated-scaled"))
    r = compute_head(t)
    assert isinstance(r, HeadResult) and (r.layer, r.head) == (0, 0)
    assert len(r.coords) == 3 * 3 * 2
    for (v, m, d), Y in r.coords.items():
        assert Y.shape == (120, d) and Y.dtype == np.float32 and np.all(np.isfinite(Y))
    for v in ("translated", "raw", "translated-scaled"):
        assert -1 <= r.metrics[f"spearman/{v}"] <= 1
        assert 0 <= r.metrics[f"trust/{v}/tsne/2d"] <= 1
        assert r.metrics[f"time/{v}/knn"] >= 0
    assert r.metrics["time/total"] > 0
    # raw and translated differ in the key half only
    np.testing.assert_array_equal(r.coords[("translated", "pca", 2)].shape, (120, 2))
    with pytest.raises(ValueError):
        compute_head(_task(variants=("nope",)))


def test_compute_head_pickles():
    import pickle
    r = compute_head(_task(methods=("pca",)))
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.metrics == r.metrics
    pickle.dumps(_task())


def _square(x):
    return x * x


def test_run_tasks_bounded_and_complete():
    from concurrent.futures import ThreadPoolExecutor
    submitted = []

    def gen():
        for i in range(10):
            submitted.append(i)
            yield i

    seen = []
    with ThreadPoolExecutor(2) as ex:
        out = []
        for r in run_tasks(ex, gen(), _square, on_done=seen.append, max_in_flight=3):
            out.append(r)
            assert len(submitted) <= len(out) + 3
    assert sorted(out) == [i * i for i in range(10)] and sorted(seen) == sorted(out)


def test_local_process_executor():
    ex = make_executor(workers=2, warm=False)
    try:
        # PCA only: numba JIT in fresh worker processes would dominate test time
        tasks = [_task(layer=l, head=h, methods=("pca",), dims=(2,)) for l in range(2) for h in range(2)]
        res = list(run_tasks(ex, tasks, compute_head))
    finally:
        ex.shutdown()
    assert sorted((r.layer, r.head) for r in res) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(("translated", "pca", 2) in r.coords for r in res)


@pytest.mark.parametrize("processes", [False])
def test_dask_executor(processes):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=processes,
                                  dashboard_address=None) as cluster:
        ex = make_executor(dask_address=cluster.scheduler_address)
        try:
            tasks = [_task(head=h, methods=("pca",)) for h in range(3)]
            res = list(run_tasks(ex, tasks, compute_head))
        finally:
            ex.shutdown()
            ex._client.close()
    assert sorted(r.head for r in res) == [0, 1, 2]
    assert all(np.isfinite(r.metrics["spearman/translated"]) for r in res)


_POOL_THEN_WAIT = """
import os, sys, time
from precompute.executor import make_executor
ex = make_executor(workers=2, warm=False)
[f.result() for f in [ex.submit(time.sleep, 0.3) for _ in range(4)]]  # both workers started
pids = set()
for _ in range(50):
    pids |= {f.result() for f in [ex.submit(os.getpid) for _ in range(8)]}
    if len(pids) == 2:
        break
import multiprocessing.forkserver as fs
print(" ".join(map(str, sorted(pids) + [fs._forkserver._forkserver_pid])), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_workers_and_fork_server_end_with_the_run(sig):
    """A run ended by a plain kill takes its pool with it: the workers are children of
    multiprocessing's fork server, not of the run, and used to wait for work for ever (seen: a
    killed `precompute run` left its fork server and a worker running for 82 minutes)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from precompute.executor import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", _POOL_THEN_WAIT], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 3 and all(pid_alive(p) for p in pids), pids
        os.kill(proc.pid, getattr(signal, sig))
        proc.wait(10)
        end = time.time() + 10
        while time.time() < end and any(pid_alive(p) for p in pids):
            time.sleep(0.2)
        assert not [p for p in pids if pid_alive(p)], "pool processes outlived the run"
    finally:
        if proc.poll() is None:
            proc.kill()
