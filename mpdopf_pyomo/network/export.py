"""A :class:`~mpdopf_pyomo.network.model.Network` -> an OpenDSS script (master.dss + includes) in a folder.

Format-neutral: it reads only the network model, so a MATPOWER case (which has no ``.dss``) and a
network reduced from an OpenDSS feeder are written the same way and OpenDSS can run their power flow.
Each element is written so that OpenDSS solves the same equations the network model states:

* the source as a stiff ``Vsource`` (R = 0, X = 1e-8 ohm, as the bundled ieee123 model);
* lines and switches as ``Line`` objects with their phase matrices (``rmatrix``/``xmatrix`` in ohm,
  ``cmatrix`` in nF from the shunt susceptance at the network's frequency, half at each end as in the
  model's pi), ``length=1 units=none``;
* transformers and regulators as an ideal two-winding ``Transformer`` (kV ratings of the two buses'
  bases, the off-nominal tap on winding 1, a small leakage reactance) followed by a ``Line`` that
  carries the rest of the branch's series impedance and its shunt on the bus2 side: exactly the model's convention
  (impedance referred to bus2, |V1|/|V2| = tap at no load) whatever OpenDSS does with taps internally;
* loads by their ZIP fractions (``model=1`` constant PQ, ``2`` constant Z, ``5`` constant |I|, else
  ``model=8`` with ``ZIPV``), with ``vminpu`` low (0.7 by default) because below ``vminpu`` OpenDSS
  turns a load into a constant impedance, which the network model (and the optimisation) does not;
  0.7 pu is below any voltage a published base case or a feasible plan reaches (v_min >= 0.9), and high
  enough that OpenDSS's own ``Vlowpu`` (0.5) fallback never matters;
* shunts as ``Capacitor`` (kvar > 0) or shunt ``Reactor`` (kvar < 0) at their rated voltage;
* DERs as ``Generator`` objects at a given (kW, kvar) dispatch (``model=1``, same low ``vminpu``);
  generators default to their own (kw, kvar), PVs and batteries to nothing unless dispatched.

Normally-open branches are not written (a comment says so).

``faithful=True`` instead writes a phase-aware network read from an OpenDSS feeder element by element
(:func:`_write_faithful`); :func:`export_feeder` and the command line
``python -m mpdopf_pyomo.network.export --from PUBLIC.dss --to FOLDER --origin TEXT`` make the bundled
IEEE models this way (docs/src/opendss.md, "Bundled IEEE feeders").
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Network

#: First line of every master file this module writes (what makes a folder "ours" to rewrite).
MARKER = "! Written by mpdopf_pyomo.network.export"
#: Load and generator vminpu written by default (see the module docstring).
VMINPU = 0.7
VMAXPU = 1.3
#: Leakage reactance of the ideal transformer, percent on its kVA rating (OpenDSS needs a non-zero XHL;
#: the export takes it off the series line that follows).
_IDEAL_XHL_PCT = 1e-4
_NAME_OK = re.compile(r"^[^\s.\"'=\[\](){},;!]+$")


def _num(v: float) -> str:
    return repr(float(v)) if v != 0 else "0"


def _lower_triangle(m: np.ndarray) -> str:
    """OpenDSS matrix syntax ``[a | b c | d e f]`` (lower triangle, symmetric matrices)."""
    n = m.shape[0]
    return "[" + " | ".join(" ".join(_num(m[i, j]) for j in range(i + 1)) for i in range(n)) + "]"


def _nodes(bus: str, phases: tuple[int, ...]) -> str:
    return bus + "".join(f".{p}" for p in phases)


def _check_name(kind: str, name: str) -> None:
    if not _NAME_OK.match(name):
        raise CaseError(f"export to OpenDSS: {kind} name {name!r} holds characters OpenDSS cannot take in a name")


def _line(name: str, bus1: str, bus2: str, br: Branch, freq: float) -> str:
    z = np.asarray(br.z_ohm, dtype=complex)
    y = np.asarray(br.y_shunt_s, dtype=complex)
    n = len(br.phases)
    if z.shape != (n, n) or y.shape != (n, n):
        raise CaseError(f"export to OpenDSS: branch {br.name}: impedance matrices are not {n} x {n}")
    if np.any(np.abs(y.real) > 1e-12):
        raise CaseError(f"export to OpenDSS: branch {br.name}: shunt conductance cannot be written as an OpenDSS line")
    if not np.allclose(z, z.T) or not np.allclose(y, y.T):
        raise CaseError(f"export to OpenDSS: branch {br.name}: OpenDSS line matrices must be symmetric")
    c_nf = y.imag / (2 * math.pi * freq) * 1e9
    return (
        f"New Line.{name} bus1={_nodes(bus1, br.phases)} bus2={_nodes(bus2, br.phases2 or br.phases)} phases={n} "
        f"rmatrix={_lower_triangle(z.real)} xmatrix={_lower_triangle(z.imag)} cmatrix={_lower_triangle(c_nf)} "
        "length=1 units=none"
    )


def _check_folder(folder: Path) -> Path:
    """``folder`` must be absent, empty or written by this module before; return its master.dss path."""
    master = folder / "master.dss"
    if folder.exists():
        if not folder.is_dir():
            raise CaseError(f"{folder}: not a folder")
        if any(folder.iterdir()):
            ours = master.is_file() and master.read_text(errors="replace").startswith(MARKER)
            if not ours:
                raise CaseError(f"{folder}: folder is not empty and was not written by the OpenDSS export")
    return master


def _check_dispatch(network: Network, dispatch: dict[str, tuple[float, float]] | None) -> dict:
    dispatch = dict(dispatch or {})
    unknown = sorted(set(dispatch) - {d.name for d in network.ders})
    if unknown:
        raise CaseError(f"export to OpenDSS: dispatch names unknown DER(s): {', '.join(unknown)}")
    return dispatch


def _load_model(zip6) -> str:
    """OpenDSS load model for ZIP fractions: 1 / 2 / 5 when pure, else 8 with ZIPV (no cut-off)."""
    z = tuple(float(v) for v in zip6)
    if z == (0.0, 0.0, 1.0, 0.0, 0.0, 1.0):
        return "model=1"
    if z == (1.0, 0.0, 0.0, 1.0, 0.0, 0.0):
        return "model=2"
    if z == (0.0, 1.0, 0.0, 0.0, 1.0, 0.0):
        return "model=5"
    return "model=8 ZIPV=[" + " ".join(_num(v) for v in z) + " 0]"


def write_opendss(
    network: Network,
    folder: str | Path,
    dispatch: dict[str, tuple[float, float]] | None = None,
    vminpu: float = VMINPU,
    faithful: bool = False,
    origin: list[str] | None = None,
) -> Path:
    """Write ``network`` as an OpenDSS script into ``folder``; return the master file's path.

    ``dispatch`` maps DER names to (kW, kvar) output (generators default to their own kw/kvar, PVs and
    batteries to none). ``folder`` must be absent, empty, or a folder this function wrote before (its
    master.dss starts with :data:`MARKER`); only this module's own file names are (re)written there.
    Compile the master with an absolute path; it solves with ``Solve`` (tolerance set to 1e-10 inside).

    ``faithful=True`` writes a phase-aware network element by element so that OpenDSS solves the same
    circuit as the model it was read from (see :func:`_write_faithful`); ``vminpu`` is then ignored (each
    load keeps its own) and ``origin`` lines (where the numbers come from) head every file.
    """
    folder = Path(folder)
    if faithful:
        return _write_faithful(network, folder, _check_dispatch(network, dispatch), origin or [])
    master = _check_folder(folder)
    dispatch = _check_dispatch(network, dispatch)

    src = network.source
    buses = network.buses
    for b in buses:
        _check_name("bus", b)
    if src.bus not in buses:
        raise CaseError(f"export to OpenDSS: source bus {src.bus} is not a bus of the network")
    freq = network.frequency_hz

    def kv_ll(bus: str) -> float:
        return buses[bus].kv_ln * math.sqrt(3)

    # --- branches -----------------------------------------------------------------------------------
    lines: list[str] = []
    xfs: list[str] = []
    for br in network.branches:
        _check_branch(br, buses)
        if br.normally_open:
            lines.append(f"! {br.kind} {br.name} ({br.bus1}-{br.bus2}) is normally open: not written")
            continue
        if br.kind in ("transformer", "regulator"):
            taps = np.asarray(br.tap, dtype=float)
            n = len(br.phases)
            mid = f"{br.bus2}_xf_{br.name}"
            _check_name("bus", mid)
            if mid in buses:
                raise CaseError(f"export to OpenDSS: transformer {br.name}: internal bus name {mid} is taken")
            kva = br.kva if math.isfinite(br.kva) and br.kva > 0 else 1000.0
            conns = br.conn
            if n == 3 and np.allclose(taps, taps[0]):
                xfs.append(
                    f"New Transformer.{br.name} phases=3 windings=2 "
                    f"buses=[{_nodes(br.bus1, br.phases)} {_nodes(mid, br.phases)}] conns=[{conns[0]} {conns[1]}] "
                    f"kVs=[{_num(kv_ll(br.bus1))} {_num(kv_ll(br.bus2))}] kVAs=[{_num(kva)} {_num(kva)}] "
                    f"taps=[{_num(taps[0])} 1] %Rs=[0 0] XHL={_IDEAL_XHL_PCT} %noloadloss=0 %imag=0"
                )
            else:  # one single-phase unit per phase, wye-wye, each with its own tap
                if conns != ("wye", "wye"):
                    raise CaseError(f"export to OpenDSS: branch {br.name}: per-phase taps need a wye-wye transformer")
                for k, ph in enumerate(br.phases):
                    xfs.append(
                        f"New Transformer.{br.name}_{ph} phases=1 windings=2 buses=[{br.bus1}.{ph} {mid}.{ph}] "
                        f"kVs=[{_num(buses[br.bus1].kv_ln)} {_num(buses[br.bus2].kv_ln)}] "
                        f"kVAs=[{_num(kva / n)} {_num(kva / n)}] taps=[{_num(taps[k])} 1] %Rs=[0 0] "
                        f"XHL={_IDEAL_XHL_PCT} %noloadloss=0 %imag=0"
                    )
            # The ideal transformer's small leakage reactance (OpenDSS needs one) is taken off the series
            # line, so the pair carries exactly the branch's impedance.
            leak_ohm = _IDEAL_XHL_PCT / 100 * kv_ll(br.bus2) ** 2 * 1000.0 / kva
            rest = replace(br, z_ohm=np.asarray(br.z_ohm, dtype=complex) - 1j * leak_ohm * np.eye(n))
            lines.append(_line(br.name, mid, br.bus2, rest, freq))
        else:
            if np.any(np.asarray(br.tap, dtype=float) != 1.0):
                raise CaseError(f"export to OpenDSS: {br.kind} {br.name} has a tap; only transformers may")
            lines.append(_line(br.name, br.bus1, br.bus2, br, freq))

    # --- loads --------------------------------------------------------------------------------------
    loads: list[str] = []
    for ld in network.loads:
        _check_name("load", ld.name)
        n = len(ld.phases)
        kv = buses[ld.bus].kv_ln if (n == 1 and ld.conn == "wye") else kv_ll(ld.bus)
        model = _load_model(ld.zip)
        loads.append(
            f"New Load.{ld.name} bus1={_nodes(ld.bus, ld.phases)} phases={n} conn={ld.conn} kV={_num(kv)} "
            f"kW={_num(ld.kw)} kvar={_num(ld.kvar)} {model} vminpu={vminpu} vmaxpu={VMAXPU}"
        )

    # --- shunts and DERs ----------------------------------------------------------------------------
    shunts = _shunt_lines(network)
    ders = _der_lines(network, dispatch, f" vminpu={vminpu} vmaxpu={VMAXPU}")

    coords = [(b, bus.x, bus.y) for b, bus in buses.items() if math.isfinite(bus.x) and math.isfinite(bus.y)]
    kv_bases = sorted({round(kv_ll(b), 6) for b in buses})

    # --- master -------------------------------------------------------------------------------------
    head = [
        MARKER,
        f"! Network {network.name} ({network.fmt}: {network.path}), balanced export:",
        f"!   {len(buses)} buses, {len(network.branches)} branches, {len(network.loads)} loads, "
        f"{len(network.shunts)} shunts, {len(network.ders)} DERs.",
        f"! Loads and generators use vminpu={vminpu}: OpenDSS models them as constant impedance below vminpu,",
        "! the network model does not.",
        "",
        "Clear",
        f"Set DefaultBaseFrequency={_num(freq)}",
        "! Stiff source: R = 0, X = 1e-8 ohm.",
        f"New Circuit.{re.sub(r'[^A-Za-z0-9_-]', '_', network.name) or 'network'} phases=3 bus1={src.bus} "
        f"basekV={_num(src.kv_ll)} pu={_num(src.pu)} angle={_num(src.angle_deg)} R1=0 X1=1e-8 R0=0 X0=1e-8",
        "",
    ]
    files = {"lines.dss": lines, "transformers.dss": xfs, "loads.dss": loads, "shunts.dss": shunts, "ders.dss": ders}
    body = [f"Redirect {f}" for f, rows in files.items() if rows]
    tail = [
        "",
        "Set VoltageBases=[" + " ".join(_num(v) for v in kv_bases) + "]",
        "CalcVoltageBases",
    ]
    if coords:
        tail.append("Buscoords buscoords.csv")
    tail += ["! Tight power-flow tolerance: constant-power injections to ~1e-10 pu.", "Set Tolerance=1e-10", ""]

    folder.mkdir(parents=True, exist_ok=True)
    for f, rows in files.items():
        if rows:
            (folder / f).write_text("\n".join(rows) + "\n")
    if coords:
        (folder / "buscoords.csv").write_text("".join(f"{b},{_num(x)},{_num(y)}\n" for b, x, y in coords))
    master.write_text("\n".join(head + body + tail))
    return master.resolve()


# --------------------------------------------------------------------------------------------------------
# Faithful (phase-aware) export: a feeder read by read_opendss, written back element by element
# --------------------------------------------------------------------------------------------------------

def _source_line(network: Network) -> list[str]:
    """The Vsource: its own short-circuit impedance as sequence R1/X1/R0/X0 (ohm), or stiff."""
    src = network.source
    name = re.sub(r"[^A-Za-z0-9_-]", "_", network.name) or "network"
    z = src.z_ohm
    if z is None:
        return ["! Stiff source: R = 0, X = 1e-8 ohm.",
                f"New Circuit.{name} phases=3 bus1={src.bus} basekV={_num(src.kv_ll)} pu={_num(src.pu)} "
                f"angle={_num(src.angle_deg)} R1=0 X1=1e-8 R0=0 X0=1e-8"]
    z = np.asarray(z, dtype=complex)
    zs = np.mean(np.diag(z))
    zm = np.mean(z[~np.eye(3, dtype=bool)])
    if np.max(np.abs(z - (zm * np.ones((3, 3)) + (zs - zm) * np.eye(3)))) > 1e-9 * max(abs(zs), 1e-12):
        raise CaseError("export to OpenDSS: the source impedance is not symmetric in its phases")
    z1, z0 = zs - zm, zs + 2 * zm
    return ["! Source short-circuit impedance as read (sequence ohm).",
            f"New Circuit.{name} phases=3 bus1={src.bus} basekV={_num(src.kv_ll)} pu={_num(src.pu)} "
            f"angle={_num(src.angle_deg)} R1={_num(z1.real)} X1={_num(z1.imag)} R0={_num(z0.real)} "
            f"X0={_num(z0.imag)}"]


def _check_branch(br: Branch, buses: dict) -> None:
    """A branch the writers can name in OpenDSS, between two buses of the network."""
    _check_name("branch", br.name)
    for b in (br.bus1, br.bus2):
        if b not in buses:
            raise CaseError(f"export to OpenDSS: branch {br.name}: bus {b} is not a bus of the network")


def _shunt_lines(network: Network) -> list[str]:
    """``Capacitor`` (kvar > 0) and shunt ``Reactor`` (kvar < 0) lines at their rated voltage; a shunt
    conductance (``Shunt.kw``, three-phase wye only) as a shunt ``Reactor`` of resistance R = V_LL^2 / P."""
    out = []
    for sh in network.shunts:
        _check_name("shunt", sh.name)
        n = _n_phases(sh.phases, sh.conn)
        kv = sh.kv_ln_rated if (n == 1 and sh.conn == "wye") else sh.kv_ln_rated * math.sqrt(3)
        if sh.kvar or not sh.kw:
            cls = "Capacitor" if sh.kvar >= 0 else "Reactor"
            out.append(f"New {cls}.{sh.name} bus1={_nodes(sh.bus, sh.phases)} phases={n} conn={sh.conn} "
                       f"kvar={_num(abs(sh.kvar))} kV={_num(kv)}")
        if sh.kw:
            if n != 3 or sh.conn != "wye":
                raise CaseError(f"export to OpenDSS: shunt {sh.name}: a conductance is written for three-phase wye "
                                "shunts only")
            out.append(f"New Reactor.{sh.name}_g bus1={_nodes(sh.bus, sh.phases)} phases=3 conn=wye "
                       f"R={_num(3 * sh.kv_ln_rated ** 2 * 1000.0 / sh.kw)} X=0")
    return out


def _der_lines(network: Network, dispatch: dict[str, tuple[float, float]], extra: str = "") -> list[str]:
    """A ``Generator`` (model 1) per DER at its dispatched (kW, kvar); generators default to their own
    (kw, kvar), PVs and batteries without a dispatch are left out (a comment says so)."""
    out = []
    for d in network.ders:
        _check_name("DER", d.name)
        if d.name in dispatch:
            p, q = dispatch[d.name]
        elif d.kind == "generator":
            p, q = d.kw, d.kvar
        else:
            out.append(f"! {d.kind} {d.name} at bus {d.bus}: no dispatch given, not written")
            continue
        n = len(d.phases)
        kv = network.buses[d.bus].kv_ln * (1.0 if n == 1 else math.sqrt(3))
        out.append(f"New Generator.{d.name} bus1={_nodes(d.bus, d.phases)} phases={n} kV={_num(kv)} kW={_num(p)} "
                   f"kvar={_num(q)} model=1{extra}")
    return out


def _n_phases(phases: tuple[int, ...], conn: str) -> int:
    """OpenDSS ``phases`` of a load or capacitor: a delta element on two nodes is ONE phase (phase to phase)."""
    return 1 if (conn == "delta" and len(phases) == 2) else len(phases)


def _winding_kv(network: Network, bus: str, nph: int) -> float:
    """A winding's rated kV on its bus's base: line-to-line for 2/3 phases, line-to-neutral for one."""
    kv = network.buses[bus].kv_ln
    return kv if nph == 1 else kv * math.sqrt(3)


def _transformer_rows(network: Network, br: Branch) -> list[str]:
    """One branch of kind transformer/regulator as OpenDSS Transformer(s) that solve as the model does.

    Winding kV = the two buses' bases, the model's off-nominal ratio as winding 2's tap (1/tap), %R split
    equally between the windings and XHL chosen so that OpenDSS's impedance referred to bus2 at winding 2's
    tapped voltage is ``z_ohm`` (OpenDSS scales a winding's base with its tap). A bank merged from
    single-phase units is written back as those units (one per phase, each with its own tap).
    """
    if br.center_tap:
        raise CaseError(f"export to OpenDSS: transformer {br.name} is a centre-tap unit; the network model keeps "
                        "only its whole-secondary impedance, which the faithful export cannot split into windings")
    z = np.asarray(br.z_ohm, dtype=complex)
    if np.any(np.abs(np.asarray(br.y_shunt_s)) > 0):
        raise CaseError(f"export to OpenDSS: transformer {br.name} has a shunt admittance the export cannot write")
    n = len(br.phases)
    taps = np.asarray(br.tap, dtype=float)
    kva = br.kva if math.isfinite(br.kva) and br.kva > 0 else 1000.0
    ph2 = br.phases2 or br.phases
    units: list[tuple[str, tuple[int, ...], tuple[int, ...], complex, float, float]] = []
    if len(br.elements) > 1 or (n > 1 and not np.allclose(taps, taps[0], rtol=0, atol=1e-12)):
        if br.conn != ("wye", "wye"):
            raise CaseError(f"export to OpenDSS: branch {br.name}: per-phase taps need wye-wye single-phase units")
        names = br.elements if len(br.elements) == n else tuple(f"{br.name}_{p}" for p in br.phases)
        for k in range(n):
            units.append((names[k], (br.phases[k],), (ph2[k],), z[k, k], float(taps[k]), kva / n))
    else:
        if n > 1 and np.max(np.abs(z - z[0, 0] * np.eye(n))) > 1e-12 * max(abs(z[0, 0]), 1e-12):
            raise CaseError(f"export to OpenDSS: transformer {br.name}: impedance is not equal and uncoupled per phase")
        units.append((br.name, br.phases, ph2, complex(z[0, 0]), float(taps[0]), kva))
    rows = []
    for name, p1, p2, zk, tap, kva_k in units:
        _check_name("transformer", name)
        m = len(p1)
        kv1 = _winding_kv(network, br.bus1, m)
        kv2 = _winding_kv(network, br.bus2, m)
        t2 = round(1.0 / tap, 12)  # a tap step (1 + k/160) reads back as itself, not 1.0562500000000001
        z_pct = zk * kva_k / (1000.0 * (kv2 * t2) ** 2) * 100.0
        span = "" if 0.9 <= t2 <= 1.1 else f" MinTap={_num(min(t2, 0.9))} MaxTap={_num(max(t2, 1.1))}"
        rows.append(
            f"New Transformer.{name} phases={m} windings=2 buses=[{_nodes(br.bus1, p1)} {_nodes(br.bus2, p2)}] "
            f"conns=[{br.conn[0]} {br.conn[1]}] kVs=[{_num(kv1)} {_num(kv2)}] kVAs=[{_num(kva_k)} {_num(kva_k)}] "
            f"taps=[1 {_num(t2)}]{span} %Rs=[{_num(z_pct.real / 2)} {_num(z_pct.real / 2)}] XHL={_num(z_pct.imag)} "
            f"%noloadloss={_num(br.noload_pct)} %imag={_num(br.imag_pct)} ppm={_num(br.ppm_antifloat)}")
    return rows


def _write_faithful(network: Network, folder: Path, dispatch: dict, origin: list[str]) -> Path:
    """Write a phase-aware network as OpenDSS files: master.dss, lines.dss, transformers.dss,
    regulators.dss, loads.dss, capacitors.dss, ders.dss, buscoords.csv (only those with content).

    Lines and switches carry their full phase matrices and charging; bus2's nodes follow ``phases2``.
    Transformers keep their connections (so a delta-wye unit keeps its phase shift), ratio and impedance
    (:func:`_transformer_rows`); regulators are written the same way at their fixed taps, without their
    RegControls. Loads keep phases, connection, rated kV, kW/kvar, model (ZIP) and their own vminpu/vmaxpu;
    capacitors their phases, connection, kV and kvar; DERs as in the balanced export. Normally-open
    branches are written and then opened at terminal 2.
    """
    master = _check_folder(folder)
    buses = network.buses
    for b in buses:
        _check_name("bus", b)
    if network.source.bus not in buses:
        raise CaseError(f"export to OpenDSS: source bus {network.source.bus} is not a bus of the network")
    lines: list[str] = []
    xfs: list[str] = []
    regs: list[str] = []
    opened: list[str] = []
    for br in network.branches:
        _check_branch(br, buses)
        if br.kind in ("transformer", "regulator"):
            rows = _transformer_rows(network, br)
            (regs if br.kind == "regulator" else xfs).extend(rows)
            if br.normally_open:
                opened += [r.split()[1] for r in rows]
            continue
        if np.any(np.asarray(br.tap, dtype=float) != 1.0):
            raise CaseError(f"export to OpenDSS: {br.kind} {br.name} has a tap; only transformers may")
        if br.kind == "reactor":
            raise CaseError(f"export to OpenDSS: series reactor {br.name}: not written by the faithful export")
        row = _line(br.name, br.bus1, br.bus2, br, network.frequency_hz)
        lines.append(row + (" ! switch" if br.kind == "switch" else ""))
        if br.normally_open:
            opened.append(f"Line.{br.name}")

    loads: list[str] = []
    for ld in network.loads:
        _check_name("load", ld.name)
        n = _n_phases(ld.phases, ld.conn)
        kv = ld.kv_rated if math.isfinite(ld.kv_rated) else (
            buses[ld.bus].kv_ln if (n == 1 and ld.conn == "wye") else buses[ld.bus].kv_ln * math.sqrt(3))
        loads.append(
            f"New Load.{ld.name} bus1={_nodes(ld.bus, ld.phases)} phases={n} conn={ld.conn} kV={_num(kv)} "
            f"kW={_num(ld.kw)} kvar={_num(ld.kvar)} {_load_model(ld.zip)} vminpu={_num(ld.vminpu)} "
            f"vmaxpu={_num(ld.vmaxpu)}")
    caps = _shunt_lines(network)
    ders = _der_lines(network, dispatch)

    head = [f"! {line}" for line in origin]
    head.append("! The numbers were re-keyed by mpdopf_pyomo.network.export (write_opendss, faithful=True) from the "
                "network model read_opendss made of the source.")
    files = {
        "lines.dss": (["! Lines and switches: phase matrices in ohm and nF for the whole length (length=1 units=none)."],
                      lines),
        "transformers.dss": (["! Transformers: kV on the buses' bases, the ratio as winding 2's tap, %R split equally."],
                             xfs),
        "regulators.dss": (["! Regulators at FIXED taps, written as plain transformers: their RegControls are not "
                            "written (the taps are the operating point the model was read at)."], regs),
        "loads.dss": (["! Loads: kW/kvar at rated kV; model 1 = constant PQ, 2 = constant Z, 5 = constant |I|, "
                       "8 = ZIP."], loads),
        "capacitors.dss": (["! Shunt capacitors (and reactors), kvar at rated kV."], caps),
        "ders.dss": (["! DERs at a fixed dispatch."], ders),
    }
    coords = [(b, bus.x, bus.y) for b, bus in buses.items() if math.isfinite(bus.x) and math.isfinite(bus.y)]
    kv_bases = sorted({round(bus.kv_ln * math.sqrt(3), 6) for bus in buses.values()})
    counts = (f"{len(buses)} buses, {len(lines)} lines/switches, {len(xfs)} transformers, {len(regs)} regulator "
              f"units, {len(loads)} loads, {len(caps)} capacitors, {len(network.ders)} DERs")
    body = [MARKER, *head, f"! {network.name}: {counts}.", "", "Clear",
            f"Set DefaultBaseFrequency={_num(network.frequency_hz)}", *_source_line(network), ""]
    body += [f"Redirect {f}" for f, (_, rows) in files.items() if rows]
    body += [f"Open {el} term=2" for el in opened]
    body += ["", "Set VoltageBases=[" + " ".join(_num(v) for v in kv_bases) + "]", "CalcVoltageBases"]
    if coords:
        body.append("Buscoords buscoords.csv")
    body += ["! Tight power-flow tolerance.", "Set Tolerance=1e-10", ""]

    folder.mkdir(parents=True, exist_ok=True)
    for f, (comment, rows) in files.items():
        if rows:
            (folder / f).write_text("\n".join([*head, *comment, *rows]) + "\n")
    if coords:
        (folder / "buscoords.csv").write_text("".join(f"{b},{_num(x)},{_num(y)}\n" for b, x, y in coords))
    master.write_text("\n".join(body))
    return master.resolve()


def public_power_flow() -> tuple[dict[str, complex], float, float]:
    """Solve the compiled circuit with its controls off and a 1e-10 tolerance; return each node's complex
    voltage (pu of its bus's base, by ``bus.node`` name) and the substation P (kW) and Q (kvar)."""
    from mpdopf_pyomo.errors import ValidationFailed
    from mpdopf_pyomo.network.opendss import engine, substation_power_kw

    dss = engine()
    dss.Text.Command("Set ControlMode=OFF")
    dss.Text.Command("Set Tolerance=1e-10")
    dss.Solution.Solve()
    if not dss.Solution.Converged():
        raise ValidationFailed("OpenDSS power flow did not converge")
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    v = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
    base = {}
    for b in dss.Circuit.AllBusNames():
        dss.Circuit.SetActiveBus(b)
        base[b.lower()] = dss.Bus.kVBase() * 1000.0
    volts = {n: complex(v[2 * i], v[2 * i + 1]) / base[n.split(".", 1)[0]] for i, n in enumerate(names)}
    p, q = substation_power_kw()
    return volts, p, q


def _add_buscoords(net: Network, path: str | Path) -> None:
    """Bus coordinates from a file OpenDSS's ``Buscoords`` command reads (the model's run script loads it,
    not its master); OpenDSS parses it on the circuit still compiled, and the buses take its X/Y."""
    from mpdopf_pyomo.network.opendss import engine

    path = Path(path).resolve()
    if not path.is_file():
        raise CaseError(f"{path}: bus coordinate file not found")
    dss = engine()
    try:
        dss.Text.Command(f"Buscoords [{path}]")
    except Exception as exc:
        raise CaseError(f"{path}: OpenDSS could not read the bus coordinates: {' '.join(str(exc).split())}") from None
    for name, bus in net.buses.items():
        dss.Circuit.SetActiveBus(name)
        if dss.Bus.Coorddefined():
            bus.x, bus.y = float(dss.Bus.X()), float(dss.Bus.Y())


def export_feeder(source: str | Path, folder: str | Path, origin: list[str],
                  buscoords: str | Path | None = None) -> dict:
    """Read an OpenDSS feeder at its own operating point (snapshot solve with controls on, the model's
    load multiplier), write it faithfully into ``folder`` and return the source's power flow at those
    fixed taps (controls off): ``{"p_kw", "q_kvar", "volts", "network"}``. The master's header records
    the figures and the regulator taps, so the files say which operating point they are."""
    from mpdopf_pyomo.network.opendss import read_opendss

    net = read_opendss(source, operating_point=True)
    volts, p, q = public_power_flow()
    if buscoords is not None:
        _add_buscoords(net, buscoords)
    taps = [f"{b.name} {' '.join(f'{1 / t:.5f}' for t in b.tap)}" for b in net.branches if b.kind == "regulator"]
    notes = [*origin,
             "Operating point: the base case (the model's own loads, load multiplier 1), regulator taps where",
             "OpenDSS's snapshot solve with its RegControls on put them; written here as FIXED taps"
             + (f" (winding-2 tap per unit: {'; '.join(taps)})." if taps else "."),
             f"The source model's power flow at these taps (controls off): P = {p:.6f} kW, Q = {q:.6f} kvar."]
    write_opendss(net, folder, faithful=True, origin=notes)
    return {"p_kw": p, "q_kvar": q, "volts": volts, "network": net}


def main(argv: list[str] | None = None) -> int:
    """``python -m mpdopf_pyomo.network.export``: write a public OpenDSS feeder as our own files."""
    from mpdopf_pyomo.errors import MpdopfError

    parser = argparse.ArgumentParser(
        prog="python -m mpdopf_pyomo.network.export",
        description="Read an OpenDSS feeder at its operating point and write it back, element by element, as "
                    "our own OpenDSS files (master.dss, lines.dss, ...), regulators at fixed taps.")
    parser.add_argument("--from", dest="source", required=True, help="the feeder's master .dss file")
    parser.add_argument("--to", dest="folder", required=True,
                        help="output folder (absent, empty, or written by this command before)")
    parser.add_argument("--origin", action="append", default=[],
                        help="a header line naming where the numbers come from (repeatable)")
    parser.add_argument("--buscoords", default=None,
                        help="bus coordinate file for OpenDSS's Buscoords command, when the master loads none")
    args = parser.parse_args(argv)
    try:
        out = export_feeder(args.source, args.folder, args.origin, args.buscoords)
    except MpdopfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    net = out["network"]
    print(f"{args.folder}: {len(net.buses)} buses, {len(net.branches)} branches, {len(net.loads)} loads; "
          f"source power flow P = {out['p_kw']:.6f} kW, Q = {out['q_kvar']:.6f} kvar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
