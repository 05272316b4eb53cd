"""What the distributed algorithms share: the boundary layout, the iteration record and the outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from mpdopf_pyomo.case import Case
from mpdopf_pyomo.progress import Progress

PortKey = tuple[str, str, int]
#: A port name is a cut branch, or a cut branch and a qualifier (``"632670|2"``: phase 2 of that cut, as the
#: three-phase formulation names its per-phase ports); :func:`cut_of` gives the branch.
PORT_QUALIFIER = "|"


def cut_of(port_name: str) -> str:
    """The cut branch a port name belongs to (the name up to :data:`PORT_QUALIFIER`)."""
    return port_name.split(PORT_QUALIFIER, 1)[0]
#: Called after every iteration with (iteration, executor); tests use it to kill a worker mid-run.
IterationCallback = Callable[[int, Any], None]


@dataclass
class Layout:
    """Where every boundary value lives: global keys (kind, cut, hour) and each area's ports among them.

    Each key is held by exactly two areas: the parent (where the child is a withdrawal ``P_out``/``Q_out``
    and ``v`` is the parent-side bus voltage) and the child (the cut branch's flow and its root voltage).
    """

    keys: list[PortKey]
    area_ports: dict[int, list[PortKey]]
    parent: dict[str, int]  #: cut branch -> parent area
    child: dict[str, int]  #: cut branch -> child area
    index: dict[int, np.ndarray] = field(default_factory=dict)  #: area -> global index of its ports

    def __post_init__(self) -> None:
        pos = {k: i for i, k in enumerate(self.keys)}
        self.index = {a: np.array([pos[k] for k in ks], dtype=int) for a, ks in self.area_ports.items()}

    @property
    def areas(self) -> list[int]:
        return sorted(self.area_ports)

    @property
    def n_boundaries(self) -> int:
        return len(self.parent)

    def kinds(self) -> np.ndarray:
        return np.array([k[0] for k in self.keys])

    @property
    def boundary_hours(self) -> int:
        """Number of (cut branch, hour) pairs."""
        return len({(cut_of(k[1]), k[2]) for k in self.keys})

    def copies(self, out: dict[int, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """The parent's and the child's copy of every boundary value from the areas' solves."""
        parent_mask = self.holder("parent")
        x_par = np.empty(len(self.keys))
        x_chi = np.empty(len(self.keys))
        for a in self.areas:
            xa, pm = out[a]["x"], parent_mask[a]
            x_par[self.index[a][pm]] = xa[pm]
            x_chi[self.index[a][~pm]] = xa[~pm]
        return x_par, x_chi

    def holder(self, side: str) -> dict[int, np.ndarray]:
        """Per area, a mask over its ports: True where it is the ``side`` ('parent' or 'child') of the cut."""
        who = self.parent if side == "parent" else self.child
        return {a: np.array([who[cut_of(k[1])] == a for k in ks], dtype=bool) for a, ks in self.area_ports.items()}


def make_layout(case: Case, area_ports: dict[int, list[PortKey]]) -> Layout:
    """Build the layout from the ports each area reported."""
    keys = sorted({k for ks in area_ports.values() for k in ks})
    area_of = case.buses["area"]
    parent = {c: int(area_of[case.branches.at[c, "from_bus"]]) for c in case.cut_branches}
    child = {c: int(area_of[case.branches.at[c, "to_bus"]]) for c in case.cut_branches}
    for k in keys:
        holders = [a for a, ks in area_ports.items() if k in ks]
        if sorted(holders) != sorted((parent[cut_of(k[1])], child[cut_of(k[1])])):
            raise RuntimeError(f"boundary value {k} is held by areas {holders}")
    return Layout(keys, area_ports, parent, child)


def initial_boundary(case: Case, layout: Layout, start: dict[str, pd.DataFrame]) -> np.ndarray:
    """Boundary values of the starting point: P, Q of the cut branch, v of its parent-side bus (from the
    LinDistFlow point), or ``start["ports"][key]`` when the formulation's start gives its ports' values."""
    if "ports" in start:
        return np.array([float(start["ports"][k]) for k in layout.keys])
    z = np.empty(len(layout.keys))
    for i, (kind, cut, t) in enumerate(layout.keys):
        if kind == "v":
            z[i] = start["v"].at[case.branches.at[cut, "from_bus"], t]
        else:
            z[i] = start[kind].at[cut, t]
    return z


@dataclass
class Outcome:
    """What an algorithm returns to the driver."""

    converged: bool
    iterations: int
    primal_residual: float
    dual_residual: float
    objective: float
    history: list[dict[str, Any]]
    area_solve_s: float  #: sum over iterations of the slowest area solve (the parallel critical path)
    area_solve_total_s: float  #: sum of every area solve
    coordination_s: float  #: wall time of the iterations minus area_solve_s
    ipopt_iterations: int
    exchanged_per_iteration: int
    exchanged_reals_per_iteration: int
    extra: dict[str, Any] = field(default_factory=dict)
    timing: list[dict[str, Any]] = field(default_factory=list)  #: one row per iteration (:data:`TIMING_COLUMNS`)


#: Per-iteration timing (seconds), see :class:`Tally`: ``critical_s`` the slowest area solve (the wall of
#: the round with one core per area), ``solve_total_s`` the sum of the area solves (the CPU work),
#: ``waiting_s`` the time the slowest worker spent on its other areas (workers solve their areas one after
#: another: busiest worker's sum minus the slowest area), ``idle_s`` the workers' idle time while the
#: busiest one still solves (sum over workers of the busiest worker's sum minus theirs: the imbalance),
#: ``transfer_s`` the rest of the rounds' wall (sending arguments, pickling, scheduling, receiving
#: results), ``coordinator_s`` the coordinator's own update, and ``projected_s`` = critical + transfer +
#: coordinator, the iteration's wall with one core per area. ``critical_cpu_s`` and ``solve_total_cpu_s``
#: are the same two figures in CPU time of the solving threads: on a machine that runs other work too
#: (wall times stretched by the contention) they are what the solves take on cores of their own.
#: Two counts follow: ``ipopt_iterations`` of the round's area solves (every attempt's) and ``retries``,
#: the attempts after each area's first (cold retries of a stalled warm solve, elastic re-solves): a
#: round whose time jumps shows here whether an area had to start over.
TIMING_COLUMNS = ("iteration", "critical_s", "solve_total_s", "waiting_s", "idle_s", "transfer_s",
                  "coordinator_s", "projected_s", "wall_s", "critical_cpu_s", "solve_total_cpu_s",
                  "ipopt_iterations", "retries")


class Clock:
    """Wall time since the start of the iterations."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


class Tally:
    """The book-keeping every algorithm shares: it solves the areas through the executor, times them
    (the parallel critical path and the total), counts IPOPT iterations and keeps the iteration history.

    ADMM's ENApp warm start records into the same tally, so its iterations, times and history rows are
    counted once, numbered continuously.
    """

    def __init__(self, executor: Any, progress: Progress, callback: IterationCallback | None) -> None:
        self.executor = executor
        self.progress = progress
        self.callback = callback
        self.clock = Clock()
        self.solve_crit = self.solve_total = 0.0
        self.ipopt_iterations = 0
        self.history: list[dict[str, Any]] = []
        self.timing: list[dict[str, Any]] = []
        self._round = self._new_round()
        self._last_elapsed = 0.0

    @staticmethod
    def _new_round() -> dict[str, float]:
        return {"critical_s": 0.0, "solve_total_s": 0.0, "waiting_s": 0.0, "idle_s": 0.0, "transfer_s": 0.0,
                "critical_cpu_s": 0.0, "solve_total_cpu_s": 0.0, "map_s": 0.0, "ipopt_iterations": 0, "retries": 0}

    @property
    def iterations(self) -> int:
        return len(self.history)

    def solve(self, args: dict[int, tuple]) -> dict[int, dict[str, Any]]:
        """One round of area solves (``AreaSolver.solve(*args[a])`` for every area a)."""
        t0 = time.perf_counter()
        out = self.executor.map("solve", args)
        wall = time.perf_counter() - t0
        times = {a: o["solve_s"] for a, o in out.items()}
        self.solve_crit += max(times.values()) if self.executor.parallel else sum(times.values())
        self.solve_total += sum(times.values())
        its = sum(int(o["iterations"]) for o in out.values())
        self.ipopt_iterations += its
        groups = [g for g in (self.executor.groups() or [[a] for a in times]) if any(a in times for a in g)]
        busy = [sum(times.get(a, 0.0) for a in g) for g in groups]
        busiest = max(busy)
        crit = max(times.values())
        rnd = self._round
        rnd["critical_s"] += crit
        rnd["solve_total_s"] += sum(times.values())
        rnd["waiting_s"] += busiest - crit
        rnd["idle_s"] += sum(busiest - b for b in busy)
        rnd["transfer_s"] += max(wall - busiest, 0.0)
        cpu = [float(o.get("cpu_s", o["solve_s"])) for o in out.values()]
        rnd["critical_cpu_s"] += max(cpu)
        rnd["solve_total_cpu_s"] += sum(cpu)
        rnd["map_s"] += wall
        rnd["ipopt_iterations"] += its
        rnd["retries"] += sum(max(len(o.get("attempts", ())) - 1, 0) for o in out.values())
        return out

    def record(self, method: str, r: float, s: float, objective: float, rho: float = float("nan"),
               label: str | None = None) -> int:
        """Log one finished iteration (history row with its ``method``, progress line starting with
        ``label`` or the method, test callback); return its number."""
        k = len(self.history) + 1
        elapsed = self.clock()
        rnd, self._round = self._round, self._new_round()
        wall = elapsed - self._last_elapsed
        self._last_elapsed = elapsed
        coord = max(wall - rnd.pop("map_s"), 0.0)
        self.timing.append({"iteration": k, **rnd, "coordinator_s": coord,
                            "projected_s": rnd["critical_s"] + rnd["transfer_s"] + coord, "wall_s": wall})
        self.history.append({"iteration": k, "method": method, "primal_residual": r, "dual_residual": s,
                             "objective_usd": objective, "rho": rho, "elapsed_s": elapsed})
        rho_text = "" if np.isnan(rho) else f"  rho {rho:.3g}"
        self.progress(f"{label or method} {k:3d}  primal {r:.2e}  dual {s:.2e}  objective {objective:.4f} USD"
                      f"{rho_text}  {elapsed:.2f} s")
        if self.callback is not None:
            self.callback(k, self.executor)
        return k

    def last(self) -> tuple[float, float, float]:
        """(primal residual, dual residual, objective) of the last iteration (inf, inf, nan before any)."""
        if not self.history:
            return float("inf"), float("inf"), float("nan")
        h = self.history[-1]
        return h["primal_residual"], h["dual_residual"], h["objective_usd"]

    def outcome(self, converged: bool, exchanged: int, exchanged_reals: int, extra: dict[str, Any]) -> Outcome:
        """The run's :class:`Outcome` from what was recorded."""
        r, s, objective = self.last()
        return Outcome(
            converged=converged,
            iterations=self.iterations,
            primal_residual=r,
            dual_residual=s,
            objective=objective,
            history=self.history,
            area_solve_s=self.solve_crit,
            area_solve_total_s=self.solve_total,
            coordination_s=max(self.clock() - self.solve_crit, 0.0),
            ipopt_iterations=self.ipopt_iterations,
            exchanged_per_iteration=exchanged,
            exchanged_reals_per_iteration=exchanged_reals,
            extra=extra,
            timing=self.timing,
        )
