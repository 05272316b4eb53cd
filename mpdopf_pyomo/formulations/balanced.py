"""The balanced family: DistFlow on the single-phase equivalent (``exact``, ``socp``, ``linear``).

The physics is :mod:`mpdopf_pyomo.blocks.branch_flow` (whose :data:`~mpdopf_pyomo.blocks.branch_flow.FORMULATIONS`
picks the current relation) assembled by :func:`mpdopf_pyomo.problem.build_model`, started from
:func:`~mpdopf_pyomo.problem.flat_start` and read back by :meth:`Results.from_models`; this module only
wraps them, so a balanced run is the same computation as before the registry existed. Every case loads
as a balanced network (an unbalanced feeder through the reduction of :mod:`mpdopf_pyomo.network.reduce`,
whose conversion report says what it approximated), so these formulations support every case.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping

from mpdopf_pyomo.formulations import OpfFormulation, register, solve_model

#: The balanced relations of :data:`mpdopf_pyomo.blocks.branch_flow.FORMULATIONS` (named here so that the
#: CLI can list the formulations without importing Pyomo; a test checks the two agree).
BALANCED = {
    "exact": "balanced DistFlow, l*v = P^2 + Q^2 (exact branch flow, nonconvex)",
    "socp": "balanced DistFlow, l*v >= P^2 + Q^2 (second-order cone relaxation)",
    "linear": "balanced DistFlow, LinDistFlow: l = 0, losses dropped, |V| ~ (1 + v) / 2",
}

if TYPE_CHECKING:
    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.progress import Progress
    from mpdopf_pyomo.results import Results


class Balanced(OpfFormulation):
    """A balanced DistFlow formulation: one relation of :data:`~mpdopf_pyomo.blocks.branch_flow.FORMULATIONS`."""

    family = "balanced"
    distributed = True
    validation = "balanced"

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = BALANCED[name]

    def solve_central(self, case: "Case", solver: str, options: Mapping[str, Any] | None, tee: bool,
                      progress: "Progress") -> "Results":
        """Solve the whole feeder over the horizon as one NLP, from a LinDistFlow starting point."""
        from mpdopf_pyomo import problem
        from mpdopf_pyomo.results import Results

        formulation = self.name
        t0 = time.perf_counter()
        progress(f"building the {formulation} model: {len(case.buses)} buses x {case.hours} h")
        m = problem.build_model(case, formulation)
        problem.initialize(m, problem.flat_start(case))
        build_s = time.perf_counter() - t0
        stats, solver_stats = solve_model(m, solver, options, tee, progress)
        return Results.from_models(
            case,
            [m],
            algorithm="central",
            formulation=formulation,
            solver=stats.solver,
            solver_route=stats.route,
            solver_version=stats.extra.get("version"),
            solver_stats=solver_stats,
            timings={"build_s": build_s, "solve_s": stats.solve_s},
        )


for _name in BALANCED:
    register(Balanced(_name))
