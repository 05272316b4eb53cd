"""Issue 10, output side: the program never deletes, renames or replaces what it did not write.

Through the real command line (``python -m mpdopf_pyomo`` in a subprocess) wherever signals, the umask,
the working directory or exit codes matter. Each test here failed on the code before the fix: user
folders and the case file itself were deleted, a FIFO was renamed aside, ``runs/../../victim`` escaped,
``/proc/...`` gave a traceback after the solve, SIGTERM left ``.NAME.tmp-XXXX`` behind, folders were 0700.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ("--hours", "1", "--no-plots", "--no-validate")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def cli(*args: str, cwd: Path | None = None, umask: int | None = None, timeout: float = 120,
        **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m mpdopf_pyomo ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "mpdopf_pyomo", *args], capture_output=True, text=True, cwd=cwd, env=_env(**env),
        timeout=timeout, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def solve(out: Path | str, *extra: str, case: str = "ieee123", **kw) -> subprocess.CompletedProcess:
    return cli("solve", "--case", case, *FAST, "--out", str(out), *extra, **kw)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (itself included): kind, mode, inode, bytes of regular files."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_ino, data)
    return out


def the_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a refused command (no progress lines: nothing was built or solved)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    return lines[0]


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if re.search(r"\.(tmp|old)-|mpdopf-lock", p.name))


def write_case(folder: Path, name: str) -> Path:
    """The bundled ieee123 case with another ``[case] name`` and an absolute network path."""
    from mpdopf_pyomo.case import resolve_case_path

    src = resolve_case_path("ieee123")
    text = src.read_text()
    net = re.search(r'^network\s*=\s*"([^"]+)"', text, flags=re.M)
    assert net
    text = text.replace(net.group(0), f'network = "{(src.parent / net.group(1)).resolve().as_posix()}"')
    text, n = re.subn(r'^name\s*=\s*"[^"]*"', f"name = {json.dumps(name)}", text, count=1, flags=re.M)
    assert n == 1
    path = folder / "mycase.toml"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------
# Data loss 1, 2, 4: what is not ours is refused before the solve and left byte for byte
# --------------------------------------------------------------------------------------------------


def test_existing_user_folder_survives_a_refused_out(tmp_path):
    user = tmp_path / "t"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("x\n")
    (user / "sub" / "data.csv").write_text("a,b\n1,2\n")
    before = snapshot(tmp_path)
    line = the_error_line(solve(user))
    assert str(user) in line and "did not write" in line
    assert snapshot(tmp_path) == before  # nothing renamed, deleted, or left beside it


def test_out_dot_in_the_case_folder_keeps_the_case_file(tmp_path):
    case_file = write_case(tmp_path, "mycase")
    before = snapshot(tmp_path)
    the_error_line(cli("solve", "--case", case_file.name, *FAST, "--out", ".", cwd=tmp_path))
    assert snapshot(tmp_path) == before


def test_fifo_is_refused_untouched(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    before = snapshot(tmp_path)
    t0 = time.perf_counter()
    line = the_error_line(solve(fifo))
    assert "FIFO" in line and str(fifo) in line
    assert time.perf_counter() - t0 < 10
    assert snapshot(tmp_path) == before  # same inode, still a FIFO, nothing beside it


@pytest.mark.parametrize("where", ["under_a_file", "proc", "root", "socket", "read_only_folder", "symlink",
                                   "empty_path"])
def test_unusable_out_is_refused_before_the_solve(tmp_path, where):
    """One line, exit 2, no progress line (so no model was built), nothing created anywhere."""
    if where == "under_a_file":
        (tmp_path / "file").write_text("keep\n")
        out = tmp_path / "file" / "run"
    elif where == "proc":
        out = Path("/proc/mpdopf-no-such-entry/run")
    elif where == "root":
        out = Path("/")
    elif where == "socket":
        out = tmp_path / "sock"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(out))
    elif where == "read_only_folder":  # even one of ours; root ignores the mode, the program honours it
        out = tmp_path / "ro"
        out.mkdir()
        (out / "kept.txt").write_text("keep\n")
        (out / ".mpdopf-run").write_text(json.dumps({"tool": "mpdopf_pyomo", "files": ["kept.txt"]}))
        out.chmod(0o555)
    elif where == "empty_path":
        out = ""
    else:
        (tmp_path / "mine").mkdir()
        (tmp_path / "mine" / "kept.txt").write_text("keep\n")
        out = tmp_path / "link"
        out.symlink_to(tmp_path / "mine")
    before = snapshot(tmp_path)
    line = the_error_line(solve(out, "--hours", "24", cwd=tmp_path))
    assert line.startswith(f"error: --out {out}".rstrip())
    assert where != "read_only_folder" or "read-only" in line
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------------
# Data loss 3: a case name is a label, never a path
# --------------------------------------------------------------------------------------------------


def test_traversal_case_name_stays_under_runs(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    victim = tmp_path / "victim_1h_central"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep\n")
    write_case(work, "../../victim")
    outside = snapshot(tmp_path / "victim_1h_central")
    proc = cli("solve", "--case", "mycase.toml", *FAST, cwd=work)
    if proc.returncode == 0:  # the loader may also refuse such a name (exit 2); either way nothing escapes
        written = [p for p in (work / "runs").iterdir()]
        assert [p.name for p in written] == ["victim_1h_central"]
        assert (written[0] / "summary.json").is_file()
    else:
        the_error_line(proc)
    assert snapshot(tmp_path / "victim_1h_central") == outside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "victim_1h_central"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b"]


@pytest.mark.parametrize("name, label", [
    ("../../victim", "victim"), ("/etc/passwd", "etc_passwd"), ("..", "case"), ("", "case"),
    (".hidden", "hidden"), ("a\nb\x00c", "a_b_c"), ("ieee123", "ieee123"), ("Zürich feeder", "Zürich_feeder"),
])
def test_default_folder_is_one_component_under_runs(name, label):
    from mpdopf_pyomo.outputs import default_folder, safe_label

    assert safe_label(name) == label
    folder = default_folder(name, 5, "central")
    assert folder.parent == Path("runs") and folder.name == f"{label}_5h_central"


# --------------------------------------------------------------------------------------------------
# Our own folders: replaced atomically, marked, modes from the umask
# --------------------------------------------------------------------------------------------------


def test_replacing_our_previous_run_leaves_no_siblings(tmp_path):
    out = tmp_path / "run"
    assert solve(out, "--hours", "2").returncode == 0
    marker = json.loads((out / ".mpdopf-run").read_text())
    assert marker["tool"] == "mpdopf_pyomo" and "summary.json" in marker["files"]
    (out / ".summary.json.tmp-abc123").write_text("left by a killed `validate`\n")  # ours: may go
    proc = solve(out, "--hours", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["hours"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .run.old-*, .run.tmp-*, lock
    assert sorted(p.name for p in out.iterdir()) == sorted([".mpdopf-run", "battery.csv", "branches.csv", "conversion_report.csv",
                                                           "pv.csv", "substation.csv", "summary.json",
                                                           "voltages.csv"])
    # a file of the user's in our folder makes it not ours to replace
    (out / "my-analysis.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    assert "my-analysis.txt" in the_error_line(solve(out))
    assert snapshot(tmp_path) == before


def test_modes_follow_the_umask(tmp_path):
    umask, dir_mode, file_mode = 0o027, 0o750, 0o640  # not the usual 022: the modes come from the umask
    out = tmp_path / "run" / "deeper"
    proc = solve(out, umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    assert stat.S_IMODE(out.parent.stat().st_mode) == dir_mode
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {file_mode}, modes
    # validate rewrites files atomically and keeps their modes (mkstemp alone: 0600)
    proc = cli("validate", str(out), "--no-plots", umask=umask)
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert "validation_by_hour.csv" in modes and set(modes.values()) == {file_mode}, modes
    # the marker now lists what validate wrote, so a later solve may replace the folder
    assert "validation_by_hour.csv" in json.loads((out / ".mpdopf-run").read_text())["files"]


def test_validate_rewrites_only_in_our_folders_and_only_our_files(tmp_path):
    import shutil

    out = tmp_path / "run"
    assert solve(out).returncode == 0  # no figures
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / ".mpdopf-run").unlink()  # e.g. a folder of an older version, or one assembled by hand
    (out / "validation_by_hour.csv").write_text("the user's own table\n")  # --no-validate did not write one
    before = snapshot(tmp_path)
    assert "no .mpdopf-run marker" in the_error_line(cli("validate", str(copy), "--no-plots"))
    line = the_error_line(cli("validate", str(out), "--no-plots"))
    assert "validation_by_hour.csv not written by this program" in line
    assert snapshot(tmp_path) == before


def test_library_save_refuses_a_user_folder(tmp_path):
    """Results.save (the Python API) follows the same rules as the CLI."""
    from mpdopf_pyomo.outputs import MARKER, OutputError, OutputFolder

    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("keep\n")
    with pytest.raises(OutputError, match="did not write"):
        OutputFolder.claim(user)
    target = OutputFolder.claim(tmp_path / "new")
    (target.staging / "x.csv").write_text("1\n")
    target.commit(["x.csv"])
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [MARKER, "x.csv"]
    target = OutputFolder.claim(tmp_path / "new")
    with pytest.raises(OutputError, match="another run"):
        OutputFolder.claim(tmp_path / "new")
    target.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "user"]


def test_a_full_disk_while_writing_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from mpdopf_pyomo.outputs import OutputError
    from mpdopf_pyomo.results import Results

    tables = [pd.DataFrame({"x": [1.0]}) for _ in range(5)]
    res = Results({"case": "t"}, *tables)
    (tmp_path / "run").mkdir()  # an empty folder of the user's: must stay, empty
    calls = []

    def to_csv(self, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        Path(path).write_text("x\n1\n")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OutputError, match="No space left on device"):
        res.save(tmp_path / "run")
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and list((tmp_path / "run").iterdir()) == []


# --------------------------------------------------------------------------------------------------
# Interrupts: SIGTERM like Ctrl-C, nothing left behind, one line, 143 / 130
# --------------------------------------------------------------------------------------------------


def _start(args: list[str], tmpdir: Path, python: list[str] | None = None, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *(python or ["-m", "mpdopf_pyomo"]), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(TMPDIR=str(tmpdir), **env))


def _wait_for(proc: subprocess.Popen, text: str, timeout: float = 60) -> list[str]:
    """Read stderr lines until one matches the regular expression ``text``."""
    lines: list[str] = []
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stderr:
            lines.append(line)
            if re.search(text, line):
                return lines
    finally:
        timer.cancel()
    raise AssertionError(f"never saw {text!r}: {''.join(lines)}")


def _after_interrupt(proc: subprocess.Popen, code: int, name: str) -> None:
    rest = proc.stderr.read()
    proc.wait(timeout=30)
    assert proc.returncode == code, (proc.returncode, rest)
    lines = rest.strip().splitlines()
    assert lines == [f"error: interrupted by {name}; stopped, temporary files removed"], rest


@pytest.mark.parametrize("solver, hours, sig", [
    ("ipopt", "24", signal.SIGINT),  # cyipopt: interrupted inside IPOPT's iteration callback
    ("ripopt", "5", signal.SIGTERM),  # a solver executable: its NL file and mpdopf-solver-* must go
])
def test_interrupt_during_the_solve_leaves_nothing(tmp_path, solver, hours, sig):
    if solver == "ripopt":
        from mpdopf_pyomo.solvers import probe

        if not probe("ripopt").available:
            pytest.skip("ripopt is not installed")
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "run"
    proc = _start(["solve", "--case", "ieee123", "--hours", hours, "--solver", solver, "--no-plots",
                   "--no-validate", "--out", str(out)], tmpdir)
    _wait_for(proc, "solving with")
    time.sleep(0.3)
    proc.send_signal(sig)
    _after_interrupt(proc, 128 + sig, signal.Signals(sig).name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no run, no .run.tmp-*, no lock
    assert list(tmpdir.iterdir()) == []  # no tmpXXXX.pyomo.nl, no mpdopf-solver-*


_SIGNAL_WHILE_WRITING = """
import os, signal, sys, time
import pandas
_to_csv = pandas.DataFrame.to_csv
def to_csv(self, *args, **kwargs):  # the first table of the output folder is written: now the signal
    _to_csv(self, *args, **kwargs)
    os.kill(os.getpid(), getattr(signal, os.environ["SEND_SIGNAL"]))
    time.sleep(30)
pandas.DataFrame.to_csv = to_csv
sys.argv[0] = "mpdopf"
from mpdopf_pyomo.__main__ import run
run()
"""


def test_sigterm_while_writing_keeps_the_previous_run_and_leaves_no_tmp(tmp_path):
    out = tmp_path / "run"
    assert solve(out).returncode == 0
    before = snapshot(tmp_path)
    tmpdir = tmp_path.parent / f"{tmp_path.name}-tmp"
    tmpdir.mkdir()
    proc = _start(["solve", "--case", "ieee123", *FAST, "--out", str(out)], tmpdir,
                  python=["-c", _SIGNAL_WHILE_WRITING], SEND_SIGNAL="SIGTERM")
    _wait_for(proc, "writing")
    _after_interrupt(proc, 143, "SIGTERM")
    assert snapshot(tmp_path) == before  # the previous run intact, no .run.tmp-* / .run.old-* / lock
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("existing", ["none", "empty"])
def test_leftovers_of_a_killed_run_are_cleared_by_the_next(tmp_path, existing):
    """SIGKILL cannot be handled: the next run to the same folder removes the staging folder and lock."""
    out = tmp_path / "run"
    if existing == "empty":
        out.mkdir()
    ino = out.stat().st_ino if existing == "empty" else None
    proc = _start(["solve", "--case", "ieee123", *FAST, "--out", str(out)], tmp_path,
                  python=["-c", _SIGNAL_WHILE_WRITING], SEND_SIGNAL="SIGKILL")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert hidden_leftovers(tmp_path) or hidden_leftovers(out)
    assert solve(out).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not hidden_leftovers(out) and (out / "summary.json").is_file()
    if ino is not None:  # an empty folder is filled in place, not swapped for another
        assert out.stat().st_ino == ino


def test_workers_exit_quietly_when_the_coordinator_dies(tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = _start(["solve", "--case", "ieee123", "--hours", "1", "--algorithm", "admm", "--executor", "processes",
                   "--no-plots", "--no-validate", "--out", str(tmp_path / "run")], tmpdir)
    _wait_for(proc, r"(admm|enapp)\s+3\s")
    time.sleep(0.02)  # the workers are solving the next iteration now (one takes ~50 ms)
    proc.kill()
    rest = proc.stderr.read()  # EOF once every worker has exited too
    proc.wait(timeout=30)
    assert "Traceback" not in rest and "BrokenPipe" not in rest, rest


# --------------------------------------------------------------------------------------------------
# Two runs to one folder: one wins, the other is refused at once
# --------------------------------------------------------------------------------------------------


def test_concurrent_runs_to_one_folder(tmp_path):
    out = tmp_path / "run"
    first = _start(["solve", "--case", "ieee123", "--hours", "5", "--no-plots", "--no-validate", "--out", str(out)],
                   tmp_path)
    _wait_for(first, "solving with")  # it holds the folder now
    second = solve(out)
    line = the_error_line(second)
    assert "another run is writing this folder" in line
    first.stderr.read()
    assert first.wait(timeout=120) == 0
    assert json.loads((out / "summary.json").read_text())["hours"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_default_folder_names_the_window():
    from mpdopf_pyomo.outputs import default_folder

    assert str(default_folder("ieee123", 5, "central")) == "runs/ieee123_5h_central"
    assert str(default_folder("ieee123", 5, "central", 6)) == "runs/ieee123_5h_from06_central"
