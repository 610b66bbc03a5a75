# cmhost: `make serve` runs the service, `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test soak bench lint typecheck clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/cmhost serve $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

soak: $(STAMP)
	CMHOST_SOAK=1 $(BIN)/python -m pytest -q -m slow $(ARGS)

bench: $(STAMP)
	$(BIN)/python bench/describe_servers.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cmhost tests bench

typecheck: $(STAMP)
	$(BIN)/mypy cmhost

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench-scale bench-all
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(ARGS)

# Every benchmark of issue 6, one after the other (~20-25 min on 2 cores).
bench-all: $(STAMP)
	$(BIN)/python bench/describe.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/create.py
	$(BIN)/python bench/memory.py
