"""mpdopf_pyomo: multi-period (distributed) optimal power flow for distribution feeders in Pyomo."""

__version__ = "0.1.0"
