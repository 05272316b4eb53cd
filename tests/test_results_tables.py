"""The output tables are tidy and joinable: long voltages, a clock-time column, string bus ids on re-reading."""

from __future__ import annotations

import pandas as pd
import pytest

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.results import Results, clock_times

KEYS = {"bus": str, "branch": str, "from_bus": str, "to_bus": str}  # what the docs tell readers to pass


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    res = solve_case(load_case("ieee123", 2, start=18))
    folder = res.save(tmp_path_factory.mktemp("tables") / "run")
    return res, folder


def test_voltages_are_long_with_clock_time_and_read_back_wide(saved):
    res, folder = saved
    v = pd.read_csv(folder / "voltages.csv", dtype=KEYS)
    assert list(v.columns) == ["bus", "t", "clock_time", "v_pu"]
    assert len(v) == len(res.voltages) * 2 and not v.duplicated(["bus", "t"]).any()
    assert v.loc[v["t"] == 1, "clock_time"].unique().tolist() == ["18:00"]
    # long == the in-memory bus x period table, value for value
    wide = v.pivot(index="bus", columns="t", values="v_pu").loc[res.voltages.index]
    assert (wide.to_numpy() == pytest.approx(res.voltages.to_numpy(), abs=1e-12))
    back = Results.load(folder)
    assert list(back.voltages.index) == list(res.voltages.index) and list(back.voltages.columns) == [1, 2]
    assert back.voltages.to_numpy() == pytest.approx(res.voltages.to_numpy(), abs=1e-12)


def test_every_per_period_table_has_clock_time_and_joins(saved):
    res, folder = saved
    for name in ("voltages", "branches", "pv", "battery", "substation", "validation_by_hour"):
        file = folder / f"{name}.csv"
        if not file.exists():
            continue
        df = pd.read_csv(file, dtype=KEYS)
        cols = list(df.columns)
        assert cols[cols.index("t") + 1] == "clock_time", (name, cols)
        assert set(df["clock_time"]) == {"18:00", "19:00"}, name
    # a join on (bus, t): battery SOC next to the bus voltage, one row per battery and period
    bat = pd.read_csv(folder / "battery.csv", dtype=KEYS)
    v = pd.read_csv(folder / "voltages.csv", dtype=KEYS)
    joined = bat.merge(v, on=["bus", "t", "clock_time"], validate="one_to_one")
    assert len(joined) == len(bat) and joined["v_pu"].notna().all()
    assert bat["bus"].map(type).eq(str).all()


def test_results_load_has_no_clock_time_duplicates_and_saves_again(saved, tmp_path):
    """Read back and written again: clock_time is derived, not carried twice."""
    _, folder = saved
    back = Results.load(folder)
    assert "clock_time" not in back.battery.columns and "clock_time" not in back.substation.columns
    again = back.save(tmp_path / "again")
    assert (again / "battery.csv").read_text() == (folder / "battery.csv").read_text()
    assert (again / "voltages.csv").read_text() == (folder / "voltages.csv").read_text()


def test_a_wide_voltages_file_of_earlier_versions_still_loads(saved, tmp_path):
    import shutil

    res, folder = saved
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    res.voltages.to_csv(old / "voltages.csv")  # bus, 1, 2 (the layout before long tables)
    back = Results.load(old)
    assert back.voltages.to_numpy() == pytest.approx(res.voltages.to_numpy(), abs=1e-12)


def test_clock_times():
    sub = pd.DataFrame({"clock_hour": [9, 9.5, 23, 24, 49.25]}, index=pd.Index([1, 2, 3, 4, 5], name="t"))
    assert clock_times(sub).tolist() == ["09:00", "09:30", "23:00", "1+00:00", "2+01:15"]
    assert clock_times(pd.DataFrame({"p_kw": [1.0]})) is None
