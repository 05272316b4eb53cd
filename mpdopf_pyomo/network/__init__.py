"""OpenDSS circuit -> radial tree in per unit, and the OpenDSS helpers that validation reuses.

OpenDSS itself (through ``opendssdirect``) parses the network model: we never read ``.dss`` text. The
helpers here

* compile a model with an absolute path, exceptions on, and without letting OpenDSS change the working
  directory (:func:`compile_model`);
* read its lines, loads, fixed capacitor injections and buses in physical units (:func:`read_network`);
* orient the lines from the source bus into a breadth-first radial tree, rejecting meshed or disconnected
  networks (:func:`build_tree`);
* split the tree into areas at cut branches (:func:`assign_areas`);
* solve the power flow and return bus voltages (:func:`solve_power_flow`).

What a network model may contain (the optimisation models nothing else, so anything else is an error
rather than a silent mismatch): one ``Vsource`` (the substation), balanced three-phase ``Line`` objects
without shunt capacitance, three-phase constant-power ``Load`` objects (``model=1``), and ``Generator``
objects with ``kW=0`` and ``model=1``, which stand for fixed capacitor injections (an OpenDSS
``Capacitor`` is a constant impedance whose kvar varies with V^2; the optimisation's Q_C is fixed).
Lines with an open terminal are treated as absent (open ties). Meters and monitors are ignored.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from mpdopf_pyomo.errors import CaseError

#: Circuit-element classes that carry no electrical meaning for the optimisation and are skipped.
_IGNORED_CLASSES = {"energymeter", "monitor", "sensor"}
#: Largest total line shunt susceptance (pu) still treated as "no shunt" (OpenDSS switch lines carry a
#: few nF per km; the optimisation has no shunt term).
SHUNT_B_TOL_PU = 1e-6
#: Relative tolerance on bus voltage bases.
_KV_RTOL = 1e-6


def engine():
    """The opendssdirect module, with exceptions on and working-directory changes off."""
    import opendssdirect as dss

    dss.Basic.AllowChangeDir(False)
    return dss


def _bus_name(bus_spec: str) -> str:
    """``'13.1.2.3'`` -> ``'13'`` (OpenDSS bus names carry their node list after dots)."""
    return bus_spec.split(".", 1)[0].lower()


#: Deepest chain of nested ``Redirect``/``Compile`` a model may have. OpenDSS itself recurses without a
#: limit: a model that redirects to itself overflows its stack and kills the process (SIGSEGV).
MAX_REDIRECT_DEPTH = 64
#: Most ``Redirect``/``Compile`` lines followed in one model (bounds a model that includes the same files
#: over and over, which would take exponential time).
MAX_REDIRECTS = 10_000
_QUOTES = {'"': '"', "'": "'", "[": "]", "(": ")", "{": "}"}
_FIRST_TOKEN = re.compile(r"\s*([^\s,=]+)\s*(=?)")


@functools.lru_cache(maxsize=1)
def _include_commands() -> tuple[list[str], set[str]]:
    """OpenDSS's command names in its own order, and those that read another file (Redirect, Compile)."""
    ex = engine().Executive
    names = [ex.Command(i).lower() for i in range(1, ex.NumCommands() + 1)]
    return names, {"redirect", "compile"}


def _included_file(line: str, commands: list[str], include: set[str]) -> str | None:
    """The file a model line redirects to or compiles, or None.

    The command word is matched as OpenDSS matches it: exactly, else the first command in OpenDSS's list
    that starts with it (so ``red`` and ``c`` are Redirect and Compile). The file name is the next token,
    possibly ``file=...`` and quoted with ``" ' [ ( {``.
    """
    m = _FIRST_TOKEN.match(line)
    if not m or m.group(2):  # no word, or ``name=value`` (a property of the active element)
        return None
    word = m.group(1).lower()
    cmd = word if word in commands else next((c for c in commands if c.startswith(word)), None)
    if cmd not in include:
        return None
    rest = line[m.end():].lstrip(" \t,")
    arg = re.match(r"(?:[A-Za-z]+\s*=\s*)?", rest)
    rest = rest[arg.end() if arg else 0:]
    if not rest:
        return None
    close = _QUOTES.get(rest[0])
    if close:
        end = rest.find(close, 1)
        return rest[1:end] if end > 0 else rest[1:]
    return re.split(r"[\s,]", rest, maxsplit=1)[0]


def _model_lines(path: Path) -> list[str]:
    """The command lines of a model file: comments (``!``, ``//``, ``/* ... */`` blocks) removed."""
    text = path.read_bytes().decode("latin-1")  # OpenDSS reads bytes; any encoding scans the same
    out = []
    in_block = False
    for raw in text.splitlines():
        line = raw.strip()
        if in_block:
            if "*/" in line:
                in_block = False
            continue
        if line.startswith("/*"):
            in_block = "*/" not in line[2:]
            continue
        line = re.split(r"!|//", line, maxsplit=1)[0]
        if line.strip():
            out.append(line)
    return out


def check_includes(path: str | Path) -> None:
    """Follow only the ``Redirect``/``Compile`` lines of a model to reject what would crash OpenDSS.

    This is no parser of ``.dss`` (OpenDSS parses the circuit); it resolves each included file as OpenDSS
    does (relative to the including file's folder) and raises :class:`CaseError` for a cycle (a file that
    includes itself, directly or not), nesting deeper than :data:`MAX_REDIRECT_DEPTH` or more than
    :data:`MAX_REDIRECTS` inclusions. Files it cannot find or read are left to OpenDSS to report.
    """
    top = Path(path).resolve()
    commands, include = _include_commands()
    count = 0

    def visit(file: Path, stack: tuple[Path, ...]) -> None:
        nonlocal count
        try:
            lines = _model_lines(file)
        except OSError:
            return
        for line in lines:
            name = _included_file(line, commands, include)
            if not name:
                continue
            candidates = [file.parent / name, file.parent / name.replace("\\", "/")]
            try:
                target = next((c.resolve() for c in candidates if c.exists()), None)
            except (OSError, ValueError):
                continue
            if target is None:
                continue  # OpenDSS reports the missing file
            if not target.is_file():  # a FIFO or device would block or never end
                raise CaseError(f"{top}: {file.name} includes {target}, which is not a regular file")
            count += 1
            chain = " -> ".join(p.name for p in (*stack, target))
            if target in stack:
                raise CaseError(f"{top}: the model includes itself ({chain}); OpenDSS would recurse forever")
            if len(stack) >= MAX_REDIRECT_DEPTH:
                raise CaseError(f"{top}: Redirect/Compile nested deeper than {MAX_REDIRECT_DEPTH} files ({chain})")
            if count > MAX_REDIRECTS:
                raise CaseError(f"{top}: more than {MAX_REDIRECTS} Redirect/Compile inclusions")
            visit(target, (*stack, target))

    visit(top, (top,))


def compile_model(path: str | Path) -> Path:
    """Clear OpenDSS and compile the model at ``path`` (made absolute); return the absolute path.

    OpenDSS resolves the model's ``Redirect`` lines relative to the master file and does not change the
    process working directory. The inclusions are checked first (:func:`check_includes`): a model that
    redirects to itself would crash the process. Any OpenDSS error becomes a :class:`CaseError` naming
    the file.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise CaseError(f"{path}: network model file not found")
    check_includes(path)
    dss = engine()
    cwd = os.getcwd()
    dss.Basic.ClearAll()
    try:
        dss.Text.Command(f"compile [{path}]")
        n_buses = dss.Circuit.NumBuses()
    except Exception as exc:  # DSSException: one line, naming the file
        msg = " ".join(str(exc).split())
        if "no active circuit" in msg.lower():
            raise CaseError(f"{path}: the model defines no circuit (no `New Circuit` line)") from None
        raise CaseError(f"{path}: OpenDSS could not compile the model: {msg}") from None
    finally:
        if os.getcwd() != cwd:  # AllowChangeDir(False) should prevent it; never leave it changed
            os.chdir(cwd)
    if n_buses == 0:
        raise CaseError(f"{path}: the model defines no circuit")
    try:
        # Build the admittance matrix once: OpenDSS recomputes a line's impedance matrices from its
        # sequence data only then, so lines defined or edited after the model's last solve read right.
        dss.Solution.BuildYMatrix(1, 1)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise CaseError(f"{path}: OpenDSS could not build the network admittance matrix: {msg}") from None
    return path


@dataclass
class NetworkTables:
    """A compiled model in physical units, before orientation (what :func:`read_network` returns).

    * ``lines``: index ``name``; ``bus1``, ``bus2``, ``r_ohm``, ``x_ohm`` (positive-sequence series
      impedance of the whole line, per phase, ohm). Lines with shunt capacitance are rejected.
    * ``loads``: index ``name``; ``bus``, ``kw``, ``kvar`` (three-phase totals at nominal voltage).
    * ``capacitors``: index ``name``; ``bus``, ``kvar`` (three-phase fixed injection).
    * ``buses``: index ``bus``; ``kv_base_ln``, ``x``, ``y`` (NaN when the model gives no coordinates).
    """

    path: Path
    root: str
    source_kv_ll: float
    source_pu: float
    buses: pd.DataFrame
    lines: pd.DataFrame
    loads: pd.DataFrame
    capacitors: pd.DataFrame


def read_network(path: str | Path, s_kva_hint: float = 1000.0) -> NetworkTables:
    """Compile the model and read its source, buses, lines, loads and capacitor injections.

    ``s_kva_hint`` (three-phase base, kVA) only scales the shunt-susceptance check.
    """
    path = compile_model(path)
    try:
        return _read_tables(path, s_kva_hint)
    except UnicodeDecodeError as exc:  # OpenDSS keeps bytes; its Python interface decodes names as UTF-8
        raise CaseError(f"{path}: an element or bus name of the model is not UTF-8 text (byte {exc.start} of "
                        f"{exc.object[:40]!r}); write the model in UTF-8") from None


def _read_tables(path: Path, s_kva_hint: float) -> NetworkTables:
    """The body of :func:`read_network` on the compiled circuit."""
    dss = engine()
    where = str(path)

    # --- element classes ---------------------------------------------------------------------------
    vsources: list[str] = []
    for full in dss.Circuit.AllElementNames():
        cls, _, name = full.partition(".")
        cls_l = cls.lower()
        if cls_l == "vsource":
            vsources.append(name)
        elif cls_l in ("line", "load", "generator") or cls_l in _IGNORED_CLASSES:
            continue
        else:
            raise CaseError(
                f"{where}: element {full}: class {cls} is not supported (a network model holds one Vsource, "
                "three-phase Lines, constant-power Loads and kW=0 Generators as fixed capacitor injections)"
            )
    if len(vsources) != 1:
        raise CaseError(f"{where}: the model needs exactly one Vsource (the substation), found {len(vsources)}")

    dss.Vsources.Name(vsources[0])
    source_kv_ll = float(dss.Vsources.BasekV())
    source_pu = float(dss.Vsources.PU())
    dss.Circuit.SetActiveElement(f"Vsource.{vsources[0]}")
    root = _bus_name(dss.CktElement.BusNames()[0])

    # --- buses -------------------------------------------------------------------------------------
    names = [b.lower() for b in dss.Circuit.AllBusNames()]
    kv = np.empty(len(names))
    xs = np.full(len(names), np.nan)
    ys = np.full(len(names), np.nan)
    for i, b in enumerate(names):
        dss.Circuit.SetActiveBus(b)
        kv[i] = dss.Bus.kVBase()
        if dss.Bus.Coorddefined():
            xs[i], ys[i] = dss.Bus.X(), dss.Bus.Y()
    buses = pd.DataFrame({"kv_base_ln": kv, "x": xs, "y": ys}, index=pd.Index(names, name="bus"))
    # The source bus node voltages also include the Vsource's internal bus ("sourcebus"-style names are
    # only created when bus1 is not given); nothing to drop here.

    # --- lines -------------------------------------------------------------------------------------
    z_base = (source_kv_ll**2) * 1000.0 / s_kva_hint
    rows = []
    i = dss.Lines.First()
    while i:
        name = dss.Lines.Name().lower()
        nph = dss.Lines.Phases()
        if nph != 3:
            raise CaseError(f"{where}: line {name}: {nph} phase(s); the model must be balanced three-phase")
        # Open terminal = open tie: treated as absent.
        if any(dss.CktElement.IsOpen(t, 0) for t in (1, 2)):
            i = dss.Lines.Next()
            continue
        length = dss.Lines.Length()
        rmat = np.asarray(dss.Lines.RMatrix()).reshape(3, 3) * length
        xmat = np.asarray(dss.Lines.XMatrix()).reshape(3, 3) * length
        cmat = np.asarray(dss.Lines.CMatrix()).reshape(3, 3) * length  # nF
        # Positive sequence of a (symmetric) 3x3 matrix: mean self minus mean mutual term. Exact for
        # lines given by sequence impedances; the balanced equivalent for transposed lines.
        r1 = rmat.trace() / 3 - (rmat.sum() - rmat.trace()) / 6
        x1 = xmat.trace() / 3 - (xmat.sum() - xmat.trace()) / 6
        c1_nf = cmat.trace() / 3 - (cmat.sum() - cmat.trace()) / 6
        b_pu = 2 * math.pi * dss.Solution.Frequency() * c1_nf * 1e-9 * z_base
        if abs(b_pu) > SHUNT_B_TOL_PU:
            raise CaseError(
                f"{where}: line {name}: shunt capacitance (B = {b_pu:.3g} pu) is not modelled by the "
                "optimisation; give the line c1=0 c0=0"
            )
        if not (r1 >= 0 and x1 >= 0) or (r1 == 0 and x1 == 0):
            raise CaseError(f"{where}: line {name}: series impedance {r1:g} + j{x1:g} ohm must be positive")
        rows.append((name, _bus_name(dss.Lines.Bus1()), _bus_name(dss.Lines.Bus2()), r1, x1))
        i = dss.Lines.Next()
    lines = pd.DataFrame(rows, columns=["name", "bus1", "bus2", "r_ohm", "x_ohm"]).set_index("name")

    # --- loads -------------------------------------------------------------------------------------
    rows = []
    i = dss.Loads.First()
    while i:
        name = dss.Loads.Name().lower()
        nph = dss.Loads.Phases()
        model = dss.Loads.Model()
        if nph != 3:
            raise CaseError(f"{where}: load {name}: {nph} phase(s); the model must be balanced three-phase")
        if model != 1:
            raise CaseError(
                f"{where}: load {name}: model={model}; the optimisation uses constant-power loads (model=1)"
            )
        rows.append((name, _bus_name(dss.CktElement.BusNames()[0]), dss.Loads.kW(), dss.Loads.kvar()))
        i = dss.Loads.Next()
    loads = pd.DataFrame(rows, columns=["name", "bus", "kw", "kvar"]).set_index("name")

    # --- fixed capacitor injections (Generators with kW = 0) ---------------------------------------
    rows = []
    i = dss.Generators.First()
    while i:
        name = dss.Generators.Name().lower()
        if dss.Generators.Phases() != 3:
            raise CaseError(f"{where}: generator {name}: the model must be balanced three-phase")
        if dss.Generators.kW() != 0 or dss.Generators.Model() != 1:
            raise CaseError(
                f"{where}: generator {name}: only kW=0, model=1 generators (fixed capacitor injections) "
                "are supported"
            )
        rows.append((name, _bus_name(dss.CktElement.BusNames()[0]), dss.Generators.kvar()))
        i = dss.Generators.Next()
    capacitors = pd.DataFrame(rows, columns=["name", "bus", "kvar"]).set_index("name")

    return NetworkTables(
        path=path,
        root=root,
        source_kv_ll=source_kv_ll,
        source_pu=source_pu,
        buses=buses,
        lines=lines,
        loads=loads,
        capacitors=capacitors,
    )


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


def solve_power_flow() -> pd.Series:
    """Solve the compiled circuit (snapshot) and return each bus's mean phase voltage, pu.

    Raises :class:`~mpdopf_pyomo.errors.ValidationFailed` when OpenDSS does not converge.
    """
    from mpdopf_pyomo.errors import ValidationFailed

    dss = engine()
    try:
        dss.Solution.Solve()
    except Exception as exc:
        raise ValidationFailed(f"OpenDSS power flow failed: {exc}") from None
    if not dss.Solution.Converged():
        raise ValidationFailed("OpenDSS power flow did not converge")
    return bus_voltages_pu()


def bus_voltages_pu() -> pd.Series:
    """Each bus's mean phase voltage magnitude (pu) of the last solve, indexed by bus name."""
    dss = engine()
    names = [b.lower() for b in dss.Circuit.AllBusNames()]
    pos = {b: i for i, b in enumerate(names)}
    node_bus = np.array([pos[n.split(".", 1)[0].lower()] for n in dss.Circuit.AllNodeNames()])
    mag = np.asarray(dss.Circuit.AllBusMagPu(), dtype=float)
    nodes_per_bus = np.maximum(np.bincount(node_bus, minlength=len(names)), 1)
    mean = np.bincount(node_bus, weights=mag, minlength=len(names)) / nodes_per_bus
    return pd.Series(mean, index=pd.Index(names, name="bus"), name="v_pu")


def substation_power_kw() -> tuple[float, float]:
    """Three-phase P (kW) and Q (kvar) delivered by the source into the network after a solve."""
    p, q = engine().Circuit.TotalPower()
    return -float(p), -float(q)
