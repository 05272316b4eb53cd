"""A Dask cluster of separate processes on loopback, as on several machines: one `dask scheduler` and two
`dask worker` processes started here; a distributed run joins it with ``--scheduler`` and must give the
serial executor's answer exactly, with areas on both workers; a worker with another package version is
refused with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.decomposition import solve_distributed

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
#: 10 ENApp warm-start and 4 ADMM iterations of ieee123 2 h (27 to converge): enough to compare iterates
SETTINGS = dict(algorithm="admm", max_iter=14, keep_last=True)


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A Dask command (`python -m distributed.cli.dask_*`, what the `dask` entry point runs) in its own
    process group, so that teardown ends it and its worker processes together."""
    return subprocess.Popen([sys.executable, "-m", *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminate every process group started here (SIGTERM, then SIGKILL after 5 s)."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5.0)


def _workers(address: str) -> list[str]:
    from distributed import Client

    with Client(address, timeout="5s") as client:
        return sorted(client.scheduler_info()["workers"])


def _wait_for(address: str, n: int, procs: list[subprocess.Popen], logs: Path, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = _workers(address)
        if len(workers) >= n:
            return workers
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.3)
    text = "\n".join(f.read_text() for f in sorted(logs.glob("*.log")))
    raise RuntimeError(f"the Dask cluster did not reach {n} workers:\n{text}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(scheduler address, two worker addresses, the process list, env, log folder) of a loopback cluster."""
    d = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs: list[subprocess.Popen] = []
    try:
        sfile = d / "scheduler.json"
        procs.append(_start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--no-dashboard", "--scheduler-file", str(sfile)], d / "scheduler.log", env))
        deadline = time.monotonic() + 30.0
        while not sfile.exists() and time.monotonic() < deadline and procs[0].poll() is None:
            time.sleep(0.1)
        address = json.loads(sfile.read_text())["address"]
        for i in (1, 2):
            procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                                 "--host", "127.0.0.1", "--no-dashboard", "--name", f"loopback-{i}"],
                                d / f"worker{i}.log", env))
        workers = _wait_for(address, 2, procs, d)
        yield address, workers, procs, env, d
    finally:
        _stop(procs)


@pytest.fixture(scope="module")
def case():
    return load_case("ieee123", 2)


def test_two_external_workers_give_the_serial_answer(cluster, case):
    address, workers, *_ = cluster
    serial = solve_distributed(case, executor="serial", **SETTINGS)
    dask = solve_distributed(case, scheduler=address, **SETTINGS)
    d = dask.summary["distributed"]
    assert d["executor"] == "dask" and d["scheduler"] == address and d["iterations"] == 14
    # the same iterates: area solves are deterministic, only the place they run differs
    assert dask.summary["objective_usd"] == serial.summary["objective_usd"]
    pd.testing.assert_frame_equal(dask.extra_tables["convergence"].drop(columns="elapsed_s"),
                                  serial.extra_tables["convergence"].drop(columns="elapsed_s"), check_exact=True)
    cuts = list(case.cut_branches)
    b_d = dask.branches.loc[cuts, ["p_kw", "q_kvar"]].to_numpy()
    b_s = serial.branches.loc[cuts, ["p_kw", "q_kvar"]].to_numpy()
    np.testing.assert_array_equal(b_d, b_s)  # the boundary flows
    np.testing.assert_array_equal(dask.voltages.to_numpy(), serial.voltages.to_numpy())
    # areas ran on both external workers, in processes other than this one
    table = d["workers"]
    assert sorted(w["worker"] for w in table) == workers
    assert sorted(a for w in table for a in w["areas"]) == [1, 2, 3, 4]
    assert all(w["areas"] for w in table)
    pids = {w["pid"] for w in table}
    assert len(pids) == 2 and os.getpid() not in pids
    assert all(w["peak_mb"] > 50 for w in table) and d["coordinator_peak_mb"] > 50
    assert set(d["worker_peak_mb"]) == set(workers)
    # the timing of the rounds on two workers, each solving two areas one after another
    from mpdopf_pyomo.decomposition.core import TIMING_COLUMNS

    t = dask.extra_tables["timing"]
    assert list(t.columns) == list(TIMING_COLUMNS[1:]) and len(t) == d["iterations"]
    assert (t["waiting_s"] > 0).all() and (t["idle_s"] >= 0).all()  # two areas per worker: always queued
    assert (t["critical_cpu_s"] > 0).all() and (t["critical_cpu_s"] <= t["solve_total_cpu_s"]).all()
    assert (t["critical_cpu_s"] <= t["critical_s"] + 1e-3).all()  # one thread's CPU time <= its wall time
    ts = d["timing_s"]
    assert ts["projected_one_core_per_area_cpu"] <= ts["projected_one_core_per_area"] + 1e-3
    assert ts["critical_path_cpu"] == pytest.approx(t["critical_cpu_s"].sum())


def test_areas_auto_counts_the_cluster_workers(cluster, case):
    from mpdopf_pyomo.decomposition.executors import DaskExecutor
    from mpdopf_pyomo.decomposition.partition import auto_areas

    address, workers, *_ = cluster
    exe = DaskExecutor(scheduler=address)
    try:
        cap = exe.capacity()
    finally:
        exe.close()
    assert cap["cores"] == len(workers) == 2  # the cluster's workers, not this machine's cores
    assert cap["memory_bytes"] > 0  # `dask worker` limits its memory (to the machine's by default)
    assert auto_areas(case, **cap) == 2


def test_fewer_workers_than_asked_is_exit_6(cluster, case, monkeypatch):
    from mpdopf_pyomo.decomposition import executors
    from mpdopf_pyomo.errors import WorkerDied

    monkeypatch.setattr(executors, "WAIT_WORKERS_S", 1.0)
    with pytest.raises(WorkerDied, match=r"has 2 worker\(s\), 5 needed \(waited 1 s\)") as err:
        solve_distributed(case, scheduler=cluster[0], n_workers=5, **SETTINGS)
    assert err.value.exit_code == 6


def test_serial_with_workers_is_bad_input(tmp_path):
    r = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "1", "--algorithm", "admm",
                                  "--executor", "serial", "--workers", "2", "--no-validate", "--no-plots",
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "error: --workers 2: applies to executor 'processes' or 'dask'" in r.output
    assert not (tmp_path / "run").exists()


def test_a_worker_with_another_version_is_refused(cluster, tmp_path):
    address, _, procs, env, logs = cluster
    preload = tmp_path / "other_version.py"
    preload.write_text("import mpdopf_pyomo\nmpdopf_pyomo.__version__ = '0.0.0+other'\n")
    procs.append(_start(["distributed.cli.dask_worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                         "--no-dashboard", "--name", "loopback-other", "--preload", str(preload)],
                        logs / "worker3.log", env))
    _wait_for(address, 3, procs, logs)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "1", "--algorithm", "admm",
                                  "--scheduler", address, "--no-validate", "--no-plots", "--out", str(out)])
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and "runs mpdopf_pyomo 0.0.0+other" in lines[0] and "install the same" in lines[0]
    assert "Traceback" not in r.output and not out.exists()
