"""PV inverters: active power follows the forecast; reactive power is a decision within the inverter limit.

Per unit, PV at bus j, hour t: p_D = pv_mult^t * p_DR (a constant), and q_D is bounded by

* ``circle``: p_D^2 + q_D^2 <= S_DR^2, i.e. |q_D| <= sqrt(S_DR^2 - p_D^2) for the hour's p_D;
* ``box``:    |q_D| <= sqrt(S_DR^2 - p_DR^2), the constant bound the study's MATLAB code used.

With p_D fixed by the forecast both limits are plain variable bounds, so the block adds no constraint.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import pandas as pd
from mpdopf_pyomo import pyo


def declare_pv(
    parent: pyo.Block,
    name: str,
    *,
    pvs: pd.DataFrame,
    pv_mult: pd.Series,
    hours: Sequence[int],
    limit: Literal["circle", "box"],
) -> pyo.Block:
    """Add ``parent.<name>`` with ``p`` (dict of constants, pu) and ``q`` (Var, pu) per (bus, hour)."""
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    units = list(pvs.index)
    T = list(hours)
    b.J = pyo.Set(initialize=units, ordered=True)
    b.T = pyo.Set(initialize=T, ordered=True)
    p_rated = pvs["p_rated"].to_dict()
    s_rated = pvs["s_rated"].to_dict()
    b.p = {(j, t): float(pv_mult.loc[t]) * p_rated[j] for j in units for t in T}

    def q_bounds(blk: pyo.Block, j: str, t: int) -> tuple[float, float]:
        p = p_rated[j] if limit == "box" else b.p[j, t]
        qmax = math.sqrt(max(s_rated[j] ** 2 - p**2, 0.0))
        return (-qmax, qmax)

    b.q = pyo.Var(b.J, b.T, bounds=q_bounds, initialize=0.0)
    return b
