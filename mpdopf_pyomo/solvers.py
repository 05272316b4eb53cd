"""NLP solver registry: find solvers, say how they are installed, run them, reject non-optimal runs.

IPOPT can be present in two ways ("routes"):

* ``executable``: an ``ipopt`` AMPL executable, driven through NL files by Pyomo's newer ``ipopt`` interface
  (``pyomo.contrib.solver``; other AMPL solvers keep the legacy plugin). The one
  :mod:`mpdopf_pyomo.solver_build` builds (libipopt 3.14.19 on MUMPS 5.8.2) comes first, then one on PATH or
  in IDAES' binary folder (``idaes get-extensions``);
* ``library``: the ``cyipopt`` Python module driven by Pyomo's PyNumero ``cyipopt`` interface, which needs
  the PyNumero ASL library. Pyomo ships that library as C++ source; :func:`build_pynumero` compiles it
  against Debian's ``libamplsolver-dev``. The cyipopt that :mod:`mpdopf_pyomo.solver_build` compiles
  against casadi's libipopt (MUMPS 5.8.2) comes first; the PyPI wheel ``cyipopt-wheels`` (libipopt 3.14.11,
  MUMPS 5.5.1, about twice as slow in the linear algebra) is the fallback.

``--solver ipopt`` takes the executable when present (every callback stays in compiled code) and the library
otherwise; ``--solver cyipopt`` forces the library route. Any other name is passed to Pyomo's SolverFactory
(``ripopt`` from the ``pyomo-ripopt`` wheel is installed as a second NLP solver).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from mpdopf_pyomo import solver_build
from mpdopf_pyomo.errors import MpdopfError, SolveFailed, SolverUnavailable

#: Where :func:`build_pynumero` puts the PyNumero ASL library: inside the active environment.
PYNUMERO_DIR = Path(sys.prefix) / "lib" / "mpdopf-pynumero"
PYNUMERO_LIB = PYNUMERO_DIR / "libpynumero_ASL.so"
#: Debian's ASL headers and library (package libamplsolver-dev).
DEBIAN_ASL_INCLUDE = Path("/usr/include/ampl-netlib-solvers")
DEBIAN_ASL_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/libamplsolver.so")

#: Solvers that ``doctor`` always reports on.
KNOWN_NLP_SOLVERS = ("ipopt", "cyipopt", "ripopt")

#: Options passed to IPOPT unless the user sets them: keep final values inside the original bounds, so
#: loading a solution does not print one warning per variable that sits on a bound; no forced iterative
#: refinement step and a 5 % (not 1000 %) MUMPS workspace margin, which cut MUMPS' CPU time by 2-20 % on
#: ieee123 at 5 and 24 h on every route with the same iterations and objective (to 1e-12 relative);
#: if the workspace runs short, IPOPT enlarges it and factorizes again (a one-off cost).
#: Measured and left at IPOPT's defaults (AMPL executable, MUMPS 5.8.2, CPU s on a shared 2-core machine; the
#: iteration counts below are with the monotone barrier):
#: ``mumps_pivot_order`` 7 (automatic) picks AMF here (bit-identical iterates to 2); METIS (5) costs more
#: (ieee123 24 h: 1.8-2.2 against 1.5-1.9 s; 2,561 buses x 24 h: 47 against 38 s at load 8-12, more
#: memory), AMD (0), QAMD (6) and PORD (4) gain nothing; ``mumps_permuting_scaling 0`` and
#: ``mumps_scaling 0`` are slower (2.0-2.2 s); the barrier update is the formulation's (``mu_strategy
#: adaptive`` with the LOQO oracle for balanced ``exact`` and ``linear``, 61 -> 37 iterations at ieee123 x
#: 24 h: :data:`mpdopf_pyomo.formulations.balanced.CENTRAL_IPOPT_OPTIONS`; a distributed run's warm area
#: re-solves use the adaptive update too: from a far-moved previous point the monotone barrier crawled, see
#: :data:`mpdopf_pyomo.decomposition.area_solver.WARM_START_OPTIONS`); ``fast_step_computation
#: yes`` gains ~4 % (same iterates) but never checks the step's residual; a LinDistFlow start (solve
#: ``linear``, then the exact model from its point) saves 10 of 49 iterations at 2,561 x 5 h, but the
#: linear solve costs more (18 iterations, 7 s); transparent huge pages for MUMPS' workspace
#: (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) cut page faults 40x at 2,561 x 24 h, but not the wall time;
#: ``bound_push = bound_frac = 1e-5`` (or 1e-7) saves iterations on ieee123 x 24 h (61 -> 54) and
#: ieee123-published x 5 h (60 -> 49) with the same objective, but costs them on case141 x 24 h (52 -> 68-74);
#: ``mu_init`` 1e-3 or 1e-4 costs iterations (61 -> 75-77); ``nlp_scaling_method none`` 61 -> 57 but moves
#: the objective by 1e-8 relative; the current relation written l = (P^2 + Q^2) / v (convex in P, Q, l
#: for v > 0) instead of l v = P^2 + Q^2 takes 64 iterations, not fewer.
IPOPT_DEFAULTS: dict[str, Any] = {"honor_original_bounds": "yes", "min_refinement_steps": 0, "mumps_mem_percent": 5}

_FIX_LIBRARY = (
    "run `make setup` (or `python -m mpdopf_pyomo install-solvers`), which installs Debian's "
    "libamplsolver-dev and compiles Pyomo's PyNumero ASL library"
)
_FIX_EXECUTABLE = (
    "optional: with internet access run `idaes get-extensions` to install an ipopt executable; "
    "without it the cyipopt library route is used"
)


@dataclass
class SolverInfo:
    """What ``doctor`` knows about one solver name."""

    name: str
    available: bool
    route: str | None = None
    version: str | None = None
    location: str | None = None
    linear_solver: str | None = None
    fix: str | None = None
    detail: str | None = None
    #: MUMPS version of the IPOPT behind this route, and which build it is (e.g. ``cyipopt-wheels``).
    mumps: str | None = None
    build: str | None = None
    #: Set when IPOPT falls back to a slower build: why, and the fix.
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SolveStats:
    """What a successful solve reports: who solved it, how, how long and how many iterations."""

    solver: str
    route: str
    termination: str
    iterations: int | None
    solve_s: float
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------


def ipopt_executable() -> str | None:
    """Path of an ``ipopt`` AMPL executable: our MUMPS 5.8 build, else on PATH or in IDAES' folder, else None."""
    built = solver_build.executable()
    if built is not None and os.access(built, os.X_OK):
        return str(built)
    return _other_ipopt_executable()


def _other_ipopt_executable() -> str | None:
    """An ``ipopt`` executable not built by :mod:`mpdopf_pyomo.solver_build`: on PATH or in IDAES' folder."""
    found = shutil.which("ipopt")
    if found:
        return found
    idaes_dir = Path(os.environ.get("IDAES_DATA", Path.home() / ".idaes")) / "bin" / "ipopt"
    if idaes_dir.is_file() and os.access(idaes_dir, os.X_OK):
        return str(idaes_dir)
    return None


def pynumero_library() -> str | None:
    """Path of the PyNumero ASL library: ours first, then wherever Pyomo itself looks."""
    if PYNUMERO_LIB.is_file():
        return str(PYNUMERO_LIB)
    from pyomo.common.fileutils import find_library

    return find_library("pynumero_ASL")


def _skip_scipy_extras() -> None:
    """Keep Pyomo from importing scipy.stats, .integrate and .spatial when cyipopt imports scipy.

    Pyomo registers a callback that runs on the first ``import scipy`` and pulls in those subpackages
    (0.5 s on the reference machine, a quarter of a 5-hour solve); PyNumero needs only scipy.sparse.
    The callback is a private attribute: if Pyomo renames it, this does nothing and only speed is lost.
    """
    import pyomo.common.dependencies as deps

    indicator = getattr(deps, "scipy_available", None)
    if getattr(indicator, "_module", True) is None and hasattr(indicator, "_callback"):
        indicator._callback = None


def _attach_pynumero() -> str | None:
    """Point PyNumero at the ASL library; return its path (None when absent)."""
    _skip_scipy_extras()
    lib = pynumero_library()
    if lib:
        from pyomo.contrib.pynumero.asl import AmplInterface

        AmplInterface.libname = lib
    return lib


def _fallback_note(part: str, using: str | None = None) -> str:
    """The one line saying that IPOPT runs on another build than ours (by default cyipopt-wheels), why, and the fix."""
    using = using or f"cyipopt-wheels (MUMPS {solver_build.wheel_mumps_version() or '5.5'})"
    return (f"the fast IPOPT build (MUMPS 5.8, {part} route) is not installed: {solver_build.missing_reason(part)};"
            f" using {using}; fix: {solver_build.FIX}")


def _library_build(cyipopt_module: Any) -> tuple[str, str | None]:
    """Which cyipopt is imported (our build or the cyipopt-wheels package) and its MUMPS version."""
    built = solver_build.library_dir()
    if built is not None and str(Path(cyipopt_module.__file__).resolve()).startswith(str(built.resolve())):
        entry = solver_build.part("library") or {}
        return f"mpdopf build: cyipopt {entry.get('cyipopt')} on casadi {solver_build.PINS['casadi']}", entry.get("mumps")
    return "cyipopt-wheels", solver_build.wheel_mumps_version()


def import_cyipopt() -> Any:
    """The ``cyipopt`` module: our MUMPS 5.8 build when it is built, else cyipopt-wheels' (MUMPS 5.5).

    Every import of cyipopt goes through here. A process must load one libipopt only: the two share the
    soname libipopt.so.3 but not MUMPS' structure layout, so a second one, loaded by a stray import, binds
    to the first and can crash. Which one is decided once, by the first call.
    """
    _skip_scipy_extras()
    solver_build.activate_library()  # our build first on sys.path (a no-op once cyipopt is imported)
    if "cyipopt" in sys.modules or "scipy" in sys.modules:
        import cyipopt

        return cyipopt
    # cyipopt's SciPy-style front end (cyipopt.minimize_ipopt, which Pyomo does not use) imports
    # scipy.optimize: 0.2-0.27 s CPU of every process that imports cyipopt (`doctor`, each distributed
    # worker, a library-route solve). Hidden during this import it is left out (cyipopt's own "scipy is
    # not installed" path); PyNumero imports scipy.sparse itself later. A process that imported scipy
    # first keeps the full front end.
    sys.modules["scipy"] = None  # type: ignore[assignment]
    try:
        import cyipopt
    finally:
        del sys.modules["scipy"]
    return cyipopt


def _probe_library() -> SolverInfo:
    info = SolverInfo(name="cyipopt", available=False, route="library", linear_solver="mumps")
    try:
        cyipopt = import_cyipopt()  # ours, or the module of cyipopt-wheels
    except Exception as exc:  # ImportError or a broken shared library
        info.fix = "pip install cyipopt-wheels (part of `make setup`)"
        info.detail = f"cannot import cyipopt: {exc}"
        return info
    info.version = getattr(cyipopt, "IPOPT_VERSION", None)
    if isinstance(info.version, tuple):
        info.version = ".".join(str(v) for v in info.version)
    info.build, info.mumps = _library_build(cyipopt)
    if info.build == "cyipopt-wheels":
        info.note = _fallback_note("library")
    else:
        solver_build.single_thread_blas()
    lib = pynumero_library()
    if not lib:
        info.fix = _FIX_LIBRARY
        info.detail = "cyipopt imports, but Pyomo's PyNumero ASL library (libpynumero_ASL.so) is missing"
        return info
    info.location = lib
    try:
        _attach_pynumero()
        from pyomo.contrib.pynumero.asl import AmplInterface

        if not AmplInterface.available():
            raise RuntimeError("AmplInterface.available() is False")
    except Exception as exc:
        info.fix = _FIX_LIBRARY
        info.detail = f"PyNumero ASL library at {lib} does not load: {exc}"
        return info
    info.available = True
    return info


def _probe_executable(name: str, path: str | None, fix: str) -> SolverInfo:
    info = SolverInfo(name=name, available=False, route="executable", location=path)
    if not path:
        info.fix = fix
        info.detail = f"no {name} executable found"
        return info
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        info.fix = fix
        info.detail = f"{path} does not run: {exc}"
        return info
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    info.version = match.group(1) if match else out.strip()[:40]
    info.available = True
    built = solver_build.executable()
    if name == "ipopt" and built is not None and Path(path) == built:
        entry = solver_build.part("executable") or {}
        # `-v` prints the AMPL interface's version (Debian's 3.14.17); the library doing the work is casadi's.
        info.version = entry.get("ipopt") or info.version
        info.mumps = entry.get("mumps")
        info.build = f"mpdopf build: AMPL driver + {entry.get('ampl_interface')} on casadi {solver_build.PINS['casadi']}"
    return info


def probe(name: str) -> SolverInfo:
    """Availability, route, version and location of one solver name (never raises)."""
    key = name.lower()
    if key == "ipopt":
        exe = _probe_executable("ipopt", ipopt_executable(), _FIX_EXECUTABLE)
        if exe.available:
            exe.linear_solver = "mumps" if exe.mumps else "mumps (default; ma27/ma57 if built with HSL)"
            if exe.build is None:
                exe.build = "found on PATH or in IDAES' folder"
                exe.note = _fallback_note("executable", using=str(exe.location))
            return exe
        lib = _probe_library()
        lib.name = "ipopt"
        if not lib.available:
            lib.detail = f"{exe.detail}; {lib.detail}"
        elif lib.build == "cyipopt-wheels":
            lib.note = _fallback_note("executable")
        return lib
    if key == "cyipopt":
        return _probe_library()
    if key == "ripopt":
        try:
            from pyomo_ripopt.ripopt_solver import _bundled_binary

            path = _bundled_binary() or shutil.which("ripopt")
        except ImportError:
            path = shutil.which("ripopt")
        info = _probe_executable("ripopt", path, "pip install pyomo-ripopt (part of `make setup`)")
        if info.available:
            info.linear_solver = "built-in (ripopt's own sparse LDL)"
        return info
    # Any other Pyomo solver name. Pyomo logs a traceback for an unknown name; keep it off the terminal.
    import io
    import logging

    import pyomo.environ as pyo
    from pyomo.common.log import LoggingIntercept

    unknown = SolverInfo(
        name=key,
        available=False,
        fix=f"install the '{key}' solver so that Pyomo's SolverFactory finds it (see `doctor`)",
        detail=f"Pyomo has no solver plugin named '{key}' and no '{key}' executable is on PATH",
    )
    with LoggingIntercept(io.StringIO(), "pyomo", logging.WARNING):
        try:
            solver = pyo.SolverFactory(key)
            ok = bool(solver.available(exception_flag=False))
        except Exception:  # Pyomo raises for unknown executables
            return unknown
        if type(solver).__name__ == "UnknownSolver":
            return unknown
        version = path = None
        try:
            path = solver.executable()
            version = ".".join(str(v) for v in solver.version()) if ok else None
        except Exception:  # plugins without an executable or a version
            pass
    return SolverInfo(
        name=key,
        available=ok,
        route="executable" if path else "pyomo-plugin",
        version=version,
        location=path,
        fix=None if ok else unknown.fix,
        detail=None if ok else f"Pyomo knows the '{key}' plugin, but its solver is not installed or not licensed",
    )


def probe_all() -> list[SolverInfo]:
    """Probe every solver ``doctor`` reports on."""
    return [probe(name) for name in KNOWN_NLP_SOLVERS]


def ipopt_routes() -> list[SolverInfo]:
    """Every way IPOPT is installed, fastest first, without importing a second cyipopt into this process.

    ``name`` says which ``--solver`` takes the route when it is the first available one of its kind.
    """
    routes: list[SolverInfo] = []
    built = solver_build.executable()
    if built is not None:
        info = _probe_executable("ipopt", str(built), solver_build.FIX)  # sets version, MUMPS and build
        info.linear_solver = "mumps"
    else:
        info = SolverInfo(name="ipopt", available=False, route="executable", build="mpdopf build (MUMPS 5.8)",
                          detail=solver_build.missing_reason("executable"), fix=solver_build.FIX)
    routes.append(info)
    other = _other_ipopt_executable()
    if other:
        info = _probe_executable("ipopt", other, _FIX_EXECUTABLE)
        info.build, info.linear_solver = "found on PATH or in IDAES' folder", "mumps (unless built with HSL)"
        routes.append(info)
    pynumero = pynumero_library()
    no_pynumero = None if pynumero else "PyNumero ASL library (libpynumero_ASL.so) missing"
    entry = solver_build.part("library")
    if entry:
        routes.append(SolverInfo(
            name="cyipopt", available=pynumero is not None, route="library", version=entry.get("ipopt"),
            location=str(solver_build.library_dir()), linear_solver="mumps", mumps=entry.get("mumps"),
            build=f"mpdopf build: cyipopt {entry.get('cyipopt')} on casadi {solver_build.PINS['casadi']}",
            detail=no_pynumero, fix=no_pynumero and _FIX_LIBRARY))
    else:
        routes.append(SolverInfo(name="cyipopt", available=False, route="library", build="mpdopf build (MUMPS 5.8)",
                                 detail=solver_build.missing_reason("library"), fix=solver_build.FIX))
    try:
        wheel: str | None = importlib.metadata.version("cyipopt-wheels")
        libs = [f for f in importlib.metadata.files("cyipopt-wheels") or [] if f.name.startswith("libipopt")]
    except importlib.metadata.PackageNotFoundError:
        wheel, libs = None, []
    lib_version = re.search(r"\.so\.(\d+\.\d+\.\d+)", libs[0].name) if libs else None
    missing = None if wheel else "cyipopt-wheels is not installed"
    routes.append(SolverInfo(
        name="cyipopt", available=bool(wheel and pynumero), route="library",
        version=lib_version.group(1) if lib_version else None,
        location=str(libs[0].locate().parent) if libs else None, linear_solver="mumps",
        mumps=solver_build.wheel_mumps_version(), build=f"cyipopt-wheels {wheel} (fallback)",
        detail=missing or no_pynumero,
        fix="pip install cyipopt-wheels (part of `make setup`)" if missing else no_pynumero and _FIX_LIBRARY))
    return routes


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------

_ITER_PATTERNS = (
    re.compile(r"Number of Iterations\.*:\s*(\d+)"),
    re.compile(r"^iterations:\s*(\d+)", re.M),
)


def parse_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Turn ``key=value`` strings into solver options, converting numbers (types are fixed later by
    :func:`check_options`, which knows what each solver expects)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise MpdopfError(f"solver option '{pair}' is not of the form key=value")
        value: Any = raw.strip()
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        options[key.strip()] = value
    return options


@contextlib.contextmanager
def _pyomo_tempfiles_in(folder: str) -> Iterator[None]:
    """Make Pyomo put its NL/solution files into ``folder`` (removed with it, also on an interrupt).

    Pyomo's shell-command solvers only release their temporary files after a completed solve, and
    otherwise at interpreter exit, which ``os._exit`` in ``__main__`` skips: an interrupted solve
    would leave ``/tmp/tmpXXXX.pyomo.nl`` behind.
    """
    from pyomo.common.tempfiles import TempfileManager

    saved = TempfileManager.tempdir
    TempfileManager.tempdir = folder
    try:
        yield
    finally:
        TempfileManager.tempdir = saved


# --------------------------------------------------------------------------------------------------
# Checking options before anything is built, and the default stopping limits
# --------------------------------------------------------------------------------------------------

#: Iteration limit of every IPOPT and ripopt solve unless ``--solver-option max_iter=N`` is given. IPOPT
#: needs 40-48 iterations on the bundled cases (ieee123 5 and 24 h, ieee123-published 10 h), ripopt
#: 110-230 (ieee123, 1-3 h). On ieee123 at 5 h ripopt 0.8.2 reaches the optimal cost (1749.80 against
#: IPOPT's 1749.79 USD, primal infeasibility 8e-7) by iteration 100 but its dual infeasibility stays at
#: ~1e3 (multipliers near 1e6), so it enters its restoration phase again and again (131 times in 1154
#: iterations, each throwing the cost back to ~1.9e3) with ~22 line-search backtracks per iteration: it
#: never converges, and ran for more than 12 minutes towards its own limit of 3000 (0.13 s per iteration).
DEFAULT_MAX_ITER = 1000
#: Wall-clock limit (s) of every IPOPT (3.14 or newer) and ripopt solve unless ``max_wall_time`` or
#: ``max_cpu_time`` is given (for ripopt the two are the same wall-clock limit).
DEFAULT_MAX_WALL_S = 600.0

_IPOPT_TYPE_NAMES = {"Integer": "an integer", "Number": "a number", "String": "one of its settings"}


class _CaptureFd:
    """Collect what C code writes to file descriptor 1 (IPOPT reports a bad option only there)."""

    def __enter__(self) -> "_CaptureFd":
        import ctypes

        self._libc = ctypes.CDLL(None)
        sys.stdout.flush()
        self._libc.fflush(None)
        self._saved = os.dup(1)
        self._file = tempfile.TemporaryFile()
        os.dup2(self._file.fileno(), 1)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._libc.fflush(None)
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()


def _ipopt_probe_problem() -> Any:
    """A one-variable cyipopt problem that is never solved: only its option registry is used."""
    import numpy as np

    cyipopt = import_cyipopt()

    class _Tiny:
        def objective(self, x: Any) -> float:
            return float(x[0] ** 2)

        def gradient(self, x: Any) -> Any:
            return 2.0 * x

    return cyipopt.Problem(n=1, m=0, problem_obj=_Tiny(), lb=np.array([-1.0]), ub=np.array([1.0]),
                           cl=np.zeros(0), cu=np.zeros(0))


def _option_text(key: str, value: Any) -> str:
    """``key=value`` as the user would recognise it (strings quoted, so an empty value shows)."""
    if isinstance(value, str):
        return f"{key}={value!r}"
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def _ipopt_option_error(name: str, key: str, value: Any, said: str) -> str:
    """One line from what IPOPT printed about a rejected option."""
    shown = _option_text(key, value)
    if "not a valid option" in said:
        return (f"{name}: unknown solver option '{key}' (IPOPT has no option of that name; see "
                "https://coin-or.github.io/Ipopt/OPTIONS.html)")
    wanted = re.search(r"of type\s+(\w+), not of type", said)
    if wanted:
        needs = _IPOPT_TYPE_NAMES.get(wanted.group(1), wanted.group(1))
        return f"{name}: solver option {shown} is invalid: {key} needs {needs}"
    bounds = re.search(r"^(\S+)\s*(<=?)\s*\((.*)\)\s*(<=?)\s*(\S+)\s*$", said, re.M)
    if bounds:
        lo, op1, default, op2, hi = bounds.groups()
        return (f"{name}: solver option {shown} is out of range: IPOPT needs {lo} {op1} {key} {op2} {hi} "
                f"(default {default})")
    settings = re.findall(r"^\t(\S+) \(", said, re.M)
    if settings:
        return f"{name}: solver option {shown} is invalid: {key} is one of {', '.join(settings)}"
    return f"{name}: solver option {shown} is invalid: {' '.join(said.split())[:200]}"


def _retyped(value: Any, said: str) -> Any:
    """The value converted to the type IPOPT said the option has, or None when it does not convert."""
    wanted = re.search(r"of type\s+(\w+), not of type", said)
    if not wanted:
        return None
    kind = wanted.group(1)
    try:
        if kind == "Number" and not isinstance(value, float):
            return float(value)
        if kind == "Integer" and not isinstance(value, int):
            as_float = float(value)
            return int(as_float) if as_float.is_integer() else None
        if kind == "String" and not isinstance(value, str):
            return f"{value:g}" if isinstance(value, float) else str(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def _check_ipopt_options(name: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """IPOPT's own verdict on every option (name, type, range, setting); None when cyipopt is missing."""
    try:
        _skip_scipy_extras()
        prob = _ipopt_probe_problem()
    except Exception:  # no cyipopt: the executable route reports a bad option when it runs
        return None
    try:
        return _set_each(name, prob, options)
    finally:
        prob.close()


def _set_each(name: str, prob: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Set every option on ``prob``, converting a value once to the type IPOPT names in its complaint."""
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, float) and value != value:  # IPOPT's range check lets NaN through
            raise MpdopfError(f"{name}: solver option {key}=nan is invalid: {key} needs a number")
        for _ in range(2):  # the given type, then the type IPOPT asked for
            with _CaptureFd() as cap:
                try:
                    prob.add_option(key, value)
                    ok = True
                except (TypeError, ValueError, UnicodeError):
                    ok = False
            if ok:
                checked[key] = value
                break
            retyped = _retyped(value, cap.text)
            if retyped is None:
                raise MpdopfError(_ipopt_option_error(name, key, value, cap.text))
            value = retyped
        else:
            raise MpdopfError(_ipopt_option_error(name, key, value, cap.text))
    return checked


#: Settings of ripopt's string options (from ``ripopt --help``; others are free text).
_RIPOPT_CHOICES = {"mu_strategy": ("adaptive", "monotone"), "hessian_approximation": ("exact", "limited-memory"),
                   "linear_solver": ("direct", "iterative", "hybrid")}
_BOOL_WORDS = ("yes", "no", "true", "false", "on", "off", "1", "0")
_ripopt_options_cache: dict[str, str] = {}


def ripopt_options() -> dict[str, str]:
    """ripopt's options and their types ('float', 'int', 'bool', 'str'), read from ``ripopt --help``."""
    if not _ripopt_options_cache:
        path = probe("ripopt").location
        if not path:
            return {}
        try:
            text = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return {}
        _ripopt_options_cache.update(re.findall(r"^\s+([a-z_0-9]+)=<(float|int|bool|str)>", text, re.M))
    return dict(_ripopt_options_cache)


def _check_ripopt_options(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """ripopt ignores unknown names and unreadable values (it runs with its defaults): check them here."""
    import math

    known = ripopt_options()
    if not known:
        return None
    checked: dict[str, Any] = {}
    for key, value in options.items():
        shown = _option_text(key, value)
        kind = known.get(key)
        if kind is None:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else "; `ripopt --help` lists them"
            raise MpdopfError(f"ripopt: unknown solver option '{key}'{hint}")
        if kind in ("float", "int"):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise MpdopfError(f"ripopt: solver option {shown} is invalid: {key} needs "
                                  f"{'an integer' if kind == 'int' else 'a number'}") from None
            is_limit = key in ("max_wall_time", "max_cpu_time")
            if is_limit and number == math.inf:
                number = 0.0  # ripopt's "no limit"
            if not math.isfinite(number) or (kind == "int" and not number.is_integer()):
                raise MpdopfError(f"ripopt: solver option {shown} is invalid: {key} needs a finite "
                                  f"{'integer' if kind == 'int' else 'number'}")
            if (is_limit or kind == "int") and number < 0:
                raise MpdopfError(f"ripopt: solver option {shown} is out of range: ripopt needs {key} >= 0"
                                  + (" (0 = no limit)" if is_limit else ""))
            if "tol" in key and number <= 0:
                raise MpdopfError(f"ripopt: solver option {shown} is out of range: ripopt needs {key} > 0")
            checked[key] = int(number) if kind == "int" else number
        elif kind == "bool":
            if str(value).lower() not in _BOOL_WORDS:
                raise MpdopfError(f"ripopt: solver option {shown} is invalid: {key} is yes or no")
            checked[key] = str(value).lower()
        else:
            choices = _RIPOPT_CHOICES.get(key)
            if choices and str(value) not in choices:
                raise MpdopfError(f"ripopt: solver option {shown} is invalid: {key} is one of {', '.join(choices)}")
            checked[key] = str(value)
    return checked


_checked_cache: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}


def check_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options with the types the solver expects; :class:`MpdopfError` (exit 2) names a bad one.

    ipopt/cyipopt: each option is set on a throw-away IPOPT problem, so IPOPT's own registry checks the
    name, the type (``tol=1`` becomes 1.0, ``max_iter=1e3`` 1000) and the range or setting. ripopt:
    against the list of ``ripopt --help`` (ripopt itself ignores what it does not know). Any other
    solver: unchanged; its "invalid option" failure is reported as bad input by :func:`solve`. A solver
    that is not installed is left to :func:`solve` (exit 3).
    """
    opts = dict(options or {})
    key = name.lower()
    if not opts or key not in KNOWN_NLP_SOLVERS:
        return opts
    cache_key = (key, tuple(sorted((k, repr(v)) for k, v in opts.items())))
    if cache_key not in _checked_cache:
        checked = _check_ripopt_options(opts) if key == "ripopt" else _check_ipopt_options(name, opts)
        _checked_cache[cache_key] = opts if checked is None else checked
    return dict(_checked_cache[cache_key])


def default_limits(name: str, options: Mapping[str, Any], version: str | None = None) -> dict[str, Any]:
    """The stopping limits added to a solve the user did not limit (see DEFAULT_MAX_ITER/_WALL_S)."""
    key = name.lower()
    if key not in KNOWN_NLP_SOLVERS:
        return {}
    limits: dict[str, Any] = {}
    if "max_iter" not in options:
        limits["max_iter"] = DEFAULT_MAX_ITER
    ipopt_has_wall = key == "ripopt" or tuple(int(p) for p in re.findall(r"\d+", version or "0")[:2]) >= (3, 14)
    if ipopt_has_wall and not {"max_wall_time", "max_cpu_time"} & set(options):
        limits["max_wall_time"] = DEFAULT_MAX_WALL_S
    return limits


def _is_ipopt_like(route_name: str) -> bool:
    return route_name in ("ipopt", "cyipopt")


def solve(
    model: Any,
    name: str = "ipopt",
    options: Mapping[str, Any] | None = None,
    tee: bool = False,
) -> SolveStats:
    """Solve a Pyomo model and load the solution; raise unless the solver reports an optimal point.

    Raises :class:`SolverUnavailable` when the solver cannot be found and :class:`SolveFailed` on any
    termination other than (locally) optimal: infeasible, iteration or time limit, numerical trouble.
    """
    from mpdopf_pyomo import pyo
    from pyomo.opt import TerminationCondition as TC

    info = probe(name)
    if not info.available:
        raise SolverUnavailable(
            f"solver '{name}' is not available ({info.detail or 'not found'}); fix: {info.fix}"
        )
    user = check_options(name, options)
    opts: dict[str, Any] = {**default_limits(name, user, info.version), **user}
    pyomo_name = name.lower()
    if pyomo_name in ("ipopt", "cyipopt"):
        opts = {**IPOPT_DEFAULTS, **opts}
    if info.route == "library":
        _attach_pynumero()
        pyomo_name = "cyipopt"
    elif pyomo_name == "ripopt":
        import pyomo_ripopt  # noqa: F401  (registers the plugin)

    t0 = time.perf_counter()
    iterations: int | None = None
    log = ""  # the solver's log (executable routes)
    if pyomo_name == "cyipopt":
        counter = {"n": 0}

        def _count(nlp, problem, alg_mod, iter_count, obj, inf_pr, inf_du, mu, d_norm, reg, a_du, a_pr, ls):  # type: ignore[no-untyped-def]  # noqa: E501
            # PyNumero's 13-argument callback (it inspects the signature): keep the last iteration number.
            counter["n"] = int(iter_count)
            return True

        solver = pyo.SolverFactory("cyipopt", intermediate_callback=_count)
        for key, value in opts.items():
            solver.config.options[key] = value
        _name_wall_time_status()
        try:
            results = solver.solve(model, tee=tee, load_solutions=False)
        except Exception as exc:
            raise SolveFailed(f"{name}: the solver raised an error: {_clean_message(str(exc))}") from exc
        iterations = counter["n"]
    elif pyomo_name == "ipopt" and info.route == "executable" and info.location:
        ok, message, iterations, log = _solve_ipopt_executable(model, info, opts, tee, name)
        solve_s = time.perf_counter() - t0
        if not ok:
            _raise_failure(name, log, message, iterations, opts)
        return SolveStats(solver=name.lower(), route=info.route or "", termination="optimal",
                          iterations=iterations, solve_s=solve_s, message=message, extra=_stats_extra(info, opts))
    else:
        solver = pyo.SolverFactory(pyomo_name)
        with tempfile.TemporaryDirectory(prefix="mpdopf-solver-") as tmp, _pyomo_tempfiles_in(tmp):
            logfile = os.path.join(tmp, "solver.log")
            try:
                results = solver.solve(
                    model, tee=tee, options=opts, logfile=logfile, load_solutions=False
                )
            except Exception as exc:
                raise SolveFailed(f"{name}: the solver raised an error: {exc}") from exc
            log = Path(logfile).read_text(errors="replace") if os.path.exists(logfile) else ""
        for pattern in _ITER_PATTERNS:
            found = pattern.search(log)
            if found:
                iterations = int(found.group(1))
                break
    solve_s = time.perf_counter() - t0

    term = results.solver.termination_condition
    message = results.solver.message or ""
    if isinstance(message, bytes):  # cyipopt returns IPOPT's message as bytes
        message = message.decode(errors="replace")
    message = _clean_message(str(message))
    if term not in (TC.optimal, TC.locallyOptimal, TC.globallyOptimal) and not (
            term == TC.feasible and is_square_solution(message)):
        _raise_failure(name, log, message, iterations, opts, term)
    model.solutions.load_from(results)
    return SolveStats(
        solver=name.lower(),
        route=info.route or "",
        termination=str(term),
        iterations=iterations,
        solve_s=solve_s,
        message=message,
        extra=_stats_extra(info, opts),
    )


def _stats_extra(info: SolverInfo, opts: Mapping[str, Any]) -> dict[str, Any]:
    """``SolveStats.extra``: the solver's version, MUMPS version and build, and every option it was given."""
    return {"version": info.version, "mumps": info.mumps, "build": info.build, "options": dict(opts)}


def _raise_failure(name: str, log: str, message: str, iterations: int | None, options: Mapping[str, Any],
                   term: Any = None) -> None:
    """Raise for a solve that did not end optimal: a solver whose options are not checked beforehand and
    whose log rejects one is bad input (:class:`MpdopfError`, exit 2), anything else :class:`SolveFailed`."""
    bad = _INVALID_OPTION.search(log)
    if bad:
        raise MpdopfError(f"{name}: the solver rejected a --solver-option: {' '.join(bad.group(0).split())}")
    raise SolveFailed(failure_line(name, message, iterations, options, term))


#: Callbacks of :func:`when_solver_runs`: called (each at most once) when an external solver process starts.
_on_solver_run: list[Any] = []


@contextlib.contextmanager
def when_solver_runs(callback: Any) -> Iterator[None]:
    """Within the block, call ``callback()`` once, as the first IPOPT executable process starts (after its
    NL file is written, while this process only waits): the CLI starts its background imports then."""
    _on_solver_run.append(callback)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            _on_solver_run.remove(callback)


def _solver_runs() -> None:
    while _on_solver_run:
        _on_solver_run.pop(0)()


def _solve_ipopt_executable(model: Any, info: SolverInfo, opts: Mapping[str, Any], tee: bool,
                            name: str) -> tuple[bool, str, int | None, str]:
    """Solve with an IPOPT AMPL executable through Pyomo's newer ``ipopt`` interface
    (``pyomo.contrib.solver``); load the solution when optimal. Returns (optimal, message, iterations, log).

    The same NL file as the legacy shell-command plugin, with less Python around it (ieee123 x 24 h: 0.31
    against 0.35 s CPU for the write, the run and the read-back; same iterations and optimum). The NL
    writer's linear presolve stays off, as in the legacy plugin: it removes 1,418 of 15,144 variables at
    ieee123 x 24 h (same 61 iterations, ~11 % less IPOPT time) but turns the 71 iterations of the
    tutorial's case33bw feeder (docs/tutorials/04_own_feeder.py) into 266.
    """
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
    from pyomo.contrib.solver.solvers.ipopt import Ipopt

    solver = Ipopt(executable=info.location)
    run_ipopt = getattr(solver, "_run_ipopt", None)
    if callable(run_ipopt) and _on_solver_run:  # after the NL write, just before the process starts

        def _run_ipopt(*args: Any, **kwargs: Any) -> Any:
            _solver_runs()
            return run_ipopt(*args, **kwargs)

        solver._run_ipopt = _run_ipopt
    version = tuple(int(p) for p in re.findall(r"\d+", info.version or "")[:3])
    if len(version) == 3:  # known from the probe: no second `ipopt --version` run
        Ipopt._exe_cache.setdefault(solver.config.executable.path(), version)
    with tempfile.TemporaryDirectory(prefix="mpdopf-solver-") as tmp, _pyomo_tempfiles_in(tmp):
        try:
            results = solver.solve(model, tee=tee, solver_options=dict(opts), working_dir=tmp,
                                   writer_config={"linear_presolve": False},
                                   load_solutions=False, raise_exception_on_nonoptimal_result=False)
        except Exception as exc:
            raise SolveFailed(f"{name}: the solver raised an error: {_clean_message(str(exc))}") from exc
        log = results.solver_log or ""
        iterations = getattr(results.extra_info, "iteration_count", None)
        if not isinstance(iterations, int):
            found = _ITER_PATTERNS[0].search(log)
            iterations = int(found.group(1)) if found else None
        message = str(getattr(results.extra_info, "solver_message", "") or "")
        message = _clean_message(re.sub(r"(?:^|;\s*)AMPL\(\d*\w*:?\w*\??\):[^;]*$", "", message) or message)
        ok = (results.solution_status == SolutionStatus.optimal
              and results.termination_condition == TerminationCondition.convergenceCriteriaSatisfied)
        if ok:
            results.solution_loader.load_vars()
    return ok, message, iterations, log


#: A line of a solver's log that rejects an option (IPOPT executable and other AMPL solvers).
_INVALID_OPTION = re.compile(
    r"^.*(?:not a valid option|is not a valid setting|unknown (?:keyword|option)|unrecognized option"
    r"|invalid option).*$", re.M | re.I)

#: (pattern in the solver's message, kind of stop, plain words); the first match names the stop.
_STOPS = (
    (r"wall.?(?:clock )?time", "wall", "the wall time limit"),
    (r"cpu.?time", "cpu", "the CPU time limit"),
    (r"iteration", "iter", "the iteration limit"),
    (r"restoration", "restoration", "a failed restoration phase (no feasible step could be found)"),
    (r"infeasib", "infeasible", "a point of local infeasibility: the problem may be infeasible"),
    (r"little progress|too small", "stall", "a search direction too small to make progress"),
    (r"diverg", "diverging", "diverging iterates"),
    (r"step computation", "step", "an error in the step computation"),
    (r"invalid number|\bnan\b", "nan", "an invalid number (NaN or Inf) from the model"),
    (r"degrees of freedom", "dof", "too few degrees of freedom"),
    (r"acceptable", "acceptable", "a point converged only to the 'acceptable' tolerances"),
    (r"memory", "memory", "insufficient memory"),
    (r"user|callback", "user", "a stop requested by a callback"),
)
#: Pyomo termination conditions, for a solver that gives no message.
_TERM_STOPS = {"maxIterations": "iter", "maxTimeLimit": "wall", "infeasible": "infeasible",
               "locallyInfeasible": "infeasible", "minStepLength": "stall", "unbounded": "diverging"}


def stop_reason(name: str, message: str, term: Any = None) -> tuple[str, str]:
    """(kind, plain words) of why a solver stopped short of an optimum, from its message or termination."""
    text = message.lower()
    for pattern, kind, words in _STOPS:
        if re.search(pattern, text):
            if kind == "cpu" and name.lower() == "ripopt":  # ripopt's CPU limit is its wall-clock limit
                return "wall", "the wall time limit"
            return kind, words
    kind = _TERM_STOPS.get(str(term), "")
    words = {k: w for _, k, w in _STOPS}.get(kind)
    return (kind, words) if words else ("other", f"termination '{term or 'unknown'}'")


def _clean_message(message: str) -> str:
    """A solver's message as plain text: ripopt writes ':' as a literal ``\\x3a``, cyipopt gives bytes."""
    if message.startswith(("b'", 'b"')) and message.endswith(message[1]):
        message = message[2:-1]
    message = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), message)
    return re.sub(r"^ripopt [\d.]+:\s*", "", message.strip())


def failure_line(name: str, message: str, iterations: int | None, options: Mapping[str, Any],
                 term: Any = None) -> str:
    """The one-line error of a solve that stopped short of an optimum, naming the reason in plain words
    and, for a limit, the option that raises it."""
    kind, words = stop_reason(name, message, term)
    limit = {"iter": ("max_iter", "N", ""), "wall": ("max_wall_time", "SECONDS", " s"),
             "cpu": ("max_cpu_time", "SECONDS", " s")}.get(kind)
    after = f" after {iterations} iterations" if iterations is not None else ""
    if limit:
        key, unit, suffix = limit
        value = options.get(key, options.get("max_cpu_time") if key == "max_wall_time" else None)
        default = (key == "max_iter" and value == DEFAULT_MAX_ITER) or (
            key == "max_wall_time" and value == DEFAULT_MAX_WALL_S)
        shown = f" ({value:g}{suffix}{', the default' if default else ''})" if isinstance(value, (int, float)) else ""
        head = (f"{name}: stopped at {words}{shown}{after} without converging "
                f"(raise it with --solver-option {key}={unit})")
    else:
        head = f"{name}: stopped{after} without converging: {words}"
    said = f"; solver says: {message.rstrip('.')}" if message else ""
    return f"{head}{said}. No result was written."


def _name_wall_time_status() -> None:
    """Teach cyipopt and Pyomo IPOPT 3.14's wall-time stop (status -5), which they do not know.

    Without this, Pyomo raises ``KeyError: b'Unknown status'`` for a solve that reached max_wall_time.
    Both tables are plain dicts; if a later version renames them this does nothing.
    """
    try:
        # cyipopt's compiled module, from the cyipopt in use (never the top-level ``ipopt_wrapper`` of
        # cyipopt-wheels: it would load the wheel's libipopt beside our build's; see import_cyipopt)
        ipopt_wrapper = importlib.import_module("cyipopt.ipopt_wrapper")
        from pyomo.contrib.pynumero.algorithms.solvers import cyipopt_solver as pyomo_cyipopt
        from pyomo.opt import TerminationCondition as TC
    except ImportError:
        return
    text = b"Maximum wall time exceeded."
    messages = getattr(ipopt_wrapper, "STATUS_MESSAGES", None)
    names = getattr(pyomo_cyipopt, "_cyipopt_status_enum", None)
    terms = getattr(pyomo_cyipopt, "_ipopt_term_cond", None)
    if isinstance(messages, dict) and isinstance(names, dict) and isinstance(terms, dict):
        messages.setdefault(-5, text)
        names.setdefault(messages[-5], "Maximum_WallTime_Exceeded")
        terms.setdefault("Maximum_WallTime_Exceeded", TC.maxTimeLimit)


#: IPOPT's return status "Feasible_Point_Found": a square problem (as many equations as free variables,
#: e.g. an area without DERs whose boundary values are pinned) solved; its one point is the optimum.
IPOPT_SQUARE_STATUS = 6
#: IPOPT return statuses accepted as solved: Solve_Succeeded and Feasible_Point_Found.
IPOPT_SOLVED_STATUSES = (0, IPOPT_SQUARE_STATUS)


def is_square_solution(message: str) -> bool:
    """Whether a solver's message is IPOPT's "Feasible point for square problem found" (a valid solve:
    with no degrees of freedom the feasible point is the optimum). Pyomo reports it as ``feasible``."""
    return "square problem" in message.lower()


def ipopt_status_message(status: int, message: Any) -> str:
    """IPOPT's message for a return status as text (cyipopt's own table lacks -5, the wall-time stop)."""
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if status == -5 and "unknown" in str(message).lower():
        return "Maximum wall time exceeded."
    return _clean_message(str(message))


# --------------------------------------------------------------------------------------------------
# Installing the library route
# --------------------------------------------------------------------------------------------------


def build_pynumero(quiet: bool = True) -> Path:
    """Compile Pyomo's PyNumero ASL library against Debian's ASL into :data:`PYNUMERO_DIR`.

    Installs ``libamplsolver-dev`` with apt-get when it is missing and we are root. Raises
    :class:`SolverUnavailable` with the exact fix when a prerequisite cannot be installed.
    """
    import pyomo

    if not (DEBIAN_ASL_INCLUDE / "asl_pfgh.h").is_file():
        if os.geteuid() == 0 and shutil.which("apt-get"):
            _run(["apt-get", "install", "-y", "-q", "libamplsolver-dev"], quiet, allow_update=True)
        else:
            raise SolverUnavailable(
                "Debian's ASL headers are missing: run `sudo apt-get install libamplsolver-dev` "
                "(or `make setup` as root), then `python -m mpdopf_pyomo install-solvers`"
            )
    for tool in ("cmake", "c++"):
        if not shutil.which(tool):
            raise SolverUnavailable(f"'{tool}' is needed to build PyNumero: apt-get install cmake g++")
    src = Path(pyomo.__file__).parent / "contrib" / "pynumero" / "src"
    with tempfile.TemporaryDirectory(prefix="pynumero-build-") as build:
        _run(
            [
                "cmake",
                str(src),
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DASL_INCLUDE_DIR={DEBIAN_ASL_INCLUDE}",
                f"-DASL_LIBRARY={DEBIAN_ASL_LIBRARY}",
                f"-DCMAKE_INSTALL_PREFIX={build}/install",
            ],
            quiet,
            cwd=build,
        )
        _run(["cmake", "--build", ".", "--parallel", "2"], quiet, cwd=build)
        _run(["cmake", "--install", "."], quiet, cwd=build)
        built = Path(build) / "install" / "lib" / "libpynumero_ASL.so"
        PYNUMERO_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, PYNUMERO_LIB)
    return PYNUMERO_LIB


def _run(cmd: list[str], quiet: bool, cwd: str | None = None, allow_update: bool = False) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=quiet, text=True)
    if proc.returncode != 0 and allow_update:
        subprocess.run(["apt-get", "update", "-q"], capture_output=quiet, text=True)
        proc = subprocess.run(cmd, cwd=cwd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:] if quiet else []
        raise SolverUnavailable(f"`{' '.join(cmd)}` failed: {' | '.join(tail)}")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the program relies on (None when missing)."""
    names = ["pyomo", "idaes-pse", "numpy", "pandas", "opendssdirect.py", "dss-python", "matplotlib",
             "click", "cyipopt-wheels", "pyomo-ripopt", "dask", "distributed"]
    versions: dict[str, str | None] = {}
    for pkg in names:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions
