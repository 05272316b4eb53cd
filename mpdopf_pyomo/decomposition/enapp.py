"""ENApp, as the source study ran it: a damped fixed-point exchange of boundary values.

Per boundary and hour the parent sends the squared voltage of its boundary bus down (the child pins its
root voltage to it) and the child sends its complex power S = P + jQ up (the parent pins the withdrawal
to it). Every area solves its own whole-horizon NLP at the same time (Jacobi); the received values are
damped: y <- y + beta (y_new - y). Initial guesses as in the study: v = V_sub^2, S = 0.

A child area does not see the substation price through the exchange, so it prices the power it draws at
its head at the substation price (``w1 = C^t dt S_base`` on its P ports): the decomposition ignores the
parent's marginal losses, which is why ENApp's optimum differs slightly from the central one.

Residuals (pu): primal = max |parent copy - child copy| of each boundary value, dual = max change of the
exchanged values in the iteration. Stop when both are below the tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpdopf_pyomo.decomposition.core import Clock, IterationCallback, Layout, Outcome, Progress


def run_enapp(
    executor: Any,
    layout: Layout,
    y0: np.ndarray,
    head_price: np.ndarray,
    *,
    damping: float = 0.7,
    tol: float = 1e-4,
    max_iter: int = 100,
    progress: Progress,
    callback: IterationCallback | None = None,
    offset: int = 0,
) -> Outcome:
    """Run ENApp; ``y0`` initial boundary values by global key, ``head_price`` USD/pu per global key
    (non-zero on P keys: what a child pays for the power at its head). ``offset`` shifts the iteration
    numbers printed (ADMM's warm start runs ENApp in stages)."""
    areas = layout.areas
    idx = layout.index
    kinds = layout.kinds()
    parent_mask = layout.holder("parent")
    is_v = {a: kinds[idx[a]] == "v" for a in areas}
    y = y0.copy()
    history: list[dict[str, Any]] = []
    clock = Clock()
    solve_crit = solve_total = 0.0
    ipopt_its = 0
    r = s = float("inf")
    objective = float("nan")
    converged = False
    k = 0
    for k in range(1, max_iter + 1):
        args = {}
        for a in areas:
            pm, v = parent_mask[a], is_v[a]
            # parent pins P, Q (received from the child); child pins v (received from the parent)
            pin = np.where((pm & ~v) | (~pm & v), y[idx[a]], np.nan)
            w1 = np.where(~pm & ~v, head_price[idx[a]], 0.0)
            args[a] = (np.zeros(len(idx[a])), w1, pin, k)
        out = executor.map("solve", args)
        times = [out[a]["solve_s"] for a in areas]
        solve_crit += max(times) if executor.parallel else sum(times)
        solve_total += sum(times)
        ipopt_its += sum(int(out[a]["iterations"]) for a in areas)
        sent = y.copy()  # what the producing side computed this iteration
        x_par = np.empty(len(y))
        x_chi = np.empty(len(y))
        for a in areas:
            xa, pm, v = out[a]["x"], parent_mask[a], is_v[a]
            x_par[idx[a][pm]] = xa[pm]
            x_chi[idx[a][~pm]] = xa[~pm]
            produced = (pm & v) | (~pm & ~v)
            sent[idx[a][produced]] = xa[produced]
        r = float(np.max(np.abs(x_par - x_chi))) if len(y) else 0.0
        y_new = y + damping * (sent - y)
        s = float(np.max(np.abs(y_new - y))) if len(y) else 0.0
        y = y_new
        # the reported objective: the areas' own costs (without the children's head-price terms)
        objective = float(sum(out[a]["cost"] for a in areas))
        elapsed = clock()
        history.append({"iteration": k, "primal_residual": r, "dual_residual": s, "objective_usd": objective,
                        "rho": float("nan"), "elapsed_s": elapsed})
        progress(f"enapp {k + offset:3d}  primal {r:.2e}  dual {s:.2e}  objective {objective:.4f} USD  {elapsed:.2f} s")
        if callback is not None:
            callback(k, executor)
        if r <= tol and s <= tol:
            converged = True
            break
    wall = clock()
    n_b = layout.n_boundaries
    T = len({key[2] for key in layout.keys})
    return Outcome(
        converged=converged,
        iterations=k,
        primal_residual=r,
        dual_residual=s,
        objective=objective,
        history=history,
        area_solve_s=solve_crit,
        area_solve_total_s=solve_total,
        coordination_s=max(wall - solve_crit, 0.0),
        ipopt_iterations=ipopt_its,
        exchanged_per_iteration=2 * n_b * T,  # v down and S up per boundary and hour (the study's count)
        exchanged_reals_per_iteration=3 * n_b * T,
        extra={"damping": damping},
    )
