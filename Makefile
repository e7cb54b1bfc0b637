PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-any-order results bench clean chromium

# The stamp depends on pyproject.toml so a dependency change reinstalls.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,search]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	RAY_AUTH_MODE=disabled $(BIN)/ganforge run jobs/quickstart.yaml

# Headless Chromium renders the search report in tests/test_report.py. apt-get runs only when chromium is missing
# and apt is there (as root); elsewhere the report's browser tests skip and say why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
		&& (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) \
		|| echo "make chromium: chromium is not installed and cannot be installed here; browser tests will skip"; }

test: install chromium
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q --durations=15 tests

# The suite must pass in any order: modules and the tests inside each shuffled (the seed is printed with -v).
test-any-order: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q --durations=15 --random-order-bucket=module tests

# docs/results.md's generated tables (bench/doc_tables.py lists them), from the committed job outcomes and run logs in
# bench/results/ (nothing trains when the logs hold every run; a missing run trains, deterministically on CPU).
results: install
	$(BIN)/python bench/doc_tables.py --update docs/results.md

clean:
	rm -rf $(VENV) ganforge-results mlflow.db mlruns
