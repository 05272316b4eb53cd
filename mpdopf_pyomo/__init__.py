"""mpdopf_pyomo: multi-period (distributed) optimal power flow for distribution feeders in Pyomo.

The Python API in three calls::

    import mpdopf_pyomo as mp
    res = mp.solve("ieee123", hours=5, algorithm="admm")   # load, solve, check in OpenDSS
    res.summary["objective_usd"], res.voltages, res.battery  # Results: pandas tables + summary
    mp.validate(res)                                       # the OpenDSS check again (returns its summary)

``mp.load_case`` loads a case for inspection or repeated solves. The names are imported on first use, so
``import mpdopf_pyomo`` stays light (the command line imports it for its version).
"""

import time as _time
from typing import Any

__version__ = "0.1.0"
#: When the package was first imported: the CLI's total wall time counts from here.
_START = _time.perf_counter()

#: Public name -> (module, attribute), imported on first use (PEP 562).
_API = {
    "solve": ("mpdopf_pyomo.pipeline", "solve"),
    "validate": ("mpdopf_pyomo.pipeline", "validate_results"),
    "load_case": ("mpdopf_pyomo.case", "load_case"),
    "Case": ("mpdopf_pyomo.case", "Case"),
    "Results": ("mpdopf_pyomo.results", "Results"),
    "MpdopfError": ("mpdopf_pyomo.errors", "MpdopfError"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mpdopf_pyomo' has no attribute {name!r}")
