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
``adapt_until`` iterations so that the method settles, and within a factor ``cap`` of its start (the
rule compares residuals in pu, so a stiffer penalty shrinks s and asks for more: on the 2,561-bus feeder
rho ran from 2e4 to 1.3e6 while the area solves slowed to 17 s a round). ``balance`` = ``kind``: one
factor per kind of value (P, Q, v), each balanced on its own residuals (``global``: one for all, as
before; ``boundary``: per kind and cut). lambda is kept unscaled, so it needs no rescaling.
rho_k = rho0 * KIND_SCALE[kind of k] * factor (a stiff P penalty, soft Q and v penalties; see
KIND_SCALE), rho0 = RHO0 (``units="pu"``, the default) or RHO0 x :func:`penalty_scale` (``units="kw"``: price x
S_base^2 relative to IEEE 123's, so that a mismatch of one kW costs the same on any base power and price
level; ``units="case"``: price x S_base / total load). Not the default: measured on ieee34 (the one
public feeder whose warm start stalls, so ADMM proper runs), 173 iterations with ``kw`` against 131 with
``pu``; on the others the price-exchange warm start converges before the penalty matters.

Warm start (``warm`` > 0, at most ``warm`` = WARM_MAX iterations, counted in ``iterations``,
``extra['warm_start_iterations']``; rho is NaN in their rows), on the same area solvers:

1. ENApp at the substation price, undamped, until its residuals are below ``warm_tol`` (1e-3 pu) or it
   stalls (no new best primal residual in max(WARM_STALL, depth of the area tree + 2) iterations: a
   chain of areas needs one iteration per level to propagate the power up);
2. ENApp with the price exchange (:mod:`.enapp`, ``prices="exchange"``): each round a child pays its
   parent's current LMPs for P and Q at its head and a parent its child's marginal value of the boundary
   voltage; both restart from the mean of their copies. Its fixed point meets the optimality conditions of
   the central problem, so when its residuals reach ``tol`` the run has converged (``extra
   ['converged_in_warm_start']``); when it stalls (WARM_STALL iterations without a new best: ieee34's
   regulators make the exchange oscillate) or uses up ``warm``, ADMM proper starts from z = the mean of
   the copies and lambda = the duals of the pinned ports (:func:`warm_point`).

The first version (3 ENApp iterations damped at 0.7 at the substation price, then re-priced for P and Q
only every 2 iterations, at most 10, then ADMM) stopped the warm start far from the optimum on deep or
wide area trees: the damping compounds along a chain (1,025-bus chain: 150 iterations without converging)
and, without the voltage price and the per-round re-pricing, the parents never learn what their boundary
voltage is worth to the children (ieee123-opendss: 144 iterations, ieee13: 74).

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
undamped stage 1 + price exchange (now)      25          3.7 s   +1.1e-8    -
==========================================  ==========  ======  =========  ===========

(24 h: plain 46 iterations, max |dV| 4.1e-4 pu; re-priced, 10 max: 40, 3.3e-5 pu.) The first ADMM
iteration costs what the others do (~0.1 s; it was ~0.4 s after the plain warm start).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpdopf_pyomo.decomposition.algorithm import Algorithm, Context, Step, exchange_counts
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
#: :func:`penalty_scale`'s numerator on IEEE 123 (USD/pu^2 per unit factor): its defaults are kept there.
REFERENCE_SCALE = {"case": 495.8284, "kw": 0.1496464 * 3000.0**2}
#: Damping of the ENApp warm start (undamped, as the study's ENApp: 0.7 slowed deep chains to a crawl).
WARM_DAMPING = 1.0
#: Iterations without a new best primal residual after which a warm-start stage is given up.
WARM_STALL = 6
#: At most this many warm-start iterations (stage 1 + price exchange) before ADMM proper.
WARM_MAX = 60


class ADMM(Algorithm):
    """Consensus ADMM as an :class:`~.algorithm.Algorithm` (see the module docstring).

    Options: ``rho`` (None: adaptive from :data:`RHO0`), ``relax`` (over-relaxation), ``warm`` (at most this
    many ENApp warm-start iterations), ``warm_start`` (``enapp`` or ``none``); ``mu``, ``tau``,
    ``adapt_until``, ``balance`` (global | kind | boundary), ``cap`` tune the residual balancing,
    ``units`` (pu | kw | case) and ``kind_scale`` (overrides of :data:`KIND_SCALE`) the starting penalties,
    ``warm_tol`` and ``warm_damping`` the warm start's first stage; ``warm_abandon``: give the warm start up
    as soon as an area cannot meet the values it received (an elastic solve) and start ADMM proper from the
    starting point and the substation price, not from the warm point (see :meth:`_warm_update`).
    """

    name = "admm"
    OPTIONS = {"rho": None, "relax": 1.6, "warm": WARM_MAX, "warm_start": "enapp", "mu": 10.0, "tau": 2.0,
               "adapt_until": 50, "warm_tol": 1e-3, "balance": "kind", "cap": 10.0, "units": "pu",
               "kind_scale": None, "warm_damping": WARM_DAMPING, "warm_abandon": False}

    def initialize(self, ctx: Context) -> None:
        super().initialize(ctx)
        o = self.options
        layout = ctx.layout
        self.adaptive = o["rho"] is None
        self.kinds = layout.kinds()
        kind_scale = {**KIND_SCALE, **(o["kind_scale"] or {})}
        self.kind_scale = {k: kind_scale[k] for k in sorted(set(self.kinds.tolist()))}
        self.rho0 = float(RHO0 if o["rho"] is None else o["rho"]) * np.array([kind_scale[k] for k in self.kinds])
        if o["units"] != "pu" and o["rho"] is None:
            self.rho0 = penalty_scale(ctx, o["units"]) * self.rho0
        # residual-balancing groups: one (global), per kind, or per kind and boundary
        if o["balance"] == "global":
            labels = ["all"] * len(self.kinds)
        elif o["balance"] == "kind":
            labels = list(self.kinds)
        else:
            labels = [f"{k[0]}|{k[1]}" for k in layout.keys]
        names = sorted(set(labels))
        self.group = np.array([names.index(g) for g in labels], dtype=int)
        self.mult = np.ones(len(names))
        self.child_mask = layout.holder("child")
        self.z = initial_boundary(ctx.case, layout, ctx.start)
        self.z_start = self.z.copy()
        self.lam_c = ctx.price.copy()  # multiplier of the child copies
        self.warm_left = 0 if o["warm_start"] == "none" else int(o["warm"])
        self.warm_iterations = 0
        self.warming: ENApp | None = None
        self.warm_converged = False
        self.warm_abandoned: int | None = None
        up = {layout.child[c]: layout.parent[c] for c in layout.parent}
        self.depth = max((_hops(a, up) for a in layout.areas), default=0)  # what stage 1 needs to propagate
        if self.warm_left:  # stage 1: ENApp at the substation price (the study's), to warm_tol
            self.exchanging = False
            self._stage("substation", np.where(self.kinds == "P", self.lam_c, 0.0),
                        max(self.ctx.tol, o["warm_tol"]))
        else:
            self._start_admm()

    def _stage(self, prices: str, head: np.ndarray, tol: float) -> None:
        """Start an ENApp warm-start stage from the current z."""
        self.warming = ENApp(self.options["warm_damping"], prices=prices, y0=self.z, head_price=head, tol=tol,
                             label="admm warm start: enapp")
        self.warming.initialize(self.ctx)
        self.best, self.since_best = float("inf"), 0

    def _start_admm(self) -> None:
        self.warming = None
        idx = self.ctx.layout.index
        self.lam = {a: np.where(self.child_mask[a], self.lam_c[idx[a]], -self.lam_c[idx[a]])
                    for a in self.ctx.layout.areas}

    def local_terms(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        if self.warming is not None:
            return self.warming.local_terms()
        idx = self.ctx.layout.index
        rho_v = self.rho_vec()
        return {a: (rho_v[idx[a]] / 2.0, self.lam[a] - rho_v[idx[a]] * self.z[idx[a]], None)
                for a in self.ctx.layout.areas}

    def update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        if self.warming is not None:
            return self._warm_update(out, k)
        layout, relax, z, lam = self.ctx.layout, self.options["relax"], self.z, self.lam
        idx = layout.index
        rho_v = self.rho_vec()
        acc = np.zeros(len(z))
        for a in layout.areas:
            acc[idx[a]] += relax * out[a]["x"] + (1.0 - relax) * z[idx[a]] + lam[a] / rho_v[idx[a]]
        z_new = acc / 2.0
        for a in layout.areas:
            xh = relax * out[a]["x"] + (1.0 - relax) * z[idx[a]]
            lam[a] = lam[a] + rho_v[idx[a]] * (xh - z_new[idx[a]])
        x_par, x_chi = layout.copies(out)
        r_k = np.abs(x_par - x_chi)
        s_k = np.abs(z_new - z)
        r = float(r_k.max()) if len(z) else 0.0
        s = float(s_k.max()) if len(z) else 0.0
        self.z = z_new
        p = self.kinds == "P"
        step = Step(r, s, float(sum(out[a]["cost"] for a in layout.areas)), "admm",
                    float(rho_v[p].max()) if p.any() else float("nan"))
        o = self.options
        tol = self.ctx.tol
        if self.adaptive and k < o["adapt_until"] and not (r <= tol and s <= tol):
            for g in range(len(self.mult)):
                in_g = self.group == g
                rg, sg = r_k[in_g].max(), s_k[in_g].max()
                if rg <= tol and sg <= tol:
                    continue  # this group agrees: leave its penalty alone
                if rg > o["mu"] * sg:
                    self.mult[g] *= o["tau"]
                elif sg > o["mu"] * rg:
                    self.mult[g] /= o["tau"]
            if o["cap"]:
                np.clip(self.mult, 1.0 / o["cap"], o["cap"], out=self.mult)
        return step

    def rho_vec(self) -> np.ndarray:
        """This iteration's penalty per boundary key, USD/pu^2."""
        return self.rho0 * self.mult[self.group]

    def _warm_update(self, out: dict[int, dict[str, Any]], k: int) -> Step:
        warming = self.warming
        assert warming is not None
        step = warming.update(out, k)
        self.warm_iterations += 1
        self.warm_left -= 1
        elastic = sorted(a for a in out if out[a].get("elastic"))
        if elastic and self.options["warm_abandon"]:
            # an area could not meet the values it received (3ph IEEE 123: a child whose nodes reach v_max
            # at a root voltage 0.4 % above the optimum's): its duals are the elastic penalty's, not marginal
            # values, and the warm point would start ADMM far off (there: 1.4 pu voltage mismatch in its
            # first iteration, not converged in 300). Start from the starting point instead.
            self.ctx.progress(f"admm warm start: area(s) {', '.join(map(str, elastic))} could not meet the received "
                              f"boundary values in iteration {k}; ADMM from the starting point")
            self.warm_abandoned = k
            self.warm_left = 0
            self.z, self.lam_c = self.z_start.copy(), self.ctx.price.copy()
            self._start_admm()
            return step
        done = warming.converged(step)
        # a stage that has not improved its best primal residual in WARM_STALL iterations (the exchange
        # oscillates, e.g. through ieee34's regulators) gives way to the next one
        if step.primal < self.best:
            self.best, self.since_best = step.primal, 0
        else:
            self.since_best += 1
        if self.since_best >= (WARM_STALL if self.exchanging else max(WARM_STALL, self.depth + 2)):
            self.warm_left = 0 if self.exchanging else self.warm_left
            stalled = True
        else:
            stalled = False
        if self.exchanging:
            self.lam_c = warming.lam_c
            self.z = warming.y
            if done:  # the price exchange met the run's tolerance: that is the answer
                self.warm_converged = True
            elif self.warm_left <= 0:
                self._start_admm()
        elif done or stalled or self.warm_left <= 0:
            self.z, self.lam_c = warm_point(self.ctx.executor, self.ctx.layout, self.lam_c)
            if self.warm_left <= 0:
                self._start_admm()
            else:  # stage 2: exchange the marginal values too, to the run's tolerance
                self.ctx.progress(f"admm warm start: ENApp from iteration {k + 1}, exchanging the areas' "
                                  "marginal values (children pay the parents' LMPs)")
                self.exchanging = True
                self._stage("exchange", np.where(self.kinds == "v", -self.lam_c, self.lam_c), self.ctx.tol)
        return step

    def converged(self, step: Step) -> bool:
        if step.method != "admm":  # a warm-start iteration ends the run only once the price exchange converged
            return self.warm_converged
        return super().converged(step)

    def exchanged(self) -> tuple[int, int]:
        # each of the 2 areas of a boundary sends its copy of every boundary value up and receives the
        # consensus: 4 crossings (balanced: 8 values, 12 reals per boundary and hour)
        values, reals, _ = exchange_counts(self.ctx.layout)
        return 4 * values, 4 * reals

    def summary(self) -> dict[str, Any]:
        p = self.kinds == "P"
        rho = float(self.rho_vec()[p].max()) if p.any() else float("nan")
        return {"rho": rho, "rho_adaptive": self.adaptive, "over_relaxation": self.options["relax"],
                "warm_start_iterations": self.warm_iterations, "converged_in_warm_start": self.warm_converged,
                "warm_start_abandoned_at": self.warm_abandoned, "kind_scale": self.kind_scale,
                "exchanged_reals_by_kind": {k: 4 * n for k, n in exchange_counts(self.ctx.layout)[2].items()}}


def _hops(area: int, up: dict[int, int]) -> int:
    """Number of cuts between ``area`` and the substation's area."""
    n = 0
    while area in up:
        area, n = up[area], n + 1
    return n


def penalty_scale(ctx: Context, units: str = "case") -> float:
    """Factor that makes the default penalties independent of the case's base power and price level:
    (mean price x dt x S_base / total load in pu) relative to IEEE 123's (where :data:`RHO0` and
    :data:`KIND_SCALE` were measured). A P mismatch then costs the same USD per kW^2 on every case."""
    case = ctx.case
    price = float((case.profile["price"] * case.settings.dt_h).mean())
    load = float(case.buses["p_load"].sum() * case.profile["load_mult"].mean())
    if units == "kw":
        return price * case.bases.s_kva**2 / REFERENCE_SCALE["kw"]
    return price * case.bases.s_kva / max(load, 1e-6) / REFERENCE_SCALE["case"]


def warm_point(executor: Any, layout: Layout, fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Consensus values and child-copy multipliers from the areas' last (ENApp) solves.

    z = mean of the two copies. lambda from the side that pinned the value: P, Q: the parent's marginal
    cost of the withdrawal (the LMP at the cut's parent bus); v: minus the child's marginal cost of its
    root voltage. These are the ADMM multipliers at a consensus optimum. Where an area's solver route gives
no duals (not the cyipopt library route), ``fallback`` (default 0) stands in.
    """
    state = executor.map("port_state", {a: () for a in layout.areas})
    n = len(layout.keys)
    z = np.zeros(n)
    lam = np.zeros(n) if fallback is None else fallback.copy()
    kinds = layout.kinds()
    pm = layout.holder("parent")
    for a in layout.areas:
        i, x, g = layout.index[a], state[a]["x"], state[a]["g"]
        z[i] += x / 2.0
        par = pm[a]
        is_v = kinds[i] == "v"
        ok = np.isfinite(g)  # NaN where the solver route gives no duals: keep the fallback there
        lam[i[par & ~is_v & ok]] = g[par & ~is_v & ok]
        lam[i[~par & is_v & ok]] = -g[~par & is_v & ok]
    return z, lam
