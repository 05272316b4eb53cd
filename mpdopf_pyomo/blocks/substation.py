"""Substation: the power imported at the feeder head and what it costs.

P_sub^t, Q_sub^t (pu) equal the flows leaving the root bus (plus the withdrawal at the root: its load and
shunt, at the root's voltage). Energy cost in USD:
sum_t C^t * P_sub^t * dt * S_base, with C^t in USD/kWh and S_base in kVA. ``reverse_power=False`` forbids
export (P_sub >= 0), as the study's code did.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from mpdopf_pyomo import pyo


def declare_substation(
    parent: pyo.Block,
    name: str,
    *,
    net: pyo.Block,
    root: str,
    hours: Sequence[int],
    price: Mapping[int, float],
    dt_h: float,
    s_base_kva: float,
    reverse_power: bool,
    root_p_load: Mapping[int, object],
    root_q_load: Mapping[int, object],
) -> pyo.Block:
    """Add ``parent.<name>`` with Vars ``P``, ``Q`` per hour (pu) and Expression ``cost`` (USD).

    ``root_p_load``/``root_q_load``: the withdrawal at the root per hour, a number or an expression of the
    root voltage."""
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    T = list(hours)
    b.T = pyo.Set(initialize=T, ordered=True)
    b.P = pyo.Var(b.T, bounds=(None if reverse_power else 0.0, None), initialize=0.0)
    b.Q = pyo.Var(b.T, initialize=0.0)
    first = net.children[root]
    outs = net.outs_at.get(root, [])
    b.p_balance = pyo.Constraint(
        b.T,
        rule=lambda blk, t: blk.P[t]
        == sum(net.P[e, t] for e in first) + sum(net.P_out[c, t] for c in outs) + root_p_load.get(t, 0.0),
    )
    b.q_balance = pyo.Constraint(
        b.T,
        rule=lambda blk, t: blk.Q[t]
        == sum(net.Q[e, t] for e in first) + sum(net.Q_out[c, t] for c in outs) + root_q_load.get(t, 0.0),
    )
    b.cost = pyo.Expression(expr=sum(price[t] * b.P[t] * dt_h * s_base_kva for t in T))
    return b
