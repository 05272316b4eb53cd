"""Distributed multi-period OPF: areas, ADMM, ENApp, executors (serial, local processes, Dask).

:func:`solve_distributed` is what ``solve --algorithm admm|enapp`` calls. The pieces:

* :mod:`.partition`: areas from the case's cut branches or an automatic partition into N areas;
* :mod:`.area_solver`: one area's model, built once, re-solved warm each iteration;
* :mod:`.algorithm`: the algorithm protocol and the one driver loop; :mod:`.admm`, :mod:`.enapp`: the
  coordination algorithms, registered by name in :mod:`mpdopf_pyomo.algorithms` (they only see an
  executor's ``map``);
* :mod:`.executors`: where the area solvers live.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np
import pandas as pd

from mpdopf_pyomo import formulations, solvers
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.decomposition.area_solver import AreaSpec, peak_rss_mb
from mpdopf_pyomo.decomposition.algorithm import STOP_RULES, Context, StopRule, drive
from mpdopf_pyomo.decomposition.core import TIMING_COLUMNS, IterationCallback, make_layout
from mpdopf_pyomo.decomposition.executors import default_executor, make_executor, worker_table
from mpdopf_pyomo.decomposition.partition import auto_areas, with_areas
from mpdopf_pyomo.errors import CaseError, SolveFailed, bad_setting
from mpdopf_pyomo.results import Results
from mpdopf_pyomo.progress import Progress, quiet

__all__ = ["solve_distributed", "check_settings"]

#: Meaningful range of the stopping tolerance on the boundary residuals (pu of the case's base power for
#: P, Q; pu^2 for v). Above 1e-2 the areas may disagree by more than 1 % of the base power (ieee123: 30 kW
#: per cut and hour; 1e9 passed as "converged" with a 9 % substation mismatch in OpenDSS); below 1e-10
#: the residuals are at the level of the area solves' own accuracy (IPOPT tol 1e-8), so cannot be trusted.
TOL_RANGE = (1e-10, 1e-2)
#: Algorithm options :func:`check_settings` knows how to check.
_CHECKED = ("rho", "damping", "relax", "warm_start")
#: How ADMM starts: ``enapp`` (a few re-priced ENApp iterations and their duals) or ``none``.
WARM_STARTS = ("enapp", "none")


def _shown(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


def check_settings(tol: float | None = None, rho: float | None = None, scheduler: str | None = None,
                   damping: float | None = None, relax: float | None = None,
                   max_iter: int | None = None, warm_start: str | None = None, stop: str | None = None,
                   gap_tol: float | None = None, central_objective: float | None = None) -> None:
    """Reject meaningless distributed settings with :class:`CaseError` (exit 2) before anything is built."""
    import math

    lo, hi = TOL_RANGE
    if tol is not None and not (isinstance(tol, (int, float)) and lo <= tol <= hi):
        raise bad_setting("tol", "--tol", _shown(tol), f"the stopping tolerance must be a number with {lo:g} <= tol "
                          f"<= {hi:g} pu (looser lets the areas disagree; tighter is below the area solves' "
                          "accuracy)")
    if rho is not None and not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho > 0):
        raise bad_setting("rho", "--rho", _shown(rho), "the ADMM penalty must be a finite number > 0 (USD/pu^2)")
    if max_iter is not None and not (isinstance(max_iter, int) and max_iter >= 1):
        raise bad_setting("max_iter", "--max-iter", _shown(max_iter),
                          "the distributed iteration cap must be an integer >= 1")
    if damping is not None and not (isinstance(damping, (int, float)) and 0 < damping <= 1):
        raise bad_setting("damping", "--damping", _shown(damping), "the ENApp damping must be a number with "
                          "0 < damping <= 1 (1 = undamped, as the study ran it)")
    if relax is not None and not (isinstance(relax, (int, float)) and 0 < relax < 2):
        raise CaseError(f"relax = {_shown(relax)}: the ADMM over-relaxation must be in (0, 2)")
    if warm_start is not None and warm_start not in WARM_STARTS:
        raise bad_setting("warm_start", "--warm-start", repr(warm_start), f"choose one of {', '.join(WARM_STARTS)}")
    if stop is not None and stop not in STOP_RULES:
        raise bad_setting("stop", "--stop", repr(stop), f"choose one of {', '.join(STOP_RULES)}")
    if gap_tol is not None and not (isinstance(gap_tol, (int, float)) and 1e-10 <= gap_tol <= 1e-1):
        raise bad_setting("gap_tol", "--gap-tol", _shown(gap_tol),
                          "the relative objective gap tolerance must be a number with 1e-10 <= gap_tol <= 0.1")
    if central_objective is not None and not (isinstance(central_objective, (int, float))
                                              and math.isfinite(central_objective)):
        raise bad_setting("central_objective", "--central-objective", _shown(central_objective),
                          "the central objective must be a finite number (USD)")
    if scheduler is not None:
        from mpdopf_pyomo.decomposition.executors import check_scheduler_address

        check_scheduler_address(scheduler)


def solve_distributed(
    case: Case,
    algorithm: str = "admm",
    formulation: str = "exact",
    solver: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    progress: Progress = quiet,
    *,
    executor: str | None = None,
    scheduler: str | None = None,
    n_areas: int | str | None = None,
    n_workers: int | None = None,
    tol: float = 1e-4,
    max_iter: int = 300,
    keep_last: bool = False,
    stop: str = "residual",
    gap_tol: float = 1e-4,
    central_objective: float | None = None,
    callback: IterationCallback | None = None,
    **algorithm_options: Any,
) -> Results:
    """Solve a case by a distributed algorithm over its areas; returns the same Results as a central run.

    ``algorithm``: a name of :mod:`mpdopf_pyomo.algorithms` (admm, enapp or a registered one);
    ``algorithm_options`` are that algorithm's ``OPTIONS`` (ADMM: ``rho``, ``relax``, ``warm``,
    ``warm_start``...; ENApp: ``damping``); None means its default, an option of another algorithm is
    refused (:class:`CaseError`). ENApp is undamped by default (``damping=1``, the study's exchange; see
    :mod:`.enapp`). ADMM starts from a re-priced ENApp warm start (see :mod:`.admm`).

    Stopping (:class:`.algorithm.StopRule`): ``stop="residual"`` when both boundary residuals are below
    ``tol``; ``stop="gap"`` when the primal residual is below ``tol`` and the objective is within
    ``gap_tol`` of ``central_objective`` (or, without it, changed by at most ``gap_tol`` relative in the
    last iteration). With ``central_objective`` the final gap is reported
    (``summary['distributed']['gap_to_central']``).

    ``executor`` None: processes on a multi-core machine, serial on one core, dask with a ``scheduler``.

    Raises :class:`SolveFailed` (non-zero exit) when the iteration cap is reached before the run has
    converged, unless ``keep_last`` (then ``summary['status'] = 'iteration_limit'`` and
    ``distributed.kept_last_iterate = True``).
    """
    from mpdopf_pyomo import algorithms

    try:
        cls = algorithms.get(algorithm)
    except KeyError:
        raise CaseError(f"unknown distributed algorithm '{algorithm}'; choose one of "
                        f"{', '.join(algorithms.names())}") from None
    check_settings(tol=tol, scheduler=scheduler, max_iter=max_iter, stop=stop, gap_tol=gap_tol,
                   central_objective=central_objective,
                   **{k: v for k, v in algorithm_options.items() if k in _CHECKED})
    # the formulation's defaults for this algorithm (its ports' scaling) under the caller's options; a
    # mapping option (ADMM's kind_scale) is merged key by key
    merged = dict(formulations.get(formulation).algorithm_defaults.get(algorithm, {}))
    for k, v in algorithm_options.items():
        if v is not None:
            merged[k] = {**merged[k], **v} if isinstance(v, Mapping) and isinstance(merged.get(k), Mapping) else v
    algo = cls(**merged)
    options = solvers.check_options(solver, options)
    t0 = time.perf_counter()
    executor = executor or default_executor(scheduler, n_workers)
    exe = make_executor(executor, scheduler, n_workers)
    try:
        if n_areas == "auto":  # as many areas as the executor has workers (a cluster's, not this machine's)
            n_areas = auto_areas(case, **exe.capacity())
        case = with_areas(case, n_areas, formulations.get(formulation).cuttable(case))
    except BaseException:
        exe.close()
        raise
    areas = sorted(int(a) for a in case.buses["area"].unique())
    start = formulations.get(formulation).area_start(case)
    specs = [AreaSpec(case, a, formulation, solver, dict(options or {}), start) for a in areas]
    progress(f"{algorithm}: {len(areas)} areas (cut branches {', '.join(case.cut_branches)}), "
             f"executor {executor}; building the area models")
    try:
        info = exe.start(specs)
        layout = make_layout(case, {a: [tuple(k) for k in info[a]["ports"]] for a in areas})
        build_s = time.perf_counter() - t0
        progress(f"{exe.describe()}: area models built in {build_s:.2f} s; iterating (tolerance {tol:g} pu)")
        t1 = time.perf_counter()
        price = np.array([case.profile.at[t, "price"] * case.settings.dt_h * case.bases.s_kva
                          if kind == "P" else 0.0 for kind, _, t in layout.keys])
        rule = StopRule(tol, stop, gap_tol, central_objective)
        ctx = Context(case, layout, exe, start, price, rule, progress)
        out = drive(algo, ctx, max_iter, callback)
        solve_s = time.perf_counter() - t1
        if not out.converged and not keep_last:
            what = (f"{algorithm} did not converge in {out.iterations} iterations: primal residual "
                    f"{out.primal_residual:.2e} pu, dual residual {out.dual_residual:.2e} pu (tolerance {tol:g}"
                    f"{'' if stop == 'residual' else f', gap tolerance {gap_tol:g}'}); ")
            raise SolveFailed(
                what + "raise max_iter, or set keep_last=True to keep the last iterate. No result was returned.",
                cli_message=what + "raise --max-iter, or pass --keep-last to keep the last iterate. "
                                   "No result was written.",
            )
        parts = exe.map("results", {a: () for a in areas})  # each area's share, read back in its worker
        peak = exe.map("peak_mb", {a: () for a in areas})
        workers = worker_table(exe, info, peak)
    finally:
        exe.close()
    route = info[areas[0]]["route"]
    distributed = {
        "algorithm": algorithm,
        "executor": executor,
        "scheduler": scheduler,
        "areas": len(areas),
        "cut_branches": list(case.cut_branches),
        "iterations": out.iterations,
        "converged": out.converged,
        "kept_last_iterate": bool(keep_last and not out.converged),
        "primal_residual": out.primal_residual,
        "dual_residual": out.dual_residual,
        "tolerance_pu": tol,
        "exchanged_per_iteration": out.exchanged_per_iteration,
        "exchanged_reals_per_iteration": out.exchanged_reals_per_iteration,
        "area_solve_s": out.area_solve_s,
        "area_solve_total_s": out.area_solve_total_s,
        "coordination_s": out.coordination_s,
        "per_iteration_s": (out.area_solve_s + out.coordination_s) / max(out.iterations, 1),
        **timing_summary(out, [float(info[a]["build_s"]) for a in areas], build_s, solve_s,
                         [float(info[a].get("build_cpu_s", 0.0)) for a in areas]),
        "area_retries": int(sum(r["retries"] for r in out.timing)),
        "persistent_area_solvers": all(info[a]["persistent"] for a in areas),
        # peak resident memory of each worker holding areas, MB (the coordinator's own when serial)
        "worker_peak_mb": {w["worker"]: w["peak_mb"] for w in workers},
        "workers": workers,
        "coordinator_peak_mb": peak_rss_mb(),
        "stop": stop,
        **({"gap_tolerance": gap_tol} if stop == "gap" else {}),
        **out.extra,
    }
    results = formulations.get(formulation).results_from_areas(
        case,
        [parts[a] for a in areas],
        algorithm=algorithm,
        formulation=formulation,
        solver=solver.lower(),
        solver_route=route,
        solver_version=info[areas[0]].get("version"),
        solver_stats={"iterations": out.ipopt_iterations, "termination": "optimal"},
        timings={"build_s": build_s, "solve_s": solve_s},
        distributed=distributed,
    )
    if not out.converged:
        results.summary["status"] = "iteration_limit"
    if central_objective is not None:
        distributed["central_objective_usd"] = central_objective
        distributed["gap_to_central"] = rule.gap(results.summary["objective_usd"])
    results.extra_tables["convergence"] = pd.DataFrame(
        out.history, columns=["iteration", "method", "primal_residual", "dual_residual", "objective_usd", "rho", "elapsed_s"]
    ).set_index("iteration")
    results.extra_tables["timing"] = pd.DataFrame(out.timing, columns=list(TIMING_COLUMNS)).set_index("iteration")
    return results


def timing_summary(out: Any, area_build_s: list[float], build_s: float, solve_s: float,
                   area_build_cpu_s: list[float] | None = None) -> dict[str, Any]:
    """summary['distributed'] timing keys: the per-iteration terms of :data:`.core.TIMING_COLUMNS` summed
    over the run, and the projected wall time with one core per area (the slowest area build, then every
    iteration's critical path, transfer and coordinator time) beside the measured build + iterations;
    ``projected_one_core_per_area_cpu`` is the same with the builds' and solves' CPU times (what a
    machine with a free core per area would take when this one was busy with other work)."""
    tot = {c: float(sum(r[c] for r in out.timing)) for c in TIMING_COLUMNS[1:]}
    return {
        "timing_s": {
            "critical_path": tot["critical_s"],
            "area_solves_total": tot["solve_total_s"],
            "waiting": tot["waiting_s"],
            "idle": tot["idle_s"],
            "transfer": tot["transfer_s"],
            "coordinator": tot["coordinator_s"],
            "area_build_max": max(area_build_s, default=0.0),
            "area_build_total": float(sum(area_build_s)),
            "measured_build_and_iterations": build_s + solve_s,
            "projected_one_core_per_area": max(area_build_s, default=0.0) + tot["projected_s"],
            "critical_path_cpu": tot["critical_cpu_s"],
            "area_solves_total_cpu": tot["solve_total_cpu_s"],
            "projected_one_core_per_area_cpu": max(area_build_cpu_s or [0.0]) + tot["critical_cpu_s"]
            + tot["transfer_s"] + tot["coordinator_s"],
        },
    }

