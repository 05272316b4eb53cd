"""``python -m mpdopf_pyomo.benchmark --profile``: a case given as a path (it once went into the output
file name, and the stage timers named a module that had been renamed)."""

from __future__ import annotations

from pathlib import Path

from mpdopf_pyomo import benchmark
from mpdopf_pyomo.case import CASES_DIR
from mpdopf_pyomo.outputs import MARKER, read_marker


def test_profile_of_a_case_path(tmp_path: Path, capsys) -> None:
    case = CASES_DIR / "ieee13.toml"
    assert benchmark.main(["--profile", "1", "--case", str(case), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [MARKER, "profile_ieee13_1h.csv", "profile_ieee13_1h.md"]
    assert read_marker(tmp_path)["files"] == ["profile_ieee13_1h.csv", "profile_ieee13_1h.md"]  # its own, listed
    text = (tmp_path / "profile_ieee13_1h.md").read_text()
    assert f"solve --case {case} --hours 1" in text
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("|") and "---" not in line}
    # the stage timers were attached (a renamed module made the child crash before any row)
    assert float(rows["case load (TOML, OpenDSS compile, tree, profiles)"]) > 0
    assert float(rows["build Pyomo model"]) > 0
    assert abs(float(rows["unaccounted"])) < 0.2 * float(rows["**wall time of the process**"])
