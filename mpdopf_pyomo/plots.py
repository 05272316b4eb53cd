"""Matplotlib figures of a solved plan (PNG through :meth:`Results.save`).

:func:`figures` returns ``{name: Figure}``:

* ``substation``   substation active/reactive power (kW, kvar) against the energy price (USD/kWh), and the
                   feeder's losses per period (kW)
* ``forecast``     the forecast profiles of the horizon: load and PV multipliers and the energy price
* ``battery``      state of charge of every battery (heat map, one row per battery), the mean SOC with its
                   limits, and the fleet's charge/discharge power
* ``reactive``     PV and battery reactive power (kvar) per unit and in total
* ``voltages``     heat map of every bus voltage (pu) by period, buses grouped by the run's areas
* ``profile``      voltage against electrical distance from the substation (the sum of the branch
                   impedances ``|r + jx|`` along the path, ohm at the case's base voltage), every period in
                   grey and the lowest-voltage period coloured by area
* ``network``      the feeder drawn from bus coordinates, coloured by voltage at the lowest-voltage period,
                   the run's areas marked and its cut branches highlighted
* ``validation``   (when the run was validated) OpenDSS against optimization voltages, and per-period mismatch
* ``convergence``  (distributed runs) primal/dual residuals and objective against iteration; the ADMM
                   penalty ρ only when the run has one
* ``comparison``   (distributed runs whose summary knows ``central_objective_usd``) the distributed objective
                   against the central optimum: relative gap per iteration and the final values

The areas are those the run used (:func:`run_areas`: with ``--areas N``, N areas, not the case's). Time
axes are clock time in hours with ticks at the period boundaries. A quantity that holds over a period
(power, price, voltage, losses) spans its period (bars, steps, heat-map cells); the battery state of charge
is an end-of-period state (``B_j^t`` is the energy at the end of period t, see the model page) and is drawn
at the period's end, the initial state ``soc0`` at the start of the horizon.

Figures are built with the object-oriented API on the Agg canvas (no pyplot, no GUI, no tight_layout).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable


def _import_matplotlib() -> Any:
    """Import matplotlib on the Agg backend without pyplot.

    Once Pyomo is imported, its import hook finishes any later ``import matplotlib`` by importing
    ``matplotlib.pyplot`` and ``matplotlib.pylab`` too (~0.3 s we do not need: these figures never touch
    pyplot). Suspend that one callback while matplotlib loads; anything unexpected falls back to a plain import.
    """
    if "matplotlib" in sys.modules:
        import matplotlib

        return matplotlib
    finder, callback = None, None
    try:
        from pyomo.common.dependencies import DeferredImportCallbackFinder as finder

        callback = finder._callbacks.pop("matplotlib", None)
    except Exception:  # pragma: no cover - other Pyomo versions: just import normally
        finder = None
    try:
        import matplotlib
    finally:
        if finder is not None and callback is not None:
            finder._callbacks["matplotlib"] = callback
    return matplotlib


matplotlib = _import_matplotlib()
matplotlib.use("Agg")  # non-interactive; harmless when already set

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter  # noqa: E402

from mpdopf_pyomo.background import BASE_FIGURES, figure_names  # noqa: E402,F401  (re-exported)
from mpdopf_pyomo.background import core_is_free  # noqa: E402,F401  (re-exported)
from mpdopf_pyomo.case import Case  # noqa: E402
from mpdopf_pyomo.results import Results  # noqa: E402

AREA_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
VOLTAGE_CMAP = "viridis"


#: Resolution of every PNG the program writes.
PNG_DPI = 110
#: zlib level of the PNG files: 1 instead of Pillow's default 6 makes the files ~8 % larger and their
#: encoding, a fifth of the time of saving a figure, about 3 times faster.
PNG_COMPRESS_LEVEL = 1


#: Settings every figure is built with. ``axes.titley`` 1.0: the titles sit where matplotlib's automatic
#: placement puts them on these axes (no ticks or labels above the plot), without that placement measuring
#: every tick label of every axes again at each save (a tenth of the figures' time).
_RC = {"axes.titley": 1.0}


def figure(name: str, case: Case, results: Results) -> Figure:
    """One figure by name (see :data:`BASE_FIGURES` and :func:`figure_names`)."""
    draw = {
        "substation": substation_figure, "forecast": forecast_figure, "battery": battery_figure,
        "reactive": reactive_figure, "voltages": voltage_heatmap, "profile": voltage_profile_figure,
        "network": network_figure, "validation": validation_figure, "convergence": convergence_figure,
        "comparison": comparison_figure,
    }
    if name not in draw:
        raise KeyError(f"no figure named {name!r}; figures: {', '.join(draw)}")
    with matplotlib.rc_context(_RC):
        return draw[name](case, results)


def figures(case: Case, results: Results, names: Iterable[str] | None = None) -> dict[str, Figure]:
    """The figures of one run, by name (the PNG file stem): ``names``, or all of :func:`figure_names`."""
    return {name: figure(name, case, results) for name in (figure_names(results) if names is None else names)}


def save_png(fig: Figure, path: str | Path) -> None:
    """Write ``fig`` as the PNG file ``path`` (:data:`PNG_DPI`, :data:`PNG_COMPRESS_LEVEL`)."""
    fig.savefig(path, format="png", dpi=PNG_DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})


def write_figures(case: Case, results: Results, names: Iterable[str], folder: str | Path) -> list[str]:
    """Draw each figure of ``names`` and save it as ``folder/NAME.png`` at once (one figure in memory at a
    time); return the file names written."""
    import gc

    written = []
    was_enabled = gc.isenabled()
    gc.disable()  # matplotlib's many small objects set off ~40 collections per figure (~0.1 s in all)
    try:
        for name in names:
            save_png(figure(name, case, results), Path(folder) / f"{name}.png")
            written.append(f"{name}.png")
    finally:
        if was_enabled:
            gc.enable()  # the next collection frees the figures' reference cycles
    return written


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


class _Clock:
    """The horizon on a clock-time axis (hours): period k spans ``edges[k] .. edges[k + 1]``."""

    def __init__(self, case: Case, results: Results):
        sub = results.substation
        self.t = np.asarray(sub.index, dtype=int)
        self.dt = float(case.settings.dt_h)
        self.clock = "clock_hour" in sub.columns and len(sub) > 0
        h0 = float(sub["clock_hour"].iloc[0]) if self.clock else 0.0
        self.edges = h0 + self.dt * np.arange(len(self.t) + 1)
        self.mids = self.edges[:-1] + self.dt / 2
        self.ends = self.edges[1:]

    def at(self, periods: Any) -> np.ndarray:
        """Mid-period x of the given period numbers."""
        return self.mids[np.searchsorted(self.t, np.asarray(periods, dtype=int))]

    def label(self, h: float) -> str:
        if not self.clock:
            return f"{h:g} h"
        minutes = int(round(h * 60))
        return f"{(minutes // 60) % 24:02d}:{minutes % 60:02d}"

    def axis(self, ax: Any, label: bool = True) -> None:
        step = max(1, int(np.ceil((len(self.edges) - 1) / 12)))
        ticks = self.edges[::step]
        ax.set_xticks(ticks)
        ax.set_xticklabels([self.label(h) for h in ticks], fontsize=8)
        ax.set_xlim(self.edges[0], self.edges[-1])
        if label:
            what = "clock time" if self.clock else "time from the start"
            ax.set_xlabel(f"{what} (Δt = {self.dt:g} h; ticks at period boundaries)")
        ax.grid(True, alpha=0.3)


def _title(case: Case, results: Results, what: str) -> str:
    s = results.summary
    form = s.get("formulation", "")
    alg = s.get("algorithm", "")
    return f"{case.name}, {len(results.substation)} h, {alg} {form}: {what}"


def _wide(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """(unit, t)-indexed table -> units x hours frame of one column."""
    if table.empty:
        return pd.DataFrame()
    return table[column].unstack("t")


def _plain_log_labels(ax: Any) -> None:
    """Log-axis labels as plain text (1e-05): mathtext labels cost ~0.1 s per figure to lay out."""
    ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _color_range(data: np.ndarray) -> tuple[float, float]:
    """Colour limits for voltages: the data's range (at least 0.002 pu wide), so differences show."""
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    if hi - lo < 2e-3:
        mid = (hi + lo) / 2
        lo, hi = mid - 1e-3, mid + 1e-3
    return lo, hi


def _voltage_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A bus x hour voltage table, whether indexed by bus (in memory) or re-read from CSV (bus column)."""
    if "bus" in frame.columns:
        frame = frame.set_index("bus")
    frame = frame.copy()
    frame.index = frame.index.astype(str)
    frame.columns = [int(c) for c in frame.columns]
    return frame


def _area_color(a: Any) -> str:
    return AREA_COLORS[(int(a) - 1) % len(AREA_COLORS)]


def run_areas(case: Case, results: Results) -> tuple[pd.Series, list[str]]:
    """The areas the run used (bus -> area number) and its cut branches.

    A distributed run records its cut branches in ``summary["distributed"]["cut_branches"]``; with
    ``--areas N`` they are not the case's, so the areas are rebuilt from them. Other runs: the case's.
    """
    cuts = (results.summary.get("distributed") or {}).get("cut_branches")
    if not cuts or list(cuts) == list(case.cut_branches) or any(c not in case.branches.index for c in cuts):
        return case.buses["area"], list(case.cut_branches)
    from mpdopf_pyomo.network import assign_areas

    return assign_areas(case.branches, case.root, cuts).reindex(case.buses.index), list(cuts)


def electrical_distance(case: Case) -> pd.Series:
    """Per bus: the sum of ``|r + jx|`` of the branches on its path from the substation, in ohm.

    Branch impedances are per unit on the to-bus base, so the sum is taken in pu (consistent across
    transformers) and reported in ohm at the case's base voltage (``bases.z_ohm``).
    """
    br = case.branches
    z = np.hypot(br["r"].to_numpy(dtype=float), br["x"].to_numpy(dtype=float))
    dist = {case.root: 0.0}
    for frm, to, zk in zip(br["from_bus"], br["to_bus"], z):  # oriented tree, parent before child
        dist[to] = dist[frm] + zk
    out = pd.Series(dist, name="distance_ohm") * case.bases.z_ohm
    return out.reindex(case.buses.index)


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def substation_figure(case: Case, results: Results) -> Figure:
    """Substation active and reactive power with the energy price (top), the feeder's losses (bottom)."""
    sub = results.substation
    clock = _Clock(case, results)
    x, w = clock.mids, clock.dt
    fig = Figure(figsize=(8, 5.6))
    fig.subplots_adjust(left=0.1, right=0.88, top=0.93, bottom=0.1, hspace=0.08)
    ax, ax_l = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    ax.bar(x, sub["p_kw"], width=0.8 * w, color="#4c72b0", label="active power P_sub (kW)")
    ax.plot(x, sub["q_kvar"], "s-", color="#55a868", ms=4, label="reactive power Q_sub (kvar)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("substation power (kW, kvar)")
    top = float(max(sub["p_kw"].max(), sub["q_kvar"].max(), 0.0))
    bottom = float(min(sub["p_kw"].min(), sub["q_kvar"].min(), 0.0))
    ax.set_ylim(bottom * 1.1, top * 1.3 or 1.0)
    ax.grid(True, alpha=0.3)
    ax2 = ax.twinx()
    ax2.stairs(sub["price_usd_per_kwh"].to_numpy(dtype=float), clock.edges, color="#c44e52", lw=2,
               label="energy price (USD/kWh)")
    ax2.set_ylabel("energy price (USD/kWh)", color="#c44e52")
    ax2.tick_params(axis="y", colors="#c44e52")
    ax2.set_ylim(0, float(sub["price_usd_per_kwh"].max()) * 1.3 or 1.0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", ncols=3, fontsize=8, framealpha=0.9)
    cost = results.summary.get("energy_cost_usd")
    extra = f" (energy cost {cost:.2f} USD)" if _is_number(cost) else ""
    ax.set_title(_title(case, results, "substation power and price") + extra, fontsize=10)

    loss = results.branches["loss_kw"].groupby(level="t").sum().reindex(clock.t) if "loss_kw" in \
        results.branches.columns else pd.Series(np.nan, index=clock.t)
    share = 100 * loss.to_numpy(dtype=float) / np.where(sub["p_kw"].to_numpy(dtype=float) > 0,
                                                         sub["p_kw"].to_numpy(dtype=float), np.nan)
    ax_l.bar(x, loss, width=0.8 * w, color="#937860")
    for xi, li, si in zip(x, loss, share):
        if np.isfinite(si):
            ax_l.annotate(f"{si:.1f} %", (xi, li), xytext=(0, 2), textcoords="offset points", ha="center",
                          fontsize=7)
    ax_l.set_ylim(0, float(np.nanmax(loss.to_numpy(dtype=float), initial=0.0)) * 1.3 or 1.0)
    ax_l.set_ylabel("losses (kW)")
    total = float(np.nansum(loss.to_numpy(dtype=float))) * clock.dt
    ax_l.text(0.01, 0.93, f"feeder losses per period, {total:.1f} kWh in all (labels: % of P_sub)",
              transform=ax_l.transAxes, fontsize=8, va="top")
    clock.axis(ax_l)
    return fig


def forecast_figure(case: Case, results: Results) -> Figure:
    """The forecast of the horizon: load and PV multipliers (left axis) and the energy price (right)."""
    sub = results.substation
    clock = _Clock(case, results)
    fig = Figure(figsize=(8, 3.8))
    fig.subplots_adjust(left=0.1, right=0.88, top=0.9, bottom=0.15)
    ax = fig.add_subplot()
    for col, color, label in (("load_mult", "#4c72b0", "load multiplier λ_L (× nominal load)"),
                              ("pv_mult", "#f0a000", "PV multiplier λ_PV (× rated PV power)")):
        if col in sub.columns:
            ax.stairs(sub[col].to_numpy(dtype=float), clock.edges, color=color, lw=2.2, label=label)
    top = float(sub[[c for c in ("load_mult", "pv_mult") if c in sub.columns]].to_numpy(dtype=float).max(initial=0.0))
    nominal = float(case.buses["p_load"].sum())
    if case.load_profiles is not None and nominal > 0:  # per-bus profiles: the feeder's own load multiplier
        feeder = case.load_kw() / (nominal * case.bases.s_kva)
        ax.stairs(feeder, clock.edges, color="#4c72b0", lw=1.4, ls=":",
                  label="feeder load with per-bus profiles (× nominal load)")
        top = max(top, float(feeder.max(initial=0.0)))
    ax.set_ylim(0, 1.5 * max(1.0, top))
    ax.set_ylabel("multiplier (pu)")
    axp = ax.twinx()
    axp.stairs(sub["price_usd_per_kwh"].to_numpy(dtype=float), clock.edges, color="#c44e52", lw=1.6, ls="--",
               label="energy price (USD/kWh, right axis)")
    axp.set_ylim(0, float(sub["price_usd_per_kwh"].max()) * 1.5 or 1.0)
    axp.set_ylabel("energy price (USD/kWh)", color="#c44e52")
    axp.tick_params(axis="y", colors="#c44e52")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = axp.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", ncols=2, fontsize=8, framealpha=0.9)
    clock.axis(ax)
    ax.set_title(_title(case, results, "forecast profiles (load, PV, price)"), fontsize=10)
    return fig


def battery_figure(case: Case, results: Results) -> Figure:
    """SOC of every battery (heat map), mean SOC with its limits, and the fleet's charge/discharge power.

    SOC is the end-of-period state: its columns and points sit on the period boundaries (the first one
    is ``soc0``), while the power bars span their periods.
    """
    clock = _Clock(case, results)
    bat = results.battery
    fig = Figure(figsize=(8, 8))
    fig.subplots_adjust(left=0.12, right=0.86, top=0.95, bottom=0.07, hspace=0.1)
    ax_map, ax_soc, ax_p = fig.subplots(3, 1, sharex=True, height_ratios=[1.5, 1, 1])
    if bat.empty:
        for ax in (ax_map, ax_soc, ax_p):
            ax.text(0.5, 0.5, "no batteries in this case", ha="center", va="center", transform=ax.transAxes)
        ax_map.set_title(_title(case, results, "batteries"), fontsize=10)
        clock.axis(ax_p)
        return fig
    soc = _wide(bat, "soc").reindex(columns=clock.t)
    soc0 = (case.batteries["soc0"].reindex(soc.index.astype(str)).to_numpy(dtype=float)
            if "soc0" in case.batteries else np.full(len(soc), np.nan))
    states = np.column_stack([soc0, soc.to_numpy(dtype=float)]) * 100  # at clock.edges
    n = len(soc)
    half = clock.dt / 2
    img = ax_map.imshow(states, aspect="auto", interpolation="nearest", cmap="YlGnBu", vmin=0, vmax=100,
                        extent=(clock.edges[0] - half, clock.edges[-1] + half, n - 0.5, -0.5))
    pos = ax_map.get_position()
    cax = fig.add_axes((0.875, pos.y0, 0.018, pos.height))
    fig.colorbar(img, cax=cax).set_label("SOC (% of B_R)", fontsize=8)
    step = max(1, int(np.ceil(n / 30)))
    ax_map.set_yticks(np.arange(0, n, step))
    ax_map.set_yticklabels([f"bus {b}" for b in soc.index[::step]], fontsize=6)
    ax_map.set_ylabel(f"battery ({n})")
    ax_map.set_title(_title(case, results, "battery state of charge (end of period) and power"), fontsize=10)

    mean = np.nanmean(states, axis=0)
    bmin = float(case.batteries["soc_min"].min()) * 100
    bmax = float(case.batteries["soc_max"].max()) * 100
    ax_soc.fill_between(clock.edges, np.nanmin(states, axis=0), np.nanmax(states, axis=0), color="#4c72b0",
                        alpha=0.2, lw=0, label="range over batteries")
    ax_soc.plot(clock.edges, mean, "o-", color="#1b3a66", lw=2, ms=4, label="mean SOC (end of period)")
    ax_soc.axhline(bmin, color="#c44e52", ls="--", lw=1, label=f"SOC limits ({bmin:.0f} %, {bmax:.0f} %)")
    ax_soc.axhline(bmax, color="#c44e52", ls="--", lw=1)
    ax_soc.set_ylim(min(bmin, float(np.nanmin(states))) - 5, max(bmax, float(np.nanmax(states))) + 18)
    ax_soc.set_ylabel("SOC (% of B_R)")
    ax_soc.legend(loc="upper left", ncols=3, fontsize=7, framealpha=0.9)
    ax_soc.grid(True, alpha=0.3)

    charge = bat["charge_kw"].groupby(level="t").sum().reindex(clock.t)
    discharge = bat["discharge_kw"].groupby(level="t").sum().reindex(clock.t)
    x, w = clock.mids, 0.8 * clock.dt
    ax_p.bar(x, discharge, width=w, color="#55a868", label="total discharge (kW)")
    ax_p.bar(x, -charge, width=w, color="#dd8452", label="total charge (kW, drawn negative)")
    ax_p.plot(x, discharge - charge, "k.-", lw=1.2, ms=6, label="net (kW)")
    ax_p.axhline(0, color="k", lw=0.6)
    ax_p.set_ylabel("all batteries (kW)")
    pl = float(max(charge.max(), discharge.max())) * 1.4 or 1.0
    ax_p.set_ylim(-pl, pl)
    ax_p.legend(loc="upper left", ncols=3, fontsize=7, framealpha=0.9)
    clock.axis(ax_p)
    ax_p.set_xlim(clock.edges[0] - half, clock.edges[-1] + half)  # whole heat-map columns at the first/last edge
    for ax in (ax_map, ax_soc):
        ax.grid(True, axis="x", alpha=0.3)
    return fig


def reactive_figure(case: Case, results: Results) -> Figure:
    """PV and battery reactive power: each unit (thin lines), total (bold) and the PV limit envelope."""
    fig = Figure(figsize=(8, 6.5))
    fig.subplots_adjust(left=0.1, right=0.9, top=0.94, bottom=0.09, hspace=0.08)
    axes = fig.subplots(2, 1, sharex=True)
    clock = _Clock(case, results)
    t, x = clock.t, clock.mids
    for ax, table, kind, color in ((axes[0], results.pv, "PV inverters", "#8172b3"),
                                   (axes[1], results.battery, "battery inverters", "#937860")):
        if table.empty:
            ax.text(0.5, 0.5, f"no {kind} in this case", ha="center", va="center", transform=ax.transAxes)
            ax.set_ylabel("reactive power (kvar)")
            continue
        q = _wide(table, "q_kvar").reindex(columns=t)
        segs = [np.column_stack([x, y]) for y in q.to_numpy()]
        ax.add_collection(LineCollection(segs, colors=color, alpha=0.4, lw=0.9))
        lim = float(np.abs(q.to_numpy()).max())
        if "q_max_kvar" in table.columns:
            qmax = _wide(table, "q_max_kvar").reindex(columns=t)
            lim = max(lim, float(qmax.to_numpy().max()))
        ax.set_ylim(-1.15 * lim or -1, 1.4 * lim or 1)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(f"{kind}: per unit (kvar)")
        axt = ax.twinx()
        total = q.sum(axis=0)
        axt.plot(x, total, "o-", color="k", lw=2, ms=4)
        tl = float(np.abs(total).max()) * 1.15 or 1.0
        axt.set_ylim(-tl, tl * 1.4 / 1.15)
        axt.set_ylabel("total (kvar)")
        ax.legend([Line2D([], [], color=color, alpha=0.6), Line2D([], [], color="k", marker="o", lw=2)],
                  [f"each unit ({q.shape[0]}, period mean)", "total (right axis)"], loc="upper left", ncols=2,
                  fontsize=8, framealpha=0.9)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(_title(case, results, "reactive power (+ = injected into the feeder)"), fontsize=10)
    clock.axis(axes[1])
    return fig


def voltage_heatmap(case: Case, results: Results) -> Figure:
    """Voltage of every bus (rows, grouped by the run's areas) and period (columns), pu, limits on the bar."""
    v = results.voltages
    clock = _Clock(case, results)
    area_of, _ = run_areas(case, results)
    area = area_of.reindex(v.index.astype(str))
    order = sorted(range(len(v)), key=lambda k: (area.iloc[k], k))
    v = v.iloc[order]
    area = area.iloc[order]
    height = min(11.0, max(4.0, 0.045 * len(v) + 1.5))
    fig = Figure(figsize=(8, height))
    fig.subplots_adjust(left=0.14, right=0.99, top=0.95, bottom=0.08)
    ax = fig.add_subplot()
    vmin_lim, vmax_lim = case.settings.v_min_pu, case.settings.v_max_pu
    data = v.to_numpy()
    lo, hi = _color_range(data)
    img = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=VOLTAGE_CMAP, vmin=lo, vmax=hi,
                    extent=(clock.edges[0], clock.edges[-1], len(v) - 0.5, -0.5))
    cb = fig.colorbar(img, ax=ax, pad=0.01)
    cb.set_label(f"voltage magnitude (pu); limits {vmin_lim:g} .. {vmax_lim:g} pu")
    for lim_v in (vmin_lim, vmax_lim):  # limits that fall inside the colour range
        if lo <= lim_v <= hi:
            cb.ax.axhline(lim_v, color="r", lw=2)
    codes = area.to_numpy()
    starts = [0] + [k for k in range(1, len(codes)) if codes[k] != codes[k - 1]]
    ticks, labels = [], []
    for n, s0 in enumerate(starts):
        s1 = starts[n + 1] if n + 1 < len(starts) else len(codes)
        if s0 > 0:
            ax.axhline(s0 - 0.5, color="w", lw=1.5)
        ticks.append((s0 + s1 - 1) / 2)
        labels.append(f"area {codes[s0]}\n({s1 - s0} buses)")
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels, fontsize=8 if len(ticks) <= 8 else 6)
    ax.set_ylabel("buses (grouped by area, feeder order within an area)")
    kmin = np.nanargmin(data, axis=0)
    ax.plot(clock.mids, kmin, "rx", ms=6, mew=1.5, label="lowest voltage of the period")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    clock.axis(ax)
    ax.grid(False)
    ax.set_title(_title(case, results, f"bus voltages (pu), {np.nanmin(data):.4f} .. {np.nanmax(data):.4f}"),
                 fontsize=10)
    return fig


def voltage_profile_figure(case: Case, results: Results) -> Figure:
    """Voltage against electrical distance from the substation: every period (grey), the lowest one by area."""
    v = results.voltages.copy()
    v.index = v.index.astype(str)
    dist = electrical_distance(case)
    area_of, _ = run_areas(case, results)
    br = case.branches
    keep = br["from_bus"].isin(v.index) & br["to_bus"].isin(v.index)
    fb, tb = br.loc[keep, "from_bus"].to_numpy(), br.loc[keep, "to_bus"].to_numpy()
    d0, d1 = dist.reindex(fb).to_numpy(), dist.reindex(tb).to_numpy()
    data = v.to_numpy(dtype=float)
    k_low = int(np.nanargmin(np.nanmin(data, axis=0)))
    fig = Figure(figsize=(8, 4.8))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.91, bottom=0.12)
    ax = fig.add_subplot()
    others = [np.stack([np.column_stack([d0, v.loc[fb, c]]), np.column_stack([d1, v.loc[tb, c]])], axis=1)
              for k, c in enumerate(v.columns) if k != k_low]
    if others:
        ax.add_collection(LineCollection(np.concatenate(others), colors="#999999", lw=0.8, alpha=0.5, zorder=1))
    col = v.columns[k_low]
    segs = np.stack([np.column_stack([d0, v.loc[fb, col]]), np.column_stack([d1, v.loc[tb, col]])], axis=1)
    colors = [_area_color(area_of.get(b, 1)) for b in tb]
    ax.add_collection(LineCollection(segs, colors=colors, lw=1.8, zorder=2))
    ax.scatter(dist.reindex(v.index), v[col], s=8, c=[_area_color(area_of.get(b, 1)) for b in v.index], zorder=3)
    for lim_v in (case.settings.v_min_pu, case.settings.v_max_pu):
        ax.axhline(lim_v, color="#c44e52", ls="--", lw=1)
    lo, hi = float(np.nanmin(data)), float(np.nanmax(data))
    pad = max(hi - lo, 2e-3) * 0.15
    ax.set_ylim(min(lo - pad, case.settings.v_min_pu - pad) if lo - case.settings.v_min_pu < 0.01 else lo - pad,
                max(hi + pad, case.settings.v_max_pu + pad) if case.settings.v_max_pu - hi < 0.01 else hi + pad)
    ax.set_xlim(0, float(np.nanmax(dist.to_numpy())) * 1.02 or 1.0)
    clock = _Clock(case, results)
    period = f"period {col} ({clock.label(clock.edges[k_low])}–{clock.label(clock.edges[k_low + 1])})"
    handles = [Line2D([], [], color=_area_color(a), lw=2, label=f"area {int(a)}")
               for a in sorted(pd.unique(area_of.reindex(v.index).dropna()))]
    handles.append(Line2D([], [], color="#999999", lw=1, label="the other periods"))
    y0, y1 = ax.get_ylim()
    if any(y0 <= lim_v <= y1 for lim_v in (case.settings.v_min_pu, case.settings.v_max_pu)):
        handles.append(Line2D([], [], color="#c44e52", ls="--", lw=1, label="voltage limits"))
    ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.9, ncols=2 if len(handles) > 6 else 1)
    ax.set_xlabel("electrical distance from the substation: Σ |r + jx| along the path (ohm at the base voltage)")
    ax.set_ylabel("voltage magnitude (pu)")
    ax.grid(True, alpha=0.3)
    ax.set_title(_title(case, results, f"voltage profile; coloured by area: {period}, the lowest"), fontsize=10)
    return fig


def network_figure(case: Case, results: Results) -> Figure:
    """The feeder from bus coordinates, buses coloured by voltage at the period of lowest voltage, areas marked."""
    buses = case.buses
    xy = buses[["x", "y"]].astype(float)
    v = results.voltages
    data = v.to_numpy()
    k_hour = int(np.nanargmin(np.nanmin(data, axis=0)))
    hour = v.columns[k_hour]
    volt = v[hour].reindex(buses.index)
    fig = Figure(figsize=(9.5, 7.5))
    fig.subplots_adjust(left=0.08, right=1.0, top=0.95, bottom=0.07)
    ax = fig.add_subplot()
    br = case.branches
    area_of, cuts = run_areas(case, results)
    fb = xy.loc[br["from_bus"]].to_numpy()
    tb = xy.loc[br["to_bus"]].to_numpy()
    is_cut = br.index.isin(cuts)
    seg_colors = np.array([_area_color(area_of[b]) for b in br["to_bus"]], dtype=object)
    segs = np.stack([fb, tb], axis=1)
    ax.add_collection(LineCollection(segs[~is_cut], colors=seg_colors[~is_cut].tolist(), lw=2.2, alpha=0.55,
                                     zorder=1))
    if is_cut.any():
        ax.add_collection(LineCollection(segs[is_cut], colors="k", lw=3, linestyles="--", zorder=2))
        for (x0, y0), (x1, y1), name in zip(fb[is_cut], tb[is_cut], br.index[is_cut]):
            ax.annotate(name, ((x0 + x1) / 2, (y0 + y1) / 2), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    lo, hi = _color_range(data)
    norm = Normalize(lo, hi)
    sc = ax.scatter(xy["x"], xy["y"], c=volt.to_numpy(), cmap=VOLTAGE_CMAP, norm=norm, s=30,
                    edgecolors="k", linewidths=0.4, zorder=3)
    cb = fig.colorbar(sc, ax=ax, pad=0.01, shrink=0.85)
    cb.set_label(f"bus voltage (pu) at period {hour}; same scale as the heat map")
    root = case.root
    ax.scatter([xy.at[root, "x"]], [xy.at[root, "y"]], marker="s", s=110, c="k", zorder=4)
    ax.annotate(f"substation {root}", (xy.at[root, "x"], xy.at[root, "y"]), xytext=(6, -12),
                textcoords="offset points", fontsize=8)
    if len(case.pvs):
        p = xy.loc[case.pvs.index]
        ax.scatter(p["x"], p["y"] + 55, marker="^", s=22, c="#f0b400", edgecolors="k", linewidths=0.4, zorder=5)
    if len(case.batteries):
        b = xy.loc[case.batteries.index]
        ax.scatter(b["x"] + 55, b["y"], marker="s", s=16, c="#cccccc", edgecolors="k", linewidths=0.4, zorder=5)
    areas = sorted(int(a) for a in pd.unique(area_of.dropna()))
    for a, grp in xy.groupby(area_of):
        c = _area_color(a)
        ax.text(grp["x"].mean(), grp["y"].mean(), f"area {int(a)}", fontsize=12, weight="bold", color=c,
                alpha=0.85, ha="center", va="center", zorder=6,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=c, alpha=0.7))
    kmin = volt.idxmin()
    ax.annotate(f"min {volt.min():.4f} pu\n(bus {kmin})", (xy.at[kmin, "x"], xy.at[kmin, "y"]), xytext=(-20, 28),
                textcoords="offset points", fontsize=8, ha="center", arrowprops=dict(arrowstyle="->", lw=0.8))
    handles = [Line2D([], [], color=_area_color(a), lw=3, alpha=0.6, label=f"area {a}") for a in areas]
    if is_cut.any():
        handles.append(Line2D([], [], color="k", lw=2, ls="--", label="cut branch (area boundary)"))
    handles.append(Line2D([], [], marker="^", ls="", color="#f0b400", mec="k", label="PV"))
    handles.append(Line2D([], [], marker="s", ls="", color="#cccccc", mec="k", label="battery"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9, ncols=2 if len(areas) > 6 else 1)
    ax.autoscale_view()
    ax.margins(0.05)
    ax.set_xlabel("x (feeder drawing coordinates)")
    ax.set_ylabel("y (feeder drawing coordinates)")
    ax.set_title(_title(case, results, f"network, {len(areas)} areas, voltages at period {hour} (lowest)"),
                 fontsize=10)
    return fig


def validation_figure(case: Case, results: Results) -> Figure:
    """OpenDSS voltages against the optimization's (scatter) and the per-hour mismatch."""
    dss = _voltage_frame(results.extra_tables["validation_voltages"])
    opt = results.voltages
    common = [b for b in opt.index.astype(str) if b in dss.index]
    opt = opt.copy()
    opt.index = opt.index.astype(str)
    hours = [c for c in opt.columns if c in dss.columns]
    a = opt.loc[common, hours].to_numpy()
    b = dss.loc[common, hours].to_numpy()
    fig = Figure(figsize=(11, 4.6))
    fig.subplots_adjust(left=0.07, right=0.92, top=0.86, bottom=0.13, wspace=0.3)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.3])
    ax1.scatter(a.ravel(), b.ravel(), s=7, alpha=0.5, c=np.repeat(np.arange(len(hours))[None, :], len(common), 0).ravel(),
                cmap="plasma")
    lo, hi = float(np.nanmin([a.min(), b.min()])), float(np.nanmax([a.max(), b.max()]))
    pad = (hi - lo) * 0.03 or 1e-3
    ax1.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax1.set_xlim(lo - pad, hi + pad)
    ax1.set_ylim(lo - pad, hi + pad)
    ax1.set_aspect("equal")
    ax1.set_xlabel("optimization voltage (pu)")
    ax1.set_ylabel("OpenDSS voltage (pu)")
    ax1.set_title(f"every bus and hour ({a.size} points, colour = hour)", fontsize=9)
    ax1.legend(loc="upper left", fontsize=8)
    ax1.grid(True, alpha=0.3)

    diff = np.abs(b - a)
    clock = _Clock(case, results)
    t = clock.at(hours)
    ax2.plot(t, diff.max(axis=0), "o-", color="#c44e52", label="max |ΔV| over buses (pu)")
    ax2.plot(t, diff.mean(axis=0), "s-", color="#4c72b0", label="mean |ΔV| over buses (pu)")
    by_hour = results.extra_tables.get("validation_by_hour")
    ax2.set_ylim(0, float(diff.max()) * 1.5 or 1e-6)
    ax2.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax2.set_ylabel("voltage mismatch |V_OpenDSS − V_opt| (pu)")
    if by_hour is not None and len(by_hour):
        bh = by_hour.set_index("t") if "t" in by_hour.columns else by_hour
        cols = [c for c in ("dp_sub_kw", "dq_sub_kvar", "dloss_kw") if c in bh.columns]
        if cols:
            ax3 = ax2.twinx()
            for c, mk in zip(cols, ("^", "v", "d", "x")):
                ax3.plot(clock.at(bh.index), np.abs(bh[c].to_numpy(dtype=float)), mk + ":",
                         color={"dp_sub_kw": "#55a868", "dq_sub_kvar": "#8172b3"}.get(c, "#937860"),
                         label=_MISMATCH_LABELS[c])
            ax3.set_ylim(0, float(np.nanmax(np.abs(bh[cols].to_numpy(dtype=float)))) * 1.5 or 1.0)
            ax3.set_ylabel("substation mismatch (kW, kvar)")
            h1, l1 = ax2.get_legend_handles_labels()
            h3, l3 = ax3.get_legend_handles_labels()
            ax2.legend(h1 + h3, l1 + l3, loc="upper left", ncols=2, fontsize=7, framealpha=0.9)
        else:
            ax2.legend(loc="best", fontsize=8)
    else:
        ax2.legend(loc="best", fontsize=8)
    clock.axis(ax2)
    ax2.set_title("mismatch by period", fontsize=9)
    fig.suptitle(_title(case, results, "OpenDSS validation"), fontsize=10)
    return fig


_MISMATCH_LABELS = {"dp_sub_kw": "|ΔP_sub| (kW, right axis)", "dq_sub_kvar": "|ΔQ_sub| (kvar, right axis)",
                    "dloss_kw": "|Δlosses| (kW, right axis)"}


def convergence_figure(case: Case, results: Results) -> Figure:
    """Distributed run: primal and dual residuals (log) and the objective against iteration."""
    conv = results.extra_tables["convergence"]
    it = conv["iteration"].to_numpy() if "iteration" in conv.columns else np.arange(1, len(conv) + 1)
    fig = Figure(figsize=(8, 6))
    fig.subplots_adjust(left=0.11, right=0.9, top=0.94, bottom=0.09, hspace=0.08)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[1.6, 1])
    for col, color, label in (("primal_residual", "#c44e52", "primal residual (pu)"),
                              ("dual_residual", "#4c72b0", "dual residual (pu)")):
        if col in conv.columns:
            y = conv[col].to_numpy(dtype=float)
            ax1.semilogy(it, np.where(y > 0, y, np.nan), "-", color=color, lw=1.6, label=label)
    tol = results.summary.get("distributed", {}).get("tol")
    if tol:
        ax1.axhline(float(tol), color="k", ls="--", lw=1, label=f"tolerance {float(tol):g} pu")
    rho = conv["rho"].to_numpy(dtype=float) if "rho" in conv.columns else np.array([])
    if np.isfinite(rho).any():  # ADMM; ENApp has no penalty (its rho column is empty)
        axr = ax1.twinx()
        axr.semilogy(it, rho, ":", color="#555555", lw=1.2, label="ρ (right axis)")
        axr.set_ylabel("ADMM penalty ρ")
        _plain_log_labels(axr)
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = axr.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, loc="best", fontsize=8)
    else:
        ax1.legend(loc="best", fontsize=8)
    ax1.set_ylabel("residual (pu, log scale)")
    _plain_log_labels(ax1)
    if "method" in conv.columns:  # e.g. ENApp warm-start iterations before ADMM: shade and name each stretch
        method = conv["method"].astype(str).to_numpy()
        cuts = [0] + [k for k in range(1, len(method)) if method[k] != method[k - 1]] + [len(method)]
        for n, (k0, k1) in enumerate(zip(cuts[:-1], cuts[1:])):
            lo_it, hi_it = float(it[k0]) - 0.5, float(it[k1 - 1]) + 0.5
            for ax in (ax1, ax2):
                ax.axvspan(lo_it, hi_it, color="#eeeeee" if n % 2 == 0 else "white", zorder=0)
            ax1.text((lo_it + hi_it) / 2, 0.98, f"{method[k0]} ({k1 - k0})", transform=ax1.get_xaxis_transform(),
                     ha="center", va="top", fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    if "objective_usd" in conv.columns:
        ax2.plot(it, conv["objective_usd"], "-", color="#55a868", lw=1.6, label="sum of area objectives")
        central = results.summary.get("central_objective_usd")
        if _is_number(central):
            ax2.axhline(float(central), color="k", ls="--", lw=1, label=f"central optimum {float(central):.2f} USD")
        ax2.legend(loc="best", fontsize=8)
    ax2.set_ylabel("objective (USD)")
    ax2.set_xlabel("iteration")
    ax2.grid(True, alpha=0.3)
    n = len(conv)
    elapsed = conv["elapsed_s"].iloc[-1] if "elapsed_s" in conv.columns and n else None
    what = f"{results.summary.get('algorithm', 'distributed')} convergence, {n} iterations"
    if elapsed is not None:
        what += f", {float(elapsed):.1f} s"
    ax1.set_title(_title(case, results, what), fontsize=10)
    return fig


def comparison_figure(case: Case, results: Results) -> Figure:
    """Distributed against central: relative objective gap per iteration (log) and the final objectives."""
    conv = results.extra_tables["convergence"]
    central = float(results.summary["central_objective_usd"])
    dist = float(results.summary.get("objective_usd", np.nan))
    it = conv["iteration"].to_numpy() if "iteration" in conv.columns else np.arange(1, len(conv) + 1)
    fig = Figure(figsize=(9, 3.8))
    fig.subplots_adjust(left=0.09, right=0.97, top=0.86, bottom=0.14, wspace=0.35)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.6, 1])
    if "objective_usd" in conv.columns and central:
        gap = np.abs(conv["objective_usd"].to_numpy(dtype=float) - central) / abs(central)
        ax1.semilogy(it, np.where(gap > 0, gap, np.nan), "o-", color="#55a868", ms=3, lw=1.4)
        _plain_log_labels(ax1)
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("|objective − central| / central")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.set_title("relative gap of the sum of area objectives", fontsize=9)
    alg = str(results.summary.get("algorithm", "distributed"))
    vals = [central, dist]
    bars = ax2.bar([0, 1], vals, color=["#4c72b0", "#55a868"], width=0.6)
    for b, val in zip(bars, vals):
        ax2.annotate(f"{val:.2f}", (b.get_x() + b.get_width() / 2, val), xytext=(0, 2), textcoords="offset points",
                     ha="center", fontsize=8)
    ax2.set_xticks([0, 1])
    ax2.set_xticklabels(["central", alg])
    finite = [v for v in vals if np.isfinite(v)]
    ax2.set_ylim(0, max(finite) * 1.15 if finite else 1.0)
    ax2.set_ylabel("objective (USD)")
    rel = (dist - central) / abs(central) if central else np.nan
    ax2.set_title(f"final objective\ndifference {dist - central:+.3f} USD ({100 * rel:+.4f} %)", fontsize=9)
    ax2.grid(True, axis="y", alpha=0.3)
    fig.suptitle(_title(case, results, f"{alg} against the central optimum"), fontsize=10)
    return fig
