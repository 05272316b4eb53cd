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
from mpdopf_pyomo import pyo
from pyomo.common.gc_manager import PauseGC

from mpdopf_pyomo.blocks.battery import declare_battery
from mpdopf_pyomo.blocks.branch_flow import FORMULATIONS, VoltageTerms, declare_branch_flow
from mpdopf_pyomo.blocks.pv import declare_pv
from mpdopf_pyomo.blocks.substation import declare_substation
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import CaseError

PORT_KINDS = ("P", "Q", "v")

#: Network columns the physics reads beyond r, x, loads and q_cap, with the value that means "absent":
#: no shunt, constant-power load (ZIP fractions z, i, p = 0, 0, 1), a line (tap ratio 1).
BUS_DEFAULTS: dict[str, float] = {
    "b_shunt": 0.0,
    "g_shunt": 0.0,
    "p_zip_z": 0.0,
    "p_zip_i": 0.0,
    "p_zip_p": 1.0,
    "q_zip_z": 0.0,
    "q_zip_i": 0.0,
    "q_zip_p": 1.0,
    "p_fixed": 0.0,
    "q_fixed": 0.0,
}
BRANCH_DEFAULTS: dict[str, float] = {"tap": 1.0}
#: How far a ZIP triple may sum from 1 (fractions read from files carry rounding).
ZIP_SUM_TOL = 1e-6


def _network_columns(case: Case) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The case's bus and branch tables with every physics column present: the one place defaults apply.

    Bus columns (see :data:`BUS_DEFAULTS`): ``b_shunt`` (pu susceptance at v = 1: capacitors and line
    charging, reactive injection b v; negative for a reactor), ``g_shunt`` (pu conductance at v = 1:
    transformers' no-load loss, a withdrawal g v), ``p_fixed`` and ``q_fixed`` (the network's
    generators: a fixed injection, pu, not scaled by the load multiplier) and the ZIP fractions ``p_zip_z``,
    ``p_zip_i``, ``p_zip_p``, ``q_zip_z``, ``q_zip_i``, ``q_zip_p`` (each triple sums to 1). Branch column
    ``tap`` (off-nominal ratio at the from side, > 0). A case whose loader does not yet provide a column
    gets its default; a value that is not finite, a tap <= 0 or a ZIP triple not summing to 1 is a
    :class:`CaseError`.
    """
    buses, branches = case.buses, case.branches
    missing_b = {k: v for k, v in BUS_DEFAULTS.items() if k not in buses.columns}
    missing_e = {k: v for k, v in BRANCH_DEFAULTS.items() if k not in branches.columns}
    if missing_b:
        buses = buses.assign(**missing_b)
    if missing_e:
        branches = branches.assign(**missing_e)
    for table, cols, what in ((buses, BUS_DEFAULTS, "buses"), (branches, BRANCH_DEFAULTS, "branches")):
        values = table[list(cols)].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise CaseError(f"{case.source}: {what}.{list(cols)[col]}: not a finite number at {table.index[row]!r}")
    taps = branches["tap"].to_numpy(dtype=float)
    if (taps <= 0).any():
        e = branches.index[int(np.argmax(taps <= 0))]
        raise CaseError(f"{case.source}: branches.tap: must be positive, got {branches.at[e, 'tap']} at {e!r}")
    for kind in ("p", "q"):
        cols = [f"{kind}_zip_z", f"{kind}_zip_i", f"{kind}_zip_p"]
        off = (buses[cols].sum(axis=1) - 1.0).abs() > ZIP_SUM_TOL
        if off.any():
            bus = off.index[int(np.argmax(off.to_numpy()))]
            raise CaseError(
                f"{case.source}: buses.{kind}_zip_*: the fractions z, i, p at bus {bus!r} sum to "
                f"{buses.loc[bus, cols].sum():.6g}, not 1"
            )
    return buses, branches


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

    all_buses, all_branches = _network_columns(case)
    buses = all_buses.loc[view.buses]
    lm = prof["load_mult"].to_numpy() if case.load_profiles is None else case.load_mult_by_bus(view.buses)
    p_load, p_load_v = _withdrawals(buses, "p", lm, T)
    q_load, q_load_v = _withdrawals(buses, "q", lm, T)
    p_inj: dict[tuple[str, int], Any] = {}
    q_inj: dict[tuple[str, int], Any] = {}
    for (j, t), p in m.pv.p.items():
        p_inj[j, t] = p
        q_inj[j, t] = m.pv.q[j, t]
    for j in bats.index:
        for t in T:
            p_inj[j, t] = p_inj.get((j, t), 0.0) + m.battery.p_net[j, t]
            q_inj[j, t] = q_inj.get((j, t), 0.0) + m.battery.q[j, t]

    br = all_branches.loc[view.branches.index]
    branch_rows = list(zip(br.index, br["from_bus"], br["to_bus"], br["r"], br["x"], br["tap"].astype(float)))
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
        p_load_v=p_load_v,
        q_load_v=q_load_v,
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
            root_p_load={t: net.withdrawal("p", view.root, t) for t in T},
            root_q_load={t: net.withdrawal("q", view.root, t) for t in T},
        )
        cost_terms.append(m.substation.cost)
    m.energy_cost = pyo.Expression(expr=sum(cost_terms) if cost_terms else 0.0)
    m.loss_cost = pyo.Expression(expr=s.alpha_usd_per_kwh * base * m.battery.loss)
    m.terminal_cost = pyo.Expression(expr=s.terminal_penalty_usd_per_kwh * base * m.battery.shortfall)
    m.obj = pyo.Objective(expr=m.energy_cost + m.loss_cost + m.terminal_cost)

    m.ports = _ports(m, view, T)
    return m


def _withdrawals(
    buses: pd.DataFrame, kind: str, lm: np.ndarray, T: list[int]
) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], VoltageTerms]]:
    """Withdrawals per (bus, hour) of ``kind`` "p" or "q": the constant part and the voltage terms.

    Load (p_load or q_load) x load_mult (``lm``: one row for every bus, or one row per bus: per-bus
    profiles, :meth:`Case.load_mult_by_bus`), split by the bus's ZIP fractions: the p fraction is constant, the
    z fraction multiplies v, the i fraction |V|. The generators' fixed injection p_fixed / q_fixed and the
    fixed capacitor injection q_cap are subtracted (constant, not scaled), and reactive power takes the
    shunt susceptance (-b_shunt on v), active power the shunt conductance (g_shunt on v). Zero entries are left out, so a
    constant-power feeder without shunts gives exactly the constant withdrawals of the PQ model.
    """
    load = buses[f"{kind}_load"].to_numpy(dtype=float)
    nominal = np.outer(load, lm) if np.ndim(lm) == 1 else load[:, None] * lm
    const = nominal * buses[f"{kind}_zip_p"].to_numpy(dtype=float)[:, None]
    z = nominal * buses[f"{kind}_zip_z"].to_numpy(dtype=float)[:, None]
    i = nominal * buses[f"{kind}_zip_i"].to_numpy(dtype=float)[:, None]
    const = const - buses[f"{kind}_fixed"].to_numpy(dtype=float)[:, None]
    if kind == "p":
        z = z + buses["g_shunt"].to_numpy(dtype=float)[:, None]
    if kind == "q":
        const = const - buses["q_cap"].to_numpy(dtype=float)[:, None]
        z = z - buses["b_shunt"].to_numpy(dtype=float)[:, None]
    constant: dict[tuple[str, int], float] = {}
    dependent: dict[tuple[str, int], VoltageTerms] = {}
    for n, bus in enumerate(buses.index):
        for k, t in enumerate(T):
            if const[n, k] != 0.0:
                constant[bus, t] = float(const[n, k])
            if z[n, k] != 0.0 or i[n, k] != 0.0:
                dependent[bus, t] = VoltageTerms(float(z[n, k]), float(i[n, k]))
    return constant, dependent


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


#: LinDistFlow sweeps of :func:`flat_start` when loads or shunts depend on the voltage (one otherwise): the
#: first takes them at the substation voltage, each further one at the previous sweep's voltages.
START_SWEEPS = 3


def _tree_levels(case: Case, branches: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Positions of each branch's from and to bus in ``case.buses``, and the branches grouped by depth
    (level 0 leaves the root), so that a sweep is one vectorised step per level."""
    index = case.buses.index
    f = index.get_indexer(branches["from_bus"])
    to = index.get_indexer(branches["to_bus"])
    depth = np.full(len(index), -1)
    depth[index.get_loc(case.root)] = 0
    todo = np.ones(len(branches), dtype=bool)
    levels: list[np.ndarray] = []
    while todo.any():
        ready = todo & (depth[f] >= 0)
        if not ready.any():  # cannot happen for a tree built by the loader; guard against an endless loop
            raise CaseError(f"{case.source}: branches do not form a tree from {case.root!r}")
        sel = np.flatnonzero(ready)
        depth[to[sel]] = depth[f[sel]] + 1
        levels.append(sel)
        todo[sel] = False
    return f, to, levels


def flat_start(case: Case) -> dict[str, pd.DataFrame]:
    """A starting point from LinDistFlow sweeps of the forecast: no batteries, PV at zero reactive power.

    Branch flows are the net withdrawals downstream (backward sweep), squared voltages follow the linear
    drop from the substation through each branch's tap, v_j = v_i / a^2 - 2 (r P + x Q) (forward sweep),
    and l = (P^2 + Q^2) / (v_i / a^2). Voltage-dependent loads and shunts are evaluated at the previous
    sweep's voltages (:data:`START_SWEEPS` sweeps). Returns frames indexed by branch or bus with one column
    per hour.
    """
    buses, br = _network_columns(case)
    T = list(case.profile.index)
    lm = case.profile["load_mult"].to_numpy(dtype=float)
    if case.load_profiles is not None:
        lm = case.load_mult_by_bus(buses.index)
    pm = case.profile["pv_mult"].to_numpy(dtype=float)

    def col(name: str) -> np.ndarray:
        return buses[name].to_numpy(dtype=float)[:, None]

    p_nom = np.outer(buses["p_load"].to_numpy(dtype=float), lm) if lm.ndim == 1 else col("p_load") * lm
    q_nom = np.outer(buses["q_load"].to_numpy(dtype=float), lm) if lm.ndim == 1 else col("q_load") * lm
    p_const = p_nom * col("p_zip_p") - col("p_fixed")
    q_const = q_nom * col("q_zip_p") - col("q_cap") - col("q_fixed")
    if len(case.pvs):
        pv = np.outer(case.pvs["p_rated"].to_numpy(dtype=float), pm)
        p_const = p_const - pd.DataFrame(pv, index=case.pvs.index).reindex(buses.index, fill_value=0.0).to_numpy()
    f, to, levels = _tree_levels(case, br)
    r = br["r"].to_numpy(dtype=float)[:, None]
    x = br["x"].to_numpy(dtype=float)[:, None]
    inv_a2 = 1.0 / br["tap"].to_numpy(dtype=float)[:, None] ** 2
    v = np.full((len(buses), len(T)), case.settings.v_sub_pu**2)
    dependent = buses[["p_zip_z", "p_zip_i", "q_zip_z", "q_zip_i", "b_shunt", "g_shunt"]].to_numpy(dtype=float).any()
    for _ in range(START_SWEEPS if dependent else 1):
        mag = np.sqrt(np.maximum(v, 0.0))
        down_p = p_const + p_nom * (col("p_zip_z") * v + col("p_zip_i") * mag) + col("g_shunt") * v
        down_q = q_const + q_nom * (col("q_zip_z") * v + col("q_zip_i") * mag) - col("b_shunt") * v
        for sel in reversed(levels):  # children before parents
            np.add.at(down_p, f[sel], down_p[to[sel]])
            np.add.at(down_q, f[sel], down_q[to[sel]])
        P, Q = down_p[to], down_q[to]
        v_new = v.copy()
        for sel in levels:  # parents before children
            v_new[to[sel]] = v_new[f[sel]] * inv_a2[sel] - 2 * (r[sel] * P[sel] + x[sel] * Q[sel])
        v = v_new
    ell = (P**2 + Q**2) / (v[f] * inv_a2)
    return {
        "P": pd.DataFrame(P, index=br.index, columns=T),
        "Q": pd.DataFrame(Q, index=br.index, columns=T),
        "l": pd.DataFrame(ell, index=br.index, columns=T),
        "v": pd.DataFrame(v, index=buses.index, columns=T),
    }


def _lookup(frame: pd.DataFrame, keys: list[tuple[Any, Any]]) -> list[float]:
    """``frame.at[row, column]`` for every (row, column) key, in one vectorised look-up."""
    if not keys:
        return []
    rows = frame.index.get_indexer([k[0] for k in keys])
    cols = frame.columns.get_indexer([k[1] for k in keys])
    if (rows < 0).any() or (cols < 0).any():
        bad = keys[int(np.flatnonzero((rows < 0) | (cols < 0))[0])]
        raise KeyError(f"starting point has no value for {bad!r}")
    return frame.to_numpy(dtype=float)[rows, cols].tolist()


def _set_values(var: Any, frame: pd.DataFrame, skip_fixed: bool = False) -> None:
    """Set every element (row, column) of an indexed variable from ``frame``."""
    items = [(k, v) for k, v in var.items() if not (skip_fixed and v.fixed)]
    for (_, v), value in zip(items, _lookup(frame, [k for k, _ in items])):
        v.set_value(value, skip_validation=True)


@_gc_paused
def initialize(m: pyo.ConcreteModel, start: dict[str, pd.DataFrame]) -> None:
    """Load a starting point (from :func:`flat_start`) into a central or area model.

    Values are looked up by position with numpy, not through per-row dictionaries (at 2,561 buses x 24 h,
    246,000 values, ``DataFrame.to_dict`` alone took 1.15 s of 1.6 s), with the garbage collector paused:
    the look-up's temporary tuples otherwise trigger full collections over the model's 10^6 objects.
    """
    net = m.net
    use_l = not net.l[next(iter(net.l))].fixed if len(net.l) else False
    _set_values(net.P, start["P"])
    _set_values(net.Q, start["Q"])
    if use_l:
        _set_values(net.l, start["l"])
    _set_values(net.v, start["v"], skip_fixed=True)
    _set_values(net.P_out, start["P"])
    _set_values(net.Q_out, start["Q"])
    if hasattr(m, "substation"):
        first = list(net.children[m.view.root])
        for kind, var in (("P", m.substation.P), ("Q", m.substation.Q)):
            flows = start[kind].loc[first]
            for t in m.hours:
                var[t].set_value(sum(float(f) for f in flows[t]), skip_validation=True)

