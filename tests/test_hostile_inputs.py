"""Hostile and careless input (issue 10): network models that would crash OpenDSS, absurd case values,
labels that are paths, files that are not UTF-8, and tampered results folders given to `validate`.

Every case here must end as one line `error: ...` naming the file and the key or column, exit code 2,
never a traceback or a crash; unusual-but-possible values load with a one-line warning.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mpdopf_pyomo import network
from mpdopf_pyomo.case import BOUNDS, load_case
from mpdopf_pyomo.cli import main
from mpdopf_pyomo.errors import CaseError

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "models" / "ieee123" / "master.dss"
CASE_TEXT = (REPO / "cases" / "ieee123.toml").read_text().replace(
    'network = "../models/ieee123/master.dss"', f'network = "{MASTER.as_posix()}"'
)
CIRCUIT = "Clear\nNew Circuit.t phases=3 bus1=a basekV=4.16 R1=0 X1=1e-8 R0=0 X0=1e-8\n"
LINE = "New Line.{0} phases=3 bus1={1} bus2={2} r1=0.1 x1=0.1 r0=0.1 x0=0.1 c1=0 c0=0\n"


def _case(tmp_path: Path, text: str = CASE_TEXT, name: str = "case.toml", **replace: str) -> Path:
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    p = tmp_path / name
    p.write_text(text)
    return p


def _with_model(tmp_path: Path, model: Path) -> Path:
    return _case(tmp_path, CASE_TEXT.replace(MASTER.as_posix(), model.as_posix()))


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpdopf_pyomo", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------------------------ network models


def test_a_model_that_redirects_to_itself_fails_in_seconds_not_sigsegv(tmp_path):
    model = tmp_path / "master.dss"
    model.write_text(CIRCUIT + "Redirect master.dss\n")
    t0 = time.perf_counter()
    proc = _cli("cases", "show", str(_with_model(tmp_path, model)))
    assert time.perf_counter() - t0 < 15
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])  # was -11 (SIGSEGV)
    line = _one_error_line(proc.stderr)
    assert "case.network" in line and "includes itself (master.dss -> master.dss)" in line


def test_an_indirect_cycle_through_abbreviated_commands_is_found(tmp_path):
    """OpenDSS accepts abbreviations (`red` = Redirect, `c` = Compile) and quotes; comments are not followed."""
    (tmp_path / "sub dir").mkdir()
    a = tmp_path / "a.dss"
    a.write_text(CIRCUIT + "! Redirect a.dss\n/* Redirect a.dss\n*/\nred [sub dir/b.dss]  ! into b\n")
    (tmp_path / "sub dir" / "b.dss").write_text(LINE.format("l1", "a", "b") + 'c "../a.dss"\n')
    with pytest.raises(CaseError, match=r"includes itself \(a.dss -> b.dss -> a.dss\)"):
        network.check_includes(a)


def test_a_file_included_twice_is_no_cycle_and_chains_are_bounded(tmp_path):
    (tmp_path / "line.dss").write_text(LINE.format("l1", "a", "b"))
    (tmp_path / "edit.dss").write_text("Edit Line.l1 r1=0.2\n")
    ok = tmp_path / "ok.dss"
    ok.write_text(CIRCUIT + "Redirect line.dss\nRedirect edit.dss\nRedirect edit.dss\nSet VoltageBases=[4.16]\n"
                  "CalcVoltageBases\n")
    network.check_includes(ok)
    assert network.compile_model(ok) == ok
    n = network.MAX_REDIRECT_DEPTH + 1
    for k in range(n):
        (tmp_path / f"ch{k}.dss").write_text(f"Redirect ch{k + 1}.dss\n" if k < n - 1 else LINE.format("l1", "a", "b"))
    deep = tmp_path / "deep.dss"
    deep.write_text(CIRCUIT + "Redirect ch0.dss\n")
    with pytest.raises(CaseError, match=f"nested deeper than {network.MAX_REDIRECT_DEPTH} files"):
        network.compile_model(deep)


@pytest.mark.parametrize("content", ["", "Clear\n", "! only a comment\nClear\n"])
def test_a_model_without_a_circuit_is_one_line(tmp_path, content):
    model = tmp_path / "master.dss"
    model.write_text(content)
    with pytest.raises(CaseError) as info:
        load_case(_with_model(tmp_path, model))
    msg = str(info.value)
    assert "case.network" in msg and "defines no circuit" in msg and "\n" not in msg  # was DSSException


def test_a_fifo_include_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.dss"
    os.mkfifo(fifo)
    model = tmp_path / "master.dss"
    model.write_text(CIRCUIT + "Redirect pipe.dss\n")
    with pytest.raises(CaseError, match="pipe.dss, which is not a regular file"):
        network.compile_model(model)


def test_a_model_name_that_is_not_utf8_is_one_line(tmp_path):
    """OpenDSS keeps bytes; a Latin-1 comment is harmless, a Latin-1 element name was a UnicodeDecodeError."""
    model = tmp_path / "master.dss"
    tail = "Set VoltageBases=[4.16]\nCalcVoltageBases\n"
    model.write_bytes((CIRCUIT + "! caf\xe9\n" + LINE.format("l1", "a", "b") + tail).encode("latin-1"))
    assert [b.name for b in network.read_opendss(model).branches] == ["l1"]
    model.write_bytes((CIRCUIT + LINE.format("l\xe9", "a", "b") + tail).encode("latin-1"))
    with pytest.raises(CaseError, match=r"an element or bus name of the model is not UTF-8 text"):
        network.read_opendss(model)


def test_opendss_leaves_the_working_directory_alone(tmp_path, monkeypatch):
    model = tmp_path / "master.dss"
    model.write_text(f"Redirect [{MASTER}]\ncd /\n")
    monkeypatch.chdir(tmp_path)
    case = load_case(_with_model(tmp_path, model))
    assert len(case.buses) == 128
    assert Path.cwd() == tmp_path


# --------------------------------------------------------------------------------------- case values


def test_a_case_file_that_is_not_utf8_is_one_line(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(CASE_TEXT.replace('description = "', 'description = "caf\xe9 ').encode("latin-1"))
    with pytest.raises(CaseError, match=r"not a UTF-8 text file \(byte \d+ is 0xe9\)"):
        load_case(p)  # was UnicodeDecodeError


@pytest.mark.parametrize(
    "old,new,key,what",
    [
        ("s_kva = 3000.0", "s_kva = 1e300", "bases.s_kva", r"must be <= 1e7, got 1e\+300"),
        ("s_kva = 3000.0", "s_kva = 1e-300", "bases.s_kva", "must be >= 1, got 1e-300"),
        ("s_factor = 1.2   # S_DR", "s_factor = 1e300   # S_DR", "pv.s_factor", "must be <= 10"),
        ("v_max_pu = 1.05", "v_max_pu = 10.5", "settings.v_max_pu", r"must be <= 1.5, got 10.5"),
        ("v_sub_pu = 1.03", "v_sub_pu = 0.2", "settings.v_sub_pu", "must be >= 0.5"),
        ("p_factor = 0.33  # P_BR", "p_factor = 1e308  # P_BR", "battery.p_factor", "must be <= 100"),
        ("e_hours = 4.0", "e_hours = 1e9", "battery.e_hours", "must be <= 1000"),
        ("dt_h = 1.0", "dt_h = 48.0", "settings.dt_h", "must be <= 24"),
        ("pv_mult = [0.5, 0.8, 0.9, 1.0, 1.0]", "pv_mult = [0.5, 0.8, 1.2, 1.0, 1.0]",
         r"profiles.horizon.5.pv_mult", r"value 3 of 5: must be <= 1, got 1.2.*impossible"),
        ("alpha_usd_per_kwh = 0.001", "alpha_usd_per_kwh = 1e200", "settings.alpha_usd_per_kwh", "must be <= 10000"),
        ("s_kva = 3000.0", "s_kva = 1" + "0" * 400, "bases.s_kva", "expected a finite number"),
        ("soc0 = 0.625", "soc0 = nan", "battery.soc0", "expected a finite number, got nan"),
    ],
)
def test_impossible_values_are_rejected_naming_file_and_key(tmp_path, old, new, key, what):
    path = _case(tmp_path, **{old: new})
    with pytest.raises(CaseError) as info:
        load_case(path)
    msg = str(info.value)
    assert re.match(rf"{re.escape(str(path))}: {key}: ", msg), msg
    assert re.search(what, msg), msg
    assert "\n" not in msg


@pytest.mark.parametrize("text,hours,needle", [
    ("default_hours = 1" + "0" * 400, None, r"case.default_hours: must be <= 8784, got 10000000\.\.\. \(401 digits\)"),
    ("default_hours = 5", 10**400, r"hours: the horizon must be at most 8784 periods, got 10000000\.\.\."),
    ("default_hours = 5\n[profiles.horizon.99999]", None, r"profiles.horizon.99999: N must be at most 8784"),
])
def test_huge_whole_numbers_are_one_short_line(tmp_path, text, hours, needle):
    path = _case(tmp_path, **{"default_hours = 5": text})
    with pytest.raises(CaseError) as info:
        load_case(path, hours)  # was OverflowError for the integer too large for a float
    assert re.search(needle, str(info.value)) and len(str(info.value)) < 300, str(info.value)


def test_every_problem_of_the_file_is_reported_at_once(tmp_path):
    path = _case(tmp_path, **{"v_max_pu = 1.05": "v_max_pu = 10.5", "s_kva = 3000.0": "s_kva = 1e300",
                              "eta_c = 0.95": 'eta_c = "high"', "[areas]": "[areas]\nbogus = 1"})
    proc = _cli("cases", "show", str(path))
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert line.startswith(f"error: {path}: 4 problems: ")
    for key in ("bases.s_kva", "settings.v_max_pu", "battery.eta_c", "areas.bogus"):
        assert f"; {key}: " in line or f"problems: {key}: " in line, key


def test_unusual_values_load_with_one_warning_line_each(tmp_path):
    path = _case(tmp_path, **{"e_hours = 4.0": "e_hours = 48.0", "s_kva = 3000.0": "s_kva = 30.0",
                              "load_mult = [0.75, 0.777": "load_mult = [3.5, 0.777",
                              "price_usd_per_kwh = [0.048204, 0.048204": "price_usd_per_kwh = [-20, 0.048204"})
    seen: list[str] = []
    case = load_case(path, warn=seen.append)
    assert seen == case.warnings and len(seen) == 4
    for key in ("battery.e_hours: 48 is unusual (usually <= 24)",
                "profiles.horizon.5.load_mult: value 1 of 5: 3.5 is unusual (usually <= 3)",
                "profiles.horizon.5.price_usd_per_kwh: value 1 of 5: -20 is unusual (usually -10..10)",
                "bases.s_kva: the feeder's nominal load is 133 pu of 30 kVA"):
        assert any(w.startswith(f"{path}: {key}") for w in seen), (key, seen)
    result = CliRunner().invoke(main, ["cases", "show", str(path)])
    assert result.exit_code == 0
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 4 and len(result.stderr.splitlines()) == 4


@pytest.mark.parametrize("name", ["ieee123", "ieee123-published"])
def test_bundled_cases_draw_no_warning(name):
    assert load_case(name, warn=None).warnings == []
    assert load_case(name, 10 if name.endswith("published") else 24, warn=None).warnings == []


def test_negative_prices_are_allowed(tmp_path):
    path = _case(tmp_path, **{"price_usd_per_kwh = [0.048204, 0.048204": "price_usd_per_kwh = [-0.02, 0.048204"})
    case = load_case(path, warn=None)
    assert case.profile["price"].iloc[0] == -0.02 and case.warnings == []


@pytest.mark.parametrize("name", ["../../victim", "a/b", "a\\\\b", "..", "x\\ny", "", " ", "n" * 101])
def test_a_case_name_is_a_label_not_a_path(tmp_path, name):
    path = _case(tmp_path, **{'name = "ieee123"': f'name = "{name}"'})
    with pytest.raises(CaseError) as info:
        load_case(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: case.name: ") and "\n" not in msg, msg


def test_control_characters_in_keys_and_values_stay_on_one_line(tmp_path):
    path = _case(tmp_path, **{"[settings]": '[settings]\n"evil\\nkey\\u001b[31m" = 1',
                              'description = "': 'description = "two\\nlines '})
    proc = _cli("cases", "show", str(path))
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "2 problems" in line and "\x1b" not in line and r"evil\nkey\x1b[31m" in line


def test_every_bound_is_documented():
    """docs/case-format.md's Bounds table lists each key's rejected and unusual ranges."""
    doc = (REPO / "docs" / "case-format.md").read_text()
    section = doc.split("## Bounds", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            for key in re.findall(r"`([a-z0-9_.N]+)`", cells[0]):
                rows[key] = cells
    for path, bound in BOUNDS.items():
        key = path.split(".")[-1]
        assert path in rows or key in rows, path
        cells = rows.get(path) or rows[key]
        assert bound.interval().replace("inf", "∞") in cells[1].replace(" ", "").replace(",", ", "), (path, cells)
        assert bound.usual() == cells[2].replace("≤", "<=").replace("≥", ">="), (path, cells)


# ---------------------------------------------------------------------------------- tampered folders


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A solved and saved 2-hour ieee123 plan (no figures)."""
    from mpdopf_pyomo.pipeline import solve_case

    case = load_case("ieee123", 2)
    res = solve_case(case)
    res.summary["case_file"] = str(case.source)
    return res.save(tmp_path_factory.mktemp("saved") / "run")


def _copy(saved: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    for f in saved.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def _cut_mid_row(path: Path, row: int) -> None:
    """Cut ``path`` inside its ``row``-th line, after the row's third field (a file cut while being written)."""
    lines = path.read_text().splitlines(True)
    third_comma = [k for k, ch in enumerate(lines[row]) if ch == ","][2]
    path.write_text("".join(lines[:row]) + lines[row][: third_comma + 1])


def _summary(folder: Path, **changes):
    s = json.loads((folder / "summary.json").read_text())
    s.update(changes)
    (folder / "summary.json").write_text(json.dumps(s))


def _table(folder: Path, name: str, edit):
    df = pd.read_csv(folder / f"{name}.csv", dtype={"bus": str, "branch": str})
    out = edit(df)  # edits in place, or returns the edited table
    df = df if out is None else out
    df.to_csv(folder / f"{name}.csv", index=False)


def _no_der_case(folder: Path) -> None:
    text = re.sub(r"(?ms)^\[pv\].*?(?=^\[areas\])", "", CASE_TEXT)
    (folder.parent / "noder.toml").write_text(text)
    _summary(folder, case_file=str(folder.parent / "noder.toml"))


TAMPER = {
    "battery lacks a column": (lambda f: _table(f, "battery", lambda d: d.drop(columns="soc")),
                               r"battery.csv: missing column\(s\) soc"),
    "non-numeric cell": (lambda f: _table(f, "battery", lambda d: d.__setitem__("q_kvar", d["q_kvar"].astype(object))
                                          or d.loc.__setitem__((2, "q_kvar"), "abc")),
                         "battery.csv: column q_kvar, line 4: 'abc' is not a finite number"),
    "cut mid-row": (lambda f: _cut_mid_row(f / "battery.csv", 6),
                    r"battery.csv: column \w+, line \d+: empty \(cut file\?\)"),
    "cut at a row": (lambda f: (f / "pv.csv").write_text("".join((f / "pv.csv").read_text().splitlines(True)[:-1])),
                     r"pv.csv: bus 114 has 1 of the 2 periods"),
    "hours null": (lambda f: _summary(f, hours=None), "summary.json: hours: expected a whole number"),
    "hours abc": (lambda f: _summary(f, hours="abc"), "summary.json: hours: expected a whole number"),
    "hours wrong": (lambda f: _summary(f, hours=3), "summary.json: hours = 3, but substation.csv holds 2"),
    "case_file not a string": (lambda f: _summary(f, case_file=5), "summary.json: case_file: expected the path"),
    "summary not json": (lambda f: (f / "summary.json").write_text("{"), "summary.json: not readable JSON"),
    "summary a list": (lambda f: (f / "summary.json").write_text("[1]"), "summary.json: expected a JSON object"),
    "number is text": (lambda f: _summary(f, energy_cost_usd="lots"), "summary.json: energy_cost_usd: expected"),
    "soc 5, energy -1e6": (lambda f: _table(f, "battery", lambda d: d.loc.__setitem__((0, ["soc", "energy_kwh"]),
                                                                                        [5.0, -1e6])),
                           "battery.csv: column energy_kwh: bus 1 at t = 1: negative stored energy"),
    "soc not energy / rating": (lambda f: _table(f, "battery", lambda d: d.loc.__setitem__((0, "soc"), 0.9)),
                                "battery.csv: column soc: bus 1 at t = 1: soc is not energy_kwh"),
    "soc above soc_max": (lambda f: _table(f, "battery", lambda d: d.loc.__setitem__(
        (0, ["soc", "energy_kwh"]), [0.99, 0.99 * d.at[0, "energy_kwh"] / d.at[0, "soc"]])),
        "battery.csv: column soc: bus 1 at t = 1: soc outside the case's"),
    "case without DERs": (_no_der_case, "pv.csv: the plan's PV buses do not match those of .*noder.toml: 17 not in"),
    "a bus renamed": (lambda f: _table(f, "voltages", lambda d: d.loc.__setitem__((d["bus"] == d.at[5, "bus"], "bus"),
                                                                                  "nowhere")),
                      r"voltages.csv: the plan's buses do not match .*1 not in the case \(nowhere\)"),
    "a voltage row renamed": (lambda f: _table(f, "voltages", lambda d: d.loc.__setitem__((5, "bus"), "nowhere")),
                              r"voltages.csv: bus \S+ has 1 of the 2 periods"),
    "a voltage period twice": (lambda f: _table(f, "voltages", lambda d: d.loc.__setitem__((1, "t"), 1)),
                               r"voltages.csv: line 3: bus \S+ at t = 1 appears twice"),
    "a negative voltage": (lambda f: _table(f, "voltages", lambda d: d.loc.__setitem__((3, "v_pu"), -1.0)),
                           "voltages.csv: negative voltage magnitude"),
    "voltage at no period": (lambda f: _table(f, "voltages", lambda d: d.loc.__setitem__((3, "t"), 9)),
                             "voltages.csv: column t, line 5: 9 is not a period of substation.csv"),
    "t not a period": (lambda f: _table(f, "branches", lambda d: d.loc.__setitem__((0, "t"), 7)),
                       "branches.csv: column t, line 2: 7 is not a period of substation.csv"),
    "voltage columns": (lambda f: _table(f, "voltages", lambda d: d.rename(columns={"v_pu": "x"})),
                        "voltages.csv: missing column.s. v_pu"),
    "wide voltage columns": (lambda f: _table(f, "voltages", lambda d: d.pivot(index="bus", columns="t", values="v_pu")
                                              .reset_index().rename(columns={2: "x"})),
                             "voltages.csv: period columns 1, x do not match"),
    "a table missing": (lambda f: (f / "substation.csv").unlink(), "substation.csv: missing"),
    "an empty table": (lambda f: (f / "branches.csv").write_text(""), "branches.csv: not a readable CSV table"),
    "a FIFO table": (lambda f: ((f / "battery.csv").unlink(), os.mkfifo(f / "battery.csv")), "battery.csv: not a regular file"),
    "a FIFO extra table": (lambda f: os.mkfifo(f / "notes.csv"), "notes.csv: not a regular file"),
}


@pytest.mark.parametrize("what", list(TAMPER))
def test_validate_on_a_tampered_folder_is_one_line_exit_2(saved, tmp_path, what):
    tamper, needle = TAMPER[what]
    folder = _copy(saved, tmp_path)
    tamper(folder)
    result = CliRunner().invoke(main, ["validate", str(folder), "--no-plots"])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    line = _one_error_line(result.stderr)
    assert str(folder) in line and re.search(needle, line), line


def test_a_cut_battery_table_is_refused_before_plotting(saved, tmp_path):
    """It crashed drawing figures ('Axis limits cannot be NaN or Inf'), and passed with --no-plots."""
    folder = _copy(saved, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (folder / "battery.csv").write_text((folder / "battery.csv").read_text()[:700])
    before["battery.csv"] = (folder / "battery.csv").read_bytes()
    result = CliRunner().invoke(main, ["validate", str(folder)])
    assert result.exit_code == 2
    assert "battery.csv" in _one_error_line(result.stderr)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing written


def test_an_untouched_folder_still_validates(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    result = CliRunner().invoke(main, ["validate", str(folder), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "passed" in result.output
