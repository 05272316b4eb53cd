"""One Results object: pandas tables in physical units plus a summary; written and read in one place.

Tables (kW, kvar, kWh are three-phase totals of the balanced feeder, i.e. per-unit x ``bases.s_kva``):

* ``voltages``: index bus, one column per hour, voltage magnitude in pu
* ``branches``: rows (branch, t): from_bus, to_bus, p_kw, q_kvar (sending end), loss_kw, current_sq_pu
* ``pv``: rows (bus, t): p_kw, q_kvar, q_max_kvar
* ``battery``: rows (bus, t): charge_kw, discharge_kw, q_kvar, energy_kwh, soc
* ``substation``: rows t: p_kw, q_kvar, price_usd_per_kwh, cost_usd, load_mult, pv_mult

``summary`` follows the output contract (DESIGN.md section 7). :meth:`Results.save` writes everything into a
temporary folder beside the target and renames it into place (``mpdopf_pyomo.outputs``), so a failure never
leaves a half-written output folder and nothing the program did not write is ever replaced.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import MpdopfError

if TYPE_CHECKING:
    from mpdopf_pyomo.outputs import OutputFolder

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
        return cls(summary_out, voltages, branches, pv, battery, substation)

    # ----------------------------------------------------------------------------------------------
    def save(self, out_dir: "str | Path | OutputFolder", figures: dict[str, Any] | None = None) -> Path:
        """Write summary.json, the tables (CSV) and optional figures (name -> matplotlib Figure).

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
            written: list[str] = []
            try:
                for name, table in [*((n, getattr(self, n)) for n in TABLES), *self.extra_tables.items()]:
                    table.to_csv(tmp / f"{name}.csv")
                    written.append(f"{name}.csv")
                for name, fig in (figures or {}).items():
                    fig.savefig(tmp / f"{name}.png", dpi=110)
                    written.append(f"{name}.png")
                (tmp / "summary.json").write_text(json.dumps(jsonable(self.summary), indent=2) + "\n")
                written.append("summary.json")
            except OSError as exc:  # a full disk, a quota: one line, and nothing is left
                raise OutputError(f"--out {target.path}: writing the results failed "
                                  f"({exc.strerror or exc})") from None
            return target.commit(written)

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
