# One-command workflows. `make run` and `make test` set the project up first (once; cached in .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done
# PNNL's distopf, only for `make bench-distopf`: its own environment, its pins never touch $(VENV).
DISTOPF_VENV := .venv-distopf

.PHONY: setup run test bench bench-large bench-distopf docs docs-check doctor paper clean

setup: $(STAMP)

# Re-run setup when the dependencies or the solver build change. Steps: venv, packages (with dev and docs
# extras), the IPOPT library route (Debian's ASL + PyNumero, compiled here), IPOPT on MUMPS 5.8 (cyipopt and an
# AMPL ipopt on casadi's libipopt, into .venv/lib/mpdopf-ipopt; optional: a failure is reported, not fatal, and
# the cyipopt-wheels route stays), an optional try of IDAES' binary download (fails fast offline), and a
# record of what was installed.
$(STAMP): pyproject.toml mpdopf_pyomo/solver_build.py mpdopf_pyomo/native/ipopt_ampl.cpp
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,docs]'
	$(PY) -m mpdopf_pyomo install-solvers
	@# Users with internet get IDAES' ipopt executable this way; offline it fails fast (exit code is not
	@# reliable, so `doctor` below says which route is actually in use).
	-@timeout 60 $(VENV)/bin/idaes get-extensions >/dev/null 2>&1 || true
	$(PY) -m pip freeze --exclude-editable > $(VENV)/installed.txt
	$(PY) -m mpdopf_pyomo doctor
	@touch $(STAMP)

run: setup
	$(PY) -m mpdopf_pyomo solve --case ieee123 --hours 5

# The source study's run (ieee123-published, 5 h, central and ENApp over 4 areas): its figures beside ours,
# per phase, printed and written to runs/reproduce/ (reproduce.md, reproduce.csv). About 10 s.
paper: setup
	$(PY) -m mpdopf_pyomo reproduce

test: setup
	$(PY) -m pytest -q

# The documentation (docs/mkdocs.yml, sources in docs/src): run the tutorials (docs/tutorials/*.py) so the
# pages show this run's code, output and figures, then build the site into site/ with warnings as errors.
docs: setup
	$(PY) docs/run_tutorials.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -f docs/mkdocs.yml

# The built site as a reader sees it, offline (docs/check_site.py): equations are MathML and laid out as
# mathematics in headless Chromium, nothing loads from the network, no `Sentinel.UNSET` defaults, no
# absolute build paths; screenshots of the main pages go to site-screenshots/ (look at them). Without
# Chromium (`apt-get install chromium`) only the HTML checks run.
docs-check: docs
	$(PY) docs/check_site.py site --shots site-screenshots

# Speed of `solve --case ieee123` for T = 1, 5, 12, 24 h in fresh processes: tables in bench/results/
# (Markdown and CSV, gitignored) and on stdout. `$(PY) -m mpdopf_pyomo.benchmark --profile 24` breaks one
# run down by stage. Then the public feeders from ../shared/reference/feeders (skipped when absent): the
# base-case gap of the balanced conversion and 5-h central and ADMM solves (mpdopf_pyomo/feeders.py), and
# the three-phase table (3ph-exact / 3ph-linear on IEEE 13/34/123, 3ph-exact on the 8500, node by node).
# `--commands`: whole-command wall times (the default 5-h command, 24 h without figures, and the published
# case beside bench/plain_pyomo.py, the same model written directly in Pyomo and solved with cyipopt-wheels),
# run round-robin, median of 5, with IPOPT's split into function evaluations and linear algebra
# (bench/results/commands.md); `--baseline DIR` adds the same commands from another source tree.
# benchmark_scale: central solves of ieee123 x 5/24 h and generated 2,561 x 5/24 h and 10,241 x 4 h feeders
# with IPOPT's time split into function evaluations and linear algebra (bench/results/scale.md; ~3 min).
# All six add their tables to bench/results (marker .mpdopf-run); a file there that they did not write,
# named like one of their tables, stops the tool before it runs (exit 2) and is kept; so does a bad option
# (argparse's usage error naming it, exit 2). A failed run stops a tool with that run's own exit code.
bench: setup
	$(PY) -m mpdopf_pyomo.benchmark --out bench/results
	$(PY) -m mpdopf_pyomo.benchmark --commands --repeat 5 --out bench/results
	$(PY) -m mpdopf_pyomo.benchmark_scale --out bench/results
	-$(PY) -m mpdopf_pyomo.feeders table --out bench/results
	-$(PY) -m mpdopf_pyomo.feeders three-phase --out bench/results
	-$(PY) -m mpdopf_pyomo.bench_distopf --env $(DISTOPF_VENV) --out bench/results

# PNNL's distopf 1.0.2 (PyPI) on its own unbalanced IEEE 123 with batteries, 24 steps, nonlinear branch flow,
# beside `solve --case ieee123-opendss --hours 24 --formulation 3ph-exact` (with and without validation), both
# on our IPOPT executable: bench/results/distopf.md and .csv (mpdopf_pyomo/bench_distopf.py). Installs distopf
# into $(DISTOPF_VENV) first (needs the package index; skipped with one line when that fails). About 5 min.
bench-distopf: setup
	@if $(DISTOPF_VENV)/bin/python -c 'import distopf' 2>/dev/null || \
	   { { test -x $(DISTOPF_VENV)/bin/python || $(PYTHON) -m venv $(DISTOPF_VENV); } && \
	     $(DISTOPF_VENV)/bin/python -m pip install -q 'distopf==1.0.2' > $(DISTOPF_VENV)/install.log 2>&1; }; \
	then $(PY) -m mpdopf_pyomo.bench_distopf --env $(DISTOPF_VENV) --out bench/results; \
	else echo "distopf comparison skipped: could not install distopf==1.0.2 into $(DISTOPF_VENV) (offline? see $(DISTOPF_VENV)/install.log)"; fi

# The large generated feeders (1,025 x 5 h, 2,561 x 24 h, 10,241 x 4 h buses x hours; central, ADMM, ENApp):
# tables in bench/results/large.md and .csv. About 30-40 min on 2 cores (not part of `make bench`).
bench-large: setup
	$(PY) -m mpdopf_pyomo.benchmark --large --out bench/results

doctor: setup
	$(PY) -m mpdopf_pyomo doctor

clean:
	rm -rf $(VENV) $(DISTOPF_VENV) build *.egg-info .pytest_cache
