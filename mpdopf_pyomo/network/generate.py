"""Large radial test feeders: copies of the bundled IEEE 123 model joined at their roots (``cases generate``).

A generated feeder has K *sections*, each an exact copy of ``models/ieee123`` (128 buses, its lines,
loads and fixed capacitor injections, bus names prefixed ``sNN_``), and one substation bus ``sub``:
K * 128 + 1 buses. Section k's root bus (its ``150``) hangs from a *joint* line:

* ``tree`` (default): a shallow tree of sections, like the authors' 101-area "large10k": sections
  1..fanout hang from the substation, section k > fanout from the root of section (k - 1) // fanout
  (heap order), so depth grows with log_fanout(K);
* ``chain``: section 1 from the substation, section k from the root of section k - 1.

Joints are stiff connectors (``--joint-ohm``, default 1e-4 ohm = the ieee123 model's xfm1 connector):
all the sections' load flows through the joints above them, so a soft backbone (or a long chain) pulls
the voltage below the study's limit. The case TOML cuts every joint but section 1's, so areas = sections (area 1 = the substation and
section 1).

DERs follow the study's recipe on the whole feeder: 20 % of the load buses get a PV, 30 % a battery,
largest nominal loads first (ties: the ieee123 bus order, then the section, so equal sections get
equal DERs), with Table I ratings
(p = 0.33 p_L, S = 1.2 p, batteries 4 h, SOC 0.30..0.95, start 0.625, efficiencies 0.95). Settings and
the forecast are those of ``cases/ieee123.toml``. The output is deterministic.

Before anything is written, the feeder is checked at the study's limits with a LinDistFlow sweep of the
forecast (no batteries, PV at zero reactive power, losses neglected, every hour): a minimum voltage below
``v_min`` or above ``v_max`` is an error (exit 2) naming the bus and a remedy.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpdopf_pyomo.errors import CaseError

#: Buses per section (the ieee123 model) and the substation bus name.
SECTION_BUSES = 128
#: The longest horizon of a generated feeder's case (its profiles are one day of hours).
MAX_HOURS = 24
SUB = "sub"
#: Default joint impedance, ohm per phase (R = X): the ieee123 model's xfm1 connector.
JOINT_OHM = 1e-4
#: Study's DER shares of the load buses and Table I ratings.
PV_SHARE, BATTERY_SHARE = 0.20, 0.30
#: Three-phase base power per 16 sections, kVA (ieee123 uses 3000 kVA): keeps the nominal load near 1-20 pu.
S_KVA_PER_16 = 3000.0
_FILES = ("master.dss", "lines.dss", "loads.dss", "capacitors.dss", "buscoords.dss", "case.toml")


@dataclass
class Generated:
    """What :func:`generate` wrote: the folder, the case file and the feasibility figures."""

    folder: Path
    case_file: Path
    sections: int
    buses: int
    layout: str
    depth: int
    v_min_pu: float
    v_max_pu: float
    worst_bus: str


def sections_for(n_buses: int) -> int:
    """Number of ieee123 sections for at least ``n_buses`` buses (K * 128 + 1 >= n_buses, K >= 1)."""
    if n_buses < SECTION_BUSES + 1:
        raise CaseError(f"--buses {n_buses}: a generated feeder has at least {SECTION_BUSES + 1} buses "
                        "(one ieee123 section and the substation)")
    return math.ceil((n_buses - 1) / SECTION_BUSES)


def parents(k: int, layout: str, fanout: int) -> list[int]:
    """Parent section of sections 1..k (0 = the substation), for ``layout`` 'tree' or 'chain'."""
    if layout == "chain":
        return [s - 1 for s in range(1, k + 1)]
    if layout != "tree":
        raise CaseError(f"--layout {layout!r}: choose tree or chain")
    return [0 if s <= fanout else (s - 1) // fanout for s in range(1, k + 1)]


def _depth(par: list[int]) -> int:
    depth = {0: 0}
    for s, p in enumerate(par, start=1):
        depth[s] = depth[p] + 1
    return max(depth.values())


def _section_model() -> tuple[Any, dict[str, Any]]:
    """The bundled ieee123 network in physical units (one section) and its case TOML.

    Read through the case loader, so a section is exactly what the optimisation sees of ieee123: branches
    (from_bus, to_bus, r_ohm, x_ohm), per-bus loads (kW, kvar, three-phase) and fixed capacitor kvar.
    """
    from types import SimpleNamespace

    import pandas as pd

    from mpdopf_pyomo.case import CASES_DIR, load_case

    case_file = CASES_DIR / "ieee123.toml"
    spec = tomllib.loads(case_file.read_text(encoding="utf-8"))
    case = load_case(case_file, 1, warn=None)
    z, s_kva = case.bases.z_ohm, case.bases.s_kva
    br, b = case.branches, case.buses
    lines = pd.DataFrame({"bus1": br["from_bus"], "bus2": br["to_bus"], "r_ohm": br["r"] * z, "x_ohm": br["x"] * z})
    loaded = b[(b["p_load"] != 0) | (b["q_load"] != 0)]
    loads = pd.DataFrame({"bus": loaded.index, "kw": loaded["p_load"].to_numpy() * s_kva,
                          "kvar": loaded["q_load"].to_numpy() * s_kva},
                         index=pd.Index([f"ld_{x}" for x in loaded.index], name="name"))
    capped = b[b["q_cap"] != 0]
    caps = pd.DataFrame({"bus": capped.index, "kvar": capped["q_cap"].to_numpy() * s_kva},
                        index=pd.Index([f"cap_{x}" for x in capped.index], name="name"))
    tables = SimpleNamespace(root=case.root, source_kv_ll=case.bases.v_kv_ll, source_pu=case.settings.v_sub_pu,
                             buses=b[["x", "y"]], lines=lines, loads=loads, capacitors=caps)
    return tables, spec


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    """TOML text of ``{table name: {key: scalar or list}}`` (the case file's subset of TOML)."""
    out = []
    for name, body in tables.items():
        out.append(f"\n[{name}]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in body.items())
    return "\n".join(out) + "\n"


def generate(n_buses: int, out: str | Path, layout: str = "tree", fanout: int = 4,
             joint_ohm: float = JOINT_OHM, hours: int | None = None) -> Generated:
    """Write a generated feeder (OpenDSS model + ``case.toml``) into the new or empty folder ``out``.

    Raises :class:`CaseError` (exit 2) on bad arguments or when the feeder violates the study's voltage
    limits in the LinDistFlow check; nothing is written then.
    """
    from mpdopf_pyomo.outputs import OutputFolder

    k = sections_for(n_buses)
    if fanout < 1:
        raise CaseError(f"--fanout {fanout}: must be >= 1")
    if not (math.isfinite(joint_ohm) and joint_ohm > 0):
        raise CaseError(f"--joint-ohm {joint_ohm}: must be finite and > 0")
    if hours is not None and not 1 <= hours <= MAX_HOURS:
        raise CaseError(f"--hours {hours}: choose 1..{MAX_HOURS}")
    par = parents(k, layout, fanout)
    tables, spec = _section_model()
    root = tables.root
    width = max(2, len(str(k)))

    def name(s: int, bus: str) -> str:
        return f"s{s:0{width}d}_{bus}"

    kv = tables.source_kv_ll
    lines, loads, caps, coords = [], [], [], []
    cuts: list[list[str]] = []
    load_rows: list[tuple[float, int, int, str]] = []  # (-kW, ieee123 order, section, bus): the DER ranking
    order = {b: i for i, b in enumerate(tables.buses.index)}
    side = math.ceil(math.sqrt(k))
    xs, ys = tables.buses["x"].fillna(0.0), tables.buses["y"].fillna(0.0)
    span_x, span_y = float(xs.max() - xs.min()) * 1.1 + 1, float(ys.max() - ys.min()) * 1.1 + 1
    coords.append(f"SetBusXY bus={SUB} x={-span_x / 2:.1f} y={float(ys.mean()):.1f}")
    for s in range(1, k + 1):
        up = SUB if par[s - 1] == 0 else name(par[s - 1], root)
        lines.append(f"New Line.j{s:0{width}d} phases=3 bus1={up} bus2={name(s, root)} r1={joint_ohm!r} "
                     f"x1={joint_ohm!r} r0={joint_ohm!r} x0={joint_ohm!r} c1=0 c0=0 length=1 units=none"
                     f"  ! joint: section {s} below {'the substation' if par[s - 1] == 0 else f'section {par[s - 1]}'}")
        if s > 1:  # section 1 shares the substation's area (else area 1 would be the lone bus ``sub``)
            cuts.append([up, name(s, root)])
        for ln, row in tables.lines.iterrows():
            lines.append(f"New Line.{name(s, ln)} phases=3 bus1={name(s, row['bus1'])} bus2={name(s, row['bus2'])} "
                         f"r1={float(row['r_ohm'])!r} x1={float(row['x_ohm'])!r} r0={float(row['r_ohm'])!r} x0={float(row['x_ohm'])!r} "
                         "c1=0 c0=0 length=1 units=none")
        for ld, row in tables.loads.iterrows():
            loads.append(f"New Load.{name(s, ld)} bus1={name(s, row['bus'])} phases=3 conn=wye kV={kv:g} "
                         f"kW={float(row['kw'])!r} kvar={float(row['kvar'])!r} model=1 vminpu=0.5 vmaxpu=1.5")
            load_rows.append((-float(row["kw"]), order[row["bus"]], s, name(s, row["bus"])))
        for cp, row in tables.capacitors.iterrows():
            caps.append(f"New Generator.{name(s, cp)} bus1={name(s, row['bus'])} phases=3 kV={kv:g} kW=0 "
                        f"kvar={float(row['kvar'])!r} model=1 vminpu=0.5 vmaxpu=1.5")
        ox, oy = ((s - 1) % side) * span_x, ((s - 1) // side) * span_y
        coords.extend(f"SetBusXY bus={name(s, b)} x={x + ox:.1f} y={y + oy:.1f}" for b, x, y in zip(xs.index, xs, ys))

    # DERs: largest loads first, on distinct load buses (a bus with two loads counts once, at its sum)
    per_bus: dict[str, list[Any]] = {}
    for neg_kw, o, s, bus in load_rows:
        e = per_bus.setdefault(bus, [0.0, o, s, bus])
        e[0] += neg_kw
    ranked = [e[3] for e in sorted(per_bus.values())]
    n_pv, n_bat = round(PV_SHARE * len(ranked)), round(BATTERY_SHARE * len(ranked))
    s_kva = S_KVA_PER_16 * max(1, k // 16)
    case_spec = {
        "case": {"name": f"gen{k * SECTION_BUSES + 1}_{layout}",
                 "description": f"generated: {k} ieee123 sections in a {layout} "
                                f"({'fanout ' + str(fanout) + ', ' if layout == 'tree' else ''}depth {_depth(par)}), "
                                f"{k * SECTION_BUSES + 1} buses, {n_pv} PVs, {n_bat} batteries, {k} areas",
                 "network": "master.dss",
                 "default_hours": hours or spec["case"]["default_hours"]},
        "bases": {"v_kv_ll": spec["bases"]["v_kv_ll"], "s_kva": s_kva},
        "settings": spec["settings"],
        "pv": {**{k2: v for k2, v in spec["pv"].items() if k2 != "buses"}, "buses": ranked[:n_pv]},
        "battery": {**{k2: v for k2, v in spec["battery"].items() if k2 != "buses"}, "buses": ranked[:n_bat]},
        "areas": {"cut_branches": cuts},
        "profiles.daily": spec["profiles"]["daily"],
    }
    for h, body in spec["profiles"].get("horizon", {}).items():
        case_spec[f"profiles.horizon.{h}"] = body

    src = tables.source_pu
    master = "\n".join([
        "! Written by mpdopf_pyomo cases generate: a large radial test feeder of ieee123 sections.",
        f"! {k} copies of models/ieee123 (bus names sNN_<ieee name>), layout {layout}, joints "
        f"{joint_ohm!r} ohm (R = X) per phase; see docs (case format, generated feeders).",
        "Clear",
        f"New Circuit.gen phases=3 bus1={SUB} basekV={kv:g} pu={src!r} R1=0 X1=1e-8 R0=0 X0=1e-8",
        "Redirect lines.dss", "Redirect loads.dss", "Redirect capacitors.dss",
        f"Set VoltageBases=[{kv:g}]", "CalcVoltageBases", "Redirect buscoords.dss", "Set Tolerance=1e-10", "",
    ])
    texts = {"master.dss": master, "lines.dss": "\n".join(lines) + "\n", "loads.dss": "\n".join(loads) + "\n",
             "capacitors.dss": "\n".join(caps) + "\n", "buscoords.dss": "\n".join(coords) + "\n",
             "case.toml": "# Written by mpdopf_pyomo cases generate (deterministic; regenerate rather than edit).\n"
                          + _toml(case_spec)}

    target = OutputFolder.claim(out)
    try:
        for fname, text in texts.items():
            (target.staging / fname).write_text(text, encoding="utf-8")
        from mpdopf_pyomo.case import load_case

        case = load_case(target.staging / "case.toml", 24)  # every hour of the day: the peak load is at 19 h
        vmin, vmax, worst = check_voltages(case)
        st = case.settings
        if vmin < st.v_min_pu or vmax > st.v_max_pu:
            hint = ("use --layout tree" if layout == "chain" else "use a larger --fanout")
            raise CaseError(
                f"generated feeder ({k} sections, {layout}, joints {joint_ohm:g} ohm) is infeasible at the study's "
                f"limits: LinDistFlow voltage {vmin:.4f} .. {vmax:.4f} pu (limits {st.v_min_pu} .. {st.v_max_pu}, "
                f"worst bus {worst}); {hint}, a stiffer joint (--joint-ohm) or fewer buses")
        folder = target.commit(_FILES)
    except BaseException:
        target.discard()
        raise
    return Generated(folder, folder / "case.toml", k, k * SECTION_BUSES + 1, layout, _depth(par), vmin, vmax, worst)


def check_voltages(case: Any) -> tuple[float, float, str]:
    """(min, max voltage in pu, bus of the minimum) of the LinDistFlow sweep over the case's horizon."""
    from mpdopf_pyomo.problem import flat_start

    v = flat_start(case)["v"]
    mag = np.sqrt(np.maximum(v.to_numpy(), 0.0))
    i = np.unravel_index(np.argmin(mag), mag.shape)
    return float(mag.min()), float(mag.max()), str(v.index[i[0]])


def describe(g: Generated) -> str:
    """The lines ``cases generate`` prints."""
    return (f"{g.case_file}: {g.buses} buses ({g.sections} ieee123 sections, {g.layout}, depth {g.depth}), "
            f"{g.sections} areas\n  LinDistFlow check: voltage {g.v_min_pu:.4f} .. {g.v_max_pu:.4f} pu "
            f"(lowest at {g.worst_bus}): within the study's limits")


