"""Every installed IPOPT route (cyipopt-wheels, the MUMPS 5.8 cyipopt, the MUMPS 5.8 AMPL executable) finds the
same optimum; doctor says which route and MUMPS are in use; a missing build falls back with one clear line.

Routes run in fresh processes: two cyipopt modules cannot share one interpreter. Routes that are not built
here are skipped with the reason (``python -m mpdopf_pyomo install-solvers`` builds them).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpdopf_pyomo import solver_build, solvers
from mpdopf_pyomo.errors import SolverUnavailable

REPO = Path(__file__).resolve().parents[1]


def _cli(args: list[str], prefix: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if prefix is not None:
        env[solver_build.ENV_PREFIX] = str(prefix)
    return subprocess.run([sys.executable, "-m", "mpdopf_pyomo", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def _built(part: str) -> bool:
    return solver_build.part(part) is not None


def _skip_reason(part: str) -> str:
    return (f"the MUMPS 5.8 {part} route is not built here ({solver_build.missing_reason(part)}); "
            "`python -m mpdopf_pyomo install-solvers` builds it")


@pytest.fixture(scope="module")
def no_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty prefix: with it, IPOPT must fall back to the cyipopt-wheels route."""
    return tmp_path_factory.mktemp("no-ipopt-build")


#: (route id, --solver, use an empty prefix, part that must be built)
ROUTES = [
    ("wheel-library", "cyipopt", True, None),
    ("mumps58-library", "cyipopt", False, "library"),
    ("mumps58-executable", "ipopt", False, "executable"),
]


@pytest.fixture(scope="module")
def route_results(tmp_path_factory: pytest.TempPathFactory, no_build: Path) -> dict[str, dict]:
    """Solve ieee123 for 2 h on every installed route; summary, voltages and the solver route of each."""
    results: dict[str, dict] = {}
    for name, solver, empty, part in ROUTES:
        if part and not _built(part):
            results[name] = {"skip": _skip_reason(part)}
            continue
        out = tmp_path_factory.mktemp(name) / "run"
        proc = _cli(["solve", "--case", "ieee123", "--hours", "2", "--no-validate", "--no-plots",
                     "--solver", solver, "--out", str(out)], prefix=no_build if empty else None)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        results[name] = {"summary": summary, "voltages": pd.read_csv(out / "voltages.csv")}
    return results


@pytest.mark.parametrize("name", [r[0] for r in ROUTES[1:]])
def test_route_gives_the_same_optimum_as_the_wheel(route_results: dict[str, dict], name: str) -> None:
    ref, got = route_results["wheel-library"], route_results[name]
    if "skip" in got:
        pytest.skip(got["skip"])
    assert ref["summary"]["solver_route"] == "library"
    assert got["summary"]["solver_route"] == name.split("-")[1]
    assert got["summary"]["solver_version"] == "3.14.19"  # casadi's libipopt, not the wheel's 3.14.11
    assert got["summary"]["objective_usd"] == pytest.approx(ref["summary"]["objective_usd"], rel=1e-8)
    a, b = ref["voltages"].select_dtypes("number"), got["voltages"].select_dtypes("number")
    assert list(a.columns) == list(b.columns) and a.shape == b.shape and a.shape[0] > 0
    assert (a - b).abs().to_numpy().max() < 1e-7


def test_mumps58_routes_agree_over_a_day(tmp_path: Path) -> None:
    """At 24 h (batteries coupled over the whole day, 37 IPOPT iterations) the executable and the library
    route on MUMPS 5.8 reach the same optimum: objective within 1e-8 relative, voltages within 1e-7 pu."""
    if not (_built("library") and _built("executable")):
        pytest.skip(_skip_reason("library" if not _built("library") else "executable"))
    got = {}
    for solver in ("ipopt", "cyipopt"):
        out = tmp_path / solver
        proc = _cli(["solve", "--case", "ieee123", "--hours", "24", "--no-validate", "--no-plots",
                     "--solver", solver, "--out", str(out)])
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((out / "summary.json").read_text())
        got[solver] = (summary, pd.read_csv(out / "voltages.csv"))
    (exe, v_exe), (lib, v_lib) = got["ipopt"], got["cyipopt"]
    assert (exe["solver_route"], lib["solver_route"]) == ("executable", "library")
    assert exe["objective_usd"] == pytest.approx(lib["objective_usd"], rel=1e-8)
    assert v_exe.shape == v_lib.shape and v_exe.shape[0] == 24 * 128
    assert (v_exe["v_pu"] - v_lib["v_pu"]).abs().max() < 1e-7


def test_summaries_name_the_mumps_version(route_results: dict[str, dict]) -> None:
    wheel = route_results["wheel-library"]["summary"]
    assert wheel["solver_version"].startswith("3.14") and wheel["solver_stats"]["mumps"] == "5.5.1"
    for name in ("mumps58-library", "mumps58-executable"):
        if "summary" in route_results[name]:
            assert route_results[name]["summary"]["solver_stats"]["mumps"] == "5.8.2"


def test_doctor_reports_the_executable_route_and_mumps_5_8() -> None:
    if not _built("executable"):
        pytest.skip(_skip_reason("executable"))
    proc = _cli(["doctor", "--json"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    ipopt = next(s for s in report["solvers"] if s["name"] == "ipopt")
    assert ipopt["route"] == "executable" and ipopt["location"] == str(solver_build.executable())
    assert ipopt["version"] == "3.14.19" and ipopt["mumps"].startswith("5.8") and ipopt["note"] is None
    first = report["ipopt_routes"][0]
    assert first["available"] and first["route"] == "executable" and first["mumps"].startswith("5.8")
    wheel = report["ipopt_routes"][-1]
    assert wheel["build"].startswith("cyipopt-wheels") and wheel["mumps"] == "5.5.1"


def test_missing_build_falls_back_with_a_clear_line(no_build: Path) -> None:
    proc = _cli(["doctor"], prefix=no_build)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    ipopt = next(i for i, ln in enumerate(lines) if ln.strip().startswith("ipopt ") and "OK" in ln)
    assert "route=library" in lines[ipopt] and "mumps 5.5.1" in lines[ipopt]
    note = lines[ipopt + 1].strip()
    assert note.startswith("note: the fast IPOPT build (MUMPS 5.8, executable route) is not installed: not built")
    assert "using cyipopt-wheels (MUMPS 5.5.1)" in note and "fix: run `python -m mpdopf_pyomo install-solvers`" in note


def test_failed_build_names_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(solver_build.ENV_PREFIX, str(tmp_path))
    reason = "pip install casadi==3.8.2 failed (exit 1): No matching distribution found for casadi==3.8.2"
    (tmp_path / "manifest.json").write_text(json.dumps({"pins": solver_build.PINS, "parts": {},
                                                        "errors": {"library": reason, "executable": reason}}))
    assert solver_build.library_dir() is None and solver_build.executable() is None
    assert solver_build.missing_reason("executable") == f"its build failed: {reason}"
    # A build made for other pins is stale: not used, and said so.
    (tmp_path / "manifest.json").write_text(json.dumps({"pins": {**solver_build.PINS, "casadi": "3.6.0"},
                                                        "parts": {"library": {"path": "."}}, "errors": {}}))
    assert solver_build.library_dir() is None
    assert "other versions" in solver_build.missing_reason("library")


def test_build_never_replaces_a_folder_it_did_not_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "somebody-else"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    monkeypatch.setenv(solver_build.ENV_PREFIX, str(target))
    with pytest.raises(SolverUnavailable, match="not written by mpdopf_pyomo"):
        solver_build.build(progress=lambda _line: None)
    assert (target / "keep.txt").read_text() == "mine" and sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_mumps_version_is_read_from_the_library(tmp_path: Path) -> None:
    lib = tmp_path / "libcoinmumps.so.3"
    lib.write_bytes(b"\x7fELF...\x00MUMPS\x005.8.2\x00other\x00")
    assert solver_build.mumps_version_of(lib) == "5.8.2"
    assert solver_build.mumps_version_of(tmp_path / "missing.so") is None
    assert solver_build.wheel_mumps_version() in (None, "5.5.1")


def test_iteration_limit_on_the_executable_route_is_exit_4(tmp_path: Path) -> None:
    if not _built("executable"):
        pytest.skip(_skip_reason("executable"))
    assert solvers.probe("ipopt").route == "executable"
    out = tmp_path / "run"
    proc = _cli(["solve", "--case", "ieee123", "--hours", "1", "--no-validate", "--no-plots",
                 "--solver-option", "max_iter=1", "--out", str(out)])
    assert proc.returncode == 4, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]  # the rest is progress
    assert len(errors) == 1 and errors[0].startswith("error: ipopt: stopped at the iteration limit"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_speed_defaults_do_not_change_the_answer() -> None:
    """IPOPT_DEFAULTS' min_refinement_steps=0 and mumps_mem_percent=5 give IPOPT's own defaults' optimum."""
    import pyomo.environ as pyo

    from mpdopf_pyomo import problem
    from mpdopf_pyomo.case import load_case

    assert solvers.IPOPT_DEFAULTS["min_refinement_steps"] == 0 and solvers.IPOPT_DEFAULTS["mumps_mem_percent"] == 5
    case = load_case("ieee123", 2)
    answers = []
    for options in ({}, {"min_refinement_steps": 1, "mumps_mem_percent": 1000}):  # ours, then IPOPT's defaults
        m = problem.build_model(case, "exact")
        problem.initialize(m, problem.flat_start(case))
        solvers.solve(m, "ipopt", options)
        answers.append((pyo.value(m.obj), [pyo.value(v) for v in m.component_data_objects(pyo.Var)]))
    assert answers[0][0] == pytest.approx(answers[1][0], rel=1e-8)
    assert all(abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in zip(answers[0][1], answers[1][1]) if a is not None)


def test_distributed_area_solves_keep_the_library_route() -> None:
    """With the AMPL executable built, ADMM's many warm area solves still take the persistent library route
    (measured at 5 h: 28 ADMM iterations in 7 s, against 138 iterations in 125 s through the executable)."""
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.decomposition.area_solver import AreaSolver, AreaSpec

    if not _built("executable"):
        pytest.skip(_skip_reason("executable"))
    assert solvers.probe("ipopt").route == "executable"
    case = load_case("ieee123", 1)
    area = AreaSolver(AreaSpec(case, int(case.buses["area"].min()), "exact", "ipopt"))
    assert area.route == "library" and area.persistent


def test_one_libipopt_per_process_whatever_the_call_order():
    """Checking options, probing, solving central and by area load the SAME libipopt (two would share the
    soname libipopt.so.3 with different MUMPS layouts and may crash): the route of every call agrees."""
    code = (
        "import mpdopf_pyomo as mp\n"
        "from mpdopf_pyomo import solvers\n"
        "solvers.check_options('ipopt', {'max_wall_time': 100})\n"
        "r = mp.solve('ieee123', hours=1, solver='cyipopt', options={'tol': 1e-8}, validate=False)\n"
        "solvers.probe_all()\n"
        "maps = open('/proc/self/maps').read().splitlines()\n"
        "print(sorted({l.split()[-1] for l in maps if 'libipopt' in l}))\n"
        "print(r.summary['solver_stats'].get('mumps'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    libs_line, mumps = out.stdout.strip().splitlines()[-2:]
    libs = ast.literal_eval(libs_line)  # a printed list of paths
    assert len(libs) == 1, libs
    built = solver_build.part("library") is not None
    assert ("casadi" in libs[0]) == built and mumps == ("5.8.2" if built else solver_build.wheel_mumps_version())


def test_formulation_ipopt_defaults_reach_ipopt_and_the_caller_wins() -> None:
    """A formulation's ``solver_defaults`` are what IPOPT is given (the summary records every option), the
    caller's option wins key by key, and the LOQO barrier of ``exact`` reaches the monotone barrier's
    optimum (ieee123, 5 h): objective within 1e-7 relative and not above it by more
    than IPOPT's tolerance (the adaptive update ends at a smaller barrier parameter, nearer the true optimum), voltages
    within 5e-6 pu (measured 1.2e-6: monotone's end point at mu 2.5e-9 still sits off the optimum by the
    barrier term where the battery dispatch is nearly flat)."""
    from mpdopf_pyomo import formulations
    from mpdopf_pyomo.case import load_case

    assert formulations.get("exact").solver_defaults == {"mu_strategy": "adaptive", "mu_oracle": "loqo"}
    assert formulations.get("socp").solver_defaults == {}
    assert formulations.get("3ph-exact").solver_defaults == {"mu_strategy": "adaptive"}
    case = load_case("ieee123", 5)
    exact = formulations.get("exact")
    adaptive = exact.solve_central(case, "ipopt", {}, False, lambda *_: None)
    monotone = exact.solve_central(case, "ipopt", {"mu_strategy": "monotone"}, False, lambda *_: None)
    got, ref = adaptive.summary["solver_stats"], monotone.summary["solver_stats"]
    assert got["options"]["mu_oracle"] == "loqo" and got["options"]["mu_strategy"] == "adaptive"
    assert got["options"]["honor_original_bounds"] == "yes" and got["options"]["max_iter"] == solvers.DEFAULT_MAX_ITER
    assert ref["options"]["mu_strategy"] == "monotone"  # the caller's value, the oracle is then unused
    assert got["iterations"] <= ref["iterations"]
    a, b = adaptive.summary["objective_usd"], monotone.summary["objective_usd"]
    assert a == pytest.approx(b, rel=1e-7) and a <= b * (1 + 1e-9)
    assert (adaptive.voltages - monotone.voltages).abs().to_numpy().max() < 5e-6
