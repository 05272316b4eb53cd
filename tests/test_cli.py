"""The CLI's help, version and doctor commands."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mpdopf_pyomo import __version__
from mpdopf_pyomo.cli import main


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("doctor", "install-solvers"):
        assert command in result.output


def test_doctor_reports_ipopt_through_python_m():
    proc = subprocess.run(
        [sys.executable, "-m", "mpdopf_pyomo", "doctor", "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    ipopt = next(s for s in report["solvers"] if s["name"] == "ipopt")
    assert ipopt["available"] and ipopt["version"].startswith("3.14")
    assert report["packages"]["pyomo"]
    assert report["opendss_engine"] and "unavailable" not in report["opendss_engine"]


def test_solver_not_installed_is_one_line_and_no_output(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", "ieee123", "--hours", "1", "--solver",
         "bonmin_not_here", "--no-plots", "--out", str(out), "--json"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: solver 'bonmin_not_here' is not available"), proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_solve_start_and_verbose_validation(tmp_path):
    """--start 18 solves the evening window; the check prints one worst-hour line, -v one line per hour."""
    args = ["solve", "--case", "ieee123", "--hours", "2", "--start", "18", "--no-plots"]
    quiet = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0, quiet.output
    assert "worst hour" in quiet.output and "    hour  1" not in quiet.output
    loud = CliRunner().invoke(main, args + ["-v", "--out", str(tmp_path / "b")])
    assert loud.exit_code == 0, loud.output
    assert "    hour  1" in loud.output and "    hour  2" in loud.output
    import pandas as pd

    sub = pd.read_csv(tmp_path / "a" / "substation.csv")
    assert sub["clock_hour"].tolist() == [18, 19]
    assert sub["price_usd_per_kwh"].tolist() == pytest.approx([0.19593546, 0.3018066])  # the evening prices
