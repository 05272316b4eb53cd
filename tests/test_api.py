"""The top-level Python API: mp.solve / mp.validate / mp.load_case, as a notebook user calls them."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mpdopf_pyomo as mp
from mpdopf_pyomo.errors import CaseError, MpdopfError


def test_import_is_light():
    """`import mpdopf_pyomo` loads neither Pyomo nor pandas (the CLI imports it for --version)."""
    code = "import sys, mpdopf_pyomo; print(sorted(m for m in ('pyomo', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_solve_validate_and_repr():
    """One hour of ieee123: the objective the central tests pin, validated in OpenDSS, a readable repr."""
    res = mp.solve("ieee123", hours=1)
    assert isinstance(res, mp.Results)
    assert res.summary["objective_usd"] == pytest.approx(151.2217, abs=5e-4)
    v = res.summary["validation"]
    assert v["passed"] and v["max_abs_dv_pu"] < 1e-6
    again = mp.validate(res)
    assert again["max_abs_dv_pu"] == pytest.approx(v["max_abs_dv_pu"], abs=1e-9)
    text = repr(res)
    assert text.startswith("<Results case ieee123, 1 h, central") and "151.2217 USD" in text and "passed" in text
    assert "<table>" in res._repr_html_()


def test_solve_takes_a_loaded_case_and_distributed_keywords():
    case = mp.load_case("ieee123", 1)
    central = mp.solve(case, validate=False)
    assert "validation" not in central.summary
    admm = mp.solve(case, algorithm="admm", executor="serial", validate=False)
    assert admm.summary["objective_usd"] == pytest.approx(central.summary["objective_usd"], rel=1e-4)


def test_api_errors_speak_python_not_cli():
    with pytest.raises(CaseError) as bad_hours:
        mp.solve(mp.load_case("ieee123", 1), hours=5)
    assert "load_case" in str(bad_hours.value) and "--" not in str(bad_hours.value)
    with pytest.raises(MpdopfError) as bad_option:
        mp.solve("ieee123", hours=1, options={"no_such_option": 3}, validate=False)
    assert "no_such_option" in str(bad_option.value)
    with pytest.raises(AttributeError):
        mp.no_such_name  # noqa: B018


@pytest.fixture(scope="module")
def one_hour():
    return mp.load_case("ieee123", 1)


@pytest.mark.parametrize("keywords, needle", [
    (dict(tol=1e9), "tol = 1e+09: the stopping tolerance"),
    (dict(rho=-1.0), "rho = -1: the ADMM penalty"),
    (dict(max_iter=0), "max_iter = 0: the distributed iteration cap"),
    (dict(damping=0.0), "damping = 0: the ENApp damping"),
    (dict(warm_start="hot"), "warm_start = 'hot': choose one of enapp, none"),
    (dict(n_areas=500), "n_areas = 500: choose between 1 and"),
    (dict(scheduler="tcp://127.0.0.1:99999"), "scheduler = 'tcp://127.0.0.1:99999': not a Dask scheduler"),
    (dict(scheduler="tcp://127.0.0.1:8786", executor="serial"), "scheduler = 'tcp://127.0.0.1:8786' needs executor"),
    (dict(executor="cloud"), "unknown executor 'cloud'"),
])
def test_api_errors_name_settings_not_flags(one_hour, keywords, needle):
    """Bad settings from Python: the message names the keyword (``tol = ...``), never a CLI flag."""
    with pytest.raises(MpdopfError) as info:
        mp.solve(one_hour, algorithm="admm", validate=False, **keywords)
    assert needle in str(info.value), str(info.value)
    assert "--" not in str(info.value)


def test_api_errors_of_the_horizon_and_the_iteration_cap(one_hour):
    for kw in (dict(hours=0), dict(hours=10**6), dict(hours=5, start=22)):
        with pytest.raises(CaseError) as info:
            mp.solve("ieee123", validate=False, **kw)
        assert "--" not in str(info.value), str(info.value)
    with pytest.raises(CaseError, match="start = 3, but the loaded case starts at clock hour 11"):
        mp.solve(one_hour, start=3, validate=False)
    with pytest.raises(mp.errors.SolveFailed) as info:
        mp.solve(one_hour, algorithm="enapp", max_iter=1, executor="serial", validate=False)
    assert "raise max_iter, or set keep_last=True" in str(info.value) and "--" not in str(info.value)
    assert "--max-iter" in info.value.cli_message  # what the CLI prints instead


def test_solve_with_start_plans_that_window():
    """mp.solve(start=18) passes the window to load_case: the evening hours and their prices."""
    res = mp.solve("ieee123", hours=1, start=18, validate=False)
    sub = res.substation
    assert sub["clock_hour"].tolist() == [18]
    assert sub["price_usd_per_kwh"].tolist() == pytest.approx([0.19593546])
    assert res.summary["energy_cost_usd"] == pytest.approx(float(sub["p_kw"].iloc[0] * 0.19593546), rel=1e-9)
