"""``3ph-linear``: LinDist3Flow, the phase-coupled linear branch flow with the fixed 120-degree angle assumption.

Same network, per-node tables (:func:`mpdopf_pyomo.network.phases.phase_tables`), DER blocks and per-phase
DER split (equal shares on the phases of the device's bus) as ``3ph-exact``
(:mod:`mpdopf_pyomo.formulations.three_phase`); the physics is linear (Sankur, Arnold et al. 2016; Gan & Low
2014). Per unit, node = one phase of one bus, hour t, branch e from parent bus i to child bus j, ``v`` the
squared voltage magnitude, ``P, Q`` the per-phase flows into the branch (losses dropped: the same at both ends):

* voltage drop: ``v_j = v_i / a^2 - M_P P_e - M_Q Q_e`` with ``M_P = 2 Re(G * conj(Z))`` and
  ``M_Q = -2 Im(G * conj(Z))`` (element-wise), ``Z`` the branch's phase impedance matrix (pu, mutual terms
  kept), ``G_kl = exp(j(theta_k - theta_l))`` the nominal 0/-120/+120 degree phase shifts and ``a`` the
  per-phase tap of a regulator or transformer (1 on a line). It is ``|V_i|^2 - |V_j|^2 ~ 2 Re(V_i conj(Z I))``
  with ``V_k / V_l`` replaced by ``G_kl`` and the second-order term dropped;
* per-phase balances at every node: flow in = flows out + loads + shunts - DER;
* loads ZIP, the squared-voltage (impedance) part exact in ``v``, ``|V| ~ (1 + v) / 2`` for the
  constant-current part (as the balanced ``linear`` does), each load in the regime (inside or above its
  ``vmaxpu``) it has in the forecast's power flow, as ``3ph-exact`` does; a delta element's power splits onto
  its two nodes as under balanced voltages (``S V_a / V_ab`` and ``-S V_b / V_ab``: +-30 degrees, 1/sqrt(3)
  each) and its voltage is ``|V_ab|^2 ~ 1.5 (v_a + v_b)``;
* shunts (capacitors, half the line charging at each end): ``S_k = sum_l conj(Y_kl) V_k conj(V_l)`` with
  ``V_k conj(V_l) ~ G_kl (v_k + v_l) / 2`` (exact on the diagonal: ``conj(Y_kk) v_k``); the real
  zero-sequence references of floating delta secondaries are left out (no zero-sequence current flows);
* the source: its Thevenin impedance as a branch from the internal voltages ``|E|^2``.

Transformers: ``v_j = C v_i - M_P P - M_Q Q`` with ``C`` the unit's no-load map on squared voltages at
fixed angles (:func:`voltage_map`: ``diag(1 / tap^2)`` for a wye-wye unit or regulator, per-phase ideal taps;
a delta winding mixes two phases of the other side) and winding k's series impedance referred to the
secondary on phase k. The 30-degree shift of **delta-wye, wye-delta and delta-delta** units is dropped
(LinDist3Flow tracks magnitudes only; the reported node angles are the no-load network's, which carry the
shift). Cost, measured (docs/src/three-phase.md): treating a delta unit as wye-wye phase by phase gave
1.6e-2 pu at IEEE 123's delta secondary 610; the no-load map 6.9e-3 pu.

Read-back: node voltages ``sqrt(v)``, per-phase flows, losses 0. Validation kind ``"nodes-report"``: the plan
is pushed into the original feeder and every node compared, but the gap is reported, not checked (it is an
approximation). Radial feeders only (a loop: one line, exit 2).

Measured gaps (5 h, max |dV| against OpenDSS): IEEE 13 6.6e-3 pu, IEEE 34 3.4e-2 pu, IEEE 123 6.9e-3 pu.
As the start of ``3ph-exact`` it saves no time (IEEE 123, 24 h: 29 -> 28 IPOPT iterations, 10.2 -> 7.8 s,
for 9.2 s of building and solving this LP; IEEE 13, 24 h: 19 -> 16, 1.17 -> 0.96 s, for 0.9 s), so
``3ph-exact`` keeps the forecast's power flow as its start; :func:`complex_voltages` gives the point.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.formulations import OpfFormulation, register
from mpdopf_pyomo.formulations.three_phase import ThreePhaseExact, network_of, tables_of

if TYPE_CHECKING:
    import pyomo.environ as pyo

    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.network.model import Network
    from mpdopf_pyomo.network.phases import PhaseTables
    from mpdopf_pyomo.progress import Progress
    from mpdopf_pyomo.results import Results

_SHIFT = {1: 0.0, 2: -120.0, 3: 120.0}


def gamma(phases: np.ndarray) -> np.ndarray:
    """The fixed-angle matrix ``G_kl = exp(j(theta_k - theta_l))`` of phases (1, 2, 3 -> 0, -120, +120 deg)."""
    th = np.radians([_SHIFT[int(p)] for p in phases])
    return np.exp(1j * (th[:, None] - th[None, :]))


def drop_matrices(z: np.ndarray, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``M_P = 2 Re(G * conj(Z))`` and ``M_Q = -2 Im(G * conj(Z))``: the squared-voltage drop of a branch
    of phase impedance ``z`` (pu) is ``M_P P + M_Q Q`` (per-phase flows, pu)."""
    g = gamma(phases) * np.conj(np.asarray(z, complex))
    return 2.0 * g.real, -2.0 * g.imag


@dataclass
class LinearBranch:
    """One series element oriented from the parent bus (``up`` nodes) to the child (``down`` nodes)."""

    name: str
    kind: str
    up_bus: str
    down_bus: str
    up: np.ndarray
    down: np.ndarray
    mp: np.ndarray
    mq: np.ndarray
    tap: np.ndarray  #: per phase; v_down = v_up / tap^2 - drop (forward) or v_down = tap^2 (v_up - drop)
    forward: bool  #: the parent is the element's bus1
    approx: str  #: "" or what was approximated (a delta winding)
    #: a transformer's no-load voltage map on squared voltages (v_down = c v_up - drop; :func:`voltage_map`);
    #: None: the per-phase ``tap`` (lines, and a transformer fed from its bus2 side)
    c: np.ndarray | None = None


def voltage_map(y_pu: np.ndarray, phases1: np.ndarray) -> np.ndarray:
    """The no-load map of a transformer on squared voltages at fixed angles: with the secondary open,
    ``V_2 = T V_1``, ``T = -Y_22^+ Y_21`` from its primitive admittance (pu; the pseudo-inverse drops the
    undetermined zero sequence of a delta secondary), and ``|V_2k|^2 = |sum_l T_kl V_1l|^2`` with
    ``V_1l conj(V_1m) ~ G_lm (v_l + v_m) / 2``: ``c_kl = |T_kl|^2 + sum_{m != l} Re(T_kl conj(T_km) G_lm)``.
    A wye-wye unit gives ``diag(1 / tap^2)``; a delta winding mixes two phases of the other side, which the
    120-degree assumption keeps exact for balanced magnitudes."""
    n = y_pu.shape[0] // 2
    y22, y21 = y_pu[n:, n:], y_pu[n:, :n]
    t = -np.linalg.pinv(y22, rcond=1e-4) @ y21
    g = gamma(phases1)
    c = np.abs(t) ** 2
    for k in range(n):
        for l in range(n):
            c[k, l] += sum((t[k, l] * np.conj(t[k, m]) * g[l, m]).real for m in range(n) if m != l)
    return c


def linear_branches(tables: "PhaseTables", net: "Network") -> list[LinearBranch]:
    """Every series element of ``tables`` as a :class:`LinearBranch`, oriented away from the source (BFS);
    :class:`CaseError` when the closed network is not radial."""
    by_name = {b.name: b for b in net.branches}
    sb = tables.s_base_kva * 1000.0
    adj: dict[str, list[int]] = {}
    for k, (name, kind, b1, b2) in enumerate(tables.branches.itertuples(index=False)):
        adj.setdefault(b1, []).append(k)
        adj.setdefault(b2, []).append(k)
    n_buses = len(set(tables.node_bus.astype(str)))
    if len(tables.branches) != n_buses - 1:
        raise CaseError(f"{net.path}: {len(tables.branches)} closed series elements on {n_buses} buses: not radial; "
                        "3ph-linear (LinDist3Flow) needs a radial feeder (use 3ph-exact)")
    out: list[LinearBranch | None] = [None] * len(tables.branches)
    seen = {tables.source_bus}
    queue = deque([tables.source_bus])
    while queue:
        bus = queue.popleft()
        for k in adj.get(bus, []):
            if out[k] is not None:
                continue
            name, kind, b1, b2 = tables.branches.iloc[k]
            forward = b1 == bus
            child = b2 if forward else b1
            if child in seen:
                raise CaseError(f"{net.path}: a loop through {name}: 3ph-linear needs a radial feeder (use 3ph-exact)")
            seen.add(child)
            queue.append(child)
            at = tables.branch_nodes[k]
            n = len(at) // 2
            n1, n2 = at[:n], at[n:]
            b = by_name[name]
            approx = ""
            if tables.branch_z[k] is not None:
                z = tables.branch_z[k]
                tap = np.ones(n)
            else:
                zb2 = (tables.v_base_kv[n2] * 1000.0) ** 2 / sb
                z = np.diag(np.diag(np.asarray(b.z_ohm, complex)) / zb2)
                tap = np.asarray(b.tap, float) * np.ones(n)
                if "delta" in b.conn:
                    approx = f"{b.conn[0]}-{b.conn[1]}"
            mp, mq = drop_matrices(z, tables.node_phase[n2])
            up, down = (n1, n2) if forward else (n2, n1)
            c = voltage_map(tables.branch_y[k], tables.node_phase[n1]) if forward and tables.branch_z[k] is None else None
            out[k] = LinearBranch(name, kind, bus, child, up, down, mp, mq, tap, forward, approx, c)
    missing = [tables.branches.iloc[k]["name"] for k, x in enumerate(out) if x is None]
    if missing:
        raise CaseError(f"{net.path}: series element(s) not reached from the source: {', '.join(missing[:3])}")
    return out  # type: ignore[return-value]


def shunt_matrix(tables: "PhaseTables") -> Any:
    """The shunt admittance the linear model keeps (pu, sparse): capacitors and reactors (the imaginary part
    of ``y_shunt``; its real part is the zero-sequence references of floating delta secondaries, which carry
    no current) and half of each line's charging at each end."""
    import scipy.sparse as sp

    y = sp.coo_matrix(tables.y_shunt)
    rows, cols, vals = [y.row], [y.col], [1j * y.data.imag]
    for k, at in enumerate(tables.branch_nodes):
        if tables.branch_z[k] is None:
            continue
        n = len(at) // 2
        ysh = tables.branch_y[k][:n, :n] + tables.branch_y[k][:n, n:]  # (Ys + Ysh/2) - Ys
        if np.abs(ysh).max(initial=0.0) < 1e-12:
            continue
        for part in (at[:n], at[n:]):
            r, c = np.meshgrid(part, part, indexing="ij")
            rows.append(r.ravel())
            cols.append(c.ravel())
            vals.append(ysh.ravel())
    n_nodes = len(tables.nodes)
    out = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_nodes, n_nodes))
    return out.tocsr()


def shunt_coefficients(tables: "PhaseTables") -> dict[int, list[tuple[int, complex]]]:
    """node k -> [(node l, c)]: the shunt's complex withdrawal at k is ``sum c * v_l`` (linear in the squared
    voltages): ``conj(Y_kk) v_k`` and, off the diagonal, ``conj(Y_kl) G_kl (v_k + v_l) / 2``."""
    y = shunt_matrix(tables).tocoo()
    out: dict[int, dict[int, complex]] = {}
    ph = tables.node_phase
    for k, l, val in zip(y.row, y.col, y.data):
        if abs(val) < 1e-15:
            continue
        d = out.setdefault(int(k), {})
        if k == l:
            d[k] = d.get(k, 0.0) + np.conj(val)
        else:
            c = np.conj(val) * gamma(np.array([ph[k], ph[l]]))[0, 1] / 2.0
            d[int(k)] = d.get(int(k), 0.0) + c
            d[int(l)] = d.get(int(l), 0.0) + c
    return {k: list(d.items()) for k, d in out.items()}


def delta_split(tables: "PhaseTables") -> tuple[np.ndarray, np.ndarray]:
    """Per delta element the complex factors ``f_a = V_a / V_ab``, ``f_b = -V_b / V_ab`` at balanced
    voltages: the element's power ``S`` is withdrawn as ``f_a S`` at node a and ``f_b S`` at node b."""
    if not len(tables.delta):
        return np.zeros(0, complex), np.zeros(0, complex)
    ph = tables.node_phase
    ra = np.exp(1j * np.radians([_SHIFT[int(ph[a])] for a in tables.delta["node_a"]]))
    rb = np.exp(1j * np.radians([_SHIFT[int(ph[b])] for b in tables.delta["node_b"]]))
    return ra / (ra - rb), -rb / (ra - rb)


class ThreePhaseLinear(OpfFormulation):
    """``3ph-linear``: LinDist3Flow (module docstring)."""

    name = "3ph-linear"
    family = "three-phase"
    description = ("LinDist3Flow: phase-coupled linear branch flow, fixed 120-degree angles, losses dropped "
                   "(transformers by their no-load voltage map, 30-degree shift dropped)")
    distributed = False
    validation = "nodes-report"

    def unsupported(self, case: "Case") -> str | None:
        return ThreePhaseExact().unsupported(case)

    def build(self, case: "Case", tables: "PhaseTables", branches: list[LinearBranch],
              v_start: np.ndarray | None = None) -> "pyo.ConcreteModel":
        """The central LP (with the DER blocks' own constraints): squared node voltages ``net.v``, per-phase
        flows ``net.P``, ``net.Q`` per branch phase, the source's per-phase ``net.Ps``, ``net.Qs``.
        ``v_start`` (complex, nodes x hours) sets each load's regime as in ``3ph-exact``."""
        import pyomo.environ as pyo
        from pyomo.common.gc_manager import PauseGC

        from mpdopf_pyomo.blocks.battery import declare_battery
        from mpdopf_pyomo.blocks.pv import declare_pv
        from mpdopf_pyomo.network.phases import above_band, hourly_scale, zip_coefficients

        s = case.settings
        T = list(case.profile.index)
        prof = case.profile
        lm = prof["load_mult"].to_numpy(float)
        n_nodes = len(tables.nodes)
        with PauseGC():
            m = pyo.ConcreteModel(name=f"{case.name}-central-3ph-linear")
            m.formulation = self.name
            m.hours = T
            declare_pv(m, "pv", pvs=case.pvs, pv_mult=prof["pv_mult"], hours=T, limit=s.inverter_limit)
            declare_battery(m, "battery", batteries=case.batteries, hours=T, dt_h=s.dt_h, limit=s.inverter_limit,
                            terminal=s.terminal_soc)
            injections = ThreePhaseExact.placement(case, tables, m)
            net = pyo.Block(concrete=True)
            m.add_component("net", net)
            net.N = pyo.RangeSet(0, n_nodes - 1)
            net.T = pyo.Set(initialize=T, ordered=True)
            vlo, vhi = s.v_min_pu, (s.v_max_phase_pu or s.v_max_pu)
            limit_nodes = (set(tables.wye["node"].astype(int)) | set(tables.delta["node_a"].astype(int))
                           | set(tables.delta["node_b"].astype(int)) | set(injections))
            net.v = pyo.Var(net.N, net.T, initialize=1.0)
            for n in limit_nodes:
                for t in T:
                    net.v[n, t].setlb(vlo**2)
                    net.v[n, t].setub(vhi**2)
            pairs = [(e, k) for e, br in enumerate(branches) for k in range(len(br.up))]
            net.E = pyo.RangeSet(0, len(pairs) - 1)
            net.P = pyo.Var(net.E, net.T, initialize=0.0)
            net.Q = pyo.Var(net.E, net.T, initialize=0.0)
            src = [int(x) for x in (tables.source_nodes if len(tables.source_nodes) else tables.fixed)]
            net.S = pyo.RangeSet(0, len(src) - 1)
            net.Ps = pyo.Var(net.S, net.T, initialize=0.0)
            net.Qs = pyo.Var(net.S, net.T, initialize=0.0)
            first = {}
            for p, (e, k) in enumerate(pairs):
                first.setdefault(e, p)

            # withdrawals per node (pu, linear expressions in v): loads, shunts, minus DERs
            wd_p: dict[tuple[int, int], Any] = {}
            wd_q: dict[tuple[int, int], Any] = {}

            def add(n: int, t: int, p: Any, q: Any) -> None:
                wd_p[n, t] = wd_p.get((n, t), 0.0) + p
                wd_q[n, t] = wd_q.get((n, t), 0.0) + q

            regimes = {"above_vmax_wye": 0, "above_vmax_delta": 0}
            m.load_expr = {}  # (kind, row) -> (P, Q) per hour, for the read-back
            for kind, tab in (("wye", tables.wye), ("delta", tables.delta)):
                if not len(tab):
                    continue
                if kind == "wye":
                    a = tab["node"].to_numpy(int)
                    u = None if v_start is None else v_start[a]
                else:
                    a, b = tab["node_a"].to_numpy(int), tab["node_b"].to_numpy(int)
                    u = None if v_start is None else v_start[a] - v_start[b]
                above = (np.zeros((len(tab), len(T)), bool) if u is None else above_band(tab, u))
                regimes[f"above_vmax_{kind}"] = int(above.sum())
                c = zip_coefficients(tab, above)
                scale = hourly_scale(tab, lm)
                k_el = tab["k"].to_numpy(float)
                fa, fb = delta_split(tables) if kind == "delta" else (None, None)
                for r in range(len(tab)):
                    for h, t in enumerate(T):
                        if kind == "wye":
                            w = k_el[r] ** 2 * net.v[a[r], t]
                            mag = k_el[r] * (1.0 + net.v[a[r], t]) / 2.0
                        else:  # |V_ab|^2 ~ 1.5 (v_a + v_b), |V_ab| ~ sqrt(3) (1 + (v_a + v_b) / 2) / 2
                            vs = net.v[a[r], t] + net.v[b[r], t]
                            w = k_el[r] ** 2 * 1.5 * vs
                            mag = k_el[r] * math.sqrt(3.0) * (1.0 + vs / 2.0) / 2.0
                        pe = scale[r, h] * (c["pz"][r, h] * w + c["pi"][r, h] * mag + c["pp"][r, h])
                        qe = scale[r, h] * (c["qz"][r, h] * w + c["qi"][r, h] * mag + c["qp"][r, h])
                        m.load_expr[kind, r, t] = (pe, qe)
                        if kind == "wye":
                            add(int(a[r]), t, pe, qe)
                        else:
                            for node, f in ((a[r], fa[r]), (b[r], fb[r])):
                                add(int(node), t, f.real * pe - f.imag * qe, f.imag * pe + f.real * qe)
            m.shunt = shunt_coefficients(tables)
            for n, terms in m.shunt.items():
                for t in T:
                    add(n, t, sum(c.real * net.v[l, t] for l, c in terms), sum(c.imag * net.v[l, t] for l, c in terms))
            for n, entries in injections.items():
                for share, p_of, q_of in entries:
                    for t in T:
                        add(n, t, -share * p_of[t], -share * q_of[t])

            inflow: dict[int, tuple[str, int]] = {}
            outflow: dict[int, list[int]] = {}
            for p, (e, k) in enumerate(pairs):
                inflow[int(branches[e].down[k])] = ("branch", p)
                outflow.setdefault(int(branches[e].up[k]), []).append(p)
            for j, n in enumerate(src):
                inflow[n] = ("source", j)
            dead = [tables.nodes[n] for n in range(n_nodes) if n not in inflow]
            if dead:
                raise CaseError(f"{case.network_model}: node(s) {', '.join(dead[:3])} fed by no branch phase")

            def balance(part: str):
                def rule(blk: pyo.Block, n: int, t: int) -> Any:
                    what, i = inflow[n]
                    if part == "p":
                        into = blk.P[i, t] if what == "branch" else blk.Ps[i, t]
                        return into - sum(blk.P[o, t] for o in outflow.get(n, [])) == wd_p.get((n, t), 0.0)
                    into = blk.Q[i, t] if what == "branch" else blk.Qs[i, t]
                    return into - sum(blk.Q[o, t] for o in outflow.get(n, [])) == wd_q.get((n, t), 0.0)
                return rule

            net.p_balance = pyo.Constraint(net.N, net.T, rule=balance("p"))
            net.q_balance = pyo.Constraint(net.N, net.T, rule=balance("q"))

            def drop_rule(blk: pyo.Block, p: int, t: int) -> Any:
                e, k = pairs[p]
                br = branches[e]
                p0 = first[e]
                n = len(br.up)
                drop = sum(br.mp[k, l] * blk.P[p0 + l, t] + br.mq[k, l] * blk.Q[p0 + l, t] for l in range(n))
                if br.c is not None:
                    return blk.v[int(br.down[k]), t] == sum(
                        float(br.c[k, l]) * blk.v[int(br.up[l]), t] for l in range(n) if abs(br.c[k, l]) > 1e-12) - drop
                if br.forward:
                    return blk.v[int(br.down[k]), t] == blk.v[int(br.up[k]), t] / br.tap[k] ** 2 - drop
                return blk.v[int(br.down[k]), t] == br.tap[k] ** 2 * (blk.v[int(br.up[k]), t] - drop)

            net.drop = pyo.Constraint(net.E, net.T, rule=drop_rule)
            if len(tables.source_nodes):
                mp, mq = drop_matrices(tables.source_z, tables.node_phase[src])
                e2 = np.abs(tables.source_e) ** 2

                def src_rule(blk: pyo.Block, j: int, t: int) -> Any:
                    drop = sum(mp[j, l] * blk.Ps[l, t] + mq[j, l] * blk.Qs[l, t] for l in range(len(src)))
                    return blk.v[src[j], t] == float(e2[j]) - drop
            else:
                e2 = np.abs(tables.fixed_v) ** 2

                def src_rule(blk: pyo.Block, j: int, t: int) -> Any:
                    return blk.v[src[j], t] == float(e2[j])

            net.source_v = pyo.Constraint(net.S, net.T, rule=src_rule)
            sub = pyo.Block(concrete=True)
            m.add_component("substation", sub)
            sub.P = pyo.Var(T, bounds=(None if s.reverse_power else 0.0, None), initialize=0.0)
            sub.Q = pyo.Var(T, initialize=0.0)
            sub.p_sum = pyo.Constraint(T, rule=lambda b, t: b.P[t] == sum(net.Ps[j, t] for j in net.S))
            sub.q_sum = pyo.Constraint(T, rule=lambda b, t: b.Q[t] == sum(net.Qs[j, t] for j in net.S))
            base = case.bases.s_kva
            price = prof["price"].to_dict()
            m.energy_cost = pyo.Expression(expr=sum(price[t] * sub.P[t] * s.dt_h * base for t in T))
            m.loss_cost = pyo.Expression(expr=s.alpha_usd_per_kwh * base * m.battery.loss)
            m.terminal_cost = pyo.Expression(expr=s.terminal_penalty_usd_per_kwh * base * m.battery.shortfall)
            m.obj = pyo.Objective(expr=m.energy_cost + m.loss_cost + m.terminal_cost)
        m.injections = injections
        m.pairs = pairs
        m.src = src
        m.regimes = regimes
        m.wd = (wd_p, wd_q)
        return m

    def solve_central(self, case: "Case", solver: str, options: Mapping[str, Any] | None, tee: bool,
                      progress: "Progress") -> "Results":
        import pyomo.environ as pyo

        from mpdopf_pyomo import solvers

        t0 = time.perf_counter()
        tables = tables_of(case)
        branches = linear_branches(tables, network_of(case))
        progress(f"building the {self.name} model: {len(tables.nodes)} nodes ({len(set(tables.node_bus))} buses) "
                 f"x {case.hours} h")
        v0, _, pf_iters = ThreePhaseExact.start(case, tables)
        m = self.build(case, tables, branches, v0)
        build_s = time.perf_counter() - t0
        progress(f"solving with {solver}")
        stats = solvers.solve(m, solver, options, tee=tee)
        progress(f"{solver} ({stats.route}) converged in {stats.iterations} iterations, {stats.solve_s:.2f} s")
        n_vars = sum(1 for x in m.component_data_objects(pyo.Var, active=True) if not x.fixed)
        n_cons = sum(1 for _ in m.component_data_objects(pyo.Constraint, active=True))
        approx = sorted({f"{b.name} ({b.approx})" for b in branches if b.approx})
        return read_back(case, tables, branches, m, algorithm="central", formulation=self.name,
                         solver=stats.solver, solver_route=stats.route, solver_version=stats.extra.get("version"),
                         solver_stats={"iterations": stats.iterations, "termination": stats.termination,
                                       "variables": n_vars, "constraints": n_cons, "mumps": stats.extra.get("mumps"),
                                       "start_power_flow_iterations": pf_iters, "loads_above_vmax": m.regimes,
                                       "delta_windings_as_wye": approx},
                         timings={"build_s": build_s, "solve_s": stats.solve_s})


def squared_voltages(m: "pyo.ConcreteModel", n_nodes: int) -> np.ndarray:
    """The solved squared node voltages (nodes x hours)."""
    T = list(m.hours)
    return np.array([[m.net.v[n, t].value for t in T] for n in range(n_nodes)], float)


def complex_voltages(tables: "PhaseTables", m: "pyo.ConcreteModel") -> np.ndarray:
    """``sqrt(v)`` per node and hour at the no-load network's angles (which carry every transformer's phase
    shift; LinDist3Flow itself has no angles): a starting point for ``3ph-exact``."""
    from mpdopf_pyomo.network.phases import initial_voltages

    ang = np.angle(initial_voltages(tables, 1))
    return np.sqrt(np.maximum(squared_voltages(m, len(tables.nodes)), 0.0)) * np.exp(1j * ang)


def read_back(case: "Case", tables: "PhaseTables", branches: list[LinearBranch], m: "pyo.ConcreteModel",
              **summary: Any) -> "Results":
    """Results of a solved ``3ph-linear`` model: the common tables (bus voltage = mean phase magnitude,
    branch totals with loss 0, PV, battery, substation) and the per-phase tables of ``3ph-exact``
    (``node_voltages`` with the no-load angles, ``branch_phases``, ``substation_phases``)."""
    import pandas as pd
    import pyomo.environ as pyo

    from mpdopf_pyomo.results import Results, device_rows

    base = case.bases.s_kva
    T = list(case.profile.index)
    n = len(tables.nodes)
    v = complex_voltages(tables, m)
    mag = np.abs(v)
    node_bus = tables.node_bus.astype(str)
    by_bus = pd.DataFrame(mag, index=node_bus, columns=T).groupby(level=0).mean()
    missing = [b for b in case.buses.index if str(b) not in by_bus.index]
    if missing:
        raise CaseError(f"{case.source}: bus(es) of the case not in the three-phase network: {', '.join(missing[:5])}")
    voltages = by_bus.loc[[str(b) for b in case.buses.index]]
    voltages.index = pd.Index(case.buses.index, name="bus")

    val = pyo.value
    p_der = np.zeros((n, len(T)))
    q_der = np.zeros((n, len(T)))
    for node, entries in m.injections.items():
        for share, p_of, q_of in entries:
            p_der[node] += share * np.array([val(p_of[t]) for t in T])
            q_der[node] += share * np.array([val(q_of[t]) for t in T])
    wd_p, wd_q = m.wd
    s_with = np.array([[val(wd_p.get((k, t), 0.0)) + 1j * val(wd_q.get((k, t), 0.0)) for t in T] for k in range(n)])
    s_shunt = np.zeros((n, len(T)), complex)
    vsq = squared_voltages(m, n)
    for k, terms in m.shunt.items():
        s_shunt[k] = sum(c * vsq[l] for l, c in terms)
    s_load = s_with - s_shunt + (p_der + 1j * q_der)  # loads (and the network's own generators)

    flows = np.array([[complex(m.net.P[p, t].value, m.net.Q[p, t].value) for t in T] for p in range(len(m.pairs))])
    cols: dict[str, list] = {k: [] for k in ("branch", "end", "bus", "phase", "t", "p_kw", "q_kvar")}
    ends: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    for p, (e, k) in enumerate(m.pairs):
        br = branches[e]
        s = flows[p] * base  # into the branch at the parent end; the same out at the child end (no losses)
        for end_nodes, sign in ((br.up, 1.0), (br.down, -1.0)):
            is_bus1 = (sign > 0) == br.forward
            for t_i, t in enumerate(T):
                cols["branch"].append(br.name)
                cols["end"].append(1 if is_bus1 else 2)
                cols["bus"].append(node_bus[end_nodes[k]])
                cols["phase"].append(int(tables.node_phase[end_nodes[k]]))
                cols["t"].append(t)
                cols["p_kw"].append(sign * s[t_i].real)
                cols["q_kvar"].append(sign * s[t_i].imag)
        up_bus, tot, isq = ends.get(br.name, (br.up_bus, np.zeros(len(T), complex), np.zeros(len(T))))
        v_down = np.maximum(vsq[br.down[k]], 1e-6)
        ends[br.name] = (up_bus, tot + flows[p], np.maximum(isq, np.abs(flows[p]) ** 2 / v_down))
    branch_phases = pd.DataFrame(cols)
    frames = []
    for e, row in case.branches.iterrows():
        if e not in ends:
            raise CaseError(f"{case.source}: branch {e!r} of the case is not a series element of the network")
        up_bus, tot, isq = ends[e]
        sign = 1.0 if str(row["from_bus"]) == str(up_bus) else -1.0
        frames.append(pd.DataFrame({"branch": e, "t": T, "from_bus": row["from_bus"], "to_bus": row["to_bus"],
                                    "p_kw": sign * tot.real * base, "q_kvar": sign * tot.imag * base,
                                    "loss_kw": 0.0, "current_sq_pu": isq}))
    branch_table = pd.concat(frames, ignore_index=True).set_index(["branch", "t"])

    pv_rows: list[tuple] = []
    bat_rows: list[tuple] = []
    device_rows(case, m, pv_rows, bat_rows)
    sub_p = {t: float(m.substation.P[t].value) for t in T}
    sub_q = {t: float(m.substation.Q[t].value) for t in T}
    substation_phases = pd.DataFrame(
        [(t, tables.source_bus, int(tables.node_phase[node]), m.net.Ps[j, t].value * base,
          m.net.Qs[j, t].value * base) for t in T for j, node in enumerate(m.src)],
        columns=["t", "bus", "phase", "p_kw", "q_kvar"])
    node_rows = pd.DataFrame({
        "node": np.repeat(tables.nodes, len(T)), "bus": np.repeat(node_bus, len(T)),
        "phase": np.repeat(tables.node_phase, len(T)), "t": np.tile(T, n),
        "v_pu": mag.ravel(), "angle_deg": np.degrees(np.angle(v)).ravel(),
        "p_load_kw": s_load.real.ravel() * base, "q_load_kvar": s_load.imag.ravel() * base,
        "p_der_kw": p_der.ravel() * base, "q_der_kvar": q_der.ravel() * base,
        "p_shunt_kw": s_shunt.real.ravel() * base, "q_shunt_kvar": s_shunt.imag.ravel() * base,
    })
    results = Results.from_tables(
        case, voltages, branch_table, pv_rows, bat_rows, sub_p, sub_q,
        float(val(m.energy_cost + m.loss_cost + m.terminal_cost)), float(val(m.loss_cost)),
        float(val(m.terminal_cost)), **summary)
    s = results.summary
    s["v_min_pu"], s["v_max_pu"] = float(mag.min()), float(mag.max())
    s["units"] = "kW, kvar, kWh: sums over the phases; voltages in pu of each bus's line-to-neutral base"
    s["convention"] = ("three-phase model: top-level powers, energies and USD are sums over the phases; per_phase "
                       "divides them by 3 (for comparison with the balanced family's single-phase equivalent)")
    s["three_phase"] = {
        "nodes": n, "buses": int(len(set(node_bus))), "wye_load_elements": int(len(tables.wye)),
        "delta_load_elements": int(len(tables.delta)), "notes": tables.notes,
        "v_min_node": tables.nodes[int(np.argmin(mag.min(axis=1)))],
        "v_max_node": tables.nodes[int(np.argmax(mag.max(axis=1)))],
        "der_split": "equal P and Q on every phase of the device's bus",
        "voltage_limits": "case limits at load and DER nodes",
        "model": "LinDist3Flow: fixed 120-degree angles, losses dropped; angles reported are the no-load network's",
    }
    results.extra_tables["node_voltages"] = node_rows
    results.extra_tables["branch_phases"] = branch_phases
    results.extra_tables["substation_phases"] = substation_phases
    return results


register(ThreePhaseLinear())
