# Two commands a new user needs: `make demo` and `make test`. Each bootstraps .venv once, from
# the lock (requirements/test.txt: every package pinned, with its hashes), then installs the
# project itself, editable. `make lock` refreshes the lock from pyproject.toml's ranges.
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
# stopped using deprecated keys. Only that note is silenced (tests/unit/test_packaging.py).
QUIET_EDITABLE := PYTHONWARNINGS="ignore:Editable installation:UserWarning"
LOCK := requirements/test.txt requirements/runtime.txt
LOCK_VENV := .cache/lock-venv
PIP_TOOLS := pip-tools==7.5.2
LOCK_FLAGS ?=
# The lock is the package index's: no pip.conf, local index or wheel directory colours its pins
# or hashes (pip's default index, by name only).
LOCK_ENV := PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= CUSTOM_COMPILE_COMMAND="make lock"
COMPILE := $(LOCK_ENV) $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: help demo notebook test test-fast lint format clean lock docs

# The lock first (pinned and hashed: --require-hashes refuses anything else), then the
# project itself, editable, without touching the dependencies (--no-deps) and with the locked
# setuptools (--no-build-isolation: nothing unpinned is fetched to build it).
$(STAMP): pyproject.toml requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/test.txt
	$(QUIET_EDITABLE) $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock after changing a range in pyproject.toml: pins the ranges still allow are
# kept; `make lock LOCK_FLAGS=--upgrade` takes the newest releases the ranges allow. The test
# lock resolves everything, the runtime lock (deploy/Dockerfile) is held to its versions.
# `dockerfile` (tests only) has x86_64 wheels only: its marker is put back after compiling.
lock:  ## re-pin requirements/*.txt (hashes included) from pyproject.toml and requirements/build.in
	test -x $(LOCK_VENV)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_ENV) $(LOCK_VENV)/bin/python -m pip install --quiet '$(PIP_TOOLS)'; }
	$(COMPILE) $(LOCK_FLAGS) --extra test -o requirements/test.txt pyproject.toml requirements/build.in
	sed -i 's/^dockerfile==\([0-9.]*\) \\$$/dockerfile==\1 ; platform_machine == "x86_64" \\/' requirements/test.txt
	$(COMPILE) $(LOCK_FLAGS) --constraint requirements/test.txt -o requirements/runtime.txt \
		pyproject.toml requirements/build.in

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 18

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

docs: $(STAMP)  ## build the docs site (docs/, mkdocs.yml) into site/, strict: a broken link fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The edit-test loop: every test that starts no server process (tests/servers/ and the tests
# using docker-registry or Azurite are marked `server`, see tests/conftest.py) and is not
# marked `slow`; no docker-registry or Azurite needed. `make test` runs all of them.
test-fast: $(STAMP)  ## run the tests that need no server process (< 60 s on 2 cores)
	$(BIN)/pytest -m "not server and not slow"

lint: $(STAMP)  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) site .acrbot-demo examples/.acrbot-notebook-demo .pytest_cache .cache
