# Two commands a new user needs: `make demo` and `make test`. Each bootstraps .venv once.
# `make notebook` opens the example notebook in JupyterLab (it adds Jupyter to .venv once).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NOTEBOOK_STAMP := $(VENV)/.notebook-stamp
# Jupyter refuses to run as root unless told; the machines here are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

SERVICES := .cache/services-stamp
# setuptools ends every editable install with an "Editable installation" note (folders named
# like a package may shadow it): information, and the only warning left once pyproject.toml
# stopped using deprecated keys. Only that note is silenced (tests/test_packaging.py).
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation:UserWarning"

.PHONY: demo notebook test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## seed the offline demo registry and open the console as alice
	$(BIN)/acrbot demo

$(NOTEBOOK_STAMP): $(STAMP)
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --quiet -e '.[test,notebook]' jupyterlab
	touch $(NOTEBOOK_STAMP)

notebook: $(NOTEBOOK_STAMP)  ## open examples/registry-cleanup.ipynb in JupyterLab, on its own demo
	$(BIN)/jupyter lab $(ALLOW_ROOT) examples/registry-cleanup.ipynb

# The real servers the tests use: docker-registry (apt, needs root) and Azurite (npm).
$(SERVICES): tests/install-services.sh
	bash tests/install-services.sh
	mkdir -p .cache && touch $(SERVICES)

test: $(STAMP) $(SERVICES)  ## run the whole test suite
	$(BIN)/pytest

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .acrbot-demo examples/.acrbot-notebook-demo .pytest_cache .cache
