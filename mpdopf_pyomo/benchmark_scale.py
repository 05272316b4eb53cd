"""Solver-side speed at scale: central solves of ieee123 and of large generated feeders, with IPOPT's own
time split into function evaluations and linear algebra.

``python -m mpdopf_pyomo.benchmark_scale`` (part of ``make bench``) runs, for each row (default
ieee123 x 5 h and x 24 h, generated feeders of 2,561 buses x 5 h and x 24 h and 10,241 buses x 4 h),

    python -m mpdopf_pyomo solve --case C --hours T --no-validate --no-plots --json --out <tmp>
        --solver S --solver-option print_timing_statistics=yes --solver-option output_file=<tmp>/ipopt.log

as fresh processes (``--repeat`` times for ieee123, ``--repeat-large`` for the generated feeders; medians)
and tabulates the route and MUMPS version, IPOPT iterations, IPOPT's wall time (``OverallAlgorithm``)
split into function evaluations (``Function Evaluations``) and linear algebra (``PDSystemSolverTotal``:
factorizations and back-solves), its CPU time, the command's build and solve time, the process wall and
CPU time, the load average at the start of the row (the machine may be shared) and peak memory. Tables go
to ``bench/results/scale.md`` and ``scale.csv``. The generated feeders are written by ``cases generate``
into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from mpdopf_pyomo.benchmark import (DEFAULT_OUT, _route_label, last_line, markdown_table, positive_int, run_process,
                                    scale_rows, solve_command)
from mpdopf_pyomo.errors import RunFailed
from mpdopf_pyomo.outputs import BenchFolder, with_bench_folder

#: (case, hours): a bundled case name, or an int for a generated feeder of that many buses.
SCALE_ROWS: tuple[tuple[str | int, int], ...] = (("ieee123", 5), ("ieee123", 24), (2561, 5), (2561, 24), (10241, 4))

#: IPOPT timing lines read from its log: (key, line name in ``print_timing_statistics``).
_TIMING_LINES = (("ipopt", "OverallAlgorithm"), ("linear_algebra", "PDSystemSolverTotal"),
                 ("fevals", "Function Evaluations"))


def ipopt_timing(log: str) -> dict[str, Any]:
    """Iterations and the CPU and wall seconds of IPOPT's whole run, its linear algebra and its function
    evaluations, from a log written with ``print_timing_statistics yes`` (keys missing when absent)."""
    out: dict[str, Any] = {}
    found = re.search(r"Number of Iterations\.*:\s*(\d+)", log)
    if found:
        out["iterations"] = int(found.group(1))
    for key, name in _TIMING_LINES:
        line = re.search(rf"^\s*{re.escape(name)}\.*:\s*([\d.]+) \(sys:\s*([\d.]+) wall:\s*([\d.]+)\)", log, re.M)
        if line:
            cpu, sys_s, wall = (float(v) for v in line.groups())
            out[f"{key}_cpu_s"] = cpu + sys_s
            out[f"{key}_s"] = wall
    return out


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def bench_scale(rows: tuple[tuple[str | int, int], ...] = SCALE_ROWS, solver: str = "ipopt", repeat: int = 3,
                repeat_large: int = 1, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (case, hours): medians over fresh ``solve`` processes of IPOPT's time split and the
    command's timings (see the module docstring). A failed run raises :class:`RunFailed` with its exit code
    and last line."""
    from mpdopf_pyomo.network.generate import generate

    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mpdopf-bench-scale-") as tmp:
        for case, T in rows:
            if isinstance(case, int):
                g = generate(case, Path(tmp) / f"gen{case}_{T}", hours=T)
                case_arg, label, n = str(g.case_file), f"generated {g.buses} buses", repeat_large
            else:
                case_arg, label, n = case, case, repeat
            load = _load()
            runs = []
            for k in range(n):
                work = Path(tmp) / f"run_{len(table)}_{k}"
                work.mkdir()
                log = work / "ipopt.log"
                cmd = solve_command(case_arg, T, work / "out", [
                    "--solver", solver, "--solver-option", "print_timing_statistics=yes",
                    "--solver-option", f"output_file={log}"])
                run = run_process(cmd)
                if run["returncode"] != 0:
                    raise RunFailed(f"{label} x {T} h failed (exit {run['returncode']}): {last_line(run['stderr'])}",
                                    run["returncode"])
                run["summary"] = json.loads(run["stdout"])
                run["timing"] = ipopt_timing(log.read_text(errors="replace") if log.exists() else "")
                runs.append(run)
                if progress:
                    progress(f"  {label} x {T} h run {k + 1}/{n}: {run['wall_s']:.1f} s wall, "
                             f"IPOPT {run['timing'].get('ipopt_s', float('nan')):.2f} s")

            def med(get: Callable[[dict[str, Any]], Any]) -> float | None:
                values = [v for v in (get(r) for r in runs) if v is not None]
                return statistics.median(values) if values else None

            s = runs[0]["summary"]
            table.append({
                "case": label, "hours": T,
                "runs": n, "route": _route_label(s),
                "variables": s["solver_stats"].get("variables"), "iterations": s["solver_stats"].get("iterations"),
                **{key: med(lambda r, key=key: r["timing"].get(key))
                   for key in ("ipopt_s", "fevals_s", "linear_algebra_s", "ipopt_cpu_s")},
                "build_s": med(lambda r: r["summary"]["timings"].get("build_s")),
                "solve_s": med(lambda r: r["summary"]["timings"].get("solve_s")),
                "wall_s": med(lambda r: r["wall_s"]), "cpu_s": med(lambda r: r["cpu_s"]),
                "peak_mb": max(r["peak_mb"] for r in runs), "load_1min": load,
                "objective_usd": s["objective_usd"],
            })
    return table


SCALE_COLUMNS = [
    ("case", "case", "{}"), ("hours", "T (h)", "{}"), ("variables", "variables", "{}"),
    ("iterations", "IPOPT iterations", "{}"), ("ipopt_s", "IPOPT s", "{:.2f}"),
    ("fevals_s", "function evaluations s", "{:.2f}"), ("linear_algebra_s", "linear algebra s", "{:.2f}"),
    ("ipopt_cpu_s", "IPOPT CPU s", "{:.2f}"), ("build_s", "build s", "{:.2f}"), ("solve_s", "solve s", "{:.2f}"),
    ("wall_s", "process wall s", "{:.2f}"), ("cpu_s", "process CPU s", "{:.2f}"), ("peak_mb", "peak MB", "{:.0f}"),
    ("load_1min", "load avg", "{:.1f}"), ("runs", "runs", "{}"), ("route", "route", "{}"),
    ("objective_usd", "objective USD", "{:.4f}"),
]


def main(argv: list[str] | None = None) -> int:
    """``python -m mpdopf_pyomo.benchmark_scale``: exit 0, or 2 for bad options or a refused ``--out``
    (:class:`~mpdopf_pyomo.outputs.BenchFolder` rules; both checked before any solve), or a failed run's own
    code (:class:`~mpdopf_pyomo.errors.RunFailed`)."""
    parser = argparse.ArgumentParser(prog="python -m mpdopf_pyomo.benchmark_scale",
                                     description=__doc__.split("\n\n")[0])
    default_rows = ",".join(f"{c}x{t}" for c, t in SCALE_ROWS)
    parser.add_argument("--rows", type=scale_rows, default=default_rows,
                        help="CASExHOURS,...; a number of buses is a generated feeder (default %(default)s)")
    parser.add_argument("--solver", default="ipopt", help="--solver of the runs (cyipopt: the library route)")
    parser.add_argument("--repeat", type=positive_int, default=3, help="fresh processes per bundled-case row (median)")
    parser.add_argument("--repeat-large", type=positive_int, default=1, help="fresh processes per generated-feeder row")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder for scale.md and .csv (default %(default)s)")
    args = parser.parse_args(argv)
    rows = args.rows

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def run(out: BenchFolder) -> int:
        progress(f"scale benchmark: {', '.join(f'{c}x{t}' for c, t in rows)}, --solver {args.solver}")
        table = bench_scale(rows, args.solver, args.repeat, args.repeat_large, progress)
        text = (f"## Central solves at scale (`solve --case C --hours T --no-validate --no-plots --solver "
                f"{args.solver}`, fresh processes, medians; IPOPT seconds from `print_timing_statistics`; "
                f"{os.cpu_count()} CPUs)\n\n" + markdown_table(table, SCALE_COLUMNS))
        out.write_csv("scale.csv", table)
        out.write_text("scale.md", text + "\n")
        print(text)
        return 0

    return with_bench_folder(args.out, ["scale.md", "scale.csv"], run)  # refused before any solve


if __name__ == "__main__":
    sys.exit(main())
