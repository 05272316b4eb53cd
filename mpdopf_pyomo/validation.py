"""Validation: push a solved plan into OpenDSS power flows, hour by hour, and measure two things.

Check (1), the same model: the case's balanced network (its own tables, every format, exported to an
OpenDSS script by :mod:`mpdopf_pyomo.network.export`) runs the plan; the exact formulation and OpenDSS
agree to solver tolerance (about 1e-8 pu). This check passes or fails (tolerances below).

Check (2), the modelling gap (``summary["original"]``, OpenDSS feeders only): the plan on the ORIGINAL
feeder, regulators at the converted taps, capacitors as converted, controls off, every PV and battery a
Generator on all the phases of its bus (:func:`_check_original`); every phase voltage of every bus is
compared with the balanced bus voltage, and the substation P and Q with the plan's. It shows what the
balanced approximation costs and is a report, not a pass/fail.

Check (1) in detail. For each hour t of the plan:
For each hour t of the plan:

1. the exported model (compiled ONCE per validation, with an absolute path, exceptions on and without
   letting OpenDSS change the working directory: :func:`mpdopf_pyomo.network.compile_model`) gets its loads
   scaled by the hour's ``load_mult`` through the global load multiplier (``Solution.LoadMult``: it scales
   the kW and kvar of every model=1 load, exactly what the optimisation does with p_L and q_L); a bus with
   its own load profile (``Case.load_profiles``) has its load taken off the global multiplier
   (``status=fixed``) and set to nominal x its own multiplier each hour, and check (2) does the same for
   each load of the original feeder with its own profile (``Case.load_element_profiles``);
2. every PV and every battery of the plan is an element that injects exactly the planned three-phase P and Q
   (element choice below); PV P and Q come from ``results.pv``, battery P = discharge - charge and Q from
   ``results.battery`` -- the plan's own numbers, never recomputed from the case;
3. the source (the model's one ``Vsource``, a stiff source of 1e-8 ohm) is set to ``settings.v_sub_pu``;
4. OpenDSS solves the snapshot power flow (tolerance :data:`DSS_TOLERANCE` set here, at most 100 iterations);
5. we compare every bus voltage magnitude (the mean of the three phase magnitudes, pu), the substation P and
   Q (``Circuit.TotalPower``) and the total losses (``Circuit.Losses``) with the optimisation's.

Element choice for PVs and batteries -- ``Generator`` with ``model=1`` (constant kW, constant kvar),
``vminpu=0.5``, ``vmaxpu=1.5``, one per device, named ``mpdopf_pv_<bus>`` / ``mpdopf_bat_<bus>``:

* a model=1 Generator injects exactly its kW and kvar at any voltage between vminpu and vmaxpu (it turns
  into a constant impedance only outside that band; 0.5..1.5 pu covers every plan the optimisation can
  produce, whose voltage limits are inside 0.95..1.05 pu). Negative kW (a charging battery) and negative
  kvar are accepted and held exactly as well;
* it is not scaled by the load multiplier (only by ``GenMult``, which stays at 1: we never change it, the
  model's fixed capacitor injections are model=1 Generators too);
* an OpenDSS ``Storage`` element was rejected: it runs its own dispatch logic (charge/discharge efficiencies
  applied to the terminal power, %reserve, idling losses, kW limits from its kVA and %stored), so it would not
  hold exactly the P and Q of the plan, which already accounts for conversion losses in its energy balance;
* a ``Load`` with ``status=fixed`` and negative kW would also work; a Generator keeps the sign convention
  (positive = injection) of the plan.

One trap, handled here: OpenDSS's Generator kW setter recomputes kvar from the element's last power factor,
so kW is always set before kvar. After every solve the P and Q each device element actually exchanged are
read back and compared with the plan; a difference above 1e-6 kW/kvar raises :class:`ValidationFailed`
instead of reporting a mismatch that the element, not the plan, caused. The validation elements exist only
in OpenDSS's memory for the duration of the check (the model files are never written, and every reader
compiles afresh, so it never sees them).

Tolerances (defaults, :data:`TOL_V_PU`, :data:`TOL_REL_P_SUB`): the exact formulation and OpenDSS solve the
same balanced network (same series impedances, taps, shunt susceptances, ZIP loads, fixed injections,
stiff source), so they agree to solver tolerance, about 1e-7 pu. The check passes when in every hour
max |dV| <= 1e-4 pu and |dP_sub| <= 0.1 % of |P_sub| (of OpenDSS's substation power, floored at 1 % of the
case's power base so that an hour with P_sub near zero does not demand an absurd absolute accuracy). A
failed check is a report, not an error: ``passed`` is false in the summary and the terminal line says
MISMATCH, but the solve still succeeds -- relaxed (``socp``) and ``linear`` plans are legitimately far from
the physics and the check measures how far. Errors (OpenDSS cannot run, does not converge, a bus or device
of the plan is not in the model) raise :class:`ValidationFailed` (exit code 5) or :class:`CaseError`.

Signs: every ``d*`` is OpenDSS minus optimisation.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from mpdopf_pyomo.case import Case, exc_message, one_line
from mpdopf_pyomo.errors import CaseError, ValidationFailed
from mpdopf_pyomo.results import Results

#: Largest accepted bus-voltage mismatch, pu.
TOL_V_PU = 1e-4
#: Largest accepted substation P mismatch as a fraction of |P_sub| (0.1 %).
TOL_REL_P_SUB = 1e-3
#: Floor of the denominator of the relative P mismatch, as a fraction of the case's power base.
P_SUB_FLOOR_OF_BASE = 0.01
#: Largest accepted difference between a device element's power in OpenDSS and the plan (kW, kvar).
_ELEMENT_TOL = 1e-6
#: OpenDSS iteration cap per hour (about 7 iterations are needed at DSS_TOLERANCE).
_MAX_ITER = 100
#: OpenDSS power-flow tolerance of both checks (set here, whatever the model sets).
DSS_TOLERANCE = 1e-10
_PREFIX = "mpdopf_"


@dataclass
class Validation:
    """Result of :func:`validate`.

    * ``summary``: overall figures (what goes into ``summary.json['validation']``), among them
      ``energy_cost_opendss_usd`` (and ``..._per_phase_usd``): the plan's energy cost with OpenDSS's
      substation P, what the plan costs when it is run.
    * ``by_hour``: index ``t``; per hour: ``load_mult``; ``max_abs_dv_pu`` and ``worst_bus``; substation
      power of the plan and of OpenDSS ``p_opt_kw``, ``p_opendss_kw``, ``q_opt_kvar``, ``q_opendss_kvar``,
      their differences ``dp_sub_kw``, ``dq_sub_kvar`` and ``rel_dp_sub`` (|dp_sub_kw| / max(|P_sub|,
      1 % of the power base)); total losses ``loss_opt_kw``, ``loss_opendss_kw``, ``dloss_kw``;
      ``v_min_opendss_pu``, ``v_max_opendss_pu``; OpenDSS ``iterations``; ``passed``.
    * ``voltages``: index bus, one column per hour, OpenDSS voltage magnitude in pu (layout of
      ``Results.voltages``).
    """

    summary: dict[str, Any]
    by_hour: pd.DataFrame
    voltages: pd.DataFrame
    original_dv: pd.DataFrame | None = None  #: check (2) per node and hour (None: the network is no .dss)


def engine_version() -> str:
    """The OpenDSS engine's version line (DSS C-API and the OpenDSS revision it is based on)."""
    import opendssdirect as dss

    import re

    text = dss.Basic.Version()
    capi = re.search(r"DSS C-API Library version (\S+)", text)
    svn = re.search(r"based on OpenDSS SVN (\S+)", text)
    odd = re.search(r"OpenDSSDirect.py version: (\S+)", text)
    if not (capi and svn):
        return " ".join(text.split("\n")[0].split())
    out = f"OpenDSS SVN {svn.group(1)} (DSS C-API {capi.group(1)})"
    return out + (f", OpenDSSDirect.py {odd.group(1)}" if odd else "")


def _devices(results: Results) -> pd.DataFrame:
    """Device injections of the plan: rows (kind, bus, t) -> p_kw, q_kvar (three-phase, injection positive)."""
    frames = []
    pv = results.pv
    if len(pv):
        frames.append(
            pd.DataFrame({"kind": "pv", "bus": pv.index.get_level_values(0).astype(str),
                          "t": pv.index.get_level_values(1).astype(int),
                          "p_kw": pv["p_kw"].to_numpy(float), "q_kvar": pv["q_kvar"].to_numpy(float)})
        )
    bat = results.battery
    if len(bat):
        frames.append(
            pd.DataFrame({"kind": "bat", "bus": bat.index.get_level_values(0).astype(str),
                          "t": bat.index.get_level_values(1).astype(int),
                          "p_kw": (bat["discharge_kw"] - bat["charge_kw"]).to_numpy(float),
                          "q_kvar": bat["q_kvar"].to_numpy(float)})
        )
    if not frames:
        return pd.DataFrame(columns=["kind", "bus", "t", "p_kw", "q_kvar"])
    out = pd.concat(frames, ignore_index=True)
    out["bus"] = out["bus"].str.lower()
    if not np.isfinite(out[["p_kw", "q_kvar"]].to_numpy()).all():
        raise ValidationFailed("the plan has non-finite PV or battery powers; nothing to validate")
    return out


def _hours(case: Case, results: Results) -> list[int]:
    """The plan's hours, checked against the case's profile (same horizon, same load multipliers)."""
    hours = [int(t) for t in results.substation.index]
    if hours != [int(t) for t in case.profile.index]:
        raise CaseError(
            f"{case.source}: the plan covers hours {hours[0]}..{hours[-1]} but the case, loaded for "
            f"{case.hours} h, covers {case.profile.index[0]}..{case.profile.index[-1]}"
        )
    if "load_mult" in results.substation:
        plan_lm = results.substation["load_mult"].to_numpy(float)
        case_lm = case.profile["load_mult"].to_numpy(float)
        if not np.allclose(plan_lm, case_lm, rtol=0, atol=1e-9):
            raise CaseError(
                f"{case.source}: the case's load multipliers differ from the plan's (the case file changed "
                "since the run?); cannot validate the plan against it"
            )
    return hours


def validate(case: Case, results: Results, tol_v_pu: float = TOL_V_PU,
             tol_rel_p_sub: float = TOL_REL_P_SUB) -> Validation:
    """Run the plan in ``results`` through OpenDSS hour by hour on ``case``'s network model; compare."""
    from mpdopf_pyomo.network import bus_voltages_pu, compile_model, engine, substation_power_kw

    from mpdopf_pyomo import formulations

    t_start = time.perf_counter()
    hours = _hours(case, results)
    devices = _devices(results)
    model = Path(case.network_model)
    kind = formulations.get(str(results.summary.get("formulation", "exact"))).validation
    if kind in ("nodes", "nodes-report"):
        return _validate_nodes(case, results, hours, devices, t_start, report=kind == "nodes-report")
    shown = _compile_export(case)  # check (1): the case's balanced network, exported to OpenDSS
    dss = engine()
    where = f"{model}"

    # --- the circuit as compiled: source, buses, generators -------------------------------------------
    try:
        if dss.Vsources.Count() != 1:
            raise ValidationFailed(f"{where}: validation needs exactly one Vsource, found {dss.Vsources.Count()}")
        dss.Vsources.First()
        source = dss.Vsources.Name()
        dss.Vsources.PU(case.settings.v_sub_pu)
        gen_mult = dss.Solution.GenMult()
        if abs(gen_mult - 1.0) > 1e-12:
            raise ValidationFailed(f"{where}: the model sets GenMult={gen_mult:g}; validation needs GenMult=1")
        dss.Text.Command("Set Mode=Snapshot")
        dss.Text.Command("Set ControlMode=OFF")
        dss.Solution.MaxIterations(_MAX_ITER)
        dss.Text.Command(f"Set Tolerance={DSS_TOLERANCE:g}")
        bus_names = {b.lower() for b in dss.Circuit.AllBusNames()}
    except ValidationFailed:
        raise
    except Exception as exc:
        raise ValidationFailed(f"{where}: OpenDSS could not prepare the validation circuit: {exc_message(exc)}") from None

    own = {}  # the exported loads of buses with their own profile: held at nominal x the bus's multiplier
    if case.load_profiles is not None:
        for b in case.load_profiles.columns:
            kw, kvar = (float(case.buses.at[b, c]) * case.bases.s_kva for c in ("p_load", "q_load"))
            if kw or kvar:
                own[f"load_{b}".lower()] = (kw, kvar, case.load_profiles[b].to_numpy(dtype=float))
    try:
        _hold_loads(own)
    except Exception as exc:
        raise ValidationFailed(f"{where}: OpenDSS could not prepare the per-bus load profiles: "
                               f"{exc_message(exc)}") from None

    opt_v = results.voltages
    opt_buses = [str(b).lower() for b in opt_v.index]
    missing = [b for b in opt_buses if b not in bus_names]
    if missing:
        raise CaseError(f"{where}: plan bus(es) not in the network model: {', '.join(missing[:8])}")

    # --- one Generator per device ----------------------------------------------------------------------
    kv_ln = case.buses["v_base_kv_ln"] if "v_base_kv_ln" in case.buses else None
    elements: dict[tuple[str, str], str] = {}
    for kind, bus in devices[["kind", "bus"]].drop_duplicates().itertuples(index=False):
        if bus not in bus_names:
            raise CaseError(f"{where}: {'PV' if kind == 'pv' else 'battery'} bus {bus} is not in the network model")
        kv = case.bases.v_kv_ll if kv_ln is None else float(kv_ln[bus]) * 3**0.5  # the bus's own base
        name = f"{_PREFIX}{kind}_{bus}"
        try:
            dss.Text.Command(
                f"New Generator.{name} bus1={bus} phases=3 kV={kv:.12g} kW=0 kvar=0 model=1 "
                "vminpu=0.5 vmaxpu=1.5"
            )
        except Exception as exc:
            raise ValidationFailed(f"{where}: OpenDSS could not add Generator.{name}: {exc_message(exc)}") from None
        elements[kind, bus] = name
    by_t = {t: g for t, g in devices.groupby("t")}

    # --- per hour -----------------------------------------------------------------------------------
    opt_sub = results.substation
    opt_loss = results.branches.groupby(level="t")["loss_kw"].sum() if len(results.branches) else None
    floor_kw = P_SUB_FLOOR_OF_BASE * case.bases.s_kva
    v_dss = np.empty((len(opt_buses), len(hours)))
    rows = []
    for k, t in enumerate(hours):
        lm = float(case.profile.at[t, "load_mult"])
        try:
            dss.Solution.LoadMult(lm)
            _set_loads(own, k)
            hour_devices = by_t.get(t)
            if hour_devices is not None:
                for kind, bus, p, q in hour_devices[["kind", "bus", "p_kw", "q_kvar"]].itertuples(index=False):
                    dss.Generators.Name(elements[kind, bus])
                    dss.Generators.kW(float(p))  # kW first: the kW setter resets kvar from the last PF
                    dss.Generators.kvar(float(q))
            dss.Solution.Solve()
        except Exception as exc:
            raise ValidationFailed(f"OpenDSS power flow of hour {t} failed: {exc_message(exc)}") from None
        if not dss.Solution.Converged():
            raise ValidationFailed(
                f"OpenDSS power flow of hour {t} did not converge in {dss.Solution.Iterations()} iterations"
            )
        # device elements must hold the plan exactly (element powers: positive = absorbed)
        if hour_devices is not None:
            for kind, bus, p, q in hour_devices[["kind", "bus", "p_kw", "q_kvar"]].itertuples(index=False):
                dss.Circuit.SetActiveElement(f"Generator.{elements[kind, bus]}")
                pw = dss.CktElement.Powers()
                p_el = -sum(pw[0:6:2])
                q_el = -sum(pw[1:6:2])
                if abs(p_el - p) > _ELEMENT_TOL * max(1.0, abs(p)) or abs(q_el - q) > _ELEMENT_TOL * max(1.0, abs(q)):
                    raise ValidationFailed(
                        f"hour {t}: Generator.{elements[kind, bus]} injects {p_el:.6f} kW + {q_el:.6f} kvar, "
                        f"not the planned {p:.6f} kW + {q:.6f} kvar (a bus voltage outside 0.5..1.5 pu?)"
                    )
        v_dss[:, k] = bus_voltages_pu().reindex(opt_buses).to_numpy()
        p_dss, q_dss = substation_power_kw()
        loss_dss = float(dss.Circuit.Losses()[0]) / 1000.0
        p_opt = float(opt_sub.at[t, "p_kw"])
        q_opt = float(opt_sub.at[t, "q_kvar"])
        loss_opt = float(opt_loss.loc[t]) if opt_loss is not None and t in opt_loss.index else 0.0
        dv = v_dss[:, k] - opt_v[t].to_numpy(float)
        worst = int(np.argmax(np.abs(dv)))
        rows.append({
            "t": t,
            "load_mult": lm,
            "max_abs_dv_pu": float(np.abs(dv[worst])),
            "worst_bus": opt_buses[worst],
            "p_opt_kw": p_opt,
            "p_opendss_kw": p_dss,
            "dp_sub_kw": p_dss - p_opt,
            "rel_dp_sub": abs(p_dss - p_opt) / max(abs(p_dss), floor_kw),
            "q_opt_kvar": q_opt,
            "q_opendss_kvar": q_dss,
            "dq_sub_kvar": q_dss - q_opt,
            "loss_opt_kw": loss_opt,
            "loss_opendss_kw": loss_dss,
            "dloss_kw": loss_dss - loss_opt,
            "v_min_opendss_pu": float(v_dss[:, k].min()),
            "v_max_opendss_pu": float(v_dss[:, k].max()),
            "iterations": int(dss.Solution.Iterations()),
        })
    by_hour = pd.DataFrame(rows).set_index("t")
    voltages = pd.DataFrame(v_dss, index=pd.Index(opt_buses, name="bus"), columns=hours)

    # the plan's energy cost as OpenDSS prices it: its substation P x the hour's price (a distributed run
    # stopped at tolerance can report less than the central optimum; this is what the plan really costs)
    price = results.substation["price_usd_per_kwh"].reindex(by_hour.index).to_numpy(float)
    dt = float(results.summary.get("dt_h", case.settings.dt_h))
    cost_dss = float(np.sum(by_hour["p_opendss_kw"].to_numpy(float) * price * dt))
    hour_ok = (by_hour["max_abs_dv_pu"] <= tol_v_pu) & (by_hour["rel_dp_sub"] <= tol_rel_p_sub)
    by_hour["passed"] = hour_ok
    worst_t = int(by_hour["max_abs_dv_pu"].idxmax())
    summary = {
        "max_abs_dv_pu": float(by_hour["max_abs_dv_pu"].max()),
        "max_abs_dp_sub_kw": float(by_hour["dp_sub_kw"].abs().max()),
        "max_abs_dq_sub_kvar": float(by_hour["dq_sub_kvar"].abs().max()),
        "max_abs_dloss_kw": float(by_hour["dloss_kw"].abs().max()),
        "max_rel_dp_sub": float(by_hour["rel_dp_sub"].max()),
        "energy_cost_opendss_usd": cost_dss,
        "energy_cost_opendss_per_phase_usd": cost_dss / case.bases.phases,
        "worst_hour": worst_t,
        "worst_bus": str(by_hour.at[worst_t, "worst_bus"]),
        "tolerance_pu": tol_v_pu,
        "tolerance_rel_p_sub": tol_rel_p_sub,
        "passed": bool(hour_ok.all()),
        "hours_failed": [int(t) for t in by_hour.index[~hour_ok]],
        "by_hour": [
            {"t": int(t), "max_abs_dv_pu": float(r.max_abs_dv_pu), "dp_sub_kw": float(r.dp_sub_kw),
             "dq_sub_kvar": float(r.dq_sub_kvar), "dloss_kw": float(r.dloss_kw), "rel_dp_sub": float(r.rel_dp_sub)}
            for t, r in by_hour.iterrows()
        ],
        "engine": engine_version(),
        "network_model": shown,
        "source": f"Vsource.{source} at {case.settings.v_sub_pu:g} pu",
        "elements": "PV and battery: Generator model=1 (constant P and Q), vminpu=0.5, vmaxpu=1.5",
        "sign": "d = OpenDSS - optimisation",
    }
    original = None
    if model.suffix.lower() == ".dss":  # check (2): the plan on the original feeder
        original = _check_original(case, results, hours, devices)
        summary["original"] = original.summary
        by_hour = by_hour.join(original.by_hour)
    summary["time_s"] = time.perf_counter() - t_start
    return Validation(summary, by_hour, voltages, None if original is None else original.dv)


def _hold_loads(own: dict[str, tuple[float, float, np.ndarray]]) -> None:
    """Take the loads of ``own`` (name -> nominal kW, kvar and one multiplier per hour) off the global load
    multiplier (``status=fixed``): :func:`_set_loads` sets their power hour by hour."""
    from mpdopf_pyomo.network import engine

    dss = engine()
    for name in own:
        dss.Text.Command(f"Load.{name}.status=fixed")


def _set_loads(own: dict[str, tuple[float, float, np.ndarray]], k: int) -> None:
    """Hour ``k`` (0-based) of the loads of :func:`_hold_loads`: nominal x their own multiplier (kW first:
    the kW setter recomputes kvar from the load's power factor)."""
    from mpdopf_pyomo.network import engine

    dss = engine()
    for name, (kw, kvar, mult) in own.items():
        dss.Loads.Name(name)
        dss.Loads.kW(kw * float(mult[k]))
        dss.Loads.kvar(kvar * float(mult[k]))


@dataclass
class _Original:
    """Check (2): ``summary`` (summary.json["validation"]["original"]), ``by_hour`` (``orig_*`` columns of
    validation_by_hour.csv) and ``dv`` (index node ``bus.phase``, one column per hour: OpenDSS's phase
    voltage minus the balanced bus voltage of the plan, pu)."""

    summary: dict[str, Any]
    by_hour: pd.DataFrame
    dv: pd.DataFrame


def _check_original(case: Case, results: Results, hours: list[int], devices: pd.DataFrame,
                    plan_nodes: pd.DataFrame | None = None) -> _Original:
    """Run the plan on the case's ORIGINAL OpenDSS feeder and measure the balanced model's gap.

    The feeder is compiled afresh and solved once with its controls on at its own load level
    (:func:`network.opendss.solve_operating_point`, as the reader did), so its regulators and capacitors
    are at the taps and steps the conversion read; then controls go off and stay off. The feeder's own
    PVSystem and Storage elements are disabled (the plan's PVs and batteries replace them); each plan
    device is one Generator (model=1) on all the phases of its bus, with the plan's three-phase P and Q.
    Per hour: the load multiplier, the source at ``v_sub_pu``, a snapshot solve; every phase voltage of
    every bus of the plan (in per unit on the equivalent's base of that bus) is compared with that bus's
    balanced voltage. A feeder that does not solve is a
    result (``converged`` false, the reason), not an error: check (1) already validated the plan.

    ``plan_nodes`` (a three-phase plan's ``node_voltages`` table: node, t, v_pu, angle_deg, on the nodes'
    own bases) compares node by node instead: magnitude and angle of every node, the source's P and Q per
    phase and the losses (``by_hour`` then also has ``orig_max_abs_dangle_deg``, ``orig_dloss_kw``,
    ``orig_max_abs_dp_phase_kw``; ``summary['opendss_bus_v']`` the buses' mean phase voltage per hour).
    """
    from mpdopf_pyomo.network import bus_voltages_pu, compile_model, engine, substation_power_kw
    from mpdopf_pyomo.network.opendss import solve_operating_point

    model = compile_model(case.network_model)
    dss = engine()
    base = {"network_model": str(model), "sign": "d = OpenDSS (original feeder) - optimisation (balanced)",
            "regulators": "fixed at the converted taps (OpenDSS operating point at the feeder's own load), "
                          "capacitors as converted, controls off"}

    def failed(why: str) -> _Original:
        return _Original({**base, "converged": False, "reason": why}, pd.DataFrame(index=pd.Index(hours, name="t")),
                         pd.DataFrame())

    try:
        if not solve_operating_point():
            return failed("the feeder's own operating-point solve (controls on) does not converge in OpenDSS")
        if dss.Vsources.Count() != 1:
            return failed(f"the feeder has {dss.Vsources.Count()} Vsources; the check needs exactly one")
        dss.Vsources.First()
        dss.Vsources.PU(case.settings.v_sub_pu)
        dss.Text.Command("Set Mode=Snapshot")
        dss.Text.Command("Set ControlMode=OFF")
        dss.Solution.MaxIterations(_MAX_ITER)
        dss.Text.Command(f"Set Tolerance={DSS_TOLERANCE:g}")
        for cls in ("PVSystem", "Storage"):
            for name in [n for n in dss.Circuit.AllElementNames() if n.lower().startswith(cls.lower() + ".")]:
                dss.Text.Command(f"{name}.enabled=no")
        elements: dict[tuple[str, str], tuple[str, int]] = {}
        for kind, bus in devices[["kind", "bus"]].drop_duplicates().itertuples(index=False):
            dss.Circuit.SetActiveBus(bus)
            nodes = [int(n) for n in dss.Bus.Nodes() if 1 <= int(n) <= 3]
            kv = float(dss.Bus.kVBase()) * (3**0.5 if len(nodes) > 1 else 1.0)
            name = f"{_PREFIX}{kind}_{bus}"
            dss.Text.Command(f"New Generator.{name} bus1={bus}.{'.'.join(map(str, nodes))} phases={len(nodes)} "
                             f"kV={kv:.12g} kW=0 kvar=0 model=1 vminpu=0.5 vmaxpu=1.5")
            elements[kind, bus] = name, len(nodes)
        node_names = [n.lower() for n in dss.Circuit.AllNodeNames()]
        own = {}  # the feeder's loads with their own profile (LoadShape or the case's [profiles.loads])
        if case.load_element_profiles is not None:
            for name in case.load_element_profiles.columns:
                dss.Loads.Name(name)
                own[name] = (float(dss.Loads.kW()), float(dss.Loads.kvar()),
                             case.load_element_profiles[name].to_numpy(dtype=float))
        _hold_loads(own)
    except Exception as exc:
        raise ValidationFailed(f"{model}: OpenDSS could not prepare the original feeder: {exc_message(exc)}") from None

    opt_v = results.voltages
    opt_v = opt_v.set_axis([str(b).lower() for b in opt_v.index])
    keep = [k for k, n in enumerate(node_names) if n.split(".", 1)[0] in opt_v.index]
    nodes = [node_names[k] for k in keep]
    node_bus = [n.split(".", 1)[0] for n in nodes]
    # per unit on the equivalent's bus base (= OpenDSS's, unless the conversion relabelled a bus's base); a
    # centre-tap secondary's base is the whole 240 V, each of its 120 V nodes is at half of it
    lower = [str(b).lower() for b in case.buses.index]
    half = case.buses["split_phase"].astype(bool) if "split_phase" in case.buses else False
    node_kv = case.buses["v_base_kv_ln"].where(~half, case.buses["v_base_kv_ln"] / 2) if "split_phase" in \
        case.buses else case.buses["v_base_kv_ln"]
    node_base_v = node_kv.set_axis(lower).reindex(node_bus).to_numpy(float) * 1000.0
    if plan_nodes is not None:  # three-phase plan: its own nodes, on OpenDSS's own node bases
        dss.Circuit.SetActiveElement(f"Vsource.{dss.Vsources.Name()}")
        plan = plan_nodes.assign(node=plan_nodes["node"].astype(str).str.lower())
        plan_mag = plan.pivot(index="node", columns="t", values="v_pu")
        plan_ang = plan.pivot(index="node", columns="t", values="angle_deg")
        missing = sorted(set(plan_mag.index) - set(node_names))
        if missing:
            raise CaseError(f"{model}: plan node(s) not in the feeder: {', '.join(missing[:5])}")
        keep = [k for k, n in enumerate(node_names) if n in plan_mag.index]
        nodes = [node_names[k] for k in keep]
        node_bus = [n.split(".", 1)[0] for n in nodes]
        dss_base = np.empty(len(nodes))
        bases = {b.lower(): None for b in node_bus}
        for b in bases:
            dss.Circuit.SetActiveBus(b)
            bases[b] = float(dss.Bus.kVBase()) * 1000.0
        dss_base = np.array([bases[b] for b in node_bus])
        node_base_v = dss_base
        plan_sub = results.extra_tables.get("substation_phases")
        opt_loss = results.branches.groupby(level="t")["loss_kw"].sum()
    by_t = {t: g for t, g in devices.groupby("t")}
    dv = np.empty((len(nodes), len(hours)))
    bus_v = {}
    rows = []
    for k, t in enumerate(hours):
        try:
            dss.Solution.LoadMult(float(case.profile.at[t, "load_mult"]))
            _set_loads(own, k)
            for kind, bus, p, q in (by_t[t][["kind", "bus", "p_kw", "q_kvar"]].itertuples(index=False)
                                    if t in by_t else []):
                dss.Generators.Name(elements[kind, bus][0])
                dss.Generators.kW(float(p))  # kW first: the kW setter resets kvar from the last PF
                dss.Generators.kvar(float(q))
            dss.Solution.Solve()
            converged = bool(dss.Solution.Converged())
        except Exception as exc:
            return failed(f"the power flow of hour {t} failed: {exc_message(exc)}")
        if not converged:
            return failed(f"the power flow of hour {t} does not converge in {dss.Solution.Iterations()} iterations")
        mag = np.asarray(dss.Circuit.AllBusVMag(), dtype=float)[keep] / node_base_v
        extra = {}
        if plan_nodes is None:
            dv[:, k] = mag - opt_v[t].reindex(node_bus).to_numpy(float)
        else:
            dv[:, k] = mag - plan_mag[t].reindex(nodes).to_numpy(float)
            volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
            ang = np.degrees(np.angle(volts[0::2] + 1j * volts[1::2]))[keep]
            dang = (ang - plan_ang[t].reindex(nodes).to_numpy(float) + 180.0) % 360.0 - 180.0
            bus_v[t] = pd.Series(mag, index=node_bus).groupby(level=0).mean()
            loss_dss = float(dss.Circuit.Losses()[0]) / 1000.0
            extra = {"orig_max_abs_dangle_deg": float(np.abs(dang).max()),
                     "orig_loss_opendss_kw": loss_dss, "orig_dloss_kw": loss_dss - float(opt_loss.loc[t])}
            if plan_sub is not None and len(plan_sub):
                dss.Circuit.SetActiveElement(f"Vsource.{dss.Vsources.Name()}")
                pw = np.asarray(dss.CktElement.Powers(), dtype=float)
                ph_nodes = [int(x) for x in dss.CktElement.NodeOrder()[:dss.CktElement.NumConductors()]]
                sub_t = plan_sub[plan_sub["t"] == t].set_index("phase")
                d_ph = [(-pw[2 * j] - float(sub_t.at[ph, "p_kw"]), -pw[2 * j + 1] - float(sub_t.at[ph, "q_kvar"]))
                        for j, ph in enumerate(ph_nodes) if ph in sub_t.index]
                extra["orig_max_abs_dp_phase_kw"] = float(max(abs(d[0]) for d in d_ph))
                extra["orig_max_abs_dq_phase_kvar"] = float(max(abs(d[1]) for d in d_ph))
        worst = int(np.argmax(np.abs(dv[:, k])))
        p_dss, q_dss = substation_power_kw()
        p_opt, q_opt = float(results.substation.at[t, "p_kw"]), float(results.substation.at[t, "q_kvar"])
        rows.append({"t": t, "orig_max_abs_dv_pu": float(abs(dv[worst, k])), "orig_worst_node": nodes[worst],
                     "orig_p_opendss_kw": p_dss, "orig_dp_sub_kw": p_dss - p_opt,
                     "orig_q_opendss_kvar": q_dss, "orig_dq_sub_kvar": q_dss - q_opt, **extra})
    by_hour = pd.DataFrame(rows).set_index("t")
    worst_t = int(by_hour["orig_max_abs_dv_pu"].idxmax())
    rel = (by_hour["orig_dp_sub_kw"].abs() / by_hour["orig_p_opendss_kw"].abs().clip(lower=1e-9)).max()
    summary = {
        **base, "converged": True,
        "max_abs_dv_pu": float(by_hour["orig_max_abs_dv_pu"].max()),
        "worst_node": str(by_hour.at[worst_t, "orig_worst_node"]), "worst_hour": worst_t,
        "max_abs_dp_sub_kw": float(by_hour["orig_dp_sub_kw"].abs().max()),
        "max_abs_dq_sub_kvar": float(by_hour["orig_dq_sub_kvar"].abs().max()),
        "max_rel_dp_sub": float(rel),
        "nodes": len(nodes),
        "elements": "PV and battery: Generator model=1 on all phases of its bus; the feeder's PVSystem and "
                    "Storage elements disabled",
    }
    if plan_nodes is not None:
        summary["sign"] = "d = OpenDSS (original feeder) - optimisation (three-phase, node by node)"
        summary["max_abs_dangle_deg"] = float(by_hour["orig_max_abs_dangle_deg"].max())
        summary["max_abs_dloss_kw"] = float(by_hour["orig_dloss_kw"].abs().max())
        if "orig_max_abs_dp_phase_kw" in by_hour:
            summary["max_abs_dp_phase_kw"] = float(by_hour["orig_max_abs_dp_phase_kw"].max())
            summary["max_abs_dq_phase_kvar"] = float(by_hour["orig_max_abs_dq_phase_kvar"].max())
        summary["opendss_bus_v"] = pd.DataFrame(bus_v)
    return _Original(summary, by_hour, pd.DataFrame(dv, index=pd.Index(nodes, name="node"), columns=hours))


#: Node-by-node check of a three-phase plan: largest accepted |dV| (pu) on any node and hour, and substation
#: P mismatch as a fraction of |P_sub| (0.01 %): the same physics on both sides, so solver tolerance.
TOL_NODES_V_PU = 1e-6
TOL_NODES_REL_P_SUB = 1e-4


def _validate_nodes(case: Case, results: Results, hours: list[int], devices: pd.DataFrame,
                    t_start: float, report: bool = False) -> Validation:
    """The check of a three-phase plan (formulations whose ``validation`` is ``"nodes"``): the plan on the
    ORIGINAL feeder (:func:`_check_original` with the plan's ``node_voltages``), every bus and phase in
    magnitude and angle, the substation P and Q in total and per phase, the losses; passes when every node
    and hour is within :data:`TOL_NODES_V_PU` and the substation P within :data:`TOL_NODES_REL_P_SUB` (a
    distributed plan, ``tolerance_basis`` "distributed": within what its consensus tolerance
    ``summary['distributed']['tolerance_pu']`` guarantees to first order on its cuts, see
    :func:`~.formulations.three_phase_areas.consensus_bounds`).
    ``report`` (formulations whose ``validation`` is ``"nodes-report"``: an approximation such as
    ``3ph-linear``): the same comparison, but the gap is the result (``approximation_gap`` true) and the
    check passes whenever OpenDSS ran; ``within_tolerance`` still says whether the exact bound held."""
    if Path(case.network_model).suffix.lower() != ".dss":
        raise CaseError(f"{case.source}: a three-phase plan is checked on its OpenDSS feeder; "
                        f"{case.network_model} is not one")
    nodes = results.extra_tables.get("node_voltages")
    if nodes is None:
        raise CaseError(f"{case.source}: the three-phase plan has no node_voltages table; cannot check it node by node")
    orig = _check_original(case, results, hours, devices, plan_nodes=nodes)
    o = orig.summary
    if not o.get("converged"):
        raise ValidationFailed(f"{case.network_model}: the node-by-node check could not run: {o.get('reason')}")
    bus_v = o.pop("opendss_bus_v")
    floor_kw = P_SUB_FLOOR_OF_BASE * case.bases.s_kva
    h = orig.by_hour
    by_hour = pd.DataFrame({
        "load_mult": case.profile.loc[hours, "load_mult"].to_numpy(float),
        "max_abs_dv_pu": h["orig_max_abs_dv_pu"], "worst_bus": h["orig_worst_node"],
        "max_abs_dangle_deg": h["orig_max_abs_dangle_deg"],
        "p_opt_kw": results.substation["p_kw"].reindex(h.index), "p_opendss_kw": h["orig_p_opendss_kw"],
        "dp_sub_kw": h["orig_dp_sub_kw"],
        "rel_dp_sub": h["orig_dp_sub_kw"].abs() / np.maximum(h["orig_p_opendss_kw"].abs(), floor_kw),
        "q_opt_kvar": results.substation["q_kvar"].reindex(h.index), "q_opendss_kvar": h["orig_q_opendss_kvar"],
        "dq_sub_kvar": h["orig_dq_sub_kvar"],
        "loss_opendss_kw": h["orig_loss_opendss_kw"], "dloss_kw": h["orig_dloss_kw"],
    }, index=h.index)
    for col in ("orig_max_abs_dp_phase_kw", "orig_max_abs_dq_phase_kvar"):
        if col in h:
            by_hour[col.replace("orig_", "")] = h[col]
    # a distributed plan is the areas' solutions, which agree on the boundary only to the run's consensus
    # tolerance, but a port mismatch moves the nodes below its cut by the feeder's Thevenin impedance there
    # (IEEE 13, 4 areas: ports within 9e-5 pu, nodes 1.4e-4 pu off): the check applies the first-order bound
    # of :func:`~.formulations.three_phase_areas.consensus_bounds` for the run's tolerance and cuts
    tol_v, tol_p, basis = TOL_NODES_V_PU, TOL_NODES_REL_P_SUB, "central"
    dist = results.summary.get("distributed") or {}
    dist_tol = dist.get("tolerance_pu")
    if isinstance(dist_tol, (int, float)) and dist_tol > TOL_NODES_V_PU:
        from mpdopf_pyomo.formulations.three_phase_areas import consensus_bounds

        bound = consensus_bounds(case, [str(c) for c in dist.get("cut_branches") or []], float(dist_tol))
        tol_v, basis = max(float(dist_tol), bound["v_pu"]), "distributed"
        p_min = float(np.maximum(by_hour["p_opendss_kw"].abs(), floor_kw).min())
        tol_p = max(TOL_NODES_REL_P_SUB, bound["p_kw"] / p_min)
    ok = (by_hour["max_abs_dv_pu"] <= tol_v) & (by_hour["rel_dp_sub"] <= tol_p)
    by_hour["passed"] = ok | report  # an approximation's gap is reported, never failed
    worst_t = int(by_hour["max_abs_dv_pu"].idxmax())
    price = results.substation["price_usd_per_kwh"].reindex(by_hour.index).to_numpy(float)
    cost_dss = float(np.sum(by_hour["p_opendss_kw"].to_numpy(float) * price * case.settings.dt_h))
    summary = {
        "max_abs_dv_pu": float(by_hour["max_abs_dv_pu"].max()),
        "max_abs_dangle_deg": float(by_hour["max_abs_dangle_deg"].max()),
        "max_abs_dp_sub_kw": float(by_hour["dp_sub_kw"].abs().max()),
        "max_abs_dq_sub_kvar": float(by_hour["dq_sub_kvar"].abs().max()),
        "max_abs_dloss_kw": float(by_hour["dloss_kw"].abs().max()),
        "max_rel_dp_sub": float(by_hour["rel_dp_sub"].max()),
        "max_abs_dp_phase_kw": o.get("max_abs_dp_phase_kw"),
        "max_abs_dq_phase_kvar": o.get("max_abs_dq_phase_kvar"),
        "energy_cost_opendss_usd": cost_dss,
        "energy_cost_opendss_per_phase_usd": cost_dss / 3,
        "worst_hour": worst_t,
        "worst_bus": str(by_hour.at[worst_t, "worst_bus"]),
        "worst_node": str(by_hour.at[worst_t, "worst_bus"]),
        "nodes": o["nodes"],
        "tolerance_pu": tol_v,
        "tolerance_basis": basis,
        "tolerance_rel_p_sub": tol_p,
        "passed": True if report else bool(ok.all()),
        "within_tolerance": bool(ok.all()),
        "approximation_gap": report,
        "hours_failed": [] if report else [int(t) for t in by_hour.index[~ok]],
        "by_hour": [
            {"t": int(t), "max_abs_dv_pu": float(r.max_abs_dv_pu), "dp_sub_kw": float(r.dp_sub_kw),
             "dq_sub_kvar": float(r.dq_sub_kvar), "dloss_kw": float(r.dloss_kw), "rel_dp_sub": float(r.rel_dp_sub)}
            for t, r in by_hour.iterrows()
        ],
        "engine": engine_version(),
        "network_model": o["network_model"],
        "check": "node by node on the original feeder (every bus and phase: magnitude and angle; substation P, Q "
                 "in total and per phase; losses)",
        "regulators": o["regulators"],
        "elements": o["elements"],
        "sign": o["sign"],
        "time_s": time.perf_counter() - t_start,
    }
    voltages = bus_v.reindex([str(b).lower() for b in results.voltages.index])
    voltages.index.name = "bus"
    return Validation(summary, by_hour, voltages, orig.dv)


def _compile_export(case: Case) -> str:
    """Compile the case's balanced network (its own tables, :func:`network.reduce.balanced_network`) as an
    OpenDSS script written to a temporary folder; return what the summary names as the network model."""
    from mpdopf_pyomo.network import compile_model
    from mpdopf_pyomo.network.export import write_opendss
    from mpdopf_pyomo.network.reduce import balanced_network

    net = balanced_network(case.buses, case.branches, case.root, case.bases.s_kva, case.settings.v_sub_pu,
                           name=case.name, path=case.network_model)
    with tempfile.TemporaryDirectory(prefix="mpdopf_validate_") as tmp:
        compile_model(write_opendss(net, Path(tmp) / "balanced"))  # OpenDSS keeps the circuit in memory
    return f"{case.network_model} (its balanced equivalent, exported to OpenDSS)"


def attach_validation(case: Case, results: Results) -> None:
    """Validate ``results`` and store the summary and the two tables in it (see module docstring)."""
    val = validate(case, results)
    results.summary["validation"] = val.summary
    results.extra_tables["validation_by_hour"] = val.by_hour
    results.extra_tables["validation_voltages"] = val.voltages
    if val.original_dv is not None:
        results.extra_tables["validation_original_dv"] = val.original_dv


def format_validation(v: dict[str, Any], verbose: bool = False) -> list[str]:
    """Terminal lines of a validation summary: the overall line, then one line per hour with ``verbose``,
    else only the hours above tolerance and one worst-hour line (a 24-hour run stays readable)."""
    verdict = "passed" if v.get("passed") else "MISMATCH above tolerance"
    if v.get("approximation_gap"):  # an approximate formulation (3ph-linear): the gap is the result
        verdict = "the approximation's gap, reported (not checked against the exact tolerance)"
    tol = v.get("tolerance_pu", TOL_V_PU)
    tol_p = v.get("tolerance_rel_p_sub", TOL_REL_P_SUB)
    lines = [
        f"  OpenDSS check    max |dV| {v['max_abs_dv_pu']:.2e} pu, max |dP_sub| {v['max_abs_dp_sub_kw']:.4f} kW "
        f"({100 * v.get('max_rel_dp_sub', float('nan')):.4f} %), max |dQ_sub| {v['max_abs_dq_sub_kvar']:.4f} kvar, "
        f"max |dLoss| {v.get('max_abs_dloss_kw', float('nan')):.4f} kW: {verdict}"
        + ("" if v.get("approximation_gap") else f" (|dV| <= {tol:g} pu"
           + (": the first-order bound of the distributed run's consensus tolerance" if v.get("tolerance_basis") == "distributed" else "")
           + f", |dP_sub| <= {100 * tol_p:g} %)")
    ]
    if "max_abs_dangle_deg" in v:  # a three-phase plan, checked node by node on the original feeder
        lines.append(f"  node by node     {v.get('nodes')} nodes of the original feeder: max |dangle| "
                     f"{v['max_abs_dangle_deg']:.1e} deg, per phase max |dP| {v.get('max_abs_dp_phase_kw') or 0:.4f} kW, "
                     f"max |dQ| {v.get('max_abs_dq_phase_kvar') or 0:.4f} kvar")
    if "energy_cost_opendss_usd" in v:
        lines.append(f"  OpenDSS cost     energy {v['energy_cost_opendss_usd']:.4f} USD three-phase = "
                     f"{v['energy_cost_opendss_per_phase_usd']:.4f} USD per phase "
                     "(the power flow's substation P x price)")
    o = v.get("original")
    if o and o.get("converged"):
        lines.append(
            f"  original feeder  max |dV| {o['max_abs_dv_pu']:.2e} pu (node {o['worst_node']}, hour {o['worst_hour']}), "
            f"max |dP_sub| {o['max_abs_dp_sub_kw']:.4f} kW ({100 * o['max_rel_dp_sub']:.4f} %), "
            f"max |dQ_sub| {o['max_abs_dq_sub_kvar']:.4f} kvar: the balanced approximation's gap")
    elif o:
        lines.append(f"  original feeder  not checked: {o.get('reason', '?')}")
    hours = v.get("by_hour", [])
    failed = [] if v.get("approximation_gap") else [
        h for h in hours if not (h["max_abs_dv_pu"] <= tol and h["rel_dp_sub"] <= tol_p)]
    if hours and not verbose:
        worst = max(hours, key=lambda h: h["max_abs_dv_pu"])
        lines.append(f"    worst hour {worst['t']:>2}  |dV| {worst['max_abs_dv_pu']:.2e} pu"
                     + (f" at bus {v['worst_bus']}" if v.get("worst_bus") and v.get("worst_hour") == worst["t"] else "")
                     + ("" if v.get("approximation_gap") else
                        f", {len(hours) - len(failed)} of {len(hours)} hours within tolerance")
                     + ("" if len(hours) == 1 else " (-v: every hour)"))
    for h in hours if verbose else failed:
        mark = "" if (h['max_abs_dv_pu'] <= tol and h['rel_dp_sub'] <= tol_p) else "  <-- above tolerance"
        lines.append(
            f"    hour {h['t']:>2}        |dV| {h['max_abs_dv_pu']:.2e} pu, dP_sub {h['dp_sub_kw']:+.4f} kW "
            f"({100 * h['rel_dp_sub']:.4f} %), dQ_sub {h['dq_sub_kvar']:+.4f} kvar, dLoss {h['dloss_kw']:+.4f} kW{mark}"
        )
    return lines


# ------------------------------------------------------------------------------------------------------
# Re-validating a saved folder (the `validate DIR` command)
# ------------------------------------------------------------------------------------------------------

#: Numbers of summary.json that reports and figures read: when present they must be finite numbers.
_SUMMARY_NUMBERS = ("dt_h", "objective_usd", "energy_cost_usd", "substation_energy_kwh", "substation_peak_kw",
                    "losses_kwh", "pv_energy_kwh", "pv_reactive_kvarh", "battery_charge_kwh",
                    "battery_discharge_kwh", "v_min_pu", "v_max_pu", "central_objective_usd")
#: Tolerance of the SOC checks of a saved plan (solver tolerances are far smaller; CSV keeps 17 digits).
_SOC_TOL = 1e-5


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _check_summary(file: Path, s: dict[str, Any], periods: int) -> tuple[str, int]:
    """``case_file`` and ``hours`` of a saved summary, with the other values reports read type-checked."""
    if "case_file" not in s or "hours" not in s:
        raise CaseError(one_line(f"{file}: no case_file/hours; cannot tell which case the plan is for"))
    case_file, hours = s["case_file"], s["hours"]
    if not isinstance(case_file, str) or not case_file.strip():
        raise CaseError(one_line(f"{file}: case_file: expected the path of the case file, got {case_file!r:.60}"))
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
        raise CaseError(one_line(f"{file}: hours: expected a whole number of periods >= 1, got {hours!r:.60}"))
    if hours != periods:
        raise CaseError(one_line(f"{file}: hours = {hours}, but substation.csv holds {periods} periods"))
    for key in _SUMMARY_NUMBERS:
        if key in s and not _is_number(s[key]):
            raise CaseError(one_line(f"{file}: {key}: expected a finite number, got {s[key]!r:.60}"))
    dist = s.get("distributed")
    if dist is not None:
        if not isinstance(dist, dict):
            raise CaseError(one_line(f"{file}: distributed: expected a JSON object"))
        if dist.get("tol") is not None and not _is_number(dist["tol"]):
            raise CaseError(one_line(f"{file}: distributed.tol: expected a finite number, got {dist['tol']!r:.60}"))
    for key in ("case", "algorithm", "formulation", "solver"):
        if key in s and not isinstance(s[key], str):
            raise CaseError(one_line(f"{file}: {key}: expected a string, got {s[key]!r:.60}"))
    return case_file, hours


def _same_units(file: Path, what: str, plan: Any, case_units: Any, case_file: str) -> None:
    """The plan's buses or branches of one kind are exactly the case's."""
    plan_set, case_set = {str(u).lower() for u in plan}, {str(u).lower() for u in case_units}
    if plan_set != case_set:
        extra, missing = sorted(plan_set - case_set), sorted(case_set - plan_set)
        parts = []
        if extra:
            parts.append(f"{len(extra)} not in the case ({', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''})")
        if missing:
            parts.append(f"{len(missing)} of the case missing ({', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''})")
        raise CaseError(one_line(f"{file}: the plan's {what} do not match those of {case_file}: {'; '.join(parts)}"))


def _check_against_case(folder: Path, case: Case, results: Results) -> None:
    """The saved plan belongs to ``case``: same buses, branches, DER buses, period length; SOC consistent."""
    src = str(case.source)
    dt = results.summary.get("dt_h")
    if dt is not None and abs(dt - case.settings.dt_h) > 1e-12:
        raise CaseError(one_line(f"{folder / 'summary.json'}: dt_h = {dt:g} h, but {src} has {case.settings.dt_h:g} h"))
    _same_units(folder / "voltages.csv", "buses", results.voltages.index, case.buses.index, src)
    _same_units(folder / "branches.csv", "branches", results.branches.index.get_level_values(0).unique(),
                case.branches.index, src)
    _same_units(folder / "pv.csv", "PV buses", results.pv.index.get_level_values(0).unique(), case.pvs.index, src)
    bat = results.battery
    file = folder / "battery.csv"
    _same_units(file, "battery buses", bat.index.get_level_values(0).unique(), case.batteries.index, src)
    if not len(bat):
        return
    spec = case.batteries.loc[bat.index.get_level_values(0).str.lower()]
    e_rated_kwh = spec["e_rated"].to_numpy() * case.bases.s_kva
    energy, soc = bat["energy_kwh"].to_numpy(float), bat["soc"].to_numpy(float)
    checks = [
        ("energy_kwh", energy < -_SOC_TOL * e_rated_kwh, "negative stored energy"),
        ("soc", np.abs(soc - energy / e_rated_kwh) > _SOC_TOL, "soc is not energy_kwh / the case's energy rating"),
        ("soc", (soc < spec["soc_min"].to_numpy() - _SOC_TOL) | (soc > spec["soc_max"].to_numpy() + _SOC_TOL),
         "soc outside the case's [soc_min, soc_max]"),
    ]
    for col, bad, what in checks:
        if bad.any():
            k = int(np.argmax(bad))
            bus, t = bat.index[k]
            raise CaseError(one_line(
                f"{file}: column {col}: bus {bus} at t = {t}: {what} (soc {soc[k]:g}, energy {energy[k]:g} kWh, "
                f"rating {e_rated_kwh[k]:g} kWh, bounds {spec['soc_min'].iloc[k]:g}..{spec['soc_max'].iloc[k]:g})"))


def load_saved(folder: str | Path) -> tuple[Case, Results]:
    """Read a saved results folder and load the case it was solved on (same file, same horizon).

    Every input is checked (:meth:`Results.load` for the files, then summary.json's keys, and the plan
    against the case: buses, branches, PV and battery buses, period length, SOC = energy / rating within
    the case's SOC limits); anything wrong raises :class:`CaseError` naming the file and key (exit 2).
    """
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.errors import MpdopfError

    folder = Path(folder)
    if not folder.is_dir():
        raise CaseError(one_line(f"{folder}: no such results folder"))
    try:
        results = Results.load(folder)
    except MpdopfError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CaseError(one_line(f"{folder}: not a readable results folder: {exc_message(exc)}")) from None
    case_file, hours = _check_summary(folder / "summary.json", results.summary, len(results.substation))
    clock = results.substation.get("clock_hour")
    start = float(clock.iloc[0]) if clock is not None and len(clock) else None  # the run's window of the day
    case = load_case(case_file, hours, start=start)
    _check_against_case(folder, case, results)
    return case, results


def revalidate_folder(folder: str | Path, figures: bool = False,
                      warn: Callable[[str], None] | None = None) -> Results:
    """Validate the plan saved in ``folder`` again and rewrite only what validation owns.

    Rewrites (each file atomically: temporary file, then rename) ``validation_by_hour.csv``,
    ``validation_voltages.csv`` and the ``validation`` entry of ``summary.json`` (last); with ``figures``,
    also redraws the figures (``mpdopf_pyomo.plots``) over the old PNGs. Everything else in the folder --
    the plan's tables, other figures -- is left as it is (``Results.save`` would replace the folder
    wholesale and drop figures it was not given). Nothing is written unless the check and the figures
    were computed without error, and only in a results folder this program wrote (its ``.mpdopf-run``
    marker), over files that marker lists (``mpdopf_pyomo.outputs.check_rewritable``).
    """
    import json

    from mpdopf_pyomo.outputs import check_rewritable, record_files, write_atomic
    from mpdopf_pyomo.results import jsonable

    folder = Path(folder)
    case, results = load_saved(folder)
    tables = ("validation_by_hour", "validation_voltages", "validation_original_dv")
    check_rewritable(folder, ["summary.json", *(f"{n}.csv" for n in tables)])  # before minutes of OpenDSS
    attach_validation(case, results)
    figs: dict[str, Any] = {}
    if figures:
        try:
            from mpdopf_pyomo.plots import figures as make_figures
        except ModuleNotFoundError as exc:
            if exc.name != "mpdopf_pyomo.plots":
                raise
            if warn:
                warn("figures not redrawn: this installation has no plotting module")
        else:
            figs = make_figures(case, results)
    summary_file = folder / "summary.json"
    on_disk = json.loads(summary_file.read_text())
    on_disk["validation"] = results.summary["validation"]
    text = json.dumps(jsonable(on_disk), indent=2) + "\n"
    check_rewritable(folder, [f"{n}.png" for n in figs])
    from mpdopf_pyomo.results import clock_times, file_table

    clock = clock_times(results.substation)
    for name in [n for n in tables if n in results.extra_tables]:  # check (2)'s table only for OpenDSS feeders
        table = file_table(name, results.extra_tables[name], clock)  # the layout Results.save writes
        write_atomic(folder / f"{name}.csv", lambda p, table=table: table.to_csv(p, index=False))
    for name, fig in figs.items():
        write_atomic(folder / f"{name}.png",
                      lambda p, fig=fig: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    write_atomic(summary_file, lambda p: p.write_text(text))
    record_files(folder, [*(f"{n}.csv" for n in tables if n in results.extra_tables), *(f"{n}.png" for n in figs)])
    return results
