"""Build IPOPT on MUMPS 5.8 into the environment: a ``cyipopt`` module and an AMPL ``ipopt`` executable.

Why: the ``cyipopt-wheels`` wheel bundles MUMPS 5.5.1, and MUMPS is 80-86 % of IPOPT's time on these
problems; MUMPS 5.8.2 halves that. Neither MUMPS nor Ipopt is compiled here: the PyPI ``casadi`` wheel
ships libipopt 3.14.19 linked to MUMPS 5.8.2 and METIS, with Ipopt's headers. On top of that library:

* **library route**: ``cyipopt`` compiled from its PyPI sdist against casadi's libipopt and installed
  under ``<prefix>/python``. :mod:`mpdopf_pyomo.solvers` puts that folder first on ``sys.path`` before
  ``cyipopt`` is imported; the ``cyipopt-wheels`` package is left untouched and stays the fallback.
* **executable route**: ``<prefix>/bin/ipopt``, the small AMPL driver ``native/ipopt_ampl.cpp`` linked
  with Ipopt's AMPL interface as Debian builds it (``libipoptamplinterface.a`` and ``AmplTNLP.hpp`` of the
  binary package ``coinor-libipopt-dev`` 3.14.17-3, Debian trixie), Debian's ASL (``libamplsolver-dev``)
  and the same casadi libipopt. Debian's mirror serves trixie's binary packages here but not its source
  packages, so the AMPL interface comes compiled. apt fetches it through a private sources list, state and
  cache under a temporary folder: the machine's apt configuration is not changed.

What is downloaded: the casadi wheel (93 MB) and the cyipopt sdist (70 kB, plus cython/numpy/setuptools
wheels for its build) from PyPI; trixie's package index (10 MB) and that one .deb (1.1 MB) from the Debian
mirror the machine already uses. What is built: cyipopt's extension (about 20 s) and the driver (2 s).

Everything lives under one prefix, ``<venv>/lib/mpdopf-ipopt`` (``MPDOPF_IPOPT_PREFIX`` overrides it,
e.g. to share one build, or to point at an empty folder to force the cyipopt-wheels route). Every
RPATH is relative to the prefix and casadi's libraries are a private copy, so no upgrade elsewhere swaps
a ``.so`` under the build. A build goes to a staging folder and replaces the previous one whole; each
part that fails is recorded in ``manifest.json`` with its reason, which ``doctor`` prints.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from mpdopf_pyomo.errors import SolverUnavailable

#: What the build is pinned to. A manifest with other pins is stale and is rebuilt.
PINS: dict[str, str] = {
    "casadi": "3.8.2",  # libipopt 3.14.19, MUMPS 5.8.2, METIS
    "cyipopt": "1.7.0",
    "debian_suite": "trixie",
    "debian_ampl_package": "coinor-libipopt-dev",
    "debian_ampl_version": "3.14.17-3",
    "debian_ampl_sha256": "524af6bcb753d32b2c3d9cfa08fbec4e930562653ed38c759f32b835e0c11533",
    "driver": "2",  # bump when native/ipopt_ampl.cpp changes
}
ENV_PREFIX = "MPDOPF_IPOPT_PREFIX"
MARKER = ".mpdopf-ipopt-build"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DRIVER_SOURCE = Path(__file__).parent / "native" / "ipopt_ampl.cpp"
FIX = ("run `python -m mpdopf_pyomo install-solvers` (part of `make setup`; needs g++, pkg-config, "
       "PyPI and Debian's mirror)")

_BANNER = re.compile(r"This is Ipopt version (\S+), running with linear solver (\S+)(?: (\d+(?:\.\d+)*))?")


def prefix() -> Path:
    """Where the build lives: ``$MPDOPF_IPOPT_PREFIX`` or ``<sys.prefix>/lib/mpdopf-ipopt``."""
    return Path(os.environ.get(ENV_PREFIX) or Path(sys.prefix) / "lib" / "mpdopf-ipopt")


def manifest(where: Path | None = None) -> dict[str, Any] | None:
    """The build's ``manifest.json`` (None when there is no build there or it is unreadable)."""
    path = (where or prefix()) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def part(name: str) -> dict[str, Any] | None:
    """The manifest entry of a built part (``library`` or ``executable``) whose files exist, else None."""
    data = manifest()
    entry = (data or {}).get("parts", {}).get(name)
    if not entry or data.get("pins") != PINS:
        return None
    if not (prefix() / entry["path"]).exists():
        return None
    return entry


def missing_reason(name: str) -> str:
    """One line: why the part ``name`` is not installed (for ``doctor`` and the fallback note)."""
    where = prefix()
    data = manifest()
    if data is None:
        return f"not built (no {where / 'manifest.json'})"
    if data.get("pins") != PINS:
        return f"the build at {where} is for other versions ({data.get('pins')}), not {PINS}"
    error = data.get("errors", {}).get(name)
    if error:
        return f"its build failed: {error}"
    entry = data.get("parts", {}).get(name)
    if entry:
        return f"{where / entry['path']} is missing"
    return "not built"


def library_dir() -> Path | None:
    """Folder holding the cyipopt built against casadi's libipopt, or None."""
    entry = part("library")
    return prefix() / entry["path"] if entry else None


def executable() -> Path | None:
    """The AMPL ``ipopt`` executable built against casadi's libipopt, or None."""
    entry = part("executable")
    return prefix() / entry["path"] if entry else None


def activate_library() -> Path | None:
    """Put the built cyipopt first on ``sys.path`` (only before ``cyipopt`` is imported); return its folder."""
    folder = library_dir()
    if folder is None or "cyipopt" in sys.modules:
        return folder
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


def single_thread_blas() -> None:
    """Run the built library's OpenBLAS (casadi's) on one thread, unless the user set a thread count.

    MUMPS calls BLAS on many tiny blocks; extra OpenBLAS threads only add system time there (measured:
    0.63 s CPU instead of 0.75-1.5 s for ieee123 at 24 h). numpy's own BLAS is a different library: the
    command line sets it to one thread (:func:`mpdopf_pyomo.__main__.single_thread_blas_default`). The AMPL
    driver does the same at start-up.
    """
    if os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    import ctypes

    try:
        ctypes.CDLL(str(prefix() / "casadi" / "casadi" / "libcasadi-tp-openblas.so.0")).openblas_set_num_threads(1)
    except (OSError, AttributeError):  # not this build's layout: leave OpenBLAS as it is
        pass


def mumps_version_of(library: str | Path) -> str | None:
    """The MUMPS version string (e.g. ``5.5.1``) stored in a MUMPS shared library, or None."""
    try:
        data = Path(library).read_bytes()
    except OSError:
        return None
    found = re.search(rb"\x00(5\.\d+\.\d+)\x00", data)
    return found.group(1).decode() if found else None


def wheel_mumps_version() -> str | None:
    """MUMPS version bundled in the ``cyipopt-wheels`` package (read from its library, without importing)."""
    for entry in sys.path:
        libs = sorted(glob.glob(os.path.join(entry or ".", "cyipopt_wheels.libs", "libcoinmumps*.so*")))
        if libs:
            return mumps_version_of(libs[0])
    return None


# --------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------


def build(force: bool = False, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or keep, when it is current) both routes; return the installed manifest. Never raises for a
    failed part: its reason goes into ``manifest['errors']``. Raises :class:`SolverUnavailable` only when
    the prefix holds something this program did not write."""
    final = prefix()
    current = manifest(final)
    if not force and current and current.get("pins") == PINS and all(part(n) for n in ("library", "executable")):
        progress(f"  current (casadi {PINS['casadi']}, MUMPS {current.get('mumps')}): nothing to do")
        return {**current, "build_s": 0.0}
    for path in (final, final.with_name(final.name + ".staging"), final.with_name(final.name + ".old")):
        if path.exists() and not (path / MARKER).exists():
            raise SolverUnavailable(
                f"{path} exists and was not written by mpdopf_pyomo; move it away or set {ENV_PREFIX}")
    stage = final.with_name(final.name + ".staging")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    (stage / MARKER).write_text("written by mpdopf_pyomo.solver_build; safe to delete\n")
    data: dict[str, Any] = {"pins": PINS, "parts": {}, "errors": {}, "built": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    try:
        casadi_dir = _install_casadi(stage, progress)
        data["ipopt"], data["mumps_header"] = _casadi_versions(casadi_dir)
    except SolverUnavailable as exc:
        data["errors"] = {"library": str(exc), "executable": str(exc)}
        casadi_dir = None
    if casadi_dir is not None:
        for name, step in (("library", _build_library), ("executable", _build_executable)):
            try:
                data["parts"][name] = step(stage, casadi_dir, progress)
            except Exception as exc:  # any failure of one part is recorded; the other part and setup go on
                data["errors"][name] = str(exc) or type(exc).__name__
                progress(f"  {name} route NOT built: {exc}")
    mumps = {p.get("mumps") for p in data["parts"].values()} - {None}
    data["mumps"] = mumps.pop() if len(mumps) == 1 else None
    data["build_s"] = round(time.perf_counter() - t0, 1)
    (stage / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    # Keep a previous build that has more working parts than this attempt (e.g. a rebuild offline).
    if current and current.get("pins") == PINS and len(current.get("parts", {})) > len(data["parts"]):
        shutil.rmtree(stage, ignore_errors=True)
        progress(f"kept the previous build at {final}: this attempt built less ({data['errors']})")
        return current
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    stage.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return data


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
         timeout: float = 600) -> str:
    """Run a build step; on failure raise :class:`SolverUnavailable` naming the step and the last lines."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SolverUnavailable(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "WARNING: Location" not in ln]
        raise SolverUnavailable(f"{what} failed (exit {proc.returncode}): {' | '.join(lines[-3:])}")
    return proc.stdout


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]


def _install_casadi(stage: Path, progress: Callable[[str], None]) -> Path:
    progress(f"  PyPI: casadi=={PINS['casadi']} (libipopt + MUMPS + METIS, 93 MB) into {stage / 'casadi'}")
    _run(_pip("install", "--no-deps", "--target", str(stage / "casadi"), f"casadi=={PINS['casadi']}"),
         f"pip install casadi=={PINS['casadi']}")
    casadi_dir = stage / "casadi" / "casadi"
    for needed in ("libipopt.so.3", "include/coin-or/IpIpoptApplication.hpp", "include/coin-or/mumps/dmumps_c.h"):
        if not (casadi_dir / needed).exists():
            raise SolverUnavailable(f"the casadi {PINS['casadi']} wheel has no {needed}")
    return casadi_dir


def _casadi_versions(casadi_dir: Path) -> tuple[str | None, str | None]:
    def grab(header: str, macro: str) -> str | None:
        text = (casadi_dir / "include" / "coin-or" / header).read_text(errors="replace")
        found = re.search(rf'#define {macro} "([^"]+)"', text)
        return found.group(1) if found else None

    return grab("IpoptConfig.h", "IPOPT_VERSION"), grab("mumps/dmumps_c.h", "MUMPS_VERSION")


def _need_tools(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            raise SolverUnavailable(f"'{tool}' is not installed (apt-get install {tool})")


def _build_library(stage: Path, casadi_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    _need_tools("g++", "pkg-config")
    progress(f"  PyPI: cyipopt=={PINS['cyipopt']} sdist, compiled against casadi's libipopt")
    target = stage / "python"
    with tempfile.TemporaryDirectory(prefix="mpdopf-cyipopt-") as tmp:
        (Path(tmp) / "ipopt.pc").write_text(
            f"prefix={casadi_dir}\nName: ipopt\nDescription: casadi's libipopt\nVersion: 3.14\n"
            "Libs: -L${prefix} -lipopt\nCflags: -I${prefix}/include/coin-or\n"
        )
        env = dict(os.environ, PKG_CONFIG_PATH=tmp,
                   # <prefix>/python/cyipopt/*.so finds <prefix>/casadi/casadi/libipopt.so.3 wherever the prefix is
                   LDFLAGS="-Wl,-rpath,$ORIGIN/../../casadi/casadi " + os.environ.get("LDFLAGS", ""))
        _run(_pip("wheel", "--no-deps", "--no-binary", "cyipopt", "-w", tmp, f"cyipopt=={PINS['cyipopt']}"),
             f"building cyipopt {PINS['cyipopt']} from its sdist", env=env)
        wheels = glob.glob(os.path.join(tmp, "cyipopt-*.whl"))
        if not wheels:
            raise SolverUnavailable("pip built no cyipopt wheel")
        _run(_pip("install", "--no-deps", "--target", str(target), wheels[0]), "installing the cyipopt wheel")
    out = _run([sys.executable, "-c", _LIBRARY_CHECK, str(target)], "checking the built cyipopt",
               env=dict(os.environ, PYTHONPATH=""))
    banner = _BANNER.search(out)
    if not banner or "x=1.0" not in out:
        raise SolverUnavailable(f"the built cyipopt did not solve a test problem: {out.strip()[-200:]}")
    return {"path": "python", "cyipopt": PINS["cyipopt"], "ipopt": banner.group(1),
            "linear_solver": banner.group(2), "mumps": banner.group(3)}


#: Solves min (x-1)^2 with the cyipopt in argv[1]; prints IPOPT's banner and the answer.
_LIBRARY_CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import cyipopt
assert cyipopt.__file__.startswith(sys.argv[1]), cyipopt.__file__
class P:
    def objective(self, x): return (x[0] - 1.0) ** 2
    def gradient(self, x): return np.array([2.0 * (x[0] - 1.0)])
    def constraints(self, x): return np.array([x[0]])
    def jacobian(self, x): return np.array([1.0])
    def hessianstructure(self): return np.array([0]), np.array([0])
    def hessian(self, x, lam, of): return np.array([2.0 * of])
p = cyipopt.Problem(n=1, m=1, problem_obj=P(), lb=[-5.0], ub=[5.0], cl=[-4.0], cu=[4.0])
x, info = p.solve(np.array([0.0]))
sys.stdout.flush()
print(f"status={info['status']} x={x[0]:.1f}", flush=True)
"""


def debian_archive() -> tuple[str, str]:
    """URI and keyring of the Debian archive the machine's apt already uses (its first non-security entry)."""
    entries: list[tuple[str, str, str]] = []  # (uri, suite, keyring)
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text(errors="replace").split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                for uri in fields.get("URIs", "").split():
                    for suite in fields.get("Suites", "").split():
                        entries.append((uri, suite, fields.get("Signed-By", DEBIAN_KEYRING).strip()))
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if os.path.isfile(path):
            for line in Path(path).read_text(errors="replace").splitlines():
                found = re.match(r"\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
                if found:
                    keyring = re.search(r"signed-by=(\S+)", found.group(1) or "")
                    entries.append((found.group(2), found.group(3), keyring.group(1) if keyring else DEBIAN_KEYRING))
    for uri, suite, keyring in entries:
        if "security" not in suite and "security" not in uri:
            return uri.rstrip("/"), keyring
    raise SolverUnavailable("no Debian archive found in /etc/apt/sources.list{,.d} (this is not a Debian machine?)")


def fetch_debian_ampl_interface(dest: Path, progress: Callable[[str], None] = print) -> Path:
    """Download and unpack the pinned ``coinor-libipopt-dev`` .deb into ``dest``; return the unpacked root.

    apt-get gets a private sources list, state and cache under ``dest``: nothing in /etc/apt or /var/lib/apt
    changes. apt checks the .deb against the archive's signed index; its SHA-256 is checked against the pin.
    """
    _need_tools("apt-get", "dpkg-deb")
    uri, keyring = debian_archive()
    suite, pkg, version = PINS["debian_suite"], PINS["debian_ampl_package"], PINS["debian_ampl_version"]
    progress(f"  Debian {suite}: {pkg}={version} (Ipopt's AMPL interface, 1.1 MB) via a private apt sources list")
    apt = dest / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by={keyring}] {uri} {suite} main\n")
    opts = [f"-oDir::Etc::sourcelist={apt / 'sources.list'}", "-oDir::Etc::sourceparts=-",
            f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}",
            "-oAPT::Sandbox::User=root", "-qq"]
    _run(["apt-get", *opts, "update"], f"apt-get update of Debian {suite}'s index (private sources list)", timeout=300)
    _run(["apt-get", *opts, "download", f"{pkg}={version}"], f"apt-get download {pkg}={version}",
         cwd=apt / "debs", timeout=300)
    debs = glob.glob(str(apt / "debs" / f"{pkg}_*.deb"))
    if not debs:
        raise SolverUnavailable(f"apt-get download {pkg}={version} produced no .deb")
    digest = hashlib.sha256(Path(debs[0]).read_bytes()).hexdigest()
    if digest != PINS["debian_ampl_sha256"]:
        raise SolverUnavailable(f"{Path(debs[0]).name} has SHA-256 {digest}, not the pinned {PINS['debian_ampl_sha256']}")
    root = dest / "deb"
    _run(["dpkg-deb", "-x", debs[0], str(root)], f"unpacking {Path(debs[0]).name}")
    return root


def _build_executable(stage: Path, casadi_dir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    _need_tools("g++")
    asl_include = Path("/usr/include/ampl-netlib-solvers")
    if not (asl_include / "asl_pfgh.h").is_file():
        raise SolverUnavailable("Debian's ASL headers are missing: apt-get install libamplsolver-dev")
    with tempfile.TemporaryDirectory(prefix="mpdopf-ipopt-exe-") as tmp:
        root = fetch_debian_ampl_interface(Path(tmp), progress)
        archive = root / "usr" / "lib" / "x86_64-linux-gnu" / "libipoptamplinterface.a"
        header = root / "usr" / "include" / "coin-or" / "AmplTNLP.hpp"
        if not archive.is_file() or not header.is_file():
            raise SolverUnavailable(f"{PINS['debian_ampl_package']} has no libipoptamplinterface.a or AmplTNLP.hpp")
        # Only AmplTNLP.hpp comes from Debian's headers; every other Ipopt header is casadi's (3.14.19).
        inc = Path(tmp) / "include"
        inc.mkdir()
        shutil.copy2(header, inc / "AmplTNLP.hpp")
        (stage / "bin").mkdir()
        exe = stage / "bin" / "ipopt"
        progress("  g++: the AMPL ipopt driver, linked to Debian's AMPL interface + ASL and casadi's libipopt")
        _run(["g++", "-O2", "-std=c++11", f"-I{casadi_dir / 'include' / 'coin-or'}", f"-I{inc}", f"-I{asl_include}",
              str(DRIVER_SOURCE), str(archive), f"-L{casadi_dir}", "-l:libipopt.so.3", "-lamplsolver", "-ldl",
              "-Wl,-rpath,$ORIGIN/../casadi/casadi", "-o", str(exe)], "compiling the AMPL ipopt driver")
        banner, status = _check_executable(exe, Path(tmp))
    return {"path": "bin/ipopt", "ampl_interface": f"{PINS['debian_ampl_package']} {PINS['debian_ampl_version']}",
            "ipopt": banner.group(1), "linear_solver": banner.group(2), "mumps": banner.group(3), "check": status}


def _check_executable(exe: Path, tmp: Path) -> tuple[re.Match[str], str]:
    """Solve min (x-1)^2, 0 <= x <= 5 from an .nl file Pyomo writes; return IPOPT's banner and the outcome."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 5), initialize=3.0)
    m.obj = pyo.Objective(expr=(m.x - 1) ** 2)
    nl = tmp / "check.nl"
    m.write(str(nl), format="nl")
    out = _run([str(exe), str(nl), "-AMPL"], "running the built ipopt", timeout=60)
    banner = _BANNER.search(out)
    if not banner or not (tmp / "check.sol").is_file() or "Optimal Solution Found" not in out:
        raise SolverUnavailable(f"the built ipopt did not solve a test problem: {out.strip()[-200:]}")
    return banner, "solved a test .nl file"
