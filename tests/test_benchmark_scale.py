"""The scale benchmark's parsing: IPOPT's timing statistics and the --rows argument."""

from __future__ import annotations

import argparse

import pytest

from mpdopf_pyomo.benchmark import scale_rows
from mpdopf_pyomo.benchmark_scale import ipopt_timing, main

LOG = """
Number of Iterations....: 44

Timing Statistics:

OverallAlgorithm....................:     25.231 (sys:      2.877 wall:     41.443)
 ComputeSearchDirection.............:     16.913 (sys:      2.633 wall:     28.800)
PDSystemSolverTotal.................:     17.615 (sys:      2.632 wall:     29.865)
 PDSystemSolverSolveOnce............:     17.055 (sys:      2.630 wall:     28.951)
Function Evaluations................:      5.157 (sys:      0.012 wall:      7.679)
 Objective function.................:      0.008 (sys:      0.000 wall:      0.008)
"""


def test_ipopt_timing_reads_the_split() -> None:
    t = ipopt_timing(LOG)
    assert t["iterations"] == 44
    assert t["ipopt_s"] == 41.443 and t["ipopt_cpu_s"] == pytest.approx(25.231 + 2.877)
    assert t["linear_algebra_s"] == 29.865 and t["fevals_s"] == 7.679  # top-level lines, not the indented ones
    assert ipopt_timing("EXIT: Optimal Solution Found.") == {}


def test_rows_argument() -> None:
    assert scale_rows("ieee123x5, 2561x24") == (("ieee123", 5), (2561, 24))
    assert scale_rows("ieee123-publishedx10") == (("ieee123-published", 10),)
    for bad in ("ieee123", "2561x", "x5", "2561x2h", "ieee123x5,,ieee13x1"):
        with pytest.raises(argparse.ArgumentTypeError):
            scale_rows(bad)


def test_bad_rows_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--rows", "2561"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("python -m mpdopf_pyomo.benchmark_scale: error: argument --rows: '2561' is not CASExHOURS "
                       "(e.g. ieee123x5 or 2561x24)")
