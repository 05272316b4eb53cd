"""Every NLP solver we ship solves a small nonlinear problem to its known optimum; failures are errors."""

import math

import pyomo.environ as pyo
import pytest

from mpdopf_pyomo import solvers
from mpdopf_pyomo.errors import MpdopfError, SolveFailed, SolverUnavailable

AVAILABLE = [s.name for s in solvers.probe_all() if s.available]


def _circle_model(radius_sq: float = 1.0) -> pyo.ConcreteModel:
    """min (x-1)^2 + (y-2)^2 s.t. x^2 + y^2 <= r^2: optimum at (1, 2)/sqrt(5)·r, objective (sqrt5 - r)^2."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=0.0)
    m.y = pyo.Var(initialize=0.0)
    m.obj = pyo.Objective(expr=(m.x - 1) ** 2 + (m.y - 2) ** 2)
    m.disk = pyo.Constraint(expr=m.x**2 + m.y**2 <= radius_sq)
    return m


def test_ipopt_is_available_as_3_14():
    info = solvers.probe("ipopt")
    assert info.available, info.detail
    assert info.version.startswith("3.14")


@pytest.mark.parametrize("name", AVAILABLE)
def test_solver_reaches_known_optimum(name):
    m = _circle_model()
    stats = solvers.solve(m, name, {"tol": 1e-10} if name != "ripopt" else None)
    assert pyo.value(m.obj) == pytest.approx((math.sqrt(5) - 1) ** 2, abs=1e-6)
    assert pyo.value(m.x) == pytest.approx(1 / math.sqrt(5), abs=1e-5)
    assert pyo.value(m.y) == pytest.approx(2 / math.sqrt(5), abs=1e-5)
    assert stats.iterations is not None and stats.iterations > 0


@pytest.mark.parametrize("name", AVAILABLE)
def test_iteration_limit_is_an_error(name):
    m = _circle_model()
    m.x.value, m.y.value = -5.0, 7.0
    with pytest.raises(SolveFailed, match="iteration limit"):
        solvers.solve(m, name, {"max_iter": 1})


def test_infeasible_is_an_error():
    m = _circle_model()
    m.far = pyo.Constraint(expr=m.x >= 2.0)  # outside the unit disk
    with pytest.raises(SolveFailed, match="infeasible"):
        solvers.solve(m, "ipopt")


def test_unknown_solver_is_a_clear_error():
    with pytest.raises(SolverUnavailable, match="not available"):
        solvers.solve(_circle_model(), "no_such_solver_xyz")


def test_parse_options():
    assert solvers.parse_options(["max_iter=5", "tol=1e-8", "mu_strategy=adaptive"]) == {
        "max_iter": 5,
        "tol": 1e-8,
        "mu_strategy": "adaptive",
    }
    with pytest.raises(MpdopfError, match="key=value"):
        solvers.parse_options(["max_iter"])
