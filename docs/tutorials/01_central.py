"""Tutorial 1: solve the paper's 5-hour IEEE 123 case centrally and read the results.

Run it on its own with ``python docs/tutorials/01_central.py``; figures go to ``$MPDOPF_TUTORIAL_OUT``
(default ``tutorial-output/01_central``). The documentation shows the output of exactly this script.
"""
# docs-requires: mpdopf_pyomo.plots
import os
from pathlib import Path

import pandas as pd

from mpdopf_pyomo.case import describe_case, list_cases, load_case
from mpdopf_pyomo.pipeline import solve_case

OUT = Path(os.environ.get("MPDOPF_TUTORIAL_OUT", "tutorial-output/01_central"))
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 110)
pd.set_option("display.max_columns", 12)

# %% cases
for name, description in list_cases():
    print(f"{name:<20} {description}")

# %% load
case = load_case("ieee123", hours=5)
print(describe_case(case))

# %% tables
print(case.branches.head())
print(case.batteries.head(3))
print(case.profile)

# %% solve
results = solve_case(case, algorithm="central", formulation="exact", solver="ipopt")
s = results.summary
print(f"status       {s['status']}  ({s['solver']}, route {s['solver_route']}, "
      f"{s['solver_stats']['iterations']} iterations)")
print(f"objective    {s['objective_usd']:.4f} USD  (energy {s['energy_cost_usd']:.4f} USD)")
print(f"substation   {s['substation_energy_kwh']:.1f} kWh, losses {s['losses_kwh']:.2f} kWh")
print(f"voltages     {s['v_min_pu']:.4f} .. {s['v_max_pu']:.4f} pu")

# %% substation
print(results.substation.round(4))

# %% battery
bat = results.battery
print(bat.loc["48"].round(3))
net_kw = (bat["discharge_kw"] - bat["charge_kw"]).groupby(level="t").sum()
print("net battery output per hour, kW (three-phase):")
print(net_kw.round(1).to_string())

# %% voltages
v = results.voltages
lowest = v.min(axis=0)
print("lowest voltage per hour, pu:")
print(pd.DataFrame({"bus": v.idxmin(axis=0), "v_pu": lowest.round(4)}).T)

# %% figures
from mpdopf_pyomo.plots import figures

figs = figures(case, results)
for name, fig in figs.items():
    fig.savefig(OUT / f"{name}.png", dpi=90, bbox_inches="tight")
print("figures:", ", ".join(sorted(figs)))

# %% save
folder = results.save(OUT / "run", figures={})
print(sorted(p.name for p in folder.iterdir()))
