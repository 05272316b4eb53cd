"""Matplotlib figures of a solved plan (PNG through :meth:`Results.save`).

:func:`figures` returns ``{name: Figure}``:

* ``substation``   substation active/reactive power (kW, kvar) against the energy price (USD/kWh)
* ``battery``      state of charge of every battery, and battery power (charge, discharge, net per unit)
* ``reactive``     PV and battery reactive power (kvar) per unit and in total
* ``voltages``     heat map of every bus voltage (pu) by hour, buses grouped by area
* ``network``      the feeder drawn from bus coordinates, coloured by voltage at the lowest-voltage hour,
                   areas marked and cut branches highlighted
* ``validation``   (when the run was validated) OpenDSS against optimization voltages, and per-hour mismatch
* ``convergence``  (distributed runs) primal/dual residuals and objective against iteration

Figures are built with the object-oriented API on the Agg canvas (no pyplot, no GUI), so drawing them all
takes a fraction of a second even at 24 hours.
"""

from __future__ import annotations

import sys
from typing import Any


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

from mpdopf_pyomo.case import Case  # noqa: E402
from mpdopf_pyomo.results import Results  # noqa: E402

AREA_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
VOLTAGE_CMAP = "viridis"


def figures(case: Case, results: Results) -> dict[str, Figure]:
    """All figures of one run, by name (the PNG file stem)."""
    out: dict[str, Figure] = {
        "substation": substation_figure(case, results),
        "battery": battery_figure(case, results),
        "reactive": reactive_figure(case, results),
        "voltages": voltage_heatmap(case, results),
        "network": network_figure(case, results),
    }
    extra = results.extra_tables
    if "validation_voltages" in extra:
        out["validation"] = validation_figure(case, results)
    if "convergence" in extra and len(extra["convergence"]):
        out["convergence"] = convergence_figure(case, results)
    return out


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _hours(case: Case, results: Results) -> tuple[np.ndarray, list[str], str]:
    """Period numbers, their tick labels (clock hour when known) and the x-axis label."""
    t = np.asarray(results.substation.index, dtype=int)
    sub = results.substation
    if "clock_hour" in sub.columns:
        labels = [f"{int(h):02d}:00" for h in sub["clock_hour"]]
        xlabel = f"period t (start clock time; Δt = {case.settings.dt_h:g} h)"
    else:
        labels = [str(v) for v in t]
        xlabel = f"period t (Δt = {case.settings.dt_h:g} h)"
    return t, labels, xlabel


def _time_axis(ax: Any, case: Case, results: Results, label: bool = True) -> None:
    t, labels, xlabel = _hours(case, results)
    step = max(1, int(np.ceil(len(t) / 12)))
    ax.set_xticks(t[::step])
    ax.set_xticklabels(labels[::step], fontsize=8)
    ax.set_xlim(t[0] - 0.5, t[-1] + 0.5)
    if label:
        ax.set_xlabel(xlabel)
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


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def substation_figure(case: Case, results: Results) -> Figure:
    """Substation active and reactive power (bars/line) with the energy price on a second axis."""
    sub = results.substation
    t = np.asarray(sub.index, dtype=int)
    fig = Figure(figsize=(8, 4.2))
    fig.subplots_adjust(left=0.1, right=0.88, top=0.9, bottom=0.13)
    ax = fig.add_subplot()
    ax.bar(t, sub["p_kw"], width=0.7, color="#4c72b0", label="active power P_sub (kW)")
    ax.plot(t, sub["q_kvar"], "s-", color="#55a868", ms=4, label="reactive power Q_sub (kvar)")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("substation power (kW, kvar)")
    top = float(max(sub["p_kw"].max(), sub["q_kvar"].max(), 0.0))
    bottom = float(min(sub["p_kw"].min(), sub["q_kvar"].min(), 0.0))
    ax.set_ylim(bottom * 1.1, top * 1.3 or 1.0)
    _time_axis(ax, case, results)
    ax2 = ax.twinx()
    ax2.step(t, sub["price_usd_per_kwh"], where="mid", color="#c44e52", lw=2, label="energy price (USD/kWh)")
    ax2.set_ylabel("energy price (USD/kWh)", color="#c44e52")
    ax2.tick_params(axis="y", colors="#c44e52")
    ax2.set_ylim(0, float(sub["price_usd_per_kwh"].max()) * 1.3 or 1.0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", ncols=3, fontsize=8, framealpha=0.9)
    cost = results.summary.get("energy_cost_usd")
    extra = f" (energy cost {cost:.2f} USD)" if cost is not None else ""
    ax.set_title(_title(case, results, "substation power and price") + extra, fontsize=10)
    return fig


def battery_figure(case: Case, results: Results) -> Figure:
    """SOC of every battery (thin lines, mean bold) and fleet charge/discharge with each unit's net power."""
    fig = Figure(figsize=(8, 6.5))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.94, bottom=0.09, hspace=0.08)
    ax_soc, ax_p = fig.subplots(2, 1, sharex=True)
    bat = results.battery
    t = np.asarray(results.substation.index, dtype=int)
    if bat.empty:
        for ax in (ax_soc, ax_p):
            ax.text(0.5, 0.5, "no batteries in this case", ha="center", va="center", transform=ax.transAxes)
        ax_soc.set_title(_title(case, results, "batteries"), fontsize=10)
        _time_axis(ax_p, case, results)
        return fig
    soc = _wide(bat, "soc")
    # SOC at the start of period 1 (soc0) then after each period: draw against period boundaries
    soc0 = case.batteries["soc0"].reindex(soc.index).to_numpy() if "soc0" in case.batteries else None
    edges = np.concatenate([[t[0] - 0.5], t + 0.5])
    ys = np.column_stack([soc0, soc.to_numpy()]) if soc0 is not None else soc.to_numpy()
    xs = edges if soc0 is not None else t + 0.5
    segs = [np.column_stack([xs, y]) for y in ys * 100]
    ax_soc.add_collection(LineCollection(segs, colors="#4c72b0", alpha=0.35, lw=0.9))
    ax_soc.plot(xs, ys.mean(axis=0) * 100, "o-", color="#1b3a66", lw=2.2, ms=4, label="mean over batteries")
    bmin = case.batteries["soc_min"].min() * 100
    bmax = case.batteries["soc_max"].max() * 100
    ax_soc.axhline(bmin, color="#c44e52", ls="--", lw=1, label=f"SOC limits ({bmin:.0f} %, {bmax:.0f} %)")
    ax_soc.axhline(bmax, color="#c44e52", ls="--", lw=1)
    ax_soc.plot([], [], color="#4c72b0", alpha=0.6, label=f"each battery ({len(soc)})")
    ax_soc.set_ylim(min(bmin, float(ys.min()) * 100) - 5, max(bmax, float(ys.max()) * 100) + 16)
    ax_soc.set_ylabel("state of charge (% of B_R)")
    ax_soc.legend(loc="upper left", ncols=3, fontsize=8, framealpha=0.9)
    ax_soc.set_title(_title(case, results, "battery state of charge (end of period) and power"), fontsize=10)
    ax_soc.grid(True, alpha=0.3)

    charge = bat["charge_kw"].groupby(level="t").sum().reindex(t)
    discharge = bat["discharge_kw"].groupby(level="t").sum().reindex(t)
    ax_p.bar(t, discharge, width=0.7, color="#55a868", label="total discharge (kW)")
    ax_p.bar(t, -charge, width=0.7, color="#dd8452", label="total charge (kW, drawn negative)")
    ax_p.plot(t, discharge - charge, "k.-", lw=1.2, ms=6, label="net: discharge − charge (kW)")
    ax_p.axhline(0, color="k", lw=0.6)
    ax_p.set_ylabel("battery power, all batteries (kW)")
    pl = float(max(charge.max(), discharge.max())) * 1.35 or 1.0
    ax_p.set_ylim(-pl, pl)
    ax_p.legend(loc="upper left", ncols=3, fontsize=8, framealpha=0.9)
    ax_p.grid(True, alpha=0.3)
    _time_axis(ax_p, case, results)
    return fig


def reactive_figure(case: Case, results: Results) -> Figure:
    """PV and battery reactive power: each unit (thin lines), total (bold) and the PV limit envelope."""
    fig = Figure(figsize=(8, 6.5))
    fig.subplots_adjust(left=0.1, right=0.9, top=0.94, bottom=0.09, hspace=0.08)
    axes = fig.subplots(2, 1, sharex=True)
    t = np.asarray(results.substation.index, dtype=int)
    for ax, table, kind, color in ((axes[0], results.pv, "PV inverters", "#8172b3"),
                                   (axes[1], results.battery, "battery inverters", "#937860")):
        if table.empty:
            ax.text(0.5, 0.5, f"no {kind} in this case", ha="center", va="center", transform=ax.transAxes)
            ax.set_ylabel("reactive power (kvar)")
            continue
        q = _wide(table, "q_kvar").reindex(columns=t)
        segs = [np.column_stack([t, y]) for y in q.to_numpy()]
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
        axt.plot(t, total, "o-", color="k", lw=2, ms=4)
        tl = float(np.abs(total).max()) * 1.15 or 1.0
        axt.set_ylim(-tl, tl * 1.4 / 1.15)
        axt.set_ylabel("total (kvar)")
        ax.legend([Line2D([], [], color=color, alpha=0.6), Line2D([], [], color="k", marker="o", lw=2)],
                  [f"each unit ({q.shape[0]})", "total (right axis)"], loc="upper left", ncols=2, fontsize=8,
                  framealpha=0.9)
        ax.grid(True, alpha=0.3)
    axes[0].set_title(_title(case, results, "reactive power (+ = injected into the feeder)"), fontsize=10)
    _time_axis(axes[1], case, results)
    return fig


def voltage_heatmap(case: Case, results: Results) -> Figure:
    """Voltage of every bus (rows, grouped by area) and hour (columns), pu, with the limits on the colour bar."""
    v = results.voltages
    area = case.buses["area"].reindex(v.index)
    order = sorted(range(len(v)), key=lambda k: (area.iloc[k], k))
    v = v.iloc[order]
    area = area.iloc[order]
    t = np.asarray(v.columns, dtype=int)
    height = min(11.0, max(4.0, 0.045 * len(v) + 1.5))
    fig = Figure(figsize=(8, height))
    fig.subplots_adjust(left=0.14, right=0.99, top=0.95, bottom=0.08)
    ax = fig.add_subplot()
    vmin_lim, vmax_lim = case.settings.v_min_pu, case.settings.v_max_pu
    data = v.to_numpy()
    lo, hi = _color_range(data)
    img = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=VOLTAGE_CMAP, vmin=lo, vmax=hi,
                    extent=(t[0] - 0.5, t[-1] + 0.5, len(v) - 0.5, -0.5))
    cb = fig.colorbar(img, ax=ax, pad=0.01)
    cb.set_label(f"voltage magnitude (pu); limits {vmin_lim:g} .. {vmax_lim:g} pu")
    for lim_v in (vmin_lim, vmax_lim):  # limits that fall inside the colour range
        if lo <= lim_v <= hi:
            cb.ax.axhline(lim_v, color="r", lw=2)
    # area bands
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
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylabel("buses (grouped by area, feeder order within an area)")
    # the lowest bus each hour
    kmin = np.nanargmin(data, axis=0)
    ax.plot(t, kmin, "rx", ms=6, mew=1.5, label="lowest voltage of the hour")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    _time_axis(ax, case, results)
    ax.grid(False)
    ax.set_title(_title(case, results, f"bus voltages (pu), {np.nanmin(data):.4f} .. {np.nanmax(data):.4f}"),
                 fontsize=10)
    return fig


def network_figure(case: Case, results: Results) -> Figure:
    """The feeder from bus coordinates, buses coloured by voltage at the hour of lowest voltage, areas marked."""
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
    cuts = set(case.cut_branches)
    fb = xy.loc[br["from_bus"]].to_numpy()
    tb = xy.loc[br["to_bus"]].to_numpy()
    is_cut = br.index.isin(list(cuts))
    area_of = buses["area"]
    seg_colors = [AREA_COLORS[(int(area_of[b]) - 1) % len(AREA_COLORS)] for b in br["to_bus"]]
    segs = np.stack([fb, tb], axis=1)
    ax.add_collection(LineCollection(segs[~is_cut], colors=np.array(seg_colors, dtype=object)[~is_cut].tolist(),
                                     lw=2.2, alpha=0.55, zorder=1))
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
    # DER markers and root
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
    # area labels at their centroids
    for a, grp in xy.groupby(area_of):
        c = AREA_COLORS[(int(a) - 1) % len(AREA_COLORS)]
        ax.text(grp["x"].mean(), grp["y"].mean(), f"area {a}", fontsize=12, weight="bold", color=c, alpha=0.85,
                ha="center", va="center", zorder=6,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=c, alpha=0.7))
    kmin = volt.idxmin()
    ax.annotate(f"min {volt.min():.4f} pu\n(bus {kmin})", (xy.at[kmin, "x"], xy.at[kmin, "y"]), xytext=(-20, 28),
                textcoords="offset points", fontsize=8, ha="center", arrowprops=dict(arrowstyle="->", lw=0.8))
    handles = [Line2D([], [], color=AREA_COLORS[(int(a) - 1) % len(AREA_COLORS)], lw=3, alpha=0.6,
                      label=f"area {a}") for a in sorted(area_of.unique())]
    if is_cut.any():
        handles.append(Line2D([], [], color="k", lw=2, ls="--", label="cut branch (area boundary)"))
    handles.append(Line2D([], [], marker="^", ls="", color="#f0b400", mec="k", label="PV"))
    handles.append(Line2D([], [], marker="s", ls="", color="#cccccc", mec="k", label="battery"))
    ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.9)
    ax.autoscale_view()
    ax.margins(0.05)
    ax.set_xlabel("x (feeder drawing coordinates)")
    ax.set_ylabel("y (feeder drawing coordinates)")
    ax.set_title(_title(case, results, f"network, voltages at period {hour} (lowest of the horizon)"), fontsize=10)
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
    t = np.asarray(hours, dtype=int)
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
                ax3.plot(np.asarray(bh.index, dtype=int), np.abs(bh[c].to_numpy(dtype=float)), mk + ":",
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
    _time_axis(ax2, case, results)
    ax2.set_title("mismatch by hour", fontsize=9)
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
    if "rho" in conv.columns:
        axr = ax1.twinx()
        axr.semilogy(it, conv["rho"].to_numpy(dtype=float), ":", color="#555555", lw=1.2, label="ρ (right axis)")
        axr.set_ylabel("ADMM penalty ρ")
        _plain_log_labels(axr)
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = axr.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, loc="best", fontsize=8)
    else:
        ax1.legend(loc="best", fontsize=8)
    ax1.set_ylabel("residual (pu, log scale)")
    _plain_log_labels(ax1)
    ax1.grid(True, which="both", alpha=0.3)
    if "objective_usd" in conv.columns:
        ax2.plot(it, conv["objective_usd"], "-", color="#55a868", lw=1.6, label="sum of area objectives")
        central = results.summary.get("central_objective_usd")
        if central is not None:
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
