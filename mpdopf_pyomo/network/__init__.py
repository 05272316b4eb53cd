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

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Bus, Der, Load, Network, Shunt, Source
from mpdopf_pyomo.network.opendss import (
    MAX_REDIRECT_DEPTH,
    MAX_REDIRECTS,
    _bus_name,
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
    """Compile the model and read its source, buses, lines, loads and capacitor injections.

    ``s_kva_hint`` (three-phase base, kVA) only scales the shunt-susceptance check.
    """
    path = compile_model(path)
    try:
        return _read_tables(path, s_kva_hint)
    except UnicodeDecodeError as exc:  # OpenDSS keeps bytes; its Python interface decodes names as UTF-8
        raise CaseError(f"{path}: an element or bus name of the model is not UTF-8 text (byte {exc.start} of "
                        f"{exc.object[:40]!r}); write the model in UTF-8") from None


def _read_tables(path: Path, s_kva_hint: float) -> NetworkTables:
    """The body of :func:`read_network` on the compiled circuit."""
    dss = engine()
    where = str(path)

    # --- element classes ---------------------------------------------------------------------------
    vsources: list[str] = []
    for full in dss.Circuit.AllElementNames():
        cls, _, name = full.partition(".")
        cls_l = cls.lower()
        if cls_l == "vsource":
            vsources.append(name)
        elif cls_l in ("line", "load", "generator") or cls_l in _IGNORED_CLASSES:
            continue
        else:
            raise CaseError(
                f"{where}: element {full}: class {cls} is not supported (a network model holds one Vsource, "
                "three-phase Lines, constant-power Loads and kW=0 Generators as fixed capacitor injections)"
            )
    if len(vsources) != 1:
        raise CaseError(f"{where}: the model needs exactly one Vsource (the substation), found {len(vsources)}")

    dss.Vsources.Name(vsources[0])
    source_kv_ll = float(dss.Vsources.BasekV())
    source_pu = float(dss.Vsources.PU())
    dss.Circuit.SetActiveElement(f"Vsource.{vsources[0]}")
    root = _bus_name(dss.CktElement.BusNames()[0])

    # --- buses -------------------------------------------------------------------------------------
    names = [b.lower() for b in dss.Circuit.AllBusNames()]
    kv = np.empty(len(names))
    xs = np.full(len(names), np.nan)
    ys = np.full(len(names), np.nan)
    for i, b in enumerate(names):
        dss.Circuit.SetActiveBus(b)
        kv[i] = dss.Bus.kVBase()
        if dss.Bus.Coorddefined():
            xs[i], ys[i] = dss.Bus.X(), dss.Bus.Y()
    buses = pd.DataFrame({"kv_base_ln": kv, "x": xs, "y": ys}, index=pd.Index(names, name="bus"))
    # The source bus node voltages also include the Vsource's internal bus ("sourcebus"-style names are
    # only created when bus1 is not given); nothing to drop here.

    # --- lines -------------------------------------------------------------------------------------
    z_base = (source_kv_ll**2) * 1000.0 / s_kva_hint
    rows = []
    i = dss.Lines.First()
    while i:
        name = dss.Lines.Name().lower()
        nph = dss.Lines.Phases()
        if nph != 3:
            raise CaseError(f"{where}: line {name}: {nph} phase(s); the model must be balanced three-phase")
        # Open terminal = open tie: treated as absent.
        if any(dss.CktElement.IsOpen(t, 0) for t in (1, 2)):
            i = dss.Lines.Next()
            continue
        length = dss.Lines.Length()
        rmat = np.asarray(dss.Lines.RMatrix()).reshape(3, 3) * length
        xmat = np.asarray(dss.Lines.XMatrix()).reshape(3, 3) * length
        cmat = np.asarray(dss.Lines.CMatrix()).reshape(3, 3) * length  # nF
        # Positive sequence of a (symmetric) 3x3 matrix: mean self minus mean mutual term. Exact for
        # lines given by sequence impedances; the balanced equivalent for transposed lines.
        r1 = rmat.trace() / 3 - (rmat.sum() - rmat.trace()) / 6
        x1 = xmat.trace() / 3 - (xmat.sum() - xmat.trace()) / 6
        c1_nf = cmat.trace() / 3 - (cmat.sum() - cmat.trace()) / 6
        b_pu = 2 * math.pi * dss.Solution.Frequency() * c1_nf * 1e-9 * z_base
        if abs(b_pu) > SHUNT_B_TOL_PU:
            raise CaseError(
                f"{where}: line {name}: shunt capacitance (B = {b_pu:.3g} pu) is not modelled by the "
                "optimisation; give the line c1=0 c0=0"
            )
        if not (r1 >= 0 and x1 >= 0) or (r1 == 0 and x1 == 0):
            raise CaseError(f"{where}: line {name}: series impedance {r1:g} + j{x1:g} ohm must be positive")
        rows.append((name, _bus_name(dss.Lines.Bus1()), _bus_name(dss.Lines.Bus2()), r1, x1))
        i = dss.Lines.Next()
    lines = pd.DataFrame(rows, columns=["name", "bus1", "bus2", "r_ohm", "x_ohm"]).set_index("name")

    # --- loads -------------------------------------------------------------------------------------
    rows = []
    i = dss.Loads.First()
    while i:
        name = dss.Loads.Name().lower()
        nph = dss.Loads.Phases()
        model = dss.Loads.Model()
        if nph != 3:
            raise CaseError(f"{where}: load {name}: {nph} phase(s); the model must be balanced three-phase")
        if model != 1:
            raise CaseError(
                f"{where}: load {name}: model={model}; the optimisation uses constant-power loads (model=1)"
            )
        rows.append((name, _bus_name(dss.CktElement.BusNames()[0]), dss.Loads.kW(), dss.Loads.kvar()))
        i = dss.Loads.Next()
    loads = pd.DataFrame(rows, columns=["name", "bus", "kw", "kvar"]).set_index("name")

    # --- fixed capacitor injections (Generators with kW = 0) ---------------------------------------
    rows = []
    i = dss.Generators.First()
    while i:
        name = dss.Generators.Name().lower()
        if dss.Generators.Phases() != 3:
            raise CaseError(f"{where}: generator {name}: the model must be balanced three-phase")
        if dss.Generators.kW() != 0 or dss.Generators.Model() != 1:
            raise CaseError(
                f"{where}: generator {name}: only kW=0, model=1 generators (fixed capacitor injections) "
                "are supported"
            )
        rows.append((name, _bus_name(dss.CktElement.BusNames()[0]), dss.Generators.kvar()))
        i = dss.Generators.Next()
    capacitors = pd.DataFrame(rows, columns=["name", "bus", "kvar"]).set_index("name")

    return NetworkTables(
        path=path,
        root=root,
        source_kv_ll=source_kv_ll,
        source_pu=source_pu,
        buses=buses,
        lines=lines,
        loads=loads,
        capacitors=capacitors,
    )
