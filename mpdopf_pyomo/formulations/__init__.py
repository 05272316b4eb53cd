"""The formulation registry: a formulation owns its physics, its central problem and how its results read back.

Every name ``--formulation`` accepts is a key of :data:`FORMULATIONS`; the CLI's choices, ``cases show``,
the pipeline and validation look a formulation up here and call it without knowing which one it is:

* ``family``: ``"balanced"`` (the single-phase equivalent DistFlow of :mod:`mpdopf_pyomo.blocks.branch_flow`:
  ``exact``, ``socp``, ``linear``) or ``"three-phase"`` (:mod:`.three_phase`: ``3ph-exact``; :mod:`.three_phase_linear`: ``3ph-linear``);
* :meth:`OpfFormulation.unsupported` - why a case cannot use it (None: it can);
* :meth:`OpfFormulation.solve_central` - build, start, solve and read back the central problem;
* ``distributed`` - whether ``--algorithm admm|enapp`` may use it;
* ``validation`` - ``"balanced"`` (check (1) on the exported balanced network, then the original feeder
  as a report), ``"nodes"`` (every bus and phase of the original feeder, pass or fail) or
  ``"nodes-report"`` (the same node-by-node comparison, reported as an approximation's gap: never fails).

Adding a formulation is one module with one :class:`OpfFormulation` subclass and one :func:`register` call.
A distributed formulation (``distributed = True``) also gives the decomposition its area models through
:meth:`OpfFormulation.area_start`, :meth:`~OpfFormulation.build_area`, :meth:`~OpfFormulation.initialize_area`,
:meth:`~OpfFormulation.cuttable`, :meth:`~OpfFormulation.area_results` and
:meth:`~OpfFormulation.results_from_areas`; the defaults are the
balanced family's (:mod:`mpdopf_pyomo.problem`), ``3ph-exact`` overrides them
(:mod:`.three_phase_areas`: per-phase ports).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Literal, Mapping

from mpdopf_pyomo.errors import CaseError

if TYPE_CHECKING:
    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.progress import Progress
    from mpdopf_pyomo.results import Results


class OpfFormulation(ABC):
    """One formulation of the multi-period OPF (see the module docstring)."""

    name: str
    family: Literal["balanced", "three-phase"]
    description: str
    distributed: bool = False
    #: distributed algorithms it cannot be solved with (any other registered one may be used)
    refused_algorithms: tuple[str, ...] = ()
    #: per distributed algorithm, default options that suit this formulation's ports (the algorithm's own
    #: defaults otherwise; an option the caller gives wins), e.g. ADMM's penalty per kind of port
    algorithm_defaults: dict[str, dict[str, Any]] = {}
    validation: Literal["balanced", "nodes", "nodes-report"] = "balanced"
    #: IPOPT options of this formulation's central solve, measured to suit its problems (see each
    #: formulation); an option the caller gives wins, key by key; other solvers get none of them
    solver_defaults: dict[str, Any] = {}

    def unsupported(self, case: "Case") -> str | None:
        """Why ``case`` cannot be solved with this formulation, one phrase; None when it can."""
        return None

    @abstractmethod
    def solve_central(self, case: "Case", solver: str, options: Mapping[str, Any] | None, tee: bool,
                      progress: "Progress") -> "Results":
        """Build the whole-feeder, whole-horizon NLP, solve it and return its :class:`Results`."""

    # --- the distributed solve's seams (defaults: the balanced family's area models) ----------------
    def area_start(self, case: "Case") -> dict[str, Any]:
        """The starting point every area model starts from (picklable; :func:`~mpdopf_pyomo.decomposition.core.
        initial_boundary` reads the boundary's first consensus values from it)."""
        from mpdopf_pyomo import problem

        return problem.flat_start(case)

    def build_area(self, case: "Case", area: int) -> Any:
        """Area ``area``'s model with ``m.ports`` ((kind, port name, hour) -> Var; kind P, Q or v) and the
        cost expressions ``energy_cost``, ``loss_cost``, ``terminal_cost``."""
        from mpdopf_pyomo import problem

        return problem.build_model(case, self.name, area)

    def initialize_area(self, case: "Case", m: Any, start: dict[str, Any] | None) -> None:
        """Load :meth:`area_start`'s point into an area model of :meth:`build_area`."""
        from mpdopf_pyomo import problem

        problem.initialize(m, start if start is not None else problem.flat_start(case))

    def cuttable(self, case: "Case") -> set[str] | None:
        """The branches an automatic partition may cut (None: any)."""
        return None

    def area_results(self, case: "Case", m: Any) -> Any:
        """The share of the results one solved area model holds, picklable: computed where the area lives
        (a worker process), so that the coordinator assembles the results without building the areas."""
        from mpdopf_pyomo.results import model_rows

        return model_rows(case, m)

    def results_from_areas(self, case: "Case", parts: list[Any], **summary: Any) -> "Results":
        """The :class:`Results` of a distributed run from every area's :meth:`area_results`, in area order."""
        from mpdopf_pyomo.results import Results

        return Results.from_rows(case, parts, **summary)


#: Every formulation by name, in the order the CLI lists them.
FORMULATIONS: dict[str, OpfFormulation] = {}


def register(f: OpfFormulation) -> OpfFormulation:
    """Add ``f`` to :data:`FORMULATIONS` under ``f.name``."""
    FORMULATIONS[f.name] = f
    return f


def get(name: str) -> OpfFormulation:
    """The formulation called ``name``; :class:`CaseError` (exit 2) naming the known ones otherwise."""
    try:
        return FORMULATIONS[name]
    except KeyError:
        raise CaseError(f"--formulation: unknown formulation '{name}'; choose one of {', '.join(FORMULATIONS)}") from None


def check(name: str, case: "Case", algorithm: str = "central") -> OpfFormulation:
    """The formulation ``name`` after checking it can solve ``case`` with ``algorithm`` (one-line
    :class:`CaseError`, exit 2, otherwise)."""
    f = get(name)
    if algorithm != "central" and not f.distributed:
        raise CaseError(f"--formulation {name} has no distributed solve yet; use --algorithm central "
                        f"(or a balanced formulation: {', '.join(n for n, g in FORMULATIONS.items() if g.distributed)})")
    if algorithm in f.refused_algorithms:
        raise CaseError(f"--formulation {name} has no {algorithm} solve yet; use another --algorithm (central, admm)")
    why = f.unsupported(case)
    if why:
        raise CaseError(f"--formulation {name}: {case.source}: {why}")
    return f


def solve_model(m: Any, solver: str, options: Mapping[str, Any] | None, tee: bool,
                progress: "Progress", defaults: Mapping[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Solve a built central model (:func:`mpdopf_pyomo.solvers.solve`) with the progress lines every
    formulation prints; returns the solver's stats and the summary's ``solver_stats`` common to all
    (iterations, termination, free variables and active constraints of the model, MUMPS version, and
    every option the solver was given: the defaults, the formulation's, the limits and the caller's).

    ``defaults`` (a formulation's :attr:`OpfFormulation.solver_defaults`) go to IPOPT under ``options``."""
    from mpdopf_pyomo import pyo, solvers

    if defaults and solver.lower() in ("ipopt", "cyipopt"):
        options = {**defaults, **(options or {})}
    progress(f"solving with {solver}")
    stats = solvers.solve(m, solver, options, tee=tee)
    progress(f"{solver} ({stats.route}) converged in {stats.iterations} iterations, {stats.solve_s:.2f} s")
    n_vars = sum(1 for x in m.component_data_objects(pyo.Var, active=True) if not x.fixed)
    n_cons = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
    return stats, {"iterations": stats.iterations, "termination": stats.termination, "variables": n_vars,
                   "constraints": n_cons, "mumps": stats.extra.get("mumps"), "options": stats.extra.get("options")}


def supported(case: "Case") -> list[tuple[str, str | None]]:
    """Every formulation with None (supported) or the reason it cannot solve ``case``."""
    return [(name, f.unsupported(case)) for name, f in FORMULATIONS.items()]


from mpdopf_pyomo.formulations import balanced as _balanced  # noqa: E402,F401  (registers exact, socp, linear)
from mpdopf_pyomo.formulations import three_phase as _three_phase  # noqa: E402,F401  (registers 3ph-exact)
from mpdopf_pyomo.formulations import three_phase_linear as _three_phase_linear  # noqa: E402,F401  (registers 3ph-linear)
