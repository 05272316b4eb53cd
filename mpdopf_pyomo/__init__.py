"""mpdopf_pyomo: multi-period (distributed) optimal power flow for distribution feeders in Pyomo."""

import time as _time

__version__ = "0.1.0"
#: When the package was first imported: the CLI's total wall time counts from here.
_START = _time.perf_counter()
