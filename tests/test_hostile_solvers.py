"""Hostile solver options, stopping limits and distributed settings (issue 10), through the CLI.

Every bad input is exit 2 with exactly one line on stderr naming the option (and the solver), before any
model is built; a solve that stops short names the reason in plain words (exit 4).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mpdopf_pyomo import solvers
from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.errors import MpdopfError, SolveFailed
from mpdopf_pyomo.pipeline import solve_case, solve_central

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, tmp: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``solve --case ieee123 --hours 1`` with ``args`` in a fresh interpreter (``--json``: no progress lines)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", "ieee123", "--hours", "1", "--no-plots",
           "--no-validate", "--json", "--out", str(tmp / "run"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)


def one_error_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Assert exit ``code``, no traceback, nothing written, and one stderr line holding every word."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------------
# --solver-option: checked before anything is built
# ------------------------------------------------------------------------------------------------

BAD_OPTIONS = [  # (option, what the line must say besides the key)
    ("no_such_option=3", "unknown solver option"),
    ("max_iter=abc", "needs an integer"),
    ("tol=-1", "0 < tol"),
    ("max_cpu_time=0", "0 < max_cpu_time"),
]


def test_bad_ipopt_option_is_bad_input(tmp_path):
    proc = run_cli("--solver-option", "no_such_option=3", tmp=tmp_path)
    one_error_line(proc, 2, "ipopt", "no_such_option", "unknown solver option")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("algorithm", ["central", "admm"])
@pytest.mark.parametrize("option, said", BAD_OPTIONS)
def test_bad_ipopt_options_in_process(tmp_path, algorithm, option, said):
    """The same check through click in this process (a subprocess per variant would cost ~1 s each)."""
    r = CliRunner().invoke(main, ["solve", "--case", "ieee123", "--hours", "1", "--algorithm", algorithm,
                                  "--json", "--out", str(tmp_path / "run"), "--solver-option", option])
    assert r.exit_code == 2, r.output
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ipopt: ")
    assert option.split("=")[0] in r.stderr and said in r.stderr
    assert not (tmp_path / "run").exists()


def test_bad_option_with_admm_is_bad_input_not_a_traceback(tmp_path):
    proc = run_cli("--algorithm", "admm", "--solver-option", "tol=-1", tmp=tmp_path)
    one_error_line(proc, 2, "ipopt", "tol=-1", "0 < tol")


def test_bad_ripopt_option_is_bad_input(tmp_path):
    # ripopt itself ignores an unknown name and solves with its defaults (ieee123 5 h: more than 12 minutes)
    proc = run_cli("--solver", "ripopt", "--hours", "5", "--solver-option", "no_such_option=3", tmp=tmp_path,
                   timeout=30)
    one_error_line(proc, 2, "ripopt", "no_such_option", "unknown solver option")


@pytest.mark.parametrize("option, said", [("max_iter=abc", "needs an integer"), ("tol=-1", "tol > 0"),
                                          ("max_itr=5", "did you mean 'max_iter'"),
                                          ("mu_strategy=fast", "adaptive, monotone"),
                                          ("warm_start_init_point=maybe", "yes or no")])
def test_bad_ripopt_options(option, said):
    with pytest.raises(MpdopfError, match=said) as err:
        solvers.check_options("ripopt", solvers.parse_options([option]))
    assert err.value.exit_code == 2 and option.split("=")[0] in str(err.value)


def test_control_characters_are_escaped_in_the_error_line(tmp_path):
    proc = run_cli("--solver-option", "no\x1b[31msuch\nkey\x07=3", tmp=tmp_path)
    line = one_error_line(proc, 2, "unknown solver option", r"no\x1b[31msuch\nkey\x07")
    assert "\x1b" not in line and "\x07" not in line


def test_check_options_types_and_ranges():
    # IPOPT's own registry decides; values are converted to the type IPOPT expects
    assert solvers.check_options("ipopt", {"tol": 1, "max_iter": 1e3, "mu_strategy": "adaptive"}) == {
        "tol": 1.0, "max_iter": 1000, "mu_strategy": "adaptive"}
    for bad, said in [({"tol": float("nan")}, "tol=nan"), ({"mu_strategy": "fast"}, "monotone, adaptive"),
                      ({"print_level": 13}, "0 <= print_level <= 12"), ({"max_iter": 2.5}, "integer")]:
        with pytest.raises(MpdopfError, match=said) as err:
            solvers.check_options("ipopt", bad)
        assert err.value.exit_code == 2
    assert solvers.check_options("ripopt", {"tol": 1, "max_wall_time": float("inf")}) == {
        "tol": 1.0, "max_wall_time": 0.0}  # ripopt: 0 = no limit
    with pytest.raises(MpdopfError, match="ripopt needs max_wall_time >= 0"):
        solvers.check_options("ripopt", {"max_wall_time": -1})
    assert solvers.check_options("some-other-solver", {"anything": "x"}) == {"anything": "x"}  # passed through


def test_default_limits_yield_to_the_users():
    assert solvers.default_limits("ripopt", {}) == {"max_iter": solvers.DEFAULT_MAX_ITER,
                                                   "max_wall_time": solvers.DEFAULT_MAX_WALL_S}
    assert solvers.default_limits("ipopt", {"max_iter": 50, "max_cpu_time": 9.0}, "3.14.11") == {}
    assert solvers.default_limits("ipopt", {}, "3.12.4") == {"max_iter": solvers.DEFAULT_MAX_ITER}  # no wall limit
    assert solvers.default_limits("glpk", {}) == {}


# ------------------------------------------------------------------------------------------------
# Stop reasons in plain words
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, words", [("max_cpu_time=0.01", "the CPU time limit (0.01 s)"),
                                           ("max_wall_time=0.01", "the wall time limit (0.01 s)")])
def test_ipopt_stop_reason_in_plain_words(tmp_path, option, words):
    proc = run_cli("--solver-option", option, tmp=tmp_path)
    line = one_error_line(proc, 4, "ipopt: stopped at " + words, f"--solver-option {option.split('=')[0]}=")
    assert "Unknown status" not in line and "b'" not in line


def test_ripopt_wall_time_limit_stops_fast_with_the_reason(tmp_path):
    t0 = time.perf_counter()
    proc = run_cli("--solver", "ripopt", "--hours", "5", "--solver-option", "max_cpu_time=0.5", tmp=tmp_path,
                   timeout=30)
    assert time.perf_counter() - t0 < 15
    line = one_error_line(proc, 4, "ripopt: stopped at the wall time limit (0.5 s)", "max_wall_time=SECONDS")
    assert r"\x3a" not in line and "iteration limit" not in line


@pytest.mark.parametrize("solver", ["ripopt", "ipopt"])
def test_iteration_limit_in_plain_words(solver):
    with pytest.raises(SolveFailed, match=r"stopped at the iteration limit \(3\) .*max_iter=N") as err:
        solve_central(load_case("ieee123", 1), solver=solver, options={"max_iter": 3})
    assert "\\x" not in str(err.value)


def test_stop_reason_table():
    assert solvers.stop_reason("ripopt", "Maximum CPU Time Exceeded")[1] == "the wall time limit"
    assert solvers.stop_reason("ipopt", "Maximum CPU time exceeded.")[1] == "the CPU time limit"
    assert "restoration" in solvers.stop_reason("ipopt", "Restoration phase failed, algorithm doesn't know")[1]
    assert "infeasib" in solvers.stop_reason("ipopt", "Algorithm converged to a point of local infeasibility.")[1]
    assert solvers.stop_reason("x", "", "maxIterations")[1] == "the iteration limit"


# ------------------------------------------------------------------------------------------------
# Distributed settings
# ------------------------------------------------------------------------------------------------


def test_bad_tol_is_bad_input(tmp_path):
    proc = run_cli("--algorithm", "admm", "--tol", "1e9", tmp=tmp_path)
    one_error_line(proc, 2, "--tol 1e+09", "1e-10 <= tol <= 0.01 pu")


@pytest.mark.parametrize("settings", [dict(tol=1e9), dict(tol=-1.0), dict(tol=0.0), dict(tol=float("nan")),
                                      dict(tol=1e-11), dict(rho=0.0), dict(rho=-5.0), dict(rho=float("nan")),
                                      dict(rho=float("inf")), dict(max_iter=0)])
def test_bad_distributed_settings_in_the_python_api(settings):
    case = load_case("ieee123", 1)
    with pytest.raises(MpdopfError) as err:
        solve_case(case, "admm", executor="serial", **settings)
    name = next(iter(settings))
    assert err.value.exit_code == 2 and str(err.value).startswith(f"{name} = "), str(err.value)
    assert "--" not in str(err.value)  # the API names its keyword; the CLI prints err.value.cli_message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_invalid_scheduler_port_is_bad_input_at_once(tmp_path):
    t0 = time.perf_counter()
    proc = run_cli("--algorithm", "admm", "--scheduler", "tcp://127.0.0.1:99999", tmp=tmp_path, timeout=30)
    one_error_line(proc, 2, "--scheduler", "tcp://127.0.0.1:99999", "outside 1-65535")
    assert time.perf_counter() - t0 < 8


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "not an address", "foo://127.0.0.1:8786",
                                     "tcp://:8786", "tcp://127.0.0.1:0"])
def test_malformed_scheduler_addresses(address):
    with pytest.raises(MpdopfError, match="scheduler = .*: not a Dask scheduler address") as err:
        solve_case(load_case("ieee123", 1), "admm", scheduler=address)
    assert err.value.exit_code == 2


def test_unreachable_scheduler_fails_within_seconds(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    proc = run_cli("--algorithm", "admm", "--scheduler", address, tmp=tmp_path, timeout=30)
    one_error_line(proc, 6, "cannot reach the Dask scheduler", address)
    assert time.perf_counter() - t0 < 8
