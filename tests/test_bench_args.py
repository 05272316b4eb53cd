"""Bad input to the benchmark tools (``benchmark``, ``benchmark_scale``, ``feeders``, ``bench_distopf``):
argparse's usage error naming the option and the value, exit 2, before any benchmark runs and before
``--out`` is claimed (no folder, no marker); a failed timed run or another MpdopfError inside a tool is one
``error:`` line with its exit code. No benchmark runs here: every runner is replaced by one that fails
the test, and the runs of the failure tests are fakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from mpdopf_pyomo import bench_distopf, benchmark, benchmark_scale, feeders
from mpdopf_pyomo.errors import CaseError, RunFailed

ROOT = Path(__file__).resolve().parents[1]

#: Every function of the tools that would start a benchmark.
RUNNERS = [(benchmark, "bench_central"), (benchmark, "bench_commands"), (benchmark, "bench_large"),
           (benchmark, "profile"), (benchmark_scale, "bench_scale"), (feeders, "closing_row"),
           (feeders, "three_phase_row"), (feeders, "base_case_gap"), (feeders, "solve_row"),
           (bench_distopf, "run_rounds")]


class Ran(Exception):
    """Raised by a runner: the tool got past its argument checks."""


@pytest.fixture
def no_benchmark(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Runners that record their arguments and raise :class:`Ran`; distopf's environment and ipopt "exist"
    (so that bench_distopf would reach its rounds); the public feeders' folder is ``tmp_path``."""
    calls: dict[str, Any] = {}

    def runner(name: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            calls[name] = (args, kwargs)
            raise Ran(name)
        return run

    for owner, attr in RUNNERS:
        monkeypatch.setattr(owner, attr, runner(attr))
    monkeypatch.setattr(bench_distopf, "distopf_python", lambda env: Path(sys.executable))
    monkeypatch.setattr(bench_distopf, "_has_distopf", lambda py: True)
    monkeypatch.setattr("mpdopf_pyomo.solvers.ipopt_executable", lambda: "/opt/ipopt/bin/ipopt")
    monkeypatch.setattr(feeders, "REFERENCE", tmp_path)
    return calls


def _code(main: Callable[[list[str]], int], argv: list[str]) -> int | str | None:
    """``main(argv)``'s exit code: its return value, or argparse's SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


MAINS = {"benchmark": benchmark.main, "benchmark_scale": benchmark_scale.main, "feeders": feeders.main,
         "bench_distopf": bench_distopf.main}

#: (tool, arguments before --out, what the last stderr line must contain). ``{tmp}``: the test's tmp_path.
BAD: list[tuple[str, list[str], list[str]]] = [
    ("benchmark", ["--hours", "x"], ["argument --hours: 'x' is not a whole number"]),
    ("benchmark", ["--hours", "0"], ["argument --hours: '0' is not >= 1"]),
    ("benchmark", ["--hours", "-3"], ["argument --hours: '-3' is not >= 1"]),
    ("benchmark", ["--hours", "1,,2"], ["argument --hours: '1,,2': expected a comma-separated list without empty"]),
    ("benchmark", ["--hours", ""], ["argument --hours: '': expected"]),
    ("benchmark", ["--hours", "1,x"], ["argument --hours: '1,x': 'x' is not a whole number"]),
    ("benchmark", ["--hours", "1.5"], ["argument --hours: '1.5' is not a whole number"]),
    ("benchmark", ["--repeat", "0"], ["argument --repeat: '0' is not >= 1"]),
    ("benchmark", ["--repeat", "x"], ["argument --repeat: 'x' is not a whole number"]),
    ("benchmark", ["--case", "nosuch"], ["argument --case: nosuch: no such case", "ieee123", "case33bw"]),
    ("benchmark", ["--formulation", "foo"], ["argument --formulation: invalid choice: 'foo'"]),
    ("benchmark", ["--distributed-hours", "0"], ["argument --distributed-hours: '0' is not >= 1"]),
    ("benchmark", ["--large", "12x"], ["argument --large: '12x': '12' is not >= 129"]),
    ("benchmark", ["--large", "0x5"], ["argument --large: '0x5': '0' is not >= 129"]),
    ("benchmark", ["--large", "1025x30"], ["argument --large: '1025x30': '30' is not in 1..24"]),
    ("benchmark", ["--large", "x5"], ["argument --large: 'x5': '' is not a whole number"]),
    ("benchmark", ["--large", "1025"], ["argument --large: '1025' is not BUSESxHOURS"]),
    ("benchmark", ["--large", "1025x5,,2561x24"], ["argument --large: '1025x5,,2561x24': expected"]),
    ("benchmark", ["--large", ""], ["argument --large: '': expected"]),
    ("benchmark", ["--large", "1025x5", "--algorithms", "central,foo"],
     ["argument --algorithms: 'foo' is not an algorithm (choose from central, admm, enapp)"]),
    ("benchmark", ["--large", "1025x5", "--areas", "1"], ["argument --areas: '1' is not >= 2", "or auto"]),
    ("benchmark", ["--profile", "abc"], ["argument --profile: 'abc' is not a whole number"]),
    ("benchmark", ["--profile", "0"], ["argument --profile: '0' is not >= 1"]),
    ("benchmark", ["--profile", "1", "--case", "nosuch"], ["argument --case: nosuch: no such case"]),
    ("benchmark", ["--commands", "--repeat", "0"], ["argument --repeat: '0' is not >= 1"]),
    ("benchmark", ["--commands", "--baseline", "{tmp}/no-tree"],
     ["argument --baseline: '{tmp}/no-tree' is not a source tree of mpdopf_pyomo"]),
    ("benchmark", ["--commands", "--large"], ["--commands and --large are two modes; give one"]),
    ("benchmark", ["--profile", "5", "--commands"], ["--profile and --commands are two modes; give one"]),
    ("benchmark", ["--baseline", str(ROOT)], ["--baseline does not apply to the default table (only to --commands)"]),
    ("benchmark", ["--profile", "5", "--hours", "5"], ["--hours does not apply to --profile (only to the default"]),
    ("benchmark", ["--areas", "4"], ["--areas does not apply to the default table (only to --large)"]),
    ("benchmark", ["--profile-full"], ["--profile-full does not apply to the default table (only to --profile)"]),
    ("benchmark", ["--commands", "--formulation", "socp"], ["--formulation does not apply to --commands"]),
    ("benchmark", ["--large", "--repeat", "2"], ["--repeat does not apply to --large (only to --commands or"]),
    ("benchmark_scale", ["--rows", "2561"], ["argument --rows: '2561' is not CASExHOURS"]),
    ("benchmark_scale", ["--rows", ""], ["argument --rows: '': expected"]),
    ("benchmark_scale", ["--rows", "ieee123x5,"], ["argument --rows: 'ieee123x5,': expected"]),
    ("benchmark_scale", ["--rows", "ieee123x0"], ["argument --rows: 'ieee123x0': '0' is not >= 1"]),
    ("benchmark_scale", ["--rows", "nosuchx5"], ["argument --rows: nosuch: no such case", "ieee123"]),
    ("benchmark_scale", ["--rows", "100x5"], ["argument --rows: '100x5': '100' is not >= 129"]),
    ("benchmark_scale", ["--rows", "2561x30"], ["argument --rows: '2561x30': '30' is not in 1..24"]),
    ("benchmark_scale", ["--repeat", "0"], ["argument --repeat: '0' is not >= 1"]),
    ("benchmark_scale", ["--repeat-large", "x"], ["argument --repeat-large: 'x' is not a whole number"]),
    ("feeders", ["table", "--hours", "x"], ["argument --hours: 'x' is not a whole number"]),
    ("feeders", ["table", "case33bw", "--hours", "0"], ["argument --hours: '0' is not >= 1"]),
    ("feeders", ["solve", "{tmp}/Master.dss", "--hours", "-1"], ["argument --hours: '-1' is not >= 1"]),
    ("feeders", ["base", "{tmp}/Master.dss", "--hours", "2"], ["argument --hours: base does not take it"]),
    ("feeders", ["three-phase", "ieee13", "--hours", "3"], ["argument --hours: three-phase does not take it"]),
    ("feeders", ["table", "nosuch"], ["unknown feeder(s) nosuch (the table knows ieee13,", "case33bw"]),
    ("feeders", ["three-phase", "nosuch"], ["unknown case(s) nosuch (the three-phase table knows ieee13,"]),
    ("feeders", ["base", "nosuch"], ["feeder file(s) not found: nosuch (give a master .dss file or one of ieee13,"]),
    ("feeders", ["solve", "nosuch.dss"], ["feeder file(s) not found: nosuch.dss"]),
    ("feeders", ["nosuchcmd"], ["argument what: invalid choice: 'nosuchcmd'"]),
    ("bench_distopf", ["--repeat", "0"], ["argument --repeat: '0' is not >= 1"]),
    ("bench_distopf", ["--repeat", "-1"], ["argument --repeat: '-1' is not >= 1"]),
    ("bench_distopf", ["--repeat", "x"], ["argument --repeat: 'x' is not a whole number"]),
]


@pytest.mark.parametrize("tool,args,expected", BAD, ids=[f"{t} {' '.join(a)}" for t, a, _ in BAD])
def test_bad_argument_is_a_usage_error_before_anything(
        tmp_path: Path, no_benchmark: dict[str, Any], capsys: pytest.CaptureFixture[str],
        tool: str, args: list[str], expected: list[str]) -> None:
    (tmp_path / "Master.dss").write_text("! not read\n")
    out = tmp_path / "results"
    code = _code(MAINS[tool], [a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(out)])
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert code == 2, captured.err
    assert last.startswith(f"python -m mpdopf_pyomo.{tool}: error: "), last  # argparse's own line
    for part in expected:
        assert part.replace("{tmp}", str(tmp_path)) in last, last
    assert "Traceback" not in captured.err and captured.out == ""
    assert no_benchmark == {}  # no runner was called
    assert not out.exists()  # --out not claimed: no folder, no marker


#: Valid variants of the bad inputs above reach the runner with the parsed values (so each bad case
#: fails for its value, not for the rest of its command line).
GOOD: list[tuple[str, list[str], str, Callable[[tuple[Any, ...], dict[str, Any]], bool]]] = [
    ("benchmark", ["--hours", " 1, 5 ", "--repeat", "2", "--case", "ieee13", "--no-distributed"], "bench_central",
     lambda a, k: a[:3] == ("ieee13", (1, 5), 2)),
    ("benchmark", ["--large"], "bench_large", lambda a, k: a[0] == benchmark.LARGE_ROWS),
    ("benchmark", ["--large", "129X1,1025x24", "--algorithms", "central,enapp", "--areas", "AUTO"], "bench_large",
     lambda a, k: a == (((129, 1), (1025, 24)), ("central", "enapp"), "auto")),
    ("benchmark", ["--profile", "3", "--case", "ieee13"], "profile", lambda a, k: a[:2] == ("ieee13", 3)),
    ("benchmark", ["--profile", "3", "--profile-full"], "profile", lambda a, k: a == ("ieee123", 3, True)),
    ("benchmark", ["--commands", "--repeat", "1", "--baseline", str(ROOT)], "bench_commands",
     lambda a, k: a == (1,) and k["baseline"] == str(ROOT)),
    ("benchmark_scale", ["--rows", "ieee123x5, 2561x24", "--repeat-large", "2"], "bench_scale",
     lambda a, k: a[0] == (("ieee123", 5), (2561, 24)) and a[3] == 2),
    ("feeders", ["table", "case33bw", "--hours", "3"], "closing_row", lambda a, k: a == ("case33bw", 3)),
    ("feeders", ["solve", "{tmp}/Master.dss"], "solve_row", lambda a, k: a[1:] == (5, "central")),
    ("feeders", ["three-phase", "ieee13"], "three_phase_row", lambda a, k: a[:2] == ("ieee13", 5)),
    ("bench_distopf", ["--repeat", "1"], "run_rounds", lambda a, k: a[2] == 1),
]


@pytest.mark.parametrize("tool,args,runner,check", GOOD, ids=[f"{t} {' '.join(a)}" for t, a, _, _ in GOOD])
def test_valid_arguments_reach_the_benchmark_parsed(
        tmp_path: Path, no_benchmark: dict[str, Any], tool: str, args: list[str], runner: str,
        check: Callable[[tuple[Any, ...], dict[str, Any]], bool]) -> None:
    (tmp_path / "Master.dss").write_text("! not read\n")
    with pytest.raises(Ran):
        MAINS[tool]([a.replace("{tmp}", str(tmp_path)) for a in args] + ["--out", str(tmp_path / "results")])
    assert list(no_benchmark) == [runner]
    assert check(*no_benchmark[runner]), no_benchmark[runner]
    assert not (tmp_path / "results").exists()  # nothing written: the claim was undone


SUBPROCESS = [
    ("benchmark", ["--hours", "x"], "argument --hours: 'x' is not a whole number"),
    ("benchmark", ["--large", "12x"], "argument --large: '12x': '12' is not >= 129"),
    ("benchmark_scale", ["--rows", "nosuchx5"], "argument --rows: nosuch: no such case"),
    ("feeders", ["table", "--hours", "0"], "argument --hours: '0' is not >= 1"),
    ("bench_distopf", ["--repeat", "0"], "argument --repeat: '0' is not >= 1"),
]


@pytest.mark.parametrize("tool,args,expected", SUBPROCESS, ids=[f"{t} {' '.join(a)}" for t, a, _ in SUBPROCESS])
def test_bad_argument_from_the_real_command_line(tmp_path: Path, tool: str, args: list[str], expected: str) -> None:
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", f"mpdopf_pyomo.{tool}", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("usage: ")
    assert proc.stderr.splitlines()[-1].startswith(f"python -m mpdopf_pyomo.{tool}: error: {expected}")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert os.listdir(tmp_path) == []  # no --out folder, no marker, nothing beside


# ------------------------------------------------------------------------------------------------------
# Errors inside a tool, after its arguments passed: one line, the error's own exit code, no table
# ------------------------------------------------------------------------------------------------------

def _failed_run(returncode: int, stderr: str) -> Callable[..., dict[str, Any]]:
    def run(cmd: list[str], env: Any = None, cwd: Any = None) -> dict[str, Any]:
        return {"wall_s": 1.0, "t0": 0.0, "t1": 1.0, "returncode": returncode, "stdout": "", "stderr": stderr,
                "cpu_s": 1.0, "peak_mb": 10.0}
    return run


@pytest.mark.parametrize("returncode,code", [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (1, 1), (-9, 1), (7, 1)])
def test_failed_run_ends_the_tool_with_its_own_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        returncode: int, code: int) -> None:
    """A fake first solve fails: ``benchmark`` exits with that run's code (1 when it is none of the CLI's
    codes), one line naming the run and the run's own last line, and leaves no --out behind."""
    monkeypatch.setattr(benchmark, "run_process",
                        _failed_run(returncode, "Traceback (most recent call last):\n  ...\nerror: OpenDSS said no\n"))
    out = tmp_path / "results"
    assert benchmark.main(["--hours", "1", "--repeat", "1", "--no-distributed", "--out", str(out)]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: solve --case ieee123 --hours 1 failed (exit {returncode}): OpenDSS said no"
    assert not any(line.startswith("Traceback") for line in err)
    assert not out.exists()


def test_failed_distopf_round_is_its_code_not_always_4(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """bench_distopf used to exit 4 for any failed run: now our solve's own code (5: the OpenDSS check)
    and 1 for a crash of distopf's child."""
    monkeypatch.setattr(bench_distopf, "distopf_python", lambda env: Path(sys.executable))
    monkeypatch.setattr(bench_distopf, "_has_distopf", lambda py: True)
    monkeypatch.setattr("mpdopf_pyomo.solvers.ipopt_executable", lambda: "/opt/ipopt/bin/ipopt")
    ok = {"wall_s": 1.0, "t0": 0.0, "t1": 1.0, "returncode": 0, "cpu_s": 1.0, "peak_mb": 10.0, "stderr": "",
          "stdout": '{"distopf": "1.0.2"}'}
    for failing, returncode, expected in (("mpdopf", 5, 5), ("distopf", 1, 1)):
        def run(cmd: list[str], env: Any = None, cwd: Any = None) -> dict[str, Any]:
            is_distopf = "-c" in cmd
            if is_distopf == (failing == "distopf"):
                return {**ok, "returncode": returncode, "stdout": "", "stderr": "error: it broke\n"}
            return ok
        monkeypatch.setattr(benchmark, "run_process", run)
        out = tmp_path / f"out-{failing}"
        assert bench_distopf.main(["--repeat", "1", "--out", str(out)]) == expected
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"error: {failing} failed (exit {returncode}): it broke"
        assert not out.exists()


def test_case_error_inside_a_tool_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Any MpdopfError raised while benchmarking (here: the generated feeder fails its voltage check) is
    its message as one line and its exit code (with_bench_folder), not a traceback."""
    def bad(*args: Any, **kwargs: Any) -> Any:
        raise CaseError("generated feeder: V = 0.81 pu at s03_65\x1b[2J, below the study's limit")

    monkeypatch.setattr(benchmark_scale, "bench_scale", bad)
    out = tmp_path / "results"
    assert benchmark_scale.main(["--rows", "2561x5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == r"error: generated feeder: V = 0.81 pu at s03_65\x1b[2J, below the study's limit"
    assert not out.exists()


def test_run_failed_codes() -> None:
    assert [RunFailed("x", c).exit_code for c in (2, 3, 4, 5, 6)] == [2, 3, 4, 5, 6]
    assert [RunFailed("x", c).exit_code for c in (0, 1, 7, 130, -15)] == [1, 1, 1, 1, 1]
