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
``3ph-exact`` keeps the forecast's power flow as its start; :func:`mpdopf_pyomo.blocks.three_phase.lindist3flow.complex_voltages` gives the point.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Mapping

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.formulations import OpfFormulation, register, solve_model
from mpdopf_pyomo.formulations.three_phase import ThreePhaseExact, network_of, tables_of

if TYPE_CHECKING:
    import numpy as np
    import pyomo.environ as pyo

    from mpdopf_pyomo.blocks.three_phase.lindist3flow import LinearBranch
    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.network.phases import PhaseTables
    from mpdopf_pyomo.progress import Progress
    from mpdopf_pyomo.results import Results


class ThreePhaseLinear(OpfFormulation):
    """``3ph-linear``: LinDist3Flow (module docstring)."""

    name = "3ph-linear"
    family = "three-phase"
    description = ("LinDist3Flow: phase-coupled linear branch flow, fixed 120-degree angles, losses dropped "
                   "(transformers by their no-load voltage map, 30-degree shift dropped)")
    distributed = False
    validation = "nodes-report"

    def unsupported(self, case: "Case") -> str | None:
        why = ThreePhaseExact().unsupported(case)
        if why is None:
            from mpdopf_pyomo.formulations.three_phase import network_of

            ct = [b.name for b in network_of(case).branches if b.center_tap and not b.normally_open]
            if ct:  # LinDist3Flow's fixed 120-degree angles have no split-phase (180-degree) secondary
                why = (f"LinDist3Flow has no centre-tap service transformers ({len(ct)}: {', '.join(ct[:3])}"
                       f"{', ...' if len(ct) > 3 else ''}); use 3ph-exact")
        return why

    def build(self, case: "Case", tables: "PhaseTables", branches: list[LinearBranch],
              v_start: np.ndarray | None = None) -> "pyo.ConcreteModel":
        """The central LP (with the DER blocks' own constraints): squared node voltages ``net.v``, per-phase
        flows ``net.P``, ``net.Q`` per branch phase, the source's per-phase ``net.Ps``, ``net.Qs``.
        ``v_start`` (complex, nodes x hours) sets each load's regime as in ``3ph-exact``."""
        import numpy as np
        import pyomo.environ as pyo
        from pyomo.common.gc_manager import PauseGC

        from mpdopf_pyomo.blocks.three_phase.lindist3flow import delta_split, drop_matrices, shunt_coefficients
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
            injections = ThreePhaseExact.declare_devices(case, tables, m)
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
        from mpdopf_pyomo.blocks.three_phase.lindist3flow import linear_branches, read_back

        t0 = time.perf_counter()
        tables = tables_of(case)
        branches = linear_branches(tables, network_of(case))
        progress(f"building the {self.name} model: {len(tables.nodes)} nodes ({len(set(tables.node_bus))} buses) "
                 f"x {case.hours} h")
        v0, _, pf_iters = ThreePhaseExact.start(case, tables)
        m = self.build(case, tables, branches, v0)
        build_s = time.perf_counter() - t0
        stats, solver_stats = solve_model(m, solver, options, tee, progress, self.solver_defaults)
        approx = sorted({f"{b.name} ({b.approx})" for b in branches if b.approx})
        return read_back(case, tables, branches, m, algorithm="central", formulation=self.name,
                         solver=stats.solver, solver_route=stats.route, solver_version=stats.extra.get("version"),
                         solver_stats={**solver_stats, "start_power_flow_iterations": pf_iters, "loads_above_vmax": m.regimes,
                                       "delta_windings_as_wye": approx},
                         timings={"build_s": build_s, "solve_s": stats.solve_s})


register(ThreePhaseLinear())
