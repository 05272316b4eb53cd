"""Importing cyipopt through mpdopf_pyomo.solvers leaves out its SciPy front end (scipy.optimize, 0.2-0.27 s
per process): `doctor` imports no SciPy, the library route still solves, and a process that imported SciPy
first keeps cyipopt.minimize_ipopt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_doctor_report_imports_no_scipy():
    assert _run("import sys\nfrom mpdopf_pyomo.cli import environment_report\nr = environment_report()\n"
                "print(r['ok'], 'scipy' in sys.modules)") == ["True", "False"]


def test_library_route_solves_without_the_front_end():
    got = _run("import sys\nimport mpdopf_pyomo as mp\n"
               "r = mp.solve('ieee123', hours=1, solver='cyipopt', validate=False)\n"
               "print(r.summary['solver_route'], round(r.summary['objective_usd'], 6), 'scipy.optimize' in sys.modules)")
    assert got[0] == "library" and float(got[1]) > 0 and got[2] == "False"


def test_scipy_imported_first_keeps_minimize_ipopt():
    assert _run("import scipy.optimize\nfrom mpdopf_pyomo import solvers\nc = solvers.import_cyipopt()\n"
                "print(hasattr(c, 'minimize_ipopt') and c.SCIPY_INSTALLED)") == ["True"]


def test_executable_route_solves_without_pyomo_environ():
    """The models use mpdopf_pyomo.pyo (pyomo.core): the executable route never loads pyomo.environ's plugins
    (~0.15 s of the default command), and the answer is the one the library route (which does) gives."""
    got = _run("import sys\nimport mpdopf_pyomo as mp\n"
               "r = mp.solve('ieee123', hours=1, solver='ipopt', validate=False)\n"
               "print(r.summary['solver_route'], repr(float(r.summary['objective_usd'])), 'pyomo.environ' in sys.modules)\n"
               "from mpdopf_pyomo import pyo\nprint(pyo.SolverFactory is not None, 'pyomo.environ' in sys.modules)")
    assert got[0] == "executable" and got[2] == "False", got
    assert got[3:] == ["True", "True"]  # any other name still comes from pyomo.environ, on first use
    lib = _run("import mpdopf_pyomo as mp\n"
               "print(repr(float(mp.solve('ieee123', hours=1, solver='cyipopt', validate=False).summary['objective_usd'])))")
    assert abs(float(got[1]) - float(lib[0])) <= 1e-8 * abs(float(lib[0]))
