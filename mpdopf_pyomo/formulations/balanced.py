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

#: IPOPT options of each balanced formulation's central solve: the adaptive barrier update with the LOQO
#: oracle. Measured 2026-12-02 (AMPL ipopt 3.14.19, MUMPS 5.8.2, `python -m mpdopf_pyomo solve ...
#: --solver-option mu_strategy=adaptive --solver-option mu_oracle=loqo`) on the bundled cases at 1, 5 and
#: 24 h (ieee123-published 1, 5, 10 h): 790 -> 691 iterations over the 24 exact solves, 480 -> 439 over the
#: linear ones; ieee123 x 24 h exact 61 -> 37 (IPOPT 1.9-2.4 -> 1.3 s CPU), case141 x 24 h 56 -> 44,
#: generated 1,025 buses x 5 h 40 -> 38 and 2,561 x 24 h 44 -> 43 (the same 61 s CPU); one row costs
#: iterations, case33bw x 1 h (20 -> 26). It ends at a smaller barrier parameter, so the optimum agrees with
#: the monotone update's to 1e-8 relative and lies nearer the true one (ieee123 x 24 h: 5785.5239818 USD,
#: monotone 5785.5240408 at tol 1e-8 and 5785.5239818 at tol 1e-10). The probing oracle saves more on the
#: bundled cases (595 iterations; ieee123-published x 5 h 59 -> 28) but costs them at scale (2,561 x 24 h
#: 44 -> 61, 97 -> 192 s). ``socp`` keeps the monotone update: both oracles cost it iterations on
#: ieee123-opendss x 24 h (42 -> 89 with LOQO, 824 with probing).
ADAPTIVE_LOQO = {"mu_strategy": "adaptive", "mu_oracle": "loqo"}
CENTRAL_IPOPT_OPTIONS: dict[str, dict[str, Any]] = {"exact": ADAPTIVE_LOQO, "linear": ADAPTIVE_LOQO, "socp": {}}

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
        self.solver_defaults = dict(CENTRAL_IPOPT_OPTIONS[name])

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
        stats, solver_stats = solve_model(m, solver, options, tee, progress, self.solver_defaults)
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
