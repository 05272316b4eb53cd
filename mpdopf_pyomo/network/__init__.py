"""The network package: a phase-aware, format-neutral network model, its readers and topology.

* :mod:`.model` - the dataclasses (buses, branches, loads, shunts, DERs, source) in physical units;
* :mod:`.opendss` - the OpenDSS engine helpers (:func:`compile_model`, :func:`solve_power_flow`, ...) and
  :func:`read_opendss`; :mod:`.matpower` - :func:`read_matpower`;
* :mod:`.topology` - :func:`build_tree`, :func:`resolve_branch`, :func:`assign_areas`;
* :mod:`.export` - a network model as an OpenDSS script.

Everything other modules used from the former ``network.py`` is re-exported here, so
``from mpdopf_pyomo import network; network.compile_model(...)`` keeps working.

:data:`NETWORK_READERS` maps each network-file suffix to its reader; every format goes through
:func:`.reduce.reduce_balanced` in the case loader.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

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
    "Branch", "Bus", "Der", "Load", "Network", "Shunt", "Source", "NETWORK_READERS", "MAX_REDIRECT_DEPTH",
    "MAX_REDIRECTS", "assign_areas", "build_tree", "bus_voltages_pu", "check_includes", "compile_model",
    "engine", "read_network_file", "read_opendss", "resolve_branch", "solve_power_flow", "substation_power_kw",
]

# ---------------------------------------------------------------------------------------------------------
# Network files by format (issue 11): a reader per suffix, each returning the phase-aware Network
# ---------------------------------------------------------------------------------------------------------
from mpdopf_pyomo.network import matpower as _matpower  # noqa: E402

#: Reader of each network-file suffix; each returns the phase-aware :class:`Network` that
#: :func:`.reduce.reduce_balanced` converts. An OpenDSS feeder's regulator taps and capacitor steps are
#: those of OpenDSS's own snapshot solve with its controls on, at the feeder's own load level (the model's
#: load multiplier, normally 1 = its nominal loads), held fixed during the OPF (docs/src/opendss.md).
NETWORK_READERS: dict[str, Callable[[Path], Network]] = {
    ".dss": functools.partial(read_opendss, operating_point=True),
    ".m": _matpower.read_matpower,
}


def read_network_file(path: str | Path) -> Network:
    """Read a network file with the reader of its suffix (:data:`NETWORK_READERS`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in NETWORK_READERS:
        raise CaseError(f"{path}: unknown network format {path.suffix!r} (known: {', '.join(NETWORK_READERS)})")
    return NETWORK_READERS[suffix](path)
