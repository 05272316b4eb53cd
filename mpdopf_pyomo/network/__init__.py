"""The network package: a phase-aware, format-neutral network model, its readers and topology.

* :mod:`.model` - the dataclasses (buses, branches, loads, shunts, DERs, source) in physical units;
* :mod:`.opendss` - the OpenDSS engine helpers (:func:`compile_model`, :func:`solve_power_flow`, ...) and
  :func:`read_opendss`; :mod:`.matpower` - :func:`read_matpower`;
* :mod:`.topology` - :func:`build_tree`, :func:`resolve_branch`, :func:`assign_areas`;
* :mod:`.export` - a network model as an OpenDSS script.

Everything other modules used from the former ``network.py`` is re-exported here, so
``from mpdopf_pyomo import network; network.compile_model(...)`` keeps working.

:func:`read_network` is the former strict reader of the hand-made balanced model (one ``Vsource``,
balanced three-phase ``Line`` objects without shunt capacitance, three-phase constant-power ``Load``
objects and ``kW=0`` ``Generator`` objects as fixed capacitor injections; anything else is an error):
case.py uses it until it moves to :func:`read_opendss` and the balanced reduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Bus, Der, Load, Network, Shunt, Source
from mpdopf_pyomo.network.opendss import (
    MAX_REDIRECT_DEPTH,
    MAX_REDIRECTS,
    bus_voltages_pu,
    check_includes,
    compile_model,
    engine,
    read_opendss,
    solve_power_flow,
    substation_power_kw,
)
from mpdopf_pyomo.network.topology import assign_areas, build_tree, resolve_branch

__all__ = [
    "Branch", "Bus", "Der", "Load", "Network", "Shunt", "Source", "NetworkTables", "MAX_REDIRECT_DEPTH",
    "MAX_REDIRECTS", "assign_areas", "build_tree", "bus_voltages_pu", "check_includes", "compile_model",
    "engine", "read_network", "read_opendss", "resolve_branch", "solve_power_flow", "substation_power_kw",
]

#: Circuit-element classes that carry no electrical meaning for the optimisation and are skipped.
_IGNORED_CLASSES = {"energymeter", "monitor", "sensor"}
#: Largest total line shunt susceptance (pu) still treated as "no shunt" (OpenDSS switch lines carry a
#: few nF per km; the optimisation has no shunt term).
SHUNT_B_TOL_PU = 1e-6


@dataclass
class NetworkTables:
    """A compiled model in physical units, before orientation (what :func:`read_network` returns).

    * ``lines``: index ``name``; ``bus1``, ``bus2``, ``r_ohm``, ``x_ohm`` (positive-sequence series
      impedance of the whole line, per phase, ohm). Lines with shunt capacitance are rejected.
    * ``loads``: index ``name``; ``bus``, ``kw``, ``kvar`` (three-phase totals at nominal voltage).
    * ``capacitors``: index ``name``; ``bus``, ``kvar`` (three-phase fixed injection).
    * ``buses``: index ``bus``; ``kv_base_ln``, ``x``, ``y`` (NaN when the model gives no coordinates).
    """

    path: Path
    root: str
    source_kv_ll: float
    source_pu: float
    buses: pd.DataFrame
    lines: pd.DataFrame
    loads: pd.DataFrame
    capacitors: pd.DataFrame


def read_network(path: str | Path, s_kva_hint: float = 1000.0) -> NetworkTables:
    """Read the model with :func:`read_opendss` and check it is the strict balanced kind (see the module
    docstring); return its source, buses, lines, loads and capacitor injections as tables.

    ``s_kva_hint`` (three-phase base, kVA) only scales the shunt-susceptance check.
    """
    net = read_opendss(path)
    where = str(net.path)
    dss = engine()  # the model is still compiled: its element classes and generator models
    for full in dss.Circuit.AllElementNames():
        cls = full.partition(".")[0]
        if cls.lower() not in ("vsource", "line", "load", "generator") and cls.lower() not in _IGNORED_CLASSES:
            raise CaseError(
                f"{where}: element {full}: class {cls} is not supported (a network model holds one Vsource, "
                "three-phase Lines, constant-power Loads and kW=0 Generators as fixed capacitor injections)"
            )

    z_base = (net.source.kv_ll**2) * 1000.0 / s_kva_hint
    rows = []
    for b in net.branches:  # lines and switches only (the class check above)
        if len(b.phases) != 3 or b.elements:
            n = len(b.elements) if b.elements else len(b.phases)
            raise CaseError(f"{where}: line {b.name}: {1 if b.elements else n} phase(s); the model must be "
                            "balanced three-phase")
        if b.normally_open:  # an open tie: treated as absent
            continue
        z1 = _positive_sequence(b.z_ohm)
        b_pu = _positive_sequence(b.y_shunt_s).imag * z_base
        if abs(b_pu) > SHUNT_B_TOL_PU:
            raise CaseError(
                f"{where}: line {b.name}: shunt capacitance (B = {b_pu:.3g} pu) is not modelled by the "
                "optimisation; give the line c1=0 c0=0"
            )
        r1, x1 = z1.real, z1.imag
        if not (r1 >= 0 and x1 >= 0) or (r1 == 0 and x1 == 0):
            raise CaseError(f"{where}: line {b.name}: series impedance {r1:g} + j{x1:g} ohm must be positive")
        rows.append((b.name, b.bus1, b.bus2, r1, x1))
    lines = pd.DataFrame(rows, columns=["name", "bus1", "bus2", "r_ohm", "x_ohm"]).set_index("name")

    rows = []
    for ld in net.loads:
        if len(ld.phases) != 3:
            raise CaseError(f"{where}: load {ld.name}: {len(ld.phases)} phase(s); the model must be balanced "
                            "three-phase")
        if tuple(ld.zip) != (0, 0, 1, 0, 0, 1):
            raise CaseError(f"{where}: load {ld.name}: load model with ZIP fractions {tuple(ld.zip)}; the "
                            "optimisation uses constant-power loads (model=1)")
        rows.append((ld.name, ld.bus, ld.kw, ld.kvar))
    loads = pd.DataFrame(rows, columns=["name", "bus", "kw", "kvar"]).set_index("name")

    rows = []
    for d in net.ders:  # generators only (the class check above)
        dss.Generators.Name(d.name)
        if len(d.phases) != 3:
            raise CaseError(f"{where}: generator {d.name}: the model must be balanced three-phase")
        if d.kw != 0 or dss.Generators.Model() != 1:
            raise CaseError(
                f"{where}: generator {d.name}: only kW=0, model=1 generators (fixed capacitor injections) "
                "are supported"
            )
        rows.append((d.name, d.bus, d.kvar))
    capacitors = pd.DataFrame(rows, columns=["name", "bus", "kvar"]).set_index("name")

    buses = pd.DataFrame(
        {"kv_base_ln": [b.kv_ln for b in net.buses.values()], "x": [b.x for b in net.buses.values()],
         "y": [b.y for b in net.buses.values()]},
        index=pd.Index(list(net.buses), name="bus"),
    )
    return NetworkTables(path=net.path, root=net.source.bus, source_kv_ll=net.source.kv_ll,
                         source_pu=net.source.pu, buses=buses, lines=lines, loads=loads, capacitors=capacitors)


def _positive_sequence(m: np.ndarray) -> complex:
    """Positive-sequence value of a symmetric 3 x 3 phase matrix: mean self minus mean mutual term (exact
    for elements given by sequence data; the balanced equivalent of a transposed line)."""
    return complex(np.trace(m) / 3 - (m.sum() - np.trace(m)) / 6)


# ---------------------------------------------------------------------------------------------------------
# Network files by format (issue 11): a reader per suffix, each returning the phase-aware Network
# ---------------------------------------------------------------------------------------------------------
from mpdopf_pyomo.network import matpower as _matpower  # noqa: E402

#: Reader of each network-file suffix. ``None`` marks the balanced OpenDSS reader :func:`read_network`
#: (the case loader's own path, no reduction) until the phase-aware OpenDSS reader lands; then this entry
#: becomes ``opendss.read_opendss`` and every format goes through :func:`reduce.reduce_balanced`.
NETWORK_READERS: dict[str, Callable[[Path], Network] | None] = {
    ".dss": None,
    ".m": _matpower.read_matpower,
}


def read_network_file(path: str | Path) -> Network:
    """Read a network file with the reader of its suffix (:data:`NETWORK_READERS`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in NETWORK_READERS:
        raise CaseError(f"{path}: unknown network format {path.suffix!r} (known: {', '.join(NETWORK_READERS)})")
    reader = NETWORK_READERS[suffix]
    if reader is None:
        raise CaseError(f"{path}: {suffix} networks are read by read_network (balanced model), not as a Network")
    return reader(path)
