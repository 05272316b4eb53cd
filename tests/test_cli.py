"""The CLI's help, version and doctor commands."""

import json
import subprocess
import sys

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
