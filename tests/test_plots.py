"""Figures: every figure is drawn, labelled and saved, from a fresh result and from one read back from disk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.plots import figures
from mpdopf_pyomo.results import Results
from mpdopf_pyomo.pipeline import solve_central

BASE = {"substation", "battery", "reactive", "voltages", "network"}


@pytest.fixture(scope="module")
def solved():
    case = load_case("ieee123", 3)
    return case, solve_central(case, "linear")


def _with_extras(res: Results) -> Results:
    """A copy with validation and convergence tables shaped like the ones validation/ADMM attach."""
    rng = np.random.default_rng(0)
    extra = dict(res.extra_tables)
    hours = list(res.voltages.columns)
    extra["validation_voltages"] = res.voltages + rng.normal(0, 1e-6, res.voltages.shape)
    extra["validation_by_hour"] = pd.DataFrame(
        {"max_abs_dv_pu": 1e-6, "dp_sub_kw": 0.01, "dq_sub_kvar": -0.02, "dloss_kw": 0.001},
        index=pd.Index(hours, name="t"),
    )
    n = 30
    extra["convergence"] = pd.DataFrame({
        "iteration": np.arange(1, n + 1),
        "primal_residual": np.logspace(-1, -5, n),
        "dual_residual": np.logspace(-2, -6, n),
        "objective_usd": 1000 + np.exp(-np.arange(n) / 5),
        "rho": 1.0,
        "elapsed_s": np.arange(n) * 0.1,
    })
    summary = dict(res.summary, algorithm="admm")
    return Results(summary, res.voltages, res.branches, res.pv, res.battery, res.substation, extra)


def _check_readable(name: str, fig: Figure) -> None:
    assert isinstance(fig, Figure), name
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, name
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(titles), f"{name}: no title"
    for ax in axes:
        if ax.get_visible() and (ax.lines or ax.collections or ax.patches or ax.images):
            assert ax.get_ylabel(), f"{name}: an axis has no y label"
    assert any(ax.get_xlabel() for ax in axes), f"{name}: no x label"


def test_base_figures(solved, tmp_path):
    case, res = solved
    figs = figures(case, res)
    assert set(figs) == BASE
    for name, fig in figs.items():
        _check_readable(name, fig)
    folder = res.save(tmp_path / "run", figs)
    for name in BASE:
        png = folder / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validation_and_convergence_figures(solved):
    case, res = solved
    figs = figures(case, _with_extras(res))
    assert set(figs) == BASE | {"validation", "convergence"}
    for name, fig in figs.items():
        _check_readable(name, fig)


def test_figures_from_a_saved_folder(solved, tmp_path):
    """Extra tables read back from CSV (bus/t as columns, hours as strings) still plot."""
    case, res = solved
    folder = _with_extras(res).save(tmp_path / "saved")
    loaded = Results.load(folder)
    assert "validation_voltages" in loaded.extra_tables
    figs = figures(case, loaded)
    assert set(figs) == BASE | {"validation", "convergence"}
    figs["validation"].savefig(tmp_path / "v.png")


def test_no_batteries_or_pvs(solved):
    """A case without DERs still gets every figure (with a note instead of lines)."""
    case, res = solved
    bare = Results(dict(res.summary), res.voltages, res.branches, res.pv.iloc[0:0], res.battery.iloc[0:0],
                   res.substation)
    figs = figures(case, bare)
    assert set(figs) == BASE
