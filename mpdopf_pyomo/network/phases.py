"""A phase-aware :class:`~.model.Network` -> per-node tables in per unit: what the three-phase formulations use.

A *node* is one phase of one bus (``"671.2"``); each node's voltage is in per unit of its bus's
line-to-neutral base, powers of every node on one base ``s_base_kva`` (so that the phase powers add up to
three-phase totals on the case's base) and currents on ``s_base / v_base`` of the node.

Series elements become primitive admittance matrices between their terminal nodes (:func:`primitive`),
built from the network model alone (format-neutral; ``tests/test_three_phase_physics.py`` compares them
with OpenDSS's own ``YPrim``):

* lines, switches, series reactors: ``[[Z^-1 + Y/2, -Z^-1], [-Z^-1, Z^-1 + Y/2]]`` with the full phase
  impedance matrix Z (mutual terms kept) and the total shunt admittance Y (pi model);
* transformers and regulators, per phase winding k: an ideal transformer of turns ratio N_k followed by
  the winding's series impedance referred to winding 2, ``y [[1/N^2, -1/N], [-1/N, 1]]`` between the
  winding voltages, which are phase-to-ground for a grounded wye winding and phase k to phase k-1 for
  a delta winding (OpenDSS's ANSI "lag" convention: the low side lags a delta high side by 30 degrees);
  the anti-floating reactance ``ppm_antifloat`` as OpenDSS adds it (``-j ppm x VA/V^2`` to ground on each
  terminal conductor, half of it on a wye winding). Supported connections: wye-wye
  (grounded), delta-wye, wye-delta, delta-delta and banks of single-phase units (regulators) with
  per-phase taps;
* centre-tap (split-phase) service transformers wired X1-N, N-X2: three windings over the primary node,
  X1 and X2 (:func:`center_tap_primitive`); their secondary nodes are on the 120 V base, the triplex
  secondaries ordinary two-conductor lines. Other wirings are refused (:func:`unsupported`).

A node of a reached bus that no closed element connects (only an open switch reaches it) is left out.

Shunt capacitors and reactors are constant admittances (wye: phase to ground, delta: phase to phase);
the source is its Thevenin equivalent (fixed internal voltages behind ``Source.z_ohm``) or, without an
impedance, fixed voltages at its bus. Loads stay as tables (their power depends on the voltage and the
hour): wye elements phase to ground, delta elements phase to phase (k to k+1), each with its nominal P,
Q per element (pu), ZIP fractions and the ratio of the node base to the load's rated element voltage;
a load of ``Status=fixed`` is a ``fixed`` row (not scaled by ``load_mult``, as in OpenDSS).
The network's own Generators (fixed kW and kvar, equal on their phases; e.g. capacitors written as
Generators) are wye rows with negative P and Q, ``fixed`` (not scaled by ``load_mult``, as in OpenDSS) and
without a voltage band (assumed to hold their power over the plan's voltages, as a model=1 Generator does
inside its vminpu..vmaxpu).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401  (sp.linalg)

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Network

_SQRT3 = math.sqrt(3.0)
_SHIFT = {1: 0.0, 2: -120.0, 3: 120.0}


@dataclass
class PhaseTables:
    """Per-node per-unit tables of a network (see the module docstring).

    * ``nodes``: node names ``bus.phase``; ``node_bus``, ``node_phase``, ``v_base_kv`` (line-to-neutral)
    * ``y``: the nodal admittance matrix (complex, sparse CSR) of every series element, shunt and the
      source impedance;
    * ``fixed``: indices of nodes whose voltage is fixed (a stiff source), ``fixed_v`` their voltages;
    * ``source_nodes``, ``source_e``, ``source_y``: the source bus's nodes, the internal voltages and the
      source admittance (pu), so that the source injects ``source_y (source_e - V)``; empty for a stiff source;
    * ``wye``: one row per wye load element: ``node``, ``p``, ``q`` (nominal pu at rated voltage), ``zp``,
      ``zi``, ``zpp``, ``qz``, ``qi``, ``qp``, ``k`` (node base / element rated voltage), ``load``;
    * ``delta``: the same per delta element with ``node_a``, ``node_b`` (voltage V_a - V_b);
    * ``branches``: one row per series element: ``name``, ``kind``, ``bus1``, ``bus2``; ``branch_nodes``
      and ``branch_y`` (per-unit primitive over those nodes, terminal 1 then 2) in the same order;
    * ``branch_z``: per branch the series impedance (pu, phases x phases) of a line, switch or reactor
      (None for transformers): the three-phase formulation writes very stiff elements (switches, the
      source) with their current as a variable, ``V_1 - V_2 = Z I``, which stays well conditioned where
      ``I = Z^-1 (V_1 - V_2)`` would have admittances of 1e4 pu; ``source_z`` the source's (pu);
    * ``y_shunt``: the shunt part of ``y`` alone (capacitors, reactors, the zero-sequence references);
    * ``notes``: what was left out (unreached buses, open elements).
    """

    nodes: list[str]
    node_bus: np.ndarray
    node_phase: np.ndarray
    v_base_kv: np.ndarray
    y: sp.csr_matrix
    fixed: np.ndarray
    fixed_v: np.ndarray
    source_bus: str
    source_nodes: np.ndarray
    source_e: np.ndarray
    source_y: np.ndarray
    wye: pd.DataFrame
    delta: pd.DataFrame
    branches: pd.DataFrame
    branch_nodes: list[np.ndarray]
    branch_y: list[np.ndarray]
    branch_z: list[np.ndarray | None]
    y_shunt: sp.csr_matrix
    source_z: np.ndarray
    s_base_kva: float
    notes: list[str]

    @property
    def index(self) -> dict[str, int]:
        return {n: k for k, n in enumerate(self.nodes)}


def unsupported(net: Network) -> list[str]:
    """What the three-phase tables cannot represent, one phrase each (empty: everything is supported)."""
    out = []
    ct = [b.name for b in net.branches if b.center_tap and not b.normally_open and b.ct_zsc_ohm is None]
    if ct:
        out.append(f"{len(ct)} centre-tap service transformer(s) not wired X1-N, N-X2 with equal kVAs and "
                   f"secondary taps ({', '.join(ct[:3])}{', ...' if len(ct) > 3 else ''})")
    odd = [b.name for b in net.branches if b.kind in ("transformer", "regulator") and not b.normally_open
           and not b.center_tap and b.phases2 is not None and len(b.phases2) != len(b.phases)]
    if odd:
        out.append(f"{len(odd)} transformer(s) with different phase counts on their two sides ({', '.join(odd[:3])})")
    return out


def _winding_incidence(n: int, delta: bool) -> np.ndarray:
    """Rows: the n winding voltages in terms of the terminal's n phase nodes (wye: to ground; delta:
    phase k minus phase k-1)."""
    c = np.eye(n, dtype=complex)
    if delta:
        if n != 3:
            raise CaseError("a delta winding needs three phases")
        c = c - np.roll(np.eye(n), -1, axis=1)  # row k: e_k - e_{k-1}
    return c


def center_tap_primitive(b: Branch, kv_ln1: float, kv_ln2: float) -> np.ndarray:
    """Primitive admittance (siemens, 3 x 3 over the primary node, X1 and X2) of a single-phase centre-tap
    transformer: three windings (H: primary phase to ground; winding 2: X1 to ground; winding 3: ground
    to X2, so that X2 is in phase opposition to X1) coupled as OpenDSS couples them: over the winding
    voltages referred to the half winding, ``A^T ZB^-1 A`` with ``A = [[-1, 1, 0], [-1, 0, 1]]`` and
    ``ZB = [[Z_HL, Zm], [Zm, Z_HT]]``, ``Zm = (Z_HL + Z_HT - Z_LT) / 2``; the magnetising current and
    no-load loss (%imag, %noloadloss of kVA at the half winding's tapped voltage) from X1 to ground, where
    YPrim has them; the anti-floating ppm on each winding's conductors (half on a winding's first
    conductor, whole on its second: winding 3's second conductor is X2)."""
    z_hl, z_ht, z_lt = b.ct_zsc_ohm
    zm = (z_hl + z_ht - z_lt) / 2.0
    zb = np.array([[z_hl, zm], [zm, z_ht]], complex)
    a = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]], complex)
    turns = float(np.asarray(b.tap, float)[0]) * kv_ln1 / kv_ln2  # primary : half-winding voltage
    refer = np.diag([1.0 / turns, 1.0, 1.0])  # winding voltages (H, X1-N, N-X2) -> referred to the half winding
    polarity = np.diag([1.0, 1.0, -1.0])  # the winding voltages from the node voltages: N-X2 = -V_X2
    c = refer @ polarity
    y = c.T @ a.T @ np.linalg.inv(zb) @ a @ c
    va = b.kva * 1000.0
    y[1, 1] += (b.noload_pct - 1j * b.imag_pct) / 100.0 * va / (b.ct_kv * 1000.0) ** 2
    if b.ppm_antifloat:
        f = -1j * b.ppm_antifloat * 1e-6 * va
        y[np.diag_indices(3)] += f * np.array([0.5 / (kv_ln1 * 1e3) ** 2, 0.5 / (kv_ln2 * 1e3) ** 2,
                                               1.0 / (kv_ln2 * 1e3) ** 2])
    return y


def primitive(b: Branch, kv_ln1: float, kv_ln2: float) -> np.ndarray:
    """Primitive admittance (siemens, complex) of a series element over its terminal phase nodes
    (bus1's ``phases`` then bus2's ``phases2 or phases``), ground and neutral nodes eliminated (grounded)."""
    n = len(b.phases)
    if b.kind in ("line", "switch", "reactor"):
        ys = np.linalg.inv(np.asarray(b.z_ohm, complex))
        ysh = np.asarray(b.y_shunt_s, complex) / 2.0
        return np.block([[ys + ysh, -ys], [-ys, ys + ysh]])
    if b.center_tap:
        return center_tap_primitive(b, kv_ln1, kv_ln2)
    d1, d2 = (c == "delta" for c in b.conn)
    ratio_ln = np.asarray(b.tap, float) * kv_ln1 / kv_ln2  # LN-equivalent ratio of the two buses' voltages
    turns = ratio_ln * (_SQRT3 if d1 else 1.0) / (_SQRT3 if d2 else 1.0)
    z_w2 = np.diag(np.asarray(b.z_ohm, complex)) * (3.0 if d2 else 1.0)
    yw = np.zeros((2 * n, 2 * n), complex)
    for k in range(n):
        y = 1.0 / z_w2[k]
        yw[k, k] = y / turns[k] ** 2
        yw[k, n + k] = yw[n + k, k] = -y / turns[k]
        yw[n + k, n + k] = y
    c = np.zeros((2 * n, 2 * n), complex)
    c[:n, :n] = _winding_incidence(n, d1)
    c[n:, n:] = _winding_incidence(n, d2)
    y_term = c.T @ yw @ c
    if b.ppm_antifloat and b.kva > 0:
        # OpenDSS's anti-floating reactance on each terminal conductor's self-admittance (to ground, no
        # mutual terms): -j ppm x (VA per phase) / V_winding^2, halved on a wye winding (measured on YPrim)
        va = b.kva * 1000.0 / n
        for k0, kv, d in ((0, kv_ln1, d1), (n, kv_ln2, d2)):
            v_w = kv * 1000.0 * (_SQRT3 if d else 1.0)
            y_term[np.arange(k0, k0 + n), np.arange(k0, k0 + n)] += (
                -1j * b.ppm_antifloat * 1e-6 * va / v_w**2 * (1.0 if d else 0.5))
    return y_term


def _reached(net: Network, closed: list[Branch]) -> set[str]:
    adj: dict[str, list[str]] = {}
    for b in closed:
        adj.setdefault(b.bus1, []).append(b.bus2)
        adj.setdefault(b.bus2, []).append(b.bus1)
    seen = {net.source.bus}
    queue = deque(seen)
    while queue:
        for other in adj.get(queue.popleft(), []):
            if other not in seen:
                seen.add(other)
                queue.append(other)
    return seen


def _floating_deltas(net: Network, closed: list[Branch], reached: set[str]) -> list[str]:
    """Secondary buses of delta-secondary transformers whose part of the network (reached through lines,
    switches and reactors only) has nothing connected to ground: no wye load or shunt, no wye winding, no
    line charging. Their zero-sequence voltage is then undetermined (OpenDSS holds it by its anti-floating
    reactance, ~1e-9 pu) and is 0 in the physics; see :func:`phase_tables`."""
    out = []
    series = [b for b in closed if b.kind in ("line", "switch", "reactor")]
    grounded = {ld.bus for ld in net.loads if ld.conn != "delta"} | {s.bus for s in net.shunts if s.conn != "delta"}
    for b in closed:
        if b.kind in ("transformer", "regulator") and b.conn[1] == "wye":
            grounded.add(b.bus2)
        if b.kind in ("transformer", "regulator") and b.conn[0] == "wye":
            grounded.add(b.bus1)
        if b.kind == "line" and np.abs(np.asarray(b.y_shunt_s)).max(initial=0.0) > 0:
            grounded |= {b.bus1, b.bus2}
    for b in closed:
        if b.kind not in ("transformer", "regulator") or b.conn[1] != "delta" or b.bus2 not in reached:
            continue
        seen, queue = {b.bus2}, deque([b.bus2])
        while queue:
            bus = queue.popleft()
            for e in series:
                for u, w in ((e.bus1, e.bus2), (e.bus2, e.bus1)):
                    if u == bus and w not in seen:
                        seen.add(w)
                        queue.append(w)
        if not seen & grounded and len(net.buses[b.bus2].phases) == 3:
            out.append(b.bus2)
    return out


def phase_tables(net: Network, s_base_kva: float, source_pu: float | None = None) -> PhaseTables:
    """Build the per-node tables of ``net`` on the power base ``s_base_kva`` (see :class:`PhaseTables`);
    ``source_pu`` replaces the source's own voltage (pu of its base kV; a case's ``v_sub_pu``)."""
    problems = unsupported(net)
    if problems:
        raise CaseError(f"{net.path}: the three-phase model cannot represent " + "; ".join(problems))
    notes = []
    closed = [b for b in net.branches if not b.normally_open]
    if len(closed) < len(net.branches):
        notes.append(f"{len(net.branches) - len(closed)} normally-open branch(es) left out")
    reached = _reached(net, closed)
    buses = [b for b in net.buses.values() if b.name in reached]
    if len(buses) < len(net.buses):
        notes.append(f"{len(net.buses) - len(buses)} bus(es) not reached from the source left out")
    # a phase of a reached bus that no closed element connects (only an open switch reaches it: two on the
    # 9500) has no equation; it is left out rather than making the admittance matrix singular
    live = {(net.source.bus, p) for p in (1, 2, 3)}
    for b in closed:
        if b.bus1 in reached:
            live |= {(b.bus1, p) for p in b.phases} | {(b.bus2, p) for p in (b.phases2 or b.phases)}
    dead = [f"{bus.name}.{ph}" for bus in buses for ph in bus.phases if (bus.name, ph) not in live]
    if dead:
        notes.append(f"{len(dead)} node(s) that only open elements connect left out: {', '.join(dead[:3])}"
                     f"{', ...' if len(dead) > 3 else ''}")
    nodes, node_bus, node_phase, vb = [], [], [], []
    for bus in buses:
        for ph in bus.phases:
            if (bus.name, ph) not in live:
                continue
            nodes.append(f"{bus.name}.{ph}")
            node_bus.append(bus.name)
            node_phase.append(ph)
            vb.append(bus.kv_ln)
    index = {n: k for k, n in enumerate(nodes)}
    vb_arr = np.asarray(vb, float)
    sb = s_base_kva * 1000.0
    n_nodes = len(nodes)

    def idx(bus: str, phases: tuple[int, ...]) -> np.ndarray:
        try:
            return np.array([index[f"{bus}.{p}"] for p in phases], dtype=int)
        except KeyError as exc:
            raise CaseError(f"{net.path}: node {exc.args[0]} is used by an element but the bus has no such phase") from None

    def to_pu(y: np.ndarray, at: np.ndarray) -> np.ndarray:
        v = vb_arr[at] * 1000.0
        return y * np.outer(v, v) / sb

    rows, cols, vals = [], [], []
    sh_rows, sh_cols, sh_vals = [], [], []

    def stamp(at: np.ndarray, y_pu: np.ndarray, shunt: bool = False) -> None:
        r, c = np.meshgrid(at, at, indexing="ij")
        for lst, x in zip((rows, cols, vals), (r.ravel(), c.ravel(), y_pu.ravel())):
            lst.append(x)
        if shunt:
            for lst, x in zip((sh_rows, sh_cols, sh_vals), (r.ravel(), c.ravel(), y_pu.ravel())):
                lst.append(x)

    br_rows, br_nodes, br_y, br_z = [], [], [], []
    for b in closed:
        if b.bus1 not in reached:
            continue
        at = np.concatenate([idx(b.bus1, b.phases), idx(b.bus2, b.phases2 or b.phases)])
        y_pu = to_pu(primitive(b, net.buses[b.bus1].kv_ln, net.buses[b.bus2].kv_ln), at)
        stamp(at, y_pu)
        br_rows.append((b.name, b.kind, b.bus1, b.bus2))
        br_nodes.append(at)
        br_y.append(y_pu)
        if b.kind in ("line", "switch", "reactor"):
            n = len(b.phases)
            zb = vb_arr[at[:n]] * vb_arr[at[n:]] * 1e6 / sb  # ohm base of each phase pair (both ends' bases)
            br_z.append(np.asarray(b.z_ohm, complex) / np.sqrt(np.outer(zb, zb)))
        else:
            br_z.append(None)
    for s in net.shunts:
        if s.bus not in reached or not s.phases:
            continue
        at = idx(s.bus, s.phases)
        n = len(s.phases)
        if s.conn == "delta" and n in (2, 3):  # elements phase to phase: k to k-1 (three) or across the pair
            n_el = 3 if n == 3 else 1
            b_el = s.kvar * 1000.0 / n_el / (s.kv_ln_rated * _SQRT3 * 1000.0) ** 2
            c = _winding_incidence(3, True) if n == 3 else np.array([[1.0, -1.0]], complex)
            y = c.T @ (np.eye(n_el) * 1j * b_el) @ c
        else:
            b_el = s.kvar * 1000.0 / n / (s.kv_ln_rated * 1000.0) ** 2
            y = np.eye(n) * 1j * b_el
        stamp(at, to_pu(y, at), shunt=True)

    src = net.source
    src_at = idx(src.bus, tuple(p for p in (1, 2, 3) if f"{src.bus}.{p}" in index))
    pu = src.pu if source_pu is None else float(source_pu)
    e = np.array([pu * (src.kv_ll / _SQRT3) / net.buses[src.bus].kv_ln
                  * np.exp(1j * math.radians(src.angle_deg + _SHIFT[int(node_phase[k])])) for k in src_at])
    if src.z_ohm is not None and len(src_at) == 3:
        ys = to_pu(np.linalg.inv(np.asarray(src.z_ohm, complex)), src_at)
        stamp(src_at, ys)
        fixed, fixed_v = np.zeros(0, int), np.zeros(0, complex)
    else:
        ys = np.zeros((0, 0), complex)
        fixed, fixed_v = src_at, e
    floating = _floating_deltas(net, closed, reached)
    for bus in floating:
        at = idx(bus, net.buses[bus].phases)
        stamp(at, np.full((len(at), len(at)), 1.0 / len(at), complex), shunt=True)  # zero-sequence only: I = (V_a+V_b+V_c)/3
    if floating:
        notes.append(f"{len(floating)} ungrounded delta secondary(ies) with nothing grounded behind them: their "
                     f"zero-sequence voltage (0: no zero-sequence current can flow) is held by a zero-sequence-only "
                     f"reference ({', '.join(floating[:3])})")
    y_bus = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n_nodes, n_nodes))
    y_bus.sum_duplicates()
    y_sh = (sp.csr_matrix((np.concatenate(sh_vals), (np.concatenate(sh_rows), np.concatenate(sh_cols))),
                          shape=(n_nodes, n_nodes)) if sh_vals else sp.csr_matrix((n_nodes, n_nodes), dtype=complex))
    y_sh.sum_duplicates()

    wye, delta = [], []
    for ld in net.loads:
        if ld.bus not in reached or not ld.phases:
            continue
        at = idx(ld.bus, ld.phases)
        n = len(ld.phases)
        kv_bus = net.buses[ld.bus].kv_ln
        zp, zi, zpp, qz, qi, qp = ld.zip
        if ld.conn == "delta" and n >= 2:
            pairs = [(0, 1)] if n == 2 else [(0, 1), (1, 2), (2, 0)]
            v_el = (ld.kv_rated if ld.kv_rated > 0 else kv_bus * _SQRT3)
            for a, c in pairs:
                delta.append(dict(load=ld.name, node_a=at[a], node_b=at[c], p=ld.kw / len(pairs) / s_base_kva,
                                  q=ld.kvar / len(pairs) / s_base_kva, zp=zp, zi=zi, zpp=zpp, qz=qz, qi=qi, qp=qp,
                                  k=kv_bus / v_el, vmin=ld.vminpu, vmax=ld.vmaxpu, fixed=ld.fixed))
        else:
            v_el = (ld.kv_rated / (_SQRT3 if n > 1 else 1.0)) if ld.kv_rated > 0 else kv_bus
            for a in range(n):
                wye.append(dict(load=ld.name, node=at[a], p=ld.kw / n / s_base_kva, q=ld.kvar / n / s_base_kva,
                                zp=zp, zi=zi, zpp=zpp, qz=qz, qi=qi, qp=qp, k=kv_bus / v_el,
                                vmin=ld.vminpu, vmax=ld.vmaxpu, fixed=ld.fixed))
    for d in net.ders:  # the network's own fixed generators (e.g. capacitors written as Generators): constant
        if d.kind != "generator" or d.bus not in reached or not d.phases:  # P and Q, not scaled by load_mult
            continue
        at = idx(d.bus, d.phases)
        for a in at:
            wye.append(dict(load=f"generator.{d.name}", node=a, p=-d.kw / len(at) / s_base_kva,
                            q=-d.kvar / len(at) / s_base_kva, zp=0.0, zi=0.0, zpp=1.0, qz=0.0, qi=0.0, qp=1.0,
                            k=1.0, vmin=0.0, vmax=math.inf, fixed=True))
    cols_w = ["load", "node", "p", "q", "zp", "zi", "zpp", "qz", "qi", "qp", "k", "vmin", "vmax", "fixed"]
    cols_d = ["load", "node_a", "node_b", "p", "q", "zp", "zi", "zpp", "qz", "qi", "qp", "k", "vmin", "vmax", "fixed"]
    for row in wye + delta:
        row.setdefault("fixed", False)
    return PhaseTables(
        nodes=nodes, node_bus=np.asarray(node_bus, object), node_phase=np.asarray(node_phase, int), v_base_kv=vb_arr,
        y=y_bus, fixed=fixed, fixed_v=fixed_v, source_bus=src.bus,
        source_nodes=src_at if len(fixed) == 0 else np.zeros(0, int),
        source_e=e if len(fixed) == 0 else np.zeros(0, complex), source_y=ys,
        wye=pd.DataFrame(wye, columns=cols_w), delta=pd.DataFrame(delta, columns=cols_d),
        branches=pd.DataFrame(br_rows, columns=["name", "kind", "bus1", "bus2"]), branch_nodes=br_nodes,
        branch_y=br_y, branch_z=br_z, y_shunt=y_sh,
        source_z=np.linalg.inv(ys) if len(ys) else np.zeros((0, 0), complex), s_base_kva=s_base_kva, notes=notes)


def zip_coefficients(tab: pd.DataFrame, above: np.ndarray) -> dict[str, np.ndarray]:
    """Per load element and hour (elements x hours) the coefficients of its power on the squared element
    voltage ``w = (k |u|)^2`` (``*z``), on ``sqrt(w)`` (``*i``) and constant (``*p``), P and Q, per unit at
    load multiplier 1. Where ``above`` (elements x hours, bool) the element is above its ``vmax``: OpenDSS
    then draws its constant-power part as the impedance that gives its power at vmax
    (``P0 p w / vmax^2``) and its constant-current part likewise (``P0 i w / vmax``), so both become
    impedance terms."""
    out = {}
    vmax = tab["vmax"].to_numpy(float)[:, None]
    for s0, z, i, p, key in (("p", "zp", "zi", "zpp", "p"), ("q", "qz", "qi", "qp", "q")):
        base = tab[s0].to_numpy(float)[:, None]
        cz = base * tab[z].to_numpy(float)[:, None] * np.ones_like(above, float)
        ci = base * tab[i].to_numpy(float)[:, None] * np.ones_like(above, float)
        cp = base * tab[p].to_numpy(float)[:, None] * np.ones_like(above, float)
        cz = cz + np.where(above, cp / vmax**2 + ci / vmax, 0.0)
        out[f"{key}z"], out[f"{key}i"], out[f"{key}p"] = cz, np.where(above, 0.0, ci), np.where(above, 0.0, cp)
    return out


def above_band(tab: pd.DataFrame, u: np.ndarray) -> np.ndarray:
    """Which load elements (rows of ``tab``) are above their ``vmax`` at element voltages ``u`` (x hours);
    pure impedances never switch."""
    mag = np.abs(u) * tab["k"].to_numpy()[:, None]
    switching = ((tab["zp"] < 1.0 - 1e-12) | (tab["qz"] < 1.0 - 1e-12)).to_numpy()[:, None]
    return switching & (mag > tab["vmax"].to_numpy(float)[:, None])


def hourly_scale(tab: pd.DataFrame, load_mult: np.ndarray) -> np.ndarray:
    """The multiplier of each element's power per hour (elements x hours): the hour's ``load_mult`` for a
    load, 1 for a ``fixed`` row (a generator of the network, which OpenDSS's load multiplier leaves alone)."""
    lm = np.asarray(load_mult, float)[None, :]
    return np.where(tab["fixed"].to_numpy(bool)[:, None], 1.0, lm)


def load_power(tab: pd.DataFrame, u: np.ndarray, load_mult: np.ndarray) -> np.ndarray:
    """Complex power (pu, elements x hours) of load elements ``tab`` (``wye`` or ``delta`` rows) at element
    voltages ``u`` (elements x hours) and hourly ``load_mult``: the ZIP of each element, as OpenDSS draws it
    (above its ``vmax`` a constant-power or constant-current load is an impedance: :func:`zip_coefficients`;
    below ``vmin`` OpenDSS blends towards an impedance, which is not modelled: the OPF keeps loads above
    their vmin)."""
    lm = hourly_scale(tab, load_mult)
    w = (np.abs(u) * tab["k"].to_numpy()[:, None]) ** 2
    c = zip_coefficients(tab, above_band(tab, u))
    p = c["pz"] * w + c["pi"] * np.sqrt(w) + c["pp"]
    q = c["qz"] * w + c["qi"] * np.sqrt(w) + c["qp"]
    return (p + 1j * q) * lm


def load_currents(t: PhaseTables, v: np.ndarray, load_mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loads' currents at node voltages ``v`` (nodes x hours): the wye loads' current per node (nodes x
    hours) and each delta element's current from node_a to node_b (elements x hours)."""
    wye = np.zeros_like(v)
    if len(t.wye):
        at = t.wye["node"].to_numpy(int)
        np.add.at(wye, at, np.conj(load_power(t.wye, v[at], load_mult) / v[at]))
    delta = np.zeros((len(t.delta), v.shape[1]), complex)
    if len(t.delta):
        u = v[t.delta["node_a"].to_numpy(int)] - v[t.delta["node_b"].to_numpy(int)]
        delta = np.conj(load_power(t.delta, u, load_mult) / u)
    return wye, delta


def withdrawal_current(t: PhaseTables, v: np.ndarray, load_mult: np.ndarray,
                       p_inj: np.ndarray | None = None, q_inj: np.ndarray | None = None) -> np.ndarray:
    """Current drawn at every node (pu, nodes x hours) by the loads at voltages ``v`` (nodes x hours) and
    hourly ``load_mult``, minus the constant-power injections ``p_inj + j q_inj`` (nodes x hours)."""
    out, delta = load_currents(t, v, load_mult)
    if len(t.delta):
        np.add.at(out, t.delta["node_a"].to_numpy(int), delta)
        np.add.at(out, t.delta["node_b"].to_numpy(int), -delta)
    if p_inj is not None:
        out -= np.conj((p_inj + 1j * (q_inj if q_inj is not None else 0.0)) / v)
    return out


def initial_voltages(t: PhaseTables, n_hours: int) -> np.ndarray:
    """No-load voltages (nodes x hours): the network's own response to the source, which carries every
    transformer's phase shift and ratio (one sparse solve)."""
    free = np.setdiff1d(np.arange(len(t.nodes)), t.fixed)
    v = np.zeros((len(t.nodes), n_hours), complex)
    rhs = np.zeros(len(t.nodes), complex)
    if len(t.source_nodes):
        rhs[t.source_nodes] = t.source_y @ t.source_e
    if len(t.fixed):
        v[t.fixed] = t.fixed_v[:, None]
        rhs = rhs - t.y[:, t.fixed] @ t.fixed_v
    yff = t.y[free][:, free].tocsc()
    # a feeder's no-load admittance can be singular (a lateral without charging behind an ideal tap): a
    # tiny shunt on every node keeps it solvable and moves the voltages by ~1e-9
    yff = yff + sp.identity(len(free), format="csc") * 1e-9
    v[free] = sp.linalg.spsolve(yff, rhs[free])[:, None]
    return v


def _load_admittance(t: PhaseTables) -> sp.csr_matrix:
    """Each load's admittance at its rated voltage and load multiplier 1 (pu, nodes x nodes), the
    conductance and susceptance that draw its nominal P and Q at 1 pu."""
    n = len(t.nodes)
    rows, cols, vals = [], [], []
    wye = t.wye[~t.wye["fixed"].to_numpy(bool)]  # generators: compensation currents only
    if len(wye):
        at = wye["node"].to_numpy(int)
        y = np.conj(wye["p"].to_numpy() + 1j * wye["q"].to_numpy()) * wye["k"].to_numpy() ** 2
        rows += [at]
        cols += [at]
        vals += [y]
    if len(t.delta):
        a, b = t.delta["node_a"].to_numpy(int), t.delta["node_b"].to_numpy(int)
        y = np.conj(t.delta["p"].to_numpy() + 1j * t.delta["q"].to_numpy()) * t.delta["k"].to_numpy() ** 2
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        vals += [y, y, -y, -y]
    if not rows:
        return sp.csr_matrix((n, n), dtype=complex)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def power_flow(t: PhaseTables, load_mult: np.ndarray, p_inj: np.ndarray | None = None,
               q_inj: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 200) -> tuple[np.ndarray, int]:
    """Node voltages (nodes x hours, pu) of a power flow, solved as OpenDSS's ``normal`` method does:
    each load's nominal admittance inside the matrix (one LU per hour) and the rest of its current (and the
    constant-power injections ``p_inj + j q_inj``) as compensation currents, iterated to a fixed point.
    Returns the voltages and the most iterations an hour used; raises :class:`CaseError` when it does not
    converge (the starting point of the OPF and the tests use it)."""
    import scipy.sparse.linalg as spla

    load_mult = np.asarray(load_mult, float)
    n_hours = load_mult.size
    free = np.setdiff1d(np.arange(len(t.nodes)), t.fixed)
    v = initial_voltages(t, n_hours)
    rhs0 = np.zeros(len(t.nodes), complex)
    if len(t.source_nodes):
        rhs0[t.source_nodes] = t.source_y @ t.source_e
    y_load = _load_admittance(t)
    if len(t.fixed):
        rhs0 = rhs0 - (t.y + y_load)[:, t.fixed] @ t.fixed_v  # load admittance at a fixed node: no effect on V
    worst = 0
    for h in range(n_hours):
        y_h = (t.y + y_load * load_mult[h]).tocsr()
        lu = spla.splu(y_h[free][:, free].tocsc())
        pi = None if p_inj is None else p_inj[:, h:h + 1]
        qi = None if q_inj is None else q_inj[:, h:h + 1]
        for it in range(1, max_iter + 1):
            vh = v[:, h:h + 1]
            comp = withdrawal_current(t, vh, load_mult[h:h + 1], pi, qi)[:, 0] - (y_load * load_mult[h]) @ vh[:, 0]
            new = lu.solve(np.ascontiguousarray((rhs0 - comp)[free]))
            step = np.abs(new - v[free, h]).max()
            v[free, h] = new
            if step < tol:
                break
        else:
            raise CaseError(f"the three-phase power flow of hour {h + 1} did not converge in {max_iter} iterations "
                            f"(last step {step:.1e} pu)")
        worst = max(worst, it)
    return v, worst
