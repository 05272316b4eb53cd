"""Warm re-solves of an area (previous point and multipliers) must not crawl when the received boundary
values move far, and a warm start that stalls anyway is cut short and solved again cold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition import area_solver, solve_distributed
from mpdopf_pyomo.decomposition.area_solver import AreaSolver, AreaSpec


def test_warm_resolves_after_a_big_jump_of_the_boundary_values_stay_cheap(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """ENApp's round 2 on a 1,025-bus tree, hours 0-3: the root area receives its children's head power,
    far from the zero it assumed in round 1. With IPOPT's monotone barrier its warm re-solve took 241
    iterations (the cold solve 53; at 2,561 buses x 24 h: 1,000 iterations and a cold retry, 150 s)."""
    from mpdopf_pyomo.network.generate import generate

    g = generate(1025, tmp_path / "g1025")
    case = load_case(g.case_file, 4, start=0)
    seen: list[tuple[int, int, dict]] = []
    solve = AreaSolver.solve

    def recording(self: AreaSolver, w2, w1, pin=None, iteration: int = 0):  # type: ignore[no-untyped-def]
        out = solve(self, w2, w1, pin, iteration)
        seen.append((iteration, self.area, out))
        return out

    monkeypatch.setattr(AreaSolver, "solve", recording)
    solve_distributed(case, "enapp", executor="serial", max_iter=2, keep_last=True)
    cold = {a: o["iterations"] for k, a, o in seen if k == 1}
    warm = {a: o for k, a, o in seen if k == 2}
    assert len(cold) == len(warm) == 8
    for a, o in warm.items():
        assert o["attempts"] == ["warm"], (a, o["attempts"])
        assert o["iterations"] <= cold[a], (a, o["iterations"], cold[a])  # measured 3-5 against 39-53


def test_a_warm_solve_past_its_cap_is_solved_again_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap (here 3 iterations) stops the warm attempt; the cold retry gives the cold answer, and the
    iterations reported count both attempts."""
    case = load_case("ieee123", 1)
    spec = AreaSpec(case, 1)
    solver = AreaSolver(spec)
    if not solver.persistent:
        pytest.skip("needs the cyipopt library route")
    n = len(solver.ports())
    first = solver.solve(np.zeros(n), np.zeros(n))
    assert first["attempts"] == ["cold"]
    w2, w1 = np.full(n, 50.0), np.full(n, -400.0)  # a strong pull on every boundary value
    reference = AreaSolver(spec)
    reference.solve(np.zeros(n), np.zeros(n))
    reference._mult = None  # the same previous point, solved cold
    expected = reference.solve(w2, w1)
    assert expected["attempts"] == ["cold"] and expected["iterations"] > 3
    monkeypatch.setattr(area_solver, "WARM_MIN_ITER", 3)
    monkeypatch.setattr(area_solver, "WARM_ITER_FACTOR", 0)
    out = solver.solve(w2, w1)
    assert out["attempts"] == ["warm", "cold"]
    assert out["iterations"] == 3 + expected["iterations"]
    np.testing.assert_allclose(out["x"], expected["x"], atol=1e-7)
    assert out["cost"] == pytest.approx(expected["cost"], rel=1e-9)


def test_retries_are_counted_per_round_in_the_timing_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the warm cap forced to 3 iterations, ENApp's warm re-solves on ieee123 give way to cold retries:
    the timing table counts them per round (``retries``), its ``ipopt_iterations`` add up to the run's, and
    the summary carries the total (``area_retries``)."""
    monkeypatch.setattr(area_solver, "WARM_MIN_ITER", 3)
    monkeypatch.setattr(area_solver, "WARM_ITER_FACTOR", 0)
    res = solve_distributed(load_case("ieee123", 1), "enapp", executor="serial")
    t = res.extra_tables["timing"]
    d = res.summary["distributed"]
    assert t["retries"].iloc[0] == 0  # round 1 is cold everywhere: nothing to retry
    assert t["retries"].iloc[1:].sum() > 0
    assert d["area_retries"] == int(t["retries"].sum())
    assert int(t["ipopt_iterations"].sum()) == res.summary["solver_stats"]["iterations"]
