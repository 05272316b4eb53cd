"""The public feeders' figures (issue 11): the base-case gap of the balanced conversion, and timed solves.

``python -m mpdopf_pyomo.feeders`` (= ``... table``) writes the closing table, one row per feeder (IEEE 13,
34, 123, 8500, 9500 and the MATPOWER case33bw, case69, case141): buses, branches, loads, the conversion
report in one cell, the base-case gap (OpenDSS feeders: to the original feeder, below; MATPOWER: losses and
the lowest voltage against the published base case), the 5-h central and ADMM (4 areas, default
settings) wall times, and both validation figures: ``bench/results/feeders.md`` and ``.csv``
(rewritten after every feeder).

``python -m mpdopf_pyomo.feeders base [FEEDER.dss ...]`` compares, for each OpenDSS feeder (default: the
IEEE 13, 34, 123, 8500 and 9500 of ``../shared/reference/feeders``), the converted balanced model with the
original feeder in OpenDSS at the base case -- no DERs, one hour, the feeder's own load:

* **original**: the feeder compiled and solved once with its controls on at its own load level
  (:func:`network.opendss.solve_operating_point`, exactly what the reader does before it reads the taps),
  then its PVSystem and Storage elements disabled (no DERs) and solved again with the controls off, so the
  regulators and capacitors stay where the conversion read them;
* **converted**: the case's balanced tables (``load_case(FEEDER.dss, 1)``, every approximation of the
  conversion report included) exported to OpenDSS (:func:`network.export.write_opendss`) and solved:
  check (1) of the validation shows that this is the optimisation's own power flow to about 1e-8 pu.

Figures: substation P and Q of both and their relative gaps (target: within 1 %), and the largest
``|V_converted - mean phase voltage of the original|`` over the three-phase buses of the converted model
(the backbone; target 0.02 pu), with the bus where it occurs. ``python -m mpdopf_pyomo.feeders solve``
runs ``solve --hours 5`` central and ``--algorithm admm --areas 4`` on each feeder in fresh processes and
tabulates wall time, convergence and both validation figures. ``python -m mpdopf_pyomo.feeders three-phase``
solves the bundled unbalanced cases (IEEE 13, 34, 123 with the study's DERs, 5 h) with ``3ph-exact`` central
and by ADMM on 4 areas, and ``3ph-linear``, and the IEEE 8500 (no DERs, 1 h) with ``3ph-exact``: wall time,
IPOPT or ADMM iterations, the gap to the central objective and the node-by-node check against OpenDSS
(``bench/results/three_phase.md``). Tables go to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mpdopf_pyomo.outputs import BenchFolder

#: The public feeders, relative to the shared reference folder (``../shared/reference/feeders``).
FEEDERS = {
    "ieee13": "ieee13/opendss/IEEE13Nodeckt.dss",
    "ieee34": "ieee34/opendss/ieee34Mod1.dss",
    "ieee123": "ieee123/opendss/IEEE123Master.dss",
    "ieee8500": "ieee8500/opendss/Master.dss",
    "ieee9500": "ieee9500/opendss/ieee9500_base.dss",
}


def _reference() -> Path:
    """``shared/reference/feeders`` in the nearest parent folder of the repository that has it (a checkout
    beside ``shared``, or a worktree one level deeper); the sibling path when none has it."""
    repo = Path(__file__).resolve().parents[1]
    for parent in repo.parents:
        cand = parent / "shared" / "reference" / "feeders"
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "reference" / "feeders"


#: Where the public reference feeders are (:func:`_reference`).
REFERENCE = _reference()
#: The issue's targets: substation P and Q within 1 %, backbone voltages within 0.02 pu.
TARGET_REL_PQ = 0.01
TARGET_DV_PU = 0.02


def feeder_path(name: str, reference: Path = REFERENCE) -> Path:
    """The master file of a public feeder by its short name (``ieee13`` ...)."""
    return reference / FEEDERS[name]


#: Element groups of :func:`power_by_group` (OpenDSS classes): where a base-case gap comes from.
GROUPS = {"load": "loads", "line": "lines", "capacitor": "lines", "reactor": "lines", "transformer": "transformers",
          "generator": "generators", "pvsystem": "generators", "storage": "generators"}


def power_by_group(element_group: dict[str, str] | None = None) -> dict[str, tuple[float, float]]:
    """kW and kvar of the solved circuit per element group: ``loads`` (what they draw), ``lines`` (series
    losses of lines and reactors with their charging, and the shunt capacitors' and reactors' kvar: in the
    balanced equivalent line charging sits in bus shunts, so they are one group), ``transformers``
    (transformers and regulators: series losses, magnetising, no-load loss), ``generators`` (what they
    draw: negative). Their sum is the substation's P and Q. ``element_group`` (lower-case element name ->
    group) overrides the class rule: the exported balanced model writes a transformer as an ideal
    transformer and a Line of the branch's name that carries its impedance."""
    from mpdopf_pyomo.network import engine

    dss = engine()
    out = {g: [0.0, 0.0] for g in dict.fromkeys(GROUPS.values())}
    for name in dss.Circuit.AllElementNames():
        group = (element_group or {}).get(name.lower()) or GROUPS.get(name.split(".", 1)[0].lower())
        if group is None:
            continue
        dss.Circuit.SetActiveElement(name)
        if not dss.CktElement.Enabled():
            continue
        if group in ("loads", "generators"):
            pw = dss.CktElement.Powers()
            p, q = sum(pw[0::2]), sum(pw[1::2])
        else:
            p, q = (v / 1000.0 for v in dss.CktElement.Losses())
        out[group][0] += p
        out[group][1] += q
    return {g: (v[0], v[1]) for g, v in out.items()}


def _original_base_case(path: Path) -> dict[str, Any]:
    """Solve the original feeder at its operating point without DERs; substation P, Q and node voltages."""
    from mpdopf_pyomo.network import compile_model, engine, substation_power_kw
    from mpdopf_pyomo.network.opendss import solve_operating_point

    compile_model(path)
    dss = engine()
    op_converged = solve_operating_point()
    dss.Text.Command("Set ControlMode=OFF")
    dss.Text.Command("Set Tolerance=1e-10")
    for name in dss.Circuit.AllElementNames():
        if name.lower().split(".", 1)[0] in ("pvsystem", "storage"):
            dss.Text.Command(f"{name}.enabled=no")
    try:
        dss.Solution.Solve()
        converged = bool(dss.Solution.Converged())
    except Exception:
        converged = False
    p, q = substation_power_kw()
    groups = power_by_group() if converged else {}
    nodes = [n.lower() for n in dss.Circuit.AllNodeNames()]
    mag = np.asarray(dss.Circuit.AllBusVMag(), dtype=float) / 1000.0  # kV; per unit on the equivalent's base below
    return {"operating_point_converged": op_converged, "converged": converged, "p_kw": p, "q_kvar": q,
            "loads": int(dss.Loads.Count()), "groups": groups,
            "nodes": dict(zip(nodes, mag))}


def _converted_base_case(path: Path) -> dict[str, Any]:
    """The converted case (one hour, no DERs) as its exported balanced OpenDSS model, solved."""
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.network import bus_voltages_pu, compile_model, engine, substation_power_kw
    from mpdopf_pyomo.network.export import write_opendss
    from mpdopf_pyomo.network.reduce import balanced_network

    t0 = time.perf_counter()
    case = load_case(path, 1, warn=None)
    t_load = time.perf_counter() - t0
    net = balanced_network(case.buses, case.branches, case.root, case.bases.s_kva, case.settings.v_sub_pu,
                           name=case.name, path=case.network_model)
    dss = engine()
    with tempfile.TemporaryDirectory(prefix="mpdopf_base_") as tmp:
        compile_model(write_opendss(net, Path(tmp) / "balanced"))
    dss.Text.Command("Set ControlMode=OFF")
    dss.Text.Command("Set Tolerance=1e-10")
    dss.Solution.LoadMult(float(case.profile["load_mult"].iloc[0]))
    dss.Solution.Solve()
    p, q = substation_power_kw()
    return {"case": case, "converged": bool(dss.Solution.Converged()), "p_kw": p, "q_kvar": q,
            "v": bus_voltages_pu(), "load_s": t_load,
            "groups": power_by_group({f"line.{b}".lower(): "transformers" for b, kind in case.branches["kind"].items()
                                      if kind in ("transformer", "regulator")})}


def base_case_gap(path: str | Path) -> dict[str, Any]:
    """The base-case comparison of one feeder (module docstring): a flat dict, one benchmark row."""
    path = Path(path).resolve()
    conv = _converted_base_case(path)
    orig = _original_base_case(path)
    case = conv["case"]
    report = case.conversion
    backbone = []  # (|dV|, bus): three-phase buses of the converted model
    for bus in case.buses.index:
        base = float(case.buses.at[bus, "v_base_kv_ln"])
        phases = [orig["nodes"][f"{bus}.{k}"] / base if f"{bus}.{k}" in orig["nodes"] else None for k in (1, 2, 3)]
        if all(v is not None for v in phases):
            backbone.append((abs(float(conv["v"][bus]) - float(np.mean(phases))), bus))
    dv, worst = max(backbone) if backbone else (math.nan, "")

    def rel(a: float, b: float) -> float:
        return abs(a - b) / abs(b) if b else math.nan

    row = {
        "feeder": case.name, "path": str(path),
        "buses": len(case.buses), "branches": len(case.branches),
        "loads": orig["loads"], "load_buses": int((case.buses["p_load"] != 0).sum()),
        "load_kw": report.total_load_kw,
        "approximations": len(report.entries),
        "report": "; ".join(f"{e.what.split(':')[0]} ({e.count})" for e in report.entries) or "exact",
        "original_converged": orig["converged"] and orig["operating_point_converged"],
        "p_orig_kw": orig["p_kw"], "q_orig_kvar": orig["q_kvar"],
        "p_conv_kw": conv["p_kw"], "q_conv_kvar": conv["q_kvar"],
        "rel_dp": rel(conv["p_kw"], orig["p_kw"]), "rel_dq": rel(conv["q_kvar"], orig["q_kvar"]),
        "backbone_buses": len(backbone), "backbone_max_dv_pu": dv, "backbone_worst_bus": worst,
        "load_case_s": conv["load_s"],
    }
    # where the gap comes from: converted - original per element group (sums to the substation's gap)
    for group in dict.fromkeys(GROUPS.values()):
        for k, what in ((0, "dp"), (1, "dq")):
            a, b = conv["groups"].get(group), orig["groups"].get(group)
            row[f"{what}_{group}"] = a[k] - b[k] if a is not None and b is not None else math.nan
    # what no group holds (the source's side: OpenDSS's TotalPower against the elements' own powers)
    row["dp_rest"] = conv["p_kw"] - orig["p_kw"] - sum(row[f"dp_{g}"] for g in dict.fromkeys(GROUPS.values()))
    row["dq_rest"] = conv["q_kvar"] - orig["q_kvar"] - sum(row[f"dq_{g}"] for g in dict.fromkeys(GROUPS.values()))
    row["within_target"] = bool(row["original_converged"] and row["rel_dp"] <= TARGET_REL_PQ
                                and row["rel_dq"] <= TARGET_REL_PQ and dv <= TARGET_DV_PU)
    return row


def format_gap(row: dict[str, Any]) -> str:
    """A :func:`base_case_gap` row as the lines ``cases show --gap`` prints (indented like the report)."""
    if not row["original_converged"]:
        return ("  base-case gap  no reference: the original feeder's own OpenDSS power flow does not converge "
                f"(converted: {row['p_conv_kw']:.1f} kW + {row['q_conv_kvar']:.1f} kvar)")
    groups = ("loads", "lines", "transformers", "generators", "rest")
    names = {"lines": "lines+shunts", "rest": "source side"}
    return "\n".join([
        f"  base-case gap  the network alone (no DERs, one hour, its own load) against the original feeder in "
        f"OpenDSS: P {row['p_orig_kw']:.1f} -> {row['p_conv_kw']:.1f} kW ({100 * row['rel_dp']:.2f} %), "
        f"Q {row['q_orig_kvar']:.1f} -> {row['q_conv_kvar']:.1f} kvar ({100 * row['rel_dq']:.2f} %), backbone "
        f"max |dV| {row['backbone_max_dv_pu']:.4f} pu (bus {row['backbone_worst_bus']})",
        "    by element group (converted - original): dQ " + ", ".join(
            f"{names.get(g, g)} {row[f'dq_{g}']:+.1f}" for g in groups if abs(row[f"dq_{g}"]) >= 0.05) + " kvar; dP "
        + ", ".join(f"{names.get(g, g)} {row[f'dp_{g}']:+.1f}" for g in groups if abs(row[f"dp_{g}"]) >= 0.05) + " kW",
    ])


BASE_COLUMNS = [
    ("feeder", "feeder", "{}"), ("buses", "buses", "{:d}"), ("branches", "branches", "{:d}"), ("loads", "loads", "{:d}"),
    ("load_kw", "load kW", "{:.1f}"), ("approximations", "approx.", "{:d}"),
    ("original_converged", "OpenDSS converged", "{}"),
    ("p_orig_kw", "P orig kW", "{:.1f}"), ("p_conv_kw", "P conv kW", "{:.1f}"), ("rel_dp", "dP", "{:.2%}"),
    ("q_orig_kvar", "Q orig kvar", "{:.1f}"), ("q_conv_kvar", "Q conv kvar", "{:.1f}"), ("rel_dq", "dQ", "{:.2%}"),
    ("backbone_max_dv_pu", "backbone max |dV| pu", "{:.4f}"), ("backbone_worst_bus", "at bus", "{}"),
    ("within_target", "within 1 % / 0.02 pu", "{}"),
    ("dq_loads", "dQ loads kvar", "{:+.1f}"), ("dq_lines", "dQ lines+shunts kvar", "{:+.1f}"),
    ("dq_transformers", "dQ transformers kvar", "{:+.1f}"), ("dp_lines", "dP lines kW", "{:+.1f}"),
    ("dp_transformers", "dP transformers kW", "{:+.1f}"),
]


def solve_row(path: Path, hours: int = 5, algorithm: str = "central", areas: int = 4,
              out: Path | None = None, extra: list[str] | None = None) -> dict[str, Any]:
    """``solve --case PATH --hours H`` (central, or ADMM on ``areas`` areas; ``extra`` options such as
    ``--rho``) in a fresh process: wall time, exit code, iterations and the validation's two figures from
    summary.json."""
    cmd = [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", str(path), "--hours", str(hours),
           "--no-plots", "--algorithm", algorithm]
    if algorithm != "central":
        cmd += ["--areas", str(areas), "--executor", "serial"]
    cmd += list(extra or [])
    with tempfile.TemporaryDirectory(prefix="mpdopf_feeder_") as tmp:
        folder = out or Path(tmp) / "run"
        t0 = time.perf_counter()
        proc = subprocess.run([*cmd, "--out", str(folder)], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        row: dict[str, Any] = {"feeder": path.stem, "algorithm": algorithm, "hours": hours, "exit": proc.returncode,
                               "wall_s": wall, "error": (proc.stderr.strip().splitlines() or [""])[-1]
                               if proc.returncode else ""}
        summary = folder / "summary.json"
        if summary.is_file():
            s = json.loads(summary.read_text())
            v = s.get("validation", {})
            o = v.get("original", {})
            d = s.get("distributed") or {}
            row.update({"iterations": d.get("iterations"), "converged": d.get("converged"),
                        "options": " ".join(extra or [])})
            row.update({"objective_usd": s.get("objective_usd"), "check1_max_dv_pu": v.get("max_abs_dv_pu"),
                        "check1_passed": v.get("passed"), "check2_max_dv_pu": o.get("max_abs_dv_pu"),
                        "check2_worst_node": o.get("worst_node"), "check2_max_rel_dp": o.get("max_rel_dp_sub"),
                        "check2_max_dq_kvar": o.get("max_abs_dq_sub_kvar"),
                        "check2": "ok" if o.get("converged") else o.get("reason", "")})
    return row


SOLVE_COLUMNS = [
    ("feeder", "feeder", "{}"), ("algorithm", "algorithm", "{}"), ("exit", "exit", "{:d}"), ("wall_s", "wall s", "{:.1f}"),
    ("objective_usd", "objective USD", "{:.4f}"), ("check1_max_dv_pu", "check (1) max |dV| pu", "{:.2e}"),
    ("check1_passed", "passed", "{}"), ("check2_max_dv_pu", "check (2) max |dV| pu", "{:.4f}"),
    ("check2_worst_node", "at node", "{}"), ("check2_max_rel_dp", "check (2) dP_sub", "{:.2%}"),
    ("check2_max_dq_kvar", "check (2) |dQ_sub| kvar", "{:.1f}"), ("error", "error", "{}"),
]


#: The MATPOWER radial cases of the closing table (bundled ``models/<name>/<name>.m``) and their published
#: base cases: losses (kW) and the lowest voltage (bus, pu). case141 has no published figure in our sources.
MATPOWER = {"case33bw": (202.68, "18", 0.9131), "case69": (224.96, "65", 0.9092), "case141": (None, None, None)}

#: Short names of the conversion report's entries (the table's "conversion report" column).
SHORT = {"normally-open": "open", "untransposed": "untransposed", "one- and two-phase branches": "laterals",
         "per-phase taps": "bank taps", "voltage regulators": "regulators", "closed switches": "switches",
         "one- and two-phase loads": "1-2-ph loads", "one- and two-phase shunts": "1-2-ph shunts",
         "one- and two-phase DERs": "1-2-ph DERs", "centre-tap": "services", "bus voltage bases": "rebased",
         "buses whose loads": "mixed profiles"}


def report_summary(report: Any) -> str:
    """The conversion report in one cell: short entry names with their element counts."""
    out = []
    for e in report.entries:
        name = next((v for k, v in SHORT.items() if e.what.startswith(k)), e.what.split(":")[0])
        out.append(f"{name} {e.count}")
    return ", ".join(out) or "exact"


def matpower_base(name: str) -> dict[str, Any]:
    """A bundled MATPOWER case's base case by our optimisation (one hour, no DERs: its power flow): losses
    and the lowest voltage against the published figures."""
    from mpdopf_pyomo.case import load_case, resolve_case_path
    from mpdopf_pyomo.pipeline import solve_case

    path = resolve_case_path(f"{name}.m")
    case = load_case(path, 1, warn=None)
    res = solve_case(case)
    v = res.voltages[1]
    loss, bus, v_pub = MATPOWER[name]
    gap = f"losses {res.summary['losses_kwh']:.3f} kW, V{v.idxmin()} {float(v.min()):.5f} pu"
    if loss is not None:
        gap += f" (published {loss:g} kW, V{bus} {v_pub:g})"
    return {"feeder": name, "path": str(path), "buses": len(case.buses), "branches": len(case.branches),
            "loads": int(((case.buses["p_load"] != 0) | (case.buses["q_load"] != 0)).sum()),
            "report": report_summary(case.conversion), "base_gap": gap,
            "losses_kw": res.summary["losses_kwh"], "v_min_pu": float(v.min()), "v_min_bus": str(v.idxmin())}


def closing_row(name: str, hours: int = 5) -> dict[str, Any]:
    """One row of the closing table: sizes, conversion report, base-case gap, and the ``hours``-h central
    and ADMM (4 areas, default settings) solves with both validation figures."""
    if name in MATPOWER:
        row = matpower_base(name)
        path = Path(row["path"])
    else:
        path = feeder_path(name)
        base = base_case_gap(path)
        row = {k: base[k] for k in ("buses", "branches", "loads", "rel_dp", "rel_dq", "backbone_max_dv_pu",
                                     "original_converged", "dq_loads", "dq_lines", "dq_transformers")}
        from mpdopf_pyomo.case import load_case

        row["report"] = report_summary(load_case(path, 1, warn=None).conversion)
        row["base_gap"] = (f"dP {100 * base['rel_dp']:.2f} %, dQ {100 * base['rel_dq']:.2f} %, "
                           f"dV {base['backbone_max_dv_pu']:.4f} pu" if base["original_converged"]
                           else "no OpenDSS reference (its own power flow does not converge)")
        row = {"feeder": name, "path": str(path), **row}
    central = solve_row(path, hours, "central")
    admm = solve_row(path, hours, "admm")
    row.update({
        "central_exit": central["exit"], "central_s": central["wall_s"],
        "admm_exit": admm["exit"], "admm_s": admm["wall_s"], "admm_iterations": admm.get("iterations"),
        "admm_options": "defaults",
        "admm_rel_gap": (abs(admm["objective_usd"] - central["objective_usd"]) / abs(central["objective_usd"])
                         if admm.get("objective_usd") is not None and central.get("objective_usd") else None),
        "check1_central_pu": central.get("check1_max_dv_pu"), "check1_admm_pu": admm.get("check1_max_dv_pu"),
        "check1_passed": bool(central.get("check1_passed")) and bool(admm.get("check1_passed")),
        "check2_dv_pu": central.get("check2_max_dv_pu"), "check2_dp": central.get("check2_max_rel_dp"),
        "check2_dq_kvar": central.get("check2_max_dq_kvar"),
        "check2": central.get("check2", "-") if name not in MATPOWER else "- (not an OpenDSS feeder)",
        "error": central["error"] or admm["error"],
    })
    return row


CLOSING_COLUMNS = [
    ("feeder", "feeder", "{}"), ("buses", "buses", "{:d}"), ("branches", "branches", "{:d}"), ("loads", "loads", "{:d}"),
    ("report", "conversion report", "{}"), ("base_gap", "base-case gap", "{}"),
    ("central_s", "5 h central s", "{:.1f}"), ("admm_s", "5 h ADMM 4 areas s", "{:.1f}"),
    ("admm_iterations", "ADMM it.", "{}"), ("admm_options", "ADMM options", "{}"),
    ("admm_rel_gap", "ADMM vs central objective", "{:.1e}"),
    ("check1_central_pu", "check (1) central pu", "{:.1e}"), ("check1_admm_pu", "check (1) ADMM pu", "{:.1e}"),
    ("check1_passed", "check (1) passed", "{}"), ("check2_dv_pu", "check (2) max dV pu", "{:.4f}"),
    ("check2_dp", "check (2) dP_sub", "{:.2%}"), ("check2", "check (2)", "{}"),
]
#: The feeders of the closing table, in its order.
CLOSING = [*FEEDERS, *MATPOWER]

#: Rows of the three-phase table: (case or public feeder, hours, formulation, algorithm). The bundled cases
#: carry the study's DER recipe; the 8500 runs as published (no DERs), one hour: 8,531 nodes.
THREE_PHASE = [(c, 5, f, a) for c in ("ieee13", "ieee34", "ieee123-opendss")
               for f, a in (("3ph-exact", "central"), ("3ph-exact", "admm"), ("3ph-linear", "central"))]
THREE_PHASE.append(("ieee8500", 1, "3ph-exact", "central"))
#: Names of :data:`THREE_PHASE` that are bundled cases (``--case NAME``), not public feeder files.
CASES_BUNDLED = ("ieee13", "ieee34", "ieee123-opendss")


def three_phase_row(case: str, hours: int, formulation: str, algorithm: str) -> dict[str, Any]:
    """One row of the three-phase table: :func:`solve_row` with ``--formulation`` plus the node-by-node
    figures of summary.json (magnitude and angle at every node, substation P)."""
    path = feeder_path(case) if case in FEEDERS and case not in CASES_BUNDLED else Path(case)
    with tempfile.TemporaryDirectory(prefix="mpdopf_3ph_") as tmp:
        folder = Path(tmp) / "run"
        row = solve_row(path, hours, algorithm, out=folder, extra=["--formulation", formulation])
        s = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
    v = s.get("validation", {})
    stats = s.get("solver_stats") or {}
    row.update({"feeder": case, "formulation": formulation,
                "ipopt_iterations": stats.get("iterations"), "nodes": v.get("nodes"),
                "max_dangle_deg": v.get("max_abs_dangle_deg"), "rel_dp_sub": v.get("max_rel_dp_sub"),
                "passed": v.get("passed")})
    return row


THREE_PHASE_COLUMNS = [
    ("feeder", "case", "{}"), ("hours", "h", "{}"), ("formulation", "formulation", "{}"),
    ("algorithm", "algorithm", "{}"), ("exit", "exit", "{:d}"), ("wall_s", "whole command s", "{:.1f}"),
    ("ipopt_iterations", "IPOPT it. (all areas)", "{}"), ("iterations", "ADMM it.", "{}"),
    ("rel_gap", "gap to central", "{:+.1e}"), ("nodes", "nodes", "{}"),
    ("check1_max_dv_pu", "max |dV| pu, every node", "{:.1e}"), ("max_dangle_deg", "max |dangle| deg", "{:.1e}"),
    ("rel_dp_sub", "substation dP", "{:.1e}"), ("passed", "passed", "{}"), ("error", "error", "{}"),
]


def three_phase_table(out: BenchFolder, rows_spec: list[tuple[str, int, str, str]] | None = None) -> str:
    """The three-phase table (:data:`THREE_PHASE`), rewritten after every row into ``three_phase.md`` and
    ``.csv`` of ``out`` (claimed for those names); the ADMM rows' gap is to the central 3ph-exact row of the
    same case."""
    from mpdopf_pyomo.benchmark import markdown_table

    rows: list[dict[str, Any]] = []
    central: dict[tuple[str, int], float] = {}
    table = ""
    for case, hours, formulation, algorithm in THREE_PHASE if rows_spec is None else rows_spec:
        row = three_phase_row(case, hours, formulation, algorithm)
        obj = row.get("objective_usd")
        if formulation == "3ph-exact" and algorithm == "central" and obj is not None:
            central[(case, hours)] = obj
        ref = central.get((case, hours))
        row["rel_gap"] = (obj - ref) / abs(ref) if obj is not None and ref and not (
            formulation == "3ph-exact" and algorithm == "central") else None
        rows.append(row)
        print(f"{case} {formulation} {algorithm}: {row['wall_s']:.1f} s, exit {row['exit']}", file=sys.stderr,
              flush=True)
        table = markdown_table(rows, THREE_PHASE_COLUMNS)
        out.write_text("three_phase.md", table + "\n")
        out.write_csv("three_phase.csv", rows)
    return table


def main(argv: list[str] | None = None) -> int:
    """``table``, ``base``, ``solve`` or ``three-phase`` over the given feeders (paths or short names;
    default all); the tables go to ``--out`` (:class:`~mpdopf_pyomo.outputs.BenchFolder` rules: a user's
    file named like one of them is refused, exit 2, before any solve). A bad option or feeder name is
    argparse's usage error (exit 2, the valid names listed), also before any solve."""
    from mpdopf_pyomo.benchmark import markdown_table, positive_int
    from mpdopf_pyomo.outputs import with_bench_folder

    ap = argparse.ArgumentParser(prog="python -m mpdopf_pyomo.feeders", description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", choices=["table", "base", "solve", "three-phase"], default="table",
                    help="table (default): the closing table of every feeder; base: base-case gaps; solve: solves; "
                         "three-phase: 3ph-exact / 3ph-linear on the unbalanced cases and the IEEE 8500")
    ap.add_argument("feeders", nargs="*", help="master .dss paths or short names (default: all)")
    ap.add_argument("--hours", type=positive_int, default=None,
                    help="table and solve: horizon of the solves (default 5; base is one hour, three-phase "
                         "runs its table's own horizons)")
    ap.add_argument("--out", default="bench/results", help="folder for the tables (default %(default)s)")
    args = ap.parse_args(argv)
    if args.hours is not None and args.what in ("base", "three-phase"):
        ap.error(f"argument --hours: {args.what} does not take it (base: one hour; three-phase: the table's "
                 "own horizons, 5 h and 1 h for the IEEE 8500)")
    hours = 5 if args.hours is None else args.hours
    if args.what == "three-phase":
        if not REFERENCE.is_dir():
            print(f"error: the public feeders are not at {REFERENCE}", file=sys.stderr)
            return 2
        unknown = sorted(set(args.feeders) - {r[0] for r in THREE_PHASE})
        if unknown:
            ap.error(f"unknown case(s) {', '.join(unknown)} (the three-phase table knows "
                     f"{', '.join(dict.fromkeys(r[0] for r in THREE_PHASE))})")
        spec = [r for r in THREE_PHASE if not args.feeders or r[0] in args.feeders]

        def three_phase(out: BenchFolder) -> int:
            print(three_phase_table(out, spec))
            return 0

        return with_bench_folder(args.out, ["three_phase.md", "three_phase.csv"], three_phase)
    if args.what == "table":
        names = args.feeders or CLOSING
        unknown = [n for n in names if n not in CLOSING]
        if unknown:
            ap.error(f"unknown feeder(s) {', '.join(unknown)} (the table knows {', '.join(CLOSING)})")
        if not REFERENCE.is_dir() and any(n in FEEDERS for n in names):
            print(f"error: the public feeders are not at {REFERENCE}", file=sys.stderr)
            return 2

        def closing(out: BenchFolder) -> int:
            rows = []
            for n in names:
                t0 = time.perf_counter()
                rows.append(closing_row(n, hours))
                print(f"{n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
                table = markdown_table(rows, CLOSING_COLUMNS)  # written after every feeder: a long run keeps its rows
                out.write_text("feeders.md", table + "\n")
                out.write_csv("feeders.csv", rows)
            print(table)
            return 0

        return with_bench_folder(args.out, ["feeders.md", "feeders.csv"], closing)
    paths = [feeder_path(f) if f in FEEDERS else Path(f) for f in (args.feeders or FEEDERS)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        ap.error(f"feeder file(s) not found: {', '.join(missing)} (give a master .dss file or one of "
                 f"{', '.join(FEEDERS)}, in the shared reference folder {REFERENCE})")
    name = "feeders_base_case" if args.what == "base" else f"feeders_solve_{hours}h"

    def gaps_or_solves(out: BenchFolder) -> int:
        rows = []
        for p in paths:
            if args.what == "base":
                rows.append(base_case_gap(p))
            else:
                rows += [solve_row(p, hours, "central"), solve_row(p, hours, "admm")]
            print(json.dumps({k: v for k, v in rows[-1].items()}, default=str), file=sys.stderr)
        table = markdown_table(rows, BASE_COLUMNS if args.what == "base" else SOLVE_COLUMNS)
        print(table)
        out.write_text(f"{name}.md", table + "\n")
        out.write_csv(f"{name}.csv", rows)
        return 0

    return with_bench_folder(args.out, [f"{name}.md", f"{name}.csv"], gaps_or_solves)

if __name__ == "__main__":
    sys.exit(main())
