"""Tutorial 2: solve the 5-hour IEEE 123 case distributed (ADMM and ENApp) and compare with the central plan.

Run it on its own with ``python docs/tutorials/02_distributed.py``; figures go to ``$MPDOPF_TUTORIAL_OUT``
(default ``tutorial-output/02_distributed``).
"""
# docs-requires: mpdopf_pyomo.decomposition:solve_distributed, mpdopf_pyomo.plots:convergence_figure
import os
from pathlib import Path

import pandas as pd

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.pipeline import solve_case

OUT = Path(os.environ.get("MPDOPF_TUTORIAL_OUT", "tutorial-output/02_distributed"))
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 110)
pd.set_option("display.max_columns", 12)

# %% areas
case = load_case("ieee123", hours=5)
print(case.buses.groupby("area").size().rename("buses").to_frame().T)
for c in case.cut_branches:
    print(f"cut branch {c}: {case.branches.at[c, 'from_bus']} -> {case.branches.at[c, 'to_bus']}")

# %% central
central = solve_case(case, algorithm="central")
print(f"central objective {central.summary['objective_usd']:.4f} USD")

# %% admm
admm = solve_case(case, algorithm="admm", executor="serial")
d = admm.summary["distributed"]
print(f"ADMM: {d['iterations']} iterations, primal residual {d['primal_residual']:.2e}, "
      f"dual residual {d['dual_residual']:.2e}")
print(f"values exchanged per iteration: {d['exchanged_per_iteration']}")
print(f"objective {admm.summary['objective_usd']:.4f} USD")

# %% convergence
conv = admm.extra_tables["convergence"]
print(conv.head(3).to_string())
print("...")
print(conv.tail(3).to_string())

# %% convergence_figure
from mpdopf_pyomo.plots import convergence_figure

convergence_figure(case, admm).savefig(OUT / "admm_convergence.png", dpi=90, bbox_inches="tight")

# %% enapp
enapp = solve_case(case, algorithm="enapp", executor="serial")
d = enapp.summary["distributed"]
print(f"ENApp: {d['iterations']} iterations, primal residual {d['primal_residual']:.2e}, "
      f"dual residual {d['dual_residual']:.2e}")
print(f"objective {enapp.summary['objective_usd']:.4f} USD")
convergence_figure(case, enapp).savefig(OUT / "enapp_convergence.png", dpi=90, bbox_inches="tight")

# %% compare
rows = {}
for name, r in (("central", central), ("admm", admm), ("enapp", enapp)):
    s = r.summary
    rows[name] = {
        "objective_usd": s["objective_usd"],
        "substation_kwh": s["substation_energy_kwh"],
        "losses_kwh": s["losses_kwh"],
        "v_min_pu": s["v_min_pu"],
        "max_dv_vs_central_pu": (r.voltages - central.voltages.loc[r.voltages.index]).abs().max().max(),
        "max_dbattery_vs_central_kw": (
            (r.battery["discharge_kw"] - r.battery["charge_kw"])
            - (central.battery["discharge_kw"] - central.battery["charge_kw"])
        ).abs().max(),
    }
table = pd.DataFrame(rows).T
table["gap_percent"] = 100 * (table["objective_usd"] / central.summary["objective_usd"] - 1)
print(table.to_string(float_format=lambda x: f"{x:.6g}"))

# %% processes
# The same run with each area in its own worker process (the area models live in the workers).
admm_p = solve_case(case, algorithm="admm", executor="processes")
print(f"processes: {admm_p.summary['distributed']['iterations']} iterations, "
      f"objective {admm_p.summary['objective_usd']:.4f} USD, "
      f"total {admm_p.summary['timings'].get('solve_s', float('nan')):.1f} s solve")
