"""Tutorial 3: validate a plan in OpenDSS and read the mismatch report.

Run it on its own with ``python docs/tutorials/03_validation.py``; figures go to ``$MPDOPF_TUTORIAL_OUT``
(default ``tutorial-output/03_validation``).
"""
# docs-requires: mpdopf_pyomo.validation:attach_validation, mpdopf_pyomo.plots:validation_figure
import os
from pathlib import Path

import pandas as pd

from mpdopf_pyomo.case import load_case
from mpdopf_pyomo.pipeline import solve_case
from mpdopf_pyomo.validation import attach_validation

OUT = Path(os.environ.get("MPDOPF_TUTORIAL_OUT", "tutorial-output/03_validation"))
OUT.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 14)

# %% exact
case = load_case("ieee123", hours=5)
exact = solve_case(case, formulation="exact")
attach_validation(case, exact)
v = exact.summary["validation"]
print({k: v[k] for k in ("max_abs_dv_pu", "max_abs_dp_sub_kw", "max_abs_dq_sub_kvar")})
print("passed:", v.get("passed"))

# %% by_hour
print(exact.extra_tables["validation_by_hour"].to_string(float_format=lambda x: f"{x:.3g}"))

# %% voltages
dss_v = exact.extra_tables["validation_voltages"]
diff = (dss_v - exact.voltages.loc[dss_v.index]).abs()
worst = diff.stack().idxmax()
print(f"largest voltage difference: bus {worst[0]}, hour {worst[1]}: {diff.stack().max():.2e} pu")

# %% figure
from mpdopf_pyomo.plots import validation_figure

validation_figure(case, exact).savefig(OUT / "validation_exact.png", dpi=90, bbox_inches="tight")

# %% linear
# The LinDistFlow plan drops the losses: OpenDSS shows what that costs.
linear = solve_case(case, formulation="linear")
attach_validation(case, linear)
rows = {}
for name, r in (("exact", exact), ("linear", linear)):
    val = r.summary["validation"]
    rows[name] = {
        "objective_usd": r.summary["objective_usd"],
        "max_abs_dv_pu": val["max_abs_dv_pu"],
        "max_abs_dp_sub_kw": val["max_abs_dp_sub_kw"],
        "max_abs_dq_sub_kvar": val["max_abs_dq_sub_kvar"],
        "passed": val.get("passed"),
    }
print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4g}"))
validation_figure(case, linear).savefig(OUT / "validation_linear.png", dpi=90, bbox_inches="tight")

# %% cli
# The same from the command line: `solve` validates by default and writes the tables beside the plan.
import subprocess
import sys

run = subprocess.run(
    [sys.executable, "-m", "mpdopf_pyomo", "solve", "--case", "ieee123", "--hours", "5", "--no-plots",
     "--out", str(OUT / "run")],
    capture_output=True, text=True, check=True,
)
print(run.stdout.replace(str(OUT.resolve()), "<out>").replace(str(OUT), "<out>"))
