"""The package as users install it: the wheel carries the bundled cases and network models and solves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _declared() -> tuple[set[str], dict[str, str]]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(cfg["packages"]), cfg["package-dir"]


def test_every_subpackage_and_data_folder_is_declared():
    """pyproject lists packages explicitly (the data folders are mapped); a new folder must be added there."""
    declared, mapped = _declared()
    def folders(root: Path, pkg: str) -> set[str]:
        """``pkg`` and every folder below ``root`` that holds files, as dotted package names."""
        return {pkg} | {pkg + "." + ".".join(d.relative_to(root).parts) for d in root.rglob("*")
                        if d.is_dir() and "__pycache__" not in d.parts and any(f.is_file() for f in d.iterdir())}

    expected = folders(REPO / "mpdopf_pyomo", "mpdopf_pyomo")
    for pkg, folder in mapped.items():
        expected |= folders(REPO / folder, pkg)
    assert declared == expected


def test_wheel_carries_cases_and_models_and_solves(tmp_path: Path):
    """Build the wheel, install it apart from the source tree, load a bundled case and solve from there."""
    # Build from a copy of what the wheel is made of: setuptools writes build/ and *.egg-info into the
    # source folder, which must stay the user's.
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    for name in ("mpdopf_pyomo", "cases", "models"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    assert "Warning" not in build.stderr and "deprecat" not in build.stderr.lower(), build.stderr
    (wheel,) = wheels.glob("mpdopf_pyomo-*.whl")
    site = tmp_path / "site"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert inst.returncode == 0, inst.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "work"
    work.mkdir()
    probe = subprocess.run(
        [sys.executable, "-c",
         "import mpdopf_pyomo, mpdopf_pyomo.case as c; k = c.load_case('ieee123', 1);"
         "print(mpdopf_pyomo.__file__); print(k.network_model); print(len(k.buses), len(k.batteries))"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    pkg_file, model, sizes = probe.stdout.split("\n")[:3]
    assert Path(pkg_file).is_relative_to(site), "the installed wheel, not the source tree, was imported"
    assert Path(model).is_relative_to(site / "mpdopf_pyomo" / "models")
    assert sizes == "128 26"
    run = subprocess.run(
        [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", "ieee123", "--hours", "1", "--no-plots",
         "--out", str(work / "run"), "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (work / "run" / "summary.json").is_file()
    assert "151.2" in run.stdout  # the 1-hour objective, USD (tests/test_central.py checks it precisely)


@pytest.mark.parametrize("name", ["LICENSE", "CITATION.cff"])
def test_license_and_citation_files(name: str):
    text = (REPO / name).read_text()
    assert ("BSD 3-Clause" in text) if name == "LICENSE" else ("cff-version" in text and "Jha" in text)
