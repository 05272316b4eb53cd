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
