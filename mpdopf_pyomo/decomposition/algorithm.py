"""The algorithm protocol and the one driver loop every distributed algorithm runs in.

An algorithm (as in PowerModelsADA) is a small object:

* ``initialize(ctx)``: its starting point from the :class:`Context` (case, layout, LinDistFlow start,
  substation price, stopping rule, executor for queries such as ``port_state``);
* ``local_terms()``: per area, the arguments ``(w2, w1, pin)`` of this iteration's area solve
  (:meth:`.area_solver.AreaSolver.solve`: penalty coefficients and pinned ports);
* ``update(out, k)``: the coordinator's step from the areas' solutions of iteration ``k``; returns a
  :class:`Step` (residuals, objective, what to log);
* ``converged(step)``: whether to stop (default: the context's :class:`StopRule`).

:func:`drive` runs any of them: solve the areas, update, record, stop. New algorithms are registered by
name in :mod:`mpdopf_pyomo.algorithms`; nothing here or in :func:`~mpdopf_pyomo.decomposition.solve_distributed`
knows their names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from mpdopf_pyomo.case import Case
from mpdopf_pyomo.decomposition.core import PORT_QUALIFIER, IterationCallback, Layout, Outcome, PortKey, Tally
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.progress import Progress, quiet

#: Stopping rules: ``residual`` (both boundary residuals <= tol) or ``gap`` (primal residual <= tol and
#: the objective settled to ``gap_tol``: against the reference objective when one is known, else its
#: relative change over the last iteration).
STOP_RULES = ("residual", "gap")


@dataclass
class StopRule:
    """When a distributed run has converged (see :data:`STOP_RULES`)."""

    tol: float = 1e-4
    kind: str = "residual"
    gap_tol: float = 1e-4
    reference: float | None = None  #: the central objective, USD, when known

    def gap(self, objective: float) -> float | None:
        """Relative gap of ``objective`` to the reference (None without one)."""
        if self.reference is None or not math.isfinite(objective):
            return None
        return (objective - self.reference) / max(abs(self.reference), 1e-12)

    def __call__(self, step: "Step", previous: "Step | None") -> bool:
        if step.primal > self.tol:
            return False
        if self.kind == "residual":
            return step.dual <= self.tol
        g = self.gap(step.objective)
        if g is None:
            if previous is None or not math.isfinite(previous.objective):
                return False
            g = (step.objective - previous.objective) / max(abs(step.objective), 1e-12)
        return abs(g) <= self.gap_tol


@dataclass
class Context:
    """What an algorithm may use: the case and its boundary layout, the executor (for queries such as
    ``port_state``; the driver does the solves), the LinDistFlow starting point, the substation price per
    boundary key (USD/pu on P keys, 0 elsewhere), the stopping rule and the progress receiver."""

    case: Case
    layout: Layout
    executor: Any
    start: dict[str, pd.DataFrame]
    price: np.ndarray
    stop: StopRule = field(default_factory=StopRule)
    progress: Progress = quiet

    @property
    def tol(self) -> float:
        return self.stop.tol


@dataclass
class Step:
    """One finished iteration as the algorithm reports it: residuals (pu), objective (USD), the history's
    ``method``, the penalty (NaN when none) and the progress label (None: the method)."""

    primal: float
    dual: float
    objective: float
    method: str
    rho: float = float("nan")
    label: str | None = None


class Algorithm:
    """Base of the distributed algorithms (see the module docstring).

    ``OPTIONS``: the user-facing settings the algorithm takes and their defaults (the driver passes only
    these; an option another algorithm takes is refused by name).
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(k for k, v in options.items() if k not in self.OPTIONS and v is not None)
        if unknown:
            raise CaseError(f"{', '.join(unknown)}: not an option of the {self.name} algorithm "
                            f"(its options: {', '.join(self.OPTIONS) or 'none'})")
        self.options = {**self.OPTIONS, **{k: v for k, v in options.items() if v is not None}}
        self.ctx: Context | None = None
        self._previous: Step | None = None

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx

    def local_terms(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        raise NotImplementedError

    def update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        raise NotImplementedError

    def converged(self, step: Step) -> bool:
        assert self.ctx is not None
        done = self.ctx.stop(step, self._previous)
        self._previous = step
        return done

    def exchanged(self) -> tuple[int, int]:
        """(values, reals) exchanged per iteration; the default counts each area's ports both ways."""
        assert self.ctx is not None
        n = sum(len(i) for i in self.ctx.layout.index.values())
        return 2 * n, 2 * n

    def summary(self) -> dict[str, Any]:
        """Algorithm-specific keys of ``summary['distributed']``."""
        return {}


def drive(algo: Algorithm, ctx: Context, max_iter: int, callback: IterationCallback | None = None,
          tally: Tally | None = None) -> Outcome:
    """The driver loop: ``initialize``, then per iteration the area solves of ``local_terms``, ``update``,
    the record and ``converged``, until converged or ``max_iter`` iterations."""
    tally = tally or Tally(ctx.executor, ctx.progress, callback)
    algo.initialize(ctx)
    converged = False
    while tally.iterations < max_iter:
        terms = algo.local_terms()
        k = tally.iterations + 1
        out = tally.solve({a: (*t, k) for a, t in terms.items()})
        step = algo.update(out, k)
        tally.record(step.method, step.primal, step.dual, step.objective, step.rho, label=step.label)
        if algo.converged(step):
            converged = True
            break
    exchanged, reals = algo.exchanged()
    return tally.outcome(converged, exchanged, reals, algo.summary())


def value_of(key: PortKey) -> tuple[str, str, int]:
    """The exchanged value a boundary key is part of: P and Q of a port are one complex power S; a
    three-phase voltage port pair ``"c|vr<phase>"``, ``"c|vi<phase>"``
    (:func:`~mpdopf_pyomo.formulations.three_phase_areas.port_names`) is one complex phase voltage V; any
    other v key (the balanced squared voltage) is one real value."""
    kind, name, t = key
    if kind in ("P", "Q"):
        return "S", name, t
    cut, _, qual = name.partition(PORT_QUALIFIER)
    if qual[:2] in ("vr", "vi"):
        return "V", f"{cut}{PORT_QUALIFIER}{qual[2:]}", t
    return "v", name, t


def exchange_counts(layout: Layout) -> tuple[int, int, dict[str, int]]:
    """What one crossing of every boundary value carries: (values, reals, reals by kind). Values count S
    and a complex phase voltage as one (the study's convention), reals count every real number (one per
    boundary key); balanced: 2 values and 3 reals per boundary and hour, three-phase: per phase of the cut
    2 values (S, V) and 4 reals (P, Q, Vr, Vi)."""
    kinds = layout.kinds()
    by_kind = {k: int((kinds == k).sum()) for k in sorted(set(kinds.tolist()))}
    return len({value_of(k) for k in layout.keys}), len(layout.keys), by_kind


def primal_residual(layout: Layout, out: dict[int, dict[str, Any]]) -> float:
    """max |parent copy - child copy| over the boundary values (pu)."""
    x_par, x_chi = layout.copies(out)
    return float(np.max(np.abs(x_par - x_chi))) if len(x_par) else 0.0
