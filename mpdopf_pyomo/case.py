"""A study case as typed, per-unit tables: what every later stage (blocks, problem, validation) reads.

Per unit: voltages on the network's line-to-neutral base, powers on ``bases.s_kva`` (the three-phase base
of the balanced circuit, i.e. 3 x the per-phase base), impedances on ``bases.z_ohm``. Energies are in
per-unit hours. Prices are in USD/kWh; ``bases.s_kva`` converts per-unit power to kW.

This module holds the types; the loader (``load_case``) fills them from ``cases/*.toml`` and the OpenDSS
model the case names.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd

from mpdopf_pyomo import network
from mpdopf_pyomo.catalog import CASES_DIR, MODELS_DIR, list_cases  # noqa: F401  (light: the `cases` command)
from mpdopf_pyomo.errors import CaseError, one_line


@dataclass(frozen=True)
class Bases:
    """Per-unit bases of the case."""

    v_kv_ll: float  #: line-to-line base voltage, kV
    s_kva: float  #: three-phase base power, kVA (per-unit power x s_kva = kW of the three-phase feeder)
    phases: int = 3

    @property
    def v_kv_ln(self) -> float:
        return self.v_kv_ll / 3**0.5

    @property
    def z_ohm(self) -> float:
        """Impedance base, ohm (per phase): V_LL^2 / S_3ph."""
        return self.v_kv_ll**2 * 1000.0 / self.s_kva


@dataclass
class Settings:
    """Scalar study parameters (Table I and modelling choices); all per unit unless stated."""

    v_sub_pu: float = 1.03  #: substation voltage magnitude, pu
    v_min_pu: float = 0.95
    v_max_pu: float = 1.05
    #: upper limit on each PHASE voltage in the three-phase formulations (None: ``v_max_pu``)
    v_max_phase_pu: float | None = None
    dt_h: float = 1.0  #: period length, hours
    alpha_usd_per_kwh: float = 0.001  #: weight on battery conversion losses, USD per kWh lost
    inverter_limit: Literal["circle", "box"] = "circle"  #: PV/battery reactive limit
    terminal_soc: Literal["hard", "free", "penalty"] = "hard"
    terminal_penalty_usd_per_kwh: float = 0.0  #: used when terminal_soc == "penalty"
    reverse_power: bool = True  #: may the substation export power upstream?


@dataclass
class Case:
    """A loaded study case over a chosen horizon of ``len(profile)`` periods.

    Tables (pandas):

    * ``buses``: index ``bus`` (str, the network model's bus name); columns ``area`` (int, 1-based),
      ``p_load``, ``q_load`` (nominal load, pu; scaled by ``profile.load_mult``), ``q_cap`` (fixed capacitor
      injection, pu; not scaled), ``x``, ``y`` (coordinates for plots, NaN when unknown). A network read
      through the reduction (:mod:`mpdopf_pyomo.network.reduce`; MATPOWER today) adds ``v_base_kv_ln``
      (each bus's own base), ``b_shunt``, the ZIP fractions ``p_zip_*``, ``q_zip_*`` and the network's
      generators as a fixed injection ``p_fixed``, ``q_fixed`` (pu, not scaled by any load multiplier).
    * ``branches``: index ``branch`` (str, the OpenDSS element name without class, e.g. ``l1``); columns
      ``from_bus`` (parent), ``to_bus`` (child), ``r``, ``x`` (series impedance, pu on the to-bus base);
      through the reduction also ``tap`` and ``kind``. Oriented from the
      root; rows in breadth-first order, so a branch's parent branch always comes earlier.
    * ``pvs``: index ``bus``; columns ``p_rated`` (pu, rated active power p_DR), ``s_rated`` (pu).
    * ``batteries``: index ``bus``; columns ``p_rated`` (pu), ``s_rated`` (pu), ``e_rated`` (pu·h),
      ``soc_min``, ``soc_max``, ``soc0`` (fractions of ``e_rated``), ``eta_c``, ``eta_d``.
    * ``profile``: index ``t`` = 1..T; columns ``load_mult``, ``pv_mult`` (multipliers), ``price`` (USD/kWh),
      ``clock_hour`` (0-based hour of day of the period's start).
    * ``load_profiles`` (optional): per-bus load multipliers that replace ``load_mult`` at their buses (from
      the network's LoadShapes and the case file's ``[profiles.loads]``); see :meth:`load_mult_by_bus`.
    """

    name: str
    source: Path  #: the case file
    network_model: Path  #: the network file (OpenDSS master .dss or MATPOWER .m)
    bases: Bases
    settings: Settings
    root: str  #: substation bus
    buses: pd.DataFrame
    branches: pd.DataFrame
    pvs: pd.DataFrame
    batteries: pd.DataFrame
    profile: pd.DataFrame
    cut_branches: list[str] = field(default_factory=list)  #: boundary branches between areas
    description: str = ""
    warnings: list[str] = field(default_factory=list)  #: unusual values the loader accepted (one line each)
    conversion: Any = None  #: the ConversionReport of the reduction (None only for a Case built by hand)
    #: Per-bus load multipliers (index ``t`` like ``profile``, one column per bus that has its own; a bus
    #: without a column follows ``profile.load_mult``). None: every bus follows ``profile.load_mult``.
    load_profiles: pd.DataFrame | None = None
    #: The same per network load (index ``t``, one column per load name of the network file with its own
    #: multiplier): what validation's check (2) applies to each load of the original feeder.
    load_element_profiles: pd.DataFrame | None = None

    @property
    def hours(self) -> int:
        return len(self.profile)

    def load_kw(self) -> np.ndarray:
        """The feeder's active load per period at nominal voltage, kW three-phase (every bus's p_load x its
        multiplier: per-bus profiles included; the network's generators are not loads and not in it)."""
        p = self.buses["p_load"].to_numpy(dtype=float)
        return (p @ self.load_mult_by_bus()) * self.bases.s_kva

    def load_mult_by_bus(self, buses: Any = None) -> np.ndarray:
        """Load multipliers, one row per bus of ``buses`` (default: every bus) and one column per period:
        ``profile.load_mult``, replaced by the bus's own column of ``load_profiles`` where it has one."""
        index = self.buses.index if buses is None else pd.Index(buses)
        lm = self.profile["load_mult"].to_numpy(dtype=float)
        out = np.tile(lm, (len(index), 1))
        if self.load_profiles is not None:
            own = [b for b in self.load_profiles.columns if b in index]
            if own:
                out[index.get_indexer(own)] = self.load_profiles[own].to_numpy(dtype=float).T
        return out

    @property
    def n_areas(self) -> int:
        return int(self.buses["area"].nunique())


# ---------------------------------------------------------------------------------------------------------
# Loader: cases/*.toml (+ the OpenDSS model it names) -> Case
# ---------------------------------------------------------------------------------------------------------


_REQUIRED = object()  #: marks a key without a default


class _Derived(str):
    """A default computed when the case loads (its text says from what)."""


@dataclass(frozen=True)
class Key:
    """One case-file key: its section, unit, default and meaning (this table is the format's reference)."""

    section: str
    name: str
    unit: str
    default: Any
    doc: str
    kind: str = "float"  #: float | int | str | bool | buses | bus_map | cut_list | mult_list | price_list | hour_list

    @property
    def path(self) -> str:
        return f"{self.section}.{self.name}"


_S = Settings()  # the defaults of [settings] are the Settings dataclass defaults

#: Every key a case file may hold. ``docs/case-format.md`` describes the same table (a test checks it).
SCHEMA: tuple[Key, ...] = (
    Key("case", "name", "-", _Derived("file name without .toml"), "Case name shown in reports.", "str"),
    Key("case", "description", "-", "", "One line shown by `cases` and `cases show`.", "str"),
    Key("case", "network", "path", _REQUIRED,
        "Network file, relative to the case file: an OpenDSS master (`.dss`) or a MATPOWER case (`.m`).", "str"),
    Key("case", "default_hours", "periods", _Derived("length of profiles.daily"),
        "Horizon used when no hours (`--hours`) is given.", "int"),
    Key("bases", "v_kv_ll", "kV", _Derived("the Vsource's basekV"),
        "Line-to-line base voltage; every bus must have it.",
        "float"),
    Key("bases", "s_kva", "kVA", 1000.0, "Three-phase base power (= 3 x the per-phase base).", "float"),
    Key("settings", "v_sub_pu", "pu", _S.v_sub_pu, "Substation (source bus) voltage magnitude.", "float"),
    Key("settings", "v_min_pu", "pu", _S.v_min_pu, "Lower bus voltage limit.", "float"),
    Key("settings", "v_max_pu", "pu", _S.v_max_pu, "Upper bus voltage limit.", "float"),
    Key("settings", "v_max_phase_pu", "pu", _Derived("v_max_pu"),
        "Upper limit on each phase voltage in the three-phase formulations (`3ph-exact`); the balanced ones "
        "do not read it.", "float"),
    Key("settings", "dt_h", "h", _S.dt_h, "Period length (one profile entry per period).", "float"),
    Key("settings", "alpha_usd_per_kwh", "USD/kWh", _S.alpha_usd_per_kwh,
        "Weight on battery conversion losses (discourages simultaneous charge and discharge).", "float"),
    Key("settings", "inverter_limit", "-", _S.inverter_limit,
        "PV and battery reactive limit: `circle` (P^2 + Q^2 <= S^2) or `box` (|Q| <= sqrt(S^2 - P_rated^2)).",
        "str"),
    Key("settings", "terminal_soc", "-", _S.terminal_soc,
        "End-of-horizon battery energy: `hard` (B^T = B^0), `free`, or `penalty`.", "str"),
    Key("settings", "terminal_penalty_usd_per_kwh", "USD/kWh", _S.terminal_penalty_usd_per_kwh,
        "Price on the terminal energy shortfall max(0, B^0 - B^T) when terminal_soc = `penalty`.", "float"),
    Key("settings", "reverse_power", "-", _S.reverse_power,
        "May the substation export power upstream (P_sub < 0)?", "bool"),
    Key("pv", "buses", "bus names", [], "Buses with a PV inverter (each at most once).", "buses"),
    Key("pv", "fraction", "of load buses", 0.0,
        "Instead of `buses`: PVs at this fraction of the load buses, largest nominal P first (ties by bus name "
        "in natural order), round half up, at least one; 0 = use `buses`.", "float"),
    Key("pv", "p_factor", "p_L", 0.33, "Rated PV power p_DR = p_factor x nominal load P of the bus.", "float"),
    Key("pv", "s_factor", "p_DR", 1.2, "Inverter rating S_DR = s_factor x p_DR.", "float"),
    Key("pv", "p_rated_kw", "kW (3-phase)", {}, "Explicit p_DR per bus, overriding p_factor.", "bus_map"),
    Key("pv", "s_rated_kva", "kVA (3-phase)", {}, "Explicit S_DR per bus, overriding s_factor.", "bus_map"),
    Key("battery", "buses", "bus names", [], "Buses with a battery (each at most once).", "buses"),
    Key("battery", "fraction", "of load buses", 0.0,
        "Instead of `buses`: batteries at this fraction of the load buses, ranked as `pv.fraction`; "
        "0 = use `buses`.", "float"),
    Key("battery", "p_factor", "p_L", 0.33, "Rated power P_BR = p_factor x nominal load P of the bus.", "float"),
    Key("battery", "s_factor", "P_BR", 1.2, "Inverter rating S_BR = s_factor x P_BR.", "float"),
    Key("battery", "e_hours", "h", 4.0, "Energy rating B_R = e_hours x P_BR (time to full charge).", "float"),
    Key("battery", "p_rated_kw", "kW (3-phase)", {}, "Explicit P_BR per bus, overriding p_factor.", "bus_map"),
    Key("battery", "s_rated_kva", "kVA (3-phase)", {}, "Explicit S_BR per bus, overriding s_factor.", "bus_map"),
    Key("battery", "e_rated_kwh", "kWh (3-phase)", {}, "Explicit B_R per bus, overriding e_hours.", "bus_map"),
    Key("battery", "soc_min", "fraction of B_R", 0.30, "Lowest state of charge.", "float"),
    Key("battery", "soc_max", "fraction of B_R", 0.95, "Highest state of charge.", "float"),
    Key("battery", "soc0", "fraction of B_R", 0.625, "State of charge at the start of the horizon.", "float"),
    Key("battery", "eta_c", "-", 0.95, "Charging efficiency.", "float"),
    Key("battery", "eta_d", "-", 0.95, "Discharging efficiency.", "float"),
    Key("areas", "cut_branches", "branches", [],
        "Boundary branches, each a branch name or a pair of bus names; the part below the k-th is area k+1.",
        "cut_list"),
    Key("profiles.daily", "load_mult", "-", _REQUIRED,
        "Load multiplier per period from clock hour 0 (scales P_L and Q_L).", "mult_list"),
    Key("profiles.daily", "pv_mult", "-", _REQUIRED, "PV output per period as a fraction of p_DR.", "mult_list"),
    Key("profiles.daily", "price_usd_per_kwh", "USD/kWh", _REQUIRED, "Price of substation energy per period.",
        "price_list"),
    Key("profiles.loads", "file", "path", "",
        "CSV of per-bus load multipliers, relative to the case file: a header row naming buses (or LoadShapes "
        "of the network, for every load on that shape), then one row per period of `profiles.daily`; a bus's "
        "loads follow its column instead of `load_mult`.", "str"),
    Key("profiles.horizon.N", "clock_hour", "h", _Derived("the middle N periods of the day"),
        "Clock hour of each of the N periods (for reports); its first is the table's start: "
        "a run with another `start` (`--start`) cuts profiles.daily instead.", "hour_list"),
    Key("profiles.horizon.N", "load_mult", "-", _REQUIRED, "Exact load multipliers for an N-period run.",
        "mult_list"),
    Key("profiles.horizon.N", "pv_mult", "-", _REQUIRED, "Exact PV multipliers for an N-period run.", "mult_list"),
    Key("profiles.horizon.N", "price_usd_per_kwh", "USD/kWh", _REQUIRED, "Exact prices for an N-period run.",
        "price_list"),
)

_SECTIONS: dict[str, dict[str, Key]] = {}
for _k in SCHEMA:
    _SECTIONS.setdefault(_k.section, {})[_k.name] = _k

#: Longest horizon and profile, in periods (a leap year of hourly periods).
MAX_PERIODS = 8784
#: Longest case name (it becomes part of the output folder's name, which a file system limits to 255 bytes).
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class Bound:
    """Range check of a number (or of every number of a list or bus table) of the case file.

    A value outside ``lo..hi`` is rejected (it is impossible or would break the per-unit scaling of the
    problem); a value inside but outside ``warn_lo..warn_hi`` is accepted with a one-line warning.
    ``docs/case-format.md`` (section Bounds) lists every bound and its reason (a test checks it).
    """

    lo: float
    hi: float
    lo_open: bool = False  #: lo itself is rejected
    warn_lo: float = -math.inf
    warn_hi: float = math.inf
    why: str = ""  #: shown with a rejection

    def accepts(self, v: float) -> bool:
        return (self.lo < v if self.lo_open else self.lo <= v) and v <= self.hi

    @staticmethod
    def fmt(x: float) -> str:
        """A bound as written in messages and docs: ``1e7``, ``0.001``, ``-1e4``."""
        text = f"{x:g}"
        return text.replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")

    def violation(self, v: float) -> str:
        """What is wrong with a rejected ``v``: ``must be positive, got -1 (allowed: (0, 100])``."""
        if v > self.hi:
            need = f"must be <= {self.fmt(self.hi)}"
        elif self.lo == 0:
            need = "must be positive" if self.lo_open else "must be >= 0"
        else:
            need = f"must be {'>' if self.lo_open else '>='} {self.fmt(self.lo)}"
        return f"{need}, got {_num(v)} (allowed: {self.interval()})"

    def usual(self) -> str:
        """The warning range as written in messages and docs (``0.9..1.1``, ``<= 3``, ``>= 0.5``; "" if none)."""
        lo = "" if math.isinf(self.warn_lo) else self.fmt(self.warn_lo)
        hi = "" if math.isinf(self.warn_hi) else self.fmt(self.warn_hi)
        return f"{lo}..{hi}" if lo and hi else (f">= {lo}" if lo else (f"<= {hi}" if hi else ""))

    def interval(self) -> str:
        hi = "inf)" if math.isinf(self.hi) else f"{self.fmt(self.hi)}]"
        return f"{'(' if self.lo_open else '['}{self.fmt(self.lo)}, {hi}"


_V_WHY = "a bus voltage outside 0.5..1.5 pu is no operating point of a distribution feeder"
_PRICE_WHY = "above 10,000 USD/kWh, a thousand times any market's price cap, the number is a unit error"
#: The bounds of the case file's numbers, by key (``profiles.horizon.N`` keys share those of ``profiles.daily``).
BOUNDS: dict[str, Bound] = {
    "case.default_hours": Bound(1, MAX_PERIODS),
    "bases.v_kv_ll": Bound(0, 1000, lo_open=True, why="no AC network runs above 1000 kV"),
    "bases.s_kva": Bound(1, 1e7, why="a base outside 1 kVA .. 10 GVA puts a feeder's per-unit powers far from 1"),
    "settings.v_sub_pu": Bound(0.5, 1.5, warn_lo=0.9, warn_hi=1.1, why=_V_WHY),
    "settings.v_min_pu": Bound(0.5, 1.5, warn_lo=0.85, warn_hi=1.1, why=_V_WHY),
    "settings.v_max_pu": Bound(0.5, 1.5, warn_lo=0.9, warn_hi=1.15, why=_V_WHY),
    "settings.v_max_phase_pu": Bound(0.5, 1.5, warn_lo=0.9, warn_hi=1.15, why=_V_WHY),
    "settings.dt_h": Bound(0.001, 24, why="a period is between 3.6 s and one day"),
    "settings.alpha_usd_per_kwh": Bound(0, 1e4, warn_hi=10, why=_PRICE_WHY),
    "settings.terminal_penalty_usd_per_kwh": Bound(0, 1e4, warn_hi=100, why=_PRICE_WHY),
    "pv.p_factor": Bound(0, 100, lo_open=True, warn_hi=3, why="a DER rated over 100 x its bus load is a unit error"),
    "pv.s_factor": Bound(1, 10, warn_hi=2, why="an inverter is rated 1 to 10 times its active power"),
    "pv.p_rated_kw": Bound(0, math.inf, lo_open=True),
    "pv.fraction": Bound(0, 1, why="a fraction of the load buses"),
    "battery.fraction": Bound(0, 1, why="a fraction of the load buses"),
    "pv.s_rated_kva": Bound(0, math.inf, lo_open=True),
    "battery.p_factor": Bound(0, 100, lo_open=True, warn_hi=3,
                              why="a DER rated over 100 x its bus load is a unit error"),
    "battery.s_factor": Bound(1, 10, warn_hi=2, why="an inverter is rated 1 to 10 times its active power"),
    "battery.e_hours": Bound(0, 1000, lo_open=True, warn_hi=24,
                             why="a battery that takes over 1000 h to charge is a unit error"),
    "battery.p_rated_kw": Bound(0, math.inf, lo_open=True),
    "battery.s_rated_kva": Bound(0, math.inf, lo_open=True),
    "battery.e_rated_kwh": Bound(0, math.inf, lo_open=True),
    "battery.soc_min": Bound(0, 1, why="a fraction of the energy rating"),
    "battery.soc_max": Bound(0, 1, why="a fraction of the energy rating"),
    "battery.soc0": Bound(0, 1, why="a fraction of the energy rating"),
    "battery.eta_c": Bound(0, 1, lo_open=True, warn_lo=0.5, why="an efficiency"),
    "battery.eta_d": Bound(0, 1, lo_open=True, warn_lo=0.5, why="an efficiency"),
    "profiles.daily.load_mult": Bound(0, 100, warn_hi=3, why="a feeder carrying 100 x its nominal load has no "
                                                               "power-flow solution"),
    "profiles.daily.pv_mult": Bound(0, 1, why="PV output as a fraction of its rating; more than 1 is impossible"),
    "profiles.daily.price_usd_per_kwh": Bound(-1e4, 1e4, warn_lo=-10, warn_hi=10, why=_PRICE_WHY),
    "profiles.daily.clock_hour": Bound(0, MAX_PERIODS),
}
#: Per-unit limits of every PV and battery rating, however it was given (factor or explicit kW/kVA/kWh):
#: P and S within (RATING_PU_MIN, RATING_PU_MAX] pu of ``bases.s_kva``, S/P at most 10, E/P at most 1000 h.
RATING_PU_MIN = 1e-9
RATING_PU_MAX = 100.0
#: Total nominal feeder load (pu of ``bases.s_kva``) outside this range draws a warning: the base is far from
#: the feeder's size, which makes IPOPT's absolute tolerances too loose or too tight.
LOAD_PU_WARN = (0.01, 100.0)


def exc_message(exc: BaseException) -> str:
    """An exception's text as one line: whitespace runs (newlines too) collapsed, control characters escaped."""
    return one_line(" ".join(str(exc).split()))


def _short(v: Any, limit: int = 60) -> str:
    """``repr(v)``, cut to ``limit`` characters (a message quotes a bad value, not a whole list)."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(v: float) -> str:
    """A number as a message quotes it (``1e+300``; an integer too large for a float by its first digits)."""
    try:
        return f"{v:g}"
    except OverflowError:
        text = str(v)
        return f"{text[:8]}... ({len(text)} digits)"


def _key(k: str, limit: int = 60) -> str:
    """A key of the file as it appears in a message (cut to ``limit``; ``one_line`` escapes the rest)."""
    return k if len(k) <= limit else k[: limit - 3] + "..."


def _is_file(p: Path) -> bool:
    """``p.is_file()`` that is False, not an exception, for names the OS rejects (NUL byte, too long...)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def resolve_case_path(spec: str | Path) -> Path:
    """``spec`` as a case file: an existing path, or the name of a bundled case in ``cases/``."""
    p = Path(spec)
    if _is_file(p):
        return p.resolve()
    if p.suffix.lower() in network.NETWORK_READERS and len(p.parts) == 1 and MODELS_DIR.is_dir():
        hits = sorted(d / p.name for d in MODELS_DIR.iterdir() if _is_file(d / p.name))
        if hits:  # a bundled network file by its name, e.g. case69.m
            return hits[0].resolve()
    looks_like_path = p.suffix == ".toml" or len(p.parts) > 1
    if not looks_like_path:
        bundled = CASES_DIR / f"{spec}.toml"
        if _is_file(bundled):
            return bundled
        names = ", ".join(n for n, _ in list_cases()) or "none"
        raise CaseError(one_line(f"{spec}: no such case (not a file, and not a bundled case: {names})"))
    raise CaseError(one_line(f"{p}: case file not found"))


class _Reported(Exception):
    """A problem the reader has recorded: it ends the check that met it, the other checks go on."""


class _Bad(Exception):
    """A value of the wrong type or shape (the message says what was expected)."""


class _Reader:
    """Checks one parsed case file against :data:`SCHEMA` and :data:`BOUNDS`.

    Problems are collected (every message names the key) so that one :class:`CaseError` lists all those
    that can be found together; warnings are collected for the caller to print.
    """

    def __init__(self, file: Path, data: dict[str, Any]):
        self.file = file
        self.data = data
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._memo: dict[str, Any] = {}

    def fail(self, key: str, what: str) -> CaseError:
        """One error, raised at once (network stage: one failure stops the load)."""
        return CaseError(one_line(f"{self.file}: {key}: {what}"))

    def problem(self, key: str, what: str) -> None:
        self.problems.append(one_line(f"{key}: {what}"))

    def stop(self, key: str, what: str) -> _Reported:
        """Record a problem and return the exception that ends the current check."""
        self.problem(key, what)
        return _Reported()

    def warning(self, key: str, what: str) -> None:
        self.warnings.append(one_line(f"{self.file}: {key}: {what}"))

    def run(self, check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``, or None when it met a problem (already recorded)."""
        try:
            return check(*args)
        except _Reported:
            return None

    def raise_problems(self) -> None:
        """Raise one CaseError for everything recorded: ``FILE: KEY: WHAT`` or ``FILE: N problems: ...; ...``."""
        if len(self.problems) == 1:
            raise CaseError(f"{self.file}: {self.problems[0]}")
        if self.problems:
            raise CaseError(f"{self.file}: {len(self.problems)} problems: " + "; ".join(self.problems))

    # --- structure -----------------------------------------------------------------------------------
    def check_unknown(self) -> None:
        """Record unknown sections and keys, and sections that are not tables."""
        for sec, body in self.data.items():
            if sec == "profiles":
                if not isinstance(body, dict):
                    self.problem("profiles", "must be a table")
                    continue
                for sub, tbl in body.items():
                    if sub == "daily":
                        self._unknown_in("profiles.daily", tbl, _SECTIONS["profiles.daily"])
                    elif sub == "loads":
                        self._unknown_in("profiles.loads", tbl, _SECTIONS["profiles.loads"])
                    elif sub == "horizon":
                        if not isinstance(tbl, dict):
                            self.problem("profiles.horizon", "must be a table of [profiles.horizon.N]")
                            continue
                        for n, t in tbl.items():
                            if not (n.isascii() and n.isdigit() and str(int(n)) == n and int(n) >= 1):
                                self.problem(f"profiles.horizon.{_key(n)}",
                                             "N must be a positive whole number without leading zeros")
                            elif int(n) > MAX_PERIODS:
                                self.problem(f"profiles.horizon.{_key(n)}", f"N must be at most {MAX_PERIODS} periods")
                            else:
                                self._unknown_in(f"profiles.horizon.{n}", t, _SECTIONS["profiles.horizon.N"])
                    else:
                        self.problem(f"profiles.{_key(sub)}", "unknown key (expected daily, loads or horizon.N)")
            elif sec in _SECTIONS:
                self._unknown_in(sec, body, _SECTIONS[sec])
            else:
                self.problem(_key(sec), f"unknown section (expected one of {', '.join(_top_sections())})")

    def _unknown_in(self, where: str, body: Any, keys: dict[str, Key]) -> None:
        if not isinstance(body, dict):
            self.problem(where, "must be a table")
            return
        for k in body:
            if k not in keys:
                self.problem(f"{where}.{_key(k)}", f"unknown key (known: {', '.join(keys)})")

    def check_all(self) -> None:
        """Convert and range-check every key the file holds (so that all bad values are reported at once)."""
        for section, keys in _SECTIONS.items():
            if section.startswith("profiles"):
                continue
            body = self.data.get(section)
            if isinstance(body, dict):
                for name in keys:
                    if name in body:
                        self.run(self.get, section, name)
        prof = self.data.get("profiles")
        if not isinstance(prof, dict):
            return
        tables = [("profiles.daily", "profiles.daily", prof.get("daily")),
                  ("profiles.loads", "profiles.loads", prof.get("loads"))]
        horizon = prof.get("horizon")
        if isinstance(horizon, dict):
            tables += [("profiles.horizon.N", f"profiles.horizon.{n}", t) for n, t in horizon.items()]
        for section, where, tbl in tables:
            if isinstance(tbl, dict):
                for name in _SECTIONS[section]:
                    if name in tbl:
                        self.run(self.get, section, name, tbl, where)

    # --- values --------------------------------------------------------------------------------------
    def get(self, section: str, name: str, table: dict[str, Any] | None = None, where: str | None = None) -> Any:
        """The value of ``section.name`` (or of ``name`` in ``table``), type- and range-checked; the default
        if absent. Raises :class:`_Reported` (after recording the problem) if the value is bad."""
        key = _SECTIONS[section][name]
        path = f"{where or section}.{name}"
        if path in self._memo:
            value = self._memo[path]
            if value is _Reported:
                raise _Reported()
            return value
        body = table if table is not None else self.data.get(section, {})
        if not isinstance(body, dict):
            raise _Reported()  # recorded by check_unknown
        if name not in body:
            if key.default is _REQUIRED:
                self._memo[path] = _Reported
                raise self.stop(path, "missing (required)")
            return key.default
        self._memo[path] = _Reported
        try:
            value = _convert(key.kind, body[name])
        except _Bad as exc:
            raise self.stop(path, str(exc)) from None
        bound = BOUNDS.get(key.path.replace("profiles.horizon.N", "profiles.daily"))
        if bound is not None:
            self._check_bound(path, bound, value)
        self._memo[path] = value
        return value

    def _check_bound(self, path: str, bound: Bound, value: Any) -> None:
        if isinstance(value, dict):
            items = [(f"bus {_short(b)}: rating ", v) for b, v in value.items()]
        elif isinstance(value, list):
            items = [(f"value {k + 1} of {len(value)}: " if len(value) > 1 else "", v) for k, v in enumerate(value)]
        else:
            items = [("", value)]
        for label, v in items:
            if not bound.accepts(v):
                why = f"; {bound.why}" if bound.why else ""
                raise self.stop(path, f"{label}{bound.violation(v)}{why}")
        unusual = [(label, v) for label, v in items if not bound.warn_lo <= v <= bound.warn_hi]
        if unusual:
            label, v = unusual[0]
            more = f" (and {len(unusual) - 1} more)" if len(unusual) > 1 else ""
            self.warning(path, f"{label}{_num(v)} is unusual (usually {bound.usual()}){more}")


def _top_sections() -> list[str]:
    out: list[str] = []
    for k in SCHEMA:
        top = k.section.split(".")[0]
        if top not in out:
            out.append(top)
    return out


def _is_number_type(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """``v`` is a finite int or float (not a bool, not an integer too large for a float)."""
    if not _is_number_type(v):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _convert(kind: str, v: Any) -> Any:
    """``v`` as a value of ``kind``; raises :class:`_Bad` saying what was expected."""
    if kind == "float":
        if not _is_num(v):
            raise _Bad(f"expected a {'finite ' if _is_number_type(v) else ''}number, got {_short(v)}")
        return float(v)
    if kind == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            raise _Bad(f"expected a whole number, got {_short(v)}")
        return v
    if kind == "str":
        if not isinstance(v, str):
            raise _Bad(f"expected a string, got {_short(v)}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise _Bad(f"expected true or false, got {_short(v)}")
        return v
    if kind == "buses":
        if not isinstance(v, list):
            raise _Bad("expected a list of bus names")
        out = []
        for item in v:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise _Bad(f"expected bus names, got {_short(item)}")
            name = str(item).lower()
            if name in out:
                raise _Bad(f"duplicate bus {_short(name)}")
            out.append(name)
        return out
    if kind == "bus_map":
        if not isinstance(v, dict):
            raise _Bad("expected a table of bus = value")
        out_map: dict[str, float] = {}
        for bus, val in v.items():
            if not _is_num(val):
                raise _Bad(f"bus {_short(bus)}: expected a finite number, got {_short(val)}")
            if bus.lower() in out_map:
                raise _Bad(f"duplicate bus {_short(bus.lower())}")
            out_map[bus.lower()] = float(val)
        return out_map
    if kind == "cut_list":
        if not isinstance(v, list):
            raise _Bad("expected a list of branch names or [bus, bus] pairs")
        out_cut: list[Any] = []
        for item in v:
            if isinstance(item, str):
                out_cut.append(item.lower())
            elif (
                isinstance(item, list)
                and len(item) == 2
                and all(isinstance(b, (str, int)) and not isinstance(b, bool) for b in item)
            ):
                out_cut.append((str(item[0]).lower(), str(item[1]).lower()))
            else:
                raise _Bad(f"expected a branch name or a [bus, bus] pair, got {_short(item)}")
        return out_cut
    if kind in ("mult_list", "price_list", "hour_list"):
        if not isinstance(v, list) or not v:
            raise _Bad("expected a non-empty list of numbers")
        if len(v) > MAX_PERIODS:
            raise _Bad(f"{len(v)} values; at most {MAX_PERIODS} periods")
        for item in v:
            if not _is_num(item):
                raise _Bad(f"expected finite numbers, got {_short(item)}")
        return [float(x) for x in v]
    raise AssertionError(kind)  # pragma: no cover


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaseError(one_line(f"{path}: cannot read the case file: {exc.strerror}")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(one_line(f"{path}: not a UTF-8 text file (byte {exc.start} is {raw[exc.start]:#04x}); "
                                 "TOML case files are UTF-8")) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(one_line(f"{path}: malformed TOML: {exc}")) from None
    except RecursionError:
        raise CaseError(f"{path}: malformed TOML: arrays or tables nested too deeply") from None


def _label(r: _Reader, key: str, text: str, derived: bool = False) -> None:
    """A case name is a label (it becomes part of an output folder name), never a path."""
    what = "the file name (the default of case.name)" if derived else "a case name"
    if not text.strip():
        r.problem(key, f"{what} must not be empty")
    elif len(text) > MAX_NAME_LENGTH:
        r.problem(key, f"{what} is at most {MAX_NAME_LENGTH} characters, got {len(text)}")
    elif not text.isprintable():
        r.problem(key, f"{what} must not hold control characters: {_short(text)}")
    elif "/" in text or "\\" in text or ".." in text:
        r.problem(key, f"{what} is a label, not a path: no '/', '\\' or '..' ({_short(text)})")


def _case_keys(r: _Reader, path: Path) -> tuple[str, str, Path]:
    """``name``, ``description`` and the absolute network model path of ``[case]``."""
    name = r.run(r.get, "case", "name")
    if isinstance(name, _Derived):
        _label(r, "case.name", path.stem, derived=True)
        name = path.stem
    elif name is not None:
        _label(r, "case.name", name)
    description = r.run(r.get, "case", "description")
    if description is not None and not description.isprintable():
        r.problem("case.description", f"must be one line without control characters: {_short(description)}")
    model_rel = r.get("case", "network")
    if not model_rel.strip() or "\0" in model_rel:
        raise r.stop("case.network", f"expected the path of an OpenDSS file, got {_short(model_rel)}")
    model = Path(os.path.abspath(path.parent / model_rel))
    if not _is_file(model):
        raise r.stop("case.network", f"network model file not found: {model}")
    return name, description, model.resolve()


def _settings(r: _Reader) -> Settings:
    s = Settings(**{k: r.get("settings", k) for k in _SECTIONS["settings"]})
    if isinstance(s.v_max_phase_pu, _Derived):
        s.v_max_phase_pu = None
    if s.v_max_phase_pu is not None and s.v_max_phase_pu <= s.v_min_pu:
        raise r.stop("settings.v_max_phase_pu", f"{s.v_max_phase_pu} must be above Vmin = {s.v_min_pu}")
    if s.v_min_pu >= s.v_max_pu:
        raise r.stop("settings.v_min_pu", f"Vmin = {s.v_min_pu} must be below Vmax = {s.v_max_pu}")
    if not s.v_min_pu <= s.v_sub_pu <= s.v_max_pu:
        raise r.stop("settings.v_sub_pu", f"the problem is infeasible: the substation voltage {s.v_sub_pu} pu lies "
                                          f"outside the voltage limits [{s.v_min_pu}, {s.v_max_pu}] pu")
    if s.inverter_limit not in ("circle", "box"):
        r.problem("settings.inverter_limit", f"{_short(s.inverter_limit)}: expected 'circle' or 'box'")
    if s.terminal_soc not in ("hard", "free", "penalty"):
        r.problem("settings.terminal_soc", f"{_short(s.terminal_soc)}: expected 'hard', 'free' or 'penalty'")
    return s


def _der_keys(r: _Reader, section: str) -> None:
    """The TOML-only checks of ``[pv]`` / ``[battery]``: explicit ratings name listed buses, SOC ordering."""
    names = r.get(section, "buses")
    for key in ("p_rated_kw", "s_rated_kva", "e_rated_kwh"):
        if key in _SECTIONS[section]:
            mapping = r.run(r.get, section, key) or {}
            for b in mapping:
                if b not in names:
                    r.problem(f"{section}.{key}", f"bus {_short(b)} is not in {section}.buses")
    if section == "battery":
        vals = {k: r.get("battery", k) for k in ("soc_min", "soc_max", "soc0")}
        if vals["soc_min"] > vals["soc_max"]:
            raise r.stop("battery.soc_min", f"soc_min = {vals['soc_min']} is above soc_max = {vals['soc_max']}")
        if not vals["soc_min"] <= vals["soc0"] <= vals["soc_max"]:
            raise r.stop("battery.soc0", f"{vals['soc0']} is outside [soc_min, soc_max]")


def _by_fraction(buses: pd.DataFrame, root: str, fraction: float) -> list[str]:
    """The ``fraction`` of the load buses with the largest nominal P (ties: natural bus-name order).

    ``round(fraction x N)`` rounded half up, at least one: the study's recipe (20 % PVs, 30 % batteries).
    """
    load = buses.loc[(buses["p_load"] > 0) & (buses.index != root), "p_load"]
    ranked = sorted(load.index, key=lambda b: (-float(load[b]), _natural(b)))
    count = max(1, math.floor(fraction * len(ranked) + 0.5)) if ranked else 0
    return ranked[:count]


def _held_ders(r: _Reader, section: str, held: pd.DataFrame, s_kva: float) -> pd.DataFrame:
    """The network's own PVs or batteries (``BalancedTables.ders``) as the case's DER table, summed per bus."""
    kind = "pv" if section == "pv" else "battery"
    own = held[held["kind"] == kind] if len(held) else held
    if not len(own):
        return pd.DataFrame()
    g = own.groupby("bus", sort=False)
    table = pd.DataFrame({"p_rated": g["p_rated"].sum(), "s_rated": g["s_rated"].sum()})
    if kind == "battery":
        e = g["e_rated"].sum(min_count=1)
        table["e_rated"] = e.fillna(table["p_rated"] * r.get("battery", "e_hours"))
    table.index.name = "bus"
    return table


def _der_table(r: _Reader, section: str, buses: pd.DataFrame, root: str, s_kva: float,
               held: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-unit ratings (p_rated, s_rated[, e_rated]) of the PVs or batteries of ``section``.

    From ``buses`` or ``fraction`` of the case file; when it gives neither, the network's own DERs.
    """
    names = r.get(section, "buses")
    fraction = r.get(section, "fraction")
    if fraction > 0 and names:
        r.problem(f"{section}.fraction", f"give {section}.buses or {section}.fraction, not both")
    elif fraction > 0:
        names = _by_fraction(buses, root, fraction)
    elif not names and held is not None:
        own = _held_ders(r, section, held, s_kva)
        if len(own):
            return own
    for b in names:
        if b not in buses.index:
            r.problem(f"{section}.buses", f"unknown bus {_short(b)} (not in the network model)")
        elif b == root:
            r.problem(f"{section}.buses", f"bus {b!r} is the substation bus")
    names = [b for b in names if b in buses.index and b != root]
    p_factor, s_factor = r.get(section, "p_factor"), r.get(section, "s_factor")
    explicit = {k: r.get(section, k) for k in ("p_rated_kw", "s_rated_kva", "e_rated_kwh") if k in _SECTIONS[section]}
    p = []
    for b in names:
        if b in explicit["p_rated_kw"]:
            p.append(explicit["p_rated_kw"][b] / s_kva)
        else:
            val = p_factor * float(buses.at[b, "p_load"])
            if val <= 0:
                r.problem(f"{section}.buses",
                          f"bus {b!r} has no load, so p_factor gives a zero rating; give {section}.p_rated_kw")
            p.append(val)
    s_exp = explicit["s_rated_kva"]
    s = [s_exp[b] / s_kva if b in s_exp else s_factor * pb for b, pb in zip(names, p)]
    table = pd.DataFrame({"p_rated": p, "s_rated": s}, index=pd.Index(names, name="bus"))
    e = [math.nan] * len(names)
    if section == "battery":
        e_hours, e_exp = r.get("battery", "e_hours"), explicit["e_rated_kwh"]
        e = [e_exp[b] / s_kva if b in e_exp else e_hours * pb for b, pb in zip(names, p)]
        table["e_rated"] = e
    for b, pb, sb, eb in zip(names, p, s, e):
        if pb <= 0:
            continue  # reported above
        if not RATING_PU_MIN < pb <= RATING_PU_MAX:
            r.problem(f"{section}.buses", f"bus {b!r}: P = {pb * s_kva:g} kW is {pb:g} pu, outside "
                                          f"({RATING_PU_MIN:g}, {RATING_PU_MAX:g}] pu of bases.s_kva")
        elif sb < pb * (1 - 1e-12):
            r.problem(f"{section}.s_rated_kva", f"bus {b!r}: S = {sb * s_kva:g} kVA below P = {pb * s_kva:g} kW")
        elif sb > 10 * pb:
            r.problem(f"{section}.s_rated_kva", f"bus {b!r}: S = {sb * s_kva:g} kVA is above 10 x P = "
                                                f"{pb * s_kva:g} kW")
        elif eb > 1000 * pb:  # (NaN for PVs)
            r.problem("battery.e_rated_kwh", f"bus {b!r}: E = {eb * s_kva:g} kWh is above "
                                             f"1000 h x P = {pb * s_kva:g} kW")
    return table


def _batteries(r: _Reader, buses: pd.DataFrame, root: str, s_kva: float,
               held: pd.DataFrame | None = None) -> pd.DataFrame:
    table = _der_table(r, "battery", buses, root, s_kva, held)
    for k in ("soc_min", "soc_max", "soc0", "eta_c", "eta_d"):
        table[k] = r.get("battery", k)
    return table


def _profile(r: _Reader, hours: int | None, dt_h: float, start: float | None = None) -> pd.DataFrame:
    """The horizon's profile: ``hours`` periods of ``profiles.daily`` from clock hour ``start`` (None: the
    middle of the day), or an exact [profiles.horizon.N] when the file has one for N = ``hours`` and
    ``start`` is None or that table's own first clock hour. A window past the profile's end is refused
    (no wrap-around midnight: the clock hours, the battery's start and the plots stay in one day)."""
    prof = r.data.get("profiles", {})
    if not isinstance(prof, dict):
        raise _Reported()  # recorded by check_unknown
    if "daily" not in prof:
        raise r.stop("profiles.daily", "missing (required)")
    daily_tbl = prof["daily"]
    cols = ("load_mult", "pv_mult", "price_usd_per_kwh")
    daily = {c: r.run(r.get, "profiles.daily", c, daily_tbl) for c in cols}
    if any(v is None for v in daily.values()):
        raise _Reported()
    length = len(daily["load_mult"])
    for c in cols:
        if len(daily[c]) != length:
            raise r.stop(f"profiles.daily.{c}", f"{len(daily[c])} values, but load_mult has {length}")
    overrides = prof.get("horizon", {})
    if not isinstance(overrides, dict):
        raise _Reported()
    if hours is None:
        hours = r.get("case", "default_hours")
        if isinstance(hours, _Derived):
            hours = length
        key = "case.default_hours"
    else:
        key = "hours"
    if hours < 1:
        raise r.stop(key, f"the horizon must be at least 1 period, got {_num(hours)}")
    if hours > MAX_PERIODS:
        raise r.stop(key, f"the horizon must be at most {MAX_PERIODS} periods, got {_num(hours)}")
    exact = overrides.get(str(hours)) if str(hours) in overrides else None
    start_idx = None
    if exact is not None and start is not None and isinstance(exact, dict):
        own = exact.get("clock_hour")
        own_start = (own[0] if isinstance(own, list) and own else ((length - hours) // 2 if hours <= length else 0) * dt_h)
        number = isinstance(start, (int, float)) and not isinstance(start, bool)
        if not (number and isinstance(own_start, (int, float)) and float(own_start) == float(start)):
            exact = None  # another window of the day: cut from profiles.daily
    if exact is None and start is not None:
        idx = float(start) / dt_h if isinstance(start, (int, float)) and not isinstance(start, bool) else math.nan
        if not (math.isfinite(idx) and idx.is_integer() and 0 <= idx < length):
            raise r.stop("start", f"{start!r}: the first period's clock hour must be a multiple of "
                                  f"dt_h = {dt_h:g} h from 0 to {_num((length - 1) * dt_h)} "
                                  f"(profiles.daily has {length} periods)")
        start_idx = int(idx)
    if exact is not None:
        where = f"profiles.horizon.{hours}"
        tbl = exact
        vals = {c: r.run(r.get, "profiles.horizon.N", c, tbl, where) for c in cols}
        if any(v is None for v in vals.values()):
            raise _Reported()
        for c in cols:
            if len(vals[c]) != hours:
                raise r.stop(f"{where}.{c}", f"{len(vals[c])} values for a {hours}-period horizon")
        start = (length - hours) // 2 if hours <= length else 0
        if "clock_hour" in tbl:
            clock = r.get("profiles.horizon.N", "clock_hour", tbl, where)
            if len(clock) != hours:
                raise r.stop(f"{where}.clock_hour", f"{len(clock)} values for a {hours}-period horizon")
        else:
            clock = [(start + k) * dt_h for k in range(hours)]
    else:
        if hours > length:
            raise r.stop(
                "profiles.daily",
                f"{length} periods, shorter than the horizon of {hours} (and no [profiles.horizon.{hours}])",
            )
        if start_idx is not None and start_idx + hours > length:
            raise r.stop("start", f"{hours} periods from clock hour {_num(start)} run past "
                                  f"the end of the {length}-period profiles.daily (latest start for this horizon: "
                                  f"{_num((length - hours) * dt_h)}; the window does not wrap around midnight)")
        first = (length - hours) // 2 if start_idx is None else start_idx
        vals = {c: daily[c][first : first + hours] for c in cols}
        clock = [(first + k) * dt_h for k in range(hours)]
    clock_col: list[float] | list[int] = [int(c) for c in clock] if all(float(c).is_integer() for c in clock) else clock
    return pd.DataFrame(
        {
            "load_mult": vals["load_mult"],
            "pv_mult": vals["pv_mult"],
            "price": vals["price_usd_per_kwh"],
            "clock_hour": clock_col,
        },
        index=pd.RangeIndex(1, hours + 1, name="t"),
    )


@dataclass
class _NetworkPart:
    """The network of a case before areas and DERs: the reduction's tables, per unit on each bus's base."""

    root: str
    source_kv_ll: float
    source_pu: float
    kv_ln: pd.Series  #: each bus's line-to-neutral base, kV
    buses: pd.DataFrame  #: p_load, q_load, q_cap, x, y (+ the reduction's columns), root first, breadth-first
    branches: pd.DataFrame  #: from_bus, to_bus, r, x (pu), tap, kind
    ders: pd.DataFrame  #: the network's own DERs (BalancedTables.ders)
    conversion: Any  #: the ConversionReport of the reduction
    loads: pd.DataFrame  #: the network's loads (BalancedTables.loads: bus, p, q, shape)
    profiles: dict[str, np.ndarray]  #: the network's LoadShapes, hourly


def _read_network_part(model: Path, s_kva: float) -> _NetworkPart:
    """Read ``model`` with the reader of its suffix (``network.NETWORK_READERS``) and convert the
    phase-aware Network to the balanced equivalent (:func:`network.reduce.reduce_balanced`).

    An OpenDSS model's result is kept in the user's cache (:func:`_network_cache_key`): compiling it needs
    the OpenDSS engine, whose import alone (0.25 s) is a tenth of a whole 5-hour solve command.
    """
    from mpdopf_pyomo.network.reduce import reduce_balanced

    key = _network_cache_key(model, s_kva) if model.suffix.lower() == ".dss" else None
    cached = _cache_read(key) if key is not None else None
    if cached is not None:
        return cached
    tables, report = reduce_balanced(network.read_network_file(model), s_kva)
    part = _NetworkPart(tables.root, tables.source_kv_ll, tables.source_pu, tables.buses["v_base_kv_ln"],
                        tables.buses.copy(), tables.branches.copy(), tables.ders, report, tables.loads,
                        tables.profiles)
    if key is not None:
        _cache_write(key, part)
    return part


#: Environment variables: the folder of the parsed-network cache (default ``$XDG_CACHE_HOME/mpdopf_pyomo``,
#: else ``~/.cache/mpdopf_pyomo``), and ``MPDOPF_NO_CACHE=1`` to neither read nor write it.
CACHE_DIR_ENV, NO_CACHE_ENV = "MPDOPF_CACHE_DIR", "MPDOPF_NO_CACHE"
#: Newest cache entries kept (each a few kB to a few MB); older ``network-*.pkl`` files are removed.
CACHE_KEEP = 32
#: A model whose files (the folders of every file it includes or names) exceed these is not cached.
_CACHE_MAX_FILES, _CACHE_MAX_BYTES = 500, 64 * 2**20
_CACHE_NAME = re.compile(r"^network-[0-9a-f]{64}\.pkl$")
#: The file that marks a cache folder as this program's own: only in such a folder are old entries removed
#: (a folder given by ``MPDOPF_CACHE_DIR`` that already held other files gets entries but loses none).
CACHE_MARKER = ".mpdopf-cache"
_PATH_TOKEN = re.compile(r"[^\s=,()\[\]{}\"']+")


def cache_dir() -> Path | None:
    """The folder of the parsed-network cache, or None when it is switched off (``MPDOPF_NO_CACHE``)."""
    if os.environ.get(NO_CACHE_ENV, "").strip() not in ("", "0"):
        return None
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mpdopf_pyomo"


def _network_cache_key(model: Path, s_kva: float) -> str | None:
    """A hash of everything the parsed network depends on, or None (no cache) when that is not knowable.

    The content of: the model file; every file any of its lines names (a token that is an existing file,
    relative to the naming file's folder or absolute: ``Redirect``, ``BusCoords``, ``mult=(file=...)``),
    recursively; every other file in each of those folders (a command that reads a file without naming
    it); this package's reader code; the OpenDSS engine's version; and ``s_kva``. A model that sets
    ``DataPath`` (file names relative to another folder) or is larger than the limits is not cached.
    """
    import hashlib
    import importlib.metadata

    if cache_dir() is None:
        return None
    h = hashlib.sha256()
    try:
        here = Path(__file__).parent
        for code in [Path(__file__), *sorted((here / "network").glob("*.py"))]:
            h.update(code.name.encode() + b"\0" + code.read_bytes())
        for dist in ("opendssdirect.py", "dss-python"):
            h.update(f"{dist}={importlib.metadata.version(dist)}\0".encode())
        h.update(f"s_kva={s_kva!r}\0".encode())
        files: dict[Path, bytes] = {}
        folders: set[Path] = set()
        todo = [model.resolve()]
        total = 0
        while todo:
            f = todo.pop()
            if f in files:
                continue
            data = f.read_bytes()
            files[f] = data
            total += len(data)
            if len(files) > _CACHE_MAX_FILES or total > _CACHE_MAX_BYTES:
                return None
            if f.parent not in folders:
                folders.add(f.parent)
                todo += [p.resolve() for p in f.parent.iterdir() if p.is_file()]
            text = data.decode("latin-1")
            if "datapath" in text.lower():
                return None
            for token in set(_PATH_TOKEN.findall(text)):
                if "." not in token and "/" not in token and "\\" not in token:
                    continue
                target = f.parent / token.replace("\\", "/")
                if target.is_file():
                    todo.append(target.resolve())
        for f in sorted(files):
            h.update(str(f).encode() + b"\0" + hashlib.sha256(files[f]).digest())
    except (OSError, ValueError, importlib.metadata.PackageNotFoundError):
        return None
    return h.hexdigest()


def _cache_read(key: str) -> _NetworkPart | None:
    """The cached network of ``key``; None when absent or unreadable (it is then parsed again)."""
    import pickle

    folder = cache_dir()
    try:
        with open(folder / f"network-{key}.pkl", "rb") as fh:  # type: ignore[operator]
            stored_key, part = pickle.load(fh)
    except Exception:  # noqa: BLE001 - absent, truncated, from another version: parse again
        return None
    return part if stored_key == key and isinstance(part, _NetworkPart) else None


def _cache_write(key: str, part: _NetworkPart) -> None:
    """Store ``part`` under ``key`` (atomically; any failure leaves the cache as it was) and keep only the
    newest :data:`CACHE_KEEP` entries, in a folder marked as the cache's own (:data:`CACHE_MARKER`)."""
    import pickle
    import tempfile

    folder = cache_dir()
    if folder is None:
        return
    tmp = None
    try:
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (folder / CACHE_MARKER).write_text("mpdopf_pyomo's parsed-network cache: the network-*.pkl files "
                                               "here are its own, safe to delete\n")
        fd, tmp = tempfile.mkstemp(prefix=".network-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((key, part), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / f"network-{key}.pkl")
        tmp = None
        if not (folder / CACHE_MARKER).is_file():
            return  # not a folder this program made: it removes nothing there
        entries = sorted((p for p in folder.iterdir() if _CACHE_NAME.match(p.name)),
                         key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[CACHE_KEEP:]:
            old.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - a read-only or full disk: no cache, same results
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


#: Defaults of a bare network file used as a case (``cases show feeder.dss``, ``solve --case case69.m``):
#: power base, flat price, and voltage limits wide enough that a base case is a plain power flow.
BARE_S_KVA = 1000.0
BARE_PRICE_USD_PER_KWH = 0.1
BARE_V_LIMITS_PU = (0.5, 1.5)


def _bare_case_data(path: Path, source_pu: float, hours: int | None) -> dict[str, Any]:
    """The case-file content a bare network file stands for (docs/case-format.md, "A network file as a case").

    No DERs unless the network holds them; a flat profile (load_mult 1, pv_mult 0, price
    :data:`BARE_PRICE_USD_PER_KWH`) of 24 periods or the horizon asked for; one period by default; the
    substation at the network source's own voltage; voltage limits :data:`BARE_V_LIMITS_PU`.
    """
    n = min(max(24, hours or 1), MAX_PERIODS)
    lo, hi = BARE_V_LIMITS_PU
    return {
        "case": {"network": path.name, "default_hours": 1,
                 "description": f"the network file {path.name} alone: no DERs unless it holds them, flat profile"},
        "bases": {"s_kva": BARE_S_KVA},
        "settings": {"v_sub_pu": source_pu, "v_min_pu": min(lo, source_pu), "v_max_pu": max(hi, source_pu)},
        "profiles": {"daily": {"load_mult": [1.0] * n, "pv_mult": [0.0] * n,
                               "price_usd_per_kwh": [BARE_PRICE_USD_PER_KWH] * n}},
    }


def _print_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def load_case(spec: str | Path, hours: int | None = None,
              warn: Callable[[str], None] | None = _print_warning, start: float | None = None) -> Case:
    """Load a case (bundled name such as ``"ieee123"`` or a path to a ``.toml``) over ``hours`` periods.

    Reads and checks the TOML, compiles the OpenDSS model it names, builds the radial tree in per unit on
    the case's bases, maps loads and capacitors to buses, assigns areas and cuts the profile to the horizon
    (``hours=None``: the case's ``default_hours``; ``start``: clock hour of the first period, None for the
    middle of the day, see :func:`_profile`). Bad input raises one :class:`CaseError` naming the
    file and the key -- every problem of the TOML that can be found before the network is read, then every
    problem of the DERs and areas. Values that are accepted but unusual (:data:`BOUNDS`) are passed, one
    line each (``FILE: KEY: ...``), to ``warn`` (default: ``warning: ...`` on stderr; None: silent) and
    kept in ``Case.warnings``.
    """
    path = resolve_case_path(spec)
    part: _NetworkPart | None = None
    if path.suffix.lower() in network.NETWORK_READERS:  # a bare network file works as a case
        part = _read_network_part(path, BARE_S_KVA)
        data = _bare_case_data(path, part.source_pu, hours)
    else:
        data = _read_toml(path)
    r = _Reader(path, data)
    r.check_unknown()
    r.check_all()
    if part is not None:  # our own documented defaults are not "unusual values" of a user's file
        r.warnings.clear()
    keys = r.run(_case_keys, r, path)
    settings = r.run(_settings, r)
    s_kva = r.run(r.get, "bases", "s_kva")
    v_kv_ll = r.run(r.get, "bases", "v_kv_ll")
    for section in ("pv", "battery"):
        r.run(_der_keys, r, section)
    r.run(r.get, "areas", "cut_branches")
    profile = r.run(_profile, r, hours, settings.dt_h if settings else Settings.dt_h, start)
    r.raise_problems()
    if keys is None or settings is None or profile is None or s_kva is None:  # every stop records a problem
        raise CaseError(f"{path}: cannot be read as a case file")  # pragma: no cover
    name, description, model = keys

    try:
        if part is None:
            part = _read_network_part(model, s_kva)
        if isinstance(v_kv_ll, _Derived):
            v_kv_ll = part.source_kv_ll
            if not v_kv_ll > 0:
                raise r.fail("bases.v_kv_ll", f"the model's Vsource basekV must be positive, got {v_kv_ll}")
        elif abs(v_kv_ll - part.source_kv_ll) > 1e-6 * part.source_kv_ll:
            raise r.fail("bases.v_kv_ll", f"{v_kv_ll:g} kV, but the source bus of {model} has a base of "
                                          f"{part.source_kv_ll:g} kV (each bus is in per unit on its own base; "
                                          "leave v_kv_ll out or give the source's)")
        bases = Bases(v_kv_ll=v_kv_ll, s_kva=s_kva)
    except CaseError as exc:
        msg = str(exc)
        if msg.startswith(str(path)):
            raise
        raise CaseError(f"{path}: case.network: {msg}") from None

    root = part.root
    branches = part.branches
    buses = part.buses
    order = list(buses.index)
    total_pu = float(np.hypot(buses["p_load"].sum(), buses["q_load"].sum()))
    if total_pu > 0 and not LOAD_PU_WARN[0] <= total_pu <= LOAD_PU_WARN[1]:
        r.warning("bases.s_kva", f"the feeder's nominal load is {total_pu:.3g} pu of {s_kva:g} kVA; per-unit "
                                 f"values far from 1 scale the problem badly (choose s_kva near {total_pu * s_kva:.3g})")

    # areas
    cut_branches: list[str] = []
    for k, spec_k in enumerate(r.get("areas", "cut_branches")):
        br = network.resolve_branch(branches, spec_k)
        if br is None:
            if isinstance(spec_k, str):
                what = f"no branch named {_short(spec_k)}"
            else:
                what = f"no branch between buses {_short(spec_k[0])} and {_short(spec_k[1])}"
            r.problem(f"areas.cut_branches[{k}]", what)
        elif br in cut_branches:
            r.problem(f"areas.cut_branches[{k}]", f"duplicate cut branch {br!r}")
        else:
            cut_branches.append(br)
    area = network.assign_areas(branches, root, cut_branches)
    buses.insert(0, "area", area.reindex(order).to_numpy().astype(int))

    held = part.ders  # the network's own DERs; its generators are the p_fixed/q_fixed bus columns
    pvs = _der_table(r, "pv", buses, root, s_kva, held)
    batteries = _batteries(r, buses, root, s_kva, held)
    load_profiles = r.run(_load_profiles, r, path, part, profile, settings.dt_h)
    r.raise_problems()
    by_bus, by_load = load_profiles if load_profiles is not None else (None, None)

    for msg in r.warnings:
        if warn is not None:
            warn(msg)
    return Case(
        name=name,
        source=path,
        network_model=model,
        bases=bases,
        settings=settings,
        root=root,
        buses=buses,
        branches=branches,
        pvs=pvs,
        batteries=batteries,
        profile=profile,
        cut_branches=cut_branches,
        description=description,
        warnings=list(r.warnings),
        conversion=part.conversion,
        load_profiles=by_bus,
        load_element_profiles=by_load,
    )


#: Conversion-report entry of buses whose loads follow different profiles.
MIXED_PROFILES = ("buses whose loads follow different profiles: one P-weighted multiplier per bus "
                  "(Q scaled with it)")


def _read_profile_csv(r: _Reader, file: Path, periods: int) -> tuple[dict[str, np.ndarray], bool]:
    """The columns of a ``[profiles.loads]`` CSV (header row, then ``periods`` rows of numbers) and whether
    it has problems: each is recorded under ``profiles.loads.file`` with the file's name (row numbers
    count the header as row 1)."""
    import csv

    key = "profiles.loads.file"
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise r.stop(key, f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise r.stop(key, f"{file}: not a UTF-8 text file (byte {exc.start})") from None
    except ValueError:  # a NUL byte in the name
        raise r.stop(key, f"cannot read {_short(str(file))}: not a valid file name") from None
    rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    if not rows:
        raise r.stop(key, f"{file}: empty (expected a header row naming buses or LoadShapes)")
    header = [c.strip().lower() for c in rows[0]]
    bad = []
    for k, name in enumerate(header):
        if not name:
            bad.append(f"column {k + 1} has no name")
        elif name in header[:k]:
            bad.append(f"column {_short(name)} appears twice")
    if len(rows) - 1 != periods:
        bad.append(f"{len(rows) - 1} rows of values, but profiles.daily has {periods} periods (one row per period)")
    bound = BOUNDS["profiles.daily.load_mult"]
    cols: dict[str, list[float]] = {h: [] for h in header}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            bad.append(f"row {n}: {len(row)} values for {len(header)} columns")
            continue
        for name, cell in zip(header, row):
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                bad.append(f"column {_short(name)}, row {n}: {_short(cell.strip())} is not a finite number")
            elif not bound.accepts(v):
                bad.append(f"column {_short(name)}, row {n}: {bound.violation(v)}")
            cols[name].append(v)
    for what in bad[:MAX_CSV_PROBLEMS]:
        r.problem(key, f"{file.name}: {what}")
    if len(bad) > MAX_CSV_PROBLEMS:
        r.problem(key, f"{file.name}: ... and {len(bad) - MAX_CSV_PROBLEMS} more")
    return {h: np.asarray(v, dtype=float) for h, v in cols.items()}, bool(bad)


#: Problems of a profile CSV listed one by one (all are counted).
MAX_CSV_PROBLEMS = 12


def _load_profiles(r: _Reader, path: Path, part: _NetworkPart, profile: pd.DataFrame,
                   dt_h: float) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Per-bus and per-load multipliers over the horizon (``Case.load_profiles``, ``load_element_profiles``).

    A load's multiplier: the column of its bus in the ``[profiles.loads]`` CSV, else the column named
    after its LoadShape, else its LoadShape in the network file (hourly values; the period starting at
    clock hour h takes hour floor(h) of the shape, counted from its first point), else none (it follows
    ``load_mult``). CSV rows are the periods of ``profiles.daily`` (the period from clock hour h is row
    h / dt_h). A bus's multiplier is the P-weighted mean over its loads (those without one at
    ``load_mult``); buses whose loads all follow ``load_mult`` get no column.
    """
    loads = part.loads
    tbl = r.data.get("profiles", {}).get("loads") if isinstance(r.data.get("profiles"), dict) else None
    spec = r.get("profiles.loads", "file", tbl, "profiles.loads") if isinstance(tbl, dict) else ""
    clock = profile["clock_hour"].to_numpy(dtype=float)
    csv_cols: dict[str, np.ndarray] = {}
    if spec:
        file = Path(os.path.abspath(path.parent / spec))
        daily = r.data["profiles"]["daily"]["load_mult"]
        csv_cols, bad = _read_profile_csv(r, file, len(daily))
        rows = np.rint(clock / dt_h).astype(int)
        if (np.abs(rows * dt_h - clock) > 1e-9).any() or rows.min() < 0 or rows.max() >= len(daily):
            raise r.stop("profiles.loads.file", f"{file.name}: the horizon's clock hours {clock.tolist()} are not "
                                                f"periods 0..{len(daily) - 1} of profiles.daily (dt_h = {dt_h:g} h)")
        buses_with_load = set(loads["bus"])
        shapes = set(loads["shape"]) - {""}
        unknown = [c for c in csv_cols if c not in buses_with_load and c not in shapes]
        for c in unknown:
            what = ("is a bus without loads" if c in part.buses.index else
                    "is neither a bus of the network nor a LoadShape its loads use")
            r.problem("profiles.loads.file", f"{file.name}: column {_short(c)} {what}")
        if unknown or bad:
            raise _Reported()
        csv_cols = {c: v[rows] for c, v in csv_cols.items()}
    hour = np.floor(clock + 1e-9).astype(int)
    own: dict[str, np.ndarray] = {}
    for name, bus, shape in zip(loads.index, loads["bus"], loads["shape"]):
        if bus in csv_cols:
            own[name] = csv_cols[bus]
        elif shape and shape in csv_cols:
            own[name] = csv_cols[shape]
        elif shape and len(part.profiles.get(shape, ())):
            values = part.profiles[shape]
            own[name] = values[hour % len(values)]
    if not own:
        return None, None
    lm = profile["load_mult"].to_numpy(dtype=float)
    index = profile.index
    by_load = pd.DataFrame(own, index=index)
    by_bus: dict[str, np.ndarray] = {}
    mixed = 0
    for bus, group in loads.groupby("bus", sort=False):
        if not any(n in own for n in group.index):
            continue
        mults = np.array([own.get(n, lm) for n in group.index])
        w = group["p"].abs().to_numpy(dtype=float)
        if not w.sum():
            w = group["q"].abs().to_numpy(dtype=float)
        w = w if w.sum() else np.ones(len(group))
        by_bus[bus] = w @ mults / w.sum()
        if len(group) > 1 and np.ptp(mults, axis=0).max() > 1e-12:
            mixed += 1
            part.conversion.entry(MIXED_PROFILES).add(
                float(group["p"].sum()) * r.get("bases", "s_kva"), float(np.ptp(mults)),
                f"bus {bus}: {len(group)} loads, multipliers spread up to {np.ptp(mults, axis=0).max():.3g}")
    return pd.DataFrame(by_bus, index=index), by_load


def _natural(name: str) -> tuple:
    """Sort key that puts bus '9' before '10' and '25r' after '25' (numbers before text at each place)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.findall(r"\d+|\D+", name))


def _bus_list(names: Any, limit: int = 20) -> str:
    """Bus names for a summary line: all of them up to ``limit``, else the first ``limit`` and a count."""
    names = [str(n) for n in names]
    return " ".join(names) if len(names) <= limit else " ".join(names[:limit]) + f" ... ({len(names)} buses)"


def both_conventions(value: float, unit: str, phases: int, fmt: str = ".3f") -> str:
    """``value`` (a three-phase total) as "<total> <unit> three-phase = <total/phases> <unit> per phase": the
    one convention ``cases show`` and the ``solve`` summary share (single-phase-equivalent studies, like the
    source study, report per phase)."""
    return f"{value:{fmt}} {unit} three-phase = {value / phases:{fmt}} {unit} per phase"


def describe_case(case: Case) -> str:
    """Human-readable summary (what ``cases show`` prints): sizes, loads, DERs, areas, horizon, settings."""
    s3 = case.bases.s_kva
    ph = case.bases.phases
    b = case.buses
    loads = b[(b["p_load"] != 0) | (b["q_load"] != 0)]
    caps = b[b["q_cap"] != 0]
    p_kw, q_kvar = loads["p_load"].sum() * s3, loads["q_load"].sum() * s3
    st = case.settings
    lines = [
        f"case {case.name}: {case.description}",
        f"  file        {case.source}",
        f"  network     {case.network_model}",
        f"  bases       {case.bases.v_kv_ll:g} kV line-to-line, {s3:g} kVA three-phase "
        f"(Z_base {case.bases.z_ohm:.4f} ohm); root bus {case.root}",
        f"  buses       {len(b)}"
        + (f" on {b['v_base_kv_ln'].round(6).nunique()} voltage levels: "
           + ", ".join(f"{v * 3**0.5:g}" for v in sorted(b["v_base_kv_ln"].round(6).unique(), reverse=True))
           + " kV line-to-line" if "v_base_kv_ln" in b and b["v_base_kv_ln"].round(6).nunique() > 1 else ""),
        f"  branches    {len(case.branches)}",
        f"  loads       {len(loads)}: {p_kw:.3f} kW + {q_kvar:.3f} kvar three-phase"
        f" = {p_kw / ph:.3f} kW + {q_kvar / ph:.3f} kvar per phase",
        f"  capacitors  {len(caps)} (fixed), kvar three-phase = per phase: "
        + ", ".join(f"{bus} {caps.at[bus, 'q_cap'] * s3:g} = {caps.at[bus, 'q_cap'] * s3 / ph:g}"
                    for bus in sorted(caps.index, key=_natural)),
    ]
    if "p_fixed" in b and ((b["p_fixed"] != 0) | (b["q_fixed"] != 0)).any():
        g = b[(b["p_fixed"] != 0) | (b["q_fixed"] != 0)]
        lines.append(f"  generators  {len(g)} buses: {g['p_fixed'].sum() * s3:.3f} kW + {g['q_fixed'].sum() * s3:.3f} "
                     "kvar three-phase, fixed injections (p_fixed, q_fixed; not loads, not scaled)")
    if "b_shunt" in b and (b["b_shunt"] != 0).any():
        sh = b[b["b_shunt"] != 0]
        lines.append(f"  shunts      {len(sh)} buses: {sh['b_shunt'].sum() * s3:.3f} kvar three-phase at 1 pu "
                     "(capacitors and line charging, Q = b v)")
    lines += [
        f"  PVs         {len(case.pvs)}: {both_conventions(case.pvs['p_rated'].sum() * s3, 'kW', ph)} rated, "
        f"{both_conventions(case.pvs['s_rated'].sum() * s3, 'kVA', ph)}",
        f"              buses {_bus_list(case.pvs.index)}",
        f"  batteries   {len(case.batteries)}: {both_conventions(case.batteries['p_rated'].sum() * s3, 'kW', ph)}, "
        f"{both_conventions(case.batteries['e_rated'].sum() * s3, 'kWh', ph)}",
        f"              buses {_bus_list(case.batteries.index)}",
        f"  areas       {case.n_areas}"
        + (
            "; cut branches "
            + ", ".join(
                f"{c} ({case.branches.at[c, 'from_bus']}-{case.branches.at[c, 'to_bus']})" for c in case.cut_branches
            )
            if case.cut_branches
            else ""
        ),
    ]
    for a, grp in b.groupby("area"):
        idx = set(grp.index)
        n_load = int(((grp["p_load"] != 0) | (grp["q_load"] != 0)).sum())
        n_pv = int(case.pvs.index.isin(idx).sum())
        n_bat = int(case.batteries.index.isin(idx).sum())
        lines.append(f"    area {a}: {len(grp)} buses, {n_load} loads, {n_pv} PVs, {n_bat} batteries")
    pr = case.profile
    lines += [
        f"  horizon     {case.hours} x {st.dt_h:g} h, "
        f"clock hours {pr['clock_hour'].iloc[0]}..{pr['clock_hour'].iloc[-1]}",
        "    load_mult  " + " ".join(f"{v:g}" for v in pr["load_mult"]),
        *([f"    own load profiles at {case.load_profiles.shape[1]} bus(es) (LoadShapes or [profiles.loads]); "
           "feeder load " + " ".join(f"{v:.1f}" for v in case.load_kw()) + " kW"]
          if case.load_profiles is not None else []),
        "    pv_mult    " + " ".join(f"{v:g}" for v in pr["pv_mult"]),
        "    price      " + " ".join(f"{v:g}" for v in pr["price"]) + " USD/kWh",
        f"  settings    V_sub {st.v_sub_pu:g} pu, V {st.v_min_pu:g}..{st.v_max_pu:g} pu, "
        f"inverter limit {st.inverter_limit}, terminal SOC {st.terminal_soc}, "
        f"reverse power {'allowed' if st.reverse_power else 'not allowed'}, alpha {st.alpha_usd_per_kwh:g} USD/kWh",
    ]
    if case.conversion is not None:
        lines.append(case.conversion.format())
    return "\n".join(lines)
