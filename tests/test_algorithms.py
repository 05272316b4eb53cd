"""The algorithm protocol: a third algorithm registered by name runs in the one driver loop (no change to
the driver, the pipeline or the CLI's checks); options are routed to the algorithm that takes them; the
stopping rules."""

from __future__ import annotations

import numpy as np
import pytest

from mpdopf_pyomo import algorithms
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition import solve_distributed
from mpdopf_pyomo.decomposition.algorithm import Algorithm, Step, StopRule, primal_residual
from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.pipeline import solve_case, solve_central


class Relay(Algorithm):
    """A toy method: the parent pins its children's power, the child its root voltage, both to the other
    side's last value (a Jacobi relay, ENApp without head prices), with an option of its own."""

    name = "relay"
    OPTIONS = {"blend": 1.0}

    def initialize(self, ctx):
        super().initialize(ctx)
        self.y = np.where(ctx.layout.kinds() == "v", ctx.case.settings.v_sub_pu**2, 0.0)
        self.parent = ctx.layout.holder("parent")
        self.v = {a: ctx.layout.kinds()[i] == "v" for a, i in ctx.layout.index.items()}

    def local_terms(self):
        idx = self.ctx.layout.index
        return {a: (np.zeros(len(i)), np.zeros(len(i)),
                    np.where(self.parent[a] != self.v[a], self.y[i], np.nan)) for a, i in idx.items()}

    def update(self, out, k):
        idx = self.ctx.layout.index
        new = self.y.copy()
        for a, i in idx.items():
            produced = self.parent[a] == self.v[a]
            new[i[produced]] = out[a]["x"][produced]
        new = self.y + self.options["blend"] * (new - self.y)
        dual = float(np.max(np.abs(new - self.y)))
        self.y = new
        return Step(primal_residual(self.ctx.layout, out), dual, sum(o["cost"] for o in out.values()), "relay")

    def summary(self):
        return {"blend": self.options["blend"]}


@pytest.fixture()
def relay():
    algorithms.register("relay", Relay)
    yield
    algorithms.unregister("relay")


@pytest.fixture(scope="module")
def case():
    return load_case("ieee123", 2)


def test_a_registered_algorithm_runs_in_the_driver(relay, case) -> None:
    assert "relay" in algorithms.names()
    central = solve_central(case).summary["objective_usd"]
    res = solve_case(case, "relay", executor="serial", blend=0.9, central_objective=central)
    d = res.summary["distributed"]
    assert d["algorithm"] == "relay" and d["converged"] and d["blend"] == 0.9
    assert set(res.extra_tables["convergence"]["method"]) == {"relay"}
    assert d["primal_residual"] <= 1e-4 and d["dual_residual"] <= 1e-4
    # no head prices: the children ignore what their power costs upstream, so not the optimum, but close
    assert 0 <= d["gap_to_central"] <= 1e-2, d["gap_to_central"]


def test_options_go_to_the_algorithm_that_takes_them(relay, case) -> None:
    with pytest.raises(CaseError, match="damping: not an option of the relay algorithm"):
        solve_distributed(case, "relay", executor="serial", damping=0.5)
    with pytest.raises(CaseError, match="unknown distributed algorithm 'nope'.*relay"):
        solve_distributed(case, "nope")
    with pytest.raises(ValueError, match="taken"):
        algorithms.register("admm", Relay)


def test_stop_rules() -> None:
    rule = StopRule(tol=1e-4, kind="gap", gap_tol=1e-4, reference=100.0)
    assert rule(Step(5e-5, 1.0, 100.005, "x"), None)  # dual residual ignored, gap 5e-5
    assert not rule(Step(5e-5, 0.0, 100.05, "x"), None)  # gap 5e-4
    assert not rule(Step(2e-4, 0.0, 100.0, "x"), None)  # primal residual too large
    free = StopRule(tol=1e-4, kind="gap", gap_tol=1e-4)
    assert not free(Step(5e-5, 1.0, 100.0, "x"), None)  # no reference: needs the previous objective
    assert free(Step(5e-5, 1.0, 100.0, "x"), Step(1e-3, 1.0, 100.001, "x"))
    assert StopRule(1e-4)(Step(5e-5, 5e-5, 1.0, "x"), None) and not StopRule(1e-4)(Step(5e-5, 2e-4, 1.0, "x"), None)
