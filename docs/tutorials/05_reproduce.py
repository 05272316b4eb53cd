"""Reproducing the paper: ``python -m mpdopf_pyomo reproduce`` and the table it writes.

Run it on its own with ``python docs/tutorials/05_reproduce.py``; the run folder goes to
``$MPDOPF_TUTORIAL_OUT`` (default ``tutorial-output/05_reproduce``).
"""
# docs-requires: mpdopf_pyomo.reproduce:reproduce
import os
import subprocess
import sys
from pathlib import Path

OUT = Path(os.environ.get("MPDOPF_TUTORIAL_OUT", "tutorial-output/05_reproduce"))
OUT.mkdir(parents=True, exist_ok=True)

# %% command
# What `make paper` runs; the folder is given relative to OUT so that the page shows no build path.
run = subprocess.run([sys.executable, "-m", "mpdopf_pyomo", "reproduce", "--out", "paper"],
                     cwd=OUT, capture_output=True, text=True)
print(run.stdout.rstrip())
assert run.returncode == 0, run.stderr[-3000:]

# %% files
print("\n".join(sorted(p.name for p in (OUT / "paper").iterdir() if not p.name.startswith("."))))
# The page includes the Markdown table the command wrote (table.md, beside this cell's output).
(OUT / "table.md").write_text((OUT / "paper" / "reproduce.md").read_text().split("\n", 2)[2])

# %% convergence
import pandas as pd  # noqa: E402

conv = pd.read_csv(OUT / "paper" / "enapp_convergence.csv")
print(conv[["iteration", "method", "primal_residual", "dual_residual", "objective_usd"]].to_string(index=False))
