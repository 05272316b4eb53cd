"""Speed benchmark of the ``solve`` command, and a breakdown of where its wall time goes.

``python -m mpdopf_pyomo.benchmark`` (``make bench``) runs, for each horizon T (default 1, 5, 12, 24 h),

    python -m mpdopf_pyomo solve --case ieee123 --hours T --no-validate --no-plots --json --out <tmp>

as a fresh process, ``--repeat`` times, and tabulates: variables, constraints, solver iterations, build s,
time inside the solver, the command's own total, the wall time of the whole process (median of the repeats,
Python start-up included), its CPU time (user + system: less sensitive than wall time to other load on
the machine), the share of the wall time spent in the solver, and the process's peak memory (ru_maxrss of
that child, from ``os.wait4``). Tables go to ``--out`` (default ``bench/results/``; Markdown and CSV;
``mpdopf_pyomo.outputs.BenchFolder``: a user's file of a table's name is refused, exit 2, before any run)
and to stdout. When the distributed benchmark (``mpdopf_pyomo.decomposition.bench.benchmark_rows``) is
importable, its rows follow in a second table.

``python -m mpdopf_pyomo.benchmark --large [1025x5,2561x24,10241x4]`` (``make bench-large``) instead
generates the large feeders (``cases generate``) and runs central, ADMM and ENApp on each as fresh
processes: build, solve, command and process wall time, IPOPT iterations, distributed iterations and gap
to central, the critical path, waiting and transfer, the projected wall with one core per area, and the
peak memory (ru_maxrss of the ``solve`` process from ``wait4``: the largest of it and the worker
processes it reaped) and of the largest worker (``large.md``, ``large.csv``).

``python -m mpdopf_pyomo.benchmark --profile 24`` runs the same command once in a fresh process with
timers wrapped around each stage -- imports, case load, model build, starting point, solver probe, NL
writing, PyNumero/ASL set-up, IPOPT itself, loading the solution, results tables, writing output -- and
prints what each costs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mpdopf_pyomo.errors import RunFailed

if TYPE_CHECKING:
    from mpdopf_pyomo.outputs import BenchFolder

DEFAULT_HOURS = (1, 5, 12, 24)
DEFAULT_OUT = Path("bench/results")


# --------------------------------------------------------------------------------------------------
# One fresh process
# --------------------------------------------------------------------------------------------------


def run_process(cmd: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` (in ``cwd``); return wall seconds, exit code, stdout, stderr, CPU seconds and the child's
    peak RSS (MB).

    ``t0``/``t1`` are ``time.perf_counter()`` at launch and exit (CLOCK_MONOTONIC on Linux: comparable
    with the child's own clock).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        t1 = time.perf_counter()
        wall = t1 - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {
            "wall_s": wall,
            "t0": t0,
            "t1": t1,
            "returncode": proc.returncode,
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
            # Linux reports ru_maxrss in KiB (macOS in bytes)
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mb": usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
        }


def last_line(stderr: str, limit: int = 300) -> str:
    """The last non-empty line of a run's stderr (its ``error:`` line without that word, or a traceback's
    last), cut to ``limit``."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return (lines[-1].removeprefix("error: ") if lines else "(no error output)")[:limit]


def solve_command(case: str, hours: int, out: Path, extra: list[str] | None = None) -> list[str]:
    return [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", case, "--hours", str(hours),
            "--no-validate", "--no-plots", "--json", "--out", str(out), *(extra or [])]


def bench_central(case: str = "ieee123", hours: tuple[int, ...] = DEFAULT_HOURS, repeat: int = 3,
                  formulation: str = "exact", progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per horizon: model size, solver statistics and timings of fresh ``solve`` processes."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpdopf-bench-") as tmp:
        for T in hours:
            runs = []
            for k in range(repeat):
                out = Path(tmp) / f"{case}_{T}h_{k}"
                run = run_process(solve_command(case, T, out, ["--formulation", formulation]))
                if run["returncode"] != 0:
                    raise RunFailed(f"solve --case {case} --hours {T} failed (exit {run['returncode']}): "
                                    f"{last_line(run['stderr'])}", run["returncode"])
                run["summary"] = json.loads(run["stdout"])
                runs.append(run)
                if progress:
                    progress(f"  T = {T:3d} h  run {k + 1}/{repeat}: {run['wall_s']:.2f} s wall")
            walls = [r["wall_s"] for r in runs]
            best = min(runs, key=lambda r: r["wall_s"])
            med = statistics.median(walls)
            s = best["summary"]
            stats, tm = s["solver_stats"], s["timings"]
            solve_med = statistics.median(r["summary"]["timings"]["solve_s"] for r in runs)
            rows.append({
                "case": case,
                "formulation": formulation,
                "hours": T,
                "variables": stats.get("variables"),
                "constraints": stats.get("constraints"),
                "iterations": stats.get("iterations"),
                "build_s": statistics.median(r["summary"]["timings"]["build_s"] for r in runs),
                "solve_s": solve_med,
                "command_total_s": statistics.median(r["summary"]["timings"]["total_s"] for r in runs),
                "wall_s": med,
                "wall_min_s": min(walls),
                "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                "solver_share": solve_med / med,
                "ms_per_iteration": 1000 * tm["solve_s"] / stats["iterations"] if stats.get("iterations") else None,
                "peak_mb": max(r["peak_mb"] for r in runs),
                "objective_usd": s["objective_usd"],
                "route": _route_label(s),
            })
    return rows


# --------------------------------------------------------------------------------------------------
# Whole commands (``--commands``, part of ``make bench``)
# --------------------------------------------------------------------------------------------------

#: The hand-written Pyomo + cyipopt-wheels script the first row is compared with (in the source tree).
PLAIN_SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "plain_pyomo.py"

#: (row label, arguments of ``python -m mpdopf_pyomo`` after ``--out X``-less ``solve``; compare with the plain
#: script?) of the whole-command rows, and the targets of issue 15.
COMMAND_ROWS: tuple[tuple[str, list[str], bool, float | None], ...] = (
    ("published 5 h, no check, no figures", ["--case", "ieee123-published", "--hours", "5", "--no-validate",
                                              "--no-plots"], True, None),
    ("default 5 h (OpenDSS check + figures)", ["--case", "ieee123", "--hours", "5"], False, 1.5),
    ("24 h, no figures", ["--case", "ieee123", "--hours", "24", "--no-plots"], False, 1.5),
)

#: IPOPT's ``print_timing_statistics`` lines the rows report (CPU seconds, the first number of each line).
_TIMING_LINES = {"ipopt_cpu_s": "OverallAlgorithm", "function_evaluations_cpu_s": "Function Evaluations",
                 "linear_algebra_cpu_s": "StdAugSystemSolverMultiSolve"}


def ipopt_timing(log: str) -> dict[str, float]:
    """IPOPT's time split from a log printed with ``print_timing_statistics yes``: the whole algorithm, the
    function evaluations (objective, constraints, derivatives: Python/ASL) and the linear algebra (the
    augmented-system solves: MUMPS' factorizations and back-solves), CPU seconds."""
    out = {}
    for key, label in _TIMING_LINES.items():
        found = re.search(rf"^\s*{label}\.*:\s*([0-9.]+)", log, re.M)
        if found:
            out[key] = float(found.group(1))
    return out


def export_plain_data(case: str, hours: int, path: Path) -> None:
    """The data of ``case`` as the JSON file :data:`PLAIN_SCRIPT` reads (balanced tables from ``load_case``)."""
    from dataclasses import asdict

    from mpdopf_pyomo import solvers
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.problem import _network_columns

    c = load_case(case, hours)
    buses, branches = _network_columns(c)
    data = {"root": c.root, "s_base_kva": c.bases.s_kva, "settings": asdict(c.settings),
            "buses": buses[["p_load", "q_load", "q_cap"]].to_dict("index"),
            "branches": branches[["from_bus", "to_bus", "r", "x", "tap"]].to_dict("index"),
            "pvs": c.pvs.to_dict("index"), "batteries": c.batteries.to_dict("index"),
            **{k: c.profile[k].tolist() for k in ("load_mult", "pv_mult", "price")},
            "pynumero_library": solvers.pynumero_library()}
    path.write_text(json.dumps(data))


def bench_commands(repeat: int = 5, progress: Callable[[str], None] | None = None,
                   baseline: str | None = None) -> list[dict[str, Any]]:
    """Whole-command wall time of :data:`COMMAND_ROWS` (and of the plain script beside the first), fresh
    processes run round-robin (A B C D A B C D ...) so that a change in the machine's load hits every
    command alike; median and min of ``repeat``. One more run of each, with IPOPT's timing statistics,
    gives the split into function evaluations and linear algebra (not part of the wall times).

    ``baseline``: a source tree of another version of this package (e.g. ``git worktree add``); each
    command also runs from it (``PYTHONPATH``), in the same round-robin, as a row marked "before"."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mpdopf-bench-cmd-") as tmp:
        data = Path(tmp) / "plain.json"
        plain_ok = PLAIN_SCRIPT.is_file()
        if plain_ok:
            export_plain_data("ieee123-published", 5, data)
        jobs: list[tuple[str, list[str], float | None, dict[str, str] | None]] = []
        base_env = None
        if baseline:
            base_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(Path(baseline).resolve()), *filter(None, [os.environ.get("PYTHONPATH")])]))
        for label, args, with_plain, target in COMMAND_ROWS:
            jobs.append((label, args, target, None))
            if with_plain and plain_ok:
                jobs.append(("plain Pyomo + cyipopt-wheels script, same model and data", [], None, None))
            if base_env is not None:
                jobs.append((f"{label} (before: {baseline})", args, target, base_env))
        runs: dict[int, list[dict[str, Any]]] = {k: [] for k in range(len(jobs))}
        for rep in range(repeat):
            for k, (label, args, _, env) in enumerate(jobs):
                out = Path(tmp) / f"run{k}_{rep}"
                cmd = ([sys.executable, "-m", "mpdopf_pyomo", "solve", *args, "--json", "--out", str(out)] if args
                       else [sys.executable, str(PLAIN_SCRIPT), str(data)])
                # in the temporary folder: `python -m` puts the working directory first on sys.path, so run
                # from a source tree it would shadow the --baseline tree given through PYTHONPATH
                run = run_process(cmd, env, cwd=tmp)
                if run["returncode"] != 0:
                    raise RunFailed(f"{label} failed (exit {run['returncode']}): {last_line(run['stderr'])}",
                                    run["returncode"])
                run["summary"] = json.loads(run["stdout"].strip().splitlines()[-1] if not args else run["stdout"])
                runs[k].append(run)
                if progress:
                    progress(f"  run {rep + 1}/{repeat} {label}: {run['wall_s']:.2f} s")
        for k, (label, args, target, env) in enumerate(jobs):
            rs = runs[k]
            s = rs[0]["summary"]
            if args:
                diag = run_process([sys.executable, "-m", "mpdopf_pyomo", "solve", *args, "--no-validate",
                                    "--no-plots", "--tee", "--solver-option", "print_timing_statistics=yes",
                                    "--out", str(Path(tmp) / f"diag{k}")], env, cwd=tmp)
                command = "python -m mpdopf_pyomo solve " + " ".join(args)
                iterations, route = s["solver_stats"].get("iterations"), _route_label(s)
            else:
                diag = run_process([sys.executable, str(PLAIN_SCRIPT), str(data), "--timing"])
                command = f"python {PLAIN_SCRIPT.parent.name}/{PLAIN_SCRIPT.name} (ieee123-published, 5 h)"
                iterations = s.get("iterations")
                route = "cyipopt-wheels" if "site-packages" in s.get("cyipopt", "") else s.get("cyipopt")
            walls = [r["wall_s"] for r in rs]
            row = {"row": label, "command": command, "runs": len(rs), "wall_s": statistics.median(walls),
                   "wall_min_s": min(walls), "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                   "target_s": target, "iterations": iterations, "route": route,
                   **ipopt_timing(diag["stdout"]), "peak_mb": max(r["peak_mb"] for r in rs),
                   "objective_usd": s.get("objective_usd")}
            if args:
                row["total_s"] = statistics.median(r["summary"]["timings"]["total_s"] for r in rs)
            rows.append(row)
        if plain_ok:
            ours, plain = rows[0], rows[1]
            ours["ratio_to_plain"] = ours["wall_s"] / plain["wall_s"]
            rel = abs(ours["objective_usd"] - plain["objective_usd"]) / abs(plain["objective_usd"])
            ours["objective_rel_diff"] = plain["objective_rel_diff"] = rel
    return rows


COMMAND_COLUMNS = [
    ("row", "row", "{}"),
    ("wall_s", "wall s (median)", "{:.2f}"),
    ("wall_min_s", "wall s (min)", "{:.2f}"),
    ("target_s", "target s", "{}"),
    ("ratio_to_plain", "× plain script", "{:.2f}"),
    ("cpu_s", "CPU s", "{:.2f}"),
    ("total_s", "total_s (summary)", "{:.2f}"),
    ("iterations", "IPOPT iterations", "{}"),
    ("ipopt_cpu_s", "IPOPT CPU s", "{:.3f}"),
    ("function_evaluations_cpu_s", "function evaluations CPU s", "{:.3f}"),
    ("linear_algebra_cpu_s", "linear algebra CPU s", "{:.3f}"),
    ("peak_mb", "peak MB", "{:.0f}"),
    ("route", "route", "{}"),
    ("objective_rel_diff", "objective rel. diff to plain", "{:.1e}"),
]


def commands_text(rows: list[dict[str, Any]], repeat: int) -> str:
    """The whole-command table with its commands and the machine's load (Markdown)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cmds = "\n".join(f"- {r['row']}: `{r['command']}`" for r in rows)
    return (f"## Whole commands: fresh processes, run round-robin, median of {repeat} "
            f"({os.cpu_count()} CPUs; load average at the end {load})\n\n"
            + markdown_table(rows, COMMAND_COLUMNS) + "\n\nCommands (each with `--json --out <tmp>`):\n\n" + cmds
            + "\n\nIPOPT CPU seconds from one more run of each with `print_timing_statistics yes` (OverallAlgorithm,"
              " Function Evaluations, StdAugSystemSolverMultiSolve = MUMPS factorizations and back-solves).")


# --------------------------------------------------------------------------------------------------
# Large generated feeders (``--large``, ``make bench-large``)
# --------------------------------------------------------------------------------------------------

#: (buses, hours) of the large rows: generated feeders (``cases generate``, tree layout), areas = sections
#: (8, 20, 80) unless ``--areas`` is given.
LARGE_ROWS = ((1025, 5), (2561, 24), (10241, 4))
LARGE_ALGORITHMS = ("central", "admm", "enapp")


def bench_large(rows: tuple[tuple[int, int], ...] = LARGE_ROWS, algorithms: tuple[str, ...] = LARGE_ALGORITHMS,
                areas: str | None = None, max_iter: int = 100,
                progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (feeder, algorithm): a fresh ``solve`` process on a generated feeder, with build, solve,
    command and process wall time, IPOPT iterations, peak memory of the process and of each worker, and
    for distributed runs iterations, gap to central, critical path and projected one-core-per-area wall.
    A distributed run that fails (not converged, an area solve stopped) is a row with its error."""
    from mpdopf_pyomo.network.generate import generate

    out_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mpdopf-bench-large-") as tmp:
        for n, T in rows:
            g = generate(n, Path(tmp) / f"gen{n}", hours=T)
            central_obj = None
            for alg in algorithms:
                extra = ["--algorithm", alg]
                if alg != "central":
                    extra += ["--max-iter", str(max_iter)] + (["--areas", areas] if areas else [])
                run = run_process(solve_command(str(g.case_file), T, Path(tmp) / f"run{n}_{alg}", extra))
                row: dict[str, Any] = {"buses": g.buses, "hours": T, "algorithm": alg, "wall_s": run["wall_s"],
                                       "cpu_s": run["cpu_s"], "peak_mb": run["peak_mb"]}
                if run["returncode"] != 0:
                    row["error"] = last_line(run["stderr"], 200)
                else:
                    s = json.loads(run["stdout"])
                    tm = s["timings"]
                    row.update(build_s=tm["build_s"], solve_s=tm["solve_s"], command_total_s=tm["total_s"],
                               ipopt_iterations=s["solver_stats"].get("iterations"), objective_usd=s["objective_usd"])
                    if alg == "central":
                        central_obj = s["objective_usd"]
                    else:
                        d = s["distributed"]
                        ts = d.get("timing_s", {})
                        row.update(areas=d["areas"], iterations=d["iterations"], converged=d["converged"],
                                   critical_path_s=ts.get("critical_path"), waiting_s=ts.get("waiting"),
                                   transfer_s=ts.get("transfer"), area_solves_total_s=ts.get("area_solves_total"),
                                   projected_s=ts.get("projected_one_core_per_area"),
                                   projected_cpu_s=ts.get("projected_one_core_per_area_cpu"),
                                   worker_peak_mb=max(d.get("worker_peak_mb", {}).values(), default=None))
                        if central_obj:
                            row["gap"] = (s["objective_usd"] - central_obj) / central_obj
                if progress:
                    progress(f"  {g.buses} buses x {T} h {alg}: {run['wall_s']:.1f} s wall"
                             + (f" ({row['error']})" if "error" in row else ""))
                out_rows.append(row)
    return out_rows


LARGE_COLUMNS = [
    ("buses", "buses", "{}"),
    ("hours", "T (h)", "{}"),
    ("algorithm", "algorithm", "{}"),
    ("areas", "areas", "{}"),
    ("iterations", "iterations", "{}"),
    ("converged", "converged", "{}"),
    ("gap", "gap to central", "{:+.1e}"),
    ("ipopt_iterations", "IPOPT iterations", "{}"),
    ("build_s", "build s", "{:.1f}"),
    ("solve_s", "solve s", "{:.1f}"),
    ("command_total_s", "command total s", "{:.1f}"),
    ("wall_s", "process wall s", "{:.1f}"),
    ("critical_path_s", "critical path s", "{:.1f}"),
    ("waiting_s", "waiting s", "{:.1f}"),
    ("transfer_s", "transfer s", "{:.1f}"),
    ("projected_s", "projected 1 core/area s", "{:.1f}"),
    ("projected_cpu_s", "projected 1 free core/area, CPU s", "{:.1f}"),
    ("peak_mb", "peak MB (largest process)", "{:.0f}"),
    ("worker_peak_mb", "peak MB per worker", "{:.0f}"),
    ("error", "error", "{}"),
]


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

CENTRAL_COLUMNS = [
    ("hours", "T (h)", "{}"),
    ("variables", "variables", "{}"),
    ("constraints", "constraints", "{}"),
    ("iterations", "iterations", "{}"),
    ("build_s", "build s", "{:.3f}"),
    ("solve_s", "in solver s", "{:.3f}"),
    ("ms_per_iteration", "ms/iter", "{:.1f}"),
    ("command_total_s", "command total s", "{:.2f}"),
    ("wall_s", "wall s (median)", "{:.2f}"),
    ("wall_min_s", "wall s (min)", "{:.2f}"),
    ("cpu_s", "CPU s", "{:.2f}"),
    ("solver_share", "solver share", "{:.0%}"),
    ("peak_mb", "peak MB", "{:.0f}"),
    ("objective_usd", "objective USD", "{:.4f}"),
    ("route", "route", "{}"),
]


def _route_label(summary: dict[str, Any]) -> str:
    """E.g. ``executable IPOPT 3.14.19 MUMPS 5.8.2``: which IPOPT build ran (see ``doctor``)."""
    mumps = summary.get("solver_stats", {}).get("mumps")
    return " ".join(x for x in (summary.get("solver_route"), f"IPOPT {summary.get('solver_version')}",
                                f"MUMPS {mumps}" if mumps else "") if x)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]] | None = None) -> str:
    """Rows as a Markdown table; ``columns`` = (key, header, format), default every key of the first row."""
    if not rows:
        return "(no rows)"
    if columns is None:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        columns = [(k, k, "{:.4g}" if isinstance(rows[0].get(k), float) else "{}") for k in keys]
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---:" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(k), f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


DISTRIBUTED_COLUMNS = [
    ("algorithm", "algorithm", "{}"), ("executor", "executor", "{}"), ("hours", "T (h)", "{}"),
    ("iterations", "iterations", "{}"), ("converged", "converged", "{}"),
    ("objective_usd", "objective USD", "{:.4f}"), ("area_solve_s", "area solves s", "{:.2f}"),
    ("coordination_s", "coordination s", "{:.2f}"), ("per_iteration_s", "s/iteration", "{:.3f}"),
    ("critical_path_s", "critical path s", "{:.2f}"), ("waiting_s", "waiting s", "{:.2f}"),
    ("transfer_s", "transfer s", "{:.2f}"), ("projected_s", "projected 1 core/area s", "{:.2f}"),
    ("wall_s", "wall s (in-process)", "{:.2f}"),
]


# --------------------------------------------------------------------------------------------------
# Profile: where the wall time of one command goes
# --------------------------------------------------------------------------------------------------


class _Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, dt: float) -> None:
        self.total[name] = self.total.get(name, 0.0) + dt
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, owner: Any, attr: str, name: str, kind: str = "function") -> None:
        """Replace ``owner.attr`` by a timed wrapper (kind: function, method or classmethod)."""
        orig = getattr(owner, attr)
        fn = orig.__func__ if kind == "classmethod" else orig
        timers = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                timers.add(name, time.perf_counter() - t0)

        timed.__name__ = getattr(fn, "__name__", attr)
        timed.__doc__ = getattr(fn, "__doc__", None)
        setattr(owner, attr, classmethod(timed) if kind == "classmethod" else timed)


def _profile_child(case: str, hours: int, out: str, full: bool = False) -> dict[str, Any]:
    """Run the ``solve`` command in this (fresh) process with stage timers; return the stage times."""
    from mpdopf_pyomo import _START

    timers = _Timers()
    t_child = time.perf_counter() - _START  # importing the package and this module
    order: list[str] = []

    def imp(label: str, module: str) -> None:
        import importlib

        t0 = time.perf_counter()
        importlib.import_module(module)
        timers.add(label, time.perf_counter() - t0)
        order.append(label)

    imp("import click + CLI", "mpdopf_pyomo.cli")
    imp("import pandas, case loader, OpenDSS", "mpdopf_pyomo.case")
    imp("import pyomo.environ", "pyomo.environ")
    imp("import model code (problem, blocks, results)", "mpdopf_pyomo.pipeline")
    from mpdopf_pyomo import solvers

    t0 = time.perf_counter()
    route = solvers.probe("ipopt").route  # as the command does first (the library route imports cyipopt)
    timers.add("solver probe (first)", time.perf_counter() - t0)
    order.append("solver probe (first)")
    stages: list[tuple[Any, str, str, str]] = []
    if route == "library":
        imp("import PyNumero interfaces", "pyomo.contrib.pynumero.interfaces.cyipopt_interface")
        import pyomo.contrib.pynumero.interfaces.pyomo_nlp as pyomo_nlp
        from pyomo.contrib.pynumero.interfaces import cyipopt_interface

        stages += [
            (pyomo_nlp.PyomoNLP, "__init__", "PyomoNLP (NL file + ASL load + structures)", "method"),
            (cyipopt_interface.CyIpoptNLP, "__init__", "CyIpoptNLP set-up", "method"),
            (cyipopt_interface.CyIpoptNLP, "solve", "IPOPT itself (incl. its function evaluations)", "method"),
        ]
    from pyomo.core.base.PyomoModel import ModelSolutions
    from pyomo.opt.solver.shellcmd import SystemCallSolver
    from pyomo.repn.plugins import nl_writer

    from mpdopf_pyomo import case as case_mod
    from mpdopf_pyomo import pipeline, problem
    from mpdopf_pyomo.results import Results

    stages += [
        (case_mod, "load_case", "case load (TOML, OpenDSS compile, tree, profiles)", "function"),
        (problem, "build_model", "build Pyomo model", "function"),
        (problem, "flat_start", "starting point: LinDistFlow sweep", "function"),
        (problem, "initialize", "starting point: load into model", "function"),
        (pipeline, "solve_central", "solve_central (all of it)", "function"),
        (SystemCallSolver, "_execute_command", "IPOPT executable (its own process)", "method"),
        (SystemCallSolver, "process_output", "read the executable's solution file", "method"),
        (solvers, "solve", "solvers.solve (all of it)", "function"),
        (solvers, "probe", "solver probe", "function"),
        (nl_writer.NLWriter, "write", "write NL file", "method"),
        (ModelSolutions, "load_from", "load solution into Pyomo", "method"),
        (Results, "from_models", "results tables (Results.from_models)", "classmethod"),
        (Results, "save", "write output folder (Results.save)", "method"),
    ]
    for owner, attr, label, kind in stages:
        timers.wrap(owner, attr, label, kind)

    from mpdopf_pyomo.cli import main

    t0 = time.perf_counter()
    saved = sys.stdout
    sys.stdout = io.StringIO()
    try:
        code = main(["solve", "--case", case, "--hours", str(hours), *([] if full else ["--no-validate", "--no-plots"]),
                     "--json", "--out", out], standalone_mode=False)
        if code:  # the command's error line is on stderr already
            raise RunFailed("", code)
        summary = json.loads(sys.stdout.getvalue())
    finally:
        sys.stdout = saved
    timers.add("CLI command (all of it)", time.perf_counter() - t0)
    end = time.perf_counter() - _START
    return {"child_total_s": end, "start": _START, "end": _START + end, "package_import_s": t_child, "order": order,
            "total": timers.total, "calls": timers.calls, "timings": summary["timings"], "route": route}


def profile(case: str = "ieee123", hours: int = 24, full: bool = False) -> tuple[list[dict[str, Any]], float]:
    """Stage breakdown of one fresh ``solve`` process: rows (stage, seconds, share of wall) and the wall.

    ``full``: the default command (OpenDSS check and figures) instead of ``--no-validate --no-plots``."""
    with tempfile.TemporaryDirectory(prefix="mpdopf-profile-") as tmp:
        cmd = [sys.executable, "-m", "mpdopf_pyomo.benchmark", "--_profile-child", case, str(hours),
               str(Path(tmp) / "out"), *(["--profile-full"] if full else [])]
        run = run_process(cmd)
    if run["returncode"] != 0:
        raise RunFailed(f"profiling run of solve --case {case} --hours {hours} failed (exit {run['returncode']}): "
                        f"{last_line(run['stderr'])}", run["returncode"])
    data = json.loads(run["stdout"].strip().splitlines()[-1])
    wall = run["wall_s"]
    tot = data["total"]
    g = tot.get
    clock_ok = sys.platform.startswith("linux") and run["t0"] <= data["start"] <= data["end"] <= run["t1"]
    if clock_ok:
        rows: list[tuple[str, float]] = [
            ("Python start-up (interpreter, site, runpy)", data["start"] - run["t0"]),
            ("import mpdopf_pyomo package", data["package_import_s"]),
        ]
    else:  # no shared clock: start-up and shut-down together
        rows = [("Python start-up + shut-down", wall - data["child_total_s"]),
                ("import mpdopf_pyomo package", data["package_import_s"])]
    route = data["route"]
    rows += [(label, tot[label]) for label in data["order"]]
    cli = g("CLI command (all of it)", 0.0)
    central = g("solve_central (all of it)", 0.0)
    ssolve = g("solvers.solve (all of it)", 0.0)
    nlp = g("PyomoNLP (NL file + ASL load + structures)", 0.0)
    nl = g("write NL file", 0.0)
    ipopt = g("IPOPT itself (incl. its function evaluations)", 0.0)
    probe_s = g("solver probe", 0.0)
    cy_init = g("CyIpoptNLP set-up", 0.0)
    load = g("load solution into Pyomo", 0.0)
    build = g("build Pyomo model", 0.0)
    start = g("starting point: LinDistFlow sweep", 0.0) + g("starting point: load into model", 0.0)
    tables = g("results tables (Results.from_models)", 0.0)
    case_s = g("case load (TOML, OpenDSS compile, tree, profiles)", 0.0)
    save = g("write output folder (Results.save)", 0.0)
    timings = data["timings"]
    exe = g("IPOPT executable (its own process)", 0.0)
    sol = g("read the executable's solution file", 0.0)
    validation = timings.get("validation_s", 0.0)
    figs = timings.get("figures_s", 0.0)
    rows += [
        ("case load (TOML, OpenDSS compile, tree, profiles)", case_s),
        ("build Pyomo model", build),
        ("starting point (LinDistFlow sweep + load into model)", start),
        ("solver probe again (inside solvers.solve)", probe_s),
        ("write NL file", nl),
        ("PyomoNLP: ASL load, structures (beyond the NL file)", nlp - nl if route == "library" else 0.0),
        ("CyIpoptNLP set-up", cy_init),
        ("IPOPT itself (incl. its function evaluations)", ipopt),
        ("IPOPT executable (its own process; executable route)", exe),
        ("read the executable's solution file", sol),
        ("load solution into Pyomo", load),
        ("other inside solvers.solve (SolverFactory, options, results object)",
         ssolve - probe_s - load - (nlp + cy_init + ipopt if route == "library" else nl + exe + sol)),
        ("other inside solve_central (counting variables/constraints)",
         central - build - start - ssolve - tables),
        ("results tables (Results.from_models)", tables),
        ("OpenDSS validation (timings.validation_s)", validation),
        ("figures not overlapped with validation (timings.figures_s)", figs),
        ("write output folder (Results.save; tables, summary, rename)", save),
        ("CLI rest (option parsing, import of plots if any, JSON to stdout)",
         cli - case_s - central - validation - figs - save),
    ]
    if clock_ok:
        rows.append(("Python shut-down (freeing the model, module teardown, exit)", run["t1"] - data["end"]))
    accounted = sum(s for _, s in rows)
    rows.append(("unaccounted", wall - accounted))
    table = [{"stage": name, "seconds": s, "share": s / wall} for name, s in rows]
    table.append({"stage": "**wall time of the process**", "seconds": wall, "share": 1.0})
    return table, wall


# --------------------------------------------------------------------------------------------------
# Arguments of the bench tools (``benchmark``, ``benchmark_scale``, ``feeders``, ``bench_distopf``)
# --------------------------------------------------------------------------------------------------
# argparse ``type=`` functions: a bad value is argparse's usage error -- its last line
# ``PROG: error: argument --OPTION: 'VALUE' ...`` names the option and the value -- exit 2, before any
# benchmark runs and before ``--out`` is claimed.


def _whole(text: str, low: int = 1, high: int | None = None) -> int:
    """``text`` as an integer in ``low..high``; ValueError (with the reason) otherwise."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise ValueError(f"{text!r} is not in {low}..{high}" if high is not None else f"{text!r} is not >= {low}")
    return value


def positive_int(text: str) -> int:
    """``--repeat``, ``--profile``, ``--hours`` of one run: a whole number >= 1."""
    try:
        return _whole(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _items(text: str, example: str) -> list[str]:
    """The comma-separated items of ``text``; none empty, at least one."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated list without empty items, "
                                         f"e.g. {example}")
    return items


def hours_list(text: str) -> tuple[int, ...]:
    """``--hours 1,5,24``: horizons, each a whole number >= 1."""
    items = _items(text, "1,5,24")
    try:
        return tuple(_whole(item) for item in items)
    except ValueError as exc:
        where = f"{text!r}: " if len(items) > 1 else ""
        raise argparse.ArgumentTypeError(f"{where}{exc} (expected hours >= 1, e.g. 1,5,24)") from None


def case_spec(text: str) -> str:
    """``--case``: a bundled case name or an existing case file (as typed: the label of the tables); a bad
    one names the bundled cases."""
    from mpdopf_pyomo.case import resolve_case_path
    from mpdopf_pyomo.errors import CaseError

    try:
        resolve_case_path(text)
    except CaseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _generated(item: str, buses: str, hours: str) -> tuple[int, int]:
    """A generated feeder ``BUSES`` x ``HOURS`` as ``cases generate`` accepts it (ValueError otherwise)."""
    from mpdopf_pyomo.network.generate import MAX_HOURS, SECTION_BUSES

    try:
        return _whole(buses, SECTION_BUSES + 1), _whole(hours, 1, MAX_HOURS)
    except ValueError as exc:
        raise ValueError(f"{item!r}: {exc} (a generated feeder has at least {SECTION_BUSES + 1} buses and "
                         f"1..{MAX_HOURS} hours)") from None


def large_rows(text: str) -> tuple[tuple[int, int], ...]:
    """``--large 1025x5,2561x24``: generated feeders, BUSESxHOURS each."""
    rows = []
    for item in _items(text, "1025x5,2561x24"):
        buses, sep, hours = item.lower().partition("x")
        try:
            if not sep:
                raise ValueError(f"{item!r} is not BUSESxHOURS (e.g. 1025x5)")
            rows.append(_generated(item, buses, hours))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return tuple(rows)


def scale_rows(text: str) -> tuple[tuple[str | int, int], ...]:
    """``--rows ieee123x5,2561x24``: CASExHOURS each; a number of buses is a generated feeder, anything else
    a bundled case or a case file (:func:`case_spec`)."""
    rows: list[tuple[str | int, int]] = []
    for item in _items(text, "ieee123x5,2561x24"):
        case, sep, hours = item.rpartition("x")
        try:
            if not sep or not case:
                raise ValueError(f"{item!r} is not CASExHOURS (e.g. ieee123x5 or 2561x24)")
            if case.isdigit():
                rows.append(_generated(item, case, hours))
            else:
                rows.append((case_spec(case), _whole(hours)))
        except ValueError as exc:
            if item not in str(exc):
                exc = ValueError(f"{item!r}: {exc} (hours >= 1)")
            raise argparse.ArgumentTypeError(str(exc)) from None
    return tuple(rows)


def algorithm_list(text: str) -> tuple[str, ...]:
    """``--algorithms central,admm``: each ``central`` or a registered distributed algorithm."""
    from mpdopf_pyomo import algorithms

    known = ("central", *algorithms.names())
    items = _items(text, ",".join(known))
    bad = [a for a in items if a not in known]
    if bad:
        raise argparse.ArgumentTypeError(f"{bad[0]!r} is not an algorithm (choose from {', '.join(known)})")
    return tuple(items)


def areas_arg(text: str) -> str:
    """``--areas``: a number of areas >= 2 or ``auto``, as ``solve --areas`` takes it."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return str(_whole(text, 2))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (expected a number of areas >= 2 or auto)") from None


def source_tree(text: str) -> str:
    """``--baseline DIR``: a source tree of this package (``DIR/mpdopf_pyomo/__init__.py`` exists)."""
    if not (Path(text) / "mpdopf_pyomo" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a source tree of mpdopf_pyomo (no "
                                         "mpdopf_pyomo/__init__.py in it)")
    return text


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


#: The modes (None: the default table) each option of one mode applies to; ``--out`` applies to all.
_MODE_OPTIONS = {"--case": ("--profile", None), "--hours": (None,), "--repeat": ("--commands", None),
                 "--formulation": (None,), "--no-distributed": (None,), "--distributed-hours": (None,),
                 "--profile-full": ("--profile",), "--baseline": ("--commands",), "--areas": ("--large",),
                 "--algorithms": ("--large",)}
_UNSET = object()


def _check_mode(parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
    """Refuse two modes at once (``--profile``, ``--commands``, ``--large``), and an option the chosen mode
    would ignore (``--baseline`` without ``--commands``...), as argparse usage errors (exit 2)."""
    dests = {a.option_strings[0]: a.dest for a in parser._actions if a.option_strings}
    # argparse sets no default on an attribute the namespace already has: what stays _UNSET was not given
    given = parser.parse_args(argv, namespace=argparse.Namespace(**{dest: _UNSET for dest in dests.values()}))
    modes = [m for m in ("--profile", "--commands", "--large") if getattr(given, dests[m]) is not _UNSET]
    if len(modes) > 1:
        parser.error(f"{modes[0]} and {modes[1]} are two modes; give one")
    mode = modes[0] if modes else None
    for option, where in _MODE_OPTIONS.items():
        if getattr(given, dests[option]) is not _UNSET and mode not in where:
            parser.error(f"{option} does not apply to {mode or 'the default table'} "
                         f"(only to {' or '.join(w or 'the default table' for w in where)})")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpdopf_pyomo.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", type=case_spec, default="ieee123",
                        help="bundled case name or case file (default %(default)s)")
    parser.add_argument("--hours", type=hours_list, default=",".join(str(h) for h in DEFAULT_HOURS),
                        help="comma-separated horizons (default %(default)s)")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="fresh processes per horizon (median reported)")
    from mpdopf_pyomo.formulations import FORMULATIONS

    parser.add_argument("--formulation", default="exact", choices=tuple(FORMULATIONS))
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the tables (default %(default)s)")
    parser.add_argument("--no-distributed", dest="distributed", action="store_false",
                        help="skip the distributed rows (mpdopf_pyomo.decomposition.bench), which take minutes")
    parser.add_argument("--distributed-hours", type=hours_list, default=None,
                        help="horizons of the distributed rows (default: that module's own, 5,24: ~15 min here)")
    parser.add_argument("--profile", type=positive_int, metavar="T", default=None,
                        help="instead: break the wall time of one T-hour solve down by stage")
    large_default = ",".join(f"{n}x{t}" for n, t in LARGE_ROWS)
    parser.add_argument("--large", nargs="?", type=large_rows, const=LARGE_ROWS, default=None, metavar="NxT,...",
                        help=f"instead: the large generated-feeder rows (central, ADMM, ENApp; default "
                             f"{large_default}: about 1 min, 15 min and 15 min on 2 cores)")
    parser.add_argument("--areas", type=areas_arg, default=None,
                        help="--large: areas of the distributed runs, N >= 2 or auto (default: sections)")
    parser.add_argument("--algorithms", type=algorithm_list, default=",".join(LARGE_ALGORITHMS),
                        help="--large: algorithms (default %(default)s)")
    parser.add_argument("--profile-full", action="store_true",
                        help="--profile: the default command (OpenDSS check and figures), not --no-validate --no-plots")
    parser.add_argument("--commands", action="store_true",
                        help="instead: whole-command wall times (median of --repeat, round-robin) of the default "
                             "command, 24 h without figures and the published case beside a plain Pyomo script")
    parser.add_argument("--baseline", type=source_tree, default=None, metavar="DIR",
                        help="--commands: also run each command from this source tree of another version "
                             "(PYTHONPATH=DIR), in the same round-robin")
    parser.add_argument("--_profile-child", nargs=3, metavar=("CASE", "T", "OUT"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m mpdopf_pyomo.benchmark``: the mode the options ask for; its tables go to ``--out``
    (:class:`~mpdopf_pyomo.outputs.BenchFolder` rules). Exit 0; 2 for a bad option (argparse's usage error,
    before anything runs: also two modes at once, or an option the mode would ignore) or a refused ``--out``;
    a failed run's own code (:class:`~mpdopf_pyomo.errors.RunFailed`)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args._profile_child:
        c, T, out = args._profile_child
        try:
            result = _profile_child(c, int(T), out, args.profile_full)
        except RunFailed as exc:  # the solve command's own error: its line is on stderr, its code is ours
            sys.stderr.flush()
            os._exit(exc.exit_code)
        except Exception as exc:
            import click  # imported by the command by now (not earlier: the child times its imports)

            if not isinstance(exc, click.ClickException):
                raise
            # standalone_mode=False: click leaves its usage errors to the caller
            print(f"error: {exc.format_message()}", file=sys.stderr, flush=True)
            os._exit(exc.exit_code)
        print(json.dumps(result), flush=True)
        sys.stderr.flush()
        os._exit(0)  # as the command line does (mpdopf_pyomo.__main__): no interpreter teardown

    _check_mode(parser, argv)
    if args.profile is not None:
        stem = _profile_stem(args.case, args.profile)
        names = [f"{stem}.md", f"{stem}.csv"]
    elif args.commands:
        names = ["commands.md", "commands.csv"]
    elif args.large is not None:
        names = ["large.md", "large.csv"]
    else:
        names = ["benchmark.md", "central.csv", *(["distributed.csv"] if args.distributed else [])]
    from mpdopf_pyomo.outputs import with_bench_folder

    # a user's file named like one of these tables is refused now, before minutes of benchmarking
    return with_bench_folder(args.out, names, lambda out: _run(args, out))


def _profile_stem(case: str, hours: int) -> str:
    """File stem of the ``--profile`` tables: ``profile_<case>_<T>h`` (a case path is not a file name)."""
    from mpdopf_pyomo.outputs import safe_label

    return f"profile_{safe_label(Path(case).stem)}_{hours}h"


def _run(args: argparse.Namespace, out: "BenchFolder") -> int:
    """The benchmark ``args`` ask for, its tables written to the claimed :class:`~mpdopf_pyomo.outputs.BenchFolder`."""
    if args.profile is not None:
        table, wall = profile(args.case, args.profile, args.profile_full)
        flags = "" if args.profile_full else " --no-validate --no-plots"
        text = (f"## Where the time goes: `solve --case {args.case} --hours {args.profile}{flags} --json` "
                f"(one fresh process, {wall:.2f} s wall)\n\n"
                + markdown_table(table, [("stage", "stage", "{}"), ("seconds", "seconds", "{:.3f}"),
                                         ("share", "share of wall", "{:.1%}")]))
        stem = _profile_stem(args.case, args.profile)
        out.write_text(f"{stem}.md", text + "\n")
        out.write_csv(f"{stem}.csv", table)
        print(text)
        return 0

    if args.commands:
        rows = bench_commands(args.repeat, progress=lambda m: print(m, file=sys.stderr, flush=True),
                              baseline=args.baseline)
        text = commands_text(rows, args.repeat)
        out.write_csv("commands.csv", rows)
        out.write_text("commands.md", text + "\n")
        print(text)
        return 0

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.large is not None:
        progress(f"large feeders: {args.large}, {args.algorithms}")
        rows = bench_large(args.large, args.algorithms, args.areas, progress=progress)
        text = (f"## Large generated feeders (`cases generate`, tree layout; fresh `solve` processes; "
                f"{os.cpu_count()} CPUs)\n\n" + markdown_table(rows, LARGE_COLUMNS))
        out.write_csv("large.csv", rows)
        out.write_text("large.md", text + "\n")
        print(text)
        return 0

    progress(f"benchmark: {args.case}, {args.formulation}, T = {args.hours}, {args.repeat} fresh processes each")
    rows = bench_central(args.case, args.hours, args.repeat, args.formulation, progress)
    header = (f"## Central solve, `python -m mpdopf_pyomo solve --case {args.case} --hours T "
              f"--formulation {args.formulation} --no-validate --no-plots --json` "
              f"(fresh process, median of {args.repeat}; {os.cpu_count()} CPUs)")
    text = header + "\n\n" + markdown_table(rows, CENTRAL_COLUMNS)
    out.write_csv("central.csv", rows)
    out.write_text("benchmark.md", text + "\n")
    print(text, flush=True)
    if args.distributed:
        from mpdopf_pyomo.decomposition.bench import benchmark_rows

        progress("distributed rows (mpdopf_pyomo.decomposition.bench.benchmark_rows) ...")
        kwargs: dict[str, Any] = {}
        if args.distributed_hours:
            kwargs["hours"] = args.distributed_hours
        dist = benchmark_rows(**kwargs)
        part = "## Distributed (mpdopf_pyomo.decomposition.bench)\n\n" + markdown_table(dist, DISTRIBUTED_COLUMNS)
        out.write_csv("distributed.csv", dist)
        text += "\n\n" + part
        out.write_text("benchmark.md", text + "\n")
        print("\n" + part)
    print(f"\n(written to {out.path}: benchmark.md, central.csv"
          f"{', distributed.csv' if args.distributed else ''})", file=sys.stderr)
    return 0

if __name__ == "__main__":
    sys.exit(main())
