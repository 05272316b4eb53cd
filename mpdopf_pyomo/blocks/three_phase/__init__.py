"""Three-phase network physics (the ``three-phase`` formulation family).

* :mod:`.current_injection` - exact unbalanced AC in rectangular node voltages: Kirchhoff's current law
  through the primitive admittances of :mod:`mpdopf_pyomo.network.phases`, ZIP loads wye and delta,
  stiff elements and the source with current variables, voltage limits; ``3ph-exact`` builds on it.
"""
