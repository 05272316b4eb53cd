"""One Results object: pandas tables in physical units plus a summary; written and read in one place.

Tables (kW, kvar, kWh are three-phase totals of the balanced feeder, i.e. per-unit x ``bases.s_kva``):

* ``voltages``: index bus, one column per hour, voltage magnitude in pu (in memory; voltages.csv is long:
  bus, t, clock_time, v_pu)
* ``branches``: rows (branch, t): from_bus, to_bus, p_kw, q_kvar (sending end), loss_kw, current_sq_pu
* ``pv``: rows (bus, t): p_kw, q_kvar, q_max_kvar
* ``battery``: rows (bus, t): charge_kw, discharge_kw, q_kvar, energy_kwh, soc (fraction of the energy rating)
* ``substation``: rows t: p_kw, q_kvar, price_usd_per_kwh, cost_usd, load_mult, pv_mult, clock_hour

A three-phase run (``--formulation 3ph-exact``) holds the same tables (``voltages``: each bus's mean phase
magnitude; ``branches``: sums over the phases) and adds ``node_voltages``, ``branch_phases`` and
``substation_phases`` (per node and phase; :func:`mpdopf_pyomo.formulations.three_phase.read_back`).

Every file with a period column ``t`` also has ``clock_time`` (HH:MM of the period's start, see
:func:`clock_times`), so the tables join on ``t`` (and ``bus``/``branch``) without reshaping.

``summary`` follows the output contract (DESIGN.md section 7). :meth:`Results.save` writes everything into a
temporary folder beside the target and renames it into place (``mpdopf_pyomo.outputs``), so a failure never
leaves a half-written output folder and nothing the program did not write is ever replaced.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd
from mpdopf_pyomo import pyo

from mpdopf_pyomo.case import Case, exc_message, one_line
from mpdopf_pyomo.errors import CaseError, MpdopfError

if TYPE_CHECKING:
    from mpdopf_pyomo.outputs import OutputFolder

TABLES = ("voltages", "branches", "pv", "battery", "substation")
#: Summary keys (three-phase totals) that ``summary['per_phase']`` repeats divided by the number of phases.
PER_PHASE_KEYS = ("objective_usd", "energy_cost_usd", "conversion_loss_cost_usd", "terminal_cost_usd",
                  "substation_energy_kwh", "substation_peak_kw", "losses_kwh", "pv_energy_kwh",
                  "pv_reactive_kvarh", "battery_charge_kwh", "battery_discharge_kwh")
#: What ``objective_usd`` is (written into every summary).
OBJECTIVE_IS = ("what the solver minimised: energy_cost_usd (substation energy x price, the source study's "
                "objective and reported cost) + conversion_loss_cost_usd (alpha x battery conversion losses) "
                "+ terminal_cost_usd (terminal SOC penalty, 0 unless terminal_soc = 'penalty')")


@dataclass
class Results:
    """Tables and summary of one solved plan (central or distributed)."""

    summary: dict[str, Any]
    voltages: pd.DataFrame
    branches: pd.DataFrame
    pv: pd.DataFrame
    battery: pd.DataFrame
    substation: pd.DataFrame
    extra_tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    #: The case the plan was solved for (None for a folder read back by :meth:`load`).
    case: Case | None = field(default=None, repr=False, compare=False)

    def _headline(self) -> list[tuple[str, str]]:
        """The few figures a user looks at first, as (label, text) pairs."""
        s = self.summary
        rows = [
            ("case", f"{s.get('case')}, {s.get('hours')} h, {s.get('algorithm')}, {s.get('formulation')}"),
            ("objective", f"{s.get('objective_usd', float('nan')):.4f} USD"),
            ("substation", f"{s.get('substation_energy_kwh', float('nan')):.1f} kWh"),
            ("losses", f"{s.get('losses_kwh', float('nan')):.2f} kWh"),
            ("voltage", f"{s.get('v_min_pu', float('nan')):.4f} .. {s.get('v_max_pu', float('nan')):.4f} pu"),
        ]
        if "distributed" in s:
            d = s["distributed"]
            rows.append(("distributed", f"{d.get('iterations')} iterations, primal {d.get('primal_residual'):.1e}"))
        if "validation" in s:
            v = s["validation"]
            rows.append(("OpenDSS", f"{'passed' if v.get('passed') else 'FAILED'}, "
                                    f"max |dV| {v.get('max_abs_dv_pu', float('nan')):.1e} pu"))
        return rows

    def __repr__(self) -> str:
        return "<Results " + "; ".join(f"{k} {v}" for k, v in self._headline()) + ">"

    def _repr_html_(self) -> str:
        """A small table for notebooks."""
        import html

        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self._headline())
        return f"<table><caption>mpdopf_pyomo Results</caption>{body}</table>"

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_models(cls, case: Case, models: Iterable[pyo.ConcreteModel], **summary: Any) -> "Results":
        """Collect the solution of one central model, or of every area model, into tables.

        Each model contributes the buses it owns and the branches ending at them, so the area models of
        a distributed run together give each quantity exactly once (see :func:`model_rows`).
        """
        return cls.from_rows(case, [model_rows(case, m) for m in models], **summary)

    @classmethod
    def from_rows(cls, case: Case, parts: Iterable[dict[str, Any]], **summary: Any) -> "Results":
        """The tables of :meth:`from_models` from each model's :func:`model_rows` (a distributed run's
        workers return them, so the coordinator needs no model of its own)."""
        v_rows: dict[str, list[float]] = {}
        br_rows: list[tuple] = []
        pv_rows: list[tuple] = []
        bat_rows: list[tuple] = []
        sub_p: dict[int, float] = {}
        sub_q: dict[int, float] = {}
        objective = loss_cost = terminal_cost = 0.0
        for part in parts:
            v_rows.update(part["voltages"])
            br_rows += part["branches"]
            pv_rows += part["pv"]
            bat_rows += part["battery"]
            sub_p.update(part["sub_p"])
            sub_q.update(part["sub_q"])
            objective += part["objective"]
            loss_cost += part["loss_cost"]
            terminal_cost += part["terminal_cost"]
        T = list(case.profile.index)
        voltages = pd.DataFrame.from_dict(v_rows, orient="index", columns=T)
        voltages = voltages.reindex([b for b in case.buses.index if b in v_rows])
        voltages.index.name = "bus"
        branches = pd.DataFrame(
            br_rows, columns=["branch", "t", "from_bus", "to_bus", "p_kw", "q_kvar", "loss_kw", "current_sq_pu"]
        ).set_index(["branch", "t"])
        return cls.from_tables(case, voltages, branches, pv_rows, bat_rows, sub_p, sub_q, objective, loss_cost,
                               terminal_cost, **summary)

    @classmethod
    def from_tables(cls, case: Case, voltages: pd.DataFrame, branches: pd.DataFrame, pv_rows: list[tuple],
                    bat_rows: list[tuple], sub_p: dict[int, float], sub_q: dict[int, float], objective: float,
                    loss_cost: float, terminal_cost: float, **summary: Any) -> "Results":
        """Results and their summary from the tables any formulation reads back: bus voltages (bus x hour,
        pu), branches (rows (branch, t)), PV and battery rows (:func:`device_rows`), substation P and Q
        per hour (pu) and the objective's parts (USD)."""
        base = case.bases.s_kva
        dt = case.settings.dt_h
        T = list(case.profile.index)
        pv = pd.DataFrame(pv_rows, columns=["bus", "t", "p_kw", "q_kvar", "q_max_kvar"]).set_index(["bus", "t"])
        battery = pd.DataFrame(
            bat_rows, columns=["bus", "t", "charge_kw", "discharge_kw", "q_kvar", "energy_kwh", "soc"]
        ).set_index(["bus", "t"])
        prof = case.profile
        substation = pd.DataFrame(
            {
                "p_kw": [sub_p[t] * base for t in T],
                "q_kvar": [sub_q[t] * base for t in T],
                "price_usd_per_kwh": prof["price"].to_numpy(),
                "load_mult": prof["load_mult"].to_numpy(),
                "pv_mult": prof["pv_mult"].to_numpy(),
                "clock_hour": prof["clock_hour"].to_numpy(),
            },
            index=pd.Index(T, name="t"),
        )
        substation["cost_usd"] = substation["p_kw"] * substation["price_usd_per_kwh"] * dt
        losses_kwh = float(branches["loss_kw"].sum() * dt)
        loss_by_hour = branches.groupby(level="t")["loss_kw"].sum()
        summary_out: dict[str, Any] = {
            "case": case.name,
            "hours": len(T),
            "dt_h": dt,
            "status": "optimal",
            "objective_usd": objective,
            "objective_is": OBJECTIVE_IS,
            "energy_cost_usd": float(substation["cost_usd"].sum()),
            "conversion_loss_cost_usd": float(loss_cost),
            "terminal_cost_usd": float(terminal_cost),
            "substation_energy_kwh": float(substation["p_kw"].sum() * dt),
            "substation_peak_kw": float(substation["p_kw"].max()),
            "losses_kwh": losses_kwh,
            "losses_by_hour_kw": [float(loss_by_hour.loc[t]) for t in T],
            "load_kwh": float(case.load_kw().sum() * dt),
            "fixed_generation_kwh": (float(case.buses["p_fixed"].sum()) * base * len(T) * dt
                                     if "p_fixed" in case.buses else 0.0),
            "pv_energy_kwh": float(pv["p_kw"].sum() * dt) if len(pv) else 0.0,
            "pv_reactive_kvarh": float(pv["q_kvar"].sum() * dt) if len(pv) else 0.0,
            "battery_charge_kwh": float(battery["charge_kw"].sum() * dt) if len(battery) else 0.0,
            "battery_discharge_kwh": float(battery["discharge_kw"].sum() * dt) if len(battery) else 0.0,
            "v_min_pu": float(voltages.to_numpy().min()),
            "v_max_pu": float(voltages.to_numpy().max()),
            "units": "kW, kvar, kWh: three-phase totals (per phase = 1/3); voltages in pu",
        }
        phases = case.bases.phases
        summary_out["convention"] = (f"top-level powers, energies and USD are {phases}-phase totals of the balanced "
                                     f"feeder; per_phase holds them divided by {phases}, the single-phase "
                                     "equivalent the source study reports")
        summary_out["phases"] = phases
        summary_out["per_phase"] = {k: summary_out[k] / phases for k in PER_PHASE_KEYS}
        summary_out.update(summary)
        return cls(summary_out, voltages, branches, pv, battery, substation, case=case)

    # ----------------------------------------------------------------------------------------------
    def save(self, out_dir: "str | Path | OutputFolder", figures: dict[str, Any] | None = None,
             files: Iterable[str] = (), before_summary: Callable[[dict[str, Any]], None] | None = None) -> Path:
        """Write summary.json, the tables (CSV) and optional figures (name -> matplotlib Figure).

        ``files``: names of files already written into the claim's staging folder (the CLI's figures,
        drawn while the plan was validated), listed in the marker with the rest. ``before_summary`` is
        called with the summary after every other file is written and before summary.json, which is
        written last (the CLI stamps its total time there). ``summary['timings']['write_s']`` is the time
        spent writing the tables.

        ``out_dir`` is a path, or an :class:`~mpdopf_pyomo.outputs.OutputFolder` claimed before the solve
        (the CLI does so, to refuse a bad ``--out`` before minutes of work). Everything is written into the
        claim's staging folder and put into place by :meth:`OutputFolder.commit`: a new folder, an empty
        one, or a previous results folder of this program replaced atomically. Anything else is refused
        (:class:`~mpdopf_pyomo.outputs.OutputError`) and left untouched; on any failure nothing is left.
        """
        from mpdopf_pyomo.outputs import OutputError, OutputFolder

        target = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder.claim(out_dir)
        with target:
            tmp = target.staging
            written: list[str] = list(files)
            try:
                t0 = time.perf_counter()
                clock = clock_times(self.substation)
                for name, table in [*((n, getattr(self, n)) for n in TABLES), *self.extra_tables.items()]:
                    file_table(name, table, clock).to_csv(tmp / f"{name}.csv", index=False)
                    written.append(f"{name}.csv")
                self.summary.setdefault("timings", {})["write_s"] = time.perf_counter() - t0
                if figures:
                    from mpdopf_pyomo.plots import save_png

                    for name, fig in figures.items():
                        save_png(fig, tmp / f"{name}.png")
                        written.append(f"{name}.png")
                if before_summary is not None:
                    before_summary(self.summary)
                (tmp / "summary.json").write_text(json.dumps(jsonable(self.summary), indent=2) + "\n")
                written.append("summary.json")
            except OSError as exc:  # a full disk, a quota: one line, and nothing is left
                raise OutputError(f"--out {target.path}: writing the results failed "
                                  f"({exc.strerror or exc})") from None
            return target.commit(written)

    @classmethod
    def load(cls, out_dir: str | Path) -> "Results":
        """Read a folder written by :meth:`save`, checking every file against the layout it writes.

        Checked: summary.json is a JSON object; every table file exists, parses, has its columns
        (:data:`TABLE_COLUMNS`), finite numbers in every numeric cell, whole periods 1..T in ``t`` (the
        periods of substation.csv), every unit at every period exactly once, and non-negative voltages.
        Anything else raises :class:`CaseError` naming the file and the column (exit code 2).
        """
        folder = Path(out_dir)
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise MpdopfError(one_line(f"{folder}: not a results folder (no summary.json)"))
        try:
            summary = json.loads(summary_file.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CaseError(one_line(f"{summary_file}: not readable JSON: {exc_message(exc)}")) from None
        if not isinstance(summary, dict):
            raise CaseError(one_line(f"{summary_file}: expected a JSON object, got {type(summary).__name__}"))
        tables = {name: _read_table(folder / f"{name}.csv") for name in TABLES}
        sub = _checked(folder / "substation.csv", tables["substation"], TABLE_COLUMNS["substation"])
        hours = _periods(folder / "substation.csv", sub["t"])
        if list(hours) != list(range(1, len(hours) + 1)):
            raise CaseError(one_line(f"{folder / 'substation.csv'}: column t: periods must be 1..{len(hours)} in "
                                     "order, one row each"))
        substation = sub.set_index("t").drop(columns="clock_time", errors="ignore")  # derived from clock_hour
        voltages = _voltage_table(folder / "voltages.csv", tables["voltages"], hours)
        indexed = {}
        for name in ("branches", "pv", "battery"):
            file = folder / f"{name}.csv"
            frame = _checked(file, tables[name], TABLE_COLUMNS[name])
            unit = frame.columns[0]
            frame["t"] = _periods(file, frame["t"], allowed=set(hours))
            _complete(file, frame, unit, hours)
            indexed[name] = frame.set_index([unit, "t"]).drop(columns="clock_time", errors="ignore")
        extra = {}
        for p in sorted(folder.glob("*.csv")):
            if p.stem in TABLES:
                continue
            if not p.is_file():  # a FIFO or device would block or never end
                raise CaseError(one_line(f"{p}: not a regular file"))
            try:
                extra[p.stem] = pd.read_csv(p)
            except (OSError, UnicodeDecodeError, ValueError, pd.errors.EmptyDataError) as exc:
                raise CaseError(one_line(f"{p}: not a readable CSV table: {exc_message(exc)}")) from None
            for col in extra[p.stem].columns:
                if col in _EXTRA_NUMERIC.get(p.stem, ()) and not pd.api.types.is_numeric_dtype(extra[p.stem][col]):
                    raise CaseError(one_line(f"{p}: column {col}: expected numbers"))
            extra[p.stem] = extra[p.stem].drop(columns="clock_time", errors="ignore")
            if p.stem == "validation_voltages" and "v_pu" in extra[p.stem].columns:  # long on disk, wide in memory
                extra[p.stem] = _voltage_table(p, pd.read_csv(p, dtype=str, keep_default_na=False), hours)
        return cls(summary, voltages, indexed["branches"], indexed["pv"], indexed["battery"], substation, extra)


#: Columns of each table file as :meth:`Results.save` writes them: (text columns, numeric columns), the first
#: text column (or ``t``) being the row key. voltages.csv is ``bus`` and one numeric column per period.
TABLE_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "branches": (("branch", "from_bus", "to_bus"), ("t", "p_kw", "q_kvar", "loss_kw", "current_sq_pu")),
    "pv": (("bus",), ("t", "p_kw", "q_kvar", "q_max_kvar")),
    "battery": (("bus",), ("t", "charge_kw", "discharge_kw", "q_kvar", "energy_kwh", "soc")),
    "substation": ((), ("t", "p_kw", "q_kvar", "price_usd_per_kwh", "cost_usd")),
}
#: Optional numeric columns of substation.csv (written since the profile was recorded with the plan).
_SUBSTATION_OPTIONAL = ("load_mult", "pv_mult", "clock_hour")
#: Numeric columns of the extra tables that figures read.
_EXTRA_NUMERIC = {
    "convergence": ("iteration", "primal_residual", "dual_residual", "objective_usd", "rho", "elapsed_s"),
}


def _read_table(file: Path) -> pd.DataFrame:
    """A CSV file as text cells (``""`` for an empty cell, NaN for a missing one in a cut row)."""
    if file.exists() and not file.is_file():  # a FIFO or device would block or never end
        raise CaseError(one_line(f"{file}: not a regular file"))
    if not file.is_file():
        raise CaseError(one_line(f"{file}: missing (a results folder holds {', '.join(t + '.csv' for t in TABLES)})"))
    try:
        return pd.read_csv(file, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.EmptyDataError) as exc:
        raise CaseError(one_line(f"{file}: not a readable CSV table: {exc_message(exc)}")) from None


def _numbers(file: Path, frame: pd.DataFrame, col: str) -> pd.Series:
    """Column ``col`` as finite numbers; the first bad cell is named by its line in the file."""
    text = frame[col]
    values = pd.to_numeric(text, errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        k = int(np.argmax(bad))
        cell = text.iloc[k]
        what = "empty (cut file?)" if cell is None or cell != cell or cell == "" else f"{cell[:40]!r} is not a finite number"
        raise CaseError(one_line(f"{file}: column {col}, line {k + 2}: {what}"))
    return values


def _checked(file: Path, frame: pd.DataFrame, columns: tuple[tuple[str, ...], tuple[str, ...]]) -> pd.DataFrame:
    """``frame`` with its text columns non-empty strings and its numeric columns finite numbers."""
    text_cols, num_cols = columns
    optional = _SUBSTATION_OPTIONAL if file.name == "substation.csv" else ()
    missing = [c for c in (*text_cols, *num_cols) if c not in frame.columns]
    if missing:
        raise CaseError(one_line(f"{file}: missing column(s) {', '.join(missing)}"))
    out = pd.DataFrame(index=frame.index)
    for col in text_cols:
        cells = frame[col]
        bad = cells.isna() | (cells.astype(str).str.strip() == "")
        if bad.any():
            raise CaseError(one_line(f"{file}: column {col}, line {int(np.argmax(bad.to_numpy())) + 2}: empty"))
        out[col] = cells.astype(str)
    for col in num_cols + tuple(c for c in optional if c in frame.columns):
        out[col] = _numbers(file, frame, col)
    for col in frame.columns:
        if col not in out.columns:
            out[col] = frame[col]
    return out[list(frame.columns)]


def _periods(file: Path, t: pd.Series, allowed: set[int] | None = None) -> pd.Series:
    """Column ``t`` as whole periods >= 1 (and within ``allowed``)."""
    ok = (t == np.floor(t)) & (t >= 1)
    if allowed is not None:
        ok &= t.isin(allowed)
    if not ok.all():
        k = int(np.argmax(~ok.to_numpy()))
        what = "not a period of substation.csv" if allowed is not None else "not a whole period >= 1"
        raise CaseError(one_line(f"{file}: column t, line {k + 2}: {t.iloc[k]:g} is {what}"))
    return t.astype(np.int64)


def _complete(file: Path, frame: pd.DataFrame, unit: str, hours: pd.Series) -> None:
    """Every unit (bus or branch) at every period exactly once."""
    dup = frame.duplicated([unit, "t"])
    if dup.any():
        k = int(np.argmax(dup.to_numpy()))
        raise CaseError(one_line(f"{file}: line {k + 2}: {unit} {frame[unit].iloc[k]} at t = {frame['t'].iloc[k]} "
                                 "appears twice"))
    counts = frame.groupby(unit, sort=False)["t"].size()
    short = counts[counts != len(hours)]
    if len(short):
        raise CaseError(one_line(f"{file}: {unit} {short.index[0]} has {short.iloc[0]} of the {len(hours)} periods "
                                 "(cut file?)"))


def model_rows(case: Case, m: pyo.ConcreteModel) -> dict[str, Any]:
    """The rows of the result tables one solved balanced-family model holds (plain Python values, picklable):
    ``voltages`` (bus -> magnitude per hour, pu) of the buses it owns (and its root when that is not a
    port), ``branches``, ``pv`` and ``battery`` rows, ``sub_p``/``sub_q`` (hour -> pu; the area with the
    substation only) and the objective's parts ``objective``, ``loss_cost``, ``terminal_cost`` (USD)."""
    base = case.bases.s_kva
    T = list(case.profile.index)
    net = m.net
    owned = set(m.view.buses)
    v_rows = {bus: [math.sqrt(max(net.v[bus, t].value, 0.0)) for t in T]
              for bus in net.N if bus in owned or (bus == m.view.root and not m.view.root_is_port)}
    br_rows: list[tuple] = []
    r_of, to_of = case.branches["r"].to_dict(), case.branches["to_bus"].to_dict()  # not .at per row: 0.05 s
    P, Q, L, parent = net.P, net.Q, net.l, net.parent_bus
    for e in net.E:
        r, frm, to = r_of[e], parent[e], to_of[e]
        for t in T:
            ell = L[e, t].value or 0.0
            br_rows.append((e, t, frm, to, P[e, t].value * base, Q[e, t].value * base, r * ell * base, ell))
    pv_rows: list[tuple] = []
    bat_rows: list[tuple] = []
    device_rows(case, m, pv_rows, bat_rows)
    sub = getattr(m, "substation", None)
    return {
        "voltages": v_rows, "branches": br_rows, "pv": pv_rows, "battery": bat_rows,
        "sub_p": {t: sub.P[t].value for t in T} if sub is not None else {},
        "sub_q": {t: sub.Q[t].value for t in T} if sub is not None else {},
        "objective": pyo.value(m.energy_cost + m.loss_cost + m.terminal_cost),
        "loss_cost": pyo.value(m.loss_cost),
        "terminal_cost": pyo.value(m.terminal_cost),
    }


def device_rows(case: Case, m: pyo.ConcreteModel, pv_rows: list[tuple], bat_rows: list[tuple]) -> None:
    """Append the PV and battery rows of a model's ``pv`` and ``battery`` blocks (:mod:`mpdopf_pyomo.blocks.pv`,
    :mod:`~mpdopf_pyomo.blocks.battery`), in kW, kvar, kWh: the layout of pv.csv and battery.csv."""
    base = case.bases.s_kva
    T = list(case.profile.index)
    for j in m.pv.J:
        for t in T:
            q = m.pv.q[j, t]
            pv_rows.append((j, t, m.pv.p[j, t] * base, q.value * base, q.ub * base))
    bat = m.battery
    e_rated_of = case.batteries["e_rated"].to_dict() if len(bat.J) else {}
    for j in bat.J:
        e_rated = e_rated_of[j]
        for t in T:
            energy = bat.e[j, t].value
            bat_rows.append(
                (j, t, bat.pc[j, t].value * base, bat.pd[j, t].value * base, bat.q[j, t].value * base,
                 energy * base, energy / e_rated)
            )


def clock_times(substation: pd.DataFrame) -> pd.Series | None:
    """``HH:MM`` of each period's start (index ``t``) from substation's ``clock_hour``; a period past the
    first day is written ``D+HH:MM`` (day offset D). None when the table has no clock hours."""
    if "clock_hour" not in substation.columns:
        return None

    def text(h: float) -> str:
        minutes = int(round(float(h) * 60))
        day, rest = divmod(minutes, 24 * 60)
        return (f"{day}+" if day else "") + f"{rest // 60:02d}:{rest % 60:02d}"

    return pd.Series([text(h) for h in substation["clock_hour"]], index=substation.index, name="clock_time")


def file_table(name: str, table: pd.DataFrame, clock: pd.Series | None) -> pd.DataFrame:
    """A table as its CSV file holds it: keys as columns, voltage tables (bus x t) long as ``bus, t, v_pu``,
    and ``clock_time`` after ``t`` when the clock is known (what :meth:`Results.save` and the ``validate``
    command write; :meth:`Results.load` reads it back)."""
    wide = table.set_index("bus") if "bus" in table.columns else table
    if name in ("voltages", "validation_voltages") and all(str(c).isdigit() for c in wide.columns):
        long = wide.copy()
        long.index = long.index.astype(str).rename("bus")
        long.columns = pd.Index([int(c) for c in long.columns], name="t")
        out = long.stack().rename("v_pu").reset_index()
    else:
        named = [n for n in table.index.names if n is not None]
        out = table.reset_index() if named else table.copy()
    if clock is not None and "t" in out.columns:
        out = out.drop(columns="clock_time", errors="ignore")
        out.insert(out.columns.get_loc("t") + 1, "clock_time", out["t"].map(clock))
    return out


def _voltage_table(file: Path, frame: pd.DataFrame, hours: pd.Series) -> pd.DataFrame:
    """voltages.csv as bus x period (pu): long (bus, t, v_pu; every bus at every period 1..T once) or the
    wide layout of earlier versions (bus, one column per period); finite non-negative magnitudes."""
    if "bus" not in frame.columns:
        raise CaseError(one_line(f"{file}: missing column bus"))
    if "v_pu" in frame.columns or "t" in frame.columns:
        long = _checked(file, frame, (("bus",), ("t", "v_pu")))
        long["t"] = _periods(file, long["t"], allowed=set(hours))
        _complete(file, long, "bus", hours)
        if (long["v_pu"].to_numpy() < 0).any():
            raise CaseError(one_line(f"{file}: negative voltage magnitude"))
        out = long.pivot(index="bus", columns="t", values="v_pu").reindex(index=long["bus"].unique(), columns=list(hours))
        out.index.name = "bus"
        out.columns = [int(c) for c in out.columns]
        return out
    periods = [c for c in frame.columns if c != "bus"]
    if periods != [str(t) for t in hours]:
        raise CaseError(one_line(f"{file}: period columns {', '.join(periods[:8]) or 'none'} do not match the "
                                 f"periods 1..{len(hours)} of substation.csv"))
    out = _checked(file, frame, (("bus",), tuple(periods)))
    if out["bus"].duplicated().any():
        raise CaseError(one_line(f"{file}: bus {out['bus'][out['bus'].duplicated()].iloc[0]} appears twice"))
    out = out.set_index("bus")
    out.columns = [int(c) for c in out.columns]
    if (out.to_numpy() < 0).any():
        raise CaseError(one_line(f"{file}: negative voltage magnitude"))
    return out


def jsonable(obj: Any) -> Any:
    """numpy scalars and paths to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
