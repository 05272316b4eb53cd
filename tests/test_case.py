"""Case loading: the bundled IEEE 123 cases, horizons, per-unit tables, and every class of bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mpdopf_pyomo.case import SCHEMA, describe_case, list_cases, load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.errors import CaseError

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "models" / "ieee123" / "master.dss"
STUDY_5H = {
    "clock_hour": [9, 10, 11, 12, 13],
    "load_mult": [0.75, 0.777, 0.787, 0.796, 0.782],
    "pv_mult": [0.5, 0.8, 0.9, 1.0, 1.0],
    "price": [0.048204, 0.048204, 0.30181, 0.30181, 0.048204],
}


@pytest.fixture(scope="module")
def ieee123():
    return load_case("ieee123")


# --------------------------------------------------------------------------------------------- bundled


def test_list_cases():
    names = [n for n, _ in list_cases()]
    assert names == ["case141", "case33bw", "case69", "ieee123", "ieee123-opendss", "ieee123-published", "ieee13",
                     "ieee34"]
    assert all(desc for _, desc in list_cases())


def test_ieee123_matches_the_study(ieee123):
    c = ieee123
    assert (c.name, c.root, c.hours) == ("ieee123", "150", 5)
    assert len(c.buses) == 128 and len(c.branches) == 127
    loads = c.buses[c.buses["p_load"] > 0]
    assert len(loads) == 85
    # per-unit on 1000 kVA per phase: pu x 1000 = per-phase kW
    assert loads["p_load"].sum() * 1000 == pytest.approx(1163.197, abs=1e-9)
    assert loads["q_load"].sum() * 1000 == pytest.approx(640.012, abs=1e-9)
    assert c.buses["q_cap"][c.buses["q_cap"] > 0].mul(1000).to_dict() == pytest.approx(
        {"83": 200.0, "88": 50.0, "90": 50.0, "92": 50.0}
    )
    assert len(c.pvs) == 17 and len(c.batteries) == 26
    assert c.n_areas == 4
    assert c.buses.groupby("area").size().to_dict() == {1: 39, 2: 17, 3: 19, 4: 53}
    assert c.bases.z_ohm == pytest.approx(5.7685, abs=1e-4)
    assert c.branches.at["l115", "r"] == pytest.approx(0.0232 / c.bases.z_ohm)
    assert c.branches.at["l115", "x"] == pytest.approx(0.0475 / c.bases.z_ohm)
    assert (c.buses[["x", "y"]].notna()).all().all()
    assert c.buses.loc["150", ["x", "y"]].tolist() == [100.0, 1500.0]


def test_ieee123_branches_are_breadth_first_from_the_root(ieee123):
    seen = {ieee123.root}
    for frm, to in zip(ieee123.branches["from_bus"], ieee123.branches["to_bus"]):
        assert frm in seen and to not in seen
        seen.add(to)
    assert list(ieee123.buses.index) == [ieee123.root, *ieee123.branches["to_bus"]]


def test_ieee123_ratings_follow_table_one(ieee123):
    c = ieee123
    p_l = c.buses["p_load"]
    assert c.pvs["p_rated"].to_numpy() == pytest.approx(0.33 * p_l[c.pvs.index].to_numpy())
    assert c.pvs["s_rated"].to_numpy() == pytest.approx(1.2 * c.pvs["p_rated"].to_numpy())
    b = c.batteries
    assert b["p_rated"].to_numpy() == pytest.approx(0.33 * p_l[b.index].to_numpy())
    assert b["e_rated"].to_numpy() == pytest.approx(4.0 * b["p_rated"].to_numpy())
    assert (b["soc0"] == 0.625).all() and (b["soc_min"] == 0.30).all() and (b["soc_max"] == 0.95).all()
    s = c.settings
    assert (s.v_min_pu, s.v_max_pu, s.v_sub_pu, s.dt_h, s.alpha_usd_per_kwh) == (0.95, 1.05, 1.03, 1.0, 0.001)
    assert (s.inverter_limit, s.terminal_soc, s.reverse_power) == ("circle", "hard", True)


def test_published_case_uses_the_authors_settings():
    c = load_case("ieee123-published")
    # The study's code data: Pmpp 4.6655 kW at a 13.33 kW bus; 76.99 kW PV, 131.82 kW batteries per phase.
    assert c.pvs.at["1", "p_rated"] * 1000 == pytest.approx(4.6655)
    assert c.pvs["p_rated"].sum() * 1000 == pytest.approx(76.99, abs=0.01)
    assert c.batteries["p_rated"].sum() * 1000 == pytest.approx(131.82, abs=0.01)
    assert c.batteries.at["48", "e_rated"] * 1000 == pytest.approx(98.0)
    s = c.settings
    assert (s.inverter_limit, s.terminal_soc, s.reverse_power) == ("box", "hard", False)
    ten = load_case("ieee123-published", 10).profile
    assert ten["clock_hour"].tolist() == list(range(7, 17))
    assert ten["price"].tolist() == [0.048204] * 4 + [0.30181] * 2 + [0.048204] * 2 + [0.30181] * 2


@pytest.mark.parametrize("name", ["ieee123", "ieee123-published"])
def test_five_hours_is_the_study_forecast(name):
    p = load_case(name, 5).profile
    assert list(p.index) == [1, 2, 3, 4, 5]
    for col, vals in STUDY_5H.items():
        assert p[col].tolist() == vals


@pytest.mark.parametrize("n", range(1, 25))
def test_every_horizon_from_1_to_24(ieee123, n):
    p = load_case("ieee123", n).profile
    assert len(p) == n and list(p.index) == list(range(1, n + 1))
    if n != 5:
        start = (24 - n) // 2
        assert p["clock_hour"].tolist() == list(range(start, start + n))
    assert (p["load_mult"] > 0).all() and (p["pv_mult"] >= 0).all() and (p["price"] > 0).all()


def test_ten_hours_of_the_table_one_case_uses_the_daily_profile():
    p = load_case("ieee123", 10).profile
    assert p["load_mult"].tolist() == [0.668, 0.705, 0.75, 0.777, 0.787, 0.796, 0.782, 0.783, 0.789, 0.826]
    assert p["price"].iloc[1] == 0.04820404  # raw hourly price at clock hour 8 (its minimum)


def test_describe_and_cli_show():
    text = describe_case(load_case("ieee123"))
    for needle in ("buses       128", "branches    127", "85: 3489.591 kW + 1920.036 kvar", "1163.197 kW + 640.012 kvar per phase",
                   "PVs         17", "batteries   26", "area 4: 53 buses"):
        assert needle in text
    result = CliRunner().invoke(main, ["cases", "show", "ieee123"])
    assert result.exit_code == 0, result.output
    assert "buses       128" in result.output
    result = CliRunner().invoke(main, ["cases"])
    assert result.exit_code == 0 and any(line.startswith("ieee123 ") for line in result.output.splitlines())


def test_a_users_case_by_path(tmp_path):
    """A copy of the bundled case elsewhere, with the network path relative to the new file."""
    text = (REPO / "cases" / "ieee123.toml").read_text()
    (tmp_path / "net").mkdir()
    sub = tmp_path / "mine"
    sub.mkdir()
    text = text.replace('network = "../models/ieee123/master.dss"', f'network = "{Path("..", "net", "master.dss")}"')
    text = text.replace('name = "ieee123"', 'name = "mine"')
    for f in (REPO / "models" / "ieee123").glob("*.dss"):
        (tmp_path / "net" / f.name).write_text(f.read_text())
    (sub / "case.toml").write_text(text)
    c = load_case(sub / "case.toml", 3)
    assert c.name == "mine" and c.hours == 3 and len(c.buses) == 128
    assert c.network_model == (tmp_path / "net" / "master.dss").resolve()
    result = CliRunner().invoke(main, ["cases", "show", str(sub / "case.toml")])
    assert result.exit_code == 0 and "case mine" in result.output


def test_docs_describe_every_key():
    doc = (REPO / "docs" / "case-format.md").read_text()
    for key in SCHEMA:
        assert f"`{key.name}`" in doc and f"[{key.section}]" in doc, key.path


# ------------------------------------------------------------------------------------------- bad input

BASE = f"""
[case]
description = "minimal test case"
network = "{MASTER}"
default_hours = 2

[bases]
v_kv_ll = 4.16
s_kva = 3000.0

[settings]
v_min_pu = 0.95
v_max_pu = 1.05

[pv]
buses = ["1", "7"]

[battery]
buses = ["1", "5"]
soc_min = 0.3
soc_max = 0.95

[areas]
cut_branches = [["13", "152"]]

[profiles.daily]
load_mult = [0.7, 0.8, 0.9]
pv_mult = [0.0, 0.5, 1.0]
price_usd_per_kwh = [0.05, 0.1, 0.2]
"""


def _write(tmp_path: Path, text: str, name: str = "case.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _expect(tmp_path, text, key, what, hours=None):
    path = _write(tmp_path, text)
    with pytest.raises(CaseError) as info:
        load_case(path, hours)
    msg = str(info.value)
    assert re.match(rf"{re.escape(str(path))}: {key}: ", msg), msg  # key is a regex
    assert re.search(what, msg), msg
    assert "\n" not in msg
    return msg


def test_base_test_case_loads(tmp_path):
    c = load_case(_write(tmp_path, BASE))
    assert c.name == "case" and c.hours == 2 and c.n_areas == 2
    assert c.profile["clock_hour"].tolist() == [0, 1]


def test_unknown_bus_in_a_der_list(tmp_path):
    _expect(tmp_path, BASE.replace('buses = ["1", "7"]', 'buses = ["1", "777"]'), "pv.buses", "unknown bus '777'")


def test_der_at_the_substation(tmp_path):
    _expect(tmp_path, BASE.replace('buses = ["1", "5"]', 'buses = ["150"]'), "battery.buses", "substation")


def test_duplicate_der_bus(tmp_path):
    _expect(tmp_path, BASE.replace('buses = ["1", "7"]', 'buses = ["1", "7", "1"]'), "pv.buses", "duplicate bus '1'")


def test_duplicate_cut_branch(tmp_path):
    text = BASE.replace('cut_branches = [["13", "152"]]', 'cut_branches = [["13", "152"], "sw2"]')
    _expect(tmp_path, text, r"areas.cut_branches\[1\]", "duplicate cut branch 'sw2'")


def test_unknown_cut_branch(tmp_path):
    text = BASE.replace('cut_branches = [["13", "152"]]', 'cut_branches = [["13", "99"]]')
    _expect(tmp_path, text, r"areas.cut_branches\[0\]", "no branch between buses '13' and '99'")


@pytest.mark.parametrize(
    "edit,key,what",
    [
        (("[pv]", "[pv]\np_factor = 0.0"), "pv.p_factor", "must be positive"),
        (("[battery]", "[battery]\np_factor = -0.33"), "battery.p_factor", "must be positive"),
        (("[pv]", "[pv]\np_rated_kw = { \"7\" = -5.0 }"), "pv.p_rated_kw", "bus '7': rating must be positive"),
        (("[battery]", "[battery]\ne_rated_kwh = { \"5\" = 0 }"), "battery.e_rated_kwh", "rating must be positive"),
        (('buses = ["1", "7"]', 'buses = ["1", "3"]'), "pv.buses", "bus '3' has no load, so p_factor gives a zero rating"),
        (("[pv]", "[pv]\ns_factor = 0.9"), "pv.s_factor", "must be >= 1"),
        (("[battery]", "[battery]\ne_hours = 0"), "battery.e_hours", "must be positive"),
        (("[pv]", "[pv]\np_rated_kw = { \"150\" = 5.0 }"), "pv.p_rated_kw", "bus '150' is not in pv.buses"),
    ],
)
def test_negative_or_zero_ratings(tmp_path, edit, key, what):
    _expect(tmp_path, BASE.replace(*edit, 1), key, what)


def test_soc_min_above_soc_max(tmp_path):
    _expect(tmp_path, BASE.replace("soc_min = 0.3", "soc_min = 0.96"), "battery.soc_min", "above soc_max")


def test_soc0_outside_range(tmp_path):
    _expect(tmp_path, BASE.replace("soc_min = 0.3", "soc_min = 0.3\nsoc0 = 0.2"), "battery.soc0", "outside")


@pytest.mark.parametrize("vmin", ["1.05", "1.10"])
def test_vmin_not_below_vmax(tmp_path, vmin):
    _expect(tmp_path, BASE.replace("v_min_pu = 0.95", f"v_min_pu = {vmin}"), "settings.v_min_pu", "must be below Vmax")


def test_bad_choice(tmp_path):
    _expect(tmp_path, BASE.replace("[settings]", '[settings]\ninverter_limit = "square"'), "settings.inverter_limit",
            "expected 'circle' or 'box'")


def test_profile_shorter_than_the_horizon(tmp_path):
    _expect(tmp_path, BASE, "profiles.daily", "3 periods, shorter than the horizon of 4", hours=4)
    _expect(tmp_path, BASE.replace("default_hours = 2", "default_hours = 5"), "profiles.daily", "shorter")


def test_profile_columns_of_different_length(tmp_path):
    _expect(tmp_path, BASE.replace("pv_mult = [0.0, 0.5, 1.0]", "pv_mult = [0.0, 0.5]"), "profiles.daily.pv_mult",
            "2 values, but load_mult has 3")


def test_override_of_the_wrong_length(tmp_path):
    text = BASE + '\n[profiles.horizon.2]\nload_mult = [1, 1]\npv_mult = [1]\nprice_usd_per_kwh = [1, 1]\n'
    _expect(tmp_path, text, "profiles.horizon.2.pv_mult", "1 values for a 2-period horizon")


def test_horizon_override_is_used(tmp_path):
    text = BASE + '\n[profiles.horizon.4]\nload_mult = [1, 1, 1, 1]\npv_mult = [0, 0, 0, 0]\nprice_usd_per_kwh = [1, 2, 3, 4]\n'
    p = load_case(_write(tmp_path, text), 4).profile
    assert p["price"].tolist() == [1, 2, 3, 4] and p["clock_hour"].tolist() == [0, 1, 2, 3]


def test_zero_hours(tmp_path):
    _expect(tmp_path, BASE, "hours", "at least 1", hours=0)


def _model(tmp_path: Path, extra: str) -> Path:
    """A network model = the IEEE 123 model plus ``extra`` OpenDSS lines."""
    m = tmp_path / "model.dss"
    m.write_text(f"Redirect [{MASTER}]\n{extra}\n")
    return m


def test_meshed_network(tmp_path):
    m = _model(tmp_path, "New Line.tie phases=3 bus1=54 bus2=94 r1=0.1 x1=0.1 r0=0.1 x0=0.1 c1=0 c0=0")
    msg = _expect(tmp_path, BASE.replace(str(MASTER), str(m)), "case.network", "meshed network: line .* closes a loop")
    assert str(m) in msg


def test_disconnected_network(tmp_path):
    """An island cannot be converted: still an error, naming the buses the source does not reach."""
    m = _model(tmp_path, "New Line.island phases=3 bus1=998 bus2=999 r1=0.1 x1=0.1 r0=0.1 x0=0.1 c1=0 c0=0")
    _expect(tmp_path, BASE.replace(str(MASTER), str(m)), "case.network", r"disconnected network: 2 bus\(es\).*998, 999")


def _converted(tmp_path: Path, extra: str):
    """The test case on the IEEE 123 model plus ``extra`` OpenDSS lines, loaded (no warnings)."""
    return load_case(_write(tmp_path, BASE.replace(str(MASTER), str(_model(tmp_path, extra)))), warn=None)


def test_a_capacitor_is_a_shunt_susceptance(tmp_path):
    """A three-phase Capacitor (once refused) is exact in the balanced model: b = kvar / s_kva at its bus."""
    c = _converted(tmp_path, "New Capacitor.c1 bus1=83 phases=3 kvar=600 kV=4.16")
    assert c.buses.at["83", "b_shunt"] == pytest.approx(600 / c.bases.s_kva, rel=1e-12)
    assert (c.buses.drop(index="83")["b_shunt"] == 0).all()
    assert c.conversion.entries == [] and "exact: nothing approximated" in c.conversion.format()


def test_line_charging_is_half_at_each_end(tmp_path):
    """Line charging (once refused): half of the line's positive-sequence susceptance at each end, exact."""
    c = _converted(tmp_path, "Edit Line.l1 c1=3.4 c0=1.6 length=2 units=kft")
    b_pu = 2 * math.pi * 60 * 3.4e-9 * 2 * c.bases.z_ohm  # c1 nF/kft x 2 kft, on the 4.16 kV base
    assert c.buses.loc[["1", "2"], "b_shunt"].tolist() == pytest.approx([b_pu / 2, b_pu / 2], rel=1e-9)
    assert c.buses["b_shunt"].abs().sum() == pytest.approx(b_pu, rel=1e-9)
    assert c.conversion.entries == []


def test_a_single_phase_load_is_spread_and_reported(tmp_path):
    """A one-phase load (once refused) keeps its total P and Q at its bus; the report lists it."""
    base = _converted(tmp_path, "")
    c = _converted(tmp_path, "New Load.x bus1=1.1 phases=1 kV=2.4 kW=10 kvar=5 model=1")
    s = c.bases.s_kva
    assert (c.buses.at["1", "p_load"] - base.buses.at["1", "p_load"]) * s == pytest.approx(10.0)
    assert (c.buses.at["1", "q_load"] - base.buses.at["1", "q_load"]) * s == pytest.approx(5.0)
    (entry,) = c.conversion.entries
    assert entry.what.startswith("one- and two-phase loads") and entry.count == 1
    assert entry.load_kw == pytest.approx(10.0) and "load x at bus 1" in entry.largest


def test_a_second_voltage_level_on_a_line_is_relabelled_and_reported(tmp_path):
    """A bus labelled with another base but reached through Lines only (once "one voltage level only") takes
    its line's base: only a transformer changes the voltage level. The report names it."""
    from mpdopf_pyomo.network.reduce import REBASED

    c = _converted(tmp_path, "SetkVBase bus=7 kVLL=12.47")
    assert c.buses.at["7", "v_base_kv_ln"] == pytest.approx(4.16 / 3**0.5, rel=1e-9)
    assert c.buses["v_base_kv_ln"].nunique() == 1
    (entry,) = c.conversion.entries
    assert entry.what == REBASED and entry.count == 1 and entry.largest.startswith("bus 7: 12.47 kV -> 4.16 kV")
    plain = _converted(tmp_path, "")
    assert c.branches[["r", "x"]].equals(plain.branches[["r", "x"]])


def test_open_tie_is_absent(tmp_path):
    m = _model(tmp_path, "New Line.sw7 phases=3 bus1=151 bus2=300 r1=0.001 x1=0 r0=0.001 x0=0 c1=0 c0=0\nOpen Line.sw7 term=1")
    c = load_case(_write(tmp_path, BASE.replace(str(MASTER), str(m))))
    assert len(c.branches) == 127 and "sw7" not in c.branches.index


def test_missing_model_file(tmp_path):
    _expect(tmp_path, BASE.replace(str(MASTER), "no/such/master.dss"), "case.network", "network model file not found")


def test_model_that_does_not_compile(tmp_path):
    m = _model(tmp_path, "New Line.bad bus1=1 bus2=2 wrongprop=1")
    _expect(tmp_path, BASE.replace(str(MASTER), str(m)), "case.network", "OpenDSS could not compile.*wrongprop")


def test_malformed_toml(tmp_path):
    path = _write(tmp_path, BASE.replace("[settings]", "[settings\n"))
    with pytest.raises(CaseError, match=rf"^{re.escape(str(path))}: malformed TOML: .*line"):
        load_case(path)


@pytest.mark.parametrize(
    "edit,key",
    [
        (("[pv]", "[pv]\nratingfactor = 0.3"), "pv.ratingfactor"),
        (("[settings]", "[settings]\nvmin = 0.9"), "settings.vmin"),
        (("[areas]", "[arrreas]"), "arrreas"),
        (("[profiles.daily]", "[profiles.hourly]\nx = 1\n\n[profiles.daily]"), "profiles.hourly"),
        (("price_usd_per_kwh = [0.05, 0.1, 0.2]", "price_usd_per_kwh = [0.05, 0.1, 0.2]\nprice = 3"), "profiles.daily.price"),
    ],
)
def test_unknown_key(tmp_path, edit, key):
    _expect(tmp_path, BASE.replace(*edit, 1), re.escape(key), "unknown")


def test_wrong_type(tmp_path):
    _expect(tmp_path, BASE.replace("v_max_pu = 1.05", 'v_max_pu = "high"'), "settings.v_max_pu", "expected a number")


def test_missing_required_key(tmp_path):
    text = re.sub(r"network = .*\n", "", BASE)
    _expect(tmp_path, text, "case.network", "missing")


def test_unknown_case_name():
    with pytest.raises(CaseError, match="no_such_case: no such case.*ieee123"):
        load_case("no_such_case")
    with pytest.raises(CaseError, match="case file not found"):
        load_case("somewhere/else.toml")


# ---------------------------------------------------------------------------------------- CLI exit codes


@pytest.mark.parametrize(
    "make,args_tail,needle",
    [
        (lambda t: BASE.replace("[pv]", "[pv]\nbogus = 1"), [], "pv.bogus: unknown key"),
        (lambda t: BASE, ["--hours", "9"], "profiles.daily: 3 periods, shorter"),
        (lambda t: BASE.replace("soc_min = 0.3", "soc_min = 0.99"), [], "battery.soc_min"),
        (lambda t: BASE.replace('"1", "7"', '"1", "x7"'), [], "pv.buses: unknown bus 'x7'"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, make, args_tail, needle):
    path = _write(tmp_path, make(tmp_path))
    result = CliRunner().invoke(main, ["cases", "show", str(path), *args_tail])
    assert result.exit_code == 2
    err = result.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


def test_cli_missing_case_exits_2():
    result = CliRunner().invoke(main, ["cases", "show", "nope"])
    assert result.exit_code == 2 and result.stderr.startswith("error: nope: no such case")


def test_start_chooses_the_window_of_the_day():
    """--start HH cuts profiles.daily from that clock hour; the exact 5-h table applies only at its own start."""
    daily = load_case("ieee123", 24).profile
    exact = load_case("ieee123", 5, start=9).profile
    assert exact["load_mult"].tolist() == STUDY_5H["load_mult"]  # start == the table's own first clock hour
    early = load_case("ieee123", 5, start=6).profile
    assert early["clock_hour"].tolist() == [6, 7, 8, 9, 10]
    assert early["load_mult"].tolist() == daily["load_mult"].iloc[6:11].tolist()
    assert early["price"].tolist() == daily["price"].iloc[6:11].tolist()
    assert load_case("ieee123", 24, start=0).profile["clock_hour"].tolist() == list(range(24))
    last = load_case("ieee123", 3, start=21).profile
    assert last["clock_hour"].tolist() == [21, 22, 23]


@pytest.mark.parametrize("hours, start, what", [
    (5, 20, r"start: 5 periods from clock hour 20 run past the end of the 24-period profiles.daily "
            r"\(latest start for this horizon: 19"),
    (1, 24, r"start: 24: the first period's clock hour must be .* from 0 to 23"),
    (1, -1, r"start: -1: "),
    (1, 2.5, r"start: 2.5: "),
    (1, "9", r"start: '9': "),
])
def test_start_outside_the_day_is_refused(hours, start, what):
    with pytest.raises(CaseError) as info:
        load_case("ieee123", hours, start=start)
    assert re.search(what, str(info.value)), str(info.value)
    assert "--" not in str(info.value)


def test_start_from_the_cli(tmp_path):
    r = CliRunner().invoke(main, ["cases", "show", "ieee123", "--hours", "4", "--start", "7"])
    assert r.exit_code == 0, r.output
    assert "clock hours 7..10" in r.output
    r = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "5", "--start", "22",
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 2
    assert "start: 5 periods from clock hour 22 run past the end" in r.output
    assert not (tmp_path / "run").exists()  # nothing half-written
