"""The documentation: every tutorial runs, and the site builds with warnings as errors.

The tutorials run through docs/run_tutorials.py into docs/src/tutorials/generated/ (git-ignored), the
folder the pages include, so the figures and output the built documentation shows are those of this run.
The build goes into a temporary folder; it re-runs no tutorial (their outputs exist by then).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RUNNER = DOCS / "run_tutorials.py"
GENERATED = DOCS / "src" / "tutorials" / "generated"
TUTORIALS = sorted(p.stem for p in (DOCS / "tutorials").glob("[0-9]*.py"))
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}

pytest.importorskip("mkdocs", reason="docs extras not installed (pip install -e '.[docs]')")
sys.path.insert(0, str(DOCS))
import check_site  # noqa: E402  (docs/check_site.py: what `make docs-check` runs)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=ENV,
                          timeout=timeout)


#: Tutorials shown on a page outside tutorials/ (by the page's own name).
PAGES = {"05_reproduce": DOCS / "src" / "reproduce.md"}


def _page_of(stem: str) -> Path:
    """The page that shows tutorial ``stem`` (01_central -> tutorials/01-central.md)."""
    return PAGES.get(stem, DOCS / "src" / "tutorials" / f"{stem.replace('_', '-')}.md")


def test_every_tutorial_has_a_page():
    assert TUTORIALS, "no tutorials found"
    for stem in TUTORIALS:
        assert _page_of(stem).is_file(), f"tutorial {stem} has no page {_page_of(stem)}"


@pytest.mark.parametrize("stem", TUTORIALS)
def test_tutorial_runs(stem: str):
    proc = _run(str(RUNNER), stem)
    assert proc.returncode == 0, f"tutorial {stem} failed:\n{proc.stderr[-6000:]}"
    out = GENERATED / stem
    meta = json.loads((out / "meta.json").read_text())
    if meta["status"] == "pending":
        pytest.skip(f"tutorial {stem} needs {', '.join(meta['missing'])}, not in this version yet")
    assert meta["status"] == "ok"
    # Every cell the page includes and every figure it shows exists and comes from this run.
    page = _page_of(stem).read_text()
    cells = re.findall(rf'--8<-- "src/tutorials/generated/{stem}/([\w-]+\.md)"', page)
    figures = re.findall(rf"\]\(generated/{stem}/([^)]+)\)", page)
    assert cells, f"page of {stem} includes no cell"
    for name in cells + figures:
        assert (out / name).is_file(), f"{stem}: the page shows {name}, which the run did not write"
    for name in figures:
        assert (out / name).stat().st_size > 1000, f"{stem}: figure {name} is empty"
    # Every cell of the script is on the page (a new cell must be shown or it is dead code in a tutorial).
    missing = sorted(set(meta["cells"]) - {c[:-3] for c in cells})
    assert not missing, f"cells of {stem} not shown on its page: {missing}"


def test_mkdocs_build_strict(tmp_path: Path):
    pytest.importorskip("latex2mathml", reason="docs extra latex2mathml not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    proc = _run("-m", "mkdocs", "build", "--strict", "-f", str(DOCS / "mkdocs.yml"), "-d", str(site))
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]
    cli = (site / "reference" / "cli.html").read_text()
    for command in ("doctor", "install-solvers", "cases", "solve", "--solver-option"):
        assert command in cli, f"CLI reference lacks {command}"
    api = (site / "reference" / "api.html").read_text()
    for name in ("load_case", "solve_case", "build_model", "declare_branch_flow", "Results"):
        assert name in api, f"API reference lacks {name}"
    assert ":func:" not in api
    case_format = (site / "case-format.html").read_text()
    assert "cut_branches" in case_format and "--8&lt;--" not in case_format
    # Offline: equations are MathML, nothing loads from the network, no click sentinel, no checkout path.
    assert check_site.static_problems(site) == []
    assert "<math" in (site / "model.html").read_text() and "<td>None</td>" in cli
    # The same site in a browser: MathML laid out as mathematics, screenshots taken (skipped without Chromium).
    exe = check_site.chromium()
    if exe is None:
        pytest.skip("chromium not installed: browser check of the site skipped (apt-get install chromium)")
    assert check_site.browser_problems(site, tmp_path / "shots", exe) == []


def test_strict_build_fails_on_a_broken_link(tmp_path: Path):
    """The check above can fail: a page with a dead link aborts a strict build."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.md").write_text("# x\n\n[dead](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: t\ndocs_dir: src\n")
    proc = _run("-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml"), "-d",
                str(tmp_path / "site"), timeout=120)
    assert proc.returncode != 0


def test_failing_tutorial_fails_the_runner(tmp_path: Path):
    script = tmp_path / "99_broken.py"
    script.write_text(textwrap.dedent("""\
        x = 1
        # %% ok
        print("fine")
        # %% broken
        raise RuntimeError("this tutorial is broken")
    """))
    proc = _run(str(RUNNER), str(script), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode != 0
    assert "this tutorial is broken" in proc.stderr
    assert not (tmp_path / "out").exists(), "a failed tutorial must leave no outputs"


def test_site_check_finds_what_a_reader_would_see(tmp_path: Path):
    """The offline check can fail: raw TeX, a CDN script, a click sentinel and a checkout path are reported."""
    (tmp_path / "ok.html").write_text('<p><span class="arithmatex"><math><mi>x</mi></math></span></p>')
    assert check_site.static_problems(tmp_path) == []
    (tmp_path / "bad.html").write_text(
        '<div class="arithmatex">\\[ x^2 \\]</div>'
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        f"<td>`Sentinel.UNSET`</td><code>{REPO}/cases/ieee123.toml</code>")
    problems = " | ".join(check_site.static_problems(tmp_path))
    for what in ("still TeX", "loads from the network", "sentinel", "checkout path"):
        assert what in problems, problems
