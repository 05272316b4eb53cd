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

from mpdopf_pyomo.decomposition.core import IterationCallback, Layout, Outcome, Progress, Tally

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


def run_admm(
    executor: Any,
    layout: Layout,
    z0: np.ndarray,
    *,
    rho: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 100,
    progress: Progress,
    callback: IterationCallback | None = None,
    mu: float = 10.0,
    tau: float = 2.0,
    adapt_until: int = 50,
    lam0: np.ndarray | None = None,
    relax: float = 1.0,
    warm: int = 0,
    warm_tol: float = 1e-3,
) -> Outcome:
    """Run ADMM on the areas held by ``executor``; see the module docstring."""
    adaptive = rho is None
    rho_s = float(RHO0 if rho is None else rho)
    kinds = layout.kinds()
    scale = np.array([KIND_SCALE[k] for k in kinds])
    areas = layout.areas
    idx = layout.index
    child_mask = layout.holder("child")
    tally = Tally(executor, progress, callback)
    z = z0.copy()
    lam_c = np.zeros(len(z)) if lam0 is None else lam0.copy()  # multiplier of the child copies
    if warm:
        from mpdopf_pyomo.decomposition.enapp import run_enapp

        head = np.where(kinds == "P", lam_c, 0.0)  # stage 1: the children pay the substation price
        n_stage = WARM_STAGES[0]
        while tally.iterations < min(warm, max_iter):
            if tally.iterations:
                progress(f"admm warm start: ENApp from iteration {tally.iterations + 1}, "
                         "children priced at the parents' LMPs")
            pre = run_enapp(executor, layout, z, head, damping=WARM_DAMPING, tol=max(tol, warm_tol),
                            progress=progress, tally=tally, label="admm warm start: enapp",
                            max_iter=min(n_stage, warm - tally.iterations, max_iter - tally.iterations))
            z, lam_c = warm_point(executor, layout)
            head = np.where(kinds == "v", 0.0, lam_c)  # then: the parents' current LMPs for P and Q
            n_stage = WARM_STAGES[1]
            if pre.converged:
                break
    k0 = tally.iterations
    lam = {a: np.where(child_mask[a], lam_c[idx[a]], -lam_c[idx[a]]) for a in areas}
    converged = False
    while tally.iterations < max_iter:
        rho_v = rho_s * scale
        args = {
            a: (rho_v[idx[a]] / 2.0, lam[a] - rho_v[idx[a]] * z[idx[a]], None, tally.iterations + 1)
            for a in areas
        }
        out = tally.solve(args)
        x_par, x_chi = layout.copies(out)
        acc = np.zeros(len(z))
        for a in areas:
            acc[idx[a]] += relax * out[a]["x"] + (1.0 - relax) * z[idx[a]] + lam[a] / rho_v[idx[a]]
        z_new = acc / 2.0
        for a in areas:
            xh = relax * out[a]["x"] + (1.0 - relax) * z[idx[a]]
            lam[a] = lam[a] + rho_v[idx[a]] * (xh - z_new[idx[a]])
        r = float(np.max(np.abs(x_par - x_chi))) if len(z) else 0.0
        s = float(np.max(np.abs(z_new - z))) if len(z) else 0.0
        z = z_new
        k = tally.record("admm", r, s, float(sum(out[a]["cost"] for a in areas)), rho_s)
        if r <= tol and s <= tol:
            converged = True
            break
        if adaptive and k < adapt_until:
            if r > mu * s:
                rho_s *= tau
            elif s > mu * r:
                rho_s /= tau
    # per boundary-hour, each of the 2 areas sends its (S, v) copy up and receives the consensus (S, v)
    n = layout.boundary_hours
    return tally.outcome(converged, 2 * 2 * 2 * n, 2 * 2 * 3 * n,
                         {"rho_final": rho_s, "rho_adaptive": adaptive, "warm_start_iterations": k0})


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
