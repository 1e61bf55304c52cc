# Two commands a new user needs: `make demo` and `make test`. Each bootstraps .venv once.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SERVICES := .cache/services-stamp

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)  ## seed the offline demo registry and open the console as alice
	$(BIN)/acrbot demo

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
	rm -rf $(VENV) .acrbot-demo .pytest_cache .cache
