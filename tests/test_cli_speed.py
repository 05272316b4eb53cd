"""What keeps the command line fast and its timings honest: the stage timings of summary.json add up to
no more than the total (stamped after every table and figure is written), figures drawn in a background
process are all written and listed in the marker, that process is stopped with the run, and ``--help``
imports none of the heavy packages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpdopf_pyomo.outputs import MARKER

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
#: The command line as ``python -m mpdopf_pyomo`` runs it, with a given 1-minute load average.
_LOAD_CLI = """
import os, sys
os.getloadavg = lambda: ({load}, 0.0, 0.0)
sys.argv[0] = "mpdopf"
from mpdopf_pyomo.__main__ import run
run()
"""
STAGES = ("load_s", "build_s", "solve_s", "validation_s", "figures_s", "write_s")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpdopf_pyomo", *args], capture_output=True, text=True, env=ENV,
                          timeout=300)


@pytest.mark.parametrize("free", [True, False], ids=["figures-in-background", "figures-in-process"])
def test_total_is_stamped_after_figures_and_covers_every_stage(tmp_path, free):
    out = tmp_path / "run"
    load = "0.0" if free else "1e9"
    proc = subprocess.run([sys.executable, "-c", _LOAD_CLI.format(load=load), "solve", "--case", "ieee123",
                           "--hours", "2", "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=300)
    assert ("in a background process" in proc.stderr) == free, proc.stderr
    assert proc.returncode == 0, proc.stderr
    t = json.loads((out / "summary.json").read_text())["timings"]
    assert all(t[k] > 0 for k in STAGES), t
    # the stages are consecutive, non-overlapping parts of the command: together at most the total, and
    # the total misses little besides them (counting variables, the result tables)
    assert sum(t[k] for k in STAGES) <= t["total_s"] + 1e-6, t
    assert t["total_s"] - sum(t[k] for k in STAGES) < 0.25 * t["total_s"], t
    assert t["figures_s"] > 0.01 and t["validation_s"] > 0.01, t
    marker = json.loads((out / MARKER).read_text())["files"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(f"{n}.png" for n in ("substation", "forecast", "battery", "reactive", "voltages",
                                                "profile", "network", "validation"))
    assert set(pngs) <= set(marker)
    for p in pngs:
        assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for label in ("load", "build", "solver", "validation", "figures", "writing", "total"):
        assert f"{label} " in proc.stdout.split("timings", 1)[1].splitlines()[0], proc.stdout
    assert f"total {t['total_s']:.2f} s" in proc.stdout


def test_without_plots_or_validation_the_stages_still_add_up(tmp_path):
    out = tmp_path / "run"
    proc = _cli("solve", "--case", "ieee123", "--hours", "1", "--no-plots", "--no-validate", "--json",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)["timings"]
    assert "figures_s" not in t and "validation_s" not in t
    assert t["load_s"] + t["build_s"] + t["solve_s"] + t["write_s"] <= t["total_s"] + 1e-6
    assert not list(out.glob("*.png"))


@pytest.fixture(autouse=True)
def free_core(monkeypatch):
    """The background figure process runs only when a core is free (load average): pretend one is."""
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.fixture(scope="module")
def solved():
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.pipeline import solve_central

    case = load_case("ieee123", 2)
    return case, solve_central(case, "linear")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="background figures fork (Linux only)")
def test_background_figures_are_written_and_a_failure_is_left_to_the_caller(solved, tmp_path):
    from mpdopf_pyomo.background import FigureWorker

    case, res = solved
    job = FigureWorker.start()
    assert job is not None
    job.submit(case, res, ["forecast", "substation"], tmp_path)
    assert sorted(job.wait()) == ["forecast.png", "substation.png"]
    assert job.seconds > 0
    assert (tmp_path / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    bad = FigureWorker.start()
    bad.submit(case, res, ["forecast", "no-such-figure"], tmp_path / "missing-folder")
    assert bad.wait() == []  # the child failed: the caller draws the figures itself (and sees the error)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="background figures fork (Linux only)")
def test_stopping_background_figures_kills_and_reaps_the_child(solved, tmp_path):
    from mpdopf_pyomo.background import BASE_FIGURES, FigureWorker

    case, res = solved
    job = FigureWorker.start()
    job.submit(case, res, list(BASE_FIGURES) * 5, tmp_path)
    pid = job.pid
    job.stop()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie, nothing left writing into tmp_path
    assert job.wait() == []


HEAVY = ("pandas", "numpy", "pyomo", "matplotlib", "opendssdirect", "dask", "scipy", "cyipopt")


@pytest.mark.parametrize("args", [["--help"], ["solve", "--help"], ["--version"], ["cases"]])
def test_help_and_cases_import_no_heavy_package(args):
    code = ("import sys\nfrom mpdopf_pyomo.cli import main\n"
            f"try:\n    main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_busy_machine_draws_in_process(monkeypatch):
    from mpdopf_pyomo.background import FigureWorker
    from mpdopf_pyomo.plots import core_is_free

    monkeypatch.setattr(os, "getloadavg", lambda: (float(os.cpu_count() or 1), 0.0, 0.0))
    assert not core_is_free()
    assert FigureWorker.start() is None
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.0, 0.0))
    assert core_is_free() == ((os.cpu_count() or 1) > 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="background figures fork (Linux only)")
def test_sigterm_while_figures_are_drawn_in_the_background_leaves_nothing(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _LOAD_CLI.format(load="0.0"), "solve", "--case", "ieee123", "--hours", "2",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stderr:
        if "in a background process" in line:
            break
    else:
        pytest.fail("the figures were not drawn in a background process")
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 143, rest
    lines = [ln for ln in rest.strip().splitlines() if not ln.startswith("[")]  # progress lines may come first
    assert lines == ["error: interrupted by SIGTERM; stopped, temporary files removed"], rest
    time.sleep(1.0)  # a figure process left running would write into (and recreate) the staging folder
    assert list(tmp_path.iterdir()) == []


def test_no_fork_while_other_threads_run():
    import threading

    from mpdopf_pyomo.background import FigureWorker

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert FigureWorker.start() is None
    finally:
        stop.set()
        thread.join()


_NUMPY_BLAS_THREADS = """
import ctypes, glob, os, sys
import mpdopf_pyomo.__main__  # what `python -m mpdopf_pyomo` and the `mpdopf` script run first
import numpy
libs = glob.glob(os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs", "libscipy_openblas*.so"))
threads = ctypes.CDLL(libs[0]).scipy_openblas_get_num_threads64_() if libs else -1
print(os.environ.get("OPENBLAS_NUM_THREADS"), threads)
"""


@pytest.mark.parametrize("env, expected", [({}, "1 1"), ({"OPENBLAS_NUM_THREADS": "2"}, "2 2"),
                                           ({"OMP_NUM_THREADS": "2"}, "None 2")])
def test_the_command_runs_numpy_blas_on_one_thread_unless_the_user_set_one(env, expected):
    """The entry point sets one OpenBLAS thread before numpy loads (numpy's BLAS really runs one thread:
    the count is read from its OpenBLAS), and a thread count the user gives wins."""
    base = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", _NUMPY_BLAS_THREADS], capture_output=True, text=True,
                          env={**base, **env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = proc.stdout.split()
    if got[1] == "-1":
        pytest.skip("numpy is not built on its bundled OpenBLAS here")
    if (os.cpu_count() or 1) < 2 and expected.endswith("2"):
        pytest.skip("one core: OpenBLAS runs one thread whatever is asked")
    assert " ".join(got) == expected
