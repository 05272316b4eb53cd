"""The IEEE 123 OpenDSS model and the OpenDSS -> radial tree helpers.

The key check: an independent complex power flow (backward/forward sweep over the loader's per-unit
tables) reproduces OpenDSS's bus voltages and substation power on the base circuit, so the model, the
per-unit conversion and OpenDSS's handling of the 1e-6 ohm connectors agree.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpdopf_pyomo import network
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.errors import CaseError

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "models" / "ieee123" / "master.dss"
REFERENCE = REPO.parent / "shared" / "reference" / "mpdopf-original"


@pytest.fixture(scope="module")
def case():
    return load_case("ieee123")


@pytest.fixture()
def solved():
    """The base circuit compiled and solved; returns bus voltages (pu)."""
    network.compile_model(MASTER)
    return network.solve_power_flow()


def _sweep(case) -> tuple[pd.Series, complex]:
    """Complex backward/forward sweep on the case's per-unit tables (constant-power loads, fixed Q_C)."""
    br = case.branches
    b = case.buses
    pos = {bus: i for i, bus in enumerate(b.index)}
    s_load = (b["p_load"] + 1j * (b["q_load"] - b["q_cap"])).to_numpy()
    frm = np.array([pos[x] for x in br["from_bus"]])
    to = np.array([pos[x] for x in br["to_bus"]])
    z = (br["r"] + 1j * br["x"]).to_numpy()
    v = np.full(len(b), case.settings.v_sub_pu + 0j)
    for _ in range(200):
        i_bus = np.conj(s_load / v)
        i_br = np.zeros(len(br), complex)
        i_node = i_bus.copy()
        for k in range(len(br) - 1, -1, -1):  # breadth-first rows: children come later
            i_br[k] = i_node[to[k]]
            i_node[frm[k]] += i_br[k]
        v_new = v.copy()
        for k in range(len(br)):
            v_new[to[k]] = v_new[frm[k]] - z[k] * i_br[k]
        if np.max(np.abs(v_new - v)) < 1e-14:
            v = v_new
            break
        v = v_new
    root_branches = np.where(frm == 0)[0]
    s_sub = v[0] * np.conj(i_br[root_branches].sum())
    return pd.Series(np.abs(v), index=b.index), s_sub


def test_base_power_flow_solves_and_matches_an_independent_sweep(case, solved):
    v_dss = solved
    assert len(v_dss) == 128
    assert v_dss["150"] == pytest.approx(1.03, abs=1e-9)  # stiff source
    v_ref, s_sub = _sweep(case)
    diff = (v_dss.reindex(v_ref.index) - v_ref).abs()
    assert diff.max() < 1e-8, diff.idxmax()
    p_kw, q_kvar = network.substation_power_kw()
    assert p_kw == pytest.approx(s_sub.real * case.bases.s_kva, abs=1e-4)
    assert q_kvar == pytest.approx(s_sub.imag * case.bases.s_kva, abs=1e-4)
    # plausibility: the IEEE 123 base case draws about 1.19 MW per phase here
    assert 3400 < p_kw < 3700
    assert 0.98 < v_dss.min() < 1.0


def test_loads_are_constant_power_and_capacitors_fixed_injections(solved):
    import opendssdirect as dss

    # Off-nominal voltage at every load and capacitor bus, yet exact nominal powers.
    assert abs(solved["83"] - 1.0) > 1e-3
    dss.Circuit.SetActiveElement("Generator.cap83")
    q = -sum(dss.CktElement.Powers()[1::2])
    assert q == pytest.approx(600.0, abs=1e-5)
    dss.Circuit.SetActiveElement("Load.s47")
    pw = dss.CktElement.Powers()
    assert sum(pw[0::2]) == pytest.approx(105.0, abs=1e-5)
    assert sum(pw[1::2]) == pytest.approx(75.0, abs=1e-5)


def test_compile_keeps_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    network.compile_model(MASTER)
    assert Path(os.getcwd()) == tmp_path


def test_compile_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.dss"
    bad.write_text("Clear\nNew Circuit.x bus1=a basekV=4.16\nNew Line.l1 bus1=a bus2=b nonsense=3\n")
    with pytest.raises(CaseError, match=r"bad\.dss: OpenDSS could not compile.*nonsense"):
        network.compile_model(bad)
    with pytest.raises(CaseError, match="not found"):
        network.compile_model(tmp_path / "missing.dss")


def _lines(pairs):
    return pd.DataFrame(
        [(f"l{k}", a, b, 0.1, 0.1) for k, (a, b) in enumerate(pairs)], columns=["name", "bus1", "bus2", "r_ohm", "x_ohm"]
    ).set_index("name")


def test_build_tree_orients_breadth_first():
    # line directions given "backwards" on purpose
    lines = _lines([("b", "a"), ("c", "b"), ("b", "d"), ("e", "d")])
    tree = network.build_tree(lines, ["a", "b", "c", "d", "e"], "a")
    assert list(tree.index) == ["l0", "l1", "l2", "l3"]
    assert list(zip(tree["from_bus"], tree["to_bus"])) == [("a", "b"), ("b", "c"), ("b", "d"), ("d", "e")]
    seen = {"a"}
    for frm, to in zip(tree["from_bus"], tree["to_bus"]):
        assert frm in seen
        seen.add(to)


def test_build_tree_rejects_meshed_and_disconnected():
    with pytest.raises(CaseError, match=r"meshed network: line l1 \(b-c\) closes a loop"):
        network.build_tree(_lines([("a", "b"), ("b", "c"), ("c", "a")]), ["a", "b", "c"], "a")
    with pytest.raises(CaseError, match="meshed"):  # parallel lines are a loop too
        network.build_tree(_lines([("a", "b"), ("a", "b")]), ["a", "b"], "a")
    with pytest.raises(CaseError, match=r"disconnected network: 2 bus\(es\).*: x, y"):
        network.build_tree(_lines([("a", "b"), ("x", "y")]), ["a", "b", "x", "y"], "a")


def test_assign_areas_puts_the_child_side_bus_in_the_child_area():
    tree = network.build_tree(_lines([("a", "b"), ("b", "c"), ("c", "d"), ("b", "e")]), list("abcde"), "a")
    area = network.assign_areas(tree, "a", ["l3", "l1"])  # order given = area numbering
    assert area.to_dict() == {"a": 1, "b": 1, "c": 3, "d": 3, "e": 2}
    assert network.resolve_branch(tree, ("c", "b")) == "l1"
    assert network.resolve_branch(tree, "L1") == "l1"
    assert network.resolve_branch(tree, ("a", "e")) is None


# The study's bus ownership (shared/reference/mpdopf-original/README.md, "Area partition"), in IEEE names:
# A1 = study 1-36, 117, 118, 119, 126, 127; A2 = 54-68, 122, 125; A3 = 37-53, 120; A4 = 69-116, 121, 123, 124, 128
# (study bus n = IEEE n - 2 for 3 <= n <= 116).
STUDY_AREAS = {
    **{b: 1 for b in ["150", "149", *map(str, range(1, 35)), "152", "135", "250", "9r", "25r"]},
    **{b: 2 for b in [*map(str, range(52, 67)), "610", "160"]},
    **{b: 3 for b in [*map(str, range(35, 52)), "151"]},
    **{b: 4 for b in [*map(str, range(67, 115)), "300", "450", "197", "160r"]},
}


def test_ieee123_areas_match_the_study_partition(case):
    assert len(STUDY_AREAS) == 128
    ours = case.buses["area"].to_dict()
    differ = {b: (STUDY_AREAS[b], ours[b]) for b in ours if ours[b] != STUDY_AREAS[b]}
    # Only the child-side buses of the three cut switches differ: the study's parent model holds them as
    # dummy buses; here a cut branch's child-side bus starts the child area.
    assert differ == {"152": (1, 2), "135": (1, 3), "160": (2, 4)}
    assert case.cut_branches == ["sw2", "sw3", "sw4"]


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference not beside the repository")
def test_model_reproduces_the_study_data(case):
    """Every study branch, load and capacitor is in the model with the same numbers (IEEE names)."""
    with open(REFERENCE / "branches.csv") as f:
        study = list(csv.DictReader(f))
    z = case.bases.z_ohm
    pairs = {frozenset((f, t)): (r * z, x * z) for f, t, r, x in case.branches[["from_bus", "to_bus", "r", "x"]].itertuples(index=False)}
    assert len(pairs) == len(study) == 127
    for row in study:
        r, x = pairs[frozenset((row["ieee_from"].lower(), row["ieee_to"].lower()))]
        assert r == pytest.approx(float(row["r_ohm"]), rel=1e-12)
        assert x == pytest.approx(float(row["x_ohm"]), rel=1e-12)
    with open(REFERENCE / "buses.csv") as f:
        for row in csv.DictReader(f):
            bus = row["ieee_bus_name"].lower()
            assert case.buses.at[bus, "p_load"] * 1000 == pytest.approx(float(row["P_L_kW"]), abs=1e-9)
            assert case.buses.at[bus, "q_load"] * 1000 == pytest.approx(float(row["Q_L_kVAr"]), abs=1e-9)
            assert case.buses.at[bus, "q_cap"] * 1000 == pytest.approx(float(row["Q_C_kVAr"]), abs=1e-9)
