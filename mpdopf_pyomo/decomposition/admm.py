"""Consensus ADMM over the boundary values, with residual-balancing penalty.

Every boundary value (P, Q of a cut branch and the squared voltage of its parent-side bus, per hour) has
two copies, one in each adjacent area, and a consensus value z. Iteration k:

1. each area a minimises  f_a(x_a) + sum_k lambda_a,k (x_a,k - z_k) + rho_k/2 (x_a,k - z_k)^2;
2. z_k = mean over the two copies of (x_a,k + lambda_a,k / rho_k);
3. lambda_a,k += rho_k (x_a,k - z_k).

Units: x and z in pu (pu^2 for v), costs in USD, so lambda is in USD/pu and rho in USD/pu^2.
Residuals (both in pu, so one tolerance serves both): primal r = max_k |x_parent,k - x_child,k| (the
boundary mismatch), dual s = max_k |z_k - z_k^prev| (the usual dual residual divided by rho).
Penalty: ``rho`` given = constant; default adaptive by residual balancing (Boyd et al. 2011, sec. 3.4.1):
rho *= tau when r > mu s, rho /= tau when s > mu r (mu = 10, tau = 2), only in the first
``adapt_until`` iterations so that the method settles. lambda is kept unscaled, so it needs no rescaling.
rho_k = rho * KIND_SCALE[kind of k] (a stiff P penalty, soft Q and v penalties; see KIND_SCALE).

Warm start (``warm`` > 0): up to ``warm`` ENApp iterations (to ``warm_tol``) on the same area solvers,
then z = the mean of the copies and lambda = the duals of the pinned ports (:func:`warm_point`): the LMPs
at the cuts' parent buses for P, Q and the children's marginal value of their root voltage for v. These
iterations are counted in ``iterations`` (``extra['warm_start_iterations']``; rho is NaN in their rows).
The ENApp runs in stages (WARM_STAGES): the first at the substation price, then re-priced every few
iterations: a child pays its parent's current LMPs for P and Q at its head. Plain ENApp ignores the
parent's marginal losses, so its point is off the optimum and the first ADMM iterations undo that (P
oscillated at ~2e-4 pu for 30 iterations); re-priced, the P mismatch stays ~1e-5 pu through the ADMM.

Measured on ieee123, 5 h (serial; total iterations = ENApp + ADMM, wall = in-process solve):

==========================================  ==========  ======  =========  ===========
variant                                      iterations  wall    gap        max |dV| pu
==========================================  ==========  ======  =========  ===========
plain ENApp warm start (7) + ADMM            38          6.4 s   -1.3e-5    6.5e-5
re-priced 3 + 2 + 2 ... (15 max) + ADMM      32          4.9 s   -1.8e-6    4.5e-5
re-priced, 10 max (the default) + ADMM       28          3.9 s   +4.3e-6    3.2e-5
  + rho per hour ~ the hour's price          27          3.7 s   -1.9e-5    8.8e-6  (not kept: 24 h 51)
plain + proximal terms on battery pc/pd, q   38-67       -       -          (not kept: no gain)
plain + rho_Q x10-100 at the switch, decays  38-44       -       -          (not kept)
plain + lambda_Q warm start x0 or x0.5       38          -       -          (not kept: no effect)
plain + accelerated ADMM with restart        >80         -       -          (not kept: diverges)
==========================================  ==========  ======  =========  ===========

(24 h: plain 46 iterations, max |dV| 4.1e-4 pu; re-priced, 10 max: 40, 3.3e-5 pu.) The first ADMM
iteration costs what the others do (~0.1 s; it was ~0.4 s after the plain warm start).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpdopf_pyomo.decomposition.algorithm import Algorithm, Context, Step, primal_residual
from mpdopf_pyomo.decomposition.core import Layout, initial_boundary
from mpdopf_pyomo.decomposition.enapp import ENApp

#: Default starting penalty, USD/pu^2 (P, Q in pu of the case's base; v in pu^2).
RHO0 = 2.0e4
#: Relative penalty per kind of boundary value. P needs a stiff penalty: a child's batteries answer its
#: price bang-bang (equal-price hours). Q and v are priced only through losses (|lambda_Q|, |lambda_v|
#: <= ~5 USD/pu, curvature ~10-100 USD/pu^2): a stiff penalty pins them where they start and they then
#: creep towards the optimum (measured on ieee123, 5 h: P, Q, v all at 2e4 -> 121 iterations and voltages
#: 1.6e-3 pu off; Q at 20, v at 2e3 -> 38 iterations, 7e-5 pu).
KIND_SCALE = {"P": 1.0, "Q": 1e-3, "v": 0.1}
#: Damping of the ENApp warm start (the measurements above were taken with it; plain ENApp is undamped).
WARM_DAMPING = 0.7
#: ENApp warm-start stages: iterations at the substation price, then per re-pricing at the LMPs.
WARM_STAGES = (3, 2)


class ADMM(Algorithm):
    """Consensus ADMM as an :class:`~.algorithm.Algorithm` (see the module docstring).

    Options: ``rho`` (None: adaptive from :data:`RHO0`), ``relax`` (over-relaxation), ``warm`` (at most this
    many ENApp warm-start iterations), ``warm_start`` (``enapp`` or ``none``); ``mu``, ``tau``,
    ``adapt_until``, ``warm_tol`` tune the residual balancing and the warm start.
    """

    name = "admm"
    OPTIONS = {"rho": None, "relax": 1.6, "warm": 10, "warm_start": "enapp", "mu": 10.0, "tau": 2.0,
               "adapt_until": 50, "warm_tol": 1e-3}

    def initialize(self, ctx: Context) -> None:
        super().initialize(ctx)
        o = self.options
        layout = ctx.layout
        self.adaptive = o["rho"] is None
        self.rho_s = float(RHO0 if o["rho"] is None else o["rho"])
        self.kinds = layout.kinds()
        self.scale = np.array([KIND_SCALE[k] for k in self.kinds])
        self.child_mask = layout.holder("child")
        self.z = initial_boundary(ctx.case, layout, ctx.start)
        self.lam_c = ctx.price.copy()  # multiplier of the child copies
        self.warm_left = 0 if o["warm_start"] == "none" else int(o["warm"])
        self.warm_iterations = 0
        self.warming: ENApp | None = None
        if self.warm_left:  # stage 1: the children pay the substation price
            self._stage(np.where(self.kinds == "P", self.lam_c, 0.0), WARM_STAGES[0])
        else:
            self._start_admm()

    def _stage(self, head: np.ndarray, n: int) -> None:
        """Start an ENApp warm-start stage of at most ``n`` iterations from the current z."""
        self.warming = ENApp(WARM_DAMPING, y0=self.z, head_price=head, tol=max(self.ctx.tol, self.options["warm_tol"]),
                             label="admm warm start: enapp")
        self.warming.initialize(self.ctx)
        self.stage_left = min(n, self.warm_left)

    def _start_admm(self) -> None:
        self.warming = None
        idx = self.ctx.layout.index
        self.lam = {a: np.where(self.child_mask[a], self.lam_c[idx[a]], -self.lam_c[idx[a]])
                    for a in self.ctx.layout.areas}

    def local_terms(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        if self.warming is not None:
            return self.warming.local_terms()
        idx = self.ctx.layout.index
        rho_v = self.rho_s * self.scale
        return {a: (rho_v[idx[a]] / 2.0, self.lam[a] - rho_v[idx[a]] * self.z[idx[a]], None)
                for a in self.ctx.layout.areas}

    def update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        if self.warming is not None:
            return self._warm_update(out, k)
        layout, relax, z, lam = self.ctx.layout, self.options["relax"], self.z, self.lam
        idx = layout.index
        rho_v = self.rho_s * self.scale
        acc = np.zeros(len(z))
        for a in layout.areas:
            acc[idx[a]] += relax * out[a]["x"] + (1.0 - relax) * z[idx[a]] + lam[a] / rho_v[idx[a]]
        z_new = acc / 2.0
        for a in layout.areas:
            xh = relax * out[a]["x"] + (1.0 - relax) * z[idx[a]]
            lam[a] = lam[a] + rho_v[idx[a]] * (xh - z_new[idx[a]])
        r = primal_residual(layout, out)
        s = float(np.max(np.abs(z_new - z))) if len(z) else 0.0
        self.z = z_new
        step = Step(r, s, float(sum(out[a]["cost"] for a in layout.areas)), "admm", self.rho_s)
        o = self.options
        if self.adaptive and k < o["adapt_until"] and not (r <= self.ctx.tol and s <= self.ctx.tol):
            if r > o["mu"] * s:
                self.rho_s *= o["tau"]
            elif s > o["mu"] * r:
                self.rho_s /= o["tau"]
        return step

    def _warm_update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        warming = self.warming
        assert warming is not None
        step = warming.update(out, k)
        self.warm_iterations += 1
        self.warm_left -= 1
        self.stage_left -= 1
        done = warming.converged(step)
        if done or self.stage_left <= 0 or self.warm_left <= 0:
            self.z, self.lam_c = warm_point(self.ctx.executor, self.ctx.layout)
            if done or self.warm_left <= 0:
                self._start_admm()
            else:  # then: the parents' current LMPs for P and Q
                self.ctx.progress(f"admm warm start: ENApp from iteration {k + 1}, "
                                  "children priced at the parents' LMPs")
                self._stage(np.where(self.kinds == "v", 0.0, self.lam_c), WARM_STAGES[1])
        return step

    def converged(self, step: Step) -> bool:
        if step.method != "admm":  # a warm-start iteration never ends the run
            return False
        return super().converged(step)

    def exchanged(self) -> tuple[int, int]:
        # per boundary-hour, each of the 2 areas sends its (S, v) copy up and receives the consensus (S, v)
        n = self.ctx.layout.boundary_hours
        return 2 * 2 * 2 * n, 2 * 2 * 3 * n

    def summary(self) -> dict[str, Any]:
        return {"rho": self.rho_s, "rho_adaptive": self.adaptive, "over_relaxation": self.options["relax"],
                "warm_start_iterations": self.warm_iterations}


def warm_point(executor: Any, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Consensus values and child-copy multipliers from the areas' last (ENApp) solves.

    z = mean of the two copies. lambda from the side that pinned the value: P, Q: the parent's marginal
    cost of the withdrawal (the LMP at the cut's parent bus); v: minus the child's marginal cost of its
    root voltage. These are the ADMM multipliers at a consensus optimum.
    """
    state = executor.map("port_state", {a: () for a in layout.areas})
    n = len(layout.keys)
    z = np.zeros(n)
    lam = np.zeros(n)
    kinds = layout.kinds()
    pm = layout.holder("parent")
    for a in layout.areas:
        i, x, g = layout.index[a], state[a]["x"], np.nan_to_num(state[a]["g"])
        z[i] += x / 2.0
        par = pm[a]
        is_v = kinds[i] == "v"
        lam[i[par & ~is_v]] = g[par & ~is_v]
        lam[i[~par & is_v]] = -g[~par & is_v]
    return z, lam
