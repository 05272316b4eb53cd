"""Exact unbalanced three-phase network physics in rectangular coordinates (current injection, IVR-like).

Per unit on each node's base (a node is one phase of one bus; tables from
:func:`mpdopf_pyomo.network.phases.phase_tables`), hour t:

* variables ``vr[n, t]``, ``vi[n, t]``: the real and imaginary part of node n's voltage;
* Kirchhoff's current law at every node that is not fixed, real and imaginary part:
  ``sum_k Y[n, k] V_k + I_W,n + sum_delta (+-) J_l = I_source,n`` -- Y holds every series element's
  primitive admittance (lines with mutual terms and pi charging, transformers by connection and tap,
  regulators at fixed taps, centre-tap service transformers as three windings, switches, reactors),
  shunt capacitors and the source's Thevenin admittance,
  so the equation is LINEAR in the voltages; ``I_source = Y_s E`` (the source's internal voltages);
* ``ir[w, t]``, ``ii[w, t]``: the current drawn at a node w with wye loads or DERs, tied to the power by
  ``V conj(I) = S_W(|V|) - S_DER`` (two bilinear equations): ``S_W = load_mult^t sum (P0 (z k^2 |V|^2 +
  i k |V| + p) + j Q0 (...))`` is the ZIP withdrawal (k = node base / the load's rated element voltage),
  ``S_DER`` the node's share of its bus's PV and battery powers (equal on each phase of the device); the
  network's own generators are constant-power rows of ``S_W`` with negative power, not scaled;
* ``jr[l, t]``, ``ji[l, t]``: the current of a delta load element between nodes a and b (also a 240 V
  load across a split-phase secondary's X1 and X2), with ``(V_a - V_b) conj(J) = S_l(|V_a - V_b|)``; a
  ``Status=fixed`` load keeps its power at every hour's ``load_mult``;
* voltage limits on squared magnitudes ``vr^2 + vi^2``: the case's limits at every node that serves a
  load or DER; and OpenDSS's load regimes: above its ``vmaxpu`` OpenDSS draws a constant-power or
  constant-current load as an impedance. Each such element is held, hour by hour, in the regime it has
  at the starting point (inside ``[vminpu, vmaxpu]`` or above ``vmaxpu``), with that regime's equations
  and limits, so the plan is exact where OpenDSS evaluates it.

Everything is indexed by integer positions (nodes, devices, delta elements) and built from numpy arrays,
so a 24-hour IEEE 123 model (278 nodes) builds in well under a second.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from mpdopf_pyomo.network.phases import PhaseTables, hourly_scale, zip_coefficients

#: A line, switch or reactor whose series admittance exceeds this (pu) is written with its current as a
#: variable (``V_1 - V_2 = Z I``): switches of 1e-4 ohm are admittances of ~1e4 pu, and KCL rows that mix
#: such coefficients with ordinary ones stall IPOPT (IEEE 13 did not converge in 1000 iterations).
STIFF_Y_PU = 200.0
def stiff_elements(tb: PhaseTables) -> list[int]:
    """Positions of the branches written with their current as a variable (see :data:`STIFF_Y_PU`)."""
    return [k for k, z in enumerate(tb.branch_z)
            if z is not None and np.abs(np.linalg.inv(z)).max() > STIFF_Y_PU]


def _bands(tab: pd.DataFrame, above: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared-magnitude limits (element x hour, on the element voltage in node-base units) that keep each
    switching load element in its regime: [vmin, vmax] inside, [vmax, inf) above; and which elements
    switch at all (pure impedances never do)."""
    k = tab["k"].to_numpy(float)[:, None]
    vmin, vmax = tab["vmin"].to_numpy(float)[:, None], tab["vmax"].to_numpy(float)[:, None]
    lo = np.where(above, (vmax / k) ** 2, (vmin / k) ** 2)
    hi = np.where(above, np.inf, (vmax / k) ** 2)
    sw = ((tab["zp"] < 1.0 - 1e-12) | (tab["qz"] < 1.0 - 1e-12)).to_numpy()
    return lo, hi, sw


def declare_current_injection(
    parent: pyo.Block,
    name: str,
    *,
    tables: PhaseTables,
    hours: Sequence[int],
    load_mult: Sequence[float],
    injections: Mapping[int, list[tuple[float, Any, Any]]],
    v_limits: tuple[float, float],
    limit_nodes: Sequence[int],
    above_wye: np.ndarray | None = None,
    above_delta: np.ndarray | None = None,
) -> pyo.Block:
    """Add ``parent.<name>``: node voltages, withdrawal currents, KCL and load relations (module docstring).

    ``injections``: node -> [(share, p[t] getter, q[t] getter)], each getter a mapping hour -> a number or
    Pyomo expression (pu of the power base, three-phase total of the device); the node takes ``share`` of it.
    ``v_limits`` (vmin, vmax) pu apply to the nodes ``limit_nodes``. ``above_wye``/``above_delta``
    (elements x hours, bool; default none): the load elements held in OpenDSS's above-vmax regime in that
    hour (their constant-power and constant-current parts drawn as impedances,
    :func:`~mpdopf_pyomo.network.phases.zip_coefficients`), with ``k |V| >= vmax`` as a limit; every other
    switching element stays within ``[vmin, vmax]``.
    """
    tb = tables
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    T = list(hours)
    n_nodes = len(tb.nodes)
    b.N = pyo.RangeSet(0, n_nodes - 1)
    b.T = pyo.Set(initialize=T, ordered=True)
    vmax_all = 1.5
    b.vr = pyo.Var(b.N, b.T, bounds=(-vmax_all, vmax_all), initialize=0.0)
    b.vi = pyo.Var(b.N, b.T, bounds=(-vmax_all, vmax_all), initialize=0.0)
    fixed = set(int(k) for k in tb.fixed)
    for k, vk in zip(tb.fixed, tb.fixed_v):
        for t in T:
            b.vr[int(k), t].fix(float(vk.real))
            b.vi[int(k), t].fix(float(vk.imag))

    n_t = len(T)
    if above_wye is None:
        above_wye = np.zeros((len(tb.wye), n_t), bool)
    if above_delta is None:
        above_delta = np.zeros((len(tb.delta), n_t), bool)
    # wye ZIP coefficients per node and hour, on the node's |V|^2, |V| and 1 (summed over its elements)
    w_nodes = sorted(set(int(n) for n in tb.wye["node"]) | set(int(n) for n in injections))
    w_pos = {n: k for k, n in enumerate(w_nodes)}
    wc = {key: np.zeros((len(w_nodes), n_t)) for key in ("pz", "pi", "pp", "qz", "qi", "qp")}
    if len(tb.wye):  # each element's hourly multiplier included (load_mult; 1 for the network's generators)
        c = zip_coefficients(tb.wye, above_wye)
        k_el = tb.wye["k"].to_numpy(float)[:, None]
        mult = hourly_scale(tb.wye, np.asarray(load_mult, float))
        rows = np.array([w_pos[int(n)] for n in tb.wye["node"]])
        for key, scale in (("pz", k_el**2), ("pi", k_el), ("pp", 1.0), ("qz", k_el**2), ("qi", k_el), ("qp", 1.0)):
            np.add.at(wc[key], rows, c[key] * scale * mult)
    b.W = pyo.Set(initialize=w_nodes, ordered=True)
    b.ir = pyo.Var(b.W, b.T, initialize=0.0)
    b.ii = pyo.Var(b.W, b.T, initialize=0.0)
    delta = tb.delta.reset_index(drop=True)
    b.L = pyo.RangeSet(0, len(delta) - 1) if len(delta) else pyo.Set(initialize=[])
    b.jr = pyo.Var(b.L, b.T, initialize=0.0)
    b.ji = pyo.Var(b.L, b.T, initialize=0.0)

    # --- series elements with their current as a variable: stiff ones and the source ----------------
    # V_1 - V_2 = Z I (per phase, Z with mutual terms); KCL then takes +I at terminal 1, -I at terminal 2
    stiff = stiff_elements(tb)
    y = tb.y.tolil(copy=True)
    elems: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []  # (nodes 1, nodes 2 or None=EMF, Z)
    for k in stiff:
        at = tb.branch_nodes[k]
        n = len(at) // 2
        ys = np.linalg.inv(tb.branch_z[k])
        prim = np.block([[ys, -ys], [-ys, ys]])
        y[np.ix_(at, at)] = y[np.ix_(at, at)].toarray() - prim
        elems.append((at[:n], at[n:], tb.branch_z[k]))
    if len(tb.source_nodes):
        at = tb.source_nodes
        y[np.ix_(at, at)] = y[np.ix_(at, at)].toarray() - tb.source_y
    y = y.tocsr()
    y.eliminate_zeros()
    b.S = pyo.Set(initialize=[(e, ph) for e, (a1, _, _) in enumerate(elems) for ph in range(len(a1))], dimen=2,
                  ordered=True)
    b.sr = pyo.Var(b.S, b.T, initialize=0.0)
    b.si = pyo.Var(b.S, b.T, initialize=0.0)
    b.stiff = stiff
    src_nodes = [int(n) for n in tb.source_nodes]
    b.SRC = pyo.RangeSet(0, len(src_nodes) - 1) if src_nodes else pyo.Set(initialize=[])
    b.src_nodes = src_nodes
    b.isr = pyo.Var(b.SRC, b.T, initialize=0.0)  # current the source delivers into its bus, per phase
    b.isi = pyo.Var(b.SRC, b.T, initialize=0.0)
    g_data, b_data = y.data.real, y.data.imag
    at_node_delta: dict[int, list[tuple[int, float]]] = {}
    for l, (a, c) in enumerate(zip(delta.get("node_a", []), delta.get("node_b", []))):
        at_node_delta.setdefault(int(a), []).append((l, 1.0))
        at_node_delta.setdefault(int(c), []).append((l, -1.0))
    at_node_series: dict[int, list[tuple[tuple[int, int], float]]] = {}
    for e, (a1, a2, _) in enumerate(elems):
        for ph in range(len(a1)):
            at_node_series.setdefault(int(a1[ph]), []).append(((e, ph), 1.0))
            at_node_series.setdefault(int(a2[ph]), []).append(((e, ph), -1.0))
    src_at = {n: k for k, n in enumerate(src_nodes)}
    sr, si, isr, isi = b.sr, b.si, b.isr, b.isi
    wset = set(w_nodes)
    vr, vi, ir, ii, jr, ji = b.vr, b.vi, b.ir, b.ii, b.jr, b.ji
    kcl_nodes = [n for n in range(n_nodes) if n not in fixed]

    # Python floats and ints throughout the rules: a numpy scalar times a Pyomo variable goes through
    # numpy's ufunc dispatch, which made the 24-hour IEEE 123 build 10 times slower
    rows_kcl = [(y.indices[y.indptr[n]:y.indptr[n + 1]].tolist(), g_data[y.indptr[n]:y.indptr[n + 1]].tolist(),
                 b_data[y.indptr[n]:y.indptr[n + 1]].tolist()) for n in range(n_nodes)]

    def kcl(part: str):
        def rule(_: pyo.Block, n: int, t: int) -> Any:
            cols, g, bb = rows_kcl[n]
            if part == "r":
                expr = sum(g[k] * vr[c, t] - bb[k] * vi[c, t] for k, c in enumerate(cols))
                if n in wset:
                    expr = expr + ir[n, t]
                expr = expr + sum(s * jr[l, t] for l, s in at_node_delta.get(n, ()))
                expr = expr + sum(s * sr[e, t] for e, s in at_node_series.get(n, ()))
                if n in src_at:
                    expr = expr - isr[src_at[n], t]
                return expr == 0.0
            expr = sum(bb[k] * vr[c, t] + g[k] * vi[c, t] for k, c in enumerate(cols))
            if n in wset:
                expr = expr + ii[n, t]
            expr = expr + sum(s * ji[l, t] for l, s in at_node_delta.get(n, ()))
            expr = expr + sum(s * si[e, t] for e, s in at_node_series.get(n, ()))
            if n in src_at:
                expr = expr - isi[src_at[n], t]
            return expr == 0.0
        return rule

    b.KCL = pyo.Set(initialize=kcl_nodes, ordered=True)
    b.kcl_r = pyo.Constraint(b.KCL, b.T, rule=kcl("r"))
    b.kcl_i = pyo.Constraint(b.KCL, b.T, rule=kcl("i"))

    elems_py = [(a1.tolist(), a2.tolist(), [[complex(x) for x in r] for r in z]) for a1, a2, z in elems]

    def drop(part: str):
        def rule(_: pyo.Block, e: int, ph: int, t: int) -> Any:
            a1, a2, z = elems_py[e]
            n1, n2 = a1[ph], a2[ph]
            row = z[ph]
            if part == "r":
                zi_ = sum(row[j].real * sr[e, j, t] - row[j].imag * si[e, j, t] for j in range(len(row)))
                return vr[n1, t] - vr[n2, t] - zi_ == 0.0
            zi_ = sum(row[j].imag * sr[e, j, t] + row[j].real * si[e, j, t] for j in range(len(row)))
            return vi[n1, t] - vi[n2, t] - zi_ == 0.0
        return rule

    b.drop_r = pyo.Constraint(b.S, b.T, rule=drop("r"))
    b.drop_i = pyo.Constraint(b.S, b.T, rule=drop("i"))
    if src_nodes:
        zs = [[complex(x) for x in r] for r in tb.source_z]
        e_src = [complex(x) for x in tb.source_e]

        def source_drop(part: str):
            def rule(_: pyo.Block, k: int, t: int) -> Any:  # E - V = Z_s I
                row = zs[k]
                n = src_nodes[k]
                if part == "r":
                    zi_ = sum(row[j].real * isr[j, t] - row[j].imag * isi[j, t] for j in range(len(row)))
                    return float(e_src[k].real) - vr[n, t] - zi_ == 0.0
                zi_ = sum(row[j].imag * isr[j, t] + row[j].real * isi[j, t] for j in range(len(row)))
                return float(e_src[k].imag) - vi[n, t] - zi_ == 0.0
            return rule

        b.src_r = pyo.Constraint(b.SRC, b.T, rule=source_drop("r"))
        b.src_i = pyo.Constraint(b.SRC, b.T, rule=source_drop("i"))

    # --- wye withdrawals: V conj(I) = S_W(|V|) - S_DER --------------------------------------------------
    t_pos = {t: h for h, t in enumerate(T)}
    wc = {key: arr.tolist() for key, arr in wc.items()}
    inj_py = {int(n): [(float(sh), p_of, q_of) for sh, p_of, q_of in entries] for n, entries in injections.items()}

    def withdrawal(part: str):
        def rule(_: pyo.Block, n: int, t: int) -> Any:
            w, h = w_pos[n], t_pos[t]
            sq = vr[n, t] ** 2 + vi[n, t] ** 2
            kz, ki, kp = (wc[f"{part}z"][w][h], wc[f"{part}i"][w][h], wc[f"{part}p"][w][h])
            rhs = 0.0
            if kz:
                rhs = rhs + kz * sq
            if ki:
                rhs = rhs + ki * pyo.sqrt(sq)
            if kp:
                rhs = rhs + kp
            for share, p_of, q_of in inj_py.get(n, ()):
                rhs = rhs - share * (p_of[t] if part == "p" else q_of[t])
            if part == "p":
                return vr[n, t] * ir[n, t] + vi[n, t] * ii[n, t] == rhs
            return vi[n, t] * ir[n, t] - vr[n, t] * ii[n, t] == rhs
        return rule

    b.p_w = pyo.Constraint(b.W, b.T, rule=withdrawal("p"))
    b.q_w = pyo.Constraint(b.W, b.T, rule=withdrawal("q"))

    # --- delta load elements ----------------------------------------------------------------------------
    if len(delta):
        dz = {l: {k: (int(v) if k in ("node_a", "node_b") else v) for k, v in row.items()}
              for l, row in delta.to_dict("index").items()}
        dc = {key: arr.tolist() for key, arr in zip_coefficients(delta, above_delta).items()}
        dmult = hourly_scale(delta, np.asarray(load_mult, float)).tolist()  # 1 for a Status=fixed load

        def delta_rule(part: str):
            def rule(_: pyo.Block, l: int, t: int) -> Any:
                d = dz[l]
                h = t_pos[t]
                a, c = int(d["node_a"]), int(d["node_b"])
                ur, ui = vr[a, t] - vr[c, t], vi[a, t] - vi[c, t]
                sq = ur**2 + ui**2
                k = float(d["k"])
                z, i, p = dc[f"{part}z"][l][h], dc[f"{part}i"][l][h], dc[f"{part}p"][l][h]
                rhs = 0.0
                mult = dmult[l][h]
                if z:
                    rhs = rhs + mult * z * k**2 * sq
                if i:
                    rhs = rhs + mult * i * k * pyo.sqrt(sq)
                if p:
                    rhs = rhs + mult * p
                if part == "p":
                    return ur * jr[l, t] + ui * ji[l, t] == rhs
                return ui * jr[l, t] - ur * ji[l, t] == rhs
            return rule

        b.p_d = pyo.Constraint(b.L, b.T, rule=delta_rule("p"))
        b.q_d = pyo.Constraint(b.L, b.T, rule=delta_rule("q"))

    # --- voltage limits (squared magnitudes, per node and hour) ---------------------------------------
    lo = np.zeros((n_nodes, n_t))
    hi = np.full((n_nodes, n_t), np.inf)
    lim = np.asarray(list(limit_nodes), int)
    lo[lim] = v_limits[0] ** 2
    hi[lim] = v_limits[1] ** 2
    if len(tb.wye):
        blo, bhi, sw = _bands(tb.wye, above_wye)
        nodes = tb.wye["node"].to_numpy(int)[sw]
        np.maximum.at(lo, nodes, blo[sw])
        np.minimum.at(hi, nodes, bhi[sw])
    b.v_lo, b.v_hi = lo, hi
    lo_py, hi_py = lo.tolist(), np.where(np.isfinite(hi), hi, -1.0).tolist()  # -1: no upper limit
    limited = [(n, t) for n in range(n_nodes) if n not in fixed for h, t in enumerate(T)
               if lo[n, h] > 0 or np.isfinite(hi[n, h])]
    b.VL = pyo.Set(initialize=limited, dimen=2, ordered=True)
    b.v_limit = pyo.Constraint(
        b.VL,
        rule=lambda _, n, t: pyo.inequality(lo_py[n][t_pos[t]], vr[n, t] ** 2 + vi[n, t] ** 2,
                                            hi_py[n][t_pos[t]] if hi_py[n][t_pos[t]] >= 0 else None))
    if len(delta):
        blo, bhi, sw = _bands(delta, above_delta)
        blo, bhi = blo.tolist(), np.where(np.isfinite(bhi), bhi, -1.0).tolist()
        b.DB = pyo.Set(initialize=[int(l) for l in np.flatnonzero(sw)], ordered=True)

        def delta_band(_: pyo.Block, l: int, t: int) -> Any:
            d = dz[l]
            a, c = int(d["node_a"]), int(d["node_b"])
            h = t_pos[t]
            return pyo.inequality(blo[l][h], (vr[a, t] - vr[c, t]) ** 2 + (vi[a, t] - vi[c, t]) ** 2,
                                  bhi[l][h] if bhi[l][h] >= 0 else None)

        b.delta_band = pyo.Constraint(b.DB, b.T, rule=delta_band)
    return b


def initialize_current_injection(b: pyo.Block, tables: PhaseTables, v: np.ndarray, w_current: np.ndarray,
                                 d_current: np.ndarray) -> None:
    """Load a starting point: node voltages (nodes x hours), node withdrawal currents, delta currents; the
    currents of the stiff elements and the source follow from the voltages."""
    T = list(b.T)
    for e, k in enumerate(b.stiff):
        at = tables.branch_nodes[k]
        n = len(at) // 2
        cur = np.linalg.solve(tables.branch_z[k], v[at[:n]] - v[at[n:]])
        for ph in range(n):
            for h, t in enumerate(T):
                b.sr[e, ph, t].set_value(float(cur[ph, h].real), skip_validation=True)
                b.si[e, ph, t].set_value(float(cur[ph, h].imag), skip_validation=True)
    if b.src_nodes:
        cur = tables.source_y @ (tables.source_e[:, None] - v[tables.source_nodes])
        for k in range(len(b.src_nodes)):
            for h, t in enumerate(T):
                b.isr[k, t].set_value(float(cur[k, h].real), skip_validation=True)
                b.isi[k, t].set_value(float(cur[k, h].imag), skip_validation=True)
    for (n, t), var in b.vr.items():
        if not var.fixed:
            k = T.index(t)
            var.set_value(float(v[n, k].real), skip_validation=True)
            b.vi[n, t].set_value(float(v[n, k].imag), skip_validation=True)
    for (n, t), var in b.ir.items():
        k = T.index(t)
        var.set_value(float(w_current[n, k].real), skip_validation=True)
        b.ii[n, t].set_value(float(w_current[n, k].imag), skip_validation=True)
    for (l, t), var in b.jr.items():
        k = T.index(t)
        var.set_value(float(d_current[l, k].real), skip_validation=True)
        b.ji[l, t].set_value(float(d_current[l, k].imag), skip_validation=True)


def node_voltages(b: pyo.Block, n_nodes: int) -> np.ndarray:
    """The solved node voltages, complex, nodes x hours."""
    T = list(b.T)
    v = np.zeros((n_nodes, len(T)), complex)
    for (n, t), var in b.vr.items():
        v[n, T.index(t)] = complex(var.value, b.vi[n, t].value)
    return v


def declare_source(parent: pyo.Block, name: str, *, net: pyo.Block, tables: PhaseTables, reverse_power: bool) -> pyo.Block:
    """Add ``parent.<name>``: Vars ``P[t]``, ``Q[t]`` (pu, sum over phases) = the power the source delivers
    at its bus, ``V conj(I)`` per phase with ``I = Y_s (E - V)`` (Thevenin source) or the current balance at
    the fixed nodes (stiff source). ``reverse_power=False`` keeps ``P >= 0``."""
    tb = tables
    b = pyo.Block(concrete=True)
    parent.add_component(name, b)
    T = list(net.T)
    vr, vi = net.vr, net.vi
    b.P = pyo.Var(net.T, bounds=(None if reverse_power else 0.0, None), initialize=0.0)
    b.Q = pyo.Var(net.T, initialize=0.0)
    y = tb.y.tocsr()  # a stiff source's nodes: no stiff series element may end there (not checked)

    def current(n: int, t: int) -> tuple[Any, Any]:
        """Real and imaginary current the source delivers into node n."""
        if len(tb.source_nodes):
            k = net.src_nodes.index(n)
            return net.isr[k, t], net.isi[k, t]
        lo, hi = y.indptr[n], y.indptr[n + 1]
        cr = sum(y.data[k].real * vr[int(y.indices[k]), t] - y.data[k].imag * vi[int(y.indices[k]), t] for k in range(lo, hi))
        ci = sum(y.data[k].imag * vr[int(y.indices[k]), t] + y.data[k].real * vi[int(y.indices[k]), t] for k in range(lo, hi))
        if n in net.W:
            cr, ci = cr + net.ir[n, t], ci + net.ii[n, t]
        return cr, ci

    nodes = [int(n) for n in (tb.source_nodes if len(tb.source_nodes) else tb.fixed)]
    b.nodes = nodes

    def balance(part: str):
        def rule(blk: pyo.Block, t: int) -> Any:
            total = 0.0
            for n in nodes:
                cr, ci = current(n, t)
                if part == "p":
                    total = total + vr[n, t] * cr + vi[n, t] * ci
                else:
                    total = total + vi[n, t] * cr - vr[n, t] * ci
            return (blk.P[t] if part == "p" else blk.Q[t]) == total
        return rule

    b.p_balance = pyo.Constraint(net.T, rule=balance("p"))
    b.q_balance = pyo.Constraint(net.T, rule=balance("q"))
    return b


def branch_currents(b: pyo.Block, tables: PhaseTables, v: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Every branch's terminal currents (terminal 1's nodes then terminal 2's, x hours, pu; positive into the
    branch) and the source's current into its bus (source nodes x hours): the stiff elements' and the
    source's from their current variables (their voltage differences are too small to divide by Z)."""
    T = list(b.T)
    out = [tables.branch_y[k] @ v[at] for k, at in enumerate(tables.branch_nodes)]
    for e, k in enumerate(b.stiff):
        at = tables.branch_nodes[k]
        n = len(at) // 2
        series = np.array([[complex(b.sr[e, ph, t].value, b.si[e, ph, t].value) for t in T] for ph in range(n)])
        ysh = tables.branch_y[k][:n, :n] - np.linalg.inv(tables.branch_z[k])  # half the line charging
        out[k] = np.vstack([series + ysh @ v[at[:n]], -series + ysh @ v[at[n:]]])
    src = np.array([[complex(b.isr[k, t].value, b.isi[k, t].value) for t in T] for k in range(len(b.src_nodes))])
    return out, src.reshape(len(b.src_nodes), len(T))
