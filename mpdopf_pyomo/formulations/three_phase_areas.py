"""Areas of ``3ph-exact``: the per-node tables restricted to an area's buses, with per-phase boundary ports.

Per cut branch c (a line from bus i in the parent area to bus k in the child area) and hour t, per phase
phi of the line (port names ``"c|phi"``, ``"c|vr phi"``, ``"c|vi phi"``, see
:data:`~mpdopf_pyomo.decomposition.core.PORT_QUALIFIER`):

* the **child** area holds the cut line itself and a copy of bus i's nodes of the line's phases (its
  *boundary nodes*: no Kirchhoff law there, voltages free, set by consensus); its ports are the power the
  line takes at bus i, ``P_phi + j Q_phi = V_i,phi conj(I_1,phi)`` (``I_1`` the line's terminal-1 current
  from its primitive admittance, charging included), kind P and Q, and the boundary nodes' voltages
  ``Re V_i,phi``, ``Im V_i,phi``, kind v (all in pu, so one stopping tolerance holds each to the same accuracy);
* the **parent** area sees the child as a constant-power withdrawal ``P_phi + j Q_phi`` (port variables) at
  bus i's node phi, added to that node's wye withdrawal ``V conj(I_W) = S_W - S_DER + S_cut``; its v ports
  are its own voltages of those nodes.

Consensus on the real and imaginary part (not the magnitude) fixes the child's angle reference as well.
At consensus every area's equations are the central model's on its nodes, so the area costs (energy at
the substation in area 1, battery losses and terminal penalties where the batteries are) add up to the
central objective. Every load element keeps the regime (inside or above its ``vmaxpu``) it has in the
**whole feeder's** starting power flow, as the central model does, so the areas' physics is the central one.

Cut branches: lines (not switches, written with their current as a variable, nor transformers); the
automatic partition cuts three-phase lines only (:func:`cuttable`).

ADMM on these ports (the formulation's ``algorithm_defaults``): penalties per kind relative to P's, Q 1e-2
and v 0.3 (balanced: 1e-3 and 0.1). IEEE 13, 2 areas, 2 h, without warm start, Q ports unscaled:
Q 1e-3: 54 iterations, 1e-2: 42, 0.1: 59, 1: 103 (scaled by 10 as before, Q 1e-3: 78). Measured on IEEE 123 unbalanced, 4 areas, 5 h, ADMM iterations (after the
warm start, given up or not run; every converged run within 3e-5 of central): Q ports scaled by 10 with
the balanced penalties (effective Q penalty 0.1 of P's, Q held to 1e-5 pu) 261; unscaled, Q 1e-3: not
converged at 187 (stopped there); Q 1e-2: 122; Q 1e-2, v 0.3: 96 (the default); Q 1e-2, v 1: 115;
Q 2e-2, v 0.3: 91; Q 1e-2, v 0.3 with residual balancing mu = 5: 96 (the last two not kept: within the
noise). The ENApp warm start is given up at the first elastic solve (``warm_abandon``): there area 4's
nodes reach v_max = 1.07 at a root voltage 0.4 % above the optimum's (its PVs cannot pull them down), so
the pinned exchange oscillates and its duals are the elastic penalty's; ADMM then starts from the power
flow's ports and the substation price (4 + 96 iterations; restarting from the last ENApp point without
an elastic solve and its duals instead: 4 + 222, not kept). IEEE 34, 4 areas, 5 h does not converge in
300 iterations with these defaults (its Q ports stall, phases 2 and 3 at cuts l29 and l14); the sweep of
penalties (per-port ones scaled by the cut's Thevenin impedance, voltage ports in each phase's frame too),
warm starts, cuts, residual balancing and acceleration (Anderson, fast ADMM with restart) that found no
robust fix is in docs/src/three-phase.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from mpdopf_pyomo.decomposition.core import PORT_QUALIFIER
from mpdopf_pyomo.errors import CaseError


if TYPE_CHECKING:
    import pyomo.environ as pyo

    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.network.phases import PhaseTables
    from mpdopf_pyomo.results import Results


@dataclass
class AreaTables:
    """An area's per-node tables and where they sit in the whole feeder's."""

    tables: "PhaseTables"  #: restricted tables; the child's boundary nodes are its ``fixed`` nodes
    glob: np.ndarray  #: global node index of every local node
    own: np.ndarray  #: local nodes the area owns (False: boundary copies of the parent bus)
    branch_pos: list[int]  #: global position of every local branch
    cut_in: str | None = None
    cut_in_local: int = -1  #: local position of the incoming cut line
    boundary: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  #: local terminal-1 nodes of cut_in
    cuts_out: dict[str, np.ndarray] = field(default_factory=dict)  #: cut -> local nodes at its terminal 1
    has_source: bool = False


def _branch_pos(tables: "PhaseTables") -> dict[str, int]:
    return {str(n): k for k, n in enumerate(tables.branches["name"])}


def cuttable(tables: "PhaseTables") -> set[str]:
    """Branches an automatic partition may cut: three-phase lines that are not stiff."""
    from mpdopf_pyomo.blocks.three_phase.current_injection import stiff_elements

    stiff = set(stiff_elements(tables))
    return {str(name) for k, (name, kind) in enumerate(zip(tables.branches["name"], tables.branches["kind"]))
            if kind == "line" and len(tables.branch_nodes[k]) == 6 and k not in stiff}


def _check_cut(case: "Case", tables: "PhaseTables", cut: str) -> int:
    from mpdopf_pyomo.blocks.three_phase.current_injection import stiff_elements

    pos = _branch_pos(tables)
    if cut not in pos:
        raise CaseError(f"{case.source}: areas: cut branch {cut!r} is not a series element of the network")
    k = pos[cut]
    if tables.branches["kind"].iat[k] != "line" or k in stiff_elements(tables):
        raise CaseError(f"{case.source}: areas: cut branch {cut!r} is a {tables.branches['kind'].iat[k]}"
                        f"{' (stiff)' if tables.branches['kind'].iat[k] == 'line' else ''}; --formulation 3ph-exact "
                        "cuts lines only")
    return k


def bus_areas(case: "Case", tables: "PhaseTables") -> dict[str, int]:
    """The area of every bus of the three-phase tables.

    The areas are the balanced case's (``case.buses["area"]``). A bus that network lacks -- a secondary of a
    service transformer, which the balanced reduction folds into the primary bus it hangs from (the IEEE
    8500's 240 V services) -- takes the area of the buses it reaches without crossing a cut branch.
    """
    from scipy.sparse.csgraph import connected_components

    area_of = {str(b): int(a) for b, a in case.buses["area"].items()}
    buses = [str(b) for b in tables.node_bus]
    if all(b in area_of for b in buses):
        return area_of
    pos = _branch_pos(tables)
    cut_pos = {pos[str(c)] for c in case.cut_branches if str(c) in pos}  # others: restrict() names them
    first: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, b in enumerate(buses):  # the nodes of one bus belong together
        rows.append(first.setdefault(b, i))
        cols.append(i)
    for k, at in enumerate(tables.branch_nodes):
        if k not in cut_pos:
            rows += [int(at[0])] * len(at)
            cols += [int(n) for n in at]
    n = len(buses)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    known = {int(label[i]): area_of[b] for i, b in enumerate(buses) if b in area_of}
    out = dict(area_of)
    for i, b in enumerate(buses):
        if b not in out and int(label[i]) in known:
            out[b] = known[int(label[i])]
    return out


def restrict(case: "Case", tables: "PhaseTables", area: int) -> AreaTables:
    """The tables of ``area`` (see the module docstring)."""
    from mpdopf_pyomo.network.phases import PhaseTables

    area_of = bus_areas(case, tables)
    node_area = np.array([area_of.get(str(b), -1) for b in tables.node_bus])
    if (node_area < 0).any():
        raise CaseError(f"{case.source}: bus {tables.node_bus[int(np.argmax(node_area < 0))]} of the network has no area")
    own_g = np.flatnonzero(node_area == area)
    if not len(own_g):
        raise CaseError(f"{case.source}: areas: area {area} has no buses")
    cut_in, cut_k, boundary_g = None, -1, np.zeros(0, int)
    cuts_out: dict[str, int] = {}
    for c in case.cut_branches:
        k = _check_cut(case, tables, str(c))
        bus1, bus2 = str(tables.branches["bus1"].iat[k]), str(tables.branches["bus2"].iat[k])
        if area_of[bus2] == area:
            cut_in, cut_k = str(c), k
            boundary_g = tables.branch_nodes[k][: len(tables.branch_nodes[k]) // 2]
        elif area_of[bus1] == area:
            cuts_out[str(c)] = k
    glob = np.concatenate([own_g, boundary_g])
    local = {int(g): i for i, g in enumerate(glob)}
    own_set = set(int(g) for g in own_g)
    cut_pos = {_branch_pos(tables)[str(c)] for c in case.cut_branches}
    branch_pos = [k for k, at in enumerate(tables.branch_nodes)
                  if (k == cut_k) or (k not in cut_pos and all(int(n) in own_set for n in at))]
    n = len(glob)

    def remap(at: np.ndarray) -> np.ndarray:
        return np.array([local[int(g)] for g in at], dtype=int)

    rows, cols, vals = [], [], []
    br_nodes = []
    for k in branch_pos:
        at = remap(tables.branch_nodes[k])
        r, c = np.meshgrid(at, at, indexing="ij")
        rows.append(r.ravel()), cols.append(c.ravel()), vals.append(tables.branch_y[k].ravel())
        br_nodes.append(at)
    sh = tables.y_shunt.tocsr()[own_g][:, own_g].tocoo()
    rows.append(sh.row), cols.append(sh.col), vals.append(sh.data)
    has_source = bool(len(tables.source_nodes)) and all(int(g) in own_set for g in tables.source_nodes)
    src_nodes = remap(tables.source_nodes) if has_source else np.zeros(0, int)
    if has_source:
        r, c = np.meshgrid(src_nodes, src_nodes, indexing="ij")
        rows.append(r.ravel()), cols.append(c.ravel()), vals.append(tables.source_y.ravel())
    y = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    y.sum_duplicates()
    y_sh = sp.csr_matrix((sh.data, (sh.row, sh.col)), shape=(n, n))
    fixed_g = [int(g) for g in tables.fixed if int(g) in own_set]
    boundary = remap(boundary_g)
    fixed = np.concatenate([remap(np.array(fixed_g, int)), boundary]).astype(int)
    fixed_v = np.concatenate([np.array([tables.fixed_v[list(tables.fixed).index(g)] for g in fixed_g], complex),
                              np.ones(len(boundary), complex)])
    wye = tables.wye[tables.wye["node"].astype(int).isin(own_set)].copy()
    wye["node"] = remap(wye["node"].to_numpy(int)) if len(wye) else wye["node"]
    dmask = tables.delta["node_a"].astype(int).isin(own_set) & tables.delta["node_b"].astype(int).isin(own_set)
    delta = tables.delta[dmask].copy()
    if len(delta):
        delta["node_a"] = remap(delta["node_a"].to_numpy(int))
        delta["node_b"] = remap(delta["node_b"].to_numpy(int))
    tb = PhaseTables(
        nodes=[tables.nodes[int(g)] for g in glob], node_bus=tables.node_bus[glob], node_phase=tables.node_phase[glob],
        v_base_kv=tables.v_base_kv[glob], y=y, fixed=fixed, fixed_v=fixed_v, source_bus=tables.source_bus,
        source_nodes=src_nodes, source_e=tables.source_e if has_source else np.zeros(0, complex),
        source_y=tables.source_y if has_source else np.zeros((0, 0), complex),
        wye=wye.reset_index(drop=True), delta=delta.reset_index(drop=True),
        branches=tables.branches.iloc[branch_pos].reset_index(drop=True), branch_nodes=br_nodes,
        branch_y=[tables.branch_y[k] for k in branch_pos], branch_z=[tables.branch_z[k] for k in branch_pos],
        y_shunt=y_sh, source_z=tables.source_z if has_source else np.zeros((0, 0), complex),
        s_base_kva=tables.s_base_kva, notes=[])
    return AreaTables(tb, glob, np.arange(n) < len(own_g), branch_pos, cut_in,
                      branch_pos.index(cut_k) if cut_in else -1, boundary,
                      {c: remap(tables.branch_nodes[k][: len(tables.branch_nodes[k]) // 2]) for c, k in cuts_out.items()},
                      has_source)


def port_names(cut: str, phase: int) -> tuple[str, str, str]:
    """The P/Q port name and the two voltage port names of one phase of a cut."""
    q = PORT_QUALIFIER
    return f"{cut}{q}{phase}", f"{cut}{q}vr{phase}", f"{cut}{q}vi{phase}"


def cut_flows(tables: "PhaseTables", v: np.ndarray, k: int) -> np.ndarray:
    """Complex power (pu, terminal-1 phases x hours) branch ``k`` takes at its terminal 1 at voltages ``v``."""
    at = tables.branch_nodes[k]
    n = len(at) // 2
    return v[at[:n]] * np.conj((tables.branch_y[k] @ v[at])[:n])


def port_values(case: "Case", tables: "PhaseTables", v: np.ndarray) -> dict[tuple[str, str, int], float]:
    """Every port's value at whole-feeder node voltages ``v``
    (nodes x hours): what the two copies of each port equal at a consensus."""
    T = list(case.profile.index)
    pos = _branch_pos(tables)
    ports: dict[tuple[str, str, int], float] = {}
    for c in case.cut_branches:
        k = pos[str(c)]
        s = cut_flows(tables, v, k)
        at1 = tables.branch_nodes[k][: len(tables.branch_nodes[k]) // 2]
        for i, node in enumerate(at1):
            name, vr_name, vi_name = port_names(str(c), int(tables.node_phase[node]))
            for h, t in enumerate(T):
                ports["P", name, t] = float(s[i, h].real)
                ports["Q", name, t] = float(s[i, h].imag)
                ports["v", vr_name, t] = float(v[node, h].real)
                ports["v", vi_name, t] = float(v[node, h].imag)
    return ports


def area_start(case: "Case") -> dict[str, Any]:
    """Every port's value at the whole feeder's starting power flow (``{"ports": {key: value}}``)."""
    from mpdopf_pyomo.formulations.three_phase import ThreePhaseExact, tables_of

    tables = tables_of(case)
    v0, _, _ = ThreePhaseExact.start(case, tables)
    return {"ports": port_values(case, tables, v0)}


def build_area(f: Any, case: "Case", area: int) -> "pyo.ConcreteModel":
    """Area ``area``'s model (``f`` the :class:`~.three_phase.ThreePhaseExact` formulation), started at the
    whole feeder's power flow; ``m.ports`` as in the module docstring, ``m.area_tables`` its tables."""
    import pyomo.environ as pyo
    from pyomo.common.gc_manager import PauseGC

    from mpdopf_pyomo.blocks.three_phase.current_injection import (declare_current_injection, declare_source,
                                                                   initialize_current_injection)
    from mpdopf_pyomo.formulations.three_phase import source_power, tables_of
    from mpdopf_pyomo.network.phases import above_band, load_currents

    s = case.settings
    T = list(case.profile.index)
    prof = case.profile
    tables = tables_of(case)
    v0g, p_inj_g, _ = f.start(case, tables)
    at = restrict(case, tables, area)
    tb = at.tables
    owned = set(str(b) for b in case.buses.index[case.buses["area"] == area])
    with PauseGC():
        m = pyo.ConcreteModel(name=f"{case.name}-area{area}-3ph")
        m.formulation = f.name
        m.hours = T
        injections = f.declare_devices(case, tb, m, pvs=case.pvs[case.pvs.index.astype(str).isin(owned)],
                                       batteries=case.batteries[case.batteries.index.astype(str).isin(owned)])
        limit_nodes = sorted(set(tb.wye["node"].astype(int)) | set(tb.delta["node_a"].astype(int))
                             | set(tb.delta["node_b"].astype(int)) | set(injections))
        # the child areas' draw: a per-phase constant-power withdrawal at the parent bus (port variables)
        out_keys = [(c, int(tb.node_phase[n])) for c, nodes in at.cuts_out.items() for n in nodes]
        m.OUT = pyo.Set(initialize=out_keys, dimen=2, ordered=True)
        m.TT = pyo.Set(initialize=T, ordered=True)
        m.cut_p = pyo.Var(m.OUT, m.TT, initialize=0.0)
        m.cut_q = pyo.Var(m.OUT, m.TT, initialize=0.0)
        for c, nodes in at.cuts_out.items():
            for n in nodes:
                ph = int(tb.node_phase[n])
                injections.setdefault(int(n), []).append(
                    (-1.0, {t: m.cut_p[c, ph, t] for t in T}, {t: m.cut_q[c, ph, t] for t in T}))
        v0 = v0g[at.glob]
        above_w = above_band(tb.wye, v0[tb.wye["node"].to_numpy(int)])
        above_d = above_band(tb.delta, v0[tb.delta["node_a"].to_numpy(int)] - v0[tb.delta["node_b"].to_numpy(int)])
        net = declare_current_injection(
            m, "net", tables=tb, hours=T, load_mult=prof["load_mult"].to_numpy(float), injections=injections,
            v_limits=(s.v_min_pu, s.v_max_phase_pu or s.v_max_pu), limit_nodes=limit_nodes,
            above_wye=above_w, above_delta=above_d)
        for n in at.boundary:  # the child's copy of its parent bus: free, held by consensus
            for t in T:
                net.vr[int(n), t].unfix()
                net.vi[int(n), t].unfix()
        base = case.bases.s_kva
        if at.has_source:
            declare_source(m, "substation", net=net, tables=tb, reverse_power=s.reverse_power)
            price = prof["price"].to_dict()
            m.energy_cost = pyo.Expression(expr=sum(price[t] * m.substation.P[t] * s.dt_h * base for t in T))
        else:
            m.energy_cost = pyo.Expression(expr=0.0)
        m.loss_cost = pyo.Expression(expr=s.alpha_usd_per_kwh * base * m.battery.loss)
        m.terminal_cost = pyo.Expression(expr=s.terminal_penalty_usd_per_kwh * base * m.battery.shortfall)
        m.obj = pyo.Objective(expr=m.energy_cost + m.loss_cost + m.terminal_cost)

        # the child's head: the power the cut line takes at the parent bus, per phase
        ports: dict[tuple[str, str, int], Any] = {}
        head = []
        if at.cut_in is not None:
            k = at.cut_in_local
            atl = [int(x) for x in tb.branch_nodes[k]]
            yk = tb.branch_y[k]
            n_ph = len(atl) // 2
            head = [int(tb.node_phase[atl[i]]) for i in range(n_ph)]
            m.HEAD = pyo.Set(initialize=head, ordered=True)
            m.head_p = pyo.Var(m.HEAD, m.TT, initialize=0.0)
            m.head_q = pyo.Var(m.HEAD, m.TT, initialize=0.0)
            g = [[float(yk[i, j].real) for j in range(len(atl))] for i in range(n_ph)]
            bb = [[float(yk[i, j].imag) for j in range(len(atl))] for i in range(n_ph)]
            vr, vi = net.vr, net.vi

            def head_rule(part: str):
                def rule(_: Any, ph: int, t: int) -> Any:
                    i = head.index(ph)
                    n1 = atl[i]
                    cr = sum(g[i][j] * vr[c, t] - bb[i][j] * vi[c, t] for j, c in enumerate(atl))
                    ci = sum(bb[i][j] * vr[c, t] + g[i][j] * vi[c, t] for j, c in enumerate(atl))
                    if part == "p":
                        return m.head_p[ph, t] == vr[n1, t] * cr + vi[n1, t] * ci
                    return m.head_q[ph, t] == vi[n1, t] * cr - vr[n1, t] * ci
                return rule

            m.head_p_def = pyo.Constraint(m.HEAD, m.TT, rule=head_rule("p"))
            m.head_q_def = pyo.Constraint(m.HEAD, m.TT, rule=head_rule("q"))
            for i, ph in enumerate(head):
                name, vr_name, vi_name = port_names(at.cut_in, ph)
                for t in T:
                    ports["P", name, t] = m.head_p[ph, t]
                    ports["Q", name, t] = m.head_q[ph, t]
                    ports["v", vr_name, t] = net.vr[atl[i], t]
                    ports["v", vi_name, t] = net.vi[atl[i], t]
        for c, nodes in at.cuts_out.items():
            for n in nodes:
                ph = int(tb.node_phase[n])
                name, vr_name, vi_name = port_names(c, ph)
                for t in T:
                    ports["P", name, t] = m.cut_p[c, ph, t]
                    ports["Q", name, t] = m.cut_q[c, ph, t]
                    ports["v", vr_name, t] = net.vr[int(n), t]
                    ports["v", vi_name, t] = net.vi[int(n), t]
        m.ports = ports
    m.injections = injections
    m.area_tables = at

    # start: the whole feeder's power flow restricted to the area, with the cut flows it implies
    lm = prof["load_mult"].to_numpy(float)
    wye, delta = load_currents(tb, v0, lm)
    wye = wye - np.conj(p_inj_g[at.glob] / v0)
    pos = _branch_pos(tables)
    for c, nodes in at.cuts_out.items():
        s_cut = cut_flows(tables, v0g, pos[c])
        wye[nodes] += np.conj(s_cut / v0[nodes])
        for i, n in enumerate(nodes):
            ph = int(tb.node_phase[n])
            for h, t in enumerate(T):
                m.cut_p[c, ph, t].set_value(float(s_cut[i, h].real), skip_validation=True)
                m.cut_q[c, ph, t].set_value(float(s_cut[i, h].imag), skip_validation=True)
    initialize_current_injection(net, tb, v0, wye, delta)
    if at.cut_in is not None:
        s_in = cut_flows(tables, v0g, pos[at.cut_in])
        for i, ph in enumerate(head):
            for h, t in enumerate(T):
                m.head_p[ph, t].set_value(float(s_in[i, h].real), skip_validation=True)
                m.head_q[ph, t].set_value(float(s_in[i, h].imag), skip_validation=True)
    if at.has_source:
        p, q = source_power(tb, v0, wye, delta)
        for h, t in enumerate(T):
            m.substation.P[t].set_value(float(p[:, h].sum()), skip_validation=True)
            m.substation.Q[t].set_value(float(q[:, h].sum()), skip_validation=True)
    return m


def _block_values(block: Any) -> dict[str, dict[Any, float]]:
    """The values of every Var of ``block`` by component name and index."""
    import pyomo.environ as pyo

    return {comp.local_name: {idx: var.value for idx, var in comp.items()}
            for comp in block.component_objects(pyo.Var, descend_into=False)}


def _set_block_values(block: Any, values: dict[str, dict[Any, float]]) -> None:
    """Inverse of :func:`_block_values` on a block with the same components (the central model's)."""
    for name, by_index in values.items():
        target = getattr(block, name)
        for idx, val in by_index.items():
            target[idx].set_value(val, skip_validation=True)


def area_results(m: "pyo.ConcreteModel") -> dict[str, Any]:
    """What a solved area model contributes to the whole feeder's results (picklable, computed in the
    area's worker): the voltages of the nodes it owns (global node index, complex nodes x hours), its PV and
    battery values, its stiff elements' powers (by global branch position) and, in the substation's area,
    the source currents and powers."""
    from mpdopf_pyomo.blocks.three_phase.current_injection import node_voltages

    at: AreaTables = m.area_tables
    va = node_voltages(m.net, len(at.glob))
    stiff_pos = [at.branch_pos[k_local] for k_local in m.net.stiff]
    out: dict[str, Any] = {
        "nodes": at.glob[at.own], "v": va[at.own],
        "pv": _block_values(m.pv), "battery": _block_values(m.battery),
        "stiff": {(stiff_pos[e_local], ph, t): (var.value, m.net.si[e_local, ph, t].value)
                  for (e_local, ph, t), var in m.net.sr.items()},
        "source": None,
    }
    if at.has_source:
        out["source"] = {"isr": {k: var.value for k, var in m.net.isr.items()},
                         "isi": {k: var.value for k, var in m.net.isi.items()},
                         "P": {t: var.value for t, var in m.substation.P.items()},
                         "Q": {t: var.value for t, var in m.substation.Q.items()}}
    return out


def results_from_areas(f: Any, case: "Case", parts: list[dict[str, Any]], **summary: Any) -> "Results":
    """The whole feeder's results from the areas' :func:`area_results`: the central model with every node
    voltage, device and current set from the area that owns it, read back as a central run is
    (:func:`~.three_phase.read_back`: the same tables, so validation checks node by node as for central)."""
    from mpdopf_pyomo.formulations.three_phase import read_back, tables_of

    tables = tables_of(case)
    v0, p_inj, _ = f.start(case, tables)
    central = f.build(case, tables, v0)
    f.initialize(case, tables, central, v0, p_inj)
    T = list(case.profile.index)
    v = np.array(v0, copy=True)
    g_stiff = {k: e for e, k in enumerate(central.net.stiff)}
    for part in parts:
        v[part["nodes"]] = part["v"]
        _set_block_values(central.pv, part["pv"])
        _set_block_values(central.battery, part["battery"])
        for (pos, ph, t), (sr, si) in part["stiff"].items():
            e = g_stiff[pos]
            central.net.sr[e, ph, t].set_value(sr, skip_validation=True)
            central.net.si[e, ph, t].set_value(si, skip_validation=True)
        src = part["source"]
        if src is not None:
            for key, val in src["isr"].items():
                central.net.isr[key].set_value(val, skip_validation=True)
                central.net.isi[key].set_value(src["isi"][key], skip_validation=True)
            for t in T:
                central.substation.P[t].set_value(src["P"][t], skip_validation=True)
                central.substation.Q[t].set_value(src["Q"][t], skip_validation=True)
    for (n, t), var in central.net.vr.items():
        if not var.fixed:
            h = T.index(t)
            var.set_value(float(v[n, h].real), skip_validation=True)
            central.net.vi[n, t].set_value(float(v[n, h].imag), skip_validation=True)
    return read_back(case, tables, central, v, **summary)


def consensus_bounds(case: "Case", cuts: list[str], tol: float) -> dict[str, float]:
    """How far a distributed plan over the cut branches ``cuts`` whose ports agree to ``tol`` (pu, each of
    P, Q, Vr, Vi) can be from a power
    flow of the whole feeder, to first order: the node-by-node check's tolerance for such a plan.

    A child's copy of its parent bus's voltage is within sqrt(2) tol (complex) of the parent's, and a cut's
    flow mismatch |dS| <= sqrt(2) tol per phase is a current the parent never sees; on a radial feeder it
    moves every node at or below the cut by Z_cc dI, Z_cc the feeder's Thevenin impedance at the cut's
    parent nodes (its phases' block, pu). Summed over the cuts between an area and the substation (the worst area):
    ``v_pu = sqrt(2) tol max_area sum_{c on its path} (1 + ||Z_cc||_inf)``; the substation's P sees every cut's P mismatch:
    ``p_kw = tol x S_base x (phases of all cuts)``. Measured on IEEE 13, 4 areas, 5 h (ports within
    9.0e-5): max |dV| 1.36e-4 pu against a bound of 6.2e-4 (loose: the
    worst case of every phase and port at once), |dP_sub| 0.134 kW against 4.5 kW
    """
    import scipy.sparse.linalg as sla

    from mpdopf_pyomo import network
    from mpdopf_pyomo.formulations.three_phase import tables_of

    tables = tables_of(case)
    pos = _branch_pos(tables)
    fixed = set(int(i) for i in tables.fixed)
    keep = np.array([i for i in range(tables.y.shape[0]) if i not in fixed], dtype=int)
    local = {int(g): i for i, g in enumerate(keep)}
    lu = sla.splu(tables.y.tocsc()[keep][:, keep].tocsc())
    area_of = {str(b): int(a) for b, a in network.assign_areas(case.branches, case.root, list(cuts)).items()}
    up: dict[int, tuple[int, float]] = {}  # child area -> (parent area, ||Z_cc||_inf of its cut)
    phases = 0
    for c in cuts:
        k = pos[str(c)]
        at = [local[int(n)] for n in tables.branch_nodes[k][: len(tables.branch_nodes[k]) // 2]]
        rhs = np.zeros((len(keep), len(at)), complex)
        rhs[at, range(len(at))] = 1.0
        z = lu.solve(rhs)[at]  # the cut's phases' block of the Thevenin impedance
        up[area_of[str(tables.branches["bus2"].iat[k])]] = (area_of[str(tables.branches["bus1"].iat[k])],
                                                            float(np.abs(z).sum(axis=1).max()))
        phases += len(at)
    worst = 0.0  # the deepest sum over the cuts between an area and the substation's
    for a in up:
        n, zs = 0, 0.0
        while a in up:
            a, zc = up[a]
            n, zs = n + 1, zs + zc
        worst = max(worst, n + zs)
    return {"v_pu": float(np.sqrt(2.0) * tol * worst), "p_kw": float(tol * case.bases.s_kva * phases)}
