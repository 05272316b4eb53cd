"""The solve pipeline as a Python API: case -> model(s) -> solver -> Results (validation and plots apart).

``solve_case`` is what ``python -m mpdopf_pyomo solve`` calls; tutorials and tests call it too.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import pyomo.environ as pyo

from mpdopf_pyomo import problem, solvers
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.results import Results

ALGORITHMS = ("central", "admm", "enapp")
#: Receives one line per stage or iteration (the CLI prints them on stderr).
Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default progress receiver: says nothing."""


def solve_central(
    case: Case,
    formulation: str = "exact",
    solver: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    tee: bool = False,
    progress: Progress = quiet,
) -> Results:
    """Solve the whole feeder over the horizon as one NLP, from a LinDistFlow starting point."""
    t0 = time.perf_counter()
    progress(f"building the {formulation} model: {len(case.buses)} buses x {case.hours} h")
    m = problem.build_model(case, formulation)
    problem.initialize(m, problem.flat_start(case))
    build_s = time.perf_counter() - t0
    progress(f"solving with {solver}")
    stats = solvers.solve(m, solver, options, tee=tee)
    progress(f"{solver} ({stats.route}) converged in {stats.iterations} iterations, {stats.solve_s:.2f} s")
    n_vars = sum(1 for v in m.component_data_objects(pyo.Var, active=True) if not v.fixed)
    n_cons = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return Results.from_models(
        case,
        [m],
        algorithm="central",
        formulation=formulation,
        solver=stats.solver,
        solver_route=stats.route,
        solver_version=stats.extra.get("version"),
        solver_stats={"iterations": stats.iterations, "termination": stats.termination,
                      "variables": n_vars, "constraints": n_cons, "mumps": stats.extra.get("mumps")},
        timings={"build_s": build_s, "solve_s": stats.solve_s},
    )


def solve_case(
    case: Case,
    algorithm: str = "central",
    formulation: str = "exact",
    solver: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    tee: bool = False,
    progress: Progress = quiet,
    **distributed: Any,
) -> Results:
    """Solve a loaded case centrally or distributed; ``distributed`` keywords go to the decomposition.

    ``tee`` (the solver's own log) applies to the central solve; a distributed run prints one line per
    iteration through ``progress`` instead.
    """
    if algorithm == "central":
        if distributed:
            raise CaseError(f"options {sorted(distributed)} apply only to distributed algorithms")
        results = solve_central(case, formulation, solver, options, tee, progress)
    elif algorithm in ("admm", "enapp"):
        from mpdopf_pyomo.decomposition import solve_distributed

        results = solve_distributed(
            case, algorithm=algorithm, formulation=formulation, solver=solver, options=options,
            progress=progress, **distributed,
        )
    else:
        raise CaseError(f"unknown algorithm '{algorithm}'; choose one of {', '.join(ALGORITHMS)}")
    if case.conversion is not None:  # what the balanced network approximated: summary.json + a table
        results.summary["conversion_report"] = case.conversion.as_dict()
        results.extra_tables["conversion_report"] = case.conversion.as_table()
    return results

