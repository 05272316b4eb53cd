"""The local Dask cluster of ``solve --executor dask`` as a user meets it in a terminal: Ctrl-C (SIGINT to
the whole process group) ends the run with one line and exit 130 and leaves no process behind; a worker
killed mid-run is exit 6 with one line naming the worker and its areas."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]


def _solve(out: Path) -> subprocess.Popen:
    """`solve --executor dask --workers 2` on ieee123 24 h (long enough to act during the iterations), in its
    own session so that a signal can go to its whole process group as a terminal's Ctrl-C does."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", "ieee123", "--hours", "24",
                             "--algorithm", "admm", "--executor", "dask", "--workers", "2", "--no-plots",
                             "--no-validate", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def _wait_for(proc: subprocess.Popen, pattern: str, timeout: float = 90) -> None:
    timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
    timer.start()
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if re.search(pattern, line):
                return
    finally:
        timer.cancel()
    raise AssertionError(f"never saw {pattern!r}: {''.join(lines)}")


def _finish(proc: subprocess.Popen) -> tuple[int, list[str]]:
    """Exit code and the stderr lines that are not progress lines."""
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    return proc.returncode, [ln for ln in rest.splitlines() if not ln.startswith("[")]


def _group_alive(pgid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_ctrl_c_is_one_line_and_leaves_no_worker(tmp_path):
    out = tmp_path / "run"
    proc = _solve(out)
    try:
        _wait_for(proc, r"enapp +2 ")  # the workers hold their areas and iterate
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the coordinator and its workers
        code, lines = _finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 130, lines
    assert lines == ["error: interrupted by SIGINT; stopped, temporary files removed"]  # no worker tracebacks
    assert not out.exists()
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group_alive(proc.pid) == []


def test_killed_worker_is_exit_6_naming_it(tmp_path):
    out = tmp_path / "run"
    proc = _solve(out)
    try:
        _wait_for(proc, r"enapp +2 ")
        workers = [c for c in psutil.Process(proc.pid).children()
                   if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2
        workers[0].kill()
        code, lines = _finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 6, lines
    assert len(lines) == 1, lines
    assert re.fullmatch(r"error: Dask worker tcp://127\.0\.0\.1:\d+ holding area\(s\) [\d, ]+ died during "
                        r"'solve'; the distributed run was stopped", lines[0]), lines
    assert not out.exists()
