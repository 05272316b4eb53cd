"""The reduction to the balanced equivalent (network/reduce.py), .m networks as cases, and the published figures.

Hand-built Networks, one approximation each, check the conversion report entry by entry (count, load,
largest effect) and the per-unit numbers; the MATPOWER base cases are solved by our own optimisation
(exact formulation, no DERs: a power flow) and validated on the exported balanced network (check 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mpdopf_pyomo import network
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network import reduce as rd
from mpdopf_pyomo.network.export import write_opendss
from mpdopf_pyomo.network.model import Branch, Bus, Load, Network, Shunt, Source
from mpdopf_pyomo.network.reduce import balanced_network, reduce_balanced
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.validation import attach_validation

REPO = Path(__file__).resolve().parents[1]
KV = 12.47
KV_LN = KV / math.sqrt(3)
S_KVA = 1000.0
ZB = KV**2 * 1000 / S_KVA  # ohm, 12.47 kV base
PQ = (0.0, 0.0, 1.0, 0.0, 0.0, 1.0)
Z3 = np.full((3, 3), 0.1 + 0.4j) + np.eye(3) * (0.2 + 0.5j)  # self 0.3 + 0.9j, mutual 0.1 + 0.4j ohm


def _br(name, b1, b2, z=Z3, phases=(1, 2, 3), kind="line", y=None, tap=None, **kw) -> Branch:
    n = len(phases)
    return Branch(name, kind, b1, b2, phases, np.asarray(z, complex),
                  np.zeros((n, n), complex) if y is None else np.asarray(y, complex),
                  np.ones(n) if tap is None else np.asarray(tap, float), **kw)  # fmt: skip


def _net(branches, loads=(), shunts=(), buses=None) -> Network:
    """Source bus s (12.47 kV) and the buses the branches name (12.47 kV unless ``buses`` says otherwise)."""
    kv = {"s": KV_LN, **(buses or {})}
    names = ["s"] + [b for br in branches for b in (br.bus1, br.bus2)]
    bus = {b: Bus(b, kv.get(b, KV_LN), (1, 2, 3)) for b in dict.fromkeys(names)}
    return Network("hand", Path("hand.dss"), "opendss", Source("s", KV, 1.0), 60.0, bus, list(branches),
                   list(loads), list(shunts), [], {}, [])


def _only(report, what):
    assert [e.what for e in report.entries] == [what], report.format()
    return report.entries[0]


# ------------------------------------------------------------------------------------------------------
def test_balanced_three_phase_line_is_exact_with_charging():
    """A symmetric line: z1 = self - mutual; its charging B1 goes half to each end; nothing is reported."""
    c = np.full((3, 3), -1e-6j) + np.eye(3) * 4e-6j  # S: self 3e-6, mutual -1e-6 -> y1 = 4e-6 S
    tables, report = reduce_balanced(_net([_br("l1", "s", "a", y=c)], [Load("ld", "a", (1, 2, 3), "wye", 300, 100, PQ)]), S_KVA)
    assert report.entries == []
    br = tables.branches.loc["l1"]
    assert (br.r, br.x) == pytest.approx((0.2 / ZB, 0.5 / ZB), rel=1e-12)
    assert tables.buses.loc["s", "b_shunt"] == pytest.approx(2e-6 * ZB, rel=1e-12)
    assert tables.buses.loc["a", "b_shunt"] == pytest.approx(2e-6 * ZB, rel=1e-12)
    assert tables.buses.loc["a", "p_load"] == pytest.approx(0.3)
    assert list(tables.buses.index) == ["s", "a"]


def test_untransposed_line_reported_with_its_sequence_coupling():
    z = np.array([[0.35 + 1.0j, 0.15 + 0.5j, 0.15 + 0.42j],
                  [0.15 + 0.5j, 0.34 + 1.03j, 0.15 + 0.38j],
                  [0.15 + 0.42j, 0.15 + 0.38j, 0.345 + 1.02j]])  # fmt: skip
    tables, report = reduce_balanced(_net([_br("l1", "s", "a", z=z), _br("l2", "a", "b", z=z)],
                                          [Load("ld", "b", (1, 2, 3), "wye", 50.0, 10.0, PQ)]), S_KVA)
    e = _only(report, rd.UNTRANSPOSED)
    a = np.array([[1, 1, 1], [1, rd._A**2, rd._A], [1, rd._A, rd._A**2]])
    seq = np.linalg.inv(a) @ z @ a
    coupling = np.abs(seq - np.diag(np.diag(seq))).max() / abs(seq[1, 1])
    assert (e.count, e.load_kw) == (2, 50.0)  # two lines in series carry the same 50 kW once
    assert e.largest == f"line l1: sequence coupling {100 * coupling:.2f} % of |z1|"
    assert 0.01 < coupling < 0.2
    # z1 of a symmetric matrix: mean self minus mean mutual
    assert complex(tables.branches.at["l1", "r"], tables.branches.at["l1", "x"]) * ZB == pytest.approx(
        np.trace(z) / 3 - (z.sum() - np.trace(z)) / 6, rel=1e-12)


def _lateral_net(z_self=0.6 + 1.2j, kw=240.0, kvar=120.0) -> Network:
    return _net([_br("trunk", "s", "a"), _br("lat", "a", "b", z=[[z_self]], phases=(2,))],
                [Load("big", "a", (1, 2, 3), "wye", 600.0, 300.0, PQ), Load("one", "b", (2,), "wye", kw, kvar, PQ)])


def test_one_phase_lateral_equivalent_and_report():
    """z_eq = 3 z_self on the to-bus base; the report counts the lateral and its single-phase load."""
    tables, report = reduce_balanced(_lateral_net(), S_KVA)
    assert [e.what for e in report.entries] == [rd.LATERAL, rd.UNBAL_LOAD]
    lat, load = report.entries
    assert (lat.count, lat.load_kw) == (1, 240.0)
    assert lat.largest == ("lateral from bus a (lat, phase(s) b): 240.0 kW, 240.0 kW per phase in the feeder, "
                           "80.0 kW per phase in the equivalent")
    assert (load.count, load.load_kw) == (1, 240.0)
    assert load.largest == "load one at bus b: 240.0 kW + 120.0 kvar wye on phase(s) b -> 80.0 kW per phase"
    assert (tables.branches.at["lat", "r"], tables.branches.at["lat", "x"]) == pytest.approx((1.8 / ZB, 3.6 / ZB))


def _dss_phase_voltages(net: Network, folder: Path, bus: str) -> np.ndarray:
    network.compile_model(write_opendss(net, folder))
    network.solve_power_flow()
    dss = network.engine()
    dss.Circuit.SetActiveBus(bus)
    return np.asarray(dss.Bus.puVmagAngle())[0::2]


def test_one_phase_lateral_keeps_the_phase_voltage_drop(tmp_path):
    """OpenDSS on the real lateral and on the balanced equivalent: the drop along the lateral's phase is kept.

    With z_eq = z_self (no factor 3) the equivalent would show a third of that drop.
    """
    net = _lateral_net(z_self=1.5 + 3.0j)
    real_a = _dss_phase_voltages(net, tmp_path / "real_a", "a")[1]  # phase b at the lateral's head
    real_b = _dss_phase_voltages(net, tmp_path / "real_b", "b")[0]
    tables, _ = reduce_balanced(net, S_KVA)
    eq = balanced_network(tables.buses, tables.branches, "s", S_KVA)
    eq_a = _dss_phase_voltages(eq, tmp_path / "eq_a", "a").mean()
    eq_b = _dss_phase_voltages(eq, tmp_path / "eq_b", "b").mean()
    drop, drop_eq = real_a - real_b, eq_a - eq_b
    assert drop > 0.005  # a real drop along the lateral
    assert drop_eq == pytest.approx(drop, rel=0.02)


def test_delta_loads():
    """A one-phase delta load (across a-b) is spread and reported; a three-phase delta load is exact."""
    loads = [Load("d1", "a", (1, 2), "delta", 120.0, 60.0, PQ), Load("d3", "a", (1, 2, 3), "delta", 300.0, 90.0, PQ)]
    tables, report = reduce_balanced(_net([_br("l1", "s", "a")], loads), S_KVA)
    e = _only(report, rd.UNBAL_LOAD)
    assert (e.count, e.load_kw) == (1, 120.0)
    assert e.largest == "load d1 at bus a: 120.0 kW + 60.0 kvar delta on phase(s) ab -> 40.0 kW per phase"
    assert tables.buses.loc["a", ["p_load", "q_load"]].tolist() == pytest.approx([0.42, 0.15])


def test_transformer_with_tap_and_per_phase_regulator_taps():
    """12.47/4.16 kV transformer with tap 1.05, then a regulator bank with three taps -> mean, reported."""
    kv2 = 4.16 / math.sqrt(3)
    zb2 = 4.16**2 * 1000 / S_KVA
    z = np.eye(3) * (0.02 + 0.08j)  # ohm referred to 4.16 kV
    net = _net([_br("t1", "s", "a", z=z, kind="transformer", tap=[1.05] * 3, conn=("delta", "wye"), kva=2000.0),
                _br("reg", "a", "b", z=np.eye(3) * 1e-3, kind="regulator", tap=[1.0, 1.025, 1.05])],
               [Load("ld", "b", (1, 2, 3), "wye", 500.0, 200.0, PQ)], buses={"a": kv2, "b": kv2})
    tables, report = reduce_balanced(net, S_KVA)
    assert [e.what for e in report.entries] == [rd.REGULATOR, rd.TAPS], report.format()
    reg, e = report.entries
    assert (reg.count, reg.load_kw, reg.largest) == (1, 500.0, "regulator reg: tap 1.025 (+2.50 %)")
    assert e.count == 1 and e.largest == "regulator reg: taps 1 1.025 1.05 -> mean 1.025 (spread 0.05)"
    assert e.load_kw == 500.0  # the load below the regulator
    t = tables.branches
    assert t.loc["t1", ["r", "x", "tap"]].tolist() == pytest.approx([0.02 / zb2, 0.08 / zb2, 1.05])
    assert t.at["reg", "tap"] == pytest.approx(1.025)
    assert t.at["t1", "kind"] == "transformer"
    assert tables.buses["v_base_kv_ln"].tolist() == pytest.approx([KV_LN, kv2, kv2])


def test_switches_open_dropped_closed_kept():
    """Also: a series reactor is a branch like a line (nothing to report)."""
    net = _net([_br("l1", "s", "a", kind="reactor"), _br("l2", "a", "c"), _br("tie", "s", "c", kind="switch", normally_open=True),
                _br("sw", "c", "d", z=np.zeros((3, 3)), kind="switch")],
               [Load("ld", "d", (1, 2, 3), "wye", 100.0, 0.0, PQ)])
    tables, report = reduce_balanced(net, S_KVA)
    assert [e.what for e in report.entries] == [rd.OPEN, rd.SWITCH]
    opened, closed = report.entries
    assert (opened.count, opened.load_kw, opened.largest) == (1, 0.0, "dropped: tie (s-c)")
    assert (closed.count, closed.load_kw) == (1, 100.0)
    assert "tie" not in tables.branches.index
    assert tables.branches.at["l1", "kind"] == "reactor" and tables.branches.at["l1", "r"] == pytest.approx(0.2 / ZB)
    assert tables.branches.loc["sw", ["r", "x"]].tolist() == pytest.approx([1e-6 / ZB, 1e-6 / ZB])


def test_two_winding_service_transformer_is_a_lateral():
    """A one-phase 7.2 kV / 120 V two-winding transformer and its line are no longer collapsed onto the
    primary (their impedance and losses stay): an ordinary one-phase lateral, its loads spread."""
    net = _net([_br("l1", "s", "a"), _br("svc", "a", "x1", z=[[0.01 + 0.02j]], phases=(1,), kind="transformer"),
                _br("tpx", "x1", "x2", z=[[0.05 + 0.02j]], phases=(1,))],
               [Load("h1", "x1", (1,), "wye", 5.0, 1.0, PQ), Load("h2", "x2", (1,), "wye", 7.0, 2.0, PQ),
                Load("big", "a", (1, 2, 3), "wye", 100.0, 20.0, PQ)],
               buses={"x1": 0.12, "x2": 0.12})
    tables, report = reduce_balanced(net, S_KVA)
    assert report.get(rd.SERVICE) is None
    assert (report.get(rd.LATERAL).count, report.get(rd.LATERAL).load_kw) == (2, 12.0)
    assert list(tables.buses.index) == ["s", "a", "x1", "x2"]
    zb = 3 * 0.12**2 * 1000 / S_KVA
    assert tables.branches.loc["tpx", ["r", "x"]].tolist() == pytest.approx([3 * 0.05 / zb, 3 * 0.02 / zb])
    assert tables.buses.at["x2", "p_load"] == pytest.approx(0.007)


def test_zip_weighting_and_shunts():
    loads = [Load("z", "a", (1, 2, 3), "wye", 300.0, 100.0, (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)),
             Load("p", "a", (1, 2, 3), "wye", 100.0, 300.0, PQ)]
    shunts = [Shunt("c3", "a", (1, 2, 3), "wye", 600.0, KV_LN * 1.05), Shunt("c1", "a", (3,), "wye", 100.0, KV_LN)]
    tables, report = reduce_balanced(_net([_br("l1", "s", "a")], loads, shunts), S_KVA)
    e = _only(report, rd.UNBAL_SHUNT)
    assert e.count == 1 and e.largest == "shunt c1 at bus a: 100 kvar on 1 phase(s)"
    b = tables.buses.loc["a"]
    assert [b.p_zip_z, b.p_zip_i, b.p_zip_p] == pytest.approx([0.75, 0.0, 0.25])
    assert [b.q_zip_z, b.q_zip_i, b.q_zip_p] == pytest.approx([0.25, 0.0, 0.75])
    assert b.b_shunt == pytest.approx((600.0 / 1.05**2 + 100.0) / S_KVA)  # kvar at the bus base
    assert tables.buses.loc["s", ["p_zip_p", "q_zip_p"]].tolist() == [1.0, 1.0]  # no load: constant PQ


def test_every_unconvertible_element_at_once():
    net = _net([_br("l1", "s", "a"), _br("neg", "a", "b", z=np.eye(3) * (-0.1 + 0.2j)),
                _br("ghost", "a", "nowhere_bus", kind="line"), _br("t0", "a", "c", kind="transformer", tap=[0, 0, 0])],
               [Load("lost", "nowhere_bus", (1, 2, 3), "wye", 10.0, 0.0, PQ)],
               [Shunt("cnan", "a", (1, 2, 3), "wye", math.nan, KV_LN)])
    del net.buses["nowhere_bus"]
    with pytest.raises(CaseError) as exc:
        reduce_balanced(net, S_KVA)
    msg = str(exc.value)
    assert "5 element(s) cannot be converted" in msg
    assert "line neg: series impedance" in msg and "line ghost: bus nowhere_bus" in msg and "transformer t0: tap" in msg
    assert "load lost: bus nowhere_bus" in msg and "shunt cnan: kvar must be finite" in msg


# ------------------------------------------------------------------------------------------------------
def test_fraction_rule_reproduces_the_bundled_case33bw_placement(tmp_path):
    """pv.fraction = 0.2 and battery.fraction = 0.3 give exactly the lists case33bw.toml spells out."""
    listed = load_case("case33bw", 1)
    text = (REPO / "cases" / "case33bw.toml").read_text()
    text = text.replace('buses = ["7", "8", "24", "25", "30", "32"]', "fraction = 0.2")
    text = text.replace('buses = ["4", "7", "8", "14", "24", "25", "29", "30", "31", "32"]', "fraction = 0.3")
    text = text.replace('"../models/case33bw/case33bw.m"', f'"{REPO / "models" / "case33bw" / "case33bw.m"}"')
    (tmp_path / "c.toml").write_text(text)
    by_rule = load_case(tmp_path / "c.toml", 1)
    # largest P first (24, 25: 420 kW; 32: 210 kW), ties (7, 8, 30: 200 kW) in natural order
    assert list(by_rule.pvs.index) == ["24", "25", "32", "7", "8", "30"]
    assert sorted(by_rule.pvs.index) == sorted(listed.pvs.index)
    assert sorted(by_rule.batteries.index) == sorted(listed.batteries.index)
    both = text.replace("fraction = 0.2", 'fraction = 0.2\nbuses = ["7"]')
    (tmp_path / "both.toml").write_text(both)
    with pytest.raises(CaseError, match="pv.fraction: give pv.buses or pv.fraction, not both"):
        load_case(tmp_path / "both.toml", 1)


def _base_case(name: str):
    case = load_case(f"{name}.m", 1)  # a bare bundled network: no DERs, load_mult 1, flat price
    res = solve_case(case)
    attach_validation(case, res)
    return case, res


def test_published_base_cases_by_our_optimisation():
    """case33bw 202.68 kW and 0.9131 pu at bus 18; case69 224.96 kW and 0.9092 pu at bus 65; check (1)."""
    for name, loss, tol, bus, v in (("case33bw", 202.68, 0.01, "18", 0.9131), ("case69", 224.96, 0.05, "65", 0.9092)):
        case, res = _base_case(name)
        assert case.pvs.empty and case.batteries.empty and case.hours == 1
        assert res.summary["losses_kwh"] == pytest.approx(loss, abs=tol), name
        vv = res.voltages[1]
        assert vv.idxmin() == bus and vv[bus] == pytest.approx(v, abs=5e-5), name
        val = res.summary["validation"]
        assert val["passed"] and val["max_abs_dv_pu"] < 1e-6, name
        assert "balanced equivalent, exported" in val["network_model"]


@pytest.mark.parametrize("name", ["case33bw", "case69", "case141"])
def test_bundled_matpower_cases_central_and_admm_pass_check_1(name):
    case = load_case(name, 2)
    central = solve_case(case)
    attach_validation(case, central)
    assert central.summary["validation"]["passed"]
    admm = solve_case(case, "admm", n_areas=4, executor="serial")  # serial: no worker start-up in a test
    assert admm.summary["distributed"]["converged"]
    attach_validation(case, admm)
    assert admm.summary["validation"]["passed"]
    assert admm.summary["objective_usd"] == pytest.approx(central.summary["objective_usd"], rel=1e-3)


def test_several_voltage_levels_validate(tmp_path):
    """A MATPOWER network with a 12.47/4.16 kV tap transformer, line charging and a capacitor: check (1)."""
    from tests.test_matpower import TINY

    (tmp_path / "tiny.m").write_text(TINY)
    case = load_case(tmp_path / "tiny.m", 1)
    assert case.buses["v_base_kv_ln"].round(4).nunique() == 2 and case.branches["tap"].max() == pytest.approx(1.05)
    res = solve_case(case)
    attach_validation(case, res)
    assert res.summary["validation"]["passed"] and res.summary["validation"]["max_abs_dv_pu"] < 1e-6


def test_cli_bare_network_show_and_saved_report(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(main, ["cases", "show", str(REPO / "models" / "case33bw" / "case33bw.m")])
    assert shown.exit_code == 0, shown.output
    assert "conversion  1 approximation(s)" in shown.output and rd.OPEN in shown.output
    out = tmp_path / "run"
    solved = runner.invoke(main, ["solve", "--case", "case33bw.m", "--no-plots", "--out", str(out)])
    assert solved.exit_code == 0, solved.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["conversion_report"]["entries"][0] == {
        "what": rd.OPEN, "count": 5, "load_kw": 0.0,
        "largest": "dropped: 21-8 (21-8), 9-15 (9-15), 12-22 (12-22), 18-33 (18-33), 25-29 (25-29)"}
    assert (out / "conversion_report.csv").is_file()
    again = runner.invoke(main, ["validate", str(out), "--no-plots"])  # a bare-network run re-validates
    assert again.exit_code == 0 and "passed" in again.output, again.output


def test_case_base_voltage_must_be_the_source_s(tmp_path):
    text = (REPO / "cases" / "case69.toml").read_text().replace("v_kv_ll = 12.66", "v_kv_ll = 11.0")
    text = text.replace('"../models/case69/case69.m"', f'"{REPO / "models" / "case69" / "case69.m"}"')
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(CaseError, match=r"bases.v_kv_ll: 11 kV, but the source bus of .* has a base of 12.66 kV"):
        load_case(tmp_path / "c.toml", 1)


def test_zip_load_rated_off_the_bus_base():
    """A constant-Z load rated at 2.4 kV on a 2.5 kV-base bus draws (2.5/2.4)^2 of its kW at 1 pu."""
    ld = Load("z", "a", (1,), "wye", 100.0, 50.0, (1.0, 0.0, 0.0, 0.5, 0.0, 0.5))
    object.__setattr__(ld, "kv_rated", 2.4)  # the OpenDSS reader's field (model.py gains it with that reader)
    net = _net([_br("l1", "s", "a")], [ld], buses={"s": 2.5, "a": 2.5})
    tables, _ = reduce_balanced(net, S_KVA)
    r2 = (2.5 / 2.4) ** 2
    b = tables.buses.loc["a"]
    assert b.p_load * S_KVA == pytest.approx(100.0 * r2)
    assert b.q_load * S_KVA == pytest.approx(50.0 * (0.5 * r2 + 0.5))
    assert [b.q_zip_z, b.q_zip_p] == pytest.approx([0.5 * r2 / (0.5 * r2 + 0.5), 0.5 / (0.5 * r2 + 0.5)])


def test_fixed_generator_is_p_fixed_not_a_load(tmp_path):
    """A MATPOWER PQ generator (Pg, Qg) is the bus's fixed injection p_fixed/q_fixed (not a negative load,
    not scaled by load_mult), named in the report's notes; check (1) holds."""
    from tests.test_matpower import TINY

    text = TINY.replace("\t1\t0\t0\t10\t-10\t1.02\t10\t1\t10\t0;\n", "\t1\t0\t0\t10\t-10\t1.02\t10\t1\t10\t0;\n"
                        "\t3\t0.4\t0.1\t1\t-1\t1\t10\t1\t1\t0;\n")
    assert text != TINY
    (tmp_path / "gen.m").write_text(text)
    case = load_case(tmp_path / "gen.m", 1)
    assert case.buses.at["3", "p_load"] == pytest.approx(1.0)  # the load alone
    assert case.buses.loc["3", ["p_fixed", "q_fixed", "q_cap"]].tolist() == pytest.approx([0.4, 0.1, 0.0])
    assert any("1 generator(s): fixed injections p_fixed/q_fixed" in n and "400.0 kW + 100.0 kvar" in n
               for n in case.conversion.notes)
    assert all("generator" not in e.what for e in case.conversion.entries)
    res = solve_case(case)
    attach_validation(case, res)
    assert res.summary["validation"]["passed"]
