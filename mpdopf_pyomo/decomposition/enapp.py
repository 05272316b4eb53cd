"""ENApp, as the source study ran it: a fixed-point exchange of boundary values, undamped by default.

Per boundary and hour the parent sends the squared voltage of its boundary bus down (the child pins its
root voltage to it) and the child sends its complex power S = P + jQ up (the parent pins the withdrawal
to it). Every area solves its own whole-horizon NLP at the same time (Jacobi); the received values are
optionally damped: y <- y + beta (y_new - y). The study's exchange is undamped (beta = 1, the default):
measured on ieee123-published, 5 h, tol 1e-4: beta = 1 converges in 5 iterations (the study's 5) at
576.311 USD per phase (the central optimum 576.312 to 2e-6); beta = 0.7 takes 11 and stops at 576.294,
below the central optimum by 3e-5 (stopped at tolerance while the areas still disagree). 24 h on
ieee123: 6 iterations undamped, 12 at 0.7. Initial guesses as in the study: v = V_sub^2, S = 0.

A child area does not see the substation price through the exchange, so it prices the power it draws at
its head at the substation price (``w1 = C^t dt S_base`` on its P ports): the decomposition ignores the
parent's marginal losses, which is why ENApp's optimum differs slightly from the central one.

Residuals (pu): primal = max |parent copy - child copy| of each boundary value, dual = max change of the
exchanged values in the iteration. Stop when both are below the tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpdopf_pyomo.decomposition.core import IterationCallback, Layout, Outcome, Progress, Tally


def run_enapp(
    executor: Any,
    layout: Layout,
    y0: np.ndarray,
    head_price: np.ndarray,
    *,
    damping: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 100,
    progress: Progress,
    callback: IterationCallback | None = None,
    tally: Tally | None = None,
    label: str = "enapp",
) -> Outcome:
    """Run ENApp; ``y0`` initial boundary values by global key, ``head_price`` USD/pu per global key
    (non-zero on P keys: what a child pays for the power at its head). ``tally``: record into an
    existing run's book-keeping (ADMM's warm start) instead of a new one; ``max_iter`` counts this call's
    iterations only. ``label`` starts each progress line (ADMM's warm start says so); the history's
    ``method`` column is ``enapp`` either way."""
    tally = tally or Tally(executor, progress, callback)
    areas = layout.areas
    idx = layout.index
    kinds = layout.kinds()
    parent_mask = layout.holder("parent")
    is_v = {a: kinds[idx[a]] == "v" for a in areas}
    y = y0.copy()
    converged = False
    for _ in range(max_iter):
        args = {}
        for a in areas:
            pm, v = parent_mask[a], is_v[a]
            # parent pins P, Q (received from the child); child pins v (received from the parent)
            pin = np.where((pm & ~v) | (~pm & v), y[idx[a]], np.nan)
            w1 = np.where(~pm & ~v, head_price[idx[a]], 0.0)
            args[a] = (np.zeros(len(idx[a])), w1, pin, tally.iterations + 1)
        out = tally.solve(args)
        x_par, x_chi = layout.copies(out)
        sent = y.copy()  # what the producing side computed this iteration
        for a in areas:
            xa, pm, v = out[a]["x"], parent_mask[a], is_v[a]
            produced = (pm & v) | (~pm & ~v)
            sent[idx[a][produced]] = xa[produced]
        r = float(np.max(np.abs(x_par - x_chi))) if len(y) else 0.0
        y_new = y + damping * (sent - y)
        s = float(np.max(np.abs(y_new - y))) if len(y) else 0.0
        y = y_new
        # the reported objective: the areas' own costs (without the children's head-price terms)
        tally.record("enapp", r, s, float(sum(out[a]["cost"] for a in areas)), label=label)
        if r <= tol and s <= tol:
            converged = True
            break
    # v down and S up per boundary and hour: the study's count
    return tally.outcome(converged, 2 * layout.boundary_hours, 3 * layout.boundary_hours, {"damping": damping})
