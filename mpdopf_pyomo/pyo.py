"""Pyomo's modelling API as the models use it (``from mpdopf_pyomo import pyo``), without loading
``pyomo.environ``.

``import pyomo.environ`` imports and registers the plugins of every Pyomo package (GDPopt, MindtPy, DAE,
the APPSI and PyNumero interfaces ...), about 0.15 s of the 1.6 s default ``solve`` command, though a
model needs only :mod:`pyomo.core`'s components and the IPOPT executable route only the NL writer it
imports itself. Any other name (``SolverFactory`` for the library and ripopt routes, say) is looked up in
``pyomo.environ`` on first use, which then loads as usual.
"""

from __future__ import annotations

from typing import Any

from pyomo.core import (  # noqa: F401  (re-exported)
    Block,
    ConcreteModel,
    Constraint,
    Expression,
    Objective,
    Param,
    Set,
    Var,
    minimize,
    sqrt,
    value,
)


def __getattr__(name: str) -> Any:
    """Anything else from ``pyomo.environ`` (imported then, with its plugins)."""
    import pyomo.environ

    return getattr(pyomo.environ, name)
