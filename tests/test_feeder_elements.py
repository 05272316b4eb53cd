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
TAIL = """Set VoltageBases=[12.47]
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
    loss = res.branches.groupby(level="t")["loss_kw"].sum()
    for t, lm in ((1, 0.5), (2, 1.5)):
        assert res.substation.at[t, "p_kw"] == pytest.approx(1000.0 * lm - 250.0 + loss[t], rel=1e-6)
