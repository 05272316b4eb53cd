"""The IPOPT executable route (Pyomo's newer ipopt interface) sends every free variable to IPOPT -- the NL
writer's linear presolve stays off: it quadruples the iterations of the tutorial's case33bw feeder -- loads
them all back, and calls ``when_solver_runs`` callbacks once, after the NL write."""

from __future__ import annotations

import re

import pyomo.environ as pyo
import pytest

from mpdopf_pyomo import problem, solvers
from mpdopf_pyomo.case import load_case

pytestmark = pytest.mark.skipif(solvers.probe("ipopt").route != "executable",
                                reason="no IPOPT executable here (`make setup` builds one)")


def _model(hours: int = 1):
    case = load_case("ieee123", hours, warn=None)
    m = problem.build_model(case, "exact")
    problem.initialize(m, problem.flat_start(case))
    return m


def test_no_presolve_and_every_variable_comes_back(capfd):
    m = _model()
    free = [v for v in m.component_data_objects(pyo.Var, active=True) if not v.fixed]
    solvers.solve(m, "ipopt", {}, tee=True)
    log = capfd.readouterr().out
    n_nlp = int(re.search(r"Total number of variables\.*:\s*(\d+)", log).group(1))
    assert n_nlp == len(free)
    assert all(v.value is not None for v in free)
    worst = max(abs(pyo.value(c.body) - (pyo.value(c.upper) if c.upper is not None else pyo.value(c.lower)))
                for c in m.component_data_objects(pyo.Constraint, active=True) if c.equality)
    assert worst < 1e-7


def test_callback_runs_once_after_the_nl_file_is_written():
    m = _model()
    seen = []
    with solvers.when_solver_runs(lambda: seen.append("run")):
        solvers.solve(m, "ipopt", {})
        solvers.solve(m, "ipopt", {})
    assert seen == ["run"]
    assert not solvers._on_solver_run  # unregistered on exit
