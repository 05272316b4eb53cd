"""OpenDSS validation of solved plans: exact plans agree, perturbed or linear plans do not, CLI re-validation."""

import copy
import json

import pytest
from click.testing import CliRunner

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.outputs import MARKER
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.validation import TOL_REL_P_SUB, TOL_V_PU, attach_validation, validate


@pytest.fixture(scope="module")
def case5():
    return load_case("ieee123", 5)


@pytest.fixture(scope="module")
def exact5(case5):
    res = solve_case(case5, formulation="exact")
    res.summary["case_file"] = str(case5.source)
    return res


@pytest.fixture(scope="module")
def val_exact5(case5, exact5):
    return validate(case5, exact5)


def test_exact_solution_validates_within_tolerance(val_exact5, exact5):
    s = val_exact5.summary
    assert s["passed"] is True
    assert s["max_abs_dv_pu"] <= TOL_V_PU
    assert s["max_rel_dp_sub"] <= TOL_REL_P_SUB
    bh = val_exact5.by_hour
    # every hour: |dP_sub| <= 0.1 % of the substation power, and the figures are what they claim to be
    assert (bh["dp_sub_kw"].abs() <= 1e-3 * bh["p_opendss_kw"].abs()).all()
    assert (bh["p_opt_kw"] == exact5.substation["p_kw"]).all()
    # the same balanced network: agreement to solver tolerance, far inside the tolerance
    assert s["max_abs_dv_pu"] < 1e-6
    assert s["max_abs_dq_sub_kvar"] < 0.05
    assert s["max_abs_dloss_kw"] < 0.01
    # the OpenDSS voltages have the layout of Results.voltages
    assert list(val_exact5.voltages.index) == list(exact5.voltages.index)
    assert list(val_exact5.voltages.columns) == list(exact5.voltages.columns)
    assert s["engine"].startswith("OpenDSS")
    assert s["time_s"] < 1.0


def test_battery_power_changed_by_10_kw_shows_a_mismatch(case5, exact5, val_exact5):
    res = copy.deepcopy(exact5)
    bus = res.battery.index.get_level_values("bus")[0]
    res.battery.loc[(bus, 2), "discharge_kw"] += 10.0
    v = validate(case5, res)
    assert v.summary["passed"] is False
    assert v.summary["hours_failed"] == [2]
    # OpenDSS sees 10 kW more injection: the substation supplies about 10 kW less than the plan says
    dp = v.by_hour.at[2, "dp_sub_kw"]
    assert -10.5 < dp < -9.5
    assert abs(dp) > TOL_REL_P_SUB * abs(v.by_hour.at[2, "p_opendss_kw"])
    assert v.summary["max_abs_dp_sub_kw"] > 9.5
    # other hours unchanged
    assert v.by_hour.drop(index=2)["dp_sub_kw"].abs().max() < 0.01
    assert v.by_hour.at[2, "max_abs_dv_pu"] > 10 * val_exact5.summary["max_abs_dv_pu"]


def test_battery_reactive_power_changed_shows_a_voltage_mismatch(case5, exact5):
    res = copy.deepcopy(exact5)
    bus = res.battery.index.get_level_values("bus")[-1]  # far down the feeder
    res.battery.loc[(bus, 1), "q_kvar"] += 100.0
    v = validate(case5, res)
    assert v.by_hour.at[1, "max_abs_dv_pu"] > TOL_V_PU
    assert v.summary["passed"] is False
    assert -100.5 < v.by_hour.at[1, "dq_sub_kvar"] < -99


def test_linear_plan_is_measurably_off_the_physics(case5, val_exact5):
    res = solve_case(case5, formulation="linear")
    v = validate(case5, res)
    s = v.summary
    assert s["passed"] is False
    assert s["max_abs_dv_pu"] > 100 * val_exact5.summary["max_abs_dv_pu"]
    assert s["max_abs_dv_pu"] > TOL_V_PU
    # LinDistFlow drops the losses: OpenDSS's substation supplies them on top of the plan
    bh = v.by_hour
    assert (bh["loss_opt_kw"] == 0).all()
    assert (bh["dp_sub_kw"] > 10).all()
    assert (bh["dp_sub_kw"] - bh["loss_opendss_kw"]).abs().max() < 1.0


def test_attach_validation_fills_summary_and_tables(case5, exact5):
    res = copy.deepcopy(exact5)
    attach_validation(case5, res)
    v = res.summary["validation"]
    for key in ("max_abs_dv_pu", "max_abs_dp_sub_kw", "max_abs_dq_sub_kvar", "max_abs_dloss_kw",
                "max_rel_dp_sub", "engine", "tolerance_pu", "passed"):
        assert key in v
    assert list(res.extra_tables["validation_by_hour"].index) == [1, 2, 3, 4, 5]
    assert res.extra_tables["validation_voltages"].shape == res.voltages.shape
    assert len(v["by_hour"]) == 5


def test_cli_validate_reproduces_saved_numbers_and_keeps_other_files(tmp_path, case5, exact5):
    res = copy.deepcopy(exact5)
    attach_validation(case5, res)
    folder = res.save(tmp_path / "run")
    (folder / "voltages.png").write_bytes(b"not really a png")
    before = json.loads((folder / "summary.json").read_text())
    # spoil the saved validation so that the command has to recompute it
    spoiled = dict(before)
    spoiled["validation"] = {"max_abs_dv_pu": 1.0}
    (folder / "summary.json").write_text(json.dumps(spoiled))
    (folder / "validation_by_hour.csv").write_text("t\n")

    result = CliRunner().invoke(main, ["validate", str(folder), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "OpenDSS check" in result.output and "passed" in result.output
    after = json.loads((folder / "summary.json").read_text())
    for key in ("max_abs_dv_pu", "max_abs_dp_sub_kw", "max_abs_dq_sub_kvar", "max_abs_dloss_kw", "max_rel_dp_sub"):
        assert after["validation"][key] == pytest.approx(before["validation"][key], rel=1e-9, abs=1e-12)
    assert after["validation"]["passed"] is True
    assert after["objective_usd"] == before["objective_usd"]  # the rest of the summary kept
    assert (folder / "voltages.png").read_bytes() == b"not really a png"
    assert len((folder / "validation_by_hour.csv").read_text().splitlines()) == 6
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name != MARKER]  # no temporary files left


@pytest.mark.parametrize("make", ["missing", "empty", "no_case_file"])
def test_cli_validate_bad_folder_is_one_line_exit_2(tmp_path, exact5, make):
    folder = tmp_path / "bad"
    if make == "empty":
        folder.mkdir()
    elif make == "no_case_file":
        res = copy.deepcopy(exact5)
        del res.summary["case_file"]
        res.save(folder)
    result = CliRunner().invoke(main, ["validate", str(folder), "--no-plots"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(folder) in lines[0]


def _hourly(n, bad=()):
    hours = [{"t": t, "max_abs_dv_pu": (2e-3 if t in bad else 1e-8 * t), "dp_sub_kw": 0.001, "dq_sub_kvar": 0.0,
              "dloss_kw": 0.0, "rel_dp_sub": 1e-6} for t in range(1, n + 1)]
    worst = max(hours, key=lambda h: h["max_abs_dv_pu"])["t"]
    return {"max_abs_dv_pu": max(h["max_abs_dv_pu"] for h in hours), "max_abs_dp_sub_kw": 0.001,
            "max_rel_dp_sub": 1e-6, "max_abs_dq_sub_kvar": 0.0, "max_abs_dloss_kw": 0.0, "passed": not bad,
            "worst_hour": worst, "worst_bus": "65", "by_hour": hours}


def test_24_hours_print_one_worst_hour_line_unless_verbose():
    """A 24-hour run prints its worst hour, not 24 lines; -v (verbose) lists every hour; failing hours always show."""
    from mpdopf_pyomo.validation import format_validation

    quiet = format_validation(_hourly(24))
    assert not any(line.lstrip().startswith("hour ") for line in quiet)
    assert [line for line in quiet if "worst hour" in line] == [
        "    worst hour 24  |dV| 2.40e-07 pu at bus 65, 24 of 24 hours within tolerance (-v: every hour)"]
    assert len(quiet) == 2
    loud = format_validation(_hourly(24), verbose=True)
    assert sum(line.lstrip().startswith("hour ") for line in loud) == 24
    failing = format_validation(_hourly(24, bad={3, 17}))
    shown = [line for line in failing if line.lstrip().startswith("hour ")]
    assert len(shown) == 2 and all("<-- above tolerance" in line for line in shown)
    assert "hour  3" in shown[0] and "hour 17" in shown[1]
    assert "22 of 24 hours within tolerance" in failing[1]
