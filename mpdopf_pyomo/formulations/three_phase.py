"""The three-phase family: ``3ph-exact``, the exact unbalanced multi-period OPF of an OpenDSS feeder.

Physics: :mod:`mpdopf_pyomo.blocks.three_phase.current_injection` over the per-node tables of
:func:`mpdopf_pyomo.network.phases.phase_tables`, read from the case's own network file (the same
operating point as the balanced reduction: regulators at their fixed taps, capacitors as converted).
PVs and batteries are the balanced family's blocks (:mod:`mpdopf_pyomo.blocks.pv`,
:mod:`~mpdopf_pyomo.blocks.battery`): one P, Q (and SOC) per device, rated as in the case.

DER placement and the per-phase split (a choice, and why):

* a case's PV or battery sits at a bus; it connects to ALL the phases of that bus (a three-phase bus:
  three phases, a single-phase lateral: its phase) and puts an EQUAL share of its P and Q on each phase.
  That is what a three-phase inverter controlled to balanced output does, what OpenDSS's
  PVSystem/Storage/Generator elements do, and so exactly what validation pushes into the original feeder
  (one Generator on all the phases of the bus); its rating is then a per-device limit
  ``P^2 + Q^2 <= S^2`` that is the same as ``|S_phase| <= S / n`` on every phase. Free per-phase set points
  (phase balancing by inverters) would need one validation element per phase; not done yet.
* one state of charge per battery (its phases share the storage).

Loads: every load of the network on its phases and connection (wye phase to ground, delta phase to
phase), ZIP as read, scaled by the case's hourly ``load_mult``. Voltage limits: the case's
``[v_min_pu, v_max_phase_pu]`` (``v_max_phase_pu`` defaults to ``v_max_pu``) at every node that serves a load or a DER (an unloaded regulator output node,
IEEE 13's rg60 at 1.056 pu at its fixed taps, is not a customer's voltage), plus each constant-power or
constant-current load's own band ``[vminpu, vmaxpu]`` (outside it OpenDSS models the load as a constant
impedance, so the plan stays where the two models agree). Objective: the balanced one (energy bought at
the substation, the sum of the phase powers at the source bus, times the price; battery conversion
losses; terminal penalty).

MATPOWER cases hold a balanced single-phase equivalent and no phases: this formulation refuses them in
one line (use ``exact``).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.formulations import OpfFormulation, register, solve_model

if TYPE_CHECKING:
    import numpy as np
    import pyomo.environ as pyo

    from mpdopf_pyomo.case import Case
    from mpdopf_pyomo.network.model import Network
    from mpdopf_pyomo.network.phases import PhaseTables
    from mpdopf_pyomo.progress import Progress
    from mpdopf_pyomo.results import Results


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int) -> "Network":
    from mpdopf_pyomo.network import read_network_file

    return read_network_file(path)


def network_of(case: "Case") -> "Network":
    """The case's phase-aware network, read with the reader the case loader used (cached per file version)."""
    path = Path(case.network_model)
    return _read(str(path), path.stat().st_mtime_ns)


def tables_of(case: "Case") -> "PhaseTables":
    """The per-node tables of the case's network on the case's power base, its source at the case's
    ``v_sub_pu`` (the source's internal voltage, as validation sets OpenDSS's Vsource)."""
    from mpdopf_pyomo.network.phases import phase_tables

    return phase_tables(network_of(case), case.bases.s_kva, source_pu=case.settings.v_sub_pu)


class ThreePhaseExact(OpfFormulation):
    """``3ph-exact``: complex phase voltages in rectangular coordinates, current injection (module docstring)."""

    name = "3ph-exact"
    family = "three-phase"
    description = ("exact unbalanced three-phase AC (rectangular voltages, current injection; lines with mutual "
                   "coupling and charging, transformers by connection, regulators at fixed taps)")
    distributed = True  # areas: :mod:`.three_phase_areas` (ADMM and ENApp over per-phase ports)
    #: ADMM over per-phase ports (:mod:`.three_phase_areas`, measured there): Q and the phase voltages'
    #: real and imaginary parts take their own penalties, and the ENApp warm start is given up when a child
    #: cannot meet the voltages it receives
    algorithm_defaults = {"admm": {"kind_scale": {"Q": 1e-2, "v": 0.3}, "warm_abandon": True}}
    #: IPOPT's adaptive barrier update: 29 instead of 38 iterations on IEEE 123, 24 h (27 vs 31 on IEEE 34,
    #: 19 vs 21 on IEEE 13; measured). Its probing or LOQO oracle costs iterations here (IEEE 34 24 h:
    #: 27 -> 37 / 34; IEEE 13 5 h: 19 -> 25 / 20; measured 2026-12-02)
    solver_defaults = {"mu_strategy": "adaptive"}
    validation = "nodes"

    def unsupported(self, case: "Case") -> str | None:
        if Path(case.network_model).suffix.lower() != ".dss":
            return (f"the network {Path(case.network_model).name} is a MATPOWER case: a balanced single-phase "
                    "equivalent without phases or connections; use a balanced formulation (exact)")
        from mpdopf_pyomo.network.phases import unsupported

        problems = unsupported(network_of(case))
        if problems:
            return "the three-phase model cannot represent " + "; ".join(problems)
        return None

    # --- areas of a distributed solve (:mod:`.three_phase_areas`) -------------------------------------
    def area_start(self, case: "Case") -> dict[str, Any]:
        from mpdopf_pyomo.formulations.three_phase_areas import area_start

        return area_start(case)

    def build_area(self, case: "Case", area: int) -> "pyo.ConcreteModel":
        from mpdopf_pyomo.formulations.three_phase_areas import build_area

        return build_area(self, case, area)

    def initialize_area(self, case: "Case", m: Any, start: dict[str, Any] | None) -> None:
        """Nothing to do: :meth:`build_area` starts every area at the whole feeder's power flow."""

    def cuttable(self, case: "Case") -> set[str] | None:
        from mpdopf_pyomo.formulations.three_phase_areas import cuttable

        return cuttable(tables_of(case))

    def area_results(self, case: "Case", m: Any) -> Any:
        from mpdopf_pyomo.formulations.three_phase_areas import area_results

        return area_results(m)

    def results_from_areas(self, case: "Case", parts: list[Any], **summary: Any) -> "Results":
        from mpdopf_pyomo.formulations.three_phase_areas import results_from_areas

        return results_from_areas(self, case, parts, **summary)

    # ------------------------------------------------------------------------------------------------
    def build(self, case: "Case", tables: "PhaseTables", v_start: "np.ndarray | None" = None) -> "pyo.ConcreteModel":
        """The central model: PV and battery blocks, the network block, the source and the objective.
        ``v_start`` (nodes x hours): the starting point's voltages, which set each load's regime
        (:func:`~mpdopf_pyomo.blocks.three_phase.current_injection.declare_current_injection`)."""
        import pyomo.environ as pyo
        from pyomo.common.gc_manager import PauseGC

        from mpdopf_pyomo.blocks.three_phase.current_injection import declare_current_injection, declare_source
        from mpdopf_pyomo.network.phases import above_band

        s = case.settings
        T = list(case.profile.index)
        prof = case.profile
        with PauseGC():
            m = pyo.ConcreteModel(name=f"{case.name}-central-3ph")
            m.formulation = self.name
            m.hours = T
            injections = self.declare_devices(case, tables, m)
            limit_nodes = sorted(set(tables.wye["node"].astype(int)) | set(tables.delta["node_a"].astype(int))
                                 | set(tables.delta["node_b"].astype(int)) | set(injections))
            above_w = above_d = None
            if v_start is not None:
                above_w = above_band(tables.wye, v_start[tables.wye["node"].to_numpy(int)])
                above_d = above_band(tables.delta, v_start[tables.delta["node_a"].to_numpy(int)]
                                     - v_start[tables.delta["node_b"].to_numpy(int)])
            declare_current_injection(
                m, "net", tables=tables, hours=T, load_mult=prof["load_mult"].to_numpy(float),
                injections=injections, v_limits=(s.v_min_pu, s.v_max_phase_pu or s.v_max_pu), limit_nodes=limit_nodes,
                above_wye=above_w, above_delta=above_d)
            m.regimes = {"above_vmax_wye": int(above_w.sum()) if above_w is not None else 0,
                         "above_vmax_delta": int(above_d.sum()) if above_d is not None else 0}
            declare_source(m, "substation", net=m.net, tables=tables, reverse_power=s.reverse_power)
            base = case.bases.s_kva
            price = prof["price"].to_dict()
            m.energy_cost = pyo.Expression(expr=sum(price[t] * m.substation.P[t] * s.dt_h * base for t in T))
            m.loss_cost = pyo.Expression(expr=s.alpha_usd_per_kwh * base * m.battery.loss)
            m.terminal_cost = pyo.Expression(expr=s.terminal_penalty_usd_per_kwh * base * m.battery.shortfall)
            m.obj = pyo.Objective(expr=m.energy_cost + m.loss_cost + m.terminal_cost)
        m.injections = injections
        return m

    @staticmethod
    def declare_devices(case: "Case", tables: "PhaseTables", m: "pyo.ConcreteModel", pvs: Any = None,
                        batteries: Any = None) -> dict[int, list[tuple[float, Any, Any]]]:
        """Declare the PV and battery blocks on ``m`` (the case's, or the given subsets of an area) and return
        node -> [(share, p per hour, q per hour)] of every PV and battery: all phases of its bus, equal shares."""
        from mpdopf_pyomo.blocks.battery import declare_battery
        from mpdopf_pyomo.blocks.pv import declare_pv

        s = case.settings
        declare_pv(m, "pv", pvs=case.pvs if pvs is None else pvs, pv_mult=case.profile["pv_mult"],
                   hours=list(case.profile.index), limit=s.inverter_limit)
        declare_battery(m, "battery", batteries=case.batteries if batteries is None else batteries,
                        hours=list(case.profile.index), dt_h=s.dt_h, limit=s.inverter_limit, terminal=s.terminal_soc)
        by_bus: dict[str, list[int]] = {}
        for k, bus in enumerate(tables.node_bus):
            by_bus.setdefault(str(bus), []).append(k)
        T = list(case.profile.index)
        out: dict[int, list[tuple[float, Any, Any]]] = {}
        devices = [(j, {t: m.pv.p[j, t] for t in T}, {t: m.pv.q[j, t] for t in T}, "PV") for j in m.pv.J]
        devices += [(j, {t: m.battery.p_net[j, t] for t in T}, {t: m.battery.q[j, t] for t in T}, "battery")
                    for j in m.battery.J]
        for bus, p_of, q_of, what in devices:
            nodes = by_bus.get(str(bus).lower())
            if not nodes:
                raise CaseError(f"{case.source}: {what} bus {bus!r} is not a bus of {case.network_model}")
            if str(bus).lower() == tables.source_bus:
                raise CaseError(f"{case.source}: the substation bus '{bus}' cannot hold a PV or battery")
            for n in nodes:
                out.setdefault(n, []).append((1.0 / len(nodes), p_of, q_of))
        return out

    @staticmethod
    def start(case: "Case", tables: "PhaseTables") -> "tuple[np.ndarray, np.ndarray, int]":
        """The starting point: a power flow of the forecast (PVs at their forecast P on the phases of their
        bus, no reactive power, batteries idle): node voltages (nodes x hours) with every transformer's
        phase shift, the PV injections per node (pu) and the power flow's iterations. (Starting from the
        ``3ph-linear`` solution instead saves no time: IEEE 123, 24 h, 29 -> 28 iterations for 9 s of LP.)"""
        import numpy as np

        from mpdopf_pyomo.network.phases import power_flow

        lm = case.profile["load_mult"].to_numpy(float)
        pm = case.profile["pv_mult"].to_numpy(float)
        p_inj = np.zeros((len(tables.nodes), len(lm)))
        for bus, p_rated in case.pvs["p_rated"].items():
            nodes = np.flatnonzero(tables.node_bus.astype(str) == str(bus).lower())
            if len(nodes):
                p_inj[nodes] += float(p_rated) * pm / len(nodes)
        v, iters = power_flow(tables, lm, p_inj, np.zeros_like(p_inj))
        return v, p_inj, iters

    def initialize(self, case: "Case", tables: "PhaseTables", m: "pyo.ConcreteModel", v: "np.ndarray",
                   p_inj: "np.ndarray") -> None:
        """Load the starting point of :meth:`start` into the model: voltages and the matching currents."""
        import numpy as np

        from mpdopf_pyomo.blocks.three_phase.current_injection import initialize_current_injection
        from mpdopf_pyomo.network.phases import load_currents

        T = list(case.profile.index)
        lm = case.profile["load_mult"].to_numpy(float)
        wye, delta = load_currents(tables, v, lm)
        wye = wye - np.conj(p_inj / v)
        initialize_current_injection(m.net, tables, v, wye, delta)
        p, q = source_power(tables, v, wye, delta)
        for k, t in enumerate(T):
            m.substation.P[t].set_value(float(p[:, k].sum()), skip_validation=True)
            m.substation.Q[t].set_value(float(q[:, k].sum()), skip_validation=True)

    def solve_central(self, case: "Case", solver: str, options: Mapping[str, Any] | None, tee: bool,
                      progress: "Progress") -> "Results":
        from mpdopf_pyomo.blocks.three_phase.current_injection import node_voltages

        t0 = time.perf_counter()
        tables = tables_of(case)
        progress(f"building the {self.name} model: {len(tables.nodes)} nodes ({len(set(tables.node_bus))} buses) "
                 f"x {case.hours} h")
        v0, p_inj, pf_iters = self.start(case, tables)
        m = self.build(case, tables, v0)
        self.initialize(case, tables, m, v0, p_inj)
        build_s = time.perf_counter() - t0
        stats, solver_stats = solve_model(m, solver, options, tee, progress, self.solver_defaults)
        v = node_voltages(m.net, len(tables.nodes))
        return read_back(case, tables, m, v, algorithm="central", formulation=self.name, solver=stats.solver,
                         solver_route=stats.route, solver_version=stats.extra.get("version"),
                         solver_stats={**solver_stats, "start_power_flow_iterations": pf_iters,
                                       "loads_above_vmax": m.regimes},
                         timings={"build_s": build_s, "solve_s": stats.solve_s})


def _value(x: Any) -> float:
    """A number, or the value of a Pyomo expression."""
    import pyomo.environ as pyo

    return float(pyo.value(x)) if not isinstance(x, (int, float)) else float(x)


def source_power(tables: "PhaseTables", v: "np.ndarray", wye: "np.ndarray", delta: "np.ndarray",
                 source_i: "np.ndarray | None" = None) -> "tuple[np.ndarray, np.ndarray]":
    """P and Q (pu, source nodes x hours) the source delivers into its bus, per phase (``source_i``: its
    current when known, else from the source impedance)."""
    import numpy as np

    if len(tables.source_nodes):
        at = tables.source_nodes
        i = tables.source_y @ (tables.source_e[:, None] - v[at]) if source_i is None else source_i
    else:
        at = tables.fixed
        total = tables.y @ v + wye
        if len(tables.delta):
            np.add.at(total, tables.delta["node_a"].to_numpy(int), delta)
            np.add.at(total, tables.delta["node_b"].to_numpy(int), -delta)
        i = total[at]
    s = v[at] * np.conj(i)
    return s.real, s.imag


def read_back(case: "Case", tables: "PhaseTables", m: "pyo.ConcreteModel", v: np.ndarray, **summary: Any) -> "Results":
    """Results of a solved three-phase model: the common tables (bus voltage = mean phase magnitude, branch
    totals, PV, battery, substation) and per-phase tables ``node_voltages`` (every node: magnitude, angle,
    load, DER and shunt powers), ``branch_phases`` (every branch phase: power into the branch at each end)
    and ``substation_phases``."""
    import numpy as np
    import pandas as pd

    from mpdopf_pyomo.network.phases import load_currents
    from mpdopf_pyomo.results import device_rows

    base = case.bases.s_kva
    T = list(case.profile.index)
    lm = case.profile["load_mult"].to_numpy(float)
    n = len(tables.nodes)
    mag = np.abs(v)
    node_bus = tables.node_bus.astype(str)

    voltages = bus_voltages(case, tables, mag)

    # DER injections per node (pu)
    p_der = np.zeros((n, len(T)))
    q_der = np.zeros((n, len(T)))
    for node, entries in m.injections.items():
        for share, p_of, q_of in entries:
            p_der[node] += share * np.array([_value(p_of[t]) for t in T])
            q_der[node] += share * np.array([_value(q_of[t]) for t in T])
    wye, delta = load_currents(tables, v, lm)
    s_load = v * np.conj(wye)
    if len(tables.delta):
        a, b = tables.delta["node_a"].to_numpy(int), tables.delta["node_b"].to_numpy(int)
        np.add.at(s_load, a, v[a] * np.conj(delta))
        np.add.at(s_load, b, -v[b] * np.conj(delta))

    # branch terminal powers per phase, and the shunt (capacitor) power per node
    from mpdopf_pyomo.blocks.three_phase.current_injection import branch_currents

    currents, source_i = branch_currents(m.net, tables, v)
    nt = len(T)
    ends: dict[str, tuple[str, np.ndarray, np.ndarray, np.ndarray]] = {}  # name -> (bus1, S1, S2, |I|^2 per end)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("branch", "end", "bus", "phase", "t", "p_kw", "q_kvar")}
    for k, (name, kind, bus1, bus2) in enumerate(tables.branches.itertuples(index=False)):
        at = tables.branch_nodes[k]
        cur = currents[k]
        s_term = v[at] * np.conj(cur) * base  # kVA into the branch at each terminal node
        half = len(at) // 2  # terminal 1's nodes, then terminal 2's
        ends[name] = (bus1, s_term[:half].sum(axis=0), s_term[half:].sum(axis=0), np.abs(cur) ** 2)
        cols["branch"].append(np.repeat(name, len(at) * nt))
        cols["end"].append(np.repeat(np.where(np.arange(len(at)) < half, 1, 2), nt))
        cols["bus"].append(np.repeat(node_bus[at], nt))
        cols["phase"].append(np.repeat(tables.node_phase[at], nt))
        cols["t"].append(np.tile(T, len(at)))
        cols["p_kw"].append(s_term.real.ravel())
        cols["q_kvar"].append(s_term.imag.ravel())
    branch_phases = pd.DataFrame({k: np.concatenate(x) for k, x in cols.items()})
    s_shunt = v * np.conj(tables.y_shunt @ v)

    # the common branch table: totals at the case's from-bus end, losses = sum of both ends (and of the
    # network's elements the case merged into the branch), |I|^2 at the far end
    merged = _merged_losses(case, tables, ends)
    frames = []
    for e, row in case.branches.iterrows():
        if e not in ends:
            raise CaseError(f"{case.source}: branch {e!r} of the case is not a series element of the network")
        bus1, s1, s2, i_sq = ends[e]
        half = len(i_sq) // 2
        send, far = (s1, i_sq[half:]) if str(row["from_bus"]) == str(bus1) else (s2, i_sq[:half])
        frames.append(pd.DataFrame({"branch": e, "t": T, "from_bus": row["from_bus"], "to_bus": row["to_bus"],
                                    "p_kw": send.real, "q_kvar": send.imag,
                                    "loss_kw": (s1 + s2).real + merged.get(e, 0.0),
                                    "current_sq_pu": far.max(axis=0)}))
    branches = pd.concat(frames, ignore_index=True).set_index(["branch", "t"])

    pv_rows: list[tuple] = []
    bat_rows: list[tuple] = []
    device_rows(case, m, pv_rows, bat_rows)
    p_src, q_src = source_power(tables, v, wye - np.conj((p_der + 1j * q_der) / v), delta,
                                source_i if len(tables.source_nodes) else None)
    sub_p = {t: float(m.substation.P[t].value) for t in T}
    sub_q = {t: float(m.substation.Q[t].value) for t in T}
    src_nodes = tables.source_nodes if len(tables.source_nodes) else tables.fixed
    substation_phases = pd.DataFrame(
        [(t, tables.source_bus, int(tables.node_phase[node]), p_src[j, h] * base, q_src[j, h] * base)
         for h, t in enumerate(T) for j, node in enumerate(src_nodes)],
        columns=["t", "bus", "phase", "p_kw", "q_kvar"])
    return node_results(case, tables, m, v, s_load, p_der, q_der, s_shunt, voltages, branches, branch_phases,
                        pv_rows, bat_rows, sub_p, sub_q, substation_phases,
                        "case limits at load and DER nodes; each constant-P/I load's [vminpu, vmaxpu]", **summary)


def _merged_losses(case: "Case", tables: "PhaseTables", ends: dict[str, tuple]) -> dict[str, "np.ndarray"]:
    """Per case branch, the losses (kW per hour) of the network's series elements that the case merged into
    it (the IEEE 8500's triplex secondaries behind a service transformer: the case keeps one branch from
    the primary to the house bus): each element not in the case, reached from a case branch's element
    through buses that are not case buses, counts for that branch. So the plan's losses are the whole
    network's, which OpenDSS's ``Losses`` are."""
    case_buses = {str(b) for b in case.buses.index}
    owner: dict[str, str] = {}
    in_case = set(case.branches.index)
    rest = []
    for r in tables.branches.itertuples(index=False):
        if r.name not in in_case:
            rest.append(r)
            continue
        for bus in (str(r.bus1), str(r.bus2)):
            if bus not in case_buses:
                owner[bus] = r.name
    out: dict[str, np.ndarray] = {}
    changed = True
    while changed and rest:
        changed, left = False, []
        for r in rest:
            e = owner.get(str(r.bus1)) or owner.get(str(r.bus2))
            if e is None:
                left.append(r)
                continue
            _, s1, s2, _ = ends[r.name]
            out[e] = out.get(e, 0.0) + (s1 + s2).real
            for bus in (str(r.bus1), str(r.bus2)):
                if bus not in case_buses:
                    owner.setdefault(bus, e)
            changed = True
        rest = left
    return out


def bus_voltages(case: "Case", tables: "PhaseTables", mag: np.ndarray) -> Any:
    """Each case bus's voltage (bus x hour, pu): the mean of its phase magnitudes ``mag`` (nodes x hours), what
    OpenDSS's bus_voltages_pu reports; :class:`CaseError` when a case bus is not in the three-phase network."""
    import pandas as pd

    T = list(case.profile.index)
    by_bus = pd.DataFrame(mag, index=tables.node_bus.astype(str), columns=T).groupby(level=0).mean()
    missing = [b for b in case.buses.index if str(b) not in by_bus.index]
    if missing:
        raise CaseError(f"{case.source}: bus(es) of the case not in the three-phase network: {', '.join(missing[:5])}")
    voltages = by_bus.loc[[str(b) for b in case.buses.index]]
    voltages.index = pd.Index(case.buses.index, name="bus")
    return voltages


def node_results(case: "Case", tables: "PhaseTables", m: "pyo.ConcreteModel", v: np.ndarray, s_load: np.ndarray,
                 p_der: np.ndarray, q_der: np.ndarray, s_shunt: np.ndarray, voltages: Any, branches: Any,
                 branch_phases: Any, pv_rows: list, bat_rows: list, sub_p: dict, sub_q: dict,
                 substation_phases: Any, voltage_limits: str, model: str | None = None,
                 **summary: Any) -> "Results":
    """The :class:`Results` of a solved three-phase model (``3ph-exact``, ``3ph-linear``) from its per-node
    arrays (nodes x hours, pu: complex voltages ``v``, load, DER and shunt powers) and common tables: the
    ``node_voltages``, ``branch_phases`` and ``substation_phases`` tables and the three-phase summary."""
    import numpy as np
    import pandas as pd
    import pyomo.environ as pyo

    from mpdopf_pyomo.results import Results

    base = case.bases.s_kva
    T = list(case.profile.index)
    n = len(tables.nodes)
    node_bus = tables.node_bus.astype(str)
    mag = np.abs(v)
    node_rows = pd.DataFrame({
        "node": np.repeat(tables.nodes, len(T)), "bus": np.repeat(node_bus, len(T)),
        "phase": np.repeat(tables.node_phase, len(T)), "t": np.tile(T, n),
        "v_pu": mag.ravel(), "angle_deg": np.degrees(np.angle(v)).ravel(),
        "p_load_kw": s_load.real.ravel() * base, "q_load_kvar": s_load.imag.ravel() * base,
        "p_der_kw": p_der.ravel() * base, "q_der_kvar": q_der.ravel() * base,
        "p_shunt_kw": s_shunt.real.ravel() * base, "q_shunt_kvar": s_shunt.imag.ravel() * base,
    })
    results = Results.from_tables(
        case, voltages, branches, pv_rows, bat_rows, sub_p, sub_q,
        float(pyo.value(m.energy_cost + m.loss_cost + m.terminal_cost)), float(pyo.value(m.loss_cost)),
        float(pyo.value(m.terminal_cost)), **summary)
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
        "voltage_limits": voltage_limits,
        **({"model": model} if model else {}),
    }
    results.extra_tables["node_voltages"] = node_rows
    results.extra_tables["branch_phases"] = branch_phases
    results.extra_tables["substation_phases"] = substation_phases
    return results


register(ThreePhaseExact())
