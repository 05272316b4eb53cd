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
"""

from __future__ import annotations

import math
import re
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
_FILES = ("master.dss", "lines.dss", "transformers.dss", "loads.dss", "shunts.dss", "ders.dss", "buscoords.csv")


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
        f"New Line.{name} bus1={_nodes(bus1, br.phases)} bus2={_nodes(bus2, br.phases)} phases={n} "
        f"rmatrix={_lower_triangle(z.real)} xmatrix={_lower_triangle(z.imag)} cmatrix={_lower_triangle(c_nf)} "
        "length=1 units=none"
    )


def write_opendss(
    network: Network,
    folder: str | Path,
    dispatch: dict[str, tuple[float, float]] | None = None,
    vminpu: float = VMINPU,
) -> Path:
    """Write ``network`` as an OpenDSS script into ``folder``; return the master file's path.

    ``dispatch`` maps DER names to (kW, kvar) output (generators default to their own kw/kvar, PVs and
    batteries to none). ``folder`` must be absent, empty, or a folder this function wrote before (its
    master.dss starts with :data:`MARKER`); only this module's own file names are (re)written there.
    Compile the master with an absolute path; it solves with ``Solve`` (tolerance set to 1e-10 inside).
    """
    folder = Path(folder)
    master = folder / "master.dss"
    if folder.exists():
        if not folder.is_dir():
            raise CaseError(f"{folder}: not a folder")
        if any(folder.iterdir()):
            ours = master.is_file() and master.read_text(errors="replace").startswith(MARKER)
            if not ours:
                raise CaseError(f"{folder}: folder is not empty and was not written by the OpenDSS export")
    dispatch = dict(dispatch or {})
    unknown = sorted(set(dispatch) - {d.name for d in network.ders})
    if unknown:
        raise CaseError(f"export to OpenDSS: dispatch names unknown DER(s): {', '.join(unknown)}")

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
        _check_name("branch", br.name)
        for b in (br.bus1, br.bus2):
            if b not in buses:
                raise CaseError(f"export to OpenDSS: branch {br.name}: bus {b} is not a bus of the network")
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
        z = tuple(float(v) for v in ld.zip)
        if z == (0.0, 0.0, 1.0, 0.0, 0.0, 1.0):
            model = "model=1"
        elif z == (1.0, 0.0, 0.0, 1.0, 0.0, 0.0):
            model = "model=2"
        elif z == (0.0, 1.0, 0.0, 0.0, 1.0, 0.0):
            model = "model=5"
        else:
            model = "model=8 ZIPV=[" + " ".join(_num(v) for v in z) + " 0]"
        loads.append(
            f"New Load.{ld.name} bus1={_nodes(ld.bus, ld.phases)} phases={n} conn={ld.conn} kV={_num(kv)} "
            f"kW={_num(ld.kw)} kvar={_num(ld.kvar)} {model} vminpu={vminpu} vmaxpu={VMAXPU}"
        )

    # --- shunts and DERs ----------------------------------------------------------------------------
    shunts: list[str] = []
    for sh in network.shunts:
        _check_name("shunt", sh.name)
        n = len(sh.phases)
        kv = sh.kv_ln_rated if (n == 1 and sh.conn == "wye") else sh.kv_ln_rated * math.sqrt(3)
        cls = "Capacitor" if sh.kvar >= 0 else "Reactor"
        shunts.append(
            f"New {cls}.{sh.name} bus1={_nodes(sh.bus, sh.phases)} phases={n} conn={sh.conn} "
            f"kvar={_num(abs(sh.kvar))} kV={_num(kv)}"
        )
    ders: list[str] = []
    for d in network.ders:
        _check_name("DER", d.name)
        if d.name in dispatch:
            p, q = dispatch[d.name]
        elif d.kind == "generator":
            p, q = d.kw, d.kvar
        else:
            ders.append(f"! {d.kind} {d.name} at bus {d.bus}: no dispatch given, not written")
            continue
        n = len(d.phases)
        kv = buses[d.bus].kv_ln if n == 1 else kv_ll(d.bus)
        ders.append(
            f"New Generator.{d.name} bus1={_nodes(d.bus, d.phases)} phases={n} kV={_num(kv)} kW={_num(p)} "
            f"kvar={_num(q)} model=1 vminpu={vminpu} vmaxpu={VMAXPU}"
        )

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
