PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-any-order bench clean

# The stamp depends on pyproject.toml so a dependency change reinstalls.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,search]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	RAY_AUTH_MODE=disabled $(BIN)/ganforge run jobs/quickstart.yaml

test: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q --durations=15 tests

# The suite must pass in any order: modules and the tests inside each shuffled (the seed is printed with -v).
test-any-order: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q --durations=15 --random-order-bucket=module tests

clean:
	rm -rf $(VENV) ganforge-results mlflow.db mlruns
