"""Central multi-period OPF: physics and bookkeeping checked on what users get (the saved tables).

Each case x formulation is solved once (5 hours, module-scoped fixture), saved to disk and read back with
``Results.load``; every check below recomputes a relation from those tables (kW -> pu via
``case.bases.s_kva``) and compares it with the model's equations (DESIGN.md section 2).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mpdopf_pyomo.case import load_case, resolve_case_path
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.results import Results
from mpdopf_pyomo.pipeline import solve_central

CASES = ("ieee123", "ieee123-published")
FORMULATIONS = ("exact", "socp", "linear")
HOURS = 5
TOL_PU = 1e-6  #: equality residuals (pu, or pu·h for energy)
#: "Charging and discharging at once": min(charge, discharge) of a battery in an hour, kW. The batteries are
#: 7-15 kW; 1e-3 kW is 0.01 % of a rating, i.e. numerical noise of the interior-point solution.
SIMULTANEOUS_KW = 1e-3


@pytest.fixture(scope="module")
def cases():
    return {name: load_case(name, HOURS) for name in CASES}


@pytest.fixture(scope="module")
def solved(cases, tmp_path_factory):
    """(case name, formulation) -> (Case, in-memory Results, Results read back from its folder)."""
    out = {}
    root = tmp_path_factory.mktemp("central")
    for name in CASES:
        for form in FORMULATIONS:
            res = solve_central(cases[name], form)
            folder = res.save(root / f"{name}_{form}")
            out[name, form] = (cases[name], res, Results.load(folder))
    return out


ALL = [(c, f) for c in CASES for f in FORMULATIONS]


def _tables(case, res):
    """Per-unit arrays (bus/branch x hour) from the results tables."""
    base = case.bases.s_kva
    T = list(case.profile.index)
    br = res.branches
    names = list(case.branches.index)

    def wide(table, col, index):
        w = table[col].unstack("t").reindex(index=index, columns=T)
        return w.fillna(0.0).to_numpy() / base

    P = wide(br, "p_kw", names)
    Q = wide(br, "q_kvar", names)
    ell = br["current_sq_pu"].unstack("t").reindex(index=names, columns=T).to_numpy()
    buses = list(case.buses.index)
    V = res.voltages.copy()
    V.index = V.index.astype(str)
    v = V.reindex(index=buses, columns=T).to_numpy() ** 2
    p_inj = wide(res.pv, "p_kw", buses) + wide(res.battery, "discharge_kw", buses) - wide(
        res.battery, "charge_kw", buses
    )
    q_inj = wide(res.pv, "q_kvar", buses) + wide(res.battery, "q_kvar", buses)
    return P, Q, ell, v, p_inj, q_inj


@pytest.mark.parametrize("name,form", ALL)
def test_solution_summary(solved, name, form):
    case, res, loaded = solved[name, form]
    s = loaded.summary
    assert s["status"] == "optimal" and s["formulation"] == form and s["hours"] == HOURS
    assert s["solver_stats"]["iterations"] > 0
    assert math.isfinite(s["objective_usd"]) and s["objective_usd"] > 0
    assert s["objective_usd"] == pytest.approx(res.summary["objective_usd"], rel=1e-12)
    assert case.settings.v_min_pu - 1e-6 <= s["v_min_pu"] <= s["v_max_pu"] <= case.settings.v_max_pu + 1e-6


@pytest.mark.parametrize("name,form", ALL)
def test_power_balance_every_bus_and_hour(solved, name, form):
    case, _, res = solved[name, form]
    P, Q, ell, v, p_inj, q_inj = _tables(case, res)
    br = case.branches
    pos = {b: k for k, b in enumerate(case.buses.index)}
    lm = case.profile["load_mult"].to_numpy()
    p_load = np.outer(case.buses["p_load"], lm)
    q_load = np.outer(case.buses["q_load"], lm) - case.buses["q_cap"].to_numpy()[:, None]
    # flow into each bus minus losses minus flows out, per bus
    inflow_p = np.zeros_like(p_load)
    inflow_q = np.zeros_like(q_load)
    r, x = br["r"].to_numpy()[:, None], br["x"].to_numpy()[:, None]
    for k, (i, j) in enumerate(zip(br["from_bus"], br["to_bus"])):
        inflow_p[pos[j]] += P[k] - r[k] * ell[k]
        inflow_q[pos[j]] += Q[k] - x[k] * ell[k]
        inflow_p[pos[i]] -= P[k]
        inflow_q[pos[i]] -= Q[k]
    mis_p = inflow_p + p_inj - p_load
    mis_q = inflow_q + q_inj - q_load
    root = pos[case.root]
    # the root's balance is the substation's: its import is what leaves the root (plus the root's own load)
    sub = res.substation.loc[list(case.profile.index)]
    mis_p[root] += sub["p_kw"].to_numpy() / case.bases.s_kva
    mis_q[root] += sub["q_kvar"].to_numpy() / case.bases.s_kva
    assert np.abs(mis_p).max() <= TOL_PU, f"real balance off by {np.abs(mis_p).max():.2e} pu"
    assert np.abs(mis_q).max() <= TOL_PU, f"reactive balance off by {np.abs(mis_q).max():.2e} pu"


@pytest.mark.parametrize("name,form", ALL)
def test_voltage_drop(solved, name, form):
    case, _, res = solved[name, form]
    P, Q, ell, v, _, _ = _tables(case, res)
    br = case.branches
    pos = {b: k for k, b in enumerate(case.buses.index)}
    i = [pos[b] for b in br["from_bus"]]
    j = [pos[b] for b in br["to_bus"]]
    r, x = br["r"].to_numpy()[:, None], br["x"].to_numpy()[:, None]
    mis = v[j] - (v[i] - 2 * (r * P + x * Q) + (r**2 + x**2) * ell)
    assert np.abs(mis).max() <= TOL_PU
    assert np.allclose(v[pos[case.root]], case.settings.v_sub_pu**2, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_exact_branch_flow_relation(solved, name):
    case, _, res = solved[name, "exact"]
    P, Q, ell, v, _, _ = _tables(case, res)
    pos = {b: k for k, b in enumerate(case.buses.index)}
    vi = v[[pos[b] for b in case.branches["from_bus"]]]
    gap = ell * vi - P**2 - Q**2
    assert np.abs(gap).max() <= TOL_PU, f"|l v - P^2 - Q^2| up to {np.abs(gap).max():.2e}"


@pytest.mark.parametrize("name", CASES)
def test_socp_relation_and_tightness(solved, name):
    """SOCP: l v >= P^2 + Q^2 holds, and the relaxation is tight where it matters: the losses it overstates.

    The gap itself can be ~1e-3 pu on branches of near-zero resistance (the regulator and switches,
    r ~ 2e-7 pu), where extra current costs nothing; the loss it adds, r * gap / v, stays negligible.
    """
    case, _, res = solved[name, "socp"]
    P, Q, ell, v, _, _ = _tables(case, res)
    pos = {b: k for k, b in enumerate(case.buses.index)}
    vi = v[[pos[b] for b in case.branches["from_bus"]]]
    gap = ell * vi - P**2 - Q**2
    assert gap.min() >= -TOL_PU
    excess_loss = case.branches["r"].to_numpy()[:, None] * gap / vi
    assert excess_loss.sum(axis=0).max() <= TOL_PU
    exact = solved[name, "exact"][1].summary["objective_usd"]
    assert res.summary["objective_usd"] == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_linear_has_no_losses(solved, name):
    _, _, res = solved[name, "linear"]
    assert (res.branches["current_sq_pu"] == 0).all()
    assert res.summary["losses_kwh"] == 0


@pytest.mark.parametrize("name,form", ALL)
def test_soc_recursion_and_terminal(solved, name, form):
    case, _, res = solved[name, form]
    base, dt = case.bases.s_kva, case.settings.dt_h
    bats = case.batteries
    T = list(case.profile.index)
    bt = res.battery
    e = bt["energy_kwh"].unstack("t").reindex(index=bats.index, columns=T).to_numpy() / base
    pc = bt["charge_kw"].unstack("t").reindex(index=bats.index, columns=T).to_numpy() / base
    pd_ = bt["discharge_kw"].unstack("t").reindex(index=bats.index, columns=T).to_numpy() / base
    e0 = (bats["soc0"] * bats["e_rated"]).to_numpy()
    prev = np.column_stack([e0, e[:, :-1]])
    step = dt * (bats["eta_c"].to_numpy()[:, None] * pc - pd_ / bats["eta_d"].to_numpy()[:, None])
    assert np.abs(e - prev - step).max() <= TOL_PU
    assert case.settings.terminal_soc == "hard"
    assert np.abs(e[:, -1] - e0).max() <= TOL_PU
    soc = bt["soc"].unstack("t").reindex(index=bats.index, columns=T).to_numpy()
    assert (soc >= bats["soc_min"].to_numpy()[:, None] - 1e-6).all()
    assert (soc <= bats["soc_max"].to_numpy()[:, None] + 1e-6).all()
    rated_kw = bats["p_rated"].to_numpy()[:, None] * base
    assert (pc * base <= rated_kw + 1e-3).all() and (pd_ * base <= rated_kw + 1e-3).all()


@pytest.mark.parametrize("name,form", ALL)
def test_no_simultaneous_charge_and_discharge(solved, name, form):
    case, _, res = solved[name, form]
    both = np.minimum(res.battery["charge_kw"], res.battery["discharge_kw"])
    assert both.max() <= SIMULTANEOUS_KW, (
        f"battery {both.idxmax()} charges and discharges {both.max():.4f} kW at once "
        f"(alpha = {case.settings.alpha_usd_per_kwh} USD/kWh)"
    )


@pytest.mark.parametrize("name,form", ALL)
def test_objective_recomputed_from_tables(solved, name, form):
    case, _, res = solved[name, form]
    dt = case.settings.dt_h
    sub = res.substation
    energy = float((sub["price_usd_per_kwh"] * sub["p_kw"]).sum() * dt)
    bats = case.batteries
    b = res.battery.join(bats[["eta_c", "eta_d"]], on="bus")
    loss_kwh = float((((1 - b["eta_c"]) * b["charge_kw"] + (1 / b["eta_d"] - 1) * b["discharge_kw"]) * dt).sum())
    objective = energy + case.settings.alpha_usd_per_kwh * loss_kwh
    assert case.settings.terminal_soc == "hard"  # no shortfall penalty term
    assert res.summary["objective_usd"] == pytest.approx(objective, rel=1e-9, abs=1e-9)
    assert res.summary["energy_cost_usd"] == pytest.approx(energy, rel=1e-9)
    assert float(sub["cost_usd"].sum()) == pytest.approx(energy, rel=1e-9)
    # the substation import is what the root sends down its branches
    first = case.branches[case.branches["from_bus"] == case.root].index
    p_first = res.branches.loc[list(first), "p_kw"].groupby(level="t").sum()
    assert np.allclose(p_first.reindex(sub.index).to_numpy(), sub["p_kw"].to_numpy(), atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_socp_objective_not_above_exact(solved, name):
    exact = solved[name, "exact"][1].summary["objective_usd"]
    socp = solved[name, "socp"][1].summary["objective_usd"]
    assert socp <= exact + 1e-6 * abs(exact)


# --------------------------------------------------------------------------------------------------
# The command line: failures give a non-zero exit, one clear line, and no output folder
# --------------------------------------------------------------------------------------------------


def test_cli_success_writes_folder(tmp_path):
    out = tmp_path / "ok"
    result = CliRunner().invoke(
        main, ["solve", "--case", "ieee123", "--hours", "2", "--no-validate", "--no-plots", "--json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").is_file()
    for name in ("voltages", "branches", "pv", "battery", "substation"):
        assert (out / f"{name}.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_max_iter_1_fails_without_output(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["solve", "--case", "ieee123", "--hours", str(HOURS), "--solver-option", "max_iter=1",
         "--no-validate", "--no-plots", "--out", str(out)],
    )
    assert result.exit_code != 0
    assert "iteration limit" in result.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # not even a temporary folder


@pytest.mark.parametrize(
    "v_min",
    [
        1.04,  # above the substation's 1.03 pu: caught before solving (exit 2, bad input)
        1.025,  # the substation is within limits, the feeder cannot be: IPOPT proves it (exit 4)
    ],
)
def test_infeasible_case_says_infeasible(tmp_path, v_min):
    text = resolve_case_path("ieee123").read_text()
    network = re.search(r'^network\s*=\s*"([^"]+)"', text, flags=re.M)
    assert network
    model = (resolve_case_path("ieee123").parent / network.group(1)).resolve()
    text = text.replace(network.group(0), f'network = "{model.as_posix()}"')
    text, n = re.subn(r"^v_min_pu\s*=\s*[0-9.]+", f"v_min_pu = {v_min}", text, flags=re.M)
    assert n == 1
    case_file = tmp_path / "tight.toml"
    case_file.write_text(text)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", str(case_file), "--hours", "2", "--json",
         "--no-validate", "--no-plots", "--out", str(out)],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one clear line, no warnings or traceback
    assert lines[0].startswith("error:") and "infeasible" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tight.toml"]


def test_results_tables_round_trip(solved):
    """Saved tables read back equal the in-memory ones (so the checks above test what users get)."""
    _, res, loaded = solved["ieee123", "exact"]
    pd.testing.assert_frame_equal(res.voltages, loaded.voltages, check_names=False, rtol=1e-12)
    for name in ("branches", "pv", "battery"):
        a, b = getattr(res, name), getattr(loaded, name)
        assert np.allclose(a.select_dtypes("number").to_numpy(), b.select_dtypes("number").to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("name,form", ALL)
def test_inverter_limits_hold_relative_to_rating(solved, name, form):
    """Every PV and battery inverter: (P^2 + Q^2) / S_rated^2 <= 1 + 1e-6 in the saved tables (the battery
    circle in pu^2 let |S| exceed its rating by 0.07 % at full discharge before it was scaled by S^2)."""
    case, _, res = solved[name, form]
    base = case.bases.s_kva
    bat = res.battery.reset_index()
    s_bat = bat["bus"].astype(str).map(case.batteries["s_rated"]).to_numpy() * base
    ratio_bat = ((bat["discharge_kw"] - bat["charge_kw"]) ** 2 + bat["q_kvar"] ** 2).to_numpy() / s_bat**2
    pv = res.pv.reset_index()
    s_pv = pv["bus"].astype(str).map(case.pvs["s_rated"]).to_numpy() * base
    ratio_pv = (pv["p_kw"] ** 2 + pv["q_kvar"] ** 2).to_numpy() / s_pv**2
    assert np.isfinite(ratio_bat).all() and np.isfinite(ratio_pv).all()
    assert ratio_bat.max() <= 1 + 1e-6, f"battery over its rating by {ratio_bat.max() - 1:.2e} (relative, S^2)"
    assert ratio_pv.max() <= 1 + 1e-6, f"PV over its rating by {ratio_pv.max() - 1:.2e} (relative, S^2)"
