"""Branch flow (DistFlow) over a radial tree: real and reactive bus balance, voltage drop, current relation.

Per unit, each bus on its own voltage base; branch e = (i -> j), i the parent, hour t:

* real balance at j:      P_e - r_e l_e - sum_k P_jk - P_out_j = p_W,j(v_j) - p_inj,j
* reactive balance at j:  Q_e - x_e l_e - sum_k Q_jk - Q_out_j = q_W,j(v_j) - q_inj,j
* voltage drop:           v_j = v_i / a_e^2 - 2 (r_e P_e + x_e Q_e) + (r_e^2 + x_e^2) l_e
* current relation:       chosen by the formulation (see :data:`FORMULATIONS`), on the sent voltage v_i / a_e^2

v is the squared voltage magnitude, l the squared current magnitude (on the to-bus side). A branch is an
ideal transformer of off-nominal ratio a_e (``tap``; 1 for lines) at its from side followed by its series
impedance r_e + j x_e, in pu on the to-bus's base: the same equations hold on every voltage level.
P_e, Q_e enter the branch at i; the ideal transformer is lossless, so the loss is r_e l_e as on a line.

The withdrawal at a bus depends on its voltage (see :class:`VoltageTerms`):
p_W(v) = c_p + z_p v + i_p |V| and q_W(v) = c_q + z_q v + i_q |V|, where the constant parts c are the
constant-power loads (minus fixed injections), the v terms the constant-impedance loads and the shunt
susceptance (a susceptance b injects b v of reactive power: z_q = -b; exact in squared voltage), and the
|V| terms the constant-current loads. |V| = sqrt(v) is formulation-specific (LinDistFlow linearises it).
``P_out``/``Q_out`` are boundary withdrawals (power leaving the area through a cut branch) and are zero in
a central model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

from mpdopf_pyomo import pyo


@dataclass(frozen=True)
class Formulation:
    """The formulation-specific physics; adding one touches no problem code.

    ``relation(l, v_sent, P, Q)`` relates the squared current to the flow entering a branch and the squared
    voltage behind its series impedance (v_i / a^2); ``None`` fixes l at 0 (losses dropped).
    ``magnitude(v)`` is |V| as a function of the squared voltage v, used by constant-current loads.
    """

    name: str
    uses_current: bool  #: False: l is fixed at 0 (losses dropped)
    relation: Callable[[object, object, object, object], object] | None
    magnitude: Callable[[object], object]
    description: str


def _exact(ell: object, v_sent: object, p: object, q: object) -> object:
    return ell * v_sent == p**2 + q**2


def _socp(ell: object, v_sent: object, p: object, q: object) -> object:
    return ell * v_sent >= p**2 + q**2


def _sqrt(v: object) -> object:
    """|V| = sqrt(v) exactly (with constant-current loads this term is nonconvex, in ``socp`` as well)."""
    return pyo.sqrt(v)


def _sqrt_linearised(v: object) -> object:
    """|V| ~ (1 + v) / 2: sqrt(v) linearised around v = 1; it overstates |V| by (1 - |V|)^2 / 2 (1.25e-3 at
    0.95 pu), keeping LinDistFlow linear."""
    return 0.5 * (1.0 + v)


FORMULATIONS: dict[str, Formulation] = {
    "exact": Formulation("exact", True, _exact, _sqrt, "l*v = P^2 + Q^2 (exact branch flow, nonconvex)"),
    "socp": Formulation("socp", True, _socp, _sqrt, "l*v >= P^2 + Q^2 (second-order cone relaxation)"),
    "linear": Formulation(
        "linear", False, None, _sqrt_linearised, "LinDistFlow: l = 0, losses dropped, |V| ~ (1 + v) / 2"
    ),
}


class VoltageTerms(NamedTuple):
    """The voltage-dependent part of a withdrawal at one bus and hour: z * v + i * |V| (pu)."""

    z: float = 0.0  #: coefficient on the squared voltage v (constant-impedance loads, minus shunt susceptance)
    i: float = 0.0  #: coefficient on |V| (constant-current loads)


def declare_branch_flow(
    parent: pyo.Block,
    name: str,
    *,
    branches: Sequence[tuple[str, str, str, float, float, float]],
    balance_buses: Sequence[str],
    root: str,
    hours: Sequence[int],
    formulation: Formulation,
    v_bounds: tuple[float, float],
    p_load: Mapping[tuple[str, int], float],
    q_load: Mapping[tuple[str, int], float],
    p_inj: Mapping[tuple[str, int], object],
    q_inj: Mapping[tuple[str, int], object],
    p_load_v: Mapping[tuple[str, int], VoltageTerms] | None = None,
    q_load_v: Mapping[tuple[str, int], VoltageTerms] | None = None,
    boundary_out: Mapping[str, str] | None = None,
) -> pyo.Block:
    """Add the DistFlow relations of a radial (sub)tree as ``parent.<name>``.

    ``branches``: (name, from_bus, to_bus, r, x, tap) in per unit, oriented away from ``root``.
    ``balance_buses``: buses whose balance this block enforces (every bus but the root).
    ``p_load``/``q_load``: constant withdrawals per (bus, hour) (constant-power load minus fixed
    injections), pu. ``p_load_v``/``q_load_v``: voltage-dependent withdrawals per (bus, hour), only where
    there are any. ``p_inj``/``q_inj``: controllable injections per (bus, hour) as Pyomo expressions (PV,
    batteries). ``boundary_out``: cut branch name -> bus of this tree where the child area draws power.
    The block exposes ``v``, ``P``, ``Q``, ``l``, for each cut branch ``P_out``/``Q_out``, and
    ``withdrawal(kind, bus, t)`` (kind ``"p"`` or ``"q"``), the whole withdrawal at a bus as an expression.
    """
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    names = [e[0] for e in branches]
    buses = [root] + [e[2] for e in branches]
    b.parent_bus = {e[0]: e[1] for e in branches}
    branches_to = {e[0]: e[2] for e in branches}
    r = {e[0]: e[3] for e in branches}
    x = {e[0]: e[4] for e in branches}
    tap = {e[0]: e[5] for e in branches}
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
    constant = {"p": p_load, "q": q_load}
    dependent = {"p": dict(p_load_v or {}), "q": dict(q_load_v or {})}

    def withdrawal(kind: str, j: str, t: int) -> object:
        """Constant part plus z v + i |V|; a plain number where the withdrawal does not depend on v."""
        w = constant[kind].get((j, t), zero)
        terms = dependent[kind].get((j, t))
        if terms is None:
            return w
        v = b.v[j, t]
        if terms.z:
            w = w + terms.z * v
        if terms.i:
            w = w + terms.i * formulation.magnitude(v)
        return w

    def real_balance(blk: pyo.Block, j: str, t: int) -> object:
        e = incoming[j]
        return (
            blk.P[e, t]
            - r[e] * blk.l[e, t]
            - sum(blk.P[k, t] for k in children[j])
            - sum(blk.P_out[c, t] for c in outs_at.get(j, ()))
            + p_inj.get((j, t), zero)
            == withdrawal("p", j, t)
        )

    def reactive_balance(blk: pyo.Block, j: str, t: int) -> object:
        e = incoming[j]
        return (
            blk.Q[e, t]
            - x[e] * blk.l[e, t]
            - sum(blk.Q[k, t] for k in children[j])
            - sum(blk.Q_out[c, t] for c in outs_at.get(j, ()))
            + q_inj.get((j, t), zero)
            == withdrawal("q", j, t)
        )

    def v_sent(blk: pyo.Block, e: str, t: int) -> object:
        """Squared voltage behind the series impedance: v_i / a^2 (v_i itself on a line)."""
        v = blk.v[blk.parent_bus[e], t]
        return v if tap[e] == 1.0 else v * (1.0 / tap[e] ** 2)

    def voltage_drop(blk: pyo.Block, e: str, t: int) -> object:
        j = branches_to[e]
        return blk.v[j, t] == v_sent(blk, e, t) - 2 * (r[e] * blk.P[e, t] + x[e] * blk.Q[e, t]) + (
            r[e] ** 2 + x[e] ** 2
        ) * blk.l[e, t]

    b.Nb = pyo.Set(initialize=list(balance_buses), ordered=True)
    b.real_balance = pyo.Constraint(b.Nb, b.T, rule=real_balance)
    b.reactive_balance = pyo.Constraint(b.Nb, b.T, rule=reactive_balance)
    b.voltage_drop = pyo.Constraint(b.E, b.T, rule=voltage_drop)
    relation = formulation.relation
    if relation is not None:
        b.current = pyo.Constraint(
            b.E, b.T, rule=lambda blk, e, t: relation(blk.l[e, t], v_sent(blk, e, t), blk.P[e, t], blk.Q[e, t])
        )
    b.children = children
    b.outs_at = outs_at
    b.withdrawal = withdrawal
    return b
