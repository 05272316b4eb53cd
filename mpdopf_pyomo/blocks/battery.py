"""Batteries: charge P_c, discharge P_d, reactive power q_B and stored energy B, coupled over the hours.

Per unit (energy in pu·h), battery at bus j, hour t, period length dt:

* B^t = B^{t-1} + dt (eta_c P_c^t - P_d^t / eta_d),  B^0 = soc0 * B_R
* soc_min B_R <= B^t <= soc_max B_R,  0 <= P_c, P_d <= P_BR
* inverter ``circle``: ((P_d - P_c)^2 + q_B^2) / S_BR <= S_BR (divided by S_BR, so that IPOPT's
  tolerances are relative to the rating);  ``box``: |q_B| <= sqrt(S_BR^2 - P_BR^2)
* terminal rule: ``hard`` B^T = B^0; ``free`` nothing; ``penalty`` shortfall s >= B^0 - B^T, s >= 0
  (priced in the objective)

``loss`` is the energy lost in conversion, sum_t [(1 - eta_c) P_c + (1/eta_d - 1) P_d] dt (pu·h): weighted
by alpha in the objective it prices losses and discourages charging and discharging at once.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import pandas as pd
from mpdopf_pyomo import pyo


def declare_battery(
    parent: pyo.Block,
    name: str,
    *,
    batteries: pd.DataFrame,
    hours: Sequence[int],
    dt_h: float,
    limit: Literal["circle", "box"],
    terminal: Literal["hard", "free", "penalty"],
) -> pyo.Block:
    """Add ``parent.<name>``: Vars ``pc``, ``pd``, ``q``, ``e`` per (bus, hour) and Expressions ``p_net``
    (discharge minus charge, pu) per (bus, hour), ``loss`` (pu·h) and ``shortfall`` (pu·h, penalty rule)."""
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    units = list(batteries.index)
    T = list(hours)
    data = batteries.to_dict("index")
    b.J = pyo.Set(initialize=units, ordered=True)
    b.T = pyo.Set(initialize=T, ordered=True)
    b.e0 = {j: data[j]["soc0"] * data[j]["e_rated"] for j in units}

    b.pc = pyo.Var(b.J, b.T, bounds=lambda _, j, t: (0.0, data[j]["p_rated"]), initialize=0.0)
    b.pd = pyo.Var(b.J, b.T, bounds=lambda _, j, t: (0.0, data[j]["p_rated"]), initialize=0.0)
    b.e = pyo.Var(
        b.J,
        b.T,
        bounds=lambda _, j, t: (data[j]["soc_min"] * data[j]["e_rated"], data[j]["soc_max"] * data[j]["e_rated"]),
        initialize=lambda _, j, t: b.e0[j],
    )
    if limit == "box":
        def q_bounds(_: pyo.Block, j: str, t: int) -> tuple[float, float]:
            qmax = math.sqrt(max(data[j]["s_rated"] ** 2 - data[j]["p_rated"] ** 2, 0.0))
            return (-qmax, qmax)

        b.q = pyo.Var(b.J, b.T, bounds=q_bounds, initialize=0.0)
    else:
        b.q = pyo.Var(b.J, b.T, bounds=lambda _, j, t: (-data[j]["s_rated"], data[j]["s_rated"]), initialize=0.0)
        def apparent(blk: pyo.Block, j: str, t: int) -> object:
            # divided by S_BR: in pu^2 (S_BR^2 ~ 3e-5) IPOPT's absolute tolerances let |S| exceed S_BR by
            # 0.07 %; divided by S_BR it holds to 1e-6 relative with O(1) gradients (divided by S_BR^2,
            # the gradients ~300 made an ENApp area solve of ieee123 end locally infeasible)
            s = data[j]["s_rated"]
            if s <= 0:
                return (blk.pd[j, t] - blk.pc[j, t]) ** 2 + blk.q[j, t] ** 2 <= 0.0
            return ((blk.pd[j, t] - blk.pc[j, t]) ** 2 + blk.q[j, t] ** 2) / s <= s

        b.apparent = pyo.Constraint(b.J, b.T, rule=apparent)

    first = T[0]

    def soc(blk: pyo.Block, j: str, t: int) -> object:
        previous = b.e0[j] if t == first else blk.e[j, T[T.index(t) - 1]]
        d = data[j]
        return blk.e[j, t] == previous + dt_h * (d["eta_c"] * blk.pc[j, t] - blk.pd[j, t] / d["eta_d"])

    b.soc = pyo.Constraint(b.J, b.T, rule=soc)
    last = T[-1]
    if terminal == "hard":
        b.terminal = pyo.Constraint(b.J, rule=lambda blk, j: blk.e[j, last] == b.e0[j])
    b.shortfall_var = pyo.Var(b.J, bounds=(0.0, None), initialize=0.0)
    if terminal == "penalty":
        b.terminal = pyo.Constraint(b.J, rule=lambda blk, j: blk.shortfall_var[j] >= b.e0[j] - blk.e[j, last])
    else:
        b.shortfall_var.fix(0.0)

    b.p_net = pyo.Expression(b.J, b.T, rule=lambda blk, j, t: blk.pd[j, t] - blk.pc[j, t])
    b.loss = pyo.Expression(
        expr=dt_h
        * sum(
            (1 - data[j]["eta_c"]) * b.pc[j, t] + (1 / data[j]["eta_d"] - 1) * b.pd[j, t] for j in units for t in T
        )
    )
    b.shortfall = pyo.Expression(expr=sum(b.shortfall_var[j] for j in units))
    return b
