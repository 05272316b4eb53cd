"""Figures: every figure is drawn, labelled and saved, from a fresh result and from one read back from disk;
the areas are the run's, the time axes put period quantities over their period and SOC at period ends."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition.partition import auto_cut_branches
from mpdopf_pyomo.plots import battery_figure, electrical_distance, figures, network_figure, voltage_heatmap
from mpdopf_pyomo.results import Results
from mpdopf_pyomo.pipeline import solve_central

BASE = {"substation", "forecast", "battery", "reactive", "voltages", "profile", "network"}


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
    summary = dict(res.summary, algorithm="admm", central_objective_usd=float(res.summary["objective_usd"]) - 0.01)
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
    assert set(figs) == BASE | {"validation", "convergence", "comparison"}
    for name, fig in figs.items():
        _check_readable(name, fig)


def test_figures_from_a_saved_folder(solved, tmp_path):
    """Extra tables read back from CSV (bus/t as columns, hours as strings) still plot."""
    case, res = solved
    folder = _with_extras(res).save(tmp_path / "saved")
    loaded = Results.load(folder)
    assert "validation_voltages" in loaded.extra_tables
    figs = figures(case, loaded)
    assert set(figs) == BASE | {"validation", "convergence", "comparison"}
    figs["validation"].savefig(tmp_path / "v.png")


def test_no_batteries_or_pvs(solved):
    """A case without DERs still gets every figure (with a note instead of lines)."""
    case, res = solved
    bare = Results(dict(res.summary), res.voltages, res.branches, res.pv.iloc[0:0], res.battery.iloc[0:0],
                   res.substation)
    figs = figures(case, bare)
    assert set(figs) == BASE


def _with_auto_areas(case, res: Results, n: int) -> Results:
    """The result as a distributed run with ``--areas n`` records it: its own cut branches in the summary."""
    cuts = auto_cut_branches(case, n)
    summary = dict(res.summary, algorithm="enapp", distributed={"areas": n, "cut_branches": cuts})
    return Results(summary, res.voltages, res.branches, res.pv, res.battery, res.substation, dict(res.extra_tables))


def _area_labels(labels) -> list[str]:
    return sorted({t.split("\n")[0] for t in labels if t.startswith("area ")})


def test_areas_are_the_runs(solved):
    """--areas 6: the network and voltage figures show 6 areas (colours and labels), not the case's 4."""
    case, res = solved
    assert case.n_areas == 4
    six = _with_auto_areas(case, res, 6)
    net = network_figure(case, six)
    ax = net.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert _area_labels(legend) == [f"area {k}" for k in range(1, 7)]
    assert _area_labels(t.get_text() for t in ax.texts) == [f"area {k}" for k in range(1, 7)]
    branch_colors = {tuple(c) for c in ax.collections[0].get_colors()}
    assert len(branch_colors) == 6
    cut_lines = ax.collections[1].get_segments()
    assert len(cut_lines) == 5  # 6 areas, 5 cut branches, drawn dashed
    heat = voltage_heatmap(case, six)
    assert _area_labels(t.get_text() for t in heat.axes[0].get_yticklabels()) == [f"area {k}" for k in range(1, 7)]
    # A central run (no distributed record) keeps the case's areas.
    four = voltage_heatmap(case, res)
    assert len(_area_labels(t.get_text() for t in four.axes[0].get_yticklabels())) == 4


def test_soc_at_period_ends_and_power_over_periods(solved):
    """SOC is the state at the end of a period: its points sit on the boundaries (soc0 at the start), the
    power bars are centred in their period and span it; the heat-map columns are centred on the boundaries."""
    case, res = solved
    fig = battery_figure(case, res)
    ax_map, ax_soc, ax_p = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:3]
    h0 = float(res.substation["clock_hour"].iloc[0])
    T = len(res.substation)
    edges = h0 + np.arange(T + 1)  # dt = 1 h
    mean = next(line for line in ax_soc.lines if "mean" in line.get_label())
    np.testing.assert_allclose(mean.get_xdata(), edges)
    soc = res.battery["soc"].unstack("t")
    expected = np.concatenate([[case.batteries["soc0"].reindex(soc.index).mean()], soc.mean(axis=0).to_numpy()])
    np.testing.assert_allclose(mean.get_ydata(), expected * 100)
    # the SOC peak of the plan is drawn at the end of its period, on a tick
    k = int(np.argmax(expected))
    assert mean.get_xdata()[k] == edges[k] and edges[k] in list(ax_p.get_xticks())
    bars = [p for p in ax_p.patches]
    centres = sorted({round(b.get_x() + b.get_width() / 2, 9) for b in bars})
    np.testing.assert_allclose(centres, edges[:-1] + 0.5)
    assert all(edges[0] <= b.get_x() and b.get_x() + b.get_width() <= edges[-1] for b in bars)
    x0, x1, _, _ = ax_map.images[0].get_extent()
    assert (x0, x1) == (edges[0] - 0.5, edges[-1] + 0.5)
    assert ax_map.images[0].get_array().shape == (len(case.batteries), T + 1)


def test_electrical_distance(solved):
    """Distance of a bus = distance of its parent + |z| of the branch (ohm); the substation is at 0."""
    case, _ = solved
    d = electrical_distance(case)
    assert d[case.root] == 0 and d.notna().all()
    br = case.branches.iloc[5]
    z = float(np.hypot(br["r"], br["x"])) * case.bases.z_ohm
    assert d[br["to_bus"]] == pytest.approx(d[br["from_bus"]] + z)
    assert (d.drop(case.root) > 0).all()


def test_enapp_convergence_has_no_rho_axis(solved):
    case, res = solved
    extra = _with_extras(res)
    extra.extra_tables["convergence"]["rho"] = np.nan  # ENApp writes an empty rho column
    fig = figures(case, extra)["convergence"]
    assert not any("ρ" in ax.get_ylabel() for ax in fig.axes)
    admm = figures(case, _with_extras(res))["convergence"]
    assert any("ρ" in ax.get_ylabel() for ax in admm.axes)


def test_comparison_only_when_central_is_known(solved):
    case, res = solved
    extra = _with_extras(res)
    del extra.summary["central_objective_usd"]
    assert "comparison" not in figures(case, extra)


def test_one_hour_run(tmp_path):
    """A 1-period horizon (one bar, two SOC states) draws and saves every figure without an exception."""
    case = load_case("ieee123", 1)
    res = solve_central(case, "linear")
    figs = figures(case, _with_extras(res))
    folder = res.save(tmp_path / "one", figs)
    assert all((folder / f"{n}.png").is_file() for n in figs)
