"""Areas of a radial feeder: from the case's cut branches, or an automatic partition into N areas.

Automatic partition (``--areas N``), greedy on subtree sizes (number of buses):

1. start with one area (the whole tree, rooted at the substation);
2. N - 1 times: in the largest area, among the branches inside it that do not leave the substation bus,
   cut the one whose downstream part (within that area) has a size closest to total / N; the part below
   it becomes a new area.

Every area is connected (a subtree minus subtrees), every bus is in exactly one area, the substation's
area is area 1 and the others are numbered in cut order. The cut branches are then handed to
:func:`mpdopf_pyomo.network.assign_areas`, as if they had been written in the case file.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from mpdopf_pyomo import network
from mpdopf_pyomo.case import Case
from mpdopf_pyomo.errors import CaseError, bad_setting


def auto_cut_branches(case: Case, n_areas: int) -> list[str]:
    """Choose ``n_areas - 1`` cut branches by the greedy rule of the module docstring."""
    br = case.branches
    n_bus = len(case.buses)
    if n_areas < 1 or n_areas > n_bus - 1:
        raise bad_setting("n_areas", "--areas", str(n_areas), f"choose between 1 and {n_bus - 1} areas for {n_bus} buses")
    children: dict[str, list[str]] = {b: [] for b in case.buses.index}
    into: dict[str, str] = {}
    for e, i, j in zip(br.index, br["from_bus"], br["to_bus"]):
        children[i].append(j)
        into[j] = e
    cuts: list[str] = []
    cut_heads: set[str] = set()
    target = n_bus / n_areas
    for _ in range(n_areas - 1):
        area = network.assign_areas(br, case.root, cuts)
        sizes = area.value_counts()
        best: tuple[float, str] | None = None
        for a in sizes.sort_values(ascending=False).index:
            head = case.root if a == 1 else br.at[cuts[a - 2], "to_bus"]
            sub = _subtree_sizes(head, children, cut_heads)
            for bus, size in sub.items():
                if bus == head or br.at[into[bus], "from_bus"] == case.root:
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


def with_areas(case: Case, n_areas: int | None = None) -> Case:
    """The case itself (its own cut branches) or a copy partitioned automatically into ``n_areas`` areas."""
    if n_areas is None:
        if not case.cut_branches:
            what = f"{case.source}: the case defines no areas ([areas] cut_branches); "
            raise CaseError(what + "set n_areas = N to partition the feeder automatically",
                            cli_message=what + "pass --areas N to partition the feeder automatically")
        return case
    cuts = auto_cut_branches(case, n_areas)
    area = network.assign_areas(case.branches, case.root, cuts)
    buses = case.buses.copy()
    buses["area"] = pd.Series(area).reindex(buses.index).astype(int).to_numpy()
    return dataclasses.replace(case, buses=buses, cut_branches=cuts)
