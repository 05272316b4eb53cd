"""The phase-aware, format-neutral network model (issue 11 contract, /work/wt/notes/NETWORK_CONTRACT.md).

Physical units, each bus on its own voltage base. Phases are 1, 2, 3 (a, b, c), a tuple of ints.
Placeholder written by the MATPOWER helper exactly as the contract gives it, until NET's model.py lands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np


@dataclass
class Bus:
    """A bus: its voltage base (line-to-neutral kV), phases and optional coordinates."""

    name: str
    kv_ln: float
    phases: tuple[int, ...]
    x: float = math.nan
    y: float = math.nan


@dataclass
class Branch:
    """A series element. ``z_ohm`` (n x n, complex) is the whole branch's series impedance referred to bus2's
    voltage level; ``y_shunt_s`` (n x n, complex) the TOTAL shunt admittance in siemens (pi model, half at
    each end); ``tap`` per phase the off-nominal ratio on the bus1 side (|V1|/|V2| = tap at no load)."""

    name: str
    kind: Literal["line", "transformer", "regulator", "switch", "reactor"]
    bus1: str
    bus2: str
    phases: tuple[int, ...]
    z_ohm: np.ndarray
    y_shunt_s: np.ndarray
    tap: np.ndarray
    conn: tuple[str, str] = ("wye", "wye")
    kva: float = math.nan
    normally_open: bool = False


@dataclass
class Load:
    """A load: total kW/kvar over its phases at nominal voltage and its ZIP fractions (P: z, i, p; Q: z, i, p)."""

    name: str
    bus: str
    phases: tuple[int, ...]
    conn: Literal["wye", "delta"]
    kw: float
    kvar: float
    zip: tuple[float, float, float, float, float, float]
    vminpu: float = 0.95
    vmaxpu: float = 1.05
    shape: str | None = None


@dataclass
class Shunt:
    """A shunt capacitor (kvar > 0) or reactor (kvar < 0): total kvar at its rated voltage."""

    name: str
    bus: str
    phases: tuple[int, ...]
    conn: str
    kvar: float
    kv_ln_rated: float


@dataclass
class Der:
    """A PV, battery or generator: kW is PV Pmpp / battery kW rated / generator kW."""

    name: str
    kind: Literal["pv", "battery", "generator"]
    bus: str
    phases: tuple[int, ...]
    kw: float
    kva: float
    kwh: float = math.nan
    kwh_stored: float = math.nan
    kvar: float = 0.0
    shape: str | None = None


@dataclass
class Source:
    """The substation: a stiff voltage source at ``bus``."""

    bus: str
    kv_ll: float
    pu: float
    angle_deg: float = 0.0


@dataclass
class Network:
    """A whole network as read from its file (OpenDSS or MATPOWER)."""

    name: str
    path: Path
    fmt: Literal["opendss", "matpower"]
    source: Source
    frequency_hz: float
    buses: dict[str, Bus]
    branches: list[Branch]
    loads: list[Load]
    shunts: list[Shunt]
    ders: list[Der]
    profiles: dict[str, np.ndarray]
    notes: list[str]
