"""Benchmark rows of the distributed solves (the lead wires them into ``make bench``)."""

from __future__ import annotations

import time
from typing import Any, Iterable

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.decomposition import solve_distributed
from mpdopf_pyomo.errors import MpdopfError


def benchmark_rows(
    case: str = "ieee123",
    hours: Iterable[int] = (5, 24),
    algorithms: Iterable[str] = ("admm", "enapp"),
    executors: Iterable[str] = ("serial", "processes", "dask"),
    **options: Any,
) -> list[dict[str, Any]]:
    """One row per (algorithm, executor, hours): iterations, wall time, area-solve vs coordination time."""
    rows: list[dict[str, Any]] = []
    for T in hours:
        c = load_case(case, T)
        for algorithm in algorithms:
            for executor in executors:
                t0 = time.perf_counter()
                row: dict[str, Any] = {"algorithm": algorithm, "executor": executor, "hours": T}
                try:
                    res = solve_distributed(c, algorithm, executor=executor, **options)
                    d = res.summary["distributed"]
                    row.update(iterations=d["iterations"], converged=d["converged"],
                               objective_usd=res.summary["objective_usd"], area_solve_s=d["area_solve_s"],
                               coordination_s=d["coordination_s"], per_iteration_s=d["per_iteration_s"],
                               critical_path_s=d["timing_s"]["critical_path"], waiting_s=d["timing_s"]["waiting"],
                               transfer_s=d["timing_s"]["transfer"],
                               projected_s=d["timing_s"]["projected_one_core_per_area"],
                               projected_cpu_s=d["timing_s"]["projected_one_core_per_area_cpu"],
                               worker_peak_mb=max(w["peak_mb"] for w in d["workers"]))
                except MpdopfError as exc:
                    row.update(iterations=None, converged=False, error=str(exc))
                row["wall_s"] = time.perf_counter() - t0
                rows.append(row)
    return rows
