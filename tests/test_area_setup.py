"""One-time set-up and first solves of the area solvers (issue 14, the 1,025-bus row): Pyomo's environment
helper does not look for Windows runtimes, and an area's first solve starts with a smaller barrier than its warm
re-solves override."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mpdopf_pyomo import formulations, solvers
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition.area_solver import COLD_START_OPTIONS, WARM_START_OPTIONS, AreaSolver, AreaSpec
from mpdopf_pyomo.decomposition.partition import with_areas


def test_process_setup_does_not_look_for_windows_runtimes_off_windows():
    code = ("import ctypes.util, sys; asked = []; find = ctypes.util.find_library; "
            "ctypes.util.find_library = lambda n: asked.append(n) or find(n); "
            "from mpdopf_pyomo.decomposition.area_solver import prepare_process; prepare_process('ipopt'); "
            "from pyomo.common.env import CtypesEnviron; "
            "print(sorted(asked), [d._loaded for d in CtypesEnviron.DLLs if d._loaded])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    if not solvers.probe("cyipopt").available:
        pytest.skip("the library route of IPOPT is not installed")
    assert sys.platform.startswith("linux")
    assert out.stdout.split() == ["[]", "[]"]  # no find_library call (each ran gcc and ldconfig); none loaded


@pytest.fixture(scope="module")
def spec():
    if not solvers.probe("cyipopt").available:
        pytest.skip("the library route of IPOPT is not installed")
    f = formulations.get("exact")
    case = load_case("ieee123", 1)
    case = with_areas(case, 2, f.cuttable(case))
    return AreaSpec(case, 2, "exact", "ipopt", {}, f.area_start(case))


def _solve_twice(spec: AreaSpec) -> list[dict]:
    """The IPOPT options of a first and a second (warm) solve of one (child) area, as ENApp's first round
    poses it: its boundary voltage pinned at the start, its head power priced at the substation's."""
    sol = AreaSolver(spec)
    seen: list[dict] = []
    base = sol._Problem

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self, *a):  # type: ignore[no-untyped-def]
            super().__init__(*a)
            seen.append({})

        def add_option(self, key, value):  # type: ignore[no-untyped-def]
            seen[-1][key] = value
            return super().add_option(key, value)

    sol._Problem = Recording
    case = spec.case
    kinds = np.array([k[0] for k in sol.ports()])
    pin = np.where(kinds == "v", sol.port_state()["x"], np.nan)
    price = np.array([case.profile.at[t, "price"] * case.settings.dt_h * case.bases.s_kva if kind == "P" else 0.0
                      for kind, _, t in sol.ports()])
    for _ in range(2):
        sol.solve(np.zeros(len(pin)), price, pin)
    return seen


def test_first_area_solve_uses_the_cold_barrier_and_warm_solves_override_it(spec):
    first, warm = _solve_twice(spec)
    assert first["mu_init"] == COLD_START_OPTIONS["mu_init"] == 1e-2
    assert warm["mu_init"] == WARM_START_OPTIONS["mu_init"]
    assert "warm_start_init_point" not in first and warm["warm_start_init_point"] == "yes"


def test_user_mu_init_wins_over_the_cold_barrier(spec):
    spec = AreaSpec(spec.case, spec.area, spec.formulation, spec.solver, {"mu_init": 0.1}, spec.start)
    first, warm = _solve_twice(spec)
    assert first["mu_init"] == warm["mu_init"] == 0.1
