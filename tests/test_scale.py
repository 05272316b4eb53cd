"""Large feeders: the generator (radial, feasible, deterministic, infeasible chain refused), the partition
for size, square area problems (no degrees of freedom) and the honest distributed timing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mpdopf_pyomo.case import load_case


@pytest.mark.parametrize("status", [0, 6])
def test_square_area_without_ders_is_solved(status: int) -> None:
    """An area with no DERs whose root voltage is pinned (ENApp's exchange) has no degrees of freedom.
    IPOPT solves such a square problem with status 0, or 6 ('Feasible point for square problem found')
    when its restoration phase found the point (what stopped ADMM on a converted 8500): both are valid.
    Status 6 is forced here by rewriting the library's return value (which path IPOPT takes depends on
    the start point)."""
    from mpdopf_pyomo.decomposition.area_solver import AreaSolver, AreaSpec
    from mpdopf_pyomo.problem import flat_start

    case = load_case("ieee123", 1)
    case = dataclasses.replace(case, pvs=case.pvs.iloc[:0], batteries=case.batteries.iloc[:0])
    start = flat_start(case)
    solver = AreaSolver(AreaSpec(case, 3, "exact", "ipopt", start=start))  # a leaf area below 18-135
    assert solver.persistent
    keys = solver.ports()
    n_fixed = 2 * len(keys) + 1  # the penalty coefficients and the pinned root voltage
    assert solver._nlp.n_primals() - n_fixed == solver._nlp.n_eq_constraints()  # square
    assert solver._nlp.n_ineq_constraints() == 0
    base = solver._Problem

    class Forced(base):  # type: ignore[misc, valid-type]
        def solve(self, *args, **kw):  # type: ignore[no-untyped-def]
            x, info = super().solve(*args, **kw)
            assert info["status"] == 0
            return x, {**info, "status": status, "status_msg": b"Feasible point for square problem found."}

    solver._Problem = Forced
    cut_in = [c for c in case.cut_branches if int(case.buses.at[case.branches.at[c, "to_bus"], "area"]) == 3]
    pin = np.full(len(keys), np.nan)
    for i, (kind, cut, t) in enumerate(keys):
        into_area = cut in cut_in
        if kind == "v" and into_area:  # the child pins its root voltage
            pin[i] = start["v"].at[case.branches.at[cut, "from_bus"], t]
        elif kind != "v" and not into_area:  # the parent pins its children's withdrawals
            pin[i] = start[kind].at[cut, t]
    out = solver.solve(np.zeros(len(keys)), np.zeros(len(keys)), pin)
    assert np.isfinite(out["x"]).all()
    p_in = out["x"][keys.index(("P", cut_in[0], 1))]
    assert p_in == pytest.approx(start["P"].at[cut_in[0], 1], rel=0.02)  # the area's load and losses
