"""The public OpenDSS feeders as bare cases (issue 11): base-case gap of the balanced conversion to the
original feeder, conversion reports, and 2-h central and ADMM solves that pass validation check (1).

Feeders come from ``shared/reference/feeders`` beside the repository (``mpdopf_pyomo.feeders.REFERENCE``);
without it these tests skip. The 8500 and 9500 run in ``make bench`` (``python -m mpdopf_pyomo.feeders``)
and in the slow test at the end (``MPDOPF_SLOW=1 pytest tests/test_feeders.py``).
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from mpdopf_pyomo.cli import main
from mpdopf_pyomo.feeders import REFERENCE, TARGET_DV_PU, TARGET_REL_PQ, base_case_gap, feeder_path
from mpdopf_pyomo.network import reduce as rd

pytestmark = pytest.mark.skipif(not REFERENCE.is_dir(),
                                reason=f"the public feeders ({REFERENCE}) are not beside the repository")


def test_compile_then_solve_with_controls_off_is_the_feeders_power_flow():
    """compile_model once left a series-only admittance matrix: the next solve with controls off converged
    to a point without loads (IEEE 13: -297 kW at the source). Now it is the feeder's 3567 kW + 1736 kvar
    (the feeders README: 3567.1, 1736.4)."""
    from mpdopf_pyomo.network import compile_model, engine, substation_power_kw

    compile_model(feeder_path("ieee13"))
    dss = engine()
    dss.Text.Command("Set ControlMode=OFF")
    dss.Solution.Solve()
    p, q = substation_power_kw()
    assert (p, q) == pytest.approx((3567.1, 1736.4), abs=0.5)


#: feeder -> (largest relative P gap, largest relative Q gap) measured; the Q of the 13 and 34 miss 1 %
#: (the unbalanced feeders' extra reactive losses, docs/src/opendss.md).
BASE_GAPS = {"ieee13": (0.0011, 0.0182), "ieee34": (0.0031, 0.0120), "ieee123": (0.0006, 0.0074)}


@pytest.mark.parametrize("name", list(BASE_GAPS))
def test_base_case_gap_to_the_original_feeder(name):
    row = base_case_gap(feeder_path(name))
    assert row["original_converged"]
    rel_p, rel_q = BASE_GAPS[name]
    assert row["rel_dp"] == pytest.approx(rel_p, abs=2e-4) and row["rel_dp"] <= TARGET_REL_PQ
    assert row["rel_dq"] == pytest.approx(rel_q, abs=5e-4)
    assert row["backbone_max_dv_pu"] <= TARGET_DV_PU and row["backbone_buses"] >= 10
    assert row["within_target"] == (rel_q <= TARGET_REL_PQ)


#: Each bundled feeder's report: entry -> element count (and, for the laterals and loads, the load they carry).
#: The untransposed elements are three-phase lines plus one regulator bank on each feeder whose units sit at
#: different taps: a unit's impedance is referred to its tapped winding-2 voltage (as OpenDSS does), so the
#: bank's per-phase impedances differ.
REPORTS = {
    "ieee13": {rd.UNTRANSPOSED: 7, rd.SWITCH: 1, rd.REGULATOR: 1, rd.TAPS: 1, rd.LATERAL: 5, rd.UNBAL_LOAD: 14,
               rd.UNBAL_SHUNT: 1},
    "ieee34": {rd.UNTRANSPOSED: 25, rd.REGULATOR: 2, rd.TAPS: 1, rd.LATERAL: 8, rd.UNBAL_LOAD: 63},
    "ieee123": {rd.UNTRANSPOSED: 61, rd.SWITCH: 8, rd.REGULATOR: 4, rd.TAPS: 2, rd.LATERAL: 61,
                rd.UNBAL_LOAD: 89, rd.UNBAL_SHUNT: 3},
}
LOADS = {"ieee13": {rd.LATERAL: 698.0, rd.UNBAL_LOAD: 2311.0}, "ieee34": {rd.LATERAL: 214.0, rd.UNBAL_LOAD: 767.0},
         "ieee123": {rd.LATERAL: 1600.0, rd.UNBAL_LOAD: 3175.0}}


@pytest.mark.parametrize("name", list(REPORTS))
def test_conversion_report_lists_exactly_the_approximations(name):
    """``cases show FEEDER.dss`` prints the report; the entries are exactly these, with these counts."""
    from mpdopf_pyomo.case import load_case

    report = load_case(feeder_path(name), 1, warn=None).conversion
    assert {e.what: e.count for e in report.entries} == REPORTS[name]
    for what, kw in LOADS[name].items():
        assert report.get(what).load_kw == pytest.approx(kw)
    assert any("operating point" in n for n in report.notes)
    out = CliRunner().invoke(main, ["cases", "show", str(feeder_path(name))])
    assert out.exit_code == 0, out.output
    for what in REPORTS[name]:
        assert what in out.output


#: ADMM runs: feeder -> penalty. The default adaptive penalty (from 2e4) does not converge in 300 iterations
#: on these small bare feeders (it climbs to 3e5 and oscillates; the decomposition's tuning, not the
#: conversion); a fixed penalty does. The 34 needs about 450 iterations (40 s): only with MPDOPF_SLOW=1.
ADMM_RHO = {"ieee13": "2e3", "ieee123": "2e3", "ieee34": "5e3"}
RUNS = [(n, "central") for n in REPORTS] + [
    ("ieee13", "admm"), ("ieee123", "admm"),
    pytest.param("ieee34", "admm", marks=pytest.mark.skipif(not os.environ.get("MPDOPF_SLOW"),
                                                           reason="34-bus ADMM takes 40 s: MPDOPF_SLOW=1"))]


@pytest.mark.parametrize("name,algorithm", RUNS)
def test_two_hours_converge_and_pass_check_one(tmp_path, name, algorithm):
    """Central and 4-area ADMM on the bare feeder: converge, check (1) (1e-6 pu central, the ADMM tolerance
    for ADMM), check (2) reported; the run folder keeps the conversion report."""
    args = ["solve", "--case", str(feeder_path(name)), "--hours", "2", "--no-plots", "--json",
            "--out", str(tmp_path / "run"), "--algorithm", algorithm]
    if algorithm == "admm":
        args += ["--areas", "4", "--executor", "serial", "--rho", ADMM_RHO[name], "--max-iter", "1000"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    v = s["validation"]
    assert v["passed"] and v["max_abs_dv_pu"] <= (1e-6 if algorithm == "central" else 1e-4)
    o = v["original"]
    assert o["converged"] and 0 < o["max_abs_dv_pu"] < 0.1
    assert (tmp_path / "run" / "conversion_report.csv").is_file()
    assert (tmp_path / "run" / "validation_original_dv.csv").is_file()


@pytest.mark.skipif(not os.environ.get("MPDOPF_SLOW"), reason="8500/9500 base case (a minute): MPDOPF_SLOW=1")
@pytest.mark.parametrize("name", ["ieee8500", "ieee9500"])
def test_large_feeders_base_case(name):
    """The 8500: each centre-tap service a branch to its load bus (3699 buses) and the transformers'
    magnetising and no-load loss as shunts: P within 0.5 % (2.4 % when the services were collapsed), Q
    10 % (39 %), backbone 0.0022 pu. The 9500 converts, but its own OpenDSS solve does not converge on
    this DSS C-API (the feeders README), so it has no gap."""
    row = base_case_gap(feeder_path(name))
    assert row["buses"] > 3000 and row["backbone_buses"] > 100
    if name == "ieee8500":
        assert row["original_converged"] and row["rel_dp"] == pytest.approx(0.0050, abs=5e-4)
        assert row["rel_dq"] == pytest.approx(0.103, abs=5e-3) and row["buses"] == 3699
        assert row["backbone_max_dv_pu"] <= TARGET_DV_PU
    else:
        assert not row["original_converged"] and row["p_conv_kw"] == pytest.approx(11546.1, rel=1e-3)


def test_base_case_gap_split_by_element_group_adds_up():
    """The IEEE 13's Q gap (-31.5 kvar, 1.82 %) by element group: loads +5.6 kvar, lines and shunts
    -36.7 (unbalanced phase currents' reactive losses and per-phase capacitor voltages), transformers and
    the regulator -0.2 (the exported transformer's impedance is a Line of its name: counted as a
    transformer); the groups add up to the substation's gap."""
    row = base_case_gap(feeder_path("ieee13"))
    assert (row["dq_loads"], row["dq_lines"], row["dq_transformers"]) == pytest.approx((5.6, -36.7, -0.2), abs=0.1)
    assert abs(row["dq_rest"]) < 0.5 and abs(row["dp_rest"]) < 0.5  # what no element group holds
    assert row["q_conv_kvar"] - row["q_orig_kvar"] == pytest.approx(-31.5, abs=0.1)


def test_closing_table_refuses_an_unknown_feeder(capsys):
    from mpdopf_pyomo.feeders import main as feeders_main

    with pytest.raises(SystemExit) as exit_:
        feeders_main(["table", "nosuch"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("python -m mpdopf_pyomo.feeders: error: unknown feeder(s) nosuch (the table knows ieee13")


def test_three_phase_table_refuses_an_unknown_case_before_solving(tmp_path, capsys):
    """An unknown name is one error line, exit 2, and no row is solved (an empty selection used to fall
    back to the whole table)."""
    from mpdopf_pyomo.feeders import main as feeders_main

    with pytest.raises(SystemExit) as exit_:
        feeders_main(["three-phase", "nosuch", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "python -m mpdopf_pyomo.feeders: error: unknown case(s) nosuch")
    assert not (tmp_path / "out").exists()


def test_cases_show_gap_prints_the_split():
    out = CliRunner().invoke(main, ["cases", "show", str(feeder_path("ieee13")), "--gap"])
    assert out.exit_code == 0, out.output
    assert "base-case gap  the network alone" in out.output and "(1.82 %)" in out.output
    assert "dQ loads +5.6, lines+shunts -36.7, transformers -0.2" in out.output
    bad = CliRunner().invoke(main, ["cases", "show", "case69.m", "--gap"])
    assert bad.exit_code == 2 and "is not an OpenDSS feeder" in bad.output
