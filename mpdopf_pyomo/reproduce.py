"""Reproduce the source study's IEEE 123 run: its reported figures side by side with ours, per phase.

The study (Jha et al., "Spatially Distributed Multi-Period Optimal Power Flow with Battery Energy Storage
Systems", IEEE 2024) models the balanced IEEE 123 feeder by its single-phase equivalent, so it reports per
phase what this package computes as three-phase totals; every figure below is per phase (total / 3).
What it reports for the 5-hour horizon and 4 areas (:data:`STUDY`): the substation energy cost of the
central solution, that of the distributed ENApp solution, the number of ENApp macro-iterations and the
number of values exchanged per iteration (2 x 3 boundaries x 5 hours = 30, its section I.B).

:func:`reproduce` solves the study's case (``ieee123-published``: the settings its code ran) centrally and
by ENApp as the study ran it (undamped, the case's 4 areas), checks both plans in OpenDSS and returns the
comparison table; ``python -m mpdopf_pyomo reproduce`` (``make paper``) prints it and writes it, as
Markdown and CSV, into the run folder (default ``runs/reproduce``) with the two runs' summaries.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mpdopf_pyomo.progress import Progress, quiet

#: The study's case and horizon.
CASE = "ieee123-published"
HOURS = 5
#: Folder ``reproduce`` writes by default (the output-folder rules of :mod:`mpdopf_pyomo.outputs` apply).
DEFAULT_OUT = Path("runs") / "reproduce"
#: Largest relative difference of an energy cost from the study's (rounded to cents) that counts as
#: reproduced: 1e-4, i.e. 6 cents of 576 USD. Counts (iterations, exchanged values) must be equal.
REL_TOL_USD = 1e-4


@dataclass(frozen=True)
class Figure:
    """One figure of the comparison: what the study reports (None: not reported) and where ours comes from."""

    key: str
    label: str
    unit: str
    study: float | None


#: Every figure the study reports for this run, then ours that it does not report (study None).
STUDY: tuple[Figure, ...] = (
    Figure("central_energy_cost", "Central: substation energy cost", "USD per phase", 576.31),
    Figure("enapp_energy_cost", "ENApp, 4 areas: substation energy cost", "USD per phase", 576.30),
    Figure("enapp_iterations", "ENApp: macro-iterations", "", 5),
    Figure("enapp_exchanged", "ENApp: values exchanged per iteration", "", 30),
    Figure("central_energy_cost_opendss", "Central: energy cost of the plan in OpenDSS", "USD per phase", None),
    Figure("enapp_energy_cost_opendss", "ENApp: energy cost of the plan in OpenDSS", "USD per phase", None),
    Figure("central_losses", "Central: line losses over the horizon", "kWh per phase", None),
    Figure("enapp_losses", "ENApp: line losses over the horizon", "kWh per phase", None),
)


def _ours(central: dict[str, Any], enapp: dict[str, Any]) -> dict[str, float]:
    """Our value of every :data:`STUDY` figure, from the two runs' summaries (per phase)."""
    c, e = central["per_phase"], enapp["per_phase"]
    return {
        "central_energy_cost": c["energy_cost_usd"],
        "enapp_energy_cost": e["energy_cost_usd"],
        "enapp_iterations": enapp["distributed"]["iterations"],
        "enapp_exchanged": enapp["distributed"]["exchanged_per_iteration"],
        "central_energy_cost_opendss": central["validation"]["energy_cost_opendss_per_phase_usd"],
        "enapp_energy_cost_opendss": enapp["validation"]["energy_cost_opendss_per_phase_usd"],
        "central_losses": c["losses_kwh"],
        "enapp_losses": e["losses_kwh"],
    }


def comparison(central: dict[str, Any], enapp: dict[str, Any]) -> pd.DataFrame:
    """The table: one row per figure with ``study``, ``ours``, ``relative_difference`` ((ours - study) /
    study; NaN where the study reports nothing) and ``reproduced`` (within :data:`REL_TOL_USD` for USD,
    equal for counts; empty where the study reports nothing)."""
    ours = _ours(central, enapp)
    rows = []
    for f in STUDY:
        value = float(ours[f.key])
        if f.study is None:
            rel, ok = math.nan, ""
        else:
            rel = (value - f.study) / abs(f.study)
            ok = "yes" if (abs(rel) <= REL_TOL_USD if f.unit.startswith("USD") else value == f.study) else "no"
        rows.append({"figure": f.key, "label": f.label, "unit": f.unit, "study": f.study, "ours": value,
                     "relative_difference": rel, "reproduced": ok})
    return pd.DataFrame(rows).set_index("figure")


def _number(x: float | None, unit: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4f}" if unit else f"{x:g}"


def format_text(table: pd.DataFrame) -> str:
    """The table as the terminal shows it (fixed-width columns)."""
    head = f"{'':<46} {'unit':<14} {'study':>9} {'ours':>11} {'rel. diff':>10}  reproduced"
    lines = [head, "-" * len(head)]
    for _, r in table.iterrows():
        rel = "-" if math.isnan(r["relative_difference"]) else f"{r['relative_difference']:+.1e}"
        lines.append(f"{r['label']:<46} {r['unit']:<14} {_number(r['study'], r['unit']):>9} "
                     f"{_number(r['ours'], r['unit']):>11} {rel:>10}  {r['reproduced'] or '-'}")
    return "\n".join(lines)


def format_markdown(table: pd.DataFrame) -> str:
    """The table as a Markdown pipe table (what reproduce.md holds and the docs page shows)."""
    lines = ["| figure | unit | study | ours | relative difference | reproduced |",
             "|---|---|---:|---:|---:|---|"]
    for _, r in table.iterrows():
        rel = "–" if math.isnan(r["relative_difference"]) else f"{r['relative_difference']:+.1e}"
        study = _number(r["study"], r["unit"]).replace("-", "–")
        lines.append(f"| {r['label']} | {r['unit']} | {study} | {_number(r['ours'], r['unit'])} | {rel} | "
                     f"{r['reproduced'] or '–'} |")
    return "\n".join(lines)


def settings_note(central: dict[str, Any], enapp: dict[str, Any]) -> str:
    """One paragraph saying what was run (so the table says which variant it compares)."""
    d = enapp["distributed"]
    return (f"Case `{central['case']}`, {central['hours']} h; central: one NLP ({central['solver']}, "
            f"{central['solver_stats']['iterations']} iterations); ENApp: {d['areas']} areas, damping "
            f"{d['damping']:g} (undamped, as the study), tolerance {d['tolerance_pu']:g} pu, "
            f"{central['solver']} in every area solve. Per phase = three-phase total / {central['phases']}, the "
            "study's single-phase-equivalent convention. Energy cost = substation energy x price, the study's "
            "objective (our objective_usd adds alpha x battery conversion losses, "
            f"{central['per_phase']['conversion_loss_cost_usd']:.4f} USD per phase centrally). "
            f"Reproduced: USD within {REL_TOL_USD:g} relative of the study's (rounded) figure, counts equal.")


def reproduce(executor: str | None = None, progress: Progress = quiet) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Solve the study's case centrally and by ENApp, validate both in OpenDSS; return the comparison
    table and ``{"central": Results, "enapp": Results}``."""
    from mpdopf_pyomo.case import load_case
    from mpdopf_pyomo.pipeline import solve

    case = load_case(CASE, HOURS)
    runs: dict[str, Any] = {}
    for algorithm in ("central", "enapp"):
        t0 = time.perf_counter()
        extra = {} if algorithm == "central" else {k: v for k, v in {"executor": executor}.items() if v}
        progress(f"reproduce: {CASE}, {HOURS} h, {algorithm}")
        res = solve(case, algorithm=algorithm, validate=True, progress=progress, **extra)
        res.summary["timings"]["total_s"] = time.perf_counter() - t0
        runs[algorithm] = res
    return comparison(runs["central"].summary, runs["enapp"].summary), runs


def write(target: Any, table: pd.DataFrame, runs: dict[str, Any]) -> Path:
    """Write reproduce.md, reproduce.csv and each run's summary (and ENApp's convergence.csv) through a
    claimed :class:`~mpdopf_pyomo.outputs.OutputFolder`; return the folder."""
    from mpdopf_pyomo.outputs import OutputError
    from mpdopf_pyomo.results import jsonable

    c, e = runs["central"].summary, runs["enapp"].summary
    with target:
        tmp = target.staging
        files = {
            "reproduce.md": "# Reproducing the study\n\n" + format_markdown(table) + "\n\n"
                            + settings_note(c, e) + "\n",
            "central_summary.json": json.dumps(jsonable(c), indent=2) + "\n",
            "enapp_summary.json": json.dumps(jsonable(e), indent=2) + "\n",
        }
        try:
            for name, text in files.items():
                (tmp / name).write_text(text, encoding="utf-8")
            table.to_csv(tmp / "reproduce.csv")
            runs["enapp"].extra_tables["convergence"].to_csv(tmp / "enapp_convergence.csv")
        except OSError as exc:
            raise OutputError(f"--out {target.path}: writing the results failed ({exc.strerror or exc})") from None
        return target.commit([*files, "reproduce.csv", "enapp_convergence.csv"])
