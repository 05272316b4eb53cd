"""``--formulation 3ph-linear`` (LinDist3Flow): the hand-derived linear formula on a small unbalanced circuit,
the balanced limit (equal to the balanced ``linear``), and IEEE 13's reported gap against OpenDSS."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from mpdopf_pyomo import formulations, pipeline
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.formulations.three_phase import tables_of
from mpdopf_pyomo.network.opendss import read_opendss

from test_three_phase import BALANCED_CASE, BALANCED_FEEDER

#: source -> 3-phase untransposed line (mutual coupling, no charging) -> b -> single-phase lateral (phase b)
#: -> c; constant-power wye loads on a and c of b, on c.2, and a delta load across b.1-b.2: every withdrawal
#: is constant, so LinDist3Flow's answer is the formula itself.
CIRCUIT = """
Clear
New Circuit.lin basekv=12.47 pu=1.02 phases=3 bus1=src MVAsc3=2000 MVAsc1=1800
New Line.l1 bus1=src bus2=b phases=3 length=1 units=mi
~ rmatrix=[0.3465 | 0.1560 0.3375 | 0.1580 0.1535 0.3414] xmatrix=[1.0179 | 0.5017 1.0478 | 0.4236 0.3849 1.0348]
~ cmatrix=[0 | 0 0 | 0 0 0]
New Line.lat bus1=b.2 bus2=c.2 phases=1 length=0.5 units=mi rmatrix=[0.6] xmatrix=[0.9] cmatrix=[0]
New Load.la bus1=b.1 phases=1 conn=wye kV=7.2 kW=400 kvar=150 model=1 vminpu=0.7 vmaxpu=1.3
New Load.lc bus1=b.3 phases=1 conn=wye kV=7.2 kW=250 kvar=80 model=1 vminpu=0.7 vmaxpu=1.3
New Load.l2 bus1=c.2 phases=1 conn=wye kV=7.2 kW=300 kvar=100 model=1 vminpu=0.7 vmaxpu=1.3
New Load.ld bus1=b.1.2 phases=1 conn=delta kV=12.47 kW=200 kvar=90 model=1 vminpu=0.7 vmaxpu=1.3
Set VoltageBases=[12.47]
CalcVoltageBases
"""


def test_voltages_are_the_hand_derived_lindist3flow(tmp_path):
    """v_j = v_i - M_P P - M_Q Q with M_P = 2 Re(G * conj Z), M_Q = -2 Im(G * conj Z), G the 120-degree matrix,
    flows the downstream loads (a delta load split onto its nodes at balanced angles): computed here with
    numpy from the line's ohmic Z matrices; the model's voltages agree to 1e-7 pu (solver tolerance)."""
    path = tmp_path / "lin.dss"
    path.write_text(CIRCUIT)
    res = pipeline.solve(path, hours=1, formulation="3ph-linear")
    case = load_case(path, 1)
    sb_kva = case.bases.s_kva
    net = read_opendss(path)
    tables = tables_of(case)
    zb = (12.47e3 / math.sqrt(3)) ** 2 / (sb_kva * 1e3)
    z1 = np.asarray(next(b for b in net.branches if b.name == "l1").z_ohm, complex) / zb
    z2 = np.asarray(next(b for b in net.branches if b.name == "lat").z_ohm, complex) / zb
    th = np.radians([0.0, -120.0, 120.0])
    g = np.exp(1j * (th[:, None] - th[None, :]))
    s = {("b", 1): (400 + 150j), ("b", 3): (250 + 80j), ("c", 2): (300 + 100j)}
    s = {k: x / sb_kva for k, x in s.items()}
    sd = (200 + 90j) / sb_kva  # delta b.1-b.2: S V_a / V_ab at a, -S V_b / V_ab at b
    ra, rb = np.exp(1j * th[0]), np.exp(1j * th[1])
    s_b = np.array([s["b", 1] + sd * ra / (ra - rb), -sd * rb / (ra - rb), s["b", 3]])
    s_lat = s["c", 2]
    s_l1 = s_b + np.array([0.0, s_lat, 0.0])  # losses dropped: flows are sums of downstream withdrawals

    def drop(z, gm, flow):
        c = gm * np.conj(z)
        return (2 * c.real) @ flow.real + (-2 * c.imag) @ flow.imag

    # the source: |E|^2 behind its (small) Thevenin impedance, the same formula
    v_src = np.abs(tables.source_e) ** 2 - drop(tables.source_z, g, s_l1)
    v_b = v_src - drop(z1, g, s_l1)
    v_c = v_b[1] - drop(z2, np.ones((1, 1)), np.array([s_lat]))[0]
    expected = {f"src.{k + 1}": v_src[k] for k in range(3)} | {f"b.{k + 1}": v_b[k] for k in range(3)} | {"c.2": v_c}
    nodes = res.extra_tables["node_voltages"].set_index("node")["v_pu"]
    for node, vv in expected.items():
        assert abs(nodes[node] - math.sqrt(vv)) < 1e-7, (node, nodes[node], math.sqrt(vv))
    assert nodes["b.1"] < nodes["b.3"] - 1e-3  # unbalanced, and the drop is large enough to mean something
    # losses are dropped: the substation delivers exactly the loads
    total = sum(s.values()) + sd
    assert abs(res.substation["p_kw"].iloc[0] - total.real * sb_kva) < 1e-4 * sb_kva
    v = res.summary["validation"]
    assert v["approximation_gap"] and v["passed"] and 1e-5 < v["max_abs_dv_pu"] < 2e-2


def test_balanced_feeder_equals_balanced_linear(tmp_path):
    """On a perfectly balanced feeder (no mutual coupling, balanced wye loads, three-phase PV and battery)
    LinDist3Flow is three copies of LinDistFlow on the positive-sequence impedance: the objectives agree to
    1e-6 relative (the solvers' 1e-8 tolerance; the 1e-6 ohm source impedance only the three-phase model
    holds moves the drop by ~1e-9 pu), the battery plan to 1e-3 kW and, without DERs, every node voltage to
    1e-6 pu."""
    (tmp_path / "bal.dss").write_text(BALANCED_FEEDER)
    (tmp_path / "case.toml").write_text(BALANCED_CASE)
    case = load_case(tmp_path / "case.toml", 2)
    three = pipeline.solve_case(case, formulation="3ph-linear")
    bal = pipeline.solve_case(case, formulation="linear")
    assert abs(three.summary["objective_usd"] - bal.summary["objective_usd"]) <= 1e-6 * abs(bal.summary["objective_usd"])
    d3 = three.battery["discharge_kw"].to_numpy() - three.battery["charge_kw"].to_numpy()
    db = bal.battery["discharge_kw"].to_numpy() - bal.battery["charge_kw"].to_numpy()
    assert np.abs(d3 - db).max() < 1e-3 and d3[1] > 1.0
    # voltages: with losses dropped the PVs' reactive power is free (a degenerate LP), so the two plans'
    # voltages need not agree; without DERs the plan is unique and every phase is at the balanced voltage
    text = (tmp_path / "case.toml").read_text()
    (tmp_path / "plain.toml").write_text(text[:text.index("[pv]")] + text[text.index("[profiles.daily]"):])
    plain = load_case(tmp_path / "plain.toml", 2)
    three = pipeline.solve_case(plain, formulation="3ph-linear")
    bal = pipeline.solve_case(plain, formulation="linear")
    nodes = three.extra_tables["node_voltages"]
    for (bus, t), grp in nodes.groupby(["bus", "t"]):
        assert np.abs(grp["v_pu"].to_numpy() - bal.voltages.at[bus, t]).max() < 1e-6
    assert bal.voltages.min().min() < 0.99  # the drop is real


def test_ieee13_runs_and_reports_its_gap(tmp_path):
    """IEEE 13, 1 h: the gap against OpenDSS is reported, never failed; measured 6.6e-3 pu (node 675.1,
    losses dropped), so 1e-2 pu is the bound; the plan's energy is within 5 % of OpenDSS's."""
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["solve", "--case", "ieee13", "--hours", "1", "--formulation", "3ph-linear",
                                       "--no-plots", "--out", str(out)])
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    v = s["validation"]
    assert s["formulation"] == "3ph-linear" and v["approximation_gap"] and v["passed"]
    assert not v["within_tolerance"]
    assert 1e-4 < v["max_abs_dv_pu"] < 1e-2 and v["max_rel_dp_sub"] < 0.05
    assert v["nodes"] == 41
    assert "approximation's gap" in result.output and "MISMATCH" not in result.output
    assert s["losses_kwh"] == 0.0
    assert formulations.get("3ph-linear").family == "three-phase"


@pytest.mark.parametrize("args, what", [
    (["--case", "case33bw", "--formulation", "3ph-linear"], "MATPOWER case"),
    (["--case", "ieee13", "--formulation", "3ph-linear", "--algorithm", "admm"], "no distributed solve"),
])
def test_bad_use_is_one_line_exit_2(tmp_path, args, what):
    result = CliRunner().invoke(main, ["solve", *args, "--hours", "1", "--no-plots", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and what in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_a_loop_is_refused_in_one_line(tmp_path):
    """LinDist3Flow needs a tree: a closed loop is one line, exit 2, nothing written (the case loader refuses
    it first; :func:`~mpdopf_pyomo.blocks.three_phase.lindist3flow.linear_branches` checks again)."""
    (tmp_path / "loop.dss").write_text(BALANCED_FEEDER.replace(
        "Set VoltageBases", "New Line.loop bus1=b2 bus2=b3 linecode=sym length=1 units=mi\nSet VoltageBases"))
    result = CliRunner().invoke(main, ["solve", "--case", str(tmp_path / "loop.dss"), "--hours", "1",
                                       "--formulation", "3ph-linear", "--no-plots", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "radial" in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_transformer_voltage_maps(tmp_path):
    """The no-load map on squared voltages: a bank of single-phase regulators is its squared winding-2 taps;
    a delta-wye unit at balanced primary magnitudes equals |T V_1|^2 (T the open-circuit map of its
    primitive admittance) to 1e-9, and at 3 % unbalanced magnitudes within 1e-3 (the (v_l + v_m)/2 step)."""
    from test_three_phase_physics import FOUR_BUS

    from mpdopf_pyomo.blocks.three_phase.lindist3flow import gamma, voltage_map
    from mpdopf_pyomo.network.phases import phase_tables

    path = tmp_path / "four.dss"
    path.write_text(FOUR_BUS)
    tables = phase_tables(read_opendss(path), 1000.0)
    names = list(tables.branches["name"])
    k = names.index("rega")
    at = tables.branch_nodes[k]  # the bank of the two single-phase units rega (tap 1.05) and regc (0.9875)
    c = voltage_map(tables.branch_y[k], tables.node_phase[at[:len(at) // 2]])
    assert np.allclose(c, np.diag([1.05**2, 0.9875**2]), rtol=1e-5, atol=1e-8)  # taps on winding 2; ppm_antifloat ~1e-6
    k = names.index("t1")
    at = tables.branch_nodes[k]
    y = tables.branch_y[k]
    c = voltage_map(y, tables.node_phase[at[:3]])
    t = -np.linalg.pinv(y[3:, 3:], rcond=1e-4) @ y[3:, :3]
    ang = np.exp(1j * np.radians([0.0, -120.0, 120.0]))
    for mags in ([1.0, 1.0, 1.0], [1.03, 0.97, 1.0]):
        v1 = np.array(mags) * ang
        exact = np.abs(t @ v1) ** 2
        tol = 1e-9 if mags[0] == mags[1] else 1e-3
        assert np.abs(c @ np.abs(v1) ** 2 - exact).max() < tol
    # a delta primary puts phases k and k-1 on secondary phase k, half each (|V_ab|^2 ~ 1.5 (v_a + v_b) / 3)
    assert np.allclose(c, [[0.5, 0, 0.5], [0.5, 0.5, 0], [0, 0.5, 0.5]], atol=1e-5)
