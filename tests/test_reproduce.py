"""Reporting in the study's convention and the study's run: per-phase values beside three-phase totals,
the energy cost apart from the alpha term, ENApp as the study ran it, ADMM's warm start made explicit, and
``reproduce`` (the study's figures beside ours)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.decomposition import solve_distributed
from mpdopf_pyomo.results import PER_PHASE_KEYS


@pytest.fixture(scope="module")
def central_1h(tmp_path_factory):
    """ieee123, 1 h, central, validated: (terminal text, summary.json, folder)."""
    out = tmp_path_factory.mktemp("rep") / "run"
    result = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "1", "--no-plots", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout, json.loads((out / "summary.json").read_text()), out


def test_summary_keeps_totals_and_adds_per_phase(central_1h):
    _, s, _ = central_1h
    assert s["phases"] == 3
    assert "three-phase totals" in s["units"] and "per_phase" in s["convention"]
    assert set(s["per_phase"]) == set(PER_PHASE_KEYS)
    for key in PER_PHASE_KEYS:
        assert s["per_phase"][key] == pytest.approx(s[key] / 3, rel=1e-12), key
    assert s["energy_cost_usd"] > 100  # the three-phase total, not the per-phase value, at the top level


def test_energy_cost_and_alpha_term_are_apart(central_1h):
    _, s, folder = central_1h
    case = load_case("ieee123", 1)
    sub = pd.read_csv(folder / "substation.csv")
    bat = pd.read_csv(folder / "battery.csv", dtype={"bus": str})
    assert s["energy_cost_usd"] == pytest.approx((sub["p_kw"] * sub["price_usd_per_kwh"]).sum() * s["dt_h"], rel=1e-9)
    eta_c = bat["bus"].map(case.batteries["eta_c"])
    eta_d = bat["bus"].map(case.batteries["eta_d"])
    loss_kwh = (((1 - eta_c) * bat["charge_kw"] + (1 / eta_d - 1) * bat["discharge_kw"]) * s["dt_h"]).sum()
    assert s["conversion_loss_cost_usd"] == pytest.approx(case.settings.alpha_usd_per_kwh * loss_kwh, rel=1e-6,
                                                          abs=1e-9)
    assert s["objective_usd"] == pytest.approx(
        s["energy_cost_usd"] + s["conversion_loss_cost_usd"] + s["terminal_cost_usd"], rel=1e-12)
    assert "energy_cost_usd" in s["objective_is"] and "alpha" in s["objective_is"]
    # the plan as OpenDSS runs it: its substation P x price
    by_hour = pd.read_csv(folder / "validation_by_hour.csv")
    cost = float((by_hour["p_opendss_kw"].to_numpy() * sub["price_usd_per_kwh"].to_numpy()).sum() * s["dt_h"])
    assert s["validation"]["energy_cost_opendss_usd"] == pytest.approx(cost, rel=1e-12)
    assert s["validation"]["energy_cost_opendss_per_phase_usd"] == pytest.approx(cost / 3, rel=1e-12)


def test_terminal_summary_shows_both_conventions(central_1h):
    text, s, _ = central_1h
    usd = re.search(r"energy cost\s+([\d.]+) USD three-phase = ([\d.]+) USD per phase", text)
    assert usd, text
    assert float(usd.group(1)) == pytest.approx(s["energy_cost_usd"], abs=1e-4)
    assert float(usd.group(2)) == pytest.approx(s["energy_cost_usd"] / 3, abs=1e-4)
    assert re.search(r"objective\s+[\d.]+ USD = energy [\d.]+ \+ alpha x conversion losses [\d.]+ USD", text), text
    assert re.search(r"substation\s+[\d.]+ kWh three-phase = [\d.]+ kWh per phase", text), text
    assert "OpenDSS cost     energy" in text
    shown = CliRunner().invoke(main, ["cases", "show", "ieee123"]).stdout
    assert re.search(r"batteries\s+26: [\d.]+ kW three-phase = [\d.]+ kW per phase", shown), shown


def test_enapp_default_is_the_studys_undamped_exchange():
    """The study: 5 macro-iterations. Damped at 0.7 (the former default) the same run took 11."""
    res = solve_distributed(load_case("ieee123-published", 5), "enapp", executor="serial")
    d = res.summary["distributed"]
    assert d["damping"] == 1.0
    assert d["iterations"] == 5 and d["converged"]
    assert d["exchanged_per_iteration"] == 30 and d["exchanged_reals_per_iteration"] == 45
    assert list(res.extra_tables["convergence"]["method"]) == ["enapp"] * 5
    assert res.summary["per_phase"]["energy_cost_usd"] == pytest.approx(576.31, abs=0.005)


@pytest.mark.parametrize("warm_start,methods", [("enapp", ["enapp"] * 2 + ["admm"] * 2), ("none", ["admm"] * 4)])
def test_admm_warm_start_is_explicit_and_labelled(warm_start, methods):
    lines: list[str] = []
    res = solve_distributed(load_case("ieee123", 2), "admm", executor="serial", warm_start=warm_start, warm=2,
                            max_iter=4, keep_last=True, progress=lines.append)
    conv = res.extra_tables["convergence"]
    assert list(conv["method"]) == methods
    assert conv.loc[conv["method"] == "enapp", "rho"].isna().all()
    assert conv.loc[conv["method"] == "admm", "rho"].notna().all()
    d = res.summary["distributed"]
    assert d["warm_start_iterations"] == methods.count("enapp") and d["iterations"] == 4
    labelled = [ln for ln in lines if ln.startswith("admm warm start: enapp ")]
    assert len(labelled) == methods.count("enapp")
    # IPOPT iterations are reported apart from (and are many more than) the ADMM iterations
    assert res.summary["solver_stats"]["iterations"] > 4 * d["areas"]


@pytest.mark.parametrize("args,needle", [
    (["--algorithm", "enapp", "--damping", "0"], "--damping 0: the ENApp damping must be a number with 0 < damping <= 1"),
    (["--algorithm", "enapp", "--damping", "1.01"], "--damping 1.01:"),
    (["--algorithm", "enapp", "--damping", "nan"], "--damping nan:"),
    (["--algorithm", "admm", "--damping", "0.5"], "--damping applies only to --algorithm enapp"),
    (["--damping", "0.5"], "--damping applies only to --algorithm enapp"),
    (["--algorithm", "enapp", "--warm-start", "none"], "--warm-start applies only to --algorithm admm"),
])
def test_bad_damping_or_warm_start_is_exit_2(tmp_path, args, needle):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "1", "--out", str(out), *args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip()[7:]}"]
    assert needle in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_unknown_warm_start_is_exit_2():
    result = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--algorithm", "admm", "--warm-start", "lindist"])
    assert result.exit_code == 2 and "'lindist' is not one of 'enapp', 'none'" in result.stderr


def test_reproduce_prints_and_writes_the_studys_table(tmp_path):
    """Central + ENApp on ieee123-published, 5 h (about 6 s): every figure the study reports, ours beside it
    within the stated tolerance (USD: 1e-4 relative of the study's rounded figure; counts: equal)."""
    out = tmp_path / "paper"
    result = CliRunner().invoke(main, ["reproduce", "--out", str(out), "--executor", "serial"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".mpdopf-run", "reproduce.md", "reproduce.csv", "central_summary.json", "enapp_summary.json",
         "enapp_convergence.csv"])
    table = pd.read_csv(out / "reproduce.csv", index_col="figure")
    study = {"central_energy_cost": 576.31, "enapp_energy_cost": 576.30, "enapp_iterations": 5, "enapp_exchanged": 30}
    for key, value in study.items():
        assert table.at[key, "study"] == value
        assert table.at[key, "reproduced"] == "yes", table.loc[key]
    assert table.at["central_energy_cost", "ours"] == pytest.approx(576.31, rel=1e-4)
    assert table.at["enapp_energy_cost", "ours"] == pytest.approx(576.30, rel=1e-4)
    assert table.at["enapp_iterations", "ours"] == 5 and table.at["enapp_exchanged", "ours"] == 30
    rel = (table.at["central_energy_cost", "ours"] - 576.31) / 576.31
    assert table.at["central_energy_cost", "relative_difference"] == pytest.approx(rel, rel=1e-9)
    assert np.isnan(table.at["enapp_energy_cost_opendss", "study"])
    # what the terminal shows is that table
    assert re.search(r"Central: substation energy cost\s+USD per phase\s+576\.3100\s+576\.31\d\d\s+[+-]\d", result.stdout)
    assert re.search(r"ENApp: macro-iterations\s+5\s+5\s", result.stdout)
    md = (out / "reproduce.md").read_text()
    assert "| Central: substation energy cost | USD per phase | 576.3100 |" in md and "damping 1" in md
    enapp = json.loads((out / "enapp_summary.json").read_text())
    assert enapp["distributed"]["iterations"] == 5 and enapp["case"] == "ieee123-published"


def test_reproduce_refuses_a_foreign_folder_before_solving(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert "reproduce:" not in result.stderr  # nothing was solved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
