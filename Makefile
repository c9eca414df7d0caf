# Two commands do all the set-up: `make test` and `make demo`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo demo-excerpt lint clean browser base-install

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The report's page is checked in headless Chromium: Debian's, installed here when missing.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }; } \
	  || echo "chromium is not installed: the report's browser test will be skipped"

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/saverzoo demo

# ruff (rules and format), the import contracts of pyproject.toml (the layers) and the type
# checker; .pre-commit-config.yaml runs the same before each commit.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# The promise of the README: `pip install saverzoo` without extras runs the queries. A second venv
# with the base install only answers them, and a command that needs the worker extra says so.
BASE_VENV := .venv-base
base-install:
	rm -rf $(BASE_VENV)
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/pip install --quiet --upgrade pip
	$(BASE_VENV)/bin/pip install --quiet .
	$(BASE_VENV)/bin/python -m tests.base_install $(BASE_VENV)/bin/saverzoo

clean:
	rm -rf $(VENV) $(BASE_VENV) build *.egg-info

# The README's excerpt of the demo's output, from a real run of the demo (about 4 minutes).
demo-excerpt: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m orchestrator.demo.excerpt --readme README.md
