"""``--formulation 3ph-exact``: the OPF against OpenDSS node by node, per-phase power balance from the saved
tables, the balanced limit, the bundled IEEE 13, the registry, and bad use."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mpdopf_pyomo import formulations, pipeline
from mpdopf_pyomo.blocks.branch_flow import FORMULATIONS as RELATIONS
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.formulations.balanced import BALANCED

from test_three_phase_physics import FOUR_BUS, TWO_BUS


@pytest.mark.parametrize("text", [TWO_BUS, FOUR_BUS], ids=["two", "four"])
def test_small_unbalanced_circuits_match_opendss_node_by_node(tmp_path, text):
    """No DERs: the OPF's only solution is the power flow, which must be OpenDSS's on every node and phase
    (mutual coupling, a single-phase lateral, wye and delta ZIP loads, delta-wye and wye-wye transformers,
    a regulator bank) to 1e-6 pu, and the substation P per phase and in total."""
    path = tmp_path / "net.dss"
    path.write_text(text)
    res = pipeline.solve(path, hours=1, formulation="3ph-exact")
    v = res.summary["validation"]
    assert v["passed"], v
    assert v["max_abs_dv_pu"] < 1e-6
    assert v["max_abs_dangle_deg"] < 1e-4
    assert v["max_rel_dp_sub"] < 1e-6
    assert v["max_abs_dp_phase_kw"] < 1e-3 and v["max_abs_dq_phase_kvar"] < 1e-3
    assert v["nodes"] == len(res.extra_tables["node_voltages"]["node"].unique())
    # the plan is unbalanced: the phase powers at the source differ by more than 10 %
    ph = res.extra_tables["substation_phases"]["p_kw"]
    assert ph.max() > 1.1 * ph.min()


@pytest.fixture(scope="module")
def ieee13_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ieee13"
    result = CliRunner().invoke(main, ["solve", "--case", "ieee13", "--hours", "2", "--formulation", "3ph-exact",
                                       "--no-plots", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_ieee13_passes_node_by_node(ieee13_run):
    out, output = ieee13_run
    s = json.loads((out / "summary.json").read_text())
    v = s["validation"]
    assert s["formulation"] == "3ph-exact" and v["passed"]
    assert v["max_abs_dv_pu"] <= 1e-6 and v["max_rel_dp_sub"] <= 1e-4
    assert v["nodes"] == 41  # every phase of every bus of the official model
    assert "OpenDSS check" in output and "passed" in output
    # the plan uses its DERs: PV reactive power is a decision (IEEE 13's tight v_max binds)
    pv = pd.read_csv(out / "pv.csv")
    assert (pv["q_kvar"].abs() > 1.0).any()


def test_per_phase_power_balance_from_saved_tables(ieee13_run):
    """At every node and hour: power into the branches at that node + load + shunt - DER - source = 0,
    from node_voltages.csv, branch_phases.csv and substation_phases.csv alone; and the phase totals add up
    to substation.csv."""
    out, _ = ieee13_run
    nodes = pd.read_csv(out / "node_voltages.csv")
    br = pd.read_csv(out / "branch_phases.csv")
    sub = pd.read_csv(out / "substation_phases.csv")
    key = ["bus", "phase", "t"]
    into_branches = br.groupby(key)[["p_kw", "q_kvar"]].sum()
    n = nodes.set_index(key)
    bal_p = into_branches["p_kw"].reindex(n.index, fill_value=0.0) + n["p_load_kw"] + n["p_shunt_kw"] - n["p_der_kw"]
    bal_q = into_branches["q_kvar"].reindex(n.index, fill_value=0.0) + n["q_load_kvar"] + n["q_shunt_kvar"] \
        - n["q_der_kvar"]
    src = sub.set_index(key)
    bal_p = bal_p.sub(src["p_kw"].reindex(bal_p.index, fill_value=0.0))
    bal_q = bal_q.sub(src["q_kvar"].reindex(bal_q.index, fill_value=0.0))
    assert bal_p.abs().max() < 1e-6 * sub["p_kw"].abs().max()
    assert bal_q.abs().max() < 1e-6 * sub["q_kvar"].abs().max()
    total = pd.read_csv(out / "substation.csv").set_index("t")["p_kw"]
    assert np.allclose(sub.groupby("t")["p_kw"].sum().to_numpy(), total.to_numpy(), rtol=1e-9)
    # loads on their phases: IEEE 13's 646 is a delta load across phases b-c, so bus 646 has no phase a node
    assert set(nodes.loc[nodes["bus"] == "646", "phase"]) == {2, 3}


def test_saved_three_phase_folder_revalidates(ieee13_run):
    out, _ = ieee13_run
    result = CliRunner().invoke(main, ["validate", str(out), "--no-plots", "--strict"])
    assert result.exit_code == 0, result.output
    assert "passed" in result.output


BALANCED_FEEDER = """
Clear
New Circuit.bal basekv=12.47 pu=1.0 phases=3 bus1=s R1=1e-6 X1=1e-6 R0=1e-6 X0=1e-6
New Linecode.sym nphases=3 r1=0.2 x1=0.5 r0=0.2 x0=0.5 c1=10 c0=10 units=mi
New Line.a bus1=s bus2=b1 linecode=sym length=1 units=mi
New Line.b bus1=b1 bus2=b2 linecode=sym length=2 units=mi
New Line.c bus1=b1 bus2=b3 linecode=sym length=1.5 units=mi
New Load.l1 bus1=b1 phases=3 conn=wye kV=12.47 kW=900 kvar=300 model=1 vminpu=0.7 vmaxpu=1.3
New Load.l2 bus1=b2 phases=3 conn=wye kV=12.47 kW=1200 kvar=500 model=1 vminpu=0.7 vmaxpu=1.3
New Load.l3 bus1=b3 phases=3 conn=wye kV=12.47 kW=600 kvar=200 model=1 vminpu=0.7 vmaxpu=1.3
Set VoltageBases=[12.47]
CalcVoltageBases
"""

#: A 2-hour case on :data:`BALANCED_FEEDER` (saved as bal.dss beside it): a PV at b2, a battery at b3.
BALANCED_CASE = """
[case]
network = "bal.dss"
[bases]
s_kva = 3000.0
[settings]
v_sub_pu = 1.0
v_min_pu = 0.9
v_max_pu = 1.1
[pv]
buses = ["b2"]
p_rated_kw = {b2 = 600.0}
s_rated_kva = {b2 = 700.0}
[battery]
buses = ["b3"]
p_rated_kw = {b3 = 300.0}
s_rated_kva = {b3 = 350.0}
e_rated_kwh = {b3 = 900.0}
[profiles.daily]
load_mult = [0.8, 1.0]
pv_mult = [0.9, 0.3]
price_usd_per_kwh = [0.05, 0.2]
"""


def test_balanced_feeder_three_phase_objective_equals_balanced_exact(tmp_path):
    """On a perfectly balanced feeder (transposed lines: r1 = r0, x1 = x0, c1 = c0, so no coupling between
    phases; balanced wye loads; PV and battery on three-phase buses) both formulations describe the same
    physics: objectives within 1e-6 relative (solver tolerance 1e-8 and the 1e-6 ohm source impedance,
    which only the three-phase model holds: ~1e-9 pu of drop)."""
    (tmp_path / "bal.dss").write_text(BALANCED_FEEDER)
    (tmp_path / "case.toml").write_text(BALANCED_CASE)
    case = load_case(tmp_path / "case.toml", 2)
    three = pipeline.solve_case(case, formulation="3ph-exact")
    bal = pipeline.solve_case(case, formulation="exact")
    assert abs(three.summary["objective_usd"] - bal.summary["objective_usd"]) <= 1e-6 * abs(bal.summary["objective_usd"])
    # the same plan: battery discharge in the expensive hour, equal to 1e-4 kW
    d3 = three.battery["discharge_kw"].to_numpy() - three.battery["charge_kw"].to_numpy()
    db = bal.battery["discharge_kw"].to_numpy() - bal.battery["charge_kw"].to_numpy()
    assert np.abs(d3 - db).max() < 1e-3 and d3[1] > 1.0
    # every phase of a bus at the balanced model's voltage
    nodes = three.extra_tables["node_voltages"]
    for (bus, t), g in nodes.groupby(["bus", "t"]):
        assert np.abs(g["v_pu"].to_numpy() - bal.voltages.at[bus, t]).max() < 1e-6


def test_registry_is_what_the_cli_offers():
    assert list(BALANCED) == list(RELATIONS)
    assert list(formulations.FORMULATIONS) == ["exact", "socp", "linear", "3ph-exact", "3ph-linear"]
    assert formulations.get("3ph-exact").family == "three-phase"
    result = CliRunner().invoke(main, ["solve", "--help"])
    assert "3ph-exact" in result.output
    shown = CliRunner().invoke(main, ["cases", "show", "ieee13"])
    assert shown.exit_code == 0 and "3ph-exact   yes" in shown.output and "3ph-linear  yes" in shown.output


@pytest.mark.parametrize("args, what", [
    (["--case", "case33bw", "--formulation", "3ph-exact"], "MATPOWER case"),
])
def test_bad_use_is_one_line_exit_2(tmp_path, args, what):
    result = CliRunner().invoke(main, ["solve", *args, "--hours", "1", "--no-plots", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and what in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_study_case_three_phase_equals_balanced():
    """The study's own IEEE 123 model is balanced (symmetric line matrices, balanced loads, capacitors as
    fixed-kvar Generators): 3ph-exact and exact reach the same objective (measured: equal to 1e-7 relative)."""
    case = load_case("ieee123", 2)
    three = pipeline.solve_case(case, formulation="3ph-exact")
    bal = pipeline.solve_case(case, formulation="exact")
    assert abs(three.summary["objective_usd"] - bal.summary["objective_usd"]) <= 1e-6 * abs(bal.summary["objective_usd"])


def test_v_max_phase_pu_is_checked_and_used(tmp_path):
    """settings.v_max_phase_pu below v_min_pu is one error naming the key; a valid one is read."""
    from mpdopf_pyomo.errors import CaseError

    (tmp_path / "bal.dss").write_text(BALANCED_FEEDER)
    base = ('[case]\nnetwork = "bal.dss"\n[profiles.daily]\nload_mult = [1.0]\npv_mult = [0.0]\n'
            'price_usd_per_kwh = [0.1]\n[settings]\nv_sub_pu = 1.0\nv_min_pu = 0.9\nv_max_pu = 1.1\n')
    (tmp_path / "bad.toml").write_text(base + "v_max_phase_pu = 0.85\n")
    with pytest.raises(CaseError, match=r"settings\.v_max_phase_pu: 0\.85 must be above"):
        load_case(tmp_path / "bad.toml", 1)
    (tmp_path / "ok.toml").write_text(base + "v_max_phase_pu = 1.05\n")
    assert load_case(tmp_path / "ok.toml", 1).settings.v_max_phase_pu == 1.05
