"""The starting point: the vectorised LinDistFlow sweep (problem.flat_start) and its loading into a model
(problem.initialize) give exactly what a plain per-bus, per-variable loop gives."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

from mpdopf_pyomo import problem
from mpdopf_pyomo.case import Case, load_case


def _reference_start(case: Case) -> dict[str, dict[tuple[str, int], float]]:
    """flat_start written as the textbook recursion: backward sums bus by bus, forward drop branch by branch."""
    buses, br = problem._network_columns(case)
    T = list(case.profile.index)
    pv = {(b, t): float(case.pvs.at[b, "p_rated"] * case.profile.at[t, "pv_mult"]) for b in case.pvs.index for t in T}
    children: dict[str, list[str]] = {}
    for e, row in br.iterrows():
        children.setdefault(row["from_bus"], []).append(e)
    order: list[str] = []  # branches, parents before children
    stack = [case.root]
    while stack:
        bus = stack.pop()
        for e in children.get(bus, []):
            order.append(e)
            stack.append(br.at[e, "to_bus"])
    v = {(b, t): case.settings.v_sub_pu**2 for b in buses.index for t in T}
    sweeps = problem.START_SWEEPS if buses[["p_zip_z", "p_zip_i", "q_zip_z", "q_zip_i", "b_shunt"]].to_numpy().any() else 1
    for _ in range(sweeps):
        down_p: dict[tuple[str, int], float] = {}
        down_q: dict[tuple[str, int], float] = {}
        for b in buses.index:
            row = buses.loc[b]
            for t in T:
                lm = case.profile.at[t, "load_mult"]
                pn, qn = row["p_load"] * lm, row["q_load"] * lm
                mag = math.sqrt(max(v[b, t], 0.0))
                down_p[b, t] = pn * row["p_zip_p"] - pv.get((b, t), 0.0) + pn * (row["p_zip_z"] * v[b, t] + row["p_zip_i"] * mag)
                down_q[b, t] = (qn * row["q_zip_p"] - row["q_cap"] + qn * (row["q_zip_z"] * v[b, t] + row["q_zip_i"] * mag)
                                - row["b_shunt"] * v[b, t])
        for e in reversed(order):
            i, k = br.at[e, "from_bus"], br.at[e, "to_bus"]
            for t in T:
                down_p[i, t] += down_p[k, t]
                down_q[i, t] += down_q[k, t]
        new = dict(v)
        for e in order:
            i, k = br.at[e, "from_bus"], br.at[e, "to_bus"]
            a2 = br.at[e, "tap"] ** 2
            for t in T:
                new[k, t] = new[i, t] / a2 - 2 * (br.at[e, "r"] * down_p[k, t] + br.at[e, "x"] * down_q[k, t])
        v = new
    P = {(e, t): down_p[br.at[e, "to_bus"], t] for e in br.index for t in T}
    Q = {(e, t): down_q[br.at[e, "to_bus"], t] for e in br.index for t in T}
    ell = {(e, t): (P[e, t] ** 2 + Q[e, t] ** 2) / (v[br.at[e, "from_bus"], t] / br.at[e, "tap"] ** 2)
           for e in br.index for t in T}
    return {"P": P, "Q": Q, "l": ell, "v": v}


def _voltage_dependent(case: Case) -> Case:
    """ieee123 with ZIP loads, shunts and off-nominal taps on a few buses and branches."""
    buses = case.buses.copy()
    branches = case.branches.copy()
    rng = np.random.default_rng(7)
    pick = rng.choice(len(buses), 20, replace=False)
    for kind in ("p", "q"):
        buses[f"{kind}_zip_z"] = 0.0
        buses[f"{kind}_zip_i"] = 0.0
        buses[f"{kind}_zip_p"] = 1.0
        buses.iloc[pick, buses.columns.get_loc(f"{kind}_zip_z")] = 0.3
        buses.iloc[pick, buses.columns.get_loc(f"{kind}_zip_i")] = 0.2
        buses.iloc[pick, buses.columns.get_loc(f"{kind}_zip_p")] = 0.5
    buses["b_shunt"] = 0.0
    buses.iloc[pick[:5], buses.columns.get_loc("b_shunt")] = 0.01
    branches["tap"] = 1.0
    branches.iloc[rng.choice(len(branches), 4, replace=False), branches.columns.get_loc("tap")] = 1.0125
    return dataclasses.replace(case, buses=buses, branches=branches)


@pytest.mark.parametrize("variant", ["pq", "voltage-dependent"])
def test_flat_start_matches_the_plain_recursion(variant: str) -> None:
    case = load_case("ieee123", 3)
    if variant != "pq":
        case = _voltage_dependent(case)
    start = problem.flat_start(case)
    ref = _reference_start(case)
    for key in ("P", "Q", "l", "v"):
        got = start[key].stack().to_dict()
        assert set(got) == set(ref[key])
        worst = max(abs(got[k] - ref[key][k]) for k in got)
        assert worst < 1e-12, (key, worst)
    assert start["v"].to_numpy().min() < 0.99 * case.settings.v_sub_pu**2  # a real drop, not a flat profile


def _reference_initialize(m: pyo.ConcreteModel, start: dict[str, pd.DataFrame]) -> None:
    """initialize as one dictionary look-up per variable (what it did before it was vectorised)."""
    net = m.net
    P, Q, ell, v = (start[k].to_dict("index") for k in ("P", "Q", "l", "v"))
    use_l = not net.l[next(iter(net.l))].fixed if len(net.l) else False
    for (e, t), var in net.P.items():
        var.set_value(P[e][t], skip_validation=True)
        net.Q[e, t].set_value(Q[e][t], skip_validation=True)
        if use_l:
            net.l[e, t].set_value(ell[e][t], skip_validation=True)
    for (bus, t), var in net.v.items():
        if not var.fixed:
            var.set_value(v[bus][t], skip_validation=True)
    for (c, t), var in net.P_out.items():
        var.set_value(P[c][t], skip_validation=True)
        net.Q_out[c, t].set_value(Q[c][t], skip_validation=True)
    if hasattr(m, "substation"):
        first = net.children[m.view.root]
        for t in m.hours:
            m.substation.P[t].set_value(sum(P[e][t] for e in first), skip_validation=True)
            m.substation.Q[t].set_value(sum(Q[e][t] for e in first), skip_validation=True)


def _values(m: pyo.ConcreteModel) -> dict[str, float | None]:
    return {v.name: v.value for v in m.component_data_objects(pyo.Var)}


@pytest.mark.parametrize(("formulation", "area"), [("exact", None), ("linear", None), ("exact", 1), ("exact", 3)])
def test_initialize_sets_what_a_per_variable_loop_sets(formulation: str, area: int | None) -> None:
    """Central and area models (with ports), with and without the current variable l: identical values."""
    case = load_case("ieee123", 2)
    start = problem.flat_start(case)
    fast = problem.build_model(case, formulation, area)
    slow = problem.build_model(case, formulation, area)
    problem.initialize(fast, start)
    _reference_initialize(slow, start)
    got, want = _values(fast), _values(slow)
    assert got == want
    assert sum(v is not None and v != 0 for v in got.values()) > 0.5 * len(got)
