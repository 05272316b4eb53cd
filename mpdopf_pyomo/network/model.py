"""The phase-aware, format-neutral network model that every reader (OpenDSS, MATPOWER) produces.

Physical units, each bus on its own voltage base. Phases are 1, 2, 3 (a, b, c), a tuple of ints. Fields
added after the first version each have a default that keeps the original meaning: ``Branch.phases2`` and
``Branch.center_tap`` (centre-tap service transformers, whose secondary nodes 1 and 2 are the two 120 V
halves, not phases), ``Branch.elements`` (the OpenDSS elements of a bank of single-phase units merged into
one branch), ``Load.kv_rated``, ``Source.z_ohm`` (the source impedance; None = stiff),
``Branch.ppm_antifloat`` and ``Branch.ct_zsc_ohm``/``ct_kv``.
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
    #: bus2's nodes when they differ from ``phases`` (a centre-tap secondary: (1, 2)); None = ``phases``.
    phases2: tuple[int, ...] | None = None
    #: a single-phase centre-tap service transformer (primary phase -> split-phase 120/240 V secondary);
    #: ``z_ohm`` (1 x 1) is then the impedance seen by a load across the whole secondary.
    center_tap: bool = False
    #: the source elements merged into this branch (a bank of single-phase units); () = just ``name``.
    elements: tuple[str, ...] = ()
    #: OpenDSS's anti-floating admittance of a transformer (``ppm_antifloat``: parts per million added to
    #: the imaginary part of each terminal's self-admittance; OpenDSS's default is 1). It changes a flow by
    #: about 1e-6; the balanced reduction ignores it, the faithful export writes it back. 0 elsewhere.
    ppm_antifloat: float = 0.0
    #: a transformer's magnetising current and no-load loss (OpenDSS ``%imag``, ``%noloadloss``: percent of
    #: ``kva`` at rated voltage, a constant-impedance shunt); 0 elsewhere.
    imag_pct: float = 0.0
    noload_pct: float = 0.0
    #: a centre-tap unit wired as the 8500's (X1-N on winding 2, N-X2 on winding 3, equal kVAs and secondary
    #: taps): the short-circuit impedances (Z_HL, Z_HT, Z_LT, ohm) referred to the half winding at its tapped
    #: voltage ``ct_kv`` (kV), what the exact three-winding model needs; None on any other wiring.
    ct_zsc_ohm: tuple[complex, complex, complex] | None = None
    ct_kv: float = math.nan


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
    #: the kV the kW/kvar are rated at (OpenDSS ``kV``: line-to-line for 2/3-phase and delta loads,
    #: line-to-neutral for single-phase wye); NaN = the bus's own base.
    kv_rated: float = math.nan
    #: OpenDSS ``Status=fixed`` or ``exempt``: the global load multiplier leaves the load at its kW/kvar (24
    #: of the IEEE 8500's loads); the three-phase tables honour it, the balanced reduction scales every load.
    fixed: bool = False


@dataclass
class Shunt:
    """A shunt capacitor (kvar > 0) or reactor (kvar < 0): total kvar at its rated voltage."""

    name: str
    bus: str
    phases: tuple[int, ...]
    conn: str
    kvar: float
    kv_ln_rated: float
    #: a shunt conductance: kW drawn at the rated voltage (constant impedance); 0 for a capacitor or reactor.
    kw: float = 0.0


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
    #: the source's own series impedance (3 x 3, complex, ohm; OpenDSS's Vsource short-circuit impedance);
    #: None = stiff (what the balanced model and MATPOWER cases assume).
    z_ohm: np.ndarray | None = None


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
