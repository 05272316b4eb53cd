"""Assemble the blocks into one Pyomo model: the whole feeder (central) or one area with boundary ports.

An area model is the same blocks over the area's sub-tree. Per cut branch c = (i -> k), i in the parent
area, k in the child area, and hour t, the ports are:

* in the parent area: the power the child draws at i (``net.P_out[c, t]``, ``net.Q_out[c, t]``) and the
  squared voltage of i (``net.v[i, t]``);
* in the child area: the flow on c (``net.P[c, t]``, ``net.Q[c, t]``) and the squared voltage of its root i,
  which is a variable there.

Only the area holding the substation pays for energy, so the area objectives add up to the central one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyomo.environ as pyo
from pyomo.common.gc_manager import PauseGC

from mpdopf_pyomo.blocks.battery import declare_battery
from mpdopf_pyomo.blocks.branch_flow import FORMULATIONS, declare_branch_flow
from mpdopf_pyomo.blocks.pv import declare_pv
from mpdopf_pyomo.blocks.substation import declare_substation
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import CaseError

PORT_KINDS = ("P", "Q", "v")


@dataclass
class AreaView:
    """The part of a case one model covers."""

    area: int | None  #: None for the whole feeder
    root: str
    root_is_port: bool  #: True in a child area: the root voltage is a port, not fixed
    buses: list[str]  #: buses this model owns (loads, PVs, batteries, balances)
    branches: pd.DataFrame  #: branches in the model (the incoming cut branch included)
    cut_in: str | None = None
    cuts_out: dict[str, str] = field(default_factory=dict)  #: cut branch -> parent-side bus
    pays_energy: bool = True


def area_view(case: Case, area: int | None = None) -> AreaView:
    """Describe the whole feeder (``area=None``) or one area of it."""
    if area is None:
        return AreaView(None, case.root, False, list(case.buses.index), case.branches)
    owned = case.buses.index[case.buses["area"] == area]
    if len(owned) == 0:
        raise CaseError(f"{case.source}: areas: area {area} has no buses")
    owned_set = set(owned)
    branches = case.branches[case.branches["to_bus"].isin(owned_set)]
    cut_in = [c for c in case.cut_branches if c in branches.index]
    cuts_out = {
        c: case.branches.at[c, "from_bus"]
        for c in case.cut_branches
        if case.branches.at[c, "from_bus"] in owned_set
    }
    if case.root in owned_set:
        return AreaView(area, case.root, False, list(owned), branches, None, cuts_out, True)
    if len(cut_in) != 1:
        raise CaseError(f"{case.source}: areas: area {area} must be entered by exactly one cut branch")
    root = case.branches.at[cut_in[0], "from_bus"]
    return AreaView(area, root, True, list(owned), branches, cut_in[0], cuts_out, False)


def _gc_paused(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with Python's cyclic garbage collector paused (Pyomo's PauseGC, as its writers do).

    Building creates ~10^5 small objects; the collector's repeated full passes over them were half of the
    build time (ieee123, 24 h: 0.26-0.48 s with the collector, 0.10-0.12 s without).
    """

    @functools.wraps(fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        with PauseGC():
            return fn(*args, **kwargs)

    return paused


@_gc_paused
def build_model(case: Case, formulation: str = "exact", area: int | None = None) -> pyo.ConcreteModel:
    """Build the multi-period OPF of the whole feeder or of one area (see :func:`area_view`)."""
    if formulation not in FORMULATIONS:
        raise CaseError(f"unknown formulation '{formulation}'; choose one of {', '.join(FORMULATIONS)}")
    view = area_view(case, area)
    s = case.settings
    T = list(case.profile.index)
    prof = case.profile
    owned = set(view.buses)
    m = pyo.ConcreteModel(name=f"{case.name}-{'central' if area is None else f'area{area}'}")
    m.view = view
    m.formulation = formulation
    m.hours = T

    pvs = case.pvs[case.pvs.index.isin(owned)]
    bats = case.batteries[case.batteries.index.isin(owned)]
    declare_pv(m, "pv", pvs=pvs, pv_mult=prof["pv_mult"], hours=T, limit=s.inverter_limit)
    declare_battery(
        m, "battery", batteries=bats, hours=T, dt_h=s.dt_h, limit=s.inverter_limit, terminal=s.terminal_soc
    )

    buses = case.buses.loc[view.buses]
    lm = prof["load_mult"].to_numpy()
    p_load_arr = np.outer(buses["p_load"].to_numpy(), lm)
    q_load_arr = np.outer(buses["q_load"].to_numpy(), lm) - buses["q_cap"].to_numpy()[:, None]
    p_load: dict[tuple[str, int], float] = {}
    q_load: dict[tuple[str, int], float] = {}
    for n, bus in enumerate(view.buses):
        for k, t in enumerate(T):
            if p_load_arr[n, k] != 0.0:
                p_load[bus, t] = float(p_load_arr[n, k])
            if q_load_arr[n, k] != 0.0:
                q_load[bus, t] = float(q_load_arr[n, k])
    p_inj: dict[tuple[str, int], Any] = {}
    q_inj: dict[tuple[str, int], Any] = {}
    for (j, t), p in m.pv.p.items():
        p_inj[j, t] = p
        q_inj[j, t] = m.pv.q[j, t]
    for j in bats.index:
        for t in T:
            p_inj[j, t] = p_inj.get((j, t), 0.0) + m.battery.p_net[j, t]
            q_inj[j, t] = q_inj.get((j, t), 0.0) + m.battery.q[j, t]

    br = view.branches
    branch_rows = list(zip(br.index, br["from_bus"], br["to_bus"], br["r"], br["x"]))
    balance = [b for b in view.buses if b != view.root]
    vmin, vmax = s.v_min_pu**2, s.v_max_pu**2
    net = declare_branch_flow(
        m,
        "net",
        branches=branch_rows,
        balance_buses=balance,
        root=view.root,
        hours=T,
        formulation=FORMULATIONS[formulation],
        v_bounds=(vmin, vmax),
        p_load=p_load,
        q_load=q_load,
        p_inj=p_inj,
        q_inj=q_inj,
        boundary_out=view.cuts_out,
    )
    if not view.root_is_port:
        if not s.v_min_pu <= s.v_sub_pu <= s.v_max_pu:
            # otherwise the fixed root voltage lies outside its own bounds: Pyomo warns and the solver
            # interface fails with a message that does not say what is wrong
            raise CaseError(
                f"{case.source}: settings: the problem is infeasible: the substation voltage v_sub_pu = "
                f"{s.v_sub_pu} pu lies outside the voltage limits [v_min_pu, v_max_pu] = "
                f"[{s.v_min_pu}, {s.v_max_pu}] pu"
            )
        for t in T:
            net.v[view.root, t].fix(s.v_sub_pu**2)

    base = case.bases.s_kva
    cost_terms = []
    if view.pays_energy:
        if any((view.root, t) in p_inj for t in T):
            raise CaseError(f"{case.source}: the substation bus '{view.root}' cannot hold a PV or battery")
        declare_substation(
            m,
            "substation",
            net=net,
            root=view.root,
            hours=T,
            price=prof["price"].to_dict(),
            dt_h=s.dt_h,
            s_base_kva=base,
            reverse_power=s.reverse_power,
            root_p_load={t: p_load.get((view.root, t), 0.0) for t in T},
            root_q_load={t: q_load.get((view.root, t), 0.0) for t in T},
        )
        cost_terms.append(m.substation.cost)
    m.energy_cost = pyo.Expression(expr=sum(cost_terms) if cost_terms else 0.0)
    m.loss_cost = pyo.Expression(expr=s.alpha_usd_per_kwh * base * m.battery.loss)
    m.terminal_cost = pyo.Expression(expr=s.terminal_penalty_usd_per_kwh * base * m.battery.shortfall)
    m.obj = pyo.Objective(expr=m.energy_cost + m.loss_cost + m.terminal_cost)

    m.ports = _ports(m, view, T)
    return m


def _ports(m: pyo.ConcreteModel, view: AreaView, T: list[int]) -> dict[tuple[str, str, int], Any]:
    """Boundary variables by (kind, cut branch, hour); kind is 'P', 'Q' or 'v' (see module docstring)."""
    net = m.net
    ports: dict[tuple[str, str, int], Any] = {}
    for cut, bus in view.cuts_out.items():
        for t in T:
            ports["P", cut, t] = net.P_out[cut, t]
            ports["Q", cut, t] = net.Q_out[cut, t]
            ports["v", cut, t] = net.v[bus, t]
    if view.cut_in is not None:
        for t in T:
            ports["P", view.cut_in, t] = net.P[view.cut_in, t]
            ports["Q", view.cut_in, t] = net.Q[view.cut_in, t]
            ports["v", view.cut_in, t] = net.v[view.root, t]
    return ports


# --------------------------------------------------------------------------------------------------
# Starting point
# --------------------------------------------------------------------------------------------------


def flat_start(case: Case) -> dict[str, pd.DataFrame]:
    """A starting point from one LinDistFlow sweep of the forecast: no batteries, PV at zero reactive power.

    Branch flows are the net loads downstream (backward sweep), squared voltages follow the linear drop
    from the substation (forward sweep), and l = (P^2 + Q^2) / v. Returns frames indexed by branch or bus
    with one column per hour.
    """
    T = list(case.profile.index)
    lm = case.profile["load_mult"].to_numpy()
    pm = case.profile["pv_mult"].to_numpy()
    buses = case.buses
    net_p = pd.DataFrame(np.outer(buses["p_load"].to_numpy(), lm), index=buses.index, columns=T)
    net_q = pd.DataFrame(np.outer(buses["q_load"].to_numpy(), lm), index=buses.index, columns=T)
    net_q = net_q.sub(buses["q_cap"], axis=0)
    if len(case.pvs):
        pv = pd.DataFrame(np.outer(case.pvs["p_rated"].to_numpy(), pm), index=case.pvs.index, columns=T)
        net_p = net_p.sub(pv.reindex(net_p.index, fill_value=0.0))
    br = case.branches
    order = list(br.index)
    down_p = net_p.to_numpy().copy()
    down_q = net_q.to_numpy().copy()
    pos = {b: k for k, b in enumerate(buses.index)}
    P = np.zeros((len(order), len(T)))
    Q = np.zeros((len(order), len(T)))
    for n in range(len(order) - 1, -1, -1):  # children before parents (breadth-first order reversed)
        e = order[n]
        i, j = pos[br.at[e, "from_bus"]], pos[br.at[e, "to_bus"]]
        P[n], Q[n] = down_p[j], down_q[j]
        down_p[i] += down_p[j]
        down_q[i] += down_q[j]
    v = np.zeros((len(buses), len(T)))
    v[pos[case.root]] = case.settings.v_sub_pu**2
    r, x = br["r"].to_numpy(), br["x"].to_numpy()
    for n, e in enumerate(order):
        i, j = pos[br.at[e, "from_bus"]], pos[br.at[e, "to_bus"]]
        v[j] = v[i] - 2 * (r[n] * P[n] + x[n] * Q[n])
    vi = np.array([v[pos[br.at[e, "from_bus"]]] for e in order])
    ell = (P**2 + Q**2) / vi
    return {
        "P": pd.DataFrame(P, index=br.index, columns=T),
        "Q": pd.DataFrame(Q, index=br.index, columns=T),
        "l": pd.DataFrame(ell, index=br.index, columns=T),
        "v": pd.DataFrame(v, index=buses.index, columns=T),
    }


def initialize(m: pyo.ConcreteModel, start: dict[str, pd.DataFrame]) -> None:
    """Load a starting point (from :func:`flat_start`) into a central or area model."""
    net = m.net
    P, Q, ell, v = (start[k].to_dict("index") for k in ("P", "Q", "l", "v"))
    use_l = not net.l[next(iter(net.l))].fixed if len(net.l) else False
    for (e, t), var in net.P.items():
        var.set_value(P[e][t], skip_validation=True)
        net.Q[e, t].set_value(Q[e][t], skip_validation=True)
        if use_l:
            net.l[e, t].set_value(ell[e][t], skip_validation=True)
    for (bus, t), var in net.v.items():
        if not var.fixed:
            var.set_value(v[bus][t], skip_validation=True)
    for (c, t), var in net.P_out.items():
        var.set_value(P[c][t], skip_validation=True)
        net.Q_out[c, t].set_value(Q[c][t], skip_validation=True)
    if hasattr(m, "substation"):
        first = net.children[m.view.root]
        for t in m.hours:
            m.substation.P[t].set_value(sum(P[e][t] for e in first), skip_validation=True)
            m.substation.Q[t].set_value(sum(Q[e][t] for e in first), skip_validation=True)

