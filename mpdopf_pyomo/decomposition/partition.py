"""Areas of a radial feeder: from the case's cut branches, or an automatic partition into N areas.

Automatic partition (``--areas N``), balanced on the number of buses:

1. *bounded cut* (Kundu and Misra, 1977): for a bound B, walk the tree from the leaves up; a bus's
   residual is itself plus its children's residuals; while it exceeds B, cut the child with the largest
   residual (that child's residual becomes an area). This gives the fewest connected areas of at most B
   buses each. The bound is bisected for the smallest B that gives at most N areas;
2. if that gives fewer than N areas (a tree whose parts cannot all be <= B), the largest area is split
   by the cut whose part below is closest to total / N, until there are N.

Cuts follow the tree (at a feeder's natural joints when its sections are of the target size, so the
areas form a tree as shallow as the feeder's), every area is connected (a subtree minus subtrees), every
bus is in exactly one area, and at least one branch from the substation bus stays inside area 1 (the
substation's area). Area 1 holds the substation; the others are numbered top-down (by the depth of their
head bus, then its breadth-first position). Step 1 gives the smallest possible largest area for N
connected areas. Measured on generated feeders (``cases generate``, tree layout): the largest area is
1.00-1.01 x total / N where N divides into sections (1,025 buses / 8 or 16, 2,561 / 20, 10,241 / 16 or 80),
1.4-1.6 x otherwise (2,561 / 8, 16, 32: sections of 128 buses with 4 sections below each); under 0.4 s
on 10,241 buses (``tests/test_scale.py`` asserts <= 1.7 x on 2,561 buses).
The cut branches are then handed to :func:`mpdopf_pyomo.network.assign_areas`, as if they had been
written in the case file.

``--areas auto`` (:func:`auto_areas`) picks N for the machine: one area per core, more when the
feeder's estimated memory (:data:`BYTES_PER_BUS_HOUR`) would not fit in the available memory per core,
at most one area per :data:`MIN_AREA_BUSES` buses.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pandas as pd

from mpdopf_pyomo import network
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import CaseError, bad_setting

#: Fewest buses per area ``--areas auto`` chooses.
MIN_AREA_BUSES = 50
#: Peak memory of a central solve per bus and hour, bytes (measured: 1,025 x 5 h 0.2 GB, 2,561 x 24 h 2 GB,
#: 10,241 x 4 h 1.5 GB: 30-40 kB per bus-hour); an area's solve takes its share.
BYTES_PER_BUS_HOUR = 40_000


def auto_areas(case: Case, cores: int | None = None, memory_bytes: int | None = None) -> int:
    """Number of areas for this machine: ``max(cores, memory need / (available memory per core))``,
    at least 2 and at most ``buses // MIN_AREA_BUSES``."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            memory_bytes = 4 << 30
    need = BYTES_PER_BUS_HOUR * len(case.buses) * case.hours
    by_memory = math.ceil(need / max(memory_bytes / cores, 1))
    most = max(2, len(case.buses) // MIN_AREA_BUSES)
    return int(min(max(2, cores, by_memory), most))


def _tree(case: Case) -> tuple[dict[str, list[str]], dict[str, str], list[str]]:
    """Children of every bus, the branch into every bus, and the buses in breadth-first order."""
    br = case.branches
    children: dict[str, list[str]] = {b: [] for b in case.buses.index}
    into: dict[str, str] = {}
    for e, i, j in zip(br.index, br["from_bus"], br["to_bus"]):
        children[i].append(j)
        into[j] = e
    order = [case.root]
    for bus in order:
        order.extend(children[bus])
    return children, into, order


def _bounded_cuts(root: str, children: dict[str, list[str]], order: list[str], bound: int,
                  can_head: set[str] | None = None) -> list[str]:
    """Heads (to-buses of the cut branches) of the fewest areas of at most ``bound`` buses (step 1);
    ``can_head``: the buses whose incoming branch may be cut (None: all)."""
    residual: dict[str, int] = {}
    heads: list[str] = []
    for bus in reversed(order):  # children before parents
        kids = sorted(((residual[c], c) for c in children[bus]), reverse=True)
        r = 1 + sum(k[0] for k in kids)
        n_kids = len(kids)
        if can_head is not None:
            kids = [k for k in kids if k[1] in can_head]
        keep = 1 if bus == root and len(kids) == n_kids else 0  # one branch from the substation stays in area 1
        for rc, c in kids[: len(kids) - keep]:
            if r <= bound:
                break
            heads.append(c)
            r -= rc
        residual[bus] = r
    return heads


def auto_cut_branches(case: Case, n_areas: int, cuttable: set[str] | None = None) -> list[str]:
    """Choose ``n_areas - 1`` cut branches by the rule of the module docstring, among ``cuttable``
    (None: any branch; the three-phase formulation allows three-phase lines only)."""
    br = case.branches
    n_bus = len(case.buses)
    if n_areas < 1 or n_areas > n_bus - 1:
        raise bad_setting("n_areas", "--areas", str(n_areas), f"choose between 1 and {n_bus - 1} areas for {n_bus} buses")
    children, into, order = _tree(case)
    can_head = None if cuttable is None else {j for j, e in into.items() if e in cuttable}
    lo, hi = math.ceil(n_bus / n_areas), n_bus
    while lo < hi:  # smallest bound with at most n_areas areas
        mid = (lo + hi) // 2
        if len(_bounded_cuts(case.root, children, order, mid, can_head)) + 1 <= n_areas:
            hi = mid
        else:
            lo = mid + 1
    heads = _bounded_cuts(case.root, children, order, lo, can_head)
    depth = {b: i for i, b in enumerate(order)}  # breadth-first position: parents before children
    cuts = [into[h] for h in sorted(heads, key=lambda h: depth[h])]
    cut_heads = set(heads)
    target = n_bus / n_areas
    while len(cuts) < n_areas - 1:  # step 2
        area = network.assign_areas(br, case.root, cuts)
        best: tuple[float, str] | None = None
        for a in area.value_counts().sort_values(ascending=False).index:
            head = case.root if a == 1 else br.at[cuts[a - 2], "to_bus"]
            sub = _subtree_sizes(head, children, cut_heads)
            for bus, size in sub.items():
                if bus == head or br.at[into[bus], "from_bus"] == case.root or (
                        can_head is not None and bus not in can_head):
                    continue
                score = abs(size - target)
                if best is None or score < best[0]:
                    best = (score, into[bus])
            if best is not None:
                break
        if best is None:
            raise bad_setting("n_areas", "--areas", str(n_areas), f"the feeder cannot be split into {n_areas} areas")
        cuts.append(best[1])
        cut_heads.add(br.at[best[1], "to_bus"])
    return cuts


def _subtree_sizes(head: str, children: dict[str, list[str]], stop: set[str]) -> dict[str, int]:
    """Number of buses below each bus of the area headed by ``head`` (not crossing into ``stop`` heads)."""
    order = [head]
    for bus in order:
        order.extend(c for c in children[bus] if c not in stop)
    size: dict[str, int] = {}
    for bus in reversed(order):
        size[bus] = 1 + sum(size[c] for c in children[bus] if c not in stop)
    return size


def with_areas(case: Case, n_areas: int | str | None = None, cuttable: set[str] | None = None) -> Case:
    """The case itself (its own cut branches) or a copy partitioned automatically into ``n_areas`` areas
    (``'auto'``: :func:`auto_areas`) by cutting only branches of ``cuttable`` (None: any)."""
    if n_areas is None:
        if not case.cut_branches:
            what = f"{case.source}: the case defines no areas ([areas] cut_branches); "
            raise CaseError(what + "set n_areas = N to partition the feeder automatically",
                            cli_message=what + "pass --areas N to partition the feeder automatically")
        return case
    if n_areas == "auto":
        n_areas = auto_areas(case)
    cuts = auto_cut_branches(case, int(n_areas), cuttable)
    area = network.assign_areas(case.branches, case.root, cuts)
    buses = case.buses.copy()
    buses["area"] = pd.Series(area).reindex(buses.index).astype(int).to_numpy()
    return dataclasses.replace(case, buses=buses, cut_branches=cuts)
