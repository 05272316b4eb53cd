"""The benchmark tools' ``--out`` (``mpdopf_pyomo.outputs.BenchFolder``): tables are added to a shared,
marked folder file by file; a user's file named like a table is never replaced, and is refused before
any benchmark runs; several tools share one folder (``make bench``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from mpdopf_pyomo import bench_distopf, benchmark, benchmark_scale, feeders
from mpdopf_pyomo.outputs import MARKER, BenchFolder, OutputError, read_marker

ROOT = Path(__file__).resolve().parents[1]


def _listed(folder: Path) -> list[str]:
    marker = read_marker(folder)
    assert marker is not None, f"{folder} has no marker"
    return marker["files"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------------------
# The mechanism
# ------------------------------------------------------------------------------------------------------

def test_new_folder_is_created_marked_and_lists_what_was_written(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "results"
    with BenchFolder.claim(target, ["t.md", "t.csv"]) as out:
        assert _listed(target) == []  # marked at the claim, before any table
        out.write_text("t.md", "# table\n")
        out.write_csv("t.csv", [{"x": 1, "y": 2.5}, {"x": 3, "z": "q"}])
    assert sorted(os.listdir(target)) == sorted([MARKER, "t.md", "t.csv"])
    assert _listed(target) == ["t.csv", "t.md"]
    assert (target / "t.csv").read_text().splitlines() == ["x,y,z", "1,2.5,", "3,,q"]
    with pytest.raises(ValueError):  # a name that was not claimed (and checked) is a programming error
        BenchFolder.claim(target, ["u.md"]).write_text("t.md", "x")


def test_claim_that_writes_nothing_leaves_nothing(tmp_path: Path) -> None:
    with BenchFolder.claim(tmp_path / "new" / "deep", ["t.md"]):
        assert (tmp_path / "new" / "deep" / MARKER).is_file()
    assert not (tmp_path / "new").exists()  # the folder and the parents the claim made are gone again
    empty = tmp_path / "empty"
    empty.mkdir()
    with BenchFolder.claim(empty, ["t.md"]):
        pass
    assert empty.is_dir() and os.listdir(empty) == []  # the user's empty folder stays, unmarked


def test_users_file_named_like_a_table_is_refused_and_kept(tmp_path: Path) -> None:
    plain = tmp_path / "plain"  # no marker: a non-empty folder the program did not write
    plain.mkdir()
    (plain / "t.md").write_bytes(b"my notes\x00\n")
    with pytest.raises(OutputError, match=r"t\.md was not written by this program"):
        BenchFolder.claim(plain, ["t.md", "t.csv"])
    (plain / "t.md").rename(plain / "notes.txt")
    with pytest.raises(OutputError, match="non-empty folder this program did not write"):
        BenchFolder.claim(plain, ["t.md"])
    assert _snapshot(plain) == {"notes.txt": b"my notes\x00\n"}

    marked = tmp_path / "marked"  # marked by another tool, and the user added a file of this tool's name
    with BenchFolder.claim(marked, ["other.md"]) as out:
        out.write_text("other.md", "other\n")
    (marked / "t.csv").write_bytes(b"a,b\n1,2\n")
    before = _snapshot(marked)
    with pytest.raises(OutputError) as err:
        BenchFolder.claim(marked, ["t.md", "t.csv"])
    assert str(err.value).startswith(f"--out {marked}: t.csv was not written by this program")
    assert "\n" not in str(err.value)
    assert _snapshot(marked) == before


def test_a_listed_name_that_is_no_longer_a_regular_file_is_refused(tmp_path: Path) -> None:
    with BenchFolder.claim(tmp_path / "r", ["t.md"]) as out:
        out.write_text("t.md", "ours\n")
    (tmp_path / "r" / "t.md").unlink()
    (tmp_path / "r" / "t.md").symlink_to(tmp_path / "elsewhere.md")
    with pytest.raises(OutputError, match=r"t\.md was not written"):
        BenchFolder.claim(tmp_path / "r", ["t.md"])


def test_a_file_put_in_place_during_the_benchmark_is_kept(tmp_path: Path) -> None:
    out = BenchFolder.claim(tmp_path / "r", ["t.md"])
    (tmp_path / "r" / "t.md").write_text("the user's, made while the benchmark ran\n")
    with pytest.raises(OutputError, match=r"t\.md was not written"):
        out.write_text("t.md", "table\n")
    out.close()
    assert (tmp_path / "r" / "t.md").read_text() == "the user's, made while the benchmark ran\n"
    assert os.listdir(tmp_path / "r") == ["t.md"]  # nothing written: the marker the claim made is gone again


def test_second_run_replaces_its_own_files_and_leaves_the_users_alone(tmp_path: Path) -> None:
    target = tmp_path / "r"
    with BenchFolder.claim(target, ["t.md"]) as out:
        out.write_text("t.md", "first\n")
    (target / "notes.txt").write_text("mine\n")  # an unrelated file: left alone, not a reason to refuse
    os.chmod(target / "t.md", 0o640)
    with BenchFolder.claim(target, ["t.md", "u.md"]) as out:
        out.write_text("t.md", "second\n")
        out.write_text("u.md", "new\n")
    assert (target / "t.md").read_text() == "second\n"
    assert oct((target / "t.md").stat().st_mode & 0o777) == oct(0o640)  # the replaced file's mode is kept
    assert (target / "notes.txt").read_text() == "mine\n"
    assert _listed(target) == ["t.md", "u.md"]
    assert sorted(os.listdir(target)) == sorted([MARKER, "notes.txt", "t.md", "u.md"])  # no temporary left


def test_an_interrupted_write_leaves_the_previous_table(tmp_path: Path) -> None:
    target = tmp_path / "r"
    with BenchFolder.claim(target, ["t.md"]) as out:
        out.write_text("t.md", "complete\n")

    def half_then_interrupt(p: Path) -> None:
        p.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with BenchFolder.claim(target, ["t.md"]) as out:
            out._write("t.md", half_then_interrupt)
    assert (target / "t.md").read_text() == "complete\n"
    assert sorted(os.listdir(target)) == sorted([MARKER, "t.md"])


@pytest.mark.parametrize("kind", ["symlink", "file", "fifo", "read-only"])
def test_out_that_is_not_a_plain_folder_is_refused(tmp_path: Path, kind: str) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "out"
    if kind == "symlink":
        target.symlink_to(tmp_path / "real")
    elif kind == "file":
        target.write_text("data\n")
    elif kind == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir(mode=0o555)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(OutputError, match=f"--out {target}: "):
        BenchFolder.claim(target, ["t.md"])
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "real") == []


# ------------------------------------------------------------------------------------------------------
# Every tool and mode: the refusal comes before any benchmark
# ------------------------------------------------------------------------------------------------------

def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the benchmark ran although its --out had to be refused")


def _fake_feeders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(feeders, "REFERENCE", tmp_path)  # the public feeders' folder "exists"
    dss = tmp_path / "Master.dss"
    dss.write_text("! not read\n")
    return dss


#: (tool's main, its arguments before --out, attribute that would run the benchmark, a table it writes)
TOOLS: list[tuple[str, Callable[..., int], list[str], tuple[Any, str], str]] = [
    ("benchmark", benchmark.main, ["--hours", "1"], (benchmark, "bench_central"), "benchmark.md"),
    ("benchmark --no-distributed", benchmark.main, ["--no-distributed"], (benchmark, "bench_central"),
     "central.csv"),
    ("benchmark --commands", benchmark.main, ["--commands"], (benchmark, "bench_commands"), "commands.md"),
    ("benchmark --large", benchmark.main, ["--large", "1025x5"], (benchmark, "bench_large"), "large.csv"),
    ("benchmark --profile", benchmark.main, ["--profile", "1", "--case", "ieee13"], (benchmark, "profile"),
     "profile_ieee13_1h.md"),
    ("benchmark_scale", benchmark_scale.main, [], (benchmark_scale, "bench_scale"), "scale.md"),
    ("feeders table", feeders.main, ["table", "case33bw"], (feeders, "closing_row"), "feeders.csv"),
    ("feeders three-phase", feeders.main, ["three-phase", "ieee13"], (feeders, "three_phase_row"),
     "three_phase.md"),
    ("feeders base", feeders.main, ["base", "{dss}"], (feeders, "base_case_gap"), "feeders_base_case.md"),
    ("feeders solve", feeders.main, ["solve", "{dss}", "--hours", "3"], (feeders, "solve_row"),
     "feeders_solve_3h.csv"),
    ("bench_distopf", bench_distopf.main, [], (bench_distopf, "run_rounds"), "distopf.md"),
]


@pytest.mark.parametrize("label,main,args,runner,table", TOOLS, ids=[t[0] for t in TOOLS])
def test_users_table_named_file_is_refused_before_the_benchmark(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], label: str,
        main: Callable[..., int], args: list[str], runner: tuple[Any, str], table: str) -> None:
    dss = _fake_feeders(monkeypatch, tmp_path)
    monkeypatch.setattr(*runner, _never)
    monkeypatch.setattr(bench_distopf, "distopf_python", lambda env: Path(sys.executable))
    monkeypatch.setattr(bench_distopf, "_has_distopf", lambda py: True)
    monkeypatch.setattr("mpdopf_pyomo.solvers.ipopt_executable", lambda: "/opt/ipopt/bin/ipopt")
    out = tmp_path / "results"
    with BenchFolder.claim(out, ["earlier.md"]) as earlier:  # a folder some other bench tool marked
        earlier.write_text("earlier.md", "an earlier table\n")
    (out / table).write_bytes(b"the user's own file\n")
    before = _snapshot(out)
    code = main([a.replace("{dss}", str(dss)) for a in args] + ["--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"error: --out {out}: {table} was not written by this program"), err
    assert _snapshot(out) == before  # byte-identical, nothing added, marker unchanged


def test_refusal_is_one_line_and_no_traceback_from_the_command(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "commands.md").write_text("keep me\n")
    proc = subprocess.run([sys.executable, "-m", "mpdopf_pyomo.benchmark", "--commands", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: --out {out}: commands.md was not written by this program (not "
                                        f"listed in a {MARKER} marker there); refusing to replace it (move it "
                                        "away or choose another --out)"]
    assert proc.stdout == "" and _snapshot(out) == {"commands.md": b"keep me\n"}


# ------------------------------------------------------------------------------------------------------
# make bench: several tools into one folder, then again
# ------------------------------------------------------------------------------------------------------

def test_two_tools_share_one_folder_and_rerun_replaces_their_own_tables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wall = {"value": 11.0}

    def commands(repeat: int, progress: Any = None, baseline: Any = None) -> list[dict[str, Any]]:
        return [{"row": "default", "command": "solve --case ieee123", "wall_s": wall["value"]}]

    def scale(rows: Any, solver: str, repeat: int, repeat_large: int, progress: Any) -> list[dict[str, Any]]:
        return [{"case": "ieee123", "hours": 5, "wall_s": 2 * wall["value"]}]

    monkeypatch.setattr(benchmark, "bench_commands", commands)
    monkeypatch.setattr(benchmark_scale, "bench_scale", scale)
    out = tmp_path / "bench" / "results"
    assert benchmark.main(["--commands", "--out", str(out)]) == 0
    assert benchmark_scale.main(["--rows", "ieee123x5", "--out", str(out)]) == 0
    assert _listed(out) == ["commands.csv", "commands.md", "scale.csv", "scale.md"]
    assert (out / "scale.csv").read_text().splitlines() == ["case,hours,wall_s", "ieee123,5,22.0"]
    (out / "notes.txt").write_text("my notes\n")

    wall["value"] = 7.0
    assert benchmark.main(["--commands", "--out", str(out)]) == 0  # its own tables, replaced
    assert benchmark_scale.main(["--rows", "ieee123x5", "--out", str(out)]) == 0
    assert (out / "commands.csv").read_text().splitlines() == ["row,command,wall_s",
                                                              "default,solve --case ieee123,7.0"]
    assert (out / "scale.csv").read_text().splitlines()[1] == "ieee123,5,14.0"
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert sorted(os.listdir(out)) == sorted([MARKER, "commands.csv", "commands.md", "notes.txt", "scale.csv",
                                              "scale.md"])
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "mpdopf_pyomo" and marker["files"] == _listed(out)
    assert "error" not in capsys.readouterr().err
