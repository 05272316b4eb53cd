"""Declarative Pyomo blocks, one physical relation family each, built over (element x hour) index sets.

* :mod:`.branch_flow` - DistFlow: bus balances, voltage drops, and the current relation chosen by the
  formulation (``exact``, ``socp``, ``linear``)
* :mod:`.pv` - PV inverters: forecast active power, controllable reactive power within the inverter limit
* :mod:`.battery` - batteries: charge/discharge, reactive power, state-of-charge recursion, terminal rule
* :mod:`.substation` - substation import and its energy cost
* :mod:`.three_phase` - the unbalanced three-phase network (``--formulation 3ph-exact``), whose PVs and
  batteries are the blocks above

Each module exposes one ``declare_*`` function that adds a named sub-block to a parent block. A block
reads only its own tables, so the same functions build the whole feeder or one area of it.
"""
