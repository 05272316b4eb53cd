"""Tutorial 4: bring your own feeder -- a case for the Baran & Wu 33-bus feeder, areas, solvers, formulations.

Run it on its own with ``python docs/tutorials/04_own_feeder.py``; the case file and figures go to
``$MPDOPF_TUTORIAL_OUT`` (default ``tutorial-output/04_own_feeder``).
"""
# docs-requires: mpdopf_pyomo.validation:attach_validation, mpdopf_pyomo.plots:figures
import os
import shutil
import time
from pathlib import Path

import pandas as pd

import mpdopf_pyomo

OUT = Path(os.environ.get("MPDOPF_TUTORIAL_OUT", "tutorial-output/04_own_feeder"))
OUT.mkdir(parents=True, exist_ok=True)
# The network model shipped with the documentation (docs/examples/case33bw/master.dss).
MODEL = Path(mpdopf_pyomo.__file__).resolve().parents[1] / "docs" / "examples" / "case33bw" / "master.dss"
pd.set_option("display.width", 110)
pd.set_option("display.max_columns", 12)

# %% powerflow
import opendssdirect as dss

dss.Text.Command(f"compile [{MODEL}]")
dss.Solution.Solve()
p_kw, q_kvar = (-x for x in dss.Circuit.TotalPower())
v = dict(zip(dss.Circuit.AllNodeNames(), dss.Circuit.AllBusMagPu()))  # per node: "18.1", "18.2", ...
worst = min(v, key=v.get)
print(f"substation {p_kw:.1f} kW + {q_kvar:.1f} kvar, losses {dss.Circuit.Losses()[0] / 1000:.2f} kW")
print(f"lowest voltage {v[worst]:.4f} pu at bus {worst}")

# %% case
shutil.copy(MODEL, OUT / "case33bw.dss")
CASE_TOML = """\
[case]
name = "case33bw"
description = "Baran & Wu 33-bus feeder, 5 PVs, 4 batteries, 4-hour evening peak"
network = "case33bw.dss"    # relative to this file

[bases]
s_kva = 3000.0              # kVA three-phase; v_kv_ll comes from the model (12.66 kV)

[settings]
v_sub_pu = 1.03
v_min_pu = 0.95
v_max_pu = 1.05
inverter_limit = "circle"
terminal_soc = "hard"

[pv]
buses = ["14", "18", "24", "30", "33"]
p_rated_kw = { "18" = 150.0 }   # explicit rating at one bus; the others use p_factor x load
p_factor = 1.0
s_factor = 1.2

[battery]
buses = ["12", "18", "25", "32"]
p_factor = 0.5
e_hours = 3.0

[profiles.daily]            # 4 periods of one hour: a short afternoon-to-evening window
load_mult = [0.70, 0.80, 0.95, 0.85]
pv_mult = [0.9, 0.6, 0.2, 0.0]
price_usd_per_kwh = [0.06, 0.08, 0.25, 0.15]
"""
case_file = OUT / "case33bw.toml"
case_file.write_text(CASE_TOML)

# %% load
from mpdopf_pyomo.case import describe_case, load_case

case = load_case(case_file)
print(describe_case(case).replace(str(OUT.resolve()), "<out>"))

# %% formulations
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.validation import attach_validation

rows = {}
plans = {}
for formulation in ("exact", "socp", "linear"):
    r = solve_case(case, formulation=formulation, solver="ipopt")
    attach_validation(case, r)
    plans[formulation] = r
    s, val = r.summary, r.summary["validation"]
    rows[formulation] = {
        "objective_usd": s["objective_usd"],
        "losses_kwh": s["losses_kwh"],
        "v_min_pu": s["v_min_pu"],
        "opendss_max_dv_pu": val["max_abs_dv_pu"],
        "opendss_max_dp_kw": val["max_abs_dp_sub_kw"],
    }
print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4g}"))

# %% solvers
from mpdopf_pyomo.solvers import probe

rows = {}
for solver in ("ipopt", "ripopt"):
    info = probe(solver)
    if not info.available:
        print(f"{solver}: not available here ({info.detail})")
        continue
    t0 = time.perf_counter()
    r = solve_case(case, formulation="exact", solver=solver)
    rows[solver] = {
        "objective_usd": r.summary["objective_usd"],
        "iterations": r.summary["solver_stats"]["iterations"],
        "route": r.summary.get("solver_route"),
        "wall_s": round(time.perf_counter() - t0, 2),
    }
print(pd.DataFrame(rows).T.to_string())

# %% options
# Solver options go through unchanged, as with --solver-option on the command line.
r = solve_case(case, solver="ipopt", options={"tol": 1e-10, "max_iter": 200})
print(f"tol=1e-10: objective {r.summary['objective_usd']:.6f} USD, "
      f"{r.summary['solver_stats']['iterations']} iterations")

# %% figures
from mpdopf_pyomo.plots import figures

figs = figures(case, plans["exact"])
for name in ("network", "battery", "voltages"):
    figs[name].savefig(OUT / f"{name}.png", dpi=90, bbox_inches="tight")

# %% areas
# Cut the three laterals off the main feeder: 2-19, 3-23 and 6-26 (bus pairs or branch names both work).
areas_toml = CASE_TOML + """
[areas]
cut_branches = [["2", "19"], ["3", "23"], ["6", "26"]]
"""
(OUT / "case33bw_4areas.toml").write_text(areas_toml)
case4 = load_case(OUT / "case33bw_4areas.toml")
for a, grp in case4.buses.groupby("area"):
    print(f"area {a}: buses {' '.join(grp.index)}")

# %% ports
from mpdopf_pyomo import problem

for a in sorted(case4.buses["area"].unique()):
    view = problem.area_view(case4, int(a))
    m = problem.build_model(case4, "exact", area=int(a))
    kinds = sorted({(k, c) for k, c, _ in m.ports})
    print(f"area {a}: root {view.root} ({'port' if view.root_is_port else 'substation'}), "
          f"{len(m.ports)} port values: " + ", ".join(f"{k}[{c}]" for k, c in kinds))

# %% same_plan
# The partition changes nothing in the central problem: same plan, same cost.
r4 = solve_case(case4)
print(f"4 areas, central: {r4.summary['objective_usd']:.6f} USD;"
      f" one area: {plans['exact'].summary['objective_usd']:.6f} USD")
from mpdopf_pyomo.plots import network_figure

network_figure(case4, r4).savefig(OUT / "network_4areas.png", dpi=90, bbox_inches="tight")
