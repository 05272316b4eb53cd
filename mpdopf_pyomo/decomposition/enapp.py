"""ENApp, as the source study ran it: a fixed-point exchange of boundary values, undamped by default.

Per boundary and hour the parent sends the squared voltage of its boundary bus down (the child pins its
root voltage to it) and the child sends its complex power S = P + jQ up (the parent pins the withdrawal
to it). Every area solves its own whole-horizon NLP at the same time (Jacobi); the received values are
optionally damped: y <- y + beta (y_new - y). The study's exchange is undamped (beta = 1, the default):
measured on ieee123-published, 5 h, tol 1e-4: beta = 1 converges in 5 iterations (the study's 5) at
576.311 USD per phase (the central optimum 576.312 to 2e-6); beta = 0.7 takes 11 and stops at 576.294,
below the central optimum by 3e-5 (stopped at tolerance while the areas still disagree). 24 h on
ieee123: 6 iterations undamped, 12 at 0.7. Initial guesses as in the study: v = V_sub^2, S = 0.

``3ph-exact`` (per-phase ports, :mod:`mpdopf_pyomo.formulations.three_phase_areas`): per phase of the cut the
parent sends Vr, Vi of its boundary node down and the child P, Q up, the same pins by kind; the first guess
is the whole feeder's power flow (the formulation's start gives its ports' values). IEEE 13, 2 areas, 5 h:
5 iterations, +3.0e-5 from central (``exchange``: 20, +1.7e-6). IEEE 123 unbalanced, 4 areas: does not
converge, because a child (area 4) cannot meet root voltages a little above the optimum's (its nodes reach
v_max) and re-solves elastic; ADMM gives its warm start up there (``warm_abandon``).

A child area does not see the substation price through the exchange, so it prices the power it draws at
its head at the substation price (``w1 = C^t dt S_base`` on its P ports): the decomposition ignores the
parent's marginal losses, which is why ENApp's optimum differs slightly from the central one.

``prices="exchange"`` (ADMM's warm start uses it; ``--enapp-prices exchange``): each round the areas
also exchange their marginal values (the parent's LMPs at the cut for P and Q, the child's marginal value
of its root voltage), which the sending side pays; its fixed point is the central optimum (ieee123-opendss,
5 h: within 4e-5 of the central objective where the substation-priced exchange stops 1e-3 above it).

Residuals (pu): primal = max |parent copy - child copy| of each boundary value, dual = max change of the
exchanged values in the iteration. Stop when both are below the tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpdopf_pyomo.decomposition.algorithm import Algorithm, Context, Step, exchange_counts, primal_residual
from mpdopf_pyomo.decomposition.core import initial_boundary


#: What the areas pay for the values they send: the substation price only (the study's ENApp) or the
#: exchanged marginal values (see the module docstring).
PRICES = ("substation", "exchange")


class ENApp(Algorithm):
    """ENApp as an :class:`~.algorithm.Algorithm`.

    ``damping`` is the user's option; the others serve ADMM's warm start: ``y0`` initial boundary values
    by global key (default the study's: v = V_sub^2, S = 0), ``head_price`` USD/pu per key: what the side that
    sends the value pays for it (a child for the power at its head, a parent for the voltage it sets;
    default the substation price on P keys, nothing on the others), ``tol`` its own
    stopping tolerance (default the context's rule), ``label`` the start of each progress line.
    """

    name = "enapp"
    OPTIONS = {"damping": 1.0, "prices": "substation"}

    def __init__(self, damping: float | None = None, *, y0: np.ndarray | None = None,
                 head_price: np.ndarray | None = None, tol: float | None = None, label: str | None = None,
                 **options: Any):
        super().__init__(damping=damping, **options)
        if self.options["prices"] not in PRICES:
            from mpdopf_pyomo.errors import bad_setting

            raise bad_setting("prices", "--enapp-prices", repr(self.options["prices"]),
                              f"choose one of {', '.join(PRICES)}")
        self.y0, self.head_price, self.tol, self.label = y0, head_price, tol, label

    def initialize(self, ctx: Context) -> None:
        super().initialize(ctx)
        layout = ctx.layout
        kinds = layout.kinds()
        if self.y0 is None:
            if "ports" in ctx.start:  # the formulation's start gives its ports' values (3ph-exact: Vr, Vi, P, Q)
                self.y0 = initial_boundary(ctx.case, layout, ctx.start)
            else:  # the study's: v = V_sub^2, S = 0
                self.y0 = np.where(kinds == "v", ctx.case.settings.v_sub_pu**2, 0.0)
        if self.head_price is None:
            self.head_price = ctx.price
        self.y = np.array(self.y0, dtype=float)

        self.parent_mask = layout.holder("parent")
        self.is_v = {a: kinds[layout.index[a]] == "v" for a in layout.areas}

    def local_terms(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        idx = self.ctx.layout.index
        terms = {}
        for a in self.ctx.layout.areas:
            pm, v = self.parent_mask[a], self.is_v[a]
            # parent pins P, Q (received from the child); child pins v (received from the parent)
            pin = np.where((pm & ~v) | (~pm & v), self.y[idx[a]], np.nan)
            # the producing side pays the price of what it sends (children: their head power; a parent:
            # its boundary voltage, priced only in ADMM's re-priced warm start)
            w1 = np.where((pm & v) | (~pm & ~v), self.head_price[idx[a]], 0.0)
            terms[a] = (np.zeros(len(idx[a])), w1, pin)
        return terms

    def update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        layout, y = self.ctx.layout, self.y
        idx = layout.index
        sent = y.copy()  # what the producing side computed this iteration
        for a in layout.areas:
            xa, pm, v = out[a]["x"], self.parent_mask[a], self.is_v[a]
            produced = (pm & v) | (~pm & ~v)
            sent[idx[a][produced]] = xa[produced]
        r = primal_residual(layout, out)
        y_new = y + self.options["damping"] * (sent - y)
        s = float(np.max(np.abs(y_new - y))) if len(y) else 0.0
        self.y = y_new
        if self.options["prices"] == "exchange":
            # the areas also exchange their marginal values: a child pays its parent's LMPs for P and Q at
            # its head, a parent its child's marginal value of the boundary voltage; both sides then
            # restart from the mean of their copies. The fixed point meets the central optimality
            # conditions (plain ENApp ignores the parent's marginal losses).
            from mpdopf_pyomo.decomposition.admm import warm_point

            v = layout.kinds() == "v"
            self.y, lam_c = warm_point(self.ctx.executor, layout, np.where(v, -self.head_price, self.head_price))
            self.head_price = np.where(v, -lam_c, lam_c)
            self.lam_c = lam_c
        # the reported objective: the areas' own costs (without the children's head-price terms)
        return Step(r, s, float(sum(out[a]["cost"] for a in layout.areas)), "enapp", label=self.label)

    def converged(self, step: Step) -> bool:
        if self.tol is None:
            return super().converged(step)
        return step.primal <= self.tol and step.dual <= self.tol

    def exchanged(self) -> tuple[int, int]:
        # v (balanced) or V per phase down and S (per phase) up, once per iteration: the study's count
        values, reals, _ = exchange_counts(self.ctx.layout)
        return values, reals

    def summary(self) -> dict[str, Any]:
        return {"damping": self.options["damping"], "prices": self.options["prices"],
                "exchanged_reals_by_kind": exchange_counts(self.ctx.layout)[2]}
