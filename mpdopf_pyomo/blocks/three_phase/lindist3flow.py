"""LinDist3Flow's network pieces for ``3ph-linear`` (:mod:`mpdopf_pyomo.formulations.three_phase_linear`, whose
docstring has the equations): the per-branch drop matrices and no-load voltage maps, the shunt and delta-split
coefficients, and the read-back of a solved model into :class:`~mpdopf_pyomo.results.Results`."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mpdopf_pyomo.errors import CaseError

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

    from mpdopf_pyomo.formulations.three_phase import bus_voltages, node_results
    from mpdopf_pyomo.results import device_rows

    base = case.bases.s_kva
    T = list(case.profile.index)
    n = len(tables.nodes)
    v = complex_voltages(tables, m)
    mag = np.abs(v)
    node_bus = tables.node_bus.astype(str)
    voltages = bus_voltages(case, tables, mag)

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
    return node_results(case, tables, m, v, s_load, p_der, q_der, s_shunt, voltages, branch_table, branch_phases,
                        pv_rows, bat_rows, sub_p, sub_q, substation_phases, "case limits at load and DER nodes",
                        model="LinDist3Flow: fixed 120-degree angles, losses dropped; angles reported are the "
                              "no-load network's", **summary)

