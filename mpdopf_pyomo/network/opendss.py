"""OpenDSS: the engine helpers (compile a model safely, solve, read voltages and the substation power) and
:func:`read_opendss`, which turns a compiled feeder into the phase-aware :class:`~.model.Network`.

OpenDSS itself (through ``opendssdirect``) parses the model: nothing here reads ``.dss`` text except the
include pre-scan (:func:`check_includes`), which only follows ``Redirect``/``Compile`` lines to reject
what would crash OpenDSS. Every value comes from the compiled circuit in physical units (ohm, siemens,
kW, kvar, kV), so line codes, geometries, unit conversions and ``kVA``/``pf`` load definitions are
OpenDSS's own.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
from collections import defaultdict, deque
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from mpdopf_pyomo.errors import CaseError
from mpdopf_pyomo.network.model import Branch, Bus, Der, Load, Network, Shunt, Source


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


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    """Run the body with ``folder`` as the working directory and always restore the caller's.

    OpenDSS resolves ``Redirect``/``Compile`` relative to the including file even without changing the
    directory, but some commands (the 9500's ``uuids``, ``buscoords`` in older scripts) open their file
    relative to the process working directory. ``AllowChangeDir(False)`` stays on, so OpenDSS itself never
    moves it; this context manager is the only place that does, and it puts it back even on errors.
    """
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def compile_model(path: str | Path) -> Path:
    """Clear OpenDSS and compile the model at ``path`` (made absolute); return the absolute path.

    The model compiles with its own folder as the working directory (:func:`_in_folder`), so relative file
    names in any command read as the author meant, whatever the caller's directory; the caller's directory
    is restored afterwards. The inclusions are checked first (:func:`check_includes`): a model that
    redirects to itself would crash the process. Any OpenDSS error becomes a :class:`CaseError` naming
    the file.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise CaseError(f"{path}: network model file not found")
    check_includes(path)
    dss = engine()
    dss.Basic.ClearAll()
    try:
        with _in_folder(path.parent):
            dss.Text.Command(f"compile [{path}]")
        dss.Circuit.NumBuses()
    except Exception as exc:  # DSSException: one line, naming the file
        msg = " ".join(str(exc).split())
        if "no active circuit" in msg.lower():
            raise CaseError(f"{path}: the model defines no circuit (no `New Circuit` line)") from None
        raise CaseError(f"{path}: OpenDSS could not compile the model: {msg}") from None
    try:
        # Build the admittance matrix once: OpenDSS recomputes a line's impedance matrices from its
        # sequence data only then, so lines defined or edited after the model's last solve read right;
        # it also builds the bus list of a model that never solves nor calls CalcVoltageBases. The WHOLE
        # matrix (option 2): a series-only one (option 1) stays in place for the next solve when nothing
        # changes in between, and that solve converges to a point without loads or shunts (the IEEE 13
        # with controls off: -297 kW at the source while its loads draw 3580 kW).
        dss.Solution.BuildYMatrix(2, 1)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise CaseError(f"{path}: OpenDSS could not build the network admittance matrix: {msg}") from None
    if dss.Circuit.NumBuses() == 0:
        raise CaseError(f"{path}: the model defines no circuit")
    return path


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


# --------------------------------------------------------------------------------------------------------
# read_opendss: compiled circuit -> Network
# --------------------------------------------------------------------------------------------------------

#: Element classes read into the network model.
_READ_CLASSES = {"vsource", "line", "transformer", "reactor", "capacitor", "load", "pvsystem", "storage", "generator"}
#: Measurement elements: no electrical effect, skipped without a word.
_MEASUREMENT_CLASSES = {"energymeter", "monitor", "sensor", "fmonitor"}
#: Control elements: they act on other elements during a solve; the reader takes the controlled elements in
#: their present state and says in the notes what the control would do.
_CONTROL_CLASSES = {"regcontrol", "capcontrol", "swtcontrol", "fuse", "recloser", "relay", "invcontrol",
                    "expcontrol", "storagecontroller", "gencontrol", "upfccontrol", "esp"}
#: How many element names an error or a note shows per kind.
_SHOW = 4
_SQRT3 = math.sqrt(3.0)
#: Load model -> ZIP fractions (P: z, i, p; Q: z, i, p). Model 4 (exponential) and 8 (ZIPV) are per load.
_LOAD_ZIP = {
    1: (0.0, 0.0, 1.0, 0.0, 0.0, 1.0),  # constant P, Q
    2: (1.0, 0.0, 0.0, 1.0, 0.0, 0.0),  # constant Z
    3: (0.0, 0.0, 1.0, 1.0, 0.0, 0.0),  # constant P, quadratic Q
    5: (0.0, 1.0, 0.0, 0.0, 1.0, 0.0),  # constant |I|
    6: (0.0, 0.0, 1.0, 0.0, 0.0, 1.0),  # constant P, fixed Q (= constant Q)
    7: (0.0, 0.0, 1.0, 1.0, 0.0, 0.0),  # constant P, fixed impedance Q
}


def _shown(names: list[str]) -> str:
    return ", ".join(names[:_SHOW]) + (", ..." if len(names) > _SHOW else "")


def _exponent_zip(k: float) -> tuple[float, float, float]:
    """ZIP fractions matching V**k in value and slope at V = 1 (exact for k = 0, 1, 2)."""
    return (k - 1.0, 2.0 - k, 0.0) if k >= 1.0 else (0.0, k, 1.0 - k)


def _terminal_nodes(term: int) -> list[int]:
    """Node numbers of the active element's terminal ``term`` (0-based), one per conductor."""
    import opendssdirect as dss  # engine() was set up by compile_model; no per-call AllowChangeDir

    n = dss.CktElement.NumConductors()
    order = list(dss.CktElement.NodeOrder())
    return [int(v) for v in order[term * n:(term + 1) * n]]


def _phases(nodes: list[int], limit: int | None = None) -> tuple[int, ...]:
    """The phase nodes (1, 2, 3) of a terminal in the order given, without repeats (at most ``limit``);
    ground (0) and neutral nodes (4 and up, e.g. a load's floating star point) are not phases."""
    out: list[int] = []
    for v in nodes:
        if 1 <= v <= 3 and v not in out:
            out.append(v)
    return tuple(out[:limit] if limit else out)


def _yprim() -> np.ndarray:
    """The active element's primitive admittance matrix (complex, siemens)."""
    y = np.asarray(engine().CktElement.YPrim(), dtype=float)
    n = int(round(math.sqrt(y.size // 2)))
    return (y[0::2] + 1j * y[1::2]).reshape(n, n)


def _prop(element: str, name: str) -> str:
    """One property of an element as OpenDSS reports it (for the few values without an API getter)."""
    dss = engine()
    dss.Text.Command(f"? {element}.{name}")
    return dss.Text.Result()


def _float_prop(element: str, name: str, default: float = math.nan) -> float:
    try:
        return float(_prop(element, name))
    except (ValueError, TypeError):
        return default


def _iterate(iface) -> Iterator[str]:
    """Names of the enabled elements of one opendssdirect interface (``dss.Lines`` ...), each made active."""
    i = iface.First()
    while i:
        yield iface.Name().lower()
        i = iface.Next()


def _hourly(mult: np.ndarray, interval_h: float, hours: np.ndarray) -> tuple[np.ndarray, bool]:
    """A load shape's multipliers as hourly values; True when sub-hourly points were averaged."""
    mult = np.asarray(mult, dtype=float)
    if mult.size == 0:
        return mult, False
    if interval_h > 0:
        if abs(interval_h - 1.0) < 1e-9:
            return mult, False
        if interval_h < 1.0:
            hour = np.floor(np.arange(mult.size) * interval_h + 1e-9).astype(int)
        else:  # points longer than an hour: each hour takes the point it falls in
            n_hours = int(math.ceil(mult.size * interval_h - 1e-9))
            return mult[np.minimum((np.arange(n_hours) / interval_h + 1e-9).astype(int), mult.size - 1)], False
    else:  # variable interval: the hour of each point
        hour = np.floor(np.asarray(hours, dtype=float) + 1e-9).astype(int)
        hour -= hour.min()
    counts = np.bincount(hour)
    sums = np.bincount(hour, weights=mult)
    keep = counts > 0
    return sums[keep] / counts[keep], True


def solve_operating_point() -> bool:
    """Solve the compiled circuit once with its controls on, at the model's own load multiplier (at least
    100 power-flow and control iterations); return whether it converged.

    The reader (``read_opendss(..., operating_point=True)``) and validation's check on the original feeder
    both call this right after :func:`compile_model`, so the feeder's regulators and capacitors are at the
    same state in both: the taps and steps the conversion read.
    """
    dss = engine()
    dss.Solution.MaxIterations(max(int(dss.Solution.MaxIterations()), 100))
    dss.Solution.MaxControlIterations(max(int(dss.Solution.MaxControlIterations()), 100))
    try:
        dss.Solution.Solve()
        return bool(dss.Solution.Converged())
    except Exception:  # a DSSException: the solve failed; the model's own taps are kept
        return False


def read_opendss(path: str | Path, operating_point: bool = False) -> Network:
    """Compile the OpenDSS model at ``path`` and read it into a phase-aware :class:`Network`.

    Physical units throughout; each bus keeps the base OpenDSS gives it (``Set VoltageBases`` /
    ``CalcVoltageBases``), derived from the source and transformer ratios where the model has none.
    Every element kind of the public IEEE feeders is read; measurement and control elements are skipped
    (the controls' effect is described in ``notes``). Elements that cannot be represented are ALL
    reported in one :class:`CaseError` (kind, count and the first names).

    Regulator taps and capacitor steps are those of the compiled model (after its own ``Solve``, if it
    has one). ``operating_point=True`` first runs OpenDSS's snapshot solve with its controls on, at the
    model's load multiplier, so that they are at that operating point (noted; if the solve does not
    converge, the notes say so and the values are whatever OpenDSS holds after it).
    """
    path = compile_model(path)
    try:
        reader = _Reader(path)
        if operating_point:
            reader.solve_operating_point()
        return reader.read()
    except UnicodeDecodeError as exc:  # OpenDSS keeps bytes; its Python interface decodes names as UTF-8
        raise CaseError(f"{path}: an element or bus name of the model is not UTF-8 text (byte {exc.start} of "
                        f"{exc.object[:40]!r}); write the model in UTF-8") from None


class _Reader:
    """One pass over a compiled circuit (the state of :func:`read_opendss`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dss = engine()
        self.notes: list[str] = []
        self.unsupported: dict[str, list[str]] = defaultdict(list)
        self.branches: list[Branch] = []
        self.shunts: list[Shunt] = []
        self.magnetising: list[str] = []
        self.frequency = float(self.dss.Solution.Frequency())
        self.solved = False

    def solve_operating_point(self) -> None:
        """Snapshot solve with controls on, so regulator taps and capacitor steps reach their set points."""
        dss = self.dss
        converged = solve_operating_point()
        if converged:
            self.notes.append(
                f"regulator taps and capacitor steps at OpenDSS's snapshot operating point (controls on, load "
                f"multiplier {float(dss.Solution.LoadMult()):g}, {dss.Solution.ControlIterations()} control "
                "iteration(s))")
        else:
            self.notes.append("the operating-point solve did not converge: regulator taps and capacitor steps "
                              "are read as OpenDSS holds them after it (no converged control solution)")
        self.solved = True

    def bad(self, kind: str, name: str) -> None:
        """Record an element that cannot be represented (raised together at the end)."""
        self.unsupported[kind].append(name)

    # ---- the whole read -------------------------------------------------------------------------------
    def read(self) -> Network:
        dss = self.dss
        self.scan_classes()
        source = self.read_source()
        bus_names = [b.lower() for b in dss.Circuit.AllBusNames()]
        self.read_lines()
        xfmrs = self.read_transformers()
        self.read_reactors()
        self.read_capacitors()
        loads = self.read_loads()
        ders = self.read_ders()
        if self.unsupported:
            parts = [f"{kind} ({len(names)}: {_shown(names)})" for kind, names in self.unsupported.items()]
            total = sum(len(v) for v in self.unsupported.values())
            raise CaseError(f"{self.path}: {total} element(s) cannot be represented: " + "; ".join(parts))
        buses = self.read_buses(bus_names, source, xfmrs)
        self.branches.extend(self.transformer_branches(xfmrs, buses))
        self.branches = self.merge_banks(self.branches)
        self.describe_controls()
        profiles = self.read_profiles(loads, ders)
        if not self.solved and dss.Solution.TotalIterations() > 0 and not dss.Solution.Converged():
            self.notes.append("the model's own Solve did not converge: regulator taps and capacitor steps "
                              "are read as OpenDSS holds them after it (no converged control solution)")
        return Network(name=dss.Circuit.Name().lower(), path=self.path, fmt="opendss", source=source,
                       frequency_hz=self.frequency, buses=buses, branches=self.branches, loads=loads,
                       shunts=self.shunts, ders=ders, profiles=profiles, notes=self.notes)

    def scan_classes(self) -> None:
        """Classify every circuit element; unknown kinds go to the error list, disabled ones to the notes."""
        by_class: dict[str, list[str]] = defaultdict(list)
        display: dict[str, str] = {}
        for full in self.dss.Circuit.AllElementNames():
            cls, _, name = full.partition(".")
            by_class[cls.lower()].append(name.lower())
            display.setdefault(cls.lower(), cls)
        self.class_names = by_class
        skipped = []
        for cls, names in by_class.items():
            if cls in _READ_CLASSES or cls in _CONTROL_CLASSES:
                continue
            if cls in _MEASUREMENT_CLASSES:
                skipped.append(f"{len(names)} {display[cls]}")
                continue
            for n in names:
                self.bad(display[cls], n)
        if skipped:
            self.notes.append("measurement elements skipped (no electrical effect): " + ", ".join(skipped))
        protection = [f"{len(by_class[c])} {c}" for c in ("fuse", "recloser", "relay", "swtcontrol") if by_class.get(c)]
        if protection:
            self.notes.append("protection/switch controls ignored (switches read in their present state): "
                              + ", ".join(protection))
        der_ctrl = [f"{len(by_class[c])} {c}" for c in ("invcontrol", "expcontrol", "storagecontroller",
                                                          "gencontrol", "upfccontrol", "esp") if by_class.get(c)]
        if der_ctrl:
            self.notes.append("DER controls ignored (the DERs are read at their ratings; the optimisation "
                              "dispatches them): " + ", ".join(der_ctrl))

    def note_disabled(self, cls: str, enabled: list[str]) -> None:
        disabled = sorted(set(self.class_names.get(cls, [])) - set(enabled))
        if disabled:
            self.notes.append(f"{len(disabled)} disabled {cls} element(s) left out: {_shown(disabled)}")

    # ---- source -----------------------------------------------------------------------------------------
    def read_source(self) -> Source:
        dss = self.dss
        sources = []
        for name in _iterate(dss.Vsources):
            y = _yprim()
            n = int(dss.CktElement.NumPhases())
            try:  # the short-circuit impedance: the series block of the Vsource's primitive admittance
                z = np.linalg.inv(y[:n, :n]) if n == 3 else None
            except np.linalg.LinAlgError:
                z = None
            sources.append((name, Source(bus=_bus_name(dss.CktElement.BusNames()[0]),
                                         kv_ll=float(dss.Vsources.BasekV()), pu=float(dss.Vsources.PU()),
                                         angle_deg=float(dss.Vsources.AngleDeg()), z_ohm=z)))
        if not sources:
            raise CaseError(f"{self.path}: the model has no Vsource (the substation)")
        for name, _ in sources[1:]:
            self.bad("Vsource (a second source; a radial feeder has one)", name)
        return sources[0][1]

    # ---- lines ------------------------------------------------------------------------------------------
    def read_lines(self) -> None:
        dss = self.dss
        w = 2 * math.pi * self.frequency * 1e-9  # nF -> S
        enabled = []
        reordered = []
        for name in _iterate(dss.Lines):
            enabled.append(name)
            n = int(dss.Lines.Phases())
            length = float(dss.Lines.Length())
            r = np.asarray(dss.Lines.RMatrix(), dtype=float).reshape(n, n) * length
            x = np.asarray(dss.Lines.XMatrix(), dtype=float).reshape(n, n) * length
            c = np.asarray(dss.Lines.CMatrix(), dtype=float).reshape(n, n) * length
            buses = dss.CktElement.BusNames()
            nodes1, nodes2 = _terminal_nodes(0), _terminal_nodes(1)
            if any(v > 3 or v == 0 for v in nodes1[:n] + nodes2[:n]):
                self.bad("Line with a neutral or grounded conductor (node 0 or 4+; the model holds phase "
                         "conductors only, Kron-reduce the neutral)", name)
                continue
            ph1 = _phases(nodes1, n)
            ph2 = _phases(nodes2, n)
            if ph2 != ph1:
                reordered.append(name)
            is_open = any(dss.CktElement.IsOpen(t, 0) for t in (1, 2))
            self.branches.append(Branch(
                name=name, kind="switch" if dss.Lines.IsSwitch() else "line",
                bus1=_bus_name(buses[0]), bus2=_bus_name(buses[1]), phases=ph1,
                z_ohm=r + 1j * x, y_shunt_s=1j * w * c, tap=np.ones(len(ph1)), normally_open=is_open,
                phases2=ph2 if ph2 != ph1 else None))
        self.note_disabled("line", enabled)
        if reordered:
            self.notes.append(f"{len(reordered)} line(s) connect different nodes at their two ends (phases2 "
                              f"holds bus2's): {_shown(reordered)}")
        n_open = sum(b.normally_open for b in self.branches)
        if n_open:
            self.notes.append(f"{n_open} line(s)/switch(es) with an open terminal read as normally open: "
                              + _shown([b.name for b in self.branches if b.normally_open]))

    # ---- transformers (raw; branches once the bus bases are known) ---------------------------------------
    def read_transformers(self) -> list[dict]:
        dss = self.dss
        controlled = {dss.RegControls.Transformer().lower() for _ in _iterate(dss.RegControls)}
        out = []
        enabled = []
        for name in _iterate(dss.Transformers):
            enabled.append(name)
            nw = int(dss.Transformers.NumWindings())
            nph = int(dss.CktElement.NumPhases())
            buses = [_bus_name(b) for b in dss.CktElement.BusNames()]
            nodes = [_terminal_nodes(t) for t in range(nw)]
            wdg = []
            for k in range(1, nw + 1):
                dss.Transformers.Wdg(k)
                wdg.append(dict(kv=float(dss.Transformers.kV()), kva=float(dss.Transformers.kVA()),
                                r_pct=float(dss.Transformers.R()), tap=float(dss.Transformers.Tap()),
                                delta=bool(dss.Transformers.IsDelta())))
            xhl, xht, xlt = (float(dss.Transformers.Xhl()), float(dss.Transformers.Xht()), float(dss.Transformers.Xlt()))
            center_tap = (nw == 3 and nph == 1 and buses[1] == buses[2] and abs(wdg[1]["kv"] - wdg[2]["kv"]) < 1e-9
                          and not any(w["delta"] for w in wdg))
            if nw == 3 and not center_tap or nw > 3:
                self.bad(f"Transformer with {nw} windings (only 2-winding and centre-tap 3-winding are read)", name)
                continue
            if nph == 1 and len(_phases(nodes[0])) != 1:
                self.bad("single-phase Transformer connected phase to phase", name)
                continue
            if buses[0] == buses[1]:
                self.bad("Transformer with both windings on one bus", name)
                continue
            imag = _float_prop(f"transformer.{name}", "%imag", 0.0)
            noload = _float_prop(f"transformer.{name}", "%noloadloss", 0.0)
            if imag or noload:
                self.magnetising.append(name)
            out.append(dict(name=name, nph=nph, buses=buses, nodes=nodes, wdg=wdg, xhl=xhl, xht=xht, xlt=xlt,
                            imag=imag, noload=noload,
                            ppm=_float_prop(f"transformer.{name}", "ppm_antifloat", 0.0),
                            center_tap=center_tap, regulator=name in controlled,
                            is_open=any(dss.CktElement.IsOpen(t, 0) for t in (1, 2))))
        self.note_disabled("transformer", enabled)
        if self.magnetising:
            self.notes.append(f"{len(self.magnetising)} transformer(s) with magnetising current or no-load loss "
                              f"(%imag, %noloadloss), read as a constant-impedance shunt: "
                              f"{_shown(self.magnetising)}")
        return out

    @staticmethod
    def _winding_ln_kv(w: dict, nph: int) -> float:
        """A winding's rated voltage as a line-to-neutral equivalent (OpenDSS gives L-L for 2/3 phases)."""
        return w["kv"] / _SQRT3 if (nph > 1 or w["delta"]) else w["kv"]

    def transformer_branches(self, xfmrs: list[dict], buses: dict[str, Bus]) -> list[Branch]:
        """Each transformer as a branch: z referred to bus2, tap relative to the two buses' bases."""
        singles: list[Branch] = []
        for t in xfmrs:
            w1, w2 = t["wdg"][0], t["wdg"][1]
            nph = t["nph"]
            if t["center_tap"]:
                # Star equivalent of the three windings; a load across the whole secondary draws the same
                # current through both halves: Z = Zh + (Zl + Zt)/4 on the half-winding base.
                w3 = t["wdg"][2]
                zh = (complex(w1["r_pct"], (t["xhl"] + t["xht"] - t["xlt"]) / 2))
                zl = complex(w2["r_pct"], (t["xhl"] + t["xlt"] - t["xht"]) / 2)
                zt = complex(w3["r_pct"], (t["xht"] + t["xlt"] - t["xhl"]) / 2)
                z_pct = zh + (zl + zt) / 4
            else:
                z_pct = complex(w1["r_pct"] + w2["r_pct"], t["xhl"])
            # OpenDSS scales a winding's impedance base with its tap: referred to bus2, the series impedance
            # is at winding 2's tapped voltage (a regulator's tap is usually on winding 2).
            z = z_pct / 100 * (w2["kv"] * w2["tap"]) ** 2 * 1000.0 / w1["kva"]
            ph = _phases(t["nodes"][0], nph)
            ph2 = _phases(t["nodes"][1] + (t["nodes"][2] if t["center_tap"] else []))
            b1, b2 = t["buses"][0], t["buses"][1]
            v1 = self._winding_ln_kv(w1, nph) * w1["tap"] / buses[b1].kv_ln
            v2 = self._winding_ln_kv(w2, nph) * w2["tap"] / buses[b2].kv_ln
            n = len(ph)
            ct_z, ct_kv = self._center_tap_windings(t) if t["center_tap"] else (None, math.nan)
            singles.append(Branch(
                name=t["name"], kind="regulator" if t["regulator"] else "transformer", bus1=b1, bus2=b2,
                phases=ph, z_ohm=np.eye(n) * z, y_shunt_s=np.zeros((n, n), complex), tap=np.full(n, v1 / v2),
                conn=("delta" if w1["delta"] else "wye", "delta" if w2["delta"] else "wye"), kva=w1["kva"],
                normally_open=t["is_open"], phases2=ph2 if (t["center_tap"] or ph2 != ph) else None,
                center_tap=t["center_tap"], ppm_antifloat=t["ppm"], imag_pct=t["imag"], noload_pct=t["noload"],
                ct_zsc_ohm=ct_z, ct_kv=ct_kv))
        n_ct = sum(b.center_tap for b in singles)
        if n_ct:
            self.notes.append(
                f"{n_ct} centre-tap service transformer(s) read as one branch primary -> split-phase secondary "
                "(phases2 = (1, 2)), z_ohm = Zh + (Zl + Zt)/4 of the 3-winding star equivalent (a load across "
                "the whole 240 V secondary), referred to the 120 V half-winding")
        return singles

    @staticmethod
    def _center_tap_windings(t: dict) -> tuple[tuple[complex, complex, complex] | None, float]:
        """A centre-tap unit's short-circuit impedances (Z_HL, Z_HT, Z_LT, ohm, referred to the half winding
        at its tapped voltage, on winding 1's kVA as OpenDSS takes them) and that voltage (kV), when it is
        wired as the 8500's services are (winding 2 from X1 to ground, winding 3 from ground to X2, equal
        kVAs and secondary taps); (None, nan) otherwise (the three-phase model then refuses it)."""
        w1, w2, w3 = t["wdg"]
        n2, n3 = t["nodes"][1], t["nodes"][2]
        if not (len(n2) == 2 and len(n3) == 2 and n2[1] == 0 and n3[0] == 0 and n2[0] != n3[1]
                and 1 <= n2[0] <= 3 and 1 <= n3[1] <= 3 and w2["tap"] == w3["tap"]
                and w1["kva"] == w2["kva"] == w3["kva"]):
            return None, math.nan
        kv = w2["kv"] * w2["tap"]
        zb = kv**2 * 1000.0 / w1["kva"]
        r1, r2, r3 = w1["r_pct"], w2["r_pct"], w3["r_pct"]
        z = (complex(r1 + r2, t["xhl"]), complex(r1 + r3, t["xht"]), complex(r2 + r3, t["xlt"]))
        return tuple(x / 100.0 * zb for x in z), kv

    def merge_banks(self, branches: list[Branch]) -> list[Branch]:
        """Merge elements of one kind between the same two buses on disjoint phases (a bank of single-phase
        regulators, the 8500's per-phase capacitor leads) into one branch with block-diagonal matrices and
        per-phase taps, at the first unit's place. Units on overlapping phases stay apart (a real loop)."""
        groups: dict[tuple, list[Branch]] = defaultdict(list)
        for b in branches:
            groups[(b.bus1, b.bus2, b.kind, b.normally_open)].append(b)
        out = []
        merged = []
        for b in branches:
            key = (b.bus1, b.bus2, b.kind, b.normally_open)
            group = groups.get(key)
            if group is None:
                continue  # emitted with its bank
            all_ph = [p for g in group for p in g.phases]
            if (len(group) == 1 or len(set(all_ph)) != len(all_ph)
                    or any(g.center_tap or g.phases2 is not None for g in group)):
                out.append(b)
                continue
            del groups[key]
            group = sorted(group, key=lambda g: g.phases)
            n = len(all_ph)
            z = np.zeros((n, n), complex)
            y = np.zeros((n, n), complex)
            k = 0
            for g in group:
                m = len(g.phases)
                z[k:k + m, k:k + m] = g.z_ohm
                y[k:k + m, k:k + m] = g.y_shunt_s
                k += m
            out.append(Branch(
                name=group[0].name, kind=b.kind, bus1=b.bus1, bus2=b.bus2,
                phases=tuple(p for g in group for p in g.phases), z_ohm=z, y_shunt_s=y,
                tap=np.concatenate([g.tap for g in group]), conn=group[0].conn, kva=sum(g.kva for g in group),
                normally_open=b.normally_open, elements=tuple(g.name for g in group),
                ppm_antifloat=b.ppm_antifloat, imag_pct=b.imag_pct, noload_pct=b.noload_pct))
            merged.append(f"{'+'.join(g.name for g in group)} ({b.kind} {b.bus1}-{b.bus2})")
        if merged:
            self.notes.append(f"{len(merged)} bank(s) of single-phase elements between the same two buses merged "
                              f"into one branch each (block-diagonal z, per-phase tap): {_shown(merged)}")
        return out

    # ---- reactors ---------------------------------------------------------------------------------------
    def read_reactors(self) -> None:
        dss = self.dss
        enabled = []
        for name in _iterate(dss.Reactors):
            enabled.append(name)
            buses = dss.CktElement.BusNames()
            ph1 = _phases(_terminal_nodes(0))
            ph2 = _phases(_terminal_nodes(1)) if dss.CktElement.NumTerminals() > 1 else ()
            nph = int(dss.CktElement.NumPhases())
            if not ph2:  # all of terminal 2 grounded: a shunt reactor
                kv = float(dss.Reactors.kV())
                kv_ln = kv / _SQRT3 if (nph > 1 or dss.Reactors.IsDelta()) else kv
                self.shunts.append(Shunt(name=name, bus=_bus_name(buses[0]), phases=ph1,
                                         conn="delta" if dss.Reactors.IsDelta() else "wye",
                                         kvar=-float(dss.Reactors.kvar()), kv_ln_rated=kv_ln))
                continue
            n = len(ph1)
            y = _yprim()
            z = np.linalg.inv(-y[:n, n:2 * n])
            self.branches.append(Branch(
                name=name, kind="reactor", bus1=_bus_name(buses[0]), bus2=_bus_name(buses[1]), phases=ph1,
                z_ohm=z, y_shunt_s=np.zeros((n, n), complex), tap=np.ones(n),
                normally_open=any(dss.CktElement.IsOpen(t, 0) for t in (1, 2)),
                phases2=ph2 if ph2 != ph1 else None))
        self.note_disabled("reactor", enabled)

    # ---- capacitors -------------------------------------------------------------------------------------
    def read_capacitors(self) -> None:
        dss = self.dss
        enabled = []
        partial = []
        for name in _iterate(dss.Capacitors):
            enabled.append(name)
            if _phases(_terminal_nodes(1)):
                self.bad("Capacitor in series (terminal 2 not grounded)", name)
                continue
            nph = int(dss.CktElement.NumPhases())
            delta = bool(dss.Capacitors.IsDelta())
            kv = float(dss.Capacitors.kV())
            steps = list(dss.Capacitors.States())
            kvar = float(dss.Capacitors.kvar())  # all steps
            if not all(steps):
                partial.append(f"{name} ({sum(1 for s in steps if s)}/{len(steps)})")
                try:  # the steps may differ in size: their kvar list
                    per_step = [float(v) for v in re.split(r"[\s,]+", _prop(f"capacitor.{name}", "kvar").strip(" []"))]
                except ValueError:
                    per_step = []
                if len(per_step) != len(steps):
                    per_step = [kvar / len(steps)] * len(steps)
                kvar = sum(k for k, on in zip(per_step, steps) if on)
            self.shunts.append(Shunt(name=name, bus=_bus_name(dss.CktElement.BusNames()[0]),
                                     phases=_phases(_terminal_nodes(0)), conn="delta" if delta else "wye",
                                     kvar=kvar,
                                     kv_ln_rated=kv / _SQRT3 if (nph > 1 or delta) else kv))
        self.note_disabled("capacitor", enabled)
        if partial:
            self.notes.append(f"capacitor(s) with steps open, read at their closed steps' kvar: {_shown(partial)}")

    # ---- loads ------------------------------------------------------------------------------------------
    def read_loads(self) -> list[Load]:
        dss = self.dss
        loads = []
        enabled = []
        models: dict[int, int] = defaultdict(int)
        across: list[str] = []
        for name in _iterate(dss.Loads):
            enabled.append(name)
            model = int(dss.Loads.Model())
            models[model] += 1
            if model in _LOAD_ZIP:
                zip6 = _LOAD_ZIP[model]
            elif model == 4:
                zip6 = _exponent_zip(float(dss.Loads.CVRwatts())) + _exponent_zip(float(dss.Loads.CVRvars()))
            elif model == 8:
                zipv = [float(v) for v in dss.Loads.ZipV()]
                zip6 = tuple(zipv[:6]) if len(zipv) >= 6 else _LOAD_ZIP[1]
            else:
                self.bad(f"Load with model={model}", name)
                continue
            shape = dss.Loads.Daily() or dss.Loads.Yearly() or None
            phases = _phases(_terminal_nodes(0))
            conn = "delta" if dss.Loads.IsDelta() else "wye"
            if conn == "wye" and int(dss.CktElement.NumPhases()) == 1 and len(phases) == 2:
                conn = "delta"  # a one-phase wye load on bus.1.2: its "neutral" is node 2, phase to phase
                across.append(name)
            loads.append(Load(
                name=name, bus=_bus_name(dss.CktElement.BusNames()[0]), phases=phases,
                conn=conn, kw=float(dss.Loads.kW()),
                kvar=float(dss.Loads.kvar()), zip=zip6, vminpu=float(dss.Loads.Vminpu()),
                vmaxpu=float(dss.Loads.Vmaxpu()), shape=shape.lower() if shape else None,
                kv_rated=float(dss.Loads.kV()), fixed=int(dss.Loads.Status()) in (1, 2)))
        self.note_disabled("load", enabled)
        if across:
            self.notes.append(f"{len(across)} one-phase wye load(s) between two phases (bus.a.b: the second node is "
                              f"its neutral) read as a delta element from a to b at its kV: {_shown(across)}")
        if models.get(4):
            self.notes.append(f"{models[4]} load(s) of model 4 (P ~ V^CVRwatts, Q ~ V^CVRvars) read as the ZIP "
                              "mix with the same value and slope at 1 pu")
        return loads

    # ---- DERs -------------------------------------------------------------------------------------------
    def read_ders(self) -> list[Der]:
        dss = self.dss
        ders = []
        for name in _iterate(dss.PVsystems):
            shape = dss.PVsystems.daily() or dss.PVsystems.yearly() or None
            ders.append(Der(name=name, kind="pv", bus=_bus_name(dss.CktElement.BusNames()[0]),
                            phases=_phases(_terminal_nodes(0)), kw=float(dss.PVsystems.Pmpp()),
                            kva=float(dss.PVsystems.kVARated()), shape=shape.lower() if shape else None))
        for name in _iterate(dss.Storages):
            el = f"storage.{name}"
            shape = _prop(el, "daily") or _prop(el, "yearly") or None
            kwh = _float_prop(el, "kWhrated")
            ders.append(Der(name=name, kind="battery", bus=_bus_name(dss.CktElement.BusNames()[0]),
                            phases=_phases(_terminal_nodes(0)), kw=_float_prop(el, "kWrated"),
                            kva=_float_prop(el, "kVA"), kwh=kwh,
                            kwh_stored=_float_prop(el, "kWhstored", kwh * _float_prop(el, "%stored") / 100),
                            shape=shape.lower() if shape else None))
        for name in _iterate(dss.Generators):
            shape = dss.Generators.daily() or dss.Generators.Yearly() or None
            ders.append(Der(name=name, kind="generator", bus=_bus_name(dss.CktElement.BusNames()[0]),
                            phases=_phases(_terminal_nodes(0)), kw=float(dss.Generators.kW()),
                            kva=float(dss.Generators.kva()), kvar=float(dss.Generators.kvar()),
                            shape=shape.lower() if shape else None))
        for cls in ("pvsystem", "storage", "generator"):
            self.note_disabled(cls, [d.name for d in ders if d.kind == {"pvsystem": "pv", "storage": "battery",
                                                                         "generator": "generator"}[cls]])
        return ders

    # ---- buses ------------------------------------------------------------------------------------------
    def read_buses(self, names: list[str], source: Source, xfmrs: list[dict]) -> dict[str, Bus]:
        dss = self.dss
        pos = {b: i for i, b in enumerate(names)}
        nodes: list[set[int]] = [set() for _ in names]
        for node in dss.Circuit.AllNodeNames():
            bus, _, k = node.rpartition(".")
            if k.isdigit() and 1 <= int(k) <= 3:
                nodes[pos[bus.lower()]].add(int(k))
        kv = np.zeros(len(names))
        xs = np.full(len(names), np.nan)
        ys = np.full(len(names), np.nan)
        for i, b in enumerate(names):
            dss.Circuit.SetActiveBus(b)
            kv[i] = dss.Bus.kVBase()
            if dss.Bus.Coorddefined():
                xs[i], ys[i] = dss.Bus.X(), dss.Bus.Y()
        missing = [names[i] for i in np.flatnonzero(~(kv > 0))]
        if missing:
            derived = self.derive_bases(names, kv, source, xfmrs)
            for b in missing:
                kv[pos[b]] = derived.get(b, math.nan)
            unreached = [b for b in missing if not kv[pos[b]] > 0]
            if unreached:  # an island: the topology check (build_tree) reports it as disconnected
                self.notes.append(f"{len(unreached)} bus(es) without a voltage base are not reached from the "
                                  f"source (kv_ln = NaN): {_shown(unreached)}")
                missing = [b for b in missing if b not in set(unreached)]
        if missing:
            self.notes.append(f"{len(missing)} bus(es) had no voltage base in the model (no Set VoltageBases / "
                              f"CalcVoltageBases covers them); derived from the source and transformer ratios: "
                              f"{_shown(missing)}")
        return {b: Bus(name=b, kv_ln=float(kv[i]), phases=tuple(sorted(nodes[i])), x=float(xs[i]), y=float(ys[i]))
                for i, b in enumerate(names)}

    def derive_bases(self, names: list[str], kv: np.ndarray, source: Source, xfmrs: list[dict]) -> dict[str, float]:
        """Line-to-neutral bases by a walk from the source: lines keep the base, transformers scale it."""
        adj: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for b in self.branches:
            adj[b.bus1].append((b.bus2, 1.0))
            adj[b.bus2].append((b.bus1, 1.0))
        for t in xfmrs:
            r = self._winding_ln_kv(t["wdg"][1], t["nph"]) / self._winding_ln_kv(t["wdg"][0], t["nph"])
            adj[t["buses"][0]].append((t["buses"][1], r))
            adj[t["buses"][1]].append((t["buses"][0], 1.0 / r))
        known = {b: float(kv[i]) for i, b in enumerate(names) if kv[i] > 0}
        base = dict(known)
        base.setdefault(source.bus, source.kv_ll / _SQRT3)
        queue = deque(base)
        while queue:
            b = queue.popleft()
            for other, ratio in adj[b]:
                if other not in base:
                    base[other] = base[b] * ratio
                    queue.append(other)
        return base

    # ---- controls and profiles ---------------------------------------------------------------------------
    def describe_controls(self) -> None:
        """One note per regulator branch (its RegControls, set points and present taps) and per CapControl."""
        dss = self.dss
        branch_of = {}
        for b in self.branches:
            if b.kind == "regulator":
                for k, name in enumerate(b.elements or (b.name,)):
                    branch_of[name] = (b, k)
        by_branch: dict[str, list[tuple]] = defaultdict(list)
        for name in _iterate(dss.RegControls):
            xf = dss.RegControls.Transformer().lower()
            vreg, pt = float(dss.RegControls.ForwardVreg()), float(dss.RegControls.PTRatio())
            setting = (f"winding {dss.RegControls.Winding()} held at {vreg:g} V x PT {pt:g} = "
                       f"{vreg * pt / 1000:.4g} kV, band {float(dss.RegControls.ForwardBand()):g} V")
            b, k = branch_of.get(xf, (None, 0))
            by_branch[b.name if b else xf].append((name, setting, dss.RegControls.TapNumber(),
                                                  b.tap[k] if b else math.nan, b))
        for key, ctrls in by_branch.items():
            b = ctrls[0][4]
            where = f"regulator {key} ({b.bus1}-{b.bus2}, phases {','.join(map(str, b.phases))})" if b else key
            settings = sorted({c[1] for c in ctrls})
            self.notes.append(
                f"RegControl {', '.join(c[0] for c in ctrls)} on {where}: {'; '.join(settings)}; read at the "
                f"present tap(s) {', '.join(str(c[2]) for c in ctrls)} (tap ratio |V1|/|V2| "
                f"{', '.join(f'{c[3]:.5f}' for c in ctrls)}); "
                + ("the operating point's taps" if self.solved else "a solve with controls on would move them"))
        for name in _iterate(dss.CapControls):
            mode = dss.CapControls.Mode()
            self.notes.append(
                f"CapControl {name}: switches capacitor {dss.CapControls.Capacitor().lower()} "
                f"({getattr(mode, 'name', mode)} mode, ON {float(dss.CapControls.ONSetting()):g}, OFF "
                f"{float(dss.CapControls.OFFSetting()):g}); read in its present state")

    def read_profiles(self, loads: list[Load], ders: list[Der]) -> dict[str, np.ndarray]:
        dss = self.dss
        used = {x.shape for x in (*loads, *ders) if x.shape}
        profiles = {}
        averaged = []
        actual = []
        for name in _iterate(dss.LoadShape):
            if name == "default" and name not in used:
                continue
            interval = float(dss.LoadShape.HrInterval())
            times = np.asarray(dss.LoadShape.TimeArray(), dtype=float) if interval <= 0 else np.zeros(0)
            values, avg = _hourly(np.asarray(dss.LoadShape.PMult(), dtype=float), interval, times)
            profiles[name] = values
            if dss.LoadShape.UseActual():
                actual.append(name)
            if avg:
                averaged.append(f"{name} ({int(dss.LoadShape.Npts())} points -> {values.size} h)")
        if averaged:
            self.notes.append("load shape(s) with sub-hourly points averaged to hourly multipliers: "
                              + _shown(averaged))
        if actual:
            self.notes.append(f"load shape(s) holding actual kW (useactual=yes), kept as given, not "
                              f"multipliers: {_shown(actual)}")
        missing = sorted(used - set(profiles))
        if missing:
            self.notes.append(f"load shape(s) named by loads/DERs but not defined: {_shown(missing)}")
        return profiles
