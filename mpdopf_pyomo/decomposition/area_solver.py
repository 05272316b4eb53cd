"""One area's NLP, built once and re-solved warm at every iteration of a distributed algorithm.

The area model is the formulation's area build (:meth:`~mpdopf_pyomo.formulations.OpfFormulation.build_area`:
:func:`mpdopf_pyomo.problem.build_model` for the balanced family) plus, per boundary port k (a
(kind, cut branch, hour) key of ``m.ports``), two coefficient *variables* whose lower and upper bounds
are set equal (so IPOPT treats them as parameters, ``fixed_variable_treatment=make_parameter``, and the
NL writer does not substitute them away as it would fixed variables):

    objective = base cost (energy + battery loss + terminal) + sum_k  w2_k x_k^2 + w1_k x_k

ADMM sets ``w2 = rho/2`` and ``w1 = lambda - rho z`` (the augmented Lagrangian up to a constant); ENApp
leaves them at zero and pins the ports it receives (lower bound = upper bound = received value).

With IPOPT through the library route (cyipopt) the PyNumero ``PyomoNLP`` is built once; an iteration
only changes the bound arrays handed to a new ``cyipopt`` problem object over the same NLP and starts
from the previous primal and dual point (``warm_start_init_point``). Any other solver or route falls
back to updating the Pyomo bounds and calling :func:`mpdopf_pyomo.solvers.solve` (slower, same answer).

The warm re-solves use IPOPT's adaptive barrier and an iteration cap, then a cold retry: with the
monotone barrier, a warm start whose received values moved far crawled at mu = 1e-6 (2,561 buses x
24 h: four parent areas ran to 1,000 iterations, 135-170 s each, in one round; see
:data:`WARM_START_OPTIONS`, :data:`WARM_MIN_ITER` and :meth:`AreaSolver.solve`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pyomo.environ as pyo

from mpdopf_pyomo import solvers
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import SolveFailed

PortKey = tuple[str, str, int]

#: IPOPT options of the re-solves from the previous point (measured on ieee123: these cut the warm
#: re-solves from ~25 to ~8-12 IPOPT iterations). ``mu_strategy adaptive``: with IPOPT's default
#: (monotone) barrier, a warm start whose received boundary values moved far crawls at mu = 1e-6: the
#: previous point sits 1e-9 from its bounds, so the fraction-to-the-boundary rule cuts every step to
#: alpha ~ 1e-4..1e-3 while the primal infeasibility stays ~0.6 pu. Measured on the generated
#: 2,561-bus feeder x 24 h, 20 areas (ADMM's ENApp warm start, round 2, where the parents receive their
#: children's head power: 0.9 pu off the point they start from): the four parent areas each ran into
#: max_iter (1,000 iterations, 135-170 s) before the cold retry solved them in 41-42; in round 3 the
#: root area took 410 iterations (72 s). The same solves warm with the adaptive barrier (the mu oracle
#: raises mu when the point is far from the central path) take 5-6 iterations and agree with the cold
#: solve to 2e-9 in the objective. ieee123 24 h ADMM: IPOPT iterations 2,312 -> 870, same 37
#: iterations and objective; ieee123 5 h: 1,060 -> 600, same 25. Not used for the cold solves (the
#: first one, and the retry below): there it saves iterations but not time (see solvers.IPOPT_DEFAULTS).
WARM_START_OPTIONS: dict[str, Any] = {
    "warm_start_init_point": "yes",
    "mu_strategy": "adaptive",
    "mu_init": 1e-6,
    "warm_start_bound_push": 1e-9,
    "warm_start_bound_frac": 1e-9,
    "warm_start_slack_bound_push": 1e-9,
    "warm_start_slack_bound_frac": 1e-9,
    "warm_start_mult_bound_push": 1e-9,
}
#: A warm re-solve stops at max(WARM_MIN_ITER, WARM_ITER_FACTOR x the iterations of the area's last cold
#: solve) and the area is solved again cold (a stalled warm start would otherwise run to max_iter first:
#: 1,000 iterations, 25 x a cold solve, on the 2,561-bus feeder before ``mu_strategy adaptive``). The
#: normal warm re-solves take at most ~1.5 x a cold solve (ieee123 24 h: 49 against 33), so the cap
#: changes nothing there and bounds a stall at about 4 x a cold solve.
WARM_MIN_ITER = 60
WARM_ITER_FACTOR = 3

#: IPOPT options of an area's first solve, from the LinDistFlow start (near-feasible, so a smaller first
#: barrier than IPOPT's 0.1 suits it); the warm re-solves override them (:data:`WARM_START_OPTIONS`), the
#: user's --solver-option overrides both. Measured on the 1,025-bus feeder, 5 h, 8 areas, the round-1
#: solves of the ENApp warm start (IPOPT iterations summed over the areas, CPU s): IPOPT's defaults 448,
#: 2.04 s; mu_init 3e-2: 354; 1e-2: 363, 1.65 s; 5e-3: 353; 2e-3: 405; 1e-3: 695 (slower);
#: mu_strategy adaptive: 420; adaptive + mu_init 1e-2: 420; bound_push = bound_frac = 1e-4: 540; tol 1e-6:
#: 319 (not used: the warm re-solves would keep the looser tolerance). Whole ADMM runs, 5 h, IPOPT
#: iterations (ADMM iterations unchanged): ieee123 600 -> 565, ieee34 2,665 -> 2,656, case141 201 -> 203,
#: 1,025 buses 490 -> 403; with bound_push = bound_frac = 1e-3 as well 556, 2,800 (worse), 201, 383:
#: not kept.
COLD_START_OPTIONS: dict[str, Any] = {"mu_init": 1e-2}


#: IPOPT's "Solved To Acceptable Level".
IPOPT_ACCEPTABLE = 1
#: Stiffness of a received boundary value an area cannot meet (USD/pu^2, pu^2 for v): the area re-solves
#: with (x - received)^2 at this weight instead of the pin (see :meth:`AreaSolver.solve`).
ELASTIC_PIN = 1.0e6


@dataclass
class AreaSpec:
    """Everything a worker needs to build one area's solver (picklable)."""

    case: Case
    area: int
    formulation: str = "exact"
    solver: str = "ipopt"
    options: dict[str, Any] = field(default_factory=dict)
    start: dict[str, Any] | None = None  #: from problem.flat_start(case); computed when None


def build_area_model(case: Case, area: int, formulation: str = "exact") -> pyo.ConcreteModel:
    """The area's model with the distributed-algorithm coefficients ``dist_w2``, ``dist_w1``.

    ``m.dist_keys`` lists the ports in a fixed order (sorted keys); the coordinator uses the same order.
    """
    from mpdopf_pyomo.formulations import get

    m = get(formulation).build_area(case, area)  # balanced: problem.build_model; 3ph-exact: per-phase ports
    keys = sorted(m.ports)
    m.dist_keys = keys
    idx = list(range(len(keys)))
    m.dist_w2 = pyo.Var(idx, bounds=(0.0, 0.0), initialize=0.0)
    m.dist_w1 = pyo.Var(idx, bounds=(0.0, 0.0), initialize=0.0)
    m.obj.deactivate()
    m.dist_obj = pyo.Objective(
        expr=m.energy_cost
        + m.loss_cost
        + m.terminal_cost
        + sum(m.dist_w2[i] * m.ports[k] ** 2 + m.dist_w1[i] * m.ports[k] for i, k in enumerate(keys))
    )
    return m


def _cpu_time() -> float:
    """CPU seconds of this thread plus those of the finished child processes (a solver executable)."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def solver_info(solver: str) -> solvers.SolverInfo:
    """The route an area solve takes: many small warm solves, so IPOPT takes the library route (one
    persistent NLP per area) even when an AMPL ipopt executable is installed, which would write an NL file
    and start a process per solve. Even the cold first round does not pay on the executable: 1,025 buses x
    5 h, 8 areas, the round-1 solves in one process, 2.05 s wall library against 2.38 s executable (its NL
    write and process start per area outweigh its cheaper iterations: same 448 IPOPT iterations)."""
    info = solvers.probe("cyipopt") if solver.lower() == "ipopt" else solvers.probe(solver)
    return info if info.available else solvers.probe(solver)


def prepare_process(solver: str) -> None:
    """This process's one-time set-up of the area solves, done before a :class:`~.executors.ProcessExecutor`
    forks its workers so that they inherit it rather than each repeat it: import the solver library
    (SciPy's optimize left out: :func:`~mpdopf_pyomo.solvers.import_cyipopt`) and PyNumero, and make Pyomo's
    first ``CtypesEnviron``, which PyomoNLP enters (the Windows C runtimes skipped off Windows:
    :func:`_skip_windows_runtimes`). About 0.15 s wall, 0.11 s CPU on the reference machine (0.33 s wall,
    0.45 s CPU with SciPy's optimize and the runtime look-ups)."""
    info = solver_info(solver)
    if info.available and info.route == "library":
        from pyomo.common.env import CtypesEnviron

        solvers._attach_pynumero()
        from pyomo.contrib.pynumero.interfaces import cyipopt_interface, pyomo_nlp  # noqa: F401

        _skip_windows_runtimes()
        CtypesEnviron()


def _skip_windows_runtimes() -> None:
    """Off Windows, mark the Windows C runtimes that Pyomo's ``CtypesEnviron`` looks for (kernel32, msvcrt,
    msvcr70..120: ten ``ctypes.util.find_library`` calls, each running gcc and ldconfig, 0.13 s on the
    reference machine) as absent without looking: no such library loads on Linux or macOS. The class
    attribute is private to Pyomo; if it changes, this does nothing and only the time is lost."""
    import sys

    if sys.platform.startswith(("win", "cygwin", "msys")):
        return
    try:
        from pyomo.common.env import CtypesEnviron

        for dll in CtypesEnviron.DLLs:
            if getattr(dll, "_loaded", False) is None:
                dll._loaded = False
    except Exception:  # pragma: no cover - a Pyomo without these internals
        pass


class AreaSolver:
    """An area model and its persistent solver; :meth:`solve` is one iteration's area solve."""

    def __init__(self, spec: AreaSpec):
        t0, c0 = time.perf_counter(), time.thread_time()
        self.area = spec.area
        self.case = spec.case
        self.formulation = spec.formulation
        self.solver = spec.solver
        self.options = dict(spec.options)
        from mpdopf_pyomo.formulations import get

        m = build_area_model(spec.case, spec.area, spec.formulation)
        get(spec.formulation).initialize_area(spec.case, m, spec.start)
        self.model = m
        self.keys: list[PortKey] = list(m.dist_keys)
        self.port_vars = [m.ports[k] for k in self.keys]
        info = solver_info(spec.solver)
        self.limits = solvers.default_limits(spec.solver, self.options, info.version)
        self.route = info.route or ""
        self.version = info.version
        self.persistent = info.available and info.route == "library" and spec.solver.lower() in ("ipopt", "cyipopt")
        if self.persistent:  # (the first solve's options ride with the limits: a warm re-solve overrides them)
            self.limits = {**COLD_START_OPTIONS, **self.limits}
        self.n_solves = 0
        if self.persistent:
            self._build_nlp()
        self.build_s = time.perf_counter() - t0
        self.build_cpu_s = time.thread_time() - c0

    # ----------------------------------------------------------------------------------------------
    def _build_nlp(self) -> None:
        solvers._attach_pynumero()
        _skip_windows_runtimes()
        solvers.import_cyipopt()  # the one libipopt of this process, before PyNumero checks for cyipopt
        from pyomo.contrib.pynumero.interfaces.cyipopt_interface import CyIpoptNLP
        from pyomo.contrib.pynumero.interfaces.pyomo_nlp import PyomoNLP

        m = self.model
        nlp = PyomoNLP(m)
        self._nlp = nlp
        n = len(self.keys)
        self._i_w2 = np.array(nlp.get_primal_indices([m.dist_w2[i] for i in range(n)]), dtype=int)
        self._i_w1 = np.array(nlp.get_primal_indices([m.dist_w1[i] for i in range(n)]), dtype=int)
        # Ports that are fixed Pyomo vars (a cut at the substation bus) are constants, not NLP variables.
        self._port_fixed = np.array([v.fixed for v in self.port_vars])
        self._i_port = np.full(n, -1, dtype=int)
        free = [k for k in range(n) if not self._port_fixed[k]]
        if free:
            self._i_port[free] = nlp.get_primal_indices([self.port_vars[k] for k in free])
        self._lb0 = nlp.primals_lb().copy()
        self._ub0 = nlp.primals_ub().copy()
        self._x = nlp.init_primals().copy()
        self._mult = None  # (mult_g, zl, zu) of the last solve
        self._cold_iters = 0  # IPOPT iterations of the last cold solve (sets the warm solves' cap)
        counter = {"n": 0}
        self._counter = counter

        def _count(nlp_, problem_, alg_mod, iter_count, obj, inf_pr, inf_du, mu, d_norm, reg, a_du, a_pr, ls):  # type: ignore[no-untyped-def]  # noqa: E501
            counter["n"] = int(iter_count)
            return True

        class _Problem(CyIpoptNLP):  # the same NLP with this iteration's variable bounds
            def __init__(self, nlp_: Any, lb: np.ndarray, ub: np.ndarray):
                self._lb, self._ub = lb, ub
                super().__init__(nlp_, intermediate_callback=_count)

            def x_lb(self) -> np.ndarray:
                return self._lb

            def x_ub(self) -> np.ndarray:
                return self._ub

        self._Problem = _Problem

    def ports(self) -> list[PortKey]:
        """The area's port keys, in the order of every array :meth:`solve` takes and returns."""
        return list(self.keys)

    # ----------------------------------------------------------------------------------------------
    def solve(self, w2: np.ndarray, w1: np.ndarray, pin: np.ndarray | None = None,
              iteration: int = 0) -> dict[str, Any]:
        """Solve with penalty coefficients ``w2``, ``w1`` and ports pinned where ``pin`` is not NaN.

        Returns ``x`` (port values), ``cost`` (the area's base cost, USD), ``iterations`` (IPOPT's, of every
        attempt), ``attempts`` (their kinds in order: ``warm``, ``cold``, ``elastic warm``, ...; see
        :meth:`_solve_with_retry`), ``elastic``, ``solve_s`` (wall)
        and ``cpu_s`` (CPU time of this thread: the solve's time on a core of its own, whatever else the
        machine runs; IPOPT and the model evaluations run in this one thread; a solver executable's time
        is added when it ends).
        Raises :class:`SolveFailed` naming the area and iteration unless the solve is optimal.
        """
        w2 = np.asarray(w2, dtype=float)
        w1 = np.asarray(w1, dtype=float)
        pin = np.full(len(self.keys), np.nan) if pin is None else np.asarray(pin, dtype=float)
        t0, c0 = time.perf_counter(), _cpu_time()
        attempts: list[str] = []
        spent = [0]  # IPOPT iterations of every attempt, the failed ones included
        elastic = False
        try:
            x_ports, total = self._solve_with_retry(w2, w1, pin, attempts, spent)
        except SolveFailed as exc:
            pinned = ~np.isnan(pin)
            if not pinned.any():
                raise SolveFailed(f"area {self.area}, iteration {iteration}: {exc}") from None
            # No feasible point at the received boundary values (e.g. a root voltage above what the area's
            # regulators allow): solve again with the pins as stiff penalties, which returns the nearest
            # values the area can take; the coordinator sees the mismatch and moves on.
            k = np.where(pinned, ELASTIC_PIN, 0.0)
            w2 = w2 + k
            w1 = w1 - 2.0 * k * np.nan_to_num(pin)
            try:
                x_ports, total = self._solve_with_retry(w2, w1, np.full(len(pin), np.nan), attempts, spent,
                                                        "elastic ")
            except SolveFailed as exc2:
                raise SolveFailed(f"area {self.area}, iteration {iteration}: {exc}; with the received "
                                  f"boundary values relaxed: {exc2}") from None
            elastic = True
        self.n_solves += 1
        cost = total - float(np.sum(w2 * x_ports**2 + w1 * x_ports))  # the area's base cost (also elastic)
        return {"x": x_ports, "cost": cost, "iterations": spent[0], "solve_s": time.perf_counter() - t0,
                "cpu_s": _cpu_time() - c0, "elastic": elastic, "attempts": attempts}

    def _solve_with_retry(self, w2: np.ndarray, w1: np.ndarray, pin: np.ndarray, attempts: list[str],
                          spent: list[int], label: str = "") -> tuple[np.ndarray, float]:
        """One solve (warm from the last point when there is one); a warm solve that fails or reaches its
        iteration cap (:data:`WARM_MIN_ITER`, :data:`WARM_ITER_FACTOR`) is repeated cold, from the
        previous point with IPOPT's own start. Appends each attempt's kind to ``attempts`` and adds its
        IPOPT iterations to ``spent[0]``."""
        if not self.persistent:
            attempts.append(label + "generic")
            x_ports, total, iters = self._solve_generic(w2, w1, pin)
            spent[0] += iters
            return x_ports, total
        warm = self._mult is not None
        attempts.append(label + ("warm" if warm else "cold"))
        try:
            x_ports, total, iters = self._solve_persistent(w2, w1, pin)
        except SolveFailed:
            spent[0] += self._counter["n"]
            if not warm:
                raise
            # the warm start (previous point and multipliers, mu_init 1e-6) can stall when this round's
            # terms moved the optimum far: once more from the previous point with IPOPT's own start
            attempts.append(label + "cold")
            try:
                x_ports, total, iters = self._solve_persistent(w2, w1, pin, cold=True)
            except SolveFailed:
                spent[0] += self._counter["n"]
                raise
        spent[0] += iters
        return x_ports, total

    def _solve_persistent(self, w2: np.ndarray, w1: np.ndarray, pin: np.ndarray,
                          cold: bool = False) -> tuple[np.ndarray, float, int]:
        lb, ub = self._lb0.copy(), self._ub0.copy()
        lb[self._i_w2] = ub[self._i_w2] = w2
        lb[self._i_w1] = ub[self._i_w1] = w1
        pinned = ~np.isnan(pin) & ~self._port_fixed
        lb[self._i_port[pinned]] = ub[self._i_port[pinned]] = pin[pinned]
        x0 = np.clip(self._x, lb, ub)
        prob = self._Problem(self._nlp, lb, ub)
        opts = {**solvers.IPOPT_DEFAULTS, "print_level": 0, "sb": "yes", **self.limits, **self.options}
        warm = self._mult is not None and not cold
        if warm:
            opts = {**opts, **WARM_START_OPTIONS, **self.options}
            cap = max(WARM_MIN_ITER, WARM_ITER_FACTOR * self._cold_iters)
            opts["max_iter"] = min(int(opts.get("max_iter", cap)), cap)
        for key, value in opts.items():
            prob.add_option(key, value)
        self._counter["n"] = 0
        if warm:
            g, zl, zu = self._mult
            x, info = prob.solve(x0, lagrange=g, zl=zl, zu=zu)
        else:
            x, info = prob.solve(x0)
        iters = self._counter["n"]
        # 6: square area (no DERs, ports pinned); 1: solved to IPOPT's acceptable tolerances, enough for one
        # round of an iterative method (the next round starts from it; ieee34 ADMM met it in round 49)
        if info["status"] not in (*solvers.IPOPT_SOLVED_STATUSES, IPOPT_ACCEPTABLE):
            message = solvers.ipopt_status_message(info["status"], info["status_msg"])
            raise SolveFailed(solvers.failure_line(self.solver, message, iters, opts))
        if not warm:
            self._cold_iters = iters
        self._x = x
        self._mult = (info["mult_g"], info["mult_x_L"], info["mult_x_U"])
        xp = np.where(self._port_fixed, [v.value for v in self.port_vars], x[self._i_port])
        return xp.astype(float), float(info["obj_val"]), iters

    def _solve_generic(self, w2: np.ndarray, w1: np.ndarray, pin: np.ndarray) -> tuple[np.ndarray, float, int]:
        m = self.model
        for i in range(len(self.keys)):
            m.dist_w2[i].setlb(float(w2[i]))
            m.dist_w2[i].setub(float(w2[i]))
            m.dist_w2[i].set_value(float(w2[i]))
            m.dist_w1[i].setlb(float(w1[i]))
            m.dist_w1[i].setub(float(w1[i]))
            m.dist_w1[i].set_value(float(w1[i]))
        if not hasattr(self, "_port_bounds"):
            self._port_bounds = [(v.lb, v.ub) for v in self.port_vars]
        for v, (lo, hi), p in zip(self.port_vars, self._port_bounds, pin):
            if v.fixed:
                continue
            if np.isnan(p):
                v.setlb(lo)
                v.setub(hi)
            else:
                v.setlb(float(p))
                v.setub(float(p))
                v.set_value(float(p), skip_validation=True)
        stats = solvers.solve(m, self.solver, self.options)
        xp = np.array([v.value for v in self.port_vars], dtype=float)
        return xp, float(pyo.value(m.dist_obj)), int(stats.iterations or 0)

    def port_state(self) -> dict[str, np.ndarray]:
        """The last solution's port values ``x`` and marginal base costs ``g`` (USD/pu).

        ``g_k`` = d(area cost)/dx_k with the rest of the area re-optimised: for a pinned port it is the
        port's multiplier (where an LMP comes from). It is the Lagrangian gradient of the last solve minus
        the derivative of the ``w2``, ``w1`` terms; NaN where unavailable (generic route, fixed ports).
        """
        g = np.full(len(self.keys), np.nan)
        x_ports = np.array([v.value for v in self.port_vars], dtype=float)
        if self.persistent and self.n_solves:
            nlp, x, lam = self._nlp, self._x, self._mult[0]
            nlp.set_primals(x)
            nlp.set_duals(lam)
            grad = nlp.evaluate_grad_objective() + nlp.evaluate_jacobian().transpose().dot(lam)
            free = ~self._port_fixed
            i = self._i_port[free]
            x_ports[free] = x[i]
            g[free] = grad[i] - (2.0 * x[self._i_w2][free] * x[i] + x[self._i_w1][free])
        return {"x": x_ports, "g": g}

    # ----------------------------------------------------------------------------------------------
    def load_solution(self) -> None:
        """Load the last solution into the Pyomo model (the persistent route keeps it in the NLP's arrays)."""
        if self.persistent and self.n_solves:
            self._nlp.set_primals(self._x)
            for var, val in zip(self._nlp.get_pyomo_variables(), self._x):
                var.set_value(float(val), skip_validation=True)

    def results(self) -> Any:
        """This area's share of the run's results (the formulation's ``area_results`` of the last
        solution): computed here, where the model lives, so the coordinator builds no model to read back."""
        from mpdopf_pyomo.formulations import get

        self.load_solution()
        return get(self.formulation).area_results(self.case, self.model)

    def peak_mb(self) -> float:
        """Peak resident memory of this area's process so far, MB (every area of a worker reports its
        worker's figure)."""
        return peak_rss_mb()

    def info(self) -> dict[str, Any]:
        """Route, version and build time of this area's solver."""
        import os

        return {"area": self.area, "route": self.route, "version": self.version, "persistent": self.persistent,
                "build_s": self.build_s, "build_cpu_s": self.build_cpu_s, "pid": os.getpid(), "ports": self.ports()}


class AreaHost:
    """The area solvers living in one worker (one process, or the coordinator itself when serial)."""

    def __init__(self, specs: list[AreaSpec]):
        self.solvers = {s.area: AreaSolver(s) for s in specs}

    def call(self, method: str, args_by_area: Mapping[int, tuple]) -> dict[int, Any]:
        """Call ``method(*args)`` on each listed area's solver; results by area."""
        return {a: getattr(self.solvers[a], method)(*args) for a, args in args_by_area.items()}

    def pid(self) -> int:
        import os

        return os.getpid()

    def exit_now(self, code: int = 1) -> None:
        """End this worker process at once (used by tests to simulate a crashed worker)."""
        import os

        os._exit(code)
