"""Issue 11's element gaps on hand-written OpenDSS circuits: network generators as fixed injections
(``p_fixed``/``q_fixed``), per-load LoadShape profiles, and centre-tap service transformers kept as branches.

Each circuit is small enough that the expected numbers follow from the .dss text; the optimisation's plan
is run through both validation checks (the exported balanced model and the original feeder).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.validation import attach_validation

KV = 12.47
HEAD = """Clear
New Circuit.t basekV=12.47 pu=1.0 phases=3 bus1=s MVAsc3=1e10 MVAsc1=1e10
"""
TAIL = """Set VoltageBases=[12.47 0.208]
CalcVoltageBases
"""


def _write(folder: Path, body: str, name: str = "feeder.dss") -> Path:
    path = folder / name
    path.write_text(HEAD + body + TAIL)
    return path


def _toml(folder: Path, network: str, load_mult: list[float], extra: str = "") -> Path:
    n = len(load_mult)
    path = folder / "case.toml"
    path.write_text(f"""[case]
network = "{network}"
[bases]
s_kva = 1000
[settings]
v_min_pu = 0.8
v_max_pu = 1.1
v_sub_pu = 1.0
{extra}
[profiles.daily]
load_mult = {load_mult}
pv_mult = {[0.0] * n}
price_usd_per_kwh = {[0.1] * n}
""")
    return path


# ------------------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------------------
GEN = """New Line.l1 bus1=s bus2=a phases=3 r1=0.3 x1=0.6 r0=0.3 x0=0.6 c1=0 c0=0 length=1
New Line.l2 bus1=a bus2=b phases=3 r1=0.4 x1=0.8 r0=0.4 x0=0.8 c1=0 c0=0 length=1
New Load.la bus1=a phases=3 kV=12.47 kW=400 kvar=100 model=1
New Load.lb bus1=b phases=3 kV=12.47 kW=600 kvar=200 model=1
New Generator.g bus1=b phases=3 kV=12.47 kW=250 kvar=50 model=1
"""


def test_generator_is_a_fixed_injection_not_a_load(tmp_path):
    """An OpenDSS Generator is p_fixed/q_fixed at its bus: the load stays the load, the generator is not
    scaled by load_mult (at 0.5 and 1.5 the substation takes load x mult - generator + losses), and
    both validation checks agree with OpenDSS (a balanced feeder: the original is the converted model)."""
    _write(tmp_path, GEN)
    case = load_case(_toml(tmp_path, "feeder.dss", [0.5, 1.5]), 2, warn=None)
    b = case.buses
    assert b.loc["b", ["p_load", "q_load"]].tolist() == pytest.approx([0.6, 0.2])
    assert b.loc["b", ["p_fixed", "q_fixed"]].tolist() == pytest.approx([0.25, 0.05])
    assert b["p_fixed"].drop("b").abs().max() == 0.0 and b["q_cap"].abs().max() == 0.0
    res = solve_case(case)
    attach_validation(case, res)
    v = res.summary["validation"]
    assert v["passed"] and v["max_abs_dv_pu"] < 1e-6
    o = v["original"]
    assert o["converged"] and o["max_abs_dv_pu"] < 1e-6 and o["max_abs_dp_sub_kw"] < 1e-3
    assert res.summary["load_kwh"] == pytest.approx(1000.0 * (0.5 + 1.5))  # loads only
    assert res.summary["fixed_generation_kwh"] == pytest.approx(2 * 250.0)
    loss = res.branches.groupby(level="t")["loss_kw"].sum()
    for t, lm in ((1, 0.5), (2, 1.5)):
        assert res.substation.at[t, "p_kw"] == pytest.approx(1000.0 * lm - 250.0 + loss[t], rel=1e-6)


# ------------------------------------------------------------------------------------------------------
# Centre-tap service transformers (IEEE 8500 / 9500)
# ------------------------------------------------------------------------------------------------------
CT = """New Line.l1 bus1=s bus2=a phases=3 r1=0.3 x1=0.6 r0=0.3 x0=0.6 c1=0 c0=0 length=1
New Load.la bus1=a phases=3 kV=12.47 kW=300 kvar=100 model=1
New Transformer.ct phases=1 windings=3 wdg=1 bus=s.1 kv=7.2 kVA=25 wdg=2 bus=x.1.0 kv=0.12 kVA=25
~ wdg=3 bus=x.0.2 kv=0.12 kVA=25 %imag=0 %Rs=[0.6 1.2 1.2] %noloadloss=0 Xhl=2.04 Xht=2.04 Xlt=1.36
New Linecode.tpx nphases=2 units=kft rmatrix=[0.3 0.1 | 0.1 0.3] xmatrix=[0.08 0.02 | 0.02 0.08] cmatrix=[0 0 | 0 0]
New Line.tpx bus1=x.1.2 bus2=sx.1.2 linecode=tpx length=0.1 units=kft
New Load.house phases=2 bus1=sx.1.2 kv=0.208 conn=wye kW=12 kvar=4 model=1
"""


def test_centre_tap_service_is_one_branch_with_its_losses(tmp_path):
    """A 25 kVA centre-tap transformer and 100 ft of triplex feeding a 12 kW + 4 kvar house (8500 style).

    By hand: on the whole-secondary 240 V base the house is one load across 1-2; the path is the
    transformer's Zh + (Zl + Zt)/4 (pu on 25 kVA) plus the triplex loop Z11 + Z22 - 2 Z12 = 0.04 + 0.012j
    ohm. Solving V2 = V1 - Z conj(S / V2) from V1 = 1 pu (the source bus) gives the house voltage; the
    equivalent keeps the service as one branch s -> sx (bus x merged away), the balanced model gets that
    voltage and the service's losses, and OpenDSS's original circuit agrees (check 2) to 1e-6 pu."""
    _write(tmp_path, CT)
    case = load_case(tmp_path / "feeder.dss", 1, warn=None)
    assert "x" not in case.buses.index and bool(case.buses.at["sx", "split_phase"])
    base = 2 * 0.208 / math.sqrt(3)  # twice the 120 V half's base of VoltageBases 0.208
    assert case.buses.at["sx", "v_base_kv_ln"] == pytest.approx(base)
    assert case.branches.at["ct", "from_bus"] == "s" and case.branches.at["ct", "to_bus"] == "sx"
    entry = case.conversion.entries[[e.what for e in case.conversion.entries].index(
        "centre-tap service transformers and secondaries: one balanced branch each on the 240 V base, "
        "the two 120 V halves taken as equally loaded")]
    assert (entry.count, entry.load_kw) == (1, pytest.approx(12.0))

    zb240 = 0.24**2 * 1000 / 25  # ohm, 240 V on 25 kVA
    zh, zl, zt = complex(0.6, (2.04 + 2.04 - 1.36) / 2), complex(1.2, (2.04 + 1.36 - 2.04) / 2), \
        complex(1.2, (2.04 + 1.36 - 2.04) / 2)
    z = (zh + (zl + zt) / 4) / 100 * zb240 + complex(0.3 + 0.3 - 0.2, 0.08 + 0.08 - 0.04) * 0.1  # ohm
    s_va = complex(12e3, 4e3)
    v_open = KV / math.sqrt(3) * 1000 * 240 / 7200  # the source's 1 pu through the 7.2 kV : 240 V ratio
    v2 = complex(v_open, 0.0)
    for _ in range(50):
        v2 = v_open - z * (s_va / v2).conjugate()
    loss_kw = abs(s_va / v2) ** 2 * z.real / 1000

    res = solve_case(case)
    v_opt = float(res.voltages.at["sx", 1])
    assert v_opt == pytest.approx(abs(v2) / (base * 1000), abs=1e-6)
    loss = res.branches.xs(1, level="t")["loss_kw"]
    assert loss["ct"] == pytest.approx(loss_kw, rel=1e-4)
    attach_validation(case, res)
    val = res.summary["validation"]
    assert val["passed"]
    orig = val["original"]
    assert orig["converged"] and orig["max_abs_dv_pu"] < 1e-5, orig
    assert orig["max_abs_dp_sub_kw"] < 1e-3


# ------------------------------------------------------------------------------------------------------
# Per-load profiles
# ------------------------------------------------------------------------------------------------------
RES = [0.3, 0.3, 0.3, 0.3, 0.4, 0.5, 0.7, 0.9, 1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 1.0, 1.2, 1.3, 1.2,
       1.0, 0.8, 0.6, 0.4]
COM = [0.2, 0.2, 0.2, 0.2, 0.2, 0.3, 0.6, 1.0, 1.2, 1.3, 1.3, 1.3, 1.2, 1.3, 1.3, 1.2, 1.0, 0.7, 0.5, 0.4,
       0.3, 0.3, 0.2, 0.2]
SHAPES = f"""New LoadShape.res npts=24 interval=1 mult=({' '.join(map(str, RES))})
New LoadShape.com npts=24 interval=1 mult=({' '.join(map(str, COM))})
New Line.l1 bus1=s bus2=a phases=3 r1=0.3 x1=0.6 r0=0.3 x0=0.6 c1=0 c0=0 length=1
New Line.l2 bus1=a bus2=b phases=3 r1=0.4 x1=0.8 r0=0.4 x0=0.8 c1=0 c0=0 length=1
New Load.la bus1=a phases=3 kV=12.47 kW=400 kvar=100 model=1 daily=res
New Load.lb bus1=b phases=3 kV=12.47 kW=600 kvar=200 model=1 daily=com
"""


def _leaf_load(res, t: int) -> float:
    """P drawn at leaf bus b in hour t: the flow into it less its losses."""
    row = res.branches.loc[("l2", t)]
    return float(row["p_kw"] - row["loss_kw"])


def test_loads_on_two_load_shapes_follow_them_hour_by_hour(tmp_path):
    """Two loads on different LoadShapes: the case gets one multiplier per bus (the shapes at the run's
    clock hours), the optimisation's withdrawal at each bus follows its own shape, and both validation
    checks hold (the exported model and the original feeder apply the same multipliers per hour)."""
    _write(tmp_path, SHAPES)
    case = load_case(tmp_path / "feeder.dss", 3, warn=None, start=6)
    assert list(case.profile["clock_hour"]) == [6, 7, 8]
    np.testing.assert_allclose(case.load_profiles["a"], RES[6:9])
    np.testing.assert_allclose(case.load_profiles["b"], COM[6:9])
    np.testing.assert_allclose(case.load_element_profiles["lb"], COM[6:9])
    res = solve_case(case)
    assert res.summary["load_kwh"] == pytest.approx(sum(400 * r + 600 * c for r, c in zip(RES[6:9], COM[6:9])))
    for k, t in enumerate((1, 2, 3)):
        assert _leaf_load(res, t) == pytest.approx(600.0 * COM[6 + k], rel=1e-7)
        p_sub = float(res.substation.at[t, "p_kw"])
        loss = float(res.branches.xs(t, level="t")["loss_kw"].sum())
        assert p_sub - loss == pytest.approx(400.0 * RES[6 + k] + 600.0 * COM[6 + k], rel=1e-7)
    attach_validation(case, res)
    v = res.summary["validation"]
    assert v["passed"] and v["max_abs_dv_pu"] < 1e-6, v["max_abs_dv_pu"]
    o = v["original"]
    assert o["converged"] and o["max_abs_dv_pu"] < 1e-6 and o["max_abs_dp_sub_kw"] < 1e-3, o


def test_toml_profiles_loads_csv_by_bus_and_by_shape(tmp_path):
    """``[profiles.loads] file`` names a CSV: a bus column replaces that bus's multiplier (over its
    LoadShape), a shape column applies to the loads on that shape; the window is the run's clock hours."""
    _write(tmp_path, SHAPES)
    rows = ["a,com"] + [f"{0.5 + 0.01 * h:g},{1.5 - 0.02 * h:g}" for h in range(4)]
    (tmp_path / "loads.csv").write_text("\n".join(rows) + "\n")
    case = load_case(_toml(tmp_path, "feeder.dss", [1.0, 0.9, 0.8, 0.7], '[profiles.loads]\nfile = "loads.csv"'),
                     2, warn=None)
    assert list(case.profile["clock_hour"]) == [1, 2]
    np.testing.assert_allclose(case.load_profiles["a"], [0.51, 0.52])  # the CSV's bus column, not RES
    np.testing.assert_allclose(case.load_profiles["b"], [1.48, 1.46])  # the CSV's "com" column
    res = solve_case(case)
    assert _leaf_load(res, 2) == pytest.approx(600.0 * 1.46, rel=1e-7)
    attach_validation(case, res)
    assert res.summary["validation"]["passed"]
    assert res.summary["validation"]["original"]["max_abs_dv_pu"] < 1e-6


def test_toml_profiles_loads_bad_input_is_one_line_with_every_problem(tmp_path):
    """A missing bus, a short file and a non-number: one error line naming the file and the key, every
    problem at once, exit 2 from the CLI, no traceback."""
    from click.testing import CliRunner

    from mpdopf_pyomo.cli import main
    from mpdopf_pyomo.errors import CaseError

    _write(tmp_path, GEN)
    (tmp_path / "loads.csv").write_text("a,zz\n0.5,1\nabc,1\n")
    toml = _toml(tmp_path, "feeder.dss", [1.0, 1.0, 1.0], '[profiles.loads]\nfile = "loads.csv"')
    with pytest.raises(CaseError) as err:
        load_case(toml, 2, warn=None)
    msg = str(err.value)
    assert msg.startswith(f"{toml}: 3 problems: profiles.loads.file: loads.csv: ")
    assert "2 rows of values, but profiles.daily has 3 periods" in msg
    assert "column 'a', row 3: 'abc' is not a finite number" in msg
    assert "loads.csv: column 'zz' is neither a bus of the network nor a LoadShape its loads use" in msg
    assert "\n" not in msg
    (tmp_path / "loads.csv").write_text("a\n0.5\n-1\n0.7\n")
    out = CliRunner().invoke(main, ["solve", "--case", str(toml), "--hours", "2", "--out", str(tmp_path / "run")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    lines = [ln for ln in out.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "profiles.loads.file: loads.csv: column 'a', row 3: must be >= 0, got -1" in lines[0]
    assert not (tmp_path / "run").exists()


def test_transformer_magnetising_and_no_load_loss_are_shunts(tmp_path):
    """%imag = 1 and %noloadloss = 0.5 of a 500 kVA transformer: 5 kvar and 2.5 kW at 1 pu, a
    constant-impedance shunt at the secondary bus (where OpenDSS's model has it: at the primary the
    original differs by 0.02 kW / 0.06 kvar, at the secondary by 4e-4 kW / 1.4e-3 kvar, its anti-floating
    admittance), so the substation takes load + series losses + 2.5 kW x v_a^2."""
    body = """New Transformer.t phases=3 windings=2 buses=[s a] kVs=[12.47 4.16] kVAs=[500 500] XHL=4 %Rs=[0.5 0.5]
~ %imag=1 %noloadloss=0.5
New Load.la bus1=a phases=3 kV=4.16 kW=300 kvar=90 model=1
"""
    (tmp_path / "feeder.dss").write_text(HEAD + body + "Set VoltageBases=[12.47 4.16]\nCalcVoltageBases\n")
    case = load_case(tmp_path / "feeder.dss", 1, warn=None)
    assert case.buses.loc["a", ["g_shunt", "b_shunt"]].tolist() == pytest.approx([0.0025, -0.005])
    assert case.buses.loc["s", ["g_shunt", "b_shunt"]].tolist() == [0.0, 0.0]
    assert any("1 transformer(s) with magnetising current or no-load loss" in n and "5.0 kvar and 2.5 kW" in n
               for n in case.conversion.notes)
    res = solve_case(case)
    loss = float(res.branches.xs(1, level="t")["loss_kw"].sum())
    v_a = float(res.voltages.at["a", 1])
    assert float(res.substation.at[1, "p_kw"]) == pytest.approx(300.0 + loss + 2.5 * v_a**2, rel=1e-7)
    attach_validation(case, res)
    v = res.summary["validation"]
    assert v["passed"] and v["max_abs_dv_pu"] < 1e-6
    o = v["original"]
    assert o["converged"] and o["max_abs_dv_pu"] < 1e-6, o
    assert o["max_abs_dp_sub_kw"] < 2e-3 and o["max_abs_dq_sub_kvar"] < 5e-3, o


@pytest.mark.parametrize("spec,message", [
    ('"nosuch.csv"', "cannot read"), ('"."', "cannot read"), ('"a\\u0000b.csv"', "not a valid file name"),
    ("3", "expected a string"), ('"bin.csv"', "not a UTF-8 text file"), ('"empty.csv"', "empty")])
def test_toml_profiles_loads_file_errors(tmp_path, spec, message):
    from mpdopf_pyomo.errors import CaseError

    _write(tmp_path, GEN)
    (tmp_path / "bin.csv").write_bytes(b"a\n\xff\xfe\n")
    (tmp_path / "empty.csv").write_text("\n")
    toml = _toml(tmp_path, "feeder.dss", [1.0, 1.0], f"[profiles.loads]\nfile = {spec}")
    with pytest.raises(CaseError, match="profiles.loads.file: .*" + message) as err:
        load_case(toml, 1, warn=None)
    assert "\n" not in str(err.value)
