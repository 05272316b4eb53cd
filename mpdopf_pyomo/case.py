"""A study case as typed, per-unit tables: what every later stage (blocks, problem, validation) reads.

Per unit: voltages on the network's line-to-neutral base, powers on ``bases.s_kva`` (the three-phase base
of the balanced circuit, i.e. 3 x the per-phase base), impedances on ``bases.z_ohm``. Energies are in
per-unit hours. Prices are in USD/kWh; ``bases.s_kva`` converts per-unit power to kW.

This module holds the types; the loader (``load_case``) fills them from ``cases/*.toml`` and the OpenDSS
model the case names.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import pandas as pd

from mpdopf_pyomo import network
from mpdopf_pyomo.errors import CaseError


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
      injection, pu; not scaled), ``x``, ``y`` (coordinates for plots, NaN when unknown).
    * ``branches``: index ``branch`` (str, the OpenDSS element name without class, e.g. ``l1``); columns
      ``from_bus`` (parent), ``to_bus`` (child), ``r``, ``x`` (series impedance, pu). Oriented from the
      root; rows in breadth-first order, so a branch's parent branch always comes earlier.
    * ``pvs``: index ``bus``; columns ``p_rated`` (pu, rated active power p_DR), ``s_rated`` (pu).
    * ``batteries``: index ``bus``; columns ``p_rated`` (pu), ``s_rated`` (pu), ``e_rated`` (pu·h),
      ``soc_min``, ``soc_max``, ``soc0`` (fractions of ``e_rated``), ``eta_c``, ``eta_d``.
    * ``profile``: index ``t`` = 1..T; columns ``load_mult``, ``pv_mult`` (multipliers), ``price`` (USD/kWh),
      ``clock_hour`` (0-based hour of day of the period's start).
    """

    name: str
    source: Path  #: the case file
    network_model: Path  #: the OpenDSS master file
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

    @property
    def hours(self) -> int:
        return len(self.profile)

    @property
    def n_areas(self) -> int:
        return int(self.buses["area"].nunique())


# ---------------------------------------------------------------------------------------------------------
# Loader: cases/*.toml (+ the OpenDSS model it names) -> Case
# ---------------------------------------------------------------------------------------------------------

_PACKAGE = Path(__file__).resolve().parent
#: Folder of the bundled cases: inside the installed package (a wheel carries cases/ as mpdopf_pyomo/cases),
#: else the repository's cases/ beside the package (source tree, editable install).
CASES_DIR = _PACKAGE / "cases" if (_PACKAGE / "cases").is_dir() else _PACKAGE.parent / "cases"

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
    Key("case", "network", "path", _REQUIRED, "OpenDSS master file, relative to the case file.", "str"),
    Key("case", "default_hours", "periods", _Derived("length of profiles.daily"),
        "Horizon used when no --hours is given.", "int"),
    Key("bases", "v_kv_ll", "kV", _Derived("the Vsource's basekV"),
        "Line-to-line base voltage; every bus must have it.",
        "float"),
    Key("bases", "s_kva", "kVA", 1000.0, "Three-phase base power (= 3 x the per-phase base).", "float"),
    Key("settings", "v_sub_pu", "pu", _S.v_sub_pu, "Substation (source bus) voltage magnitude.", "float"),
    Key("settings", "v_min_pu", "pu", _S.v_min_pu, "Lower bus voltage limit.", "float"),
    Key("settings", "v_max_pu", "pu", _S.v_max_pu, "Upper bus voltage limit.", "float"),
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
    Key("pv", "p_factor", "p_L", 0.33, "Rated PV power p_DR = p_factor x nominal load P of the bus.", "float"),
    Key("pv", "s_factor", "p_DR", 1.2, "Inverter rating S_DR = s_factor x p_DR.", "float"),
    Key("pv", "p_rated_kw", "kW (3-phase)", {}, "Explicit p_DR per bus, overriding p_factor.", "bus_map"),
    Key("pv", "s_rated_kva", "kVA (3-phase)", {}, "Explicit S_DR per bus, overriding s_factor.", "bus_map"),
    Key("battery", "buses", "bus names", [], "Buses with a battery (each at most once).", "buses"),
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
    Key("profiles.horizon.N", "clock_hour", "h", _Derived("the middle N periods of the day"),
        "Clock hour of each of the N periods (for reports).", "hour_list"),
    Key("profiles.horizon.N", "load_mult", "-", _REQUIRED, "Exact load multipliers for an N-period run.",
        "mult_list"),
    Key("profiles.horizon.N", "pv_mult", "-", _REQUIRED, "Exact PV multipliers for an N-period run.", "mult_list"),
    Key("profiles.horizon.N", "price_usd_per_kwh", "USD/kWh", _REQUIRED, "Exact prices for an N-period run.",
        "price_list"),
)

_SECTIONS: dict[str, dict[str, Key]] = {}
for _k in SCHEMA:
    _SECTIONS.setdefault(_k.section, {})[_k.name] = _k


def list_cases() -> list[tuple[str, str]]:
    """Bundled cases as ``(name, description)``, sorted by name (read from the TOML, no network load)."""
    out = []
    for path in sorted(CASES_DIR.glob("*.toml"), key=lambda p: p.stem):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            desc = str(data.get("case", {}).get("description", ""))
        except (OSError, tomllib.TOMLDecodeError):
            desc = "(unreadable case file)"
        out.append((path.stem, desc))
    return out


def resolve_case_path(spec: str | Path) -> Path:
    """``spec`` as a case file: an existing path, or the name of a bundled case in ``cases/``."""
    p = Path(spec)
    if p.is_file():
        return p.resolve()
    looks_like_path = p.suffix == ".toml" or len(p.parts) > 1
    if not looks_like_path:
        bundled = CASES_DIR / f"{spec}.toml"
        if bundled.is_file():
            return bundled
        names = ", ".join(n for n, _ in list_cases()) or "none"
        raise CaseError(f"{spec}: no such case (not a file, and not a bundled case: {names})")
    raise CaseError(f"{p}: case file not found")


class _Reader:
    """Checks one parsed case file against :data:`SCHEMA`; every error names the file and the key."""

    def __init__(self, file: Path, data: dict[str, Any]):
        self.file = file
        self.data = data

    def fail(self, key: str, what: str) -> CaseError:
        return CaseError(f"{self.file}: {key}: {what}")

    def check_unknown(self) -> None:
        for sec, body in self.data.items():
            if sec == "profiles":
                if not isinstance(body, dict):
                    raise self.fail("profiles", "must be a table")
                for sub, tbl in body.items():
                    if sub == "daily":
                        self._unknown_in("profiles.daily", tbl, _SECTIONS["profiles.daily"])
                    elif sub == "horizon":
                        if not isinstance(tbl, dict):
                            raise self.fail("profiles.horizon", "must be a table of [profiles.horizon.N]")
                        for n, t in tbl.items():
                            if not (n.isdigit() and int(n) >= 1):
                                raise self.fail(f"profiles.horizon.{n}", "N must be a positive whole number")
                            self._unknown_in(f"profiles.horizon.{n}", t, _SECTIONS["profiles.horizon.N"])
                    else:
                        raise self.fail(f"profiles.{sub}", "unknown key (expected daily or horizon.N)")
            elif sec in _SECTIONS:
                self._unknown_in(sec, body, _SECTIONS[sec])
            else:
                raise self.fail(sec, f"unknown section (expected one of {', '.join(_top_sections())})")

    def _unknown_in(self, where: str, body: Any, keys: dict[str, Key]) -> None:
        if not isinstance(body, dict):
            raise self.fail(where, "must be a table")
        for k in body:
            if k not in keys:
                raise self.fail(f"{where}.{k}", f"unknown key (known: {', '.join(keys)})")

    def get(self, section: str, name: str, table: dict[str, Any] | None = None, where: str | None = None) -> Any:
        """The value of ``section.name`` (or of ``name`` in ``table``), type-checked; the default if absent."""
        key = _SECTIONS[section][name]
        where = f"{where or section}.{name}"
        body = table if table is not None else self.data.get(section, {})
        if name not in body:
            if key.default is _REQUIRED:
                raise self.fail(where, "missing (required)")
            return key.default
        return _convert(key.kind, body[name], lambda what: self.fail(where, what))


def _top_sections() -> list[str]:
    out: list[str] = []
    for k in SCHEMA:
        top = k.section.split(".")[0]
        if top not in out:
            out.append(top)
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _convert(kind: str, v: Any, fail: Callable[[str], CaseError]) -> Any:
    if kind == "float":
        if not _is_num(v):
            raise fail(f"expected a number, got {v!r}")
        return float(v)
    if kind == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            raise fail(f"expected a whole number, got {v!r}")
        return v
    if kind == "str":
        if not isinstance(v, str):
            raise fail(f"expected a string, got {v!r}")
        return v
    if kind == "bool":
        if not isinstance(v, bool):
            raise fail(f"expected true or false, got {v!r}")
        return v
    if kind == "buses":
        if not isinstance(v, list):
            raise fail("expected a list of bus names")
        out = []
        for item in v:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise fail(f"expected bus names, got {item!r}")
            name = str(item).lower()
            if name in out:
                raise fail(f"duplicate bus {name!r}")
            out.append(name)
        return out
    if kind == "bus_map":
        if not isinstance(v, dict):
            raise fail("expected a table of bus = value")
        out_map: dict[str, float] = {}
        for bus, val in v.items():
            if not _is_num(val):
                raise fail(f"bus {bus!r}: expected a number, got {val!r}")
            if bus.lower() in out_map:
                raise fail(f"duplicate bus {bus.lower()!r}")
            out_map[bus.lower()] = float(val)
        return out_map
    if kind == "cut_list":
        if not isinstance(v, list):
            raise fail("expected a list of branch names or [bus, bus] pairs")
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
                raise fail(f"expected a branch name or a [bus, bus] pair, got {item!r}")
        return out_cut
    if kind in ("mult_list", "price_list", "hour_list"):
        if not isinstance(v, list) or not v:
            raise fail("expected a non-empty list of numbers")
        for item in v:
            if not _is_num(item):
                raise fail(f"expected numbers, got {item!r}")
            if kind != "price_list" and item < 0:
                raise fail(f"values must be >= 0, got {item!r}")
        return [float(x) for x in v]
    raise AssertionError(kind)  # pragma: no cover


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseError(f"{path}: cannot read the case file: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CaseError(f"{path}: malformed TOML: {exc}") from None


def _settings(r: _Reader) -> Settings:
    g = {k: r.get("settings", k) for k in _SECTIONS["settings"]}
    s = Settings(**g)
    if s.v_min_pu <= 0 or s.v_max_pu <= 0:
        raise r.fail("settings.v_min_pu", "voltage limits must be positive")
    if s.v_min_pu >= s.v_max_pu:
        raise r.fail("settings.v_min_pu", f"Vmin = {s.v_min_pu} must be below Vmax = {s.v_max_pu}")
    if s.v_sub_pu <= 0:
        raise r.fail("settings.v_sub_pu", "must be positive")
    if s.dt_h <= 0:
        raise r.fail("settings.dt_h", "must be positive")
    if s.alpha_usd_per_kwh < 0:
        raise r.fail("settings.alpha_usd_per_kwh", "must be >= 0")
    if s.inverter_limit not in ("circle", "box"):
        raise r.fail("settings.inverter_limit", f"{s.inverter_limit!r}: expected 'circle' or 'box'")
    if s.terminal_soc not in ("hard", "free", "penalty"):
        raise r.fail("settings.terminal_soc", f"{s.terminal_soc!r}: expected 'hard', 'free' or 'penalty'")
    if s.terminal_penalty_usd_per_kwh < 0:
        raise r.fail("settings.terminal_penalty_usd_per_kwh", "must be >= 0")
    return s


def _der_table(
    r: _Reader, section: str, buses: pd.DataFrame, root: str, s_kva: float
) -> tuple[list[str], pd.DataFrame]:
    """Buses and per-unit ratings (p_rated, s_rated[, e_rated]) of the PVs or batteries of ``section``."""
    names = r.get(section, "buses")
    for b in names:
        if b not in buses.index:
            raise r.fail(f"{section}.buses", f"unknown bus {b!r} (not in the network model)")
        if b == root:
            raise r.fail(f"{section}.buses", f"bus {b!r} is the substation bus")
    p_factor = r.get(section, "p_factor")
    s_factor = r.get(section, "s_factor")
    if p_factor <= 0:
        raise r.fail(f"{section}.p_factor", f"must be positive, got {p_factor}")
    if s_factor < 1:
        raise r.fail(f"{section}.s_factor", f"must be >= 1 (S below the rated power), got {s_factor}")
    explicit = {k: r.get(section, k) for k in ("p_rated_kw", "s_rated_kva", "e_rated_kwh") if k in _SECTIONS[section]}
    for key, mapping in explicit.items():
        for b, val in mapping.items():
            if b not in names:
                raise r.fail(f"{section}.{key}", f"bus {b!r} is not in {section}.buses")
            if val <= 0:
                raise r.fail(f"{section}.{key}", f"bus {b!r}: rating must be positive, got {val}")
    p = []
    for b in names:
        if b in explicit["p_rated_kw"]:
            p.append(explicit["p_rated_kw"][b] / s_kva)
        else:
            val = p_factor * float(buses.at[b, "p_load"])
            if val <= 0:
                raise r.fail(
                    f"{section}.buses",
                    f"bus {b!r} has no load, so p_factor gives a zero rating; give {section}.p_rated_kw",
                )
            p.append(val)
    s_exp = explicit["s_rated_kva"]
    s = [s_exp[b] / s_kva if b in s_exp else s_factor * pb for b, pb in zip(names, p)]
    for b, pb, sb in zip(names, p, s):
        if sb < pb * (1 - 1e-12):
            raise r.fail(f"{section}.s_rated_kva", f"bus {b!r}: S = {sb * s_kva:g} kVA below P = {pb * s_kva:g} kW")
    table = pd.DataFrame({"p_rated": p, "s_rated": s}, index=pd.Index(names, name="bus"))
    return names, table


def _batteries(r: _Reader, buses: pd.DataFrame, root: str, s_kva: float) -> pd.DataFrame:
    names, table = _der_table(r, "battery", buses, root, s_kva)
    e_hours = r.get("battery", "e_hours")
    if e_hours <= 0:
        raise r.fail("battery.e_hours", f"must be positive, got {e_hours}")
    e_exp = r.get("battery", "e_rated_kwh")
    table["e_rated"] = [e_exp[b] / s_kva if b in e_exp else e_hours * pb for b, pb in zip(names, table["p_rated"])]
    vals = {k: r.get("battery", k) for k in ("soc_min", "soc_max", "soc0", "eta_c", "eta_d")}
    for k in ("soc_min", "soc_max", "soc0"):
        if not 0 <= vals[k] <= 1:
            raise r.fail(f"battery.{k}", f"must be a fraction in [0, 1], got {vals[k]}")
    if vals["soc_min"] > vals["soc_max"]:
        raise r.fail("battery.soc_min", f"soc_min = {vals['soc_min']} is above soc_max = {vals['soc_max']}")
    if not vals["soc_min"] <= vals["soc0"] <= vals["soc_max"]:
        raise r.fail("battery.soc0", f"{vals['soc0']} is outside [soc_min, soc_max]")
    for k in ("eta_c", "eta_d"):
        if not 0 < vals[k] <= 1:
            raise r.fail(f"battery.{k}", f"must be in (0, 1], got {vals[k]}")
    for k, v in vals.items():
        table[k] = v
    return table


def _profile(r: _Reader, hours: int | None, dt_h: float) -> pd.DataFrame:
    """The horizon's profile: an exact [profiles.horizon.N] if the file has one, else the middle N periods."""
    prof = r.data.get("profiles", {})
    if "daily" not in prof:
        raise r.fail("profiles.daily", "missing (required)")
    daily_tbl = prof["daily"]
    cols = ("load_mult", "pv_mult", "price_usd_per_kwh")
    daily = {c: r.get("profiles.daily", c, daily_tbl) for c in cols}
    length = len(daily["load_mult"])
    for c in cols:
        if len(daily[c]) != length:
            raise r.fail(f"profiles.daily.{c}", f"{len(daily[c])} values, but load_mult has {length}")
    overrides = prof.get("horizon", {})
    if hours is None:
        hours = r.get("case", "default_hours")
        if isinstance(hours, _Derived):
            hours = length
        key = "case.default_hours"
    else:
        key = "--hours"
    if hours < 1:
        raise r.fail(key, f"the horizon must be at least 1 period, got {hours}")
    if str(hours) in overrides:
        where = f"profiles.horizon.{hours}"
        tbl = overrides[str(hours)]
        vals = {c: r.get("profiles.horizon.N", c, tbl, where) for c in cols}
        for c in cols:
            if len(vals[c]) != hours:
                raise r.fail(f"{where}.{c}", f"{len(vals[c])} values for a {hours}-period horizon")
        start = (length - hours) // 2 if hours <= length else 0
        if "clock_hour" in tbl:
            clock = r.get("profiles.horizon.N", "clock_hour", tbl, where)
            if len(clock) != hours:
                raise r.fail(f"{where}.clock_hour", f"{len(clock)} values for a {hours}-period horizon")
        else:
            clock = [(start + k) * dt_h for k in range(hours)]
    else:
        if hours > length:
            raise r.fail(
                "profiles.daily",
                f"{length} periods, shorter than the horizon of {hours} (and no [profiles.horizon.{hours}])",
            )
        start = (length - hours) // 2
        vals = {c: daily[c][start : start + hours] for c in cols}
        clock = [(start + k) * dt_h for k in range(hours)]
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


def load_case(spec: str | Path, hours: int | None = None) -> Case:
    """Load a case (bundled name such as ``"ieee123"`` or a path to a ``.toml``) over ``hours`` periods.

    Reads and checks the TOML, compiles the OpenDSS model it names, builds the radial tree in per unit on
    the case's bases, maps loads and capacitors to buses, assigns areas and cuts the profile to the horizon
    (``hours=None``: the case's ``default_hours``). Any bad input raises :class:`CaseError` naming the
    file and the key.
    """
    path = resolve_case_path(spec)
    r = _Reader(path, _read_toml(path))
    r.check_unknown()

    name = r.get("case", "name")
    if isinstance(name, _Derived):
        name = path.stem
    description = r.get("case", "description")
    model_rel = r.get("case", "network")
    model = (path.parent / model_rel).resolve()
    if not model.is_file():
        raise r.fail("case.network", f"network model file not found: {model}")
    settings = _settings(r)

    s_kva = r.get("bases", "s_kva")
    if s_kva <= 0:
        raise r.fail("bases.s_kva", f"must be positive, got {s_kva}")
    try:
        net = network.read_network(model, s_kva_hint=s_kva)
        where = str(model)
        v_kv_ll = r.get("bases", "v_kv_ll")
        if isinstance(v_kv_ll, _Derived):
            v_kv_ll = net.source_kv_ll
        if v_kv_ll <= 0:
            raise r.fail("bases.v_kv_ll", f"must be positive, got {v_kv_ll}")
        bases = Bases(v_kv_ll=v_kv_ll, s_kva=s_kva)
        tree = network.build_tree(net.lines, list(net.buses.index), net.root, where)
        off = net.buses.index[(net.buses["kv_base_ln"] - bases.v_kv_ln).abs() > 1e-6 * bases.v_kv_ln]
        if len(off):
            b = off[0]
            raise r.fail(
                "bases.v_kv_ll",
                f"bus {b} of {where} has base {net.buses.at[b, 'kv_base_ln'] * 3**0.5:.4g} kV, not {v_kv_ll:g} kV "
                "(one voltage level only)",
            )
    except CaseError as exc:
        msg = str(exc)
        if msg.startswith(str(path)):
            raise
        raise CaseError(f"{path}: case.network: {msg}") from None

    z = bases.z_ohm
    branches = pd.DataFrame(
        {
            "from_bus": tree["from_bus"],
            "to_bus": tree["to_bus"],
            "r": tree["r_ohm"] / z,
            "x": tree["x_ohm"] / z,
        }
    )
    order = [net.root, *branches["to_bus"]]
    p_load = net.loads.groupby("bus")["kw"].sum() / s_kva
    q_load = net.loads.groupby("bus")["kvar"].sum() / s_kva
    q_cap = net.capacitors.groupby("bus")["kvar"].sum() / s_kva
    buses = pd.DataFrame(index=pd.Index(order, name="bus"))
    buses["p_load"] = p_load.reindex(order, fill_value=0.0).to_numpy()
    buses["q_load"] = q_load.reindex(order, fill_value=0.0).to_numpy()
    buses["q_cap"] = q_cap.reindex(order, fill_value=0.0).to_numpy()
    buses["x"] = net.buses["x"].reindex(order).to_numpy()
    buses["y"] = net.buses["y"].reindex(order).to_numpy()

    # areas
    cut_specs = r.get("areas", "cut_branches")
    cut_branches: list[str] = []
    for k, spec_k in enumerate(cut_specs):
        br = network.resolve_branch(branches, spec_k)
        if br is None:
            if isinstance(spec_k, str):
                what = f"no branch named {spec_k!r}"
            else:
                what = f"no branch between buses {spec_k[0]!r} and {spec_k[1]!r}"
            raise r.fail(f"areas.cut_branches[{k}]", what)
        if br in cut_branches:
            raise r.fail(f"areas.cut_branches[{k}]", f"duplicate cut branch {br!r}")
        cut_branches.append(br)
    area = network.assign_areas(branches, net.root, cut_branches)
    buses.insert(0, "area", area.reindex(order).to_numpy().astype(int))

    _, pvs = _der_table(r, "pv", buses, net.root, s_kva)
    batteries = _batteries(r, buses, net.root, s_kva)
    profile = _profile(r, hours, settings.dt_h)

    return Case(
        name=name,
        source=path,
        network_model=model,
        bases=bases,
        settings=settings,
        root=net.root,
        buses=buses,
        branches=branches,
        pvs=pvs,
        batteries=batteries,
        profile=profile,
        cut_branches=cut_branches,
        description=description,
    )


def _natural(name: str) -> tuple:
    """Sort key that puts bus '9' before '10' and '25r' after '25'."""
    return tuple(int(t) if t.isdigit() else t for t in re.findall(r"\d+|\D+", name))


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
        f"  buses       {len(b)}",
        f"  branches    {len(case.branches)}",
        f"  loads       {len(loads)}: {p_kw:.3f} kW + {q_kvar:.3f} kvar three-phase"
        f" = {p_kw / ph:.3f} kW + {q_kvar / ph:.3f} kvar per phase",
        f"  capacitors  {len(caps)}: "
        + ", ".join(f"{bus} {caps.at[bus, 'q_cap'] * s3 / ph:g}" for bus in sorted(caps.index, key=_natural))
        + " kvar per phase (fixed)",
        f"  PVs         {len(case.pvs)}: {case.pvs['p_rated'].sum() * s3 / ph:.3f} kW rated, "
        f"{case.pvs['s_rated'].sum() * s3 / ph:.3f} kVA per phase; buses {' '.join(case.pvs.index)}",
        f"  batteries   {len(case.batteries)}: {case.batteries['p_rated'].sum() * s3 / ph:.3f} kW, "
        f"{case.batteries['e_rated'].sum() * s3 / ph:.3f} kWh per phase; buses {' '.join(case.batteries.index)}",
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
        "    pv_mult    " + " ".join(f"{v:g}" for v in pr["pv_mult"]),
        "    price      " + " ".join(f"{v:g}" for v in pr["price"]) + " USD/kWh",
        f"  settings    V_sub {st.v_sub_pu:g} pu, V {st.v_min_pu:g}..{st.v_max_pu:g} pu, "
        f"inverter limit {st.inverter_limit}, terminal SOC {st.terminal_soc}, "
        f"reverse power {'allowed' if st.reverse_power else 'not allowed'}, alpha {st.alpha_usd_per_kwh:g} USD/kWh",
    ]
    return "\n".join(lines)
