"""The parsed-network cache of ``load_case`` (OpenDSS models): a hit gives the same tables without the OpenDSS
engine, any change to a file the model reads is a miss, a damaged entry is parsed again, and it can be off."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mpdopf_pyomo import case as case_mod
from mpdopf_pyomo.case import load_case

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def feeder(tmp_path, monkeypatch):
    """A copy of the bundled ieee123 model (a bare network file as the case) and an empty cache folder."""
    folder = tmp_path / "model"
    shutil.copytree(REPO / "models" / "ieee123", folder)
    cache = tmp_path / "cache"
    monkeypatch.setenv(case_mod.CACHE_DIR_ENV, str(cache))
    monkeypatch.delenv(case_mod.NO_CACHE_ENV, raising=False)
    return folder / "master.dss", cache


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("network-*.pkl")) if cache.is_dir() else []


def test_hit_gives_the_same_case(feeder):
    master, cache = feeder
    first = load_case(master, 2, warn=None)
    assert len(_entries(cache)) == 1
    second = load_case(master, 2, warn=None)
    assert len(_entries(cache)) == 1
    pd.testing.assert_frame_equal(first.buses, second.buses)
    pd.testing.assert_frame_equal(first.branches, second.branches)
    assert first.conversion.as_dict() == second.conversion.as_dict()


def test_hit_does_not_import_opendss(feeder):
    master, cache = feeder
    load_case(master, 1, warn=None)
    code = ("import sys; from mpdopf_pyomo.case import load_case; "
            f"c = load_case({str(master)!r}, 1, warn=None); print(len(c.buses), 'opendssdirect' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(REPO), case_mod.CACHE_DIR_ENV: str(cache)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == [str(len(load_case(master, 1, warn=None).buses)), "False"]


def test_a_changed_file_is_read_again(feeder):
    """Editing a file the master redirects to (a load's kW) changes the case: a new entry, the new value."""
    master, cache = feeder
    before = load_case(master, 1, warn=None).buses["p_load"].sum()
    loads = master.parent / "loads.dss"
    text = loads.read_text()
    line = next(ln for ln in text.splitlines() if ln.lower().startswith("new load.") and "kw=" in ln.lower())
    loads.write_text(text.replace(line, line + "\nNew Load.extra bus1=1 phases=3 conn=wye kV=4.16 kW=300 kvar=0 model=1 vminpu=0.5 vmaxpu=1.5", 1))
    after = load_case(master, 1, warn=None).buses["p_load"].sum()
    assert len(_entries(cache)) == 2
    assert after > before


def test_a_file_named_outside_the_folder_is_part_of_the_key(feeder, tmp_path):
    """A Redirect to a file in another folder: editing that file is a miss too."""
    master, cache = feeder
    other = tmp_path / "elsewhere"
    other.mkdir()
    extra = other / "extra.dss"
    extra.write_text("New Load.far bus1=1 phases=3 conn=wye kV=4.16 kW=100 kvar=0 model=1 vminpu=0.5 vmaxpu=1.5\n")
    lines = master.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.lower().startswith("redirect") and "loads" in ln.lower())
    master.write_text("\n".join([*lines[: at + 1], f"Redirect {extra}", *lines[at + 1:]]) + "\n")
    p1 = load_case(master, 1, warn=None).buses["p_load"].sum()
    extra.write_text("New Load.far bus1=1 phases=3 conn=wye kV=4.16 kW=400 kvar=0 model=1 vminpu=0.5 vmaxpu=1.5\n")
    p2 = load_case(master, 1, warn=None).buses["p_load"].sum()
    assert p2 > p1


def test_a_damaged_entry_is_parsed_again(feeder):
    master, cache = feeder
    want = load_case(master, 1, warn=None).buses
    (entry,) = _entries(cache)
    entry.write_bytes(b"not a pickle")
    pd.testing.assert_frame_equal(load_case(master, 1, warn=None).buses, want)
    assert entry.read_bytes() != b"not a pickle"  # rewritten


def test_switched_off(feeder, monkeypatch):
    master, cache = feeder
    monkeypatch.setenv(case_mod.NO_CACHE_ENV, "1")
    load_case(master, 1, warn=None)
    assert not cache.exists()


def test_old_entries_are_removed_only_in_the_caches_own_folder(feeder, tmp_path, monkeypatch):
    """With one entry kept, an edited model's entry replaces the first in the folder the cache made; in a
    folder that already held the user's files (one named like an entry) nothing is removed."""
    master, cache = feeder
    monkeypatch.setattr(case_mod, "CACHE_KEEP", 1)
    load_case(master, 1, warn=None)
    assert (cache / case_mod.CACHE_MARKER).is_file()
    (first,) = _entries(cache)
    master.write_text(master.read_text() + "\n! a comment: another key\n")
    load_case(master, 1, warn=None)
    (second,) = _entries(cache)
    assert second != first
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    keep = theirs / ("network-" + "0" * 64 + ".pkl")
    keep.write_bytes(b"the user's file")
    (theirs / "notes.txt").write_text("x")
    monkeypatch.setenv(case_mod.CACHE_DIR_ENV, str(theirs))
    load_case(master, 1, warn=None)
    assert keep.read_bytes() == b"the user's file" and (theirs / "notes.txt").read_text() == "x"
    assert len(_entries(theirs)) == 2 and not (theirs / case_mod.CACHE_MARKER).exists()
