"""A phase-aware :class:`Network` -> the balanced single-phase equivalent the formulations consume.

:func:`reduce_balanced` returns :class:`BalancedTables` (per unit on ``s_kva`` and each bus's own voltage
base; its columns are listed on the class) and a :class:`ConversionReport` that lists every approximation:
what, how many elements, how much load they carry and the largest effect. Nothing is approximated silently;
only what cannot be converted at all is an error, and then every such element is named at once.

The rules (each bus of the equivalent stands for the mean of its phases on a three-phase bus, and for the
voltage of its own phase(s) at the end of a one- or two-phase lateral):

* **Three-phase series elements** (lines, reactors, transformers, regulators, closed switches): the
  positive-sequence impedance ``z1 = (A^-1 Z A)[1, 1]``, which for a symmetric matrix is mean self minus
  mean mutual. Exact for transposed lines and lines given by sequence data; for an untransposed line the
  coupling between the sequences is dropped (reported with the largest ``max |Z_ij, i != j| / |z1|`` of
  the sequence matrix).
* **One- and two-phase branches** (laterals): the balanced model spreads the lateral's power over three
  phases, so each phase of the equivalent carries 1/3 of it, while the real lateral carries 1/n per phase.
  The equivalent impedance is ``z_eq = (3 / n) z_ph``, ``z_ph`` the phase impedance seen by currents of
  positive-sequence rotation (``z_self`` for one phase, ``z_self - z_mutual / 2`` on average for two).
  Then ``z_eq x (S / 3)`` equals the real drop ``z_ph x (S / n)`` on the lateral's phases and the
  lateral's losses ``n |S / n|^2 r_ph = 3 |S / 3|^2 r_eq`` are kept; what is lost is the unbalance the
  lateral's current causes upstream on the three-phase backbone (reported: count, load carried, the
  lateral with the largest load). Shunt admittance of such a branch: ``(n / 3) y_ph`` (total charging kept).
* **Line charging**: half of the positive-sequence susceptance to each end bus's ``b_shunt`` (exact in the
  balanced model; a line's shunt conductance cannot be represented -> error).
* **Transformer magnetising current and no-load loss** (OpenDSS ``%imag``, ``%noloadloss``): a
  constant-impedance shunt at the secondary bus, ``-%imag/100 x kVA`` into ``b_shunt`` and
  ``%noloadloss/100 x kVA`` into ``g_shunt`` (a note in the report gives the totals).
* **Transformers and regulators**: series impedance referred to the to-bus base (the model's convention)
  and the tap ratio; per-phase taps that differ (regulators of a three single-phase bank) -> their mean,
  reported with the largest spread. A delta-wye phase shift does not matter to the magnitudes.
* **Closed switches**: kept as branches with their own impedance, raised to at least
  :data:`SWITCH_MIN_OHM` (resistance and reactance each) so that no branch has a zero impedance
  (the hand-made ieee123 model uses 1e-6 ohm connectors); reported.
* **Normally-open branches** (ties, open switches): dropped, reported.
* **Shunt capacitors and reactors**: ``b_shunt = kvar x (V_base / V_rated)^2 / s_kva`` at the bus; one- or
  two-phase units are spread over three phases (total kvar kept, reported).
* **Loads**: total kW and kvar at the bus, ZIP fractions load-weighted per bus (``p_zip_*`` by |kW|,
  ``q_zip_*`` by |kvar|). A balanced three-phase load (wye or delta) is exact; one- and two-phase loads
  (wye or delta) are spread over three phases with their total P and Q (reported).
* **Centre-tap service transformers and triplex secondaries** (8500, 9500): each service is kept as a
  balanced branch to a bus holding its load. The secondary's equivalent base is the whole 240 V (twice the
  120 V half-winding base), so a load across both halves is one single-phase load: the transformer's
  impedance is the one such a load sees (``Branch.z_ohm`` x 4 on the 240 V base), a two-conductor triplex
  line its loop impedance ``Z11 + Z22 - Z12 - Z21`` (admittance ``(Y11 + Y22 - Y12 - Y21) / 4``), a
  one-conductor secondary line ``4 Z11``; then the ``n = 1`` lateral rule (``z_eq = 3 z``). A secondary
  bus without load, shunt or DER between one incoming and one outgoing branch is merged away (the service
  transformer and its triplex drop in series: one branch primary -> load bus). Lost: the unbalance between
  the two 120 V halves (the neutral current), reported with the services' count and load.
* **DERs** (PV, battery, generator) are handed back in ``BalancedTables.ders`` in per unit; one- and
  two-phase units are spread (reported). Generators (OpenDSS ``Generator``, MATPOWER non-slack gens) are
  fixed injections at their (kW, kvar): they also fill the bus columns ``p_fixed`` / ``q_fixed``, which the
  formulations subtract from the bus's withdrawal unscaled (not a load; a note in the report).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Bus, Der, Load, Network, Shunt, Source

#: Problems named one by one in a conversion error (all are counted; a line stays readable).
MAX_LISTED = 12

#: Smallest resistance and reactance (ohm) of a closed switch in the equivalent.
SWITCH_MIN_OHM = 1e-6
#: Relative sequence coupling above which a three-phase element counts as untransposed.
ASYMMETRY_TOL = 1e-6
#: Shunt conductance (pu) below which it is taken as none.
G_TOL_PU = 1e-9

_A = np.exp(-2j * np.pi / 3)  # phase b lags a by 120 degrees


# ------------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------------
@dataclass
class ReportEntry:
    """One kind of approximation: how many elements, how much load they carry, the largest effect."""

    what: str
    count: int = 0
    load_kw: float = 0.0
    largest: str = ""
    _largest_key: float = field(default=-math.inf, repr=False)

    def add(self, load_kw: float, key: float, text: str) -> None:
        """Count one element carrying ``load_kw``; keep ``text`` if its ``key`` is the largest so far."""
        self.count += 1
        self.load_kw += load_kw
        if key > self._largest_key:
            self._largest_key, self.largest = key, text


@dataclass
class ConversionReport:
    """What the reduction to the balanced equivalent approximated (``cases show`` prints it)."""

    network: str
    entries: list[ReportEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  #: facts the reader reported (not approximations)
    total_load_kw: float = 0.0

    def entry(self, what: str) -> ReportEntry:
        for e in self.entries:
            if e.what == what:
                return e
        e = ReportEntry(what)
        self.entries.append(e)
        return e

    def get(self, what: str) -> ReportEntry | None:
        return next((e for e in self.entries if e.what == what), None)

    def format(self) -> str:
        """The report as text lines (indented like ``cases show``)."""
        if not self.entries:
            head = [f"  conversion  exact: nothing approximated ({self.network})"]
        else:
            head = [f"  conversion  {len(self.entries)} approximation(s) ({self.network}; "
                    f"total load {self.total_load_kw:.1f} kW)"]
        for e in self.entries:
            share = f" ({100 * e.load_kw / self.total_load_kw:.1f} %)" if self.total_load_kw > 0 else ""
            head.append(f"    - {e.what}: {e.count} element(s), load {e.load_kw:.1f} kW{share}")
            if e.largest:
                head.append(f"        largest: {e.largest}")
        head += [f"    note: {n}" for n in self.notes]
        return "\n".join(head)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved with a run)."""
        return {
            "network": self.network,
            "total_load_kw": self.total_load_kw,
            "entries": [{"what": e.what, "count": e.count, "load_kw": e.load_kw, "largest": e.largest}
                        for e in self.entries],
            "notes": list(self.notes),
        }

    def as_table(self) -> pd.DataFrame:
        """The entries as a table (index ``what``)."""
        rows = [(e.what, e.count, e.load_kw, e.largest) for e in self.entries]
        return pd.DataFrame(rows, columns=["what", "count", "load_kw", "largest"]).set_index("what")


# report entry titles (tests and docs refer to them)
OPEN = "normally-open branches dropped"
UNTRANSPOSED = "untransposed three-phase elements: positive-sequence impedance, sequence coupling dropped"
LATERAL = "one- and two-phase branches: balanced equivalent z_eq = (3/n) z_phase"
TAPS = "per-phase taps that differ: mean tap"
REGULATOR = "voltage regulators at fixed taps, as read (the feeder's OpenDSS operating point), held during the OPF"
SWITCH = f"closed switches: series branches of their own impedance (at least {SWITCH_MIN_OHM:g} ohm)"
UNBAL_LOAD = "one- and two-phase loads (wye or delta): spread over three phases"
UNBAL_SHUNT = "one- and two-phase shunts: spread over three phases"
UNBAL_DER = "one- and two-phase DERs: spread over three phases"
SERVICE = ("centre-tap service transformers and secondaries: one balanced branch each on the 240 V base, "
           "the two 120 V halves taken as equally loaded")
REBASED = ("bus voltage bases relabelled: a bus reached through lines takes its upstream bus's base "
           "(OpenDSS's CalcVoltageBases gave it another)")


# ------------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------------
@dataclass
class BalancedTables:
    """The balanced equivalent: per unit on ``s_kva`` and each bus's own voltage base.

    * ``buses`` (root first, breadth-first; :data:`BUS_COLUMNS`): ``v_base_kv_ln``; ``p_load``, ``q_load``
      (nominal, three-phase total); ``p_zip_z/i/p``, ``q_zip_z/i/p`` (load-weighted ZIP fractions, default
      0, 0, 1); ``q_cap`` (a fixed reactive injection: generators with kW = 0, as the hand-made ieee123
      writes its capacitors); ``p_fixed``, ``q_fixed`` (the other generators' fixed injection; neither is
      scaled by the load multiplier); ``b_shunt`` (susceptance at v = 1: capacitors and half of each
      adjacent line's charging, minus transformers' magnetising; reactive injection ``b_shunt * v``, v the
      squared magnitude); ``g_shunt`` (conductance at v = 1: transformers' no-load loss, drawing ``g_shunt * v``);
      ``split_phase`` (True on a centre-tap secondary, whose base is the whole 240 V: each of the original
      bus's 120 V nodes is at half of it); ``x``, ``y``.
    * ``branches`` (oriented from the root; :data:`BRANCH_COLUMNS`): ``r``, ``x`` on the to-bus base,
      ``tap`` (ideal transformer at the from side: ``v_to = v_from / tap**2 - 2 (r P + x Q) + |z|^2 l``),
      ``kind`` (the :class:`~mpdopf_pyomo.network.model.Branch` kind it came from).
    * ``ders`` (index ``der``; :data:`DER_COLUMNS`): ``kind`` pv/battery/generator, ``bus`` in the
      equivalent, ``p_rated``, ``s_rated``, ``e_rated``/``e_stored`` (pu h, batteries), ``q_fixed``
      (generators' kvar; generators are in the bus columns ``p_fixed``/``q_fixed`` too), ``shape``.
    """

    root: str
    source_kv_ll: float
    source_pu: float
    buses: pd.DataFrame
    branches: pd.DataFrame
    ders: pd.DataFrame
    #: the network's loads (index ``load``; :data:`LOAD_COLUMNS`): ``bus`` in the equivalent, ``p``, ``q``
    #: (pu at 1 pu of the bus, what they add to p_load / q_load) and ``shape`` (the LoadShape, "" if none).
    loads: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["bus", "p", "q", "shape"]))
    #: the network's LoadShapes as hourly multipliers (``Network.profiles``).
    profiles: dict[str, np.ndarray] = field(default_factory=dict)


LOAD_COLUMNS = ("bus", "p", "q", "shape")
BUS_COLUMNS = ("v_base_kv_ln", "p_load", "q_load", "p_zip_z", "p_zip_i", "p_zip_p", "q_zip_z", "q_zip_i",
               "q_zip_p", "q_cap", "p_fixed", "q_fixed", "b_shunt", "g_shunt", "split_phase", "x", "y")
BRANCH_COLUMNS = ("from_bus", "to_bus", "r", "x", "tap", "kind")
DER_COLUMNS = ("kind", "bus", "p_rated", "s_rated", "e_rated", "e_stored", "q_fixed", "shape")


def _rotation(phases: tuple[int, ...]) -> np.ndarray:
    return np.array([_A ** (p - 1) for p in phases])


def phase_equivalent(m: np.ndarray, phases: tuple[int, ...]) -> complex:
    """Mean impedance (or admittance) per phase seen by currents of positive-sequence rotation.

    For three phases this is the positive-sequence element ``(A^-1 M A)[1, 1]``; for one phase ``m[0, 0]``.
    """
    rot = _rotation(phases)
    n = len(phases)
    v = complex((m @ rot / rot).sum() / n)
    tiny = 1e-12 * max(abs(v), float(np.abs(m).max(initial=0.0)))  # round-off of the complex rotation
    return complex(v.real if abs(v.real) > tiny else 0.0, v.imag if abs(v.imag) > tiny else 0.0)


def sequence_asymmetry(m: np.ndarray) -> float:
    """Largest off-diagonal of the 3x3 sequence matrix relative to the positive-sequence element."""
    a = np.array([[1, 1, 1], [1, _A**2, _A], [1, _A, _A**2]])
    s = np.linalg.solve(a, m @ a)
    off = np.abs(s - np.diag(np.diag(s))).max()
    return float(off / max(abs(s[1, 1]), 1e-300))


def _split_phase_secondaries(net: Network, closed: list[Branch], buses: dict[str, Bus]
                             ) -> tuple[list[Branch], dict[str, Bus], set[str], dict[str, str], list[Branch]]:
    """Centre-tap secondaries as balanced single-phase branches on the whole-secondary (240 V) base.

    Returns the branches (centre-tap transformers and secondary lines replaced by their 1 x 1 equivalent,
    series chains through empty secondary buses merged), the buses (secondary buses on twice their 120 V
    base), the secondary buses still in the network, ``{merged-away bus: the bus that stands for it}`` and
    the centre-tap transformers (for the report). See the module docstring for the rules.
    """
    heads = [b for b in closed if b.center_tap]
    if not heads:
        return closed, buses, set(), {}, []
    adj: dict[str, list[Branch]] = defaultdict(list)
    for b in closed:
        adj[b.bus1].append(b)
        adj[b.bus2].append(b)
    parent: dict[str, Branch] = {}
    seen = {net.source.bus}
    queue = [net.source.bus]
    for bus in queue:  # orient breadth-first from the source: "below" is well defined
        for b in adj.get(bus, []):
            other = b.bus2 if b.bus1 == bus else b.bus1
            if other not in seen:
                seen.add(other)
                parent[other] = b
                queue.append(other)
    split: set[str] = set()
    head_names = {b.name for b in heads}
    for bus in queue[1:]:
        up = parent[bus]
        above = up.bus1 if up.bus2 == bus else up.bus2
        if up.name in head_names and up.bus2 == bus or above in split and up.name not in head_names:
            split.add(bus)
    buses = {b: replace(bus, kv_ln=2 * bus.kv_ln) if b in split else bus for b, bus in buses.items()}
    out: list[Branch] = []
    for b in closed:
        if b.center_tap and b.bus2 in split:
            out.append(replace(b, z_ohm=4 * np.asarray(b.z_ohm, complex)))
        elif b.bus1 in split and b.bus2 in split:
            z, y = np.asarray(b.z_ohm, complex), np.asarray(b.y_shunt_s, complex)
            if len(b.phases) >= 2:
                z1 = z[0, 0] + z[1, 1] - z[0, 1] - z[1, 0]
                y1 = (y[0, 0] + y[1, 1] - y[0, 1] - y[1, 0]) / 4
            else:
                z1, y1 = 4 * z[0, 0], y[0, 0] / 4
            out.append(replace(b, phases=(1,), z_ohm=np.array([[z1]]), y_shunt_s=np.array([[y1]]), tap=np.ones(1)))
        else:
            out.append(b)
    # merge series chains through empty secondary buses (breadth-first: the transformer first)
    occupied = {x.bus for x in (*net.loads, *net.shunts, *net.ders)}
    by_name = {b.name: b for b in out}
    incident: dict[str, list[str]] = defaultdict(list)
    for b in out:
        incident[b.bus1].append(b.name)
        incident[b.bus2].append(b.name)
    merged: dict[str, str] = {}
    for bus in queue[1:]:
        if bus not in split or bus in occupied or len(incident[bus]) != 2:
            continue
        up = next((n for n in incident[bus] if by_name[n].bus2 == bus), None)
        down = next((n for n in incident[bus] if n != up), None)
        if up is None or down is None or by_name[down].bus1 != bus:
            continue
        u, d = by_name[up], by_name[down]
        if np.any(np.asarray(d.tap, float) != 1.0):
            continue
        far = d.bus2
        by_name[up] = replace(u, bus2=far, z_ohm=u.z_ohm + d.z_ohm, y_shunt_s=u.y_shunt_s + d.y_shunt_s,
                              elements=(*(u.elements or (u.name,)), *(d.elements or (d.name,))))
        del by_name[down]
        incident[far] = [up if n == down else n for n in incident[far]]
        incident[bus] = []
        merged[bus] = far
    for bus in list(merged):  # a chain merged twice: follow to the bus that remains
        while merged[bus] in merged:
            merged[bus] = merged[merged[bus]]
    return list(by_name.values()), buses, split - set(merged), merged, heads


def _at_bus_base(ld: Load, kv_ln: float, split: bool = False) -> tuple[float, float, np.ndarray, np.ndarray]:
    """A load's kW, kvar and ZIP fractions at 1 pu of its bus's base, from those at its rated kV.

    ``Load.kv_rated`` (when the reader gives it; line-to-neutral for a one-phase wye load, else
    line-to-line) may differ from the bus base; a constant-Z / constant-I part then draws
    ``(V_base / V_rated)^2`` / ``V_base / V_rated`` of its rating at 1 pu. Constant-power loads are unchanged.
    On a centre-tap secondary (``split``: ``kv_ln`` is the whole 240 V) the rating across the whole
    secondary is compared: twice the kV of a load on one half; for one on both halves the kV as given (a
    load across 1-2) or 2 kV / sqrt(3) (a two-phase wye load), whichever is nearer the base.
    """
    z = np.asarray(ld.zip, dtype=float)
    rated = getattr(ld, "kv_rated", math.nan)
    if not (math.isfinite(rated) and rated > 0):
        return ld.kw, ld.kvar, z[:3], z[3:]
    if split:
        base = kv_ln
        rated = 2 * rated if len(ld.phases) == 1 else min((rated, 2 * rated / math.sqrt(3)),
                                                          key=lambda r: abs(r - kv_ln))
    else:
        base = kv_ln if (len(ld.phases) == 1 and ld.conn == "wye") else kv_ln * math.sqrt(3)
    r = base / rated
    if abs(r - 1.0) < 1e-9:
        return ld.kw, ld.kvar, z[:3], z[3:]
    scale = np.array([r * r, r, 1.0])
    fp, fq = z[:3] * scale, z[3:] * scale
    sp, sq = fp.sum(), fq.sum()
    return ld.kw * sp, ld.kvar * sq, fp / sp if sp else z[:3], fq / sq if sq else z[3:]


def _element_errors(net: Network) -> list[str]:
    """What is wrong with the loads, shunts and DERs (unknown bus, numbers that are not finite)."""
    out = []
    for ld in net.loads:
        if ld.bus not in net.buses:
            out.append(f"load {ld.name}: bus {ld.bus} is not a bus of the network")
        elif not (math.isfinite(ld.kw) and math.isfinite(ld.kvar) and np.isfinite(np.asarray(ld.zip, float)).all()):
            out.append(f"load {ld.name}: kW, kvar or ZIP fractions not finite")
    for sh in net.shunts:
        if sh.bus not in net.buses:
            out.append(f"shunt {sh.name}: bus {sh.bus} is not a bus of the network")
        elif not (math.isfinite(sh.kvar) and math.isfinite(sh.kv_ln_rated) and sh.kv_ln_rated > 0):
            out.append(f"shunt {sh.name}: kvar must be finite and the rated kV positive")
    for d in net.ders:
        if d.bus not in net.buses:
            out.append(f"{d.kind} {d.name}: bus {d.bus} is not a bus of the network")
        elif not all(math.isfinite(v) for v in (d.kw, d.kva, d.kvar)):
            out.append(f"{d.kind} {d.name}: kW, kVA or kvar not finite")
    return out


def _line_bases(net: Network, closed: list[Branch]) -> tuple[dict[str, Bus], dict[str, tuple[float, float]]]:
    """Bus bases as the source and the transformers set them: breadth-first from the source, a bus reached
    through a line, switch or reactor takes the base of the bus it is reached from, whatever OpenDSS's
    ``CalcVoltageBases`` labelled it (the 9500 has two tie buses between 12.47 kV laterals labelled 115 kV:
    the README's "nodes at 0.11 pu"). Returns the buses and ``{bus: (old kV, new kV)}`` (line-to-neutral)."""
    adj: dict[str, list[tuple[str, Branch]]] = defaultdict(list)
    for br in closed:
        adj[br.bus1].append((br.bus2, br))
        adj[br.bus2].append((br.bus1, br))
    kv = {b: bus.kv_ln for b, bus in net.buses.items()}
    changed: dict[str, tuple[float, float]] = {}
    seen = {net.source.bus}
    queue = deque([net.source.bus])
    while queue:
        b = queue.popleft()
        for nb, br in adj[b]:
            if nb in seen or nb not in kv:
                continue
            seen.add(nb)
            queue.append(nb)
            if br.kind not in ("transformer", "regulator") and abs(kv[nb] - kv[b]) > 1e-6 * max(kv[nb], kv[b]):
                changed[nb] = (kv[nb], kv[b])
                kv[nb] = kv[b]
    return {b: replace(bus, kv_ln=kv[b]) if b in changed else bus for b, bus in net.buses.items()}, changed


def reduce_balanced(net: Network, s_kva: float) -> tuple[BalancedTables, ConversionReport]:
    """Reduce ``net`` to the balanced single-phase equivalent in per unit on ``s_kva`` (three-phase, kVA).

    Raises :class:`CaseError` listing every element that cannot be converted (unknown bus, non-finite or
    non-positive impedance of a line, conductance, a non-positive tap), and for a meshed or disconnected
    network (after dropping the normally-open branches).
    """
    from mpdopf_pyomo.network import build_tree  # the package re-exports topology

    where = str(net.path)
    if not (math.isfinite(s_kva) and s_kva > 0):
        raise CaseError(f"{where}: the power base must be positive, got {s_kva}")
    report = ConversionReport(network=f"{net.fmt} {net.name}", notes=list(net.notes))
    report.total_load_kw = float(sum(ld.kw for ld in net.loads))
    errors: list[str] = []
    buses = net.buses
    load_at_bus: dict[str, float] = defaultdict(float)
    for ld in net.loads:
        load_at_bus[ld.bus] += ld.kw

    closed: list[Branch] = []
    dropped: list[str] = []
    for br in net.branches:
        if br.normally_open:
            report.entry(OPEN).add(0.0, 0.0, "")
            dropped.append(f"{br.name} ({br.bus1}-{br.bus2})")
            continue
        missing = [b for b in (br.bus1, br.bus2) if b not in buses]
        if missing:
            errors.append(f"{br.kind} {br.name}: bus {missing[0]} is not a bus of the network")
            continue
        closed.append(br)
    if dropped:
        report.get(OPEN).largest = "dropped: " + ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else "")

    buses, rebased = _line_bases(net, closed)
    for bus, (old, new) in rebased.items():
        report.entry(REBASED).add(load_at_bus.get(bus, 0.0), abs(old - new),
                                  f"bus {bus}: {old * math.sqrt(3):.4g} kV -> {new * math.sqrt(3):.4g} kV (line-to-line)")
    closed, buses, split, moved, services = _split_phase_secondaries(net, closed, buses)
    net = replace(net, buses=buses)
    home = {b: moved.get(b, b) for b in buses}

    # --- load carried below each bus (for the report's "load affected") ------------------------------
    load_at: dict[str, float] = dict.fromkeys(buses, 0.0)
    for ld in net.loads:
        if ld.bus in load_at:
            load_at[ld.bus] += ld.kw

    # --- series elements -------------------------------------------------------------------------------
    rows = []
    laterals: dict[str, str] = {}  # one- and two-phase branch -> its phases
    affected: dict[str, list[str]] = {}  # report entry -> the branches it counts (for the load they carry)
    b_shunt: dict[str, float] = dict.fromkeys(buses, 0.0)
    g_shunt: dict[str, float] = dict.fromkeys(buses, 0.0)
    mag: list[tuple[float, float]] = []  # transformers' magnetising kvar and no-load kW at 1 pu
    for br in closed:
        n = len(br.phases)
        z = np.asarray(br.z_ohm, dtype=complex)
        y = np.asarray(br.y_shunt_s, dtype=complex)
        tap = np.asarray(br.tap, dtype=float).ravel()
        label = f"{br.kind} {br.name}"
        if n < 1 or z.shape != (n, n) or y.shape != (n, n) or tap.size not in (1, n):
            errors.append(f"{label}: impedance matrices or taps do not match its {n} phase(s)")
            continue
        if not (np.isfinite(z).all() and np.isfinite(y).all() and np.isfinite(tap).all()):
            errors.append(f"{label}: impedance, admittance or tap is not finite")
            continue
        if (tap <= 0).any():
            errors.append(f"{label}: tap {tap.tolist()} must be positive")
            continue
        kv1, kv2 = buses[br.bus1].kv_ln, buses[br.bus2].kv_ln
        if br.kind not in ("transformer", "regulator") and abs(kv1 - kv2) > 1e-6 * max(kv1, kv2):
            # only a transformer changes the voltage level: per unit on two bases would be a silent ratio
            errors.append(f"{label}: joins buses of different voltage bases ({br.bus1} {kv1 * math.sqrt(3):.4g} kV, "
                          f"{br.bus2} {kv2 * math.sqrt(3):.4g} kV line-to-line); only a transformer changes the "
                          "voltage level (check the model's VoltageBases / SetkVBase)")
            continue
        zb = 3 * kv2 ** 2 * 1000.0 / s_kva  # ohm, the to-bus base
        z_ph = phase_equivalent(z, br.phases)
        y_ph = phase_equivalent(y, br.phases)
        z_eq = 3 / n * z_ph
        y_eq = n / 3 * y_ph
        if n == 3:
            asym = sequence_asymmetry(z)
            if asym > ASYMMETRY_TOL:
                affected.setdefault(UNTRANSPOSED, []).append(br.name)
                report.entry(UNTRANSPOSED).add(0.0, asym, f"{label}: sequence coupling {100 * asym:.2f} % of |z1|")
        elif br.bus2 not in split:  # a service's branches are reported as services
            laterals[br.name] = f"{''.join('abc'[p - 1] for p in br.phases)}"
        if br.kind == "switch":
            z_eq = complex(max(z_eq.real, SWITCH_MIN_OHM), max(z_eq.imag, SWITCH_MIN_OHM))
            report.entry(SWITCH).add(0.0, 0.0, "")
            affected.setdefault(SWITCH, []).append(br.name)
        elif z_eq.real < 0 or z_eq.imag < -1e-12 * abs(z_eq) or abs(z_eq) == 0:
            errors.append(f"{label}: series impedance {z_eq.real:.6g} + j{z_eq.imag:.6g} ohm (balanced equivalent) "
                          "must have R >= 0 and a positive magnitude")
            continue
        t = float(tap.mean())
        if br.kind == "regulator":
            affected.setdefault(REGULATOR, []).append(br.name)
            report.entry(REGULATOR).add(0.0, abs(t - 1.0), f"{label}: tap {t:.5g} ({100 * (t - 1):+.2f} %)")
        if tap.size > 1 and np.ptp(tap) > 1e-12:
            affected.setdefault(TAPS, []).append(br.name)
            report.entry(TAPS).add(0.0, float(np.ptp(tap)),
                                   f"{label}: taps {' '.join(f'{v:.5g}' for v in tap)} -> mean {t:.5g} "
                                   f"(spread {np.ptp(tap):.4g})")
        g_pu = y_eq.real * zb
        if abs(g_pu) > G_TOL_PU:
            errors.append(f"{label}: shunt conductance {g_pu:.3g} pu cannot be represented")
            continue
        if br.imag_pct or br.noload_pct:
            # magnetising and no-load loss: a constant-impedance shunt at the secondary bus, where OpenDSS's
            # transformer model has it (tests/test_feeder_elements.py measures both ends against OpenDSS)
            mag_kvar, nll_kw = br.imag_pct / 100 * br.kva, br.noload_pct / 100 * br.kva
            mag.append((mag_kvar, nll_kw))
            b_shunt[home[br.bus2]] -= mag_kvar / s_kva
            g_shunt[home[br.bus2]] += nll_kw / s_kva
        b_pu = y_eq.imag * zb  # total, pi model: half at each end
        # the from-side half sits behind the ideal transformer: referred by 1/tap^2 to the from bus
        b_shunt[home[br.bus1]] += b_pu / 2 / t**2
        b_shunt[home[br.bus2]] += b_pu / 2
        rows.append((br.name, br.bus1, br.bus2, z_eq.real / zb, z_eq.imag / zb, t, br.kind))
    if mag:
        report.notes.append(f"{len(mag)} transformer(s) with magnetising current or no-load loss: a constant-"
                            f"impedance shunt at the secondary bus, {sum(m[0] for m in mag):.1f} kvar and "
                            f"{sum(m[1] for m in mag):.1f} kW at 1 pu (b_shunt, g_shunt)")
    errors += _element_errors(net)
    if errors:
        shown = "; ".join(errors[:MAX_LISTED]) + (f"; ... and {len(errors) - MAX_LISTED} more"
                                                  if len(errors) > MAX_LISTED else "")
        raise CaseError(f"{where}: {len(errors)} element(s) cannot be converted to the balanced model: {shown}")

    lines = pd.DataFrame(rows, columns=["name", "bus1", "bus2", "r", "x", "tap", "kind"]).set_index("name")
    keep = [b for b in buses if b not in moved]
    tree = build_tree(lines, keep, net.source.bus, where)
    order = [net.source.bus, *tree["to_bus"]]
    # load carried by the branches of each report entry: the load below the topmost of them
    below = dict.fromkeys(order, 0.0)
    for ld in net.loads:
        if home.get(ld.bus) in below:
            below[home[ld.bus]] += ld.kw
    children: dict[str, list[str]] = {}
    for frm, to in zip(tree["from_bus"], tree["to_bus"]):
        children.setdefault(frm, []).append(to)
    for bus in reversed(order):
        below[bus] += sum(below[c] for c in children.get(bus, []))
    parent_branch = dict(zip(tree["to_bus"], tree.index))

    def heads(names: list[str] | dict[str, str]) -> list[str]:
        """To-buses of the branches in ``names`` that have no other of them above."""
        chosen, out = set(names), []
        for name in names:
            bus, top = tree.at[name, "from_bus"], True
            while bus in parent_branch:
                if parent_branch[bus] in chosen:
                    top = False
                    break
                bus = tree.at[parent_branch[bus], "from_bus"]
            if top:
                out.append(tree.at[name, "to_bus"])
        return out

    for what, names in affected.items():
        report.get(what).load_kw = float(sum(below[b] for b in heads(names)))
    if laterals:
        tops = heads(laterals)
        entry = report.entry(LATERAL)
        entry.count = len(laterals)
        entry.load_kw = float(sum(below[b] for b in tops))
        worst = max(tops, key=lambda b: (below[b], b))
        br = parent_branch[worst]
        n = len(laterals[br])
        entry.largest = (f"lateral from bus {tree.at[br, 'from_bus']} ({br}, phase(s) {laterals[br]}): "
                         f"{below[worst]:.1f} kW, {below[worst] / n:.1f} kW per phase in the feeder, "
                         f"{below[worst] / 3:.1f} kW per phase in the equivalent")

    # --- service transformers ----------------------------------------------------------------------
    if services:
        svc = report.entry(SERVICE)
        svc.count = len(services)
        tops = [b.bus2 for b in services if b.bus2 in below] + [moved[b.bus2] for b in services if b.bus2 in moved]
        svc.load_kw = float(sum(below[b] for b in tops))
        worst = max(tops, key=lambda b: (below[b], b))
        svc.largest = (f"{below[worst]:.1f} kW below service bus {worst}; {len(split)} secondary bus(es) kept, "
                       f"{len(moved)} merged into their branch")

    # --- loads ---------------------------------------------------------------------------------------
    kw = dict.fromkeys(order, 0.0)
    kvar = dict.fromkeys(order, 0.0)
    zp = {b: np.zeros(3) for b in order}
    zq = {b: np.zeros(3) for b in order}
    wp = dict.fromkeys(order, 0.0)
    wq = dict.fromkeys(order, 0.0)
    load_rows = []
    for ld in net.loads:
        bus = home[ld.bus]
        p_kw, q_kvar, zp_l, zq_l = _at_bus_base(ld, buses[ld.bus].kv_ln, ld.bus in split)
        load_rows.append((ld.name, bus, p_kw / s_kva, q_kvar / s_kva, ld.shape or ""))
        kw[bus] += p_kw
        kvar[bus] += q_kvar
        zp[bus] += abs(p_kw) * zp_l
        zq[bus] += abs(q_kvar) * zq_l
        wp[bus] += abs(p_kw)
        wq[bus] += abs(q_kvar)
        if len(ld.phases) < 3 and ld.bus not in split:
            ph = "".join("abc"[p - 1] for p in ld.phases)
            report.entry(UNBAL_LOAD).add(ld.kw, abs(complex(ld.kw, ld.kvar)),
                                         f"load {ld.name} at bus {ld.bus}: {ld.kw:.1f} kW + {ld.kvar:.1f} kvar "
                                         f"{ld.conn} on phase(s) {ph} -> {ld.kw / 3:.1f} kW per phase")
    for bus in order:
        zp[bus] = zp[bus] / wp[bus] if wp[bus] > 0 else np.array([0.0, 0.0, 1.0])
        zq[bus] = zq[bus] / wq[bus] if wq[bus] > 0 else np.array([0.0, 0.0, 1.0])

    # --- shunts --------------------------------------------------------------------------------------
    for sh in net.shunts:
        bus = home[sh.bus]
        ratio = buses[sh.bus].kv_ln / sh.kv_ln_rated
        b_shunt[bus] += sh.kvar * ratio**2 / s_kva
        if len(sh.phases) < 3:
            report.entry(UNBAL_SHUNT).add(0.0, abs(sh.kvar), f"shunt {sh.name} at bus {sh.bus}: {sh.kvar:g} kvar on "
                                                             f"{len(sh.phases)} phase(s)")

    # --- DERs ----------------------------------------------------------------------------------------
    der_rows = []
    p_fixed = dict.fromkeys(order, 0.0)
    q_fixed = dict.fromkeys(order, 0.0)
    q_cap = dict.fromkeys(order, 0.0)
    gens = [d for d in net.ders if d.kind == "generator" and d.kw != 0]
    for d in gens:
        p_fixed[home[d.bus]] += d.kw / s_kva
        q_fixed[home[d.bus]] += d.kvar / s_kva
    for d in net.ders:  # kvar-only generators: fixed capacitor injections (the hand-made ieee123's capacitors)
        if d.kind == "generator" and d.kw == 0:
            q_cap[home[d.bus]] += d.kvar / s_kva
    if gens:
        report.notes.append(f"{len(gens)} generator(s): fixed injections p_fixed/q_fixed at their bus, "
                            f"{sum(d.kw for d in gens):.1f} kW + {sum(d.kvar for d in gens):.1f} kvar in all "
                            "(not loads; not scaled by the load multiplier)")
    for d in net.ders:
        bus = home[d.bus]
        der_rows.append((d.name, d.kind, bus, d.kw / s_kva, d.kva / s_kva, d.kwh / s_kva, d.kwh_stored / s_kva,
                         d.kvar / s_kva, d.shape or ""))
        if len(d.phases) < 3:
            report.entry(UNBAL_DER).add(0.0, d.kw, f"{d.kind} {d.name} at bus {d.bus}: {d.kw:g} kW on "
                                                   f"{len(d.phases)} phase(s)")
    bus_tbl = pd.DataFrame(index=pd.Index(order, name="bus"))
    bus_tbl["v_base_kv_ln"] = [buses[b].kv_ln for b in order]
    bus_tbl["p_load"] = [kw[b] / s_kva for b in order]
    bus_tbl["q_load"] = [kvar[b] / s_kva for b in order]
    for k, c in enumerate("zip"):
        bus_tbl[f"p_zip_{c}"] = [float(zp[b][k]) for b in order]
    for k, c in enumerate("zip"):
        bus_tbl[f"q_zip_{c}"] = [float(zq[b][k]) for b in order]
    bus_tbl["q_cap"] = [q_cap[b] for b in order]
    bus_tbl["p_fixed"] = [p_fixed[b] for b in order]
    bus_tbl["q_fixed"] = [q_fixed[b] for b in order]
    bus_tbl["b_shunt"] = [b_shunt[b] for b in order]
    bus_tbl["g_shunt"] = [g_shunt[b] for b in order]
    bus_tbl["split_phase"] = [b in split for b in order]
    bus_tbl["x"] = [buses[b].x for b in order]
    bus_tbl["y"] = [buses[b].y for b in order]
    branches = tree[["from_bus", "to_bus", "r", "x", "tap", "kind"]].copy()
    ders = pd.DataFrame(der_rows, columns=["der", *DER_COLUMNS]).set_index("der")
    tables = BalancedTables(root=net.source.bus, source_kv_ll=net.source.kv_ll, source_pu=net.source.pu,
                            buses=bus_tbl, branches=branches, ders=ders,
                            loads=pd.DataFrame(load_rows, columns=["load", *LOAD_COLUMNS]).set_index("load"),
                            profiles=dict(net.profiles))
    return tables, report


def balanced_network(buses: pd.DataFrame, branches: pd.DataFrame, root: str, s_kva: float,
                     source_pu: float = 1.0, name: str = "balanced", path: Any = "") -> Network:
    """The balanced equivalent (case tables in per unit) as a three-phase :class:`Network` in physical units.

    What validation check (1) exports to OpenDSS: the converted model itself, so that OpenDSS and the
    optimisation solve the same equations. Series ``r, x`` and ``tap``; loads with the bus's ZIP fractions
    (nominal, the caller scales them); ``b_shunt`` as a capacitor (or reactor) of ``b_shunt x s_kva`` kvar at
    the bus's base (``g_shunt`` as a shunt resistance drawing ``g_shunt x s_kva`` kW at 1 pu); ``q_cap`` as a
    fixed reactive injection (a generator with kW = 0); ``p_fixed`` /
    ``q_fixed`` as a generator (model 1, not scaled by the load multiplier).
    """
    from pathlib import Path

    cols = buses.columns
    kv = buses["v_base_kv_ln"] if "v_base_kv_ln" in cols else None
    if kv is None:
        raise CaseError("balanced_network: the bus table has no v_base_kv_ln column")
    # columns read once into plain lists (not .at per bus and column, nor iterrows: 0.05-0.1 s at ieee123)
    used = ("x", "y", "p_load", "q_load", "b_shunt", "g_shunt", "q_cap", "p_fixed", "q_fixed",
            *(f"{k}_zip_{c}" for k in "pq" for c in "zip"))
    column = {c: buses[c].to_numpy(dtype=float).tolist() for c in used if c in cols}
    nan = [math.nan] * len(buses)
    nb: dict[str, Bus] = {}
    for b, kv_b, x, y in zip(buses.index, kv.to_numpy(dtype=float).tolist(), column.get("x", nan),
                             column.get("y", nan)):
        nb[b] = Bus(b, kv_b, (1, 2, 3), x, y)
    eye = np.eye(3)
    brs = []
    taps = branches["tap"].to_numpy(dtype=float).tolist() if "tap" in branches.columns else [1.0] * len(branches)
    for e, frm, to, r, x, tap in zip(branches.index, branches["from_bus"], branches["to_bus"],
                                     branches["r"].to_numpy(dtype=float).tolist(),
                                     branches["x"].to_numpy(dtype=float).tolist(), taps):
        zb = 3 * nb[to].kv_ln ** 2 * 1000.0 / s_kva
        kind = "transformer" if tap != 1.0 or nb[frm].kv_ln != nb[to].kv_ln else "line"
        z = complex(r, x) * zb
        brs.append(Branch(str(e), kind, frm, to, (1, 2, 3), z * eye, np.zeros((3, 3), complex), np.full(3, tap)))
    row_of = {b: k for k, b in enumerate(buses.index)}
    get = lambda b, c, d: column[c][row_of[b]] if c in column else d  # noqa: E731
    loads, shunts, ders = [], [], []
    for b in buses.index:
        p, q = get(b, "p_load", 0.0) * s_kva, get(b, "q_load", 0.0) * s_kva
        if p or q:
            zip_ = tuple(get(b, f"{k}_zip_{c}", 1.0 if c == "p" else 0.0) for k in "pq" for c in "zip")
            loads.append(Load(f"load_{b}", b, (1, 2, 3), "wye", p, q, zip_, vminpu=0.0, vmaxpu=math.inf))
        bs, gs = get(b, "b_shunt", 0.0), get(b, "g_shunt", 0.0)
        if bs or gs:
            shunts.append(Shunt(f"shunt_{b}", b, (1, 2, 3), "wye", bs * s_kva, nb[b].kv_ln, kw=gs * s_kva))
        qc = get(b, "q_cap", 0.0)
        if qc:
            ders.append(Der(f"qcap_{b}", "generator", b, (1, 2, 3), 0.0, abs(qc) * s_kva, kvar=qc * s_kva))
        pf, qf = get(b, "p_fixed", 0.0), get(b, "q_fixed", 0.0)
        if pf or qf:
            ders.append(Der(f"gen_{b}", "generator", b, (1, 2, 3), pf * s_kva, abs(complex(pf, qf)) * s_kva,
                            kvar=qf * s_kva))
    src = Source(root, nb[root].kv_ln * math.sqrt(3), source_pu)
    return Network(name, Path(str(path)), "balanced", src, 60.0, nb, brs, loads, shunts, ders, {}, [])
