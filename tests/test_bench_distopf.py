"""The distopf side-by-side benchmark: its skip path (an optional extra) and how its rows are computed."""

import os
import subprocess
import sys
import time
from pathlib import Path

from mpdopf_pyomo import bench_distopf

ROOT = Path(__file__).resolve().parents[1]


def _run(env_dir: Path, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mpdopf_pyomo.bench_distopf", "--env", str(env_dir),
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    return proc, time.perf_counter() - t0


def test_skips_with_one_line_when_environment_is_absent(tmp_path: Path) -> None:
    proc, wall = _run(tmp_path / "no-such-venv", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("distopf comparison skipped:"), proc.stdout
    assert "no-such-venv" in lines[0] and "make bench-distopf" in lines[0]
    assert proc.stderr == ""
    assert not (tmp_path / "out").exists()  # nothing written
    assert wall < 30.0  # a guard against a hang or an install attempt, not a speed figure


def test_skips_when_environment_has_no_distopf(tmp_path: Path) -> None:
    """An environment whose Python cannot find distopf (this project's own) is skipped the same way."""
    env = tmp_path / "venv"
    (env / "bin").mkdir(parents=True)
    os.symlink(sys.executable, env / "bin" / "python")
    proc, wall = _run(env, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("distopf comparison skipped:")
    assert wall < 30.0  # a guard against a hang or an install attempt, not a speed figure


def test_bad_repeat_is_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mpdopf_pyomo.bench_distopf", "--repeat", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("python -m mpdopf_pyomo.bench_distopf: error: argument --repeat: "
                                            "'0' is not >= 1")


def _run_record(wall: float, summary: dict) -> dict:
    return {"wall_s": wall, "cpu_s": wall / 2, "peak_mb": 100.0, "load": "1.0 1.0 1.0", "summary": summary}


def test_rows_medians_ratio_and_model_counts() -> None:
    """Medians of the rounds, distopf's median over each row's, the counts each model really has."""
    ipopt = "/opt/ipopt/bin/ipopt"
    d = {"distopf": "1.0.2", "pyomo": "6.10.1", "ipopt_path": ipopt, "ipopt_version": "3.14.19",
         "iterations": 60, "exit": "Solved To Acceptable Level.", "variables": 100, "constraints": 90,
         "solve_s": 30.0, "command_total_s": 50.0, "objective": 1.8, "buses": 130,
         "generators": {"diesel": 2, "pv": 1, "pv+bess": 2}, "batteries": 2}
    ours = {"solver_route": "executable", "solver_version": "3.14.19", "case_file": str(ROOT / "cases/ieee123-opendss.toml"),
            "solver_stats": {"iterations": 29, "termination": "optimal", "variables": 23304, "constraints": 24578,
                             "mumps": "5.8.2"},
            "three_phase": {"buses": 132, "nodes": 278}, "timings": {"solve_s": 9.0, "total_s": 14.0}}
    valid = dict(ours, validation={"max_abs_dv_pu": 3e-8})
    runs = {"distopf": [_run_record(w, d) for w in (60.0, 100.0, 62.0)],
            "mpdopf": [_run_record(w, ours) for w in (15.0, 12.0, 40.0)],
            "mpdopf+validation": [_run_record(w, valid) for w in (20.0, 31.0, 19.0)]}
    rows = {r["tool"]: r for r in bench_distopf.rows_from_runs(runs, ipopt)}
    assert rows["distopf"]["wall_s"] == 62.0 and rows["distopf"]["wall_min_s"] == 60.0
    assert rows["distopf"]["distopf_over_this"] == 1.0
    assert rows["mpdopf"]["wall_s"] == 15.0
    assert abs(rows["mpdopf"]["distopf_over_this"] - 62.0 / 15.0) < 1e-12
    assert abs(rows["mpdopf+validation"]["distopf_over_this"] - 62.0 / 20.0) < 1e-12
    assert rows["distopf"]["same_ipopt"] and rows["mpdopf"]["same_ipopt"]
    assert "130 buses, 5 generators (2 diesel, 1 pv, 2 pv+bess), 2 batteries" in rows["distopf"]["model"]
    assert abs(rows["mpdopf"]["distopf_cpu_over_this"] - 31.0 / 7.5) < 1e-12  # CPU = wall / 2 in _run_record
    assert "132 buses (278 nodes), 17 PVs, 26 batteries" in rows["mpdopf"]["model"]
    assert rows["mpdopf+validation"]["validation_max_dv_pu"] == 3e-8 and "validation_max_dv_pu" not in rows["mpdopf"]
    assert (rows["distopf"]["iterations"], rows["mpdopf"]["iterations"]) == (60, 29)
