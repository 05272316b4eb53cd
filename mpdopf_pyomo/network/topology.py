"""Format-neutral topology of a network: orient its branches into a radial tree from the source bus and
split the tree into areas at cut branches (moved out of the OpenDSS module; the API is unchanged)."""

from __future__ import annotations

from collections import deque
from typing import Iterable, Sequence

import pandas as pd

from mpdopf_pyomo.errors import CaseError


def build_tree(lines: pd.DataFrame, buses: Sequence[str], root: str, where: str = "network") -> pd.DataFrame:
    """Orient ``lines`` (index name; ``bus1``, ``bus2``, ...) from ``root``, breadth-first.

    Returns the lines re-indexed as ``branch`` with ``from_bus`` (parent) and ``to_bus`` (child) in place
    of ``bus1``/``bus2`` and other columns kept, rows in breadth-first order (children of a bus in the
    model's line order). Raises :class:`CaseError` for a meshed network (a line that closes a loop,
    including parallel lines) or a disconnected one (buses the root does not reach).
    """
    bus_set = set(buses)
    if root not in bus_set:
        raise CaseError(f"{where}: source bus {root} is not a bus of the network")
    adj: dict[str, list[tuple[str, str]]] = {b: [] for b in bus_set}
    for name, b1, b2 in zip(lines.index, lines["bus1"], lines["bus2"]):
        if b1 == b2:
            raise CaseError(f"{where}: line {name} connects bus {b1} to itself")
        adj[b1].append((name, b2))
        adj[b2].append((name, b1))

    order: list[tuple[str, str, str]] = []
    seen = {root}
    used: set[str] = set()
    queue = deque([root])
    while queue:
        bus = queue.popleft()
        for name, other in adj[bus]:
            if name in used:
                continue
            used.add(name)
            if other in seen:
                raise CaseError(
                    f"{where}: meshed network: line {name} ({bus}-{other}) closes a loop; a radial feeder "
                    "needs every loop opened (remove the tie or open it)"
                )
            seen.add(other)
            order.append((name, bus, other))
            queue.append(other)
    missing = sorted(bus_set - seen)
    if missing:
        shown = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise CaseError(
            f"{where}: disconnected network: {len(missing)} bus(es) not reached from the source bus {root}: {shown}"
        )
    names = [o[0] for o in order]
    tree = lines.loc[names].drop(columns=["bus1", "bus2"])
    tree.insert(0, "from_bus", [o[1] for o in order])
    tree.insert(1, "to_bus", [o[2] for o in order])
    tree.index.name = "branch"
    return tree


def resolve_branch(branches: pd.DataFrame, spec: str | Sequence[str]) -> str | None:
    """Branch name for ``spec`` = a branch name or a pair of bus names (either order); None if unknown."""
    if isinstance(spec, str):
        name = spec.lower()
        return name if name in branches.index else None
    a, b = (str(s).lower() for s in spec)
    hit = branches.index[
        ((branches["from_bus"] == a) & (branches["to_bus"] == b))
        | ((branches["from_bus"] == b) & (branches["to_bus"] == a))
    ]
    return str(hit[0]) if len(hit) else None


def assign_areas(branches: pd.DataFrame, root: str, cut_branches: Iterable[str]) -> pd.Series:
    """Area of every bus when the oriented tree ``branches`` is cut at ``cut_branches`` (branch names).

    Area 1 holds the root; the part below the k-th cut branch (in the order given) is area k + 1. So a
    cut branch's parent-side bus (``from_bus``) is in the parent's area and its child-side bus
    (``to_bus``) starts the child area. Returns an int Series indexed by bus, in the tree's bus order.
    """
    cut = list(cut_branches)
    unknown = [c for c in cut if c not in branches.index]
    if unknown:
        raise ValueError(f"unknown cut branch(es): {unknown}")
    head_area = {branches.at[c, "to_bus"]: k + 2 for k, c in enumerate(cut)}
    area = {root: 1}
    for frm, to in zip(branches["from_bus"], branches["to_bus"]):  # breadth-first: parent first
        area[to] = head_area.get(to, area[frm])
    s = pd.Series(area, name="area", dtype=int)
    s.index.name = "bus"
    return s
