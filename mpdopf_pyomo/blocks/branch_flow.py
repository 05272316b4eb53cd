"""Branch flow (DistFlow) over a radial tree: real and reactive bus balance, voltage drop, current relation.

Per unit, branch e = (i -> j), i the parent, hour t:

* real balance at j:      P_e - r_e l_e - sum_k P_jk - P_out_j = p_L,j - p_inj,j
* reactive balance at j:  Q_e - x_e l_e - sum_k Q_jk - Q_out_j = q_L,j - q_inj,j
* voltage drop:           v_j = v_i - 2 (r_e P_e + x_e Q_e) + (r_e^2 + x_e^2) l_e
* current relation:       chosen by the formulation (see :data:`FORMULATIONS`)

v is the squared voltage magnitude, l the squared current magnitude. ``P_out``/``Q_out`` are boundary
withdrawals (power leaving the area through a cut branch) and are zero in a central model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import pyomo.environ as pyo


@dataclass(frozen=True)
class Formulation:
    """How the squared current l relates to P, Q and v; adding one touches no problem code."""

    name: str
    uses_current: bool  #: False: l is fixed at 0 (losses dropped)
    relation: Callable[[pyo.Block, str, int], object] | None
    description: str


def _exact(b: pyo.Block, e: str, t: int) -> object:
    return b.l[e, t] * b.v[b.parent_bus[e], t] == b.P[e, t] ** 2 + b.Q[e, t] ** 2


def _socp(b: pyo.Block, e: str, t: int) -> object:
    return b.l[e, t] * b.v[b.parent_bus[e], t] >= b.P[e, t] ** 2 + b.Q[e, t] ** 2


FORMULATIONS: dict[str, Formulation] = {
    "exact": Formulation("exact", True, _exact, "l*v = P^2 + Q^2 (exact branch flow, nonconvex)"),
    "socp": Formulation("socp", True, _socp, "l*v >= P^2 + Q^2 (second-order cone relaxation)"),
    "linear": Formulation("linear", False, None, "LinDistFlow: l = 0, losses dropped"),
}


def declare_branch_flow(
    parent: pyo.Block,
    name: str,
    *,
    branches: Sequence[tuple[str, str, str, float, float]],
    balance_buses: Sequence[str],
    root: str,
    hours: Sequence[int],
    formulation: Formulation,
    v_bounds: tuple[float, float],
    p_load: Mapping[tuple[str, int], float],
    q_load: Mapping[tuple[str, int], float],
    p_inj: Mapping[tuple[str, int], object],
    q_inj: Mapping[tuple[str, int], object],
    boundary_out: Mapping[str, str] | None = None,
) -> pyo.Block:
    """Add the DistFlow relations of a radial (sub)tree as ``parent.<name>``.

    ``branches``: (name, from_bus, to_bus, r, x) in per unit, oriented away from ``root``.
    ``balance_buses``: buses whose balance this block enforces (every bus but the root).
    ``p_load``/``q_load``: constant withdrawals per (bus, hour) (load minus fixed injections), pu.
    ``p_inj``/``q_inj``: controllable injections per (bus, hour) as Pyomo expressions (PV, batteries).
    ``boundary_out``: cut branch name -> bus of this tree where the child area draws power.
    The block exposes ``v``, ``P``, ``Q``, ``l`` and, for each cut branch, ``P_out``/``Q_out``.
    """
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    names = [e[0] for e in branches]
    buses = [root] + [e[2] for e in branches]
    b.parent_bus = {e[0]: e[1] for e in branches}
    r = {e[0]: e[3] for e in branches}
    x = {e[0]: e[4] for e in branches}
    incoming: dict[str, str] = {e[2]: e[0] for e in branches}
    children: dict[str, list[str]] = {bus: [] for bus in buses}
    for e in branches:
        children[e[1]].append(e[0])
    boundary_out = dict(boundary_out or {})
    outs_at: dict[str, list[str]] = {}
    for cut, bus in boundary_out.items():
        outs_at.setdefault(bus, []).append(cut)

    T = list(hours)
    b.T = pyo.Set(initialize=T, ordered=True)
    b.E = pyo.Set(initialize=names, ordered=True)
    b.N = pyo.Set(initialize=buses, ordered=True)
    vmin, vmax = v_bounds
    # start at 1 pu when that is within the limits (a start outside its bounds makes Pyomo warn on stderr)
    b.v = pyo.Var(b.N, b.T, bounds=(vmin, vmax), initialize=min(max(1.0, vmin), vmax))
    b.P = pyo.Var(b.E, b.T, initialize=0.0)
    b.Q = pyo.Var(b.E, b.T, initialize=0.0)
    b.l = pyo.Var(b.E, b.T, bounds=(0.0, None), initialize=0.0)
    if not formulation.uses_current:
        b.l.fix(0.0)
    b.B = pyo.Set(initialize=list(boundary_out), ordered=True)
    b.P_out = pyo.Var(b.B, b.T, initialize=0.0)
    b.Q_out = pyo.Var(b.B, b.T, initialize=0.0)

    zero = 0.0

    def real_balance(blk: pyo.Block, j: str, t: int) -> object:
        e = incoming[j]
        return (
            blk.P[e, t]
            - r[e] * blk.l[e, t]
            - sum(blk.P[k, t] for k in children[j])
            - sum(blk.P_out[c, t] for c in outs_at.get(j, ()))
            + p_inj.get((j, t), zero)
            == p_load.get((j, t), zero)
        )

    def reactive_balance(blk: pyo.Block, j: str, t: int) -> object:
        e = incoming[j]
        return (
            blk.Q[e, t]
            - x[e] * blk.l[e, t]
            - sum(blk.Q[k, t] for k in children[j])
            - sum(blk.Q_out[c, t] for c in outs_at.get(j, ()))
            + q_inj.get((j, t), zero)
            == q_load.get((j, t), zero)
        )

    def voltage_drop(blk: pyo.Block, e: str, t: int) -> object:
        i, j = blk.parent_bus[e], branches_to[e]
        return blk.v[j, t] == blk.v[i, t] - 2 * (r[e] * blk.P[e, t] + x[e] * blk.Q[e, t]) + (
            r[e] ** 2 + x[e] ** 2
        ) * blk.l[e, t]

    branches_to = {e[0]: e[2] for e in branches}
    b.Nb = pyo.Set(initialize=list(balance_buses), ordered=True)
    b.real_balance = pyo.Constraint(b.Nb, b.T, rule=real_balance)
    b.reactive_balance = pyo.Constraint(b.Nb, b.T, rule=reactive_balance)
    b.voltage_drop = pyo.Constraint(b.E, b.T, rule=voltage_drop)
    if formulation.relation is not None:
        b.current = pyo.Constraint(b.E, b.T, rule=formulation.relation)
    b.children = children
    b.outs_at = outs_at
    return b
