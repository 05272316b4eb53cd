"""The registry of distributed algorithms: name -> algorithm class (see :mod:`.decomposition.algorithm`).

Light on purpose (no numpy, no Pyomo): the CLI reads :func:`names` for its ``--algorithm`` choices before
anything heavy is imported. The built-in algorithms are named here as ``module:Class`` and imported on
first use; :func:`register` adds another (a plugin, or a test's toy method) without touching the driver.
"""

from __future__ import annotations

from typing import Any

#: The built-in distributed algorithms, imported on first use.
BUILTIN = {
    "admm": "mpdopf_pyomo.decomposition.admm:ADMM",
    "enapp": "mpdopf_pyomo.decomposition.enapp:ENApp",
}
_registered: dict[str, Any] = {}


def register(name: str, cls: Any) -> Any:
    """Register ``cls`` (a :class:`~mpdopf_pyomo.decomposition.algorithm.Algorithm` subclass) as ``name``;
    returns ``cls``. ``name`` must not be ``central`` nor a built-in name."""
    if name == "central" or name in BUILTIN:
        raise ValueError(f"algorithm name {name!r} is taken")
    _registered[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an algorithm added by :func:`register` (tests clean up with it)."""
    _registered.pop(name, None)


def names() -> tuple[str, ...]:
    """Every distributed algorithm's name: the built-in ones, then the registered ones."""
    return (*BUILTIN, *_registered)


def get(name: str) -> Any:
    """The algorithm class called ``name``; :class:`KeyError` when there is none."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise KeyError(name)
    import importlib

    module, attr = BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), attr)
