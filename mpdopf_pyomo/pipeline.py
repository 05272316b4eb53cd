"""The solve pipeline as a Python API: case -> model(s) -> solver -> Results -> OpenDSS check.

:func:`solve` is what ``python -m mpdopf_pyomo solve`` and ``mpdopf_pyomo.solve`` call (load, solve, check);
:func:`solve_case` solves a loaded case, :func:`solve_central` the central NLP alone. Files and figures are
the CLI's (``Results.save``, ``plots``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from mpdopf_pyomo import formulations, solvers
from mpdopf_pyomo.case import Case, load_case
from mpdopf_pyomo.errors import CaseError, MpdopfError
from mpdopf_pyomo.progress import Progress, quiet
from mpdopf_pyomo.results import Results



def solve_central(
    case: Case,
    formulation: str = "exact",
    solver: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    tee: bool = False,
    progress: Progress = quiet,
) -> Results:
    """Solve the whole feeder over the horizon as one NLP with the formulation ``formulation``
    (:data:`mpdopf_pyomo.formulations.FORMULATIONS`: it builds, starts, solves and reads back)."""
    return formulations.check(formulation, case).solve_central(case, solver, options, tee, progress)


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
    from mpdopf_pyomo import algorithms

    if algorithm == "central":
        if distributed:
            raise CaseError(f"options {sorted(distributed)} apply only to distributed algorithms")
        results = solve_central(case, formulation, solver, options, tee, progress)
    elif algorithm in algorithms.names():
        from mpdopf_pyomo.decomposition import solve_distributed

        formulations.check(formulation, case, algorithm)

        results = solve_distributed(
            case, algorithm=algorithm, formulation=formulation, solver=solver, options=options,
            progress=progress, **distributed,
        )
    else:
        raise CaseError(f"unknown algorithm '{algorithm}'; choose one of central, {', '.join(algorithms.names())}")
    if case.conversion is not None:  # what the balanced network approximated: summary.json + a table
        results.summary["conversion_report"] = case.conversion.as_dict()
        results.extra_tables["conversion_report"] = case.conversion.as_table()
    return results



def solve(
    case: Case | str | Path,
    hours: int | None = None,
    algorithm: str = "central",
    formulation: str = "exact",
    solver: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    validate: bool = True,
    tee: bool = False,
    progress: Progress = quiet,
    start: float | None = None,
    **distributed: Any,
) -> Results:
    """Load ``case`` (a bundled name, a case or network file, or a loaded :class:`Case`), solve and check it.

    The same steps as ``python -m mpdopf_pyomo solve``, without files: solver options are checked first,
    then the case is solved (``algorithm`` central or a name of :mod:`mpdopf_pyomo.algorithms`; ``distributed`` keywords such as
    ``n_areas``, ``executor``, ``tol`` go to the decomposition) and, with ``validate``, every hour is
    checked in OpenDSS (``results.summary["validation"]``). ``hours`` and ``start`` (clock hour of the
    first period; None: the middle of the day) apply when ``case`` is not loaded.
    """
    options = solvers.check_options(solver, options)
    if not isinstance(case, Case):
        case = load_case(case, hours, start=start)
    elif hours is not None and hours != case.hours:
        raise CaseError(f"{case.source}: hours = {hours}, but the loaded case has {case.hours} periods; "
                        "load it with load_case(name, hours)")
    elif start is not None and float(start) != float(case.profile["clock_hour"].iloc[0]):
        raise CaseError(f"{case.source}: start = {start}, but the loaded case starts at clock hour "
                        f"{case.profile['clock_hour'].iloc[0]}; load it with load_case(name, hours, start=start)")
    results = solve_case(case, algorithm, formulation, solver, options, tee=tee, progress=progress, **distributed)
    results.summary["case_file"] = str(case.source)
    if validate:
        progress("validating every hour in OpenDSS")
        validate_results(results)
    return results


def validate_results(results: Results) -> dict[str, Any]:
    """Check a solved plan hour by hour in OpenDSS; attach and return ``results.summary["validation"]``."""
    from mpdopf_pyomo.validation import attach_validation

    if results.case is None:
        raise MpdopfError("these results carry no case (read back from a folder): "
                          "use mpdopf_pyomo.validation.revalidate_folder(folder)")
    attach_validation(results.case, results)
    return results.summary["validation"]
