"""One Results object: pandas tables in physical units plus a summary; written and read in one place.

Tables (kW, kvar, kWh are three-phase totals of the balanced feeder, i.e. per-unit x ``bases.s_kva``):

* ``voltages``: index bus, one column per hour, voltage magnitude in pu
* ``branches``: rows (branch, t): from_bus, to_bus, p_kw, q_kvar (sending end), loss_kw, current_sq_pu
* ``pv``: rows (bus, t): p_kw, q_kvar, q_max_kvar
* ``battery``: rows (bus, t): charge_kw, discharge_kw, q_kvar, energy_kwh, soc
* ``substation``: rows t: p_kw, q_kvar, price_usd_per_kwh, cost_usd, load_mult, pv_mult

``summary`` follows the output contract (DESIGN.md section 7). :meth:`Results.save` writes everything into a
temporary folder beside the target and renames it into place, so a failure never leaves a half-written
output folder.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import MpdopfError

TABLES = ("voltages", "branches", "pv", "battery", "substation")


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
        a distributed run together give each quantity exactly once.
        """
        base = case.bases.s_kva
        dt = case.settings.dt_h
        T = list(case.profile.index)
        v_rows: dict[str, list[float]] = {}
        br_rows: list[tuple] = []
        pv_rows: list[tuple] = []
        bat_rows: list[tuple] = []
        sub_p: dict[int, float] = {}
        sub_q: dict[int, float] = {}
        objective = 0.0
        for m in models:
            net = m.net
            owned = set(m.view.buses)
            for bus in net.N:
                if bus in owned or (bus == m.view.root and not m.view.root_is_port):
                    v_rows[bus] = [math.sqrt(max(net.v[bus, t].value, 0.0)) for t in T]
            for e in net.E:
                r = case.branches.at[e, "r"]
                for t in T:
                    ell = net.l[e, t].value or 0.0
                    br_rows.append(
                        (e, t, net.parent_bus[e], case.branches.at[e, "to_bus"], net.P[e, t].value * base,
                         net.Q[e, t].value * base, r * ell * base, ell)
                    )
            for j in m.pv.J:
                for t in T:
                    q = m.pv.q[j, t]
                    pv_rows.append((j, t, m.pv.p[j, t] * base, q.value * base, q.ub * base))
            bat = m.battery
            for j in bat.J:
                e_rated = case.batteries.at[j, "e_rated"]
                for t in T:
                    energy = bat.e[j, t].value
                    bat_rows.append(
                        (j, t, bat.pc[j, t].value * base, bat.pd[j, t].value * base, bat.q[j, t].value * base,
                         energy * base, energy / e_rated)
                    )
            if hasattr(m, "substation"):
                for t in T:
                    sub_p[t] = m.substation.P[t].value
                    sub_q[t] = m.substation.Q[t].value
            objective += pyo.value(m.energy_cost + m.loss_cost + m.terminal_cost)

        voltages = pd.DataFrame.from_dict(v_rows, orient="index", columns=T)
        voltages = voltages.reindex([b for b in case.buses.index if b in v_rows])
        voltages.index.name = "bus"
        branches = pd.DataFrame(
            br_rows, columns=["branch", "t", "from_bus", "to_bus", "p_kw", "q_kvar", "loss_kw", "current_sq_pu"]
        ).set_index(["branch", "t"])
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
            "energy_cost_usd": float(substation["cost_usd"].sum()),
            "substation_energy_kwh": float(substation["p_kw"].sum() * dt),
            "substation_peak_kw": float(substation["p_kw"].max()),
            "losses_kwh": losses_kwh,
            "losses_by_hour_kw": [float(loss_by_hour.loc[t]) for t in T],
            "pv_energy_kwh": float(pv["p_kw"].sum() * dt) if len(pv) else 0.0,
            "pv_reactive_kvarh": float(pv["q_kvar"].sum() * dt) if len(pv) else 0.0,
            "battery_charge_kwh": float(battery["charge_kw"].sum() * dt) if len(battery) else 0.0,
            "battery_discharge_kwh": float(battery["discharge_kw"].sum() * dt) if len(battery) else 0.0,
            "v_min_pu": float(voltages.to_numpy().min()),
            "v_max_pu": float(voltages.to_numpy().max()),
            "units": "kW, kvar, kWh: three-phase totals (per phase = 1/3); voltages in pu",
        }
        summary_out.update(summary)
        return cls(summary_out, voltages, branches, pv, battery, substation, case=case)

    # ----------------------------------------------------------------------------------------------
    def save(self, out_dir: str | Path, figures: dict[str, Any] | None = None) -> Path:
        """Write summary.json, the tables (CSV) and optional figures (name -> matplotlib Figure).

        Writes into a temporary sibling folder first and renames it into place at the end; an existing
        folder is replaced only once the new one is complete.
        """
        out = Path(out_dir).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for name in TABLES:
                getattr(self, name).to_csv(tmp / f"{name}.csv")
            for name, table in self.extra_tables.items():
                table.to_csv(tmp / f"{name}.csv")
            for name, fig in (figures or {}).items():
                fig.savefig(tmp / f"{name}.png", dpi=110)
            (tmp / "summary.json").write_text(json.dumps(jsonable(self.summary), indent=2) + "\n")
            if out.exists():
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> "Results":
        """Read a folder written by :meth:`save`."""
        folder = Path(out_dir)
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise MpdopfError(f"{folder}: not a results folder (no summary.json)")
        summary = json.loads(summary_file.read_text())
        voltages = pd.read_csv(folder / "voltages.csv", index_col="bus", dtype={"bus": str})
        voltages.columns = [int(c) for c in voltages.columns]
        branches = pd.read_csv(folder / "branches.csv", dtype={"branch": str, "from_bus": str, "to_bus": str})
        pv = pd.read_csv(folder / "pv.csv", dtype={"bus": str})
        battery = pd.read_csv(folder / "battery.csv", dtype={"bus": str})
        substation = pd.read_csv(folder / "substation.csv", index_col="t")
        extra = {
            p.stem: pd.read_csv(p)
            for p in folder.glob("*.csv")
            if p.stem not in TABLES
        }
        return cls(
            summary,
            voltages,
            branches.set_index(["branch", "t"]),
            pv.set_index(["bus", "t"]),
            battery.set_index(["bus", "t"]),
            substation,
            extra,
        )


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
