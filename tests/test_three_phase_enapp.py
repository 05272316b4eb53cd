"""Distributed ``3ph-exact`` beyond the ADMM basics: ENApp over the per-phase ports (V per phase down, S per
phase up), both price rules, on IEEE 13; what crosses the cut per iteration; and (MPDOPF_SLOW=1) ADMM's
default settings on IEEE 123, 4 areas, 5 h, within 1e-4 of central."""

from __future__ import annotations

import os

import pytest

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition import solve_distributed
from mpdopf_pyomo.pipeline import solve_central
from mpdopf_pyomo.progress import quiet


@pytest.fixture(scope="module")
def case():
    return load_case("ieee13", 2)


@pytest.fixture(scope="module")
def central(case):
    return solve_central(case, "3ph-exact").summary["objective_usd"]


def gap(res, central: float) -> float:
    return (res.summary["objective_usd"] - central) / central


@pytest.mark.parametrize("prices, max_iter, max_gap", [
    # the study's exchange: the child prices its head power at the substation price only, so it ignores
    # the parent's marginal losses (measured: 4 iterations, gap +5.1e-5)
    ("substation", 6, 2e-4),
    # with the marginal values exchanged too, the fixed point is the central optimum (measured: 25, +2.1e-7)
    ("exchange", 40, 1e-5),
])
def test_enapp_per_phase_converges_near_central(case, central, prices, max_iter, max_gap):
    res = solve_distributed(case, "enapp", "3ph-exact", executor="serial", n_areas=2, progress=quiet,
                            prices=prices, max_iter=max_iter)
    d = res.summary["distributed"]
    assert d["converged"] and d["cut_branches"] == ["632670"] and d["prices"] == prices
    assert abs(gap(res, central)) <= max_gap, gap(res, central)
    # per iteration, per hour and phase of the three-phase cut: V (Vr, Vi) down and S (P, Q) up
    assert d["exchanged_per_iteration"] == 2 * 3 * 2 and d["exchanged_reals_per_iteration"] == 4 * 3 * 2
    assert d["exchanged_reals_by_kind"] == {"P": 6, "Q": 6, "v": 12}


def test_admm_counts_per_phase_and_kind(case, central):
    """ADMM: each of the two areas sends its copy of every port and receives the consensus (4 crossings):
    per hour and phase P, Q, Vr, Vi (the balanced count, 2 values and 3 reals per cut and hour, was
    reported before). The 3ph defaults (Q penalty 1e-2 of P's, v 0.3) converge in the warm start here."""
    res = solve_distributed(case, "admm", "3ph-exact", executor="serial", n_areas=2, progress=quiet, max_iter=40)
    d = res.summary["distributed"]
    assert d["converged"] and abs(gap(res, central)) <= 1e-4
    assert d["exchanged_per_iteration"] == 4 * 2 * 3 * 2 and d["exchanged_reals_per_iteration"] == 4 * 4 * 3 * 2
    assert d["exchanged_reals_by_kind"] == {"P": 24, "Q": 24, "v": 48}
    assert d["kind_scale"] == {"P": 1.0, "Q": 1e-2, "v": 0.3} and d["warm_start_abandoned_at"] is None


def test_a_caller_option_wins_over_the_formulation_default(case):
    res = solve_distributed(case, "admm", "3ph-exact", executor="serial", n_areas=2, progress=quiet,
                            kind_scale={"Q": 2e-2}, warm_start="none", max_iter=300)
    # merged key by key: the formulation's v stays
    assert res.summary["distributed"]["kind_scale"] == {"P": 1.0, "Q": 2e-2, "v": 0.3}


@pytest.mark.skipif(not os.environ.get("MPDOPF_SLOW"), reason="IEEE 123, 4 areas, 5 h ADMM (~36 s CPU): MPDOPF_SLOW=1")
def test_admm_defaults_on_ieee123_unbalanced_within_1e4_of_central():
    """Issue 12's figure. The ENApp warm start is given up when a child cannot meet the voltages it
    receives (area 4's nodes reach v_max 1.07 at a root voltage 0.4 % above the optimum's)."""
    case = load_case("ieee123-opendss", 5)
    central = solve_central(case, "3ph-exact").summary["objective_usd"]
    res = solve_distributed(case, "admm", "3ph-exact", executor="serial", n_areas=4, progress=quiet)
    d = res.summary["distributed"]
    assert d["converged"] and d["cut_branches"] == ["l13", "l58", "l67"]
    assert abs(gap(res, central)) <= 1e-4, gap(res, central)
    # measured: 100 iterations (4 warm start + 96 ADMM), gap -1.4e-5; 360 values = 4 x 3 cuts x 3 phases x 2 x 5 h
    assert d["iterations"] <= 150 and d["warm_start_abandoned_at"] is not None
    assert d["exchanged_per_iteration"] == 360 and d["exchanged_reals_per_iteration"] == 720


@pytest.mark.skipif(not os.environ.get("MPDOPF_SLOW"), reason="IEEE 34, 4 areas, 5 h ADMM (~20 s CPU): MPDOPF_SLOW=1")
@pytest.mark.xfail(strict=True, reason="known gap: 3ph ADMM on IEEE 34, 4 areas, 5 h does not converge in 300 "
                   "iterations with its defaults (primal 4.7e-4 pu: the Q ports of phases 2 and 3 at cuts l29 "
                   "and l14, hours 1, 2, 5); see docs/src/three-phase.md, 'ADMM'")
def test_admm_defaults_on_ieee34_unbalanced_within_1e4_of_central():
    """IEEE 34 in 4 areas (cuts l6, l14, l29): the figure to reach. Strict: passes (and so fails) once fixed."""
    case = load_case("ieee34", 5)
    central = solve_central(case, "3ph-exact").summary["objective_usd"]
    res = solve_distributed(case, "admm", "3ph-exact", executor="serial", n_areas=4, progress=quiet)
    d = res.summary["distributed"]
    assert d["converged"] and d["cut_branches"] == ["l6", "l14", "l29"]
    assert abs(gap(res, central)) <= 1e-4, gap(res, central)
