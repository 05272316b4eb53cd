# One-command workflows. `make run` and `make test` set the project up first (once; cached in .venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-done

.PHONY: setup run test bench docs doctor clean

setup: $(STAMP)

# Re-run setup when the dependencies change. Steps: venv, packages (with dev extras), the IPOPT library
# route (Debian's ASL + PyNumero, compiled here), an optional try of IDAES' binary download (fails fast
# offline), and a record of what was installed.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m mpdopf_pyomo install-solvers
	@# Users with internet get IDAES' ipopt executable this way; offline it fails fast (exit code is not
	@# reliable, so `doctor` below says which route is actually in use).
	-@timeout 60 $(VENV)/bin/idaes get-extensions >/dev/null 2>&1 || true
	$(PY) -m pip freeze --exclude-editable > $(VENV)/installed.txt
	$(PY) -m mpdopf_pyomo doctor
	@touch $(STAMP)

run: setup
	$(PY) -m mpdopf_pyomo doctor

test: setup
	$(PY) -m pytest -q

doctor: setup
	$(PY) -m mpdopf_pyomo doctor

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
