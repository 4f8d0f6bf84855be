# difflens: `make demo` runs every notebook offline, `make test` runs the default test suite.
PYTHON ?= python3
VENV ?= .venv
# Override for a CUDA build, e.g. make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
TORCH_PIN := $(firstword $(TORCH))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.difflens-installed
CONFIG ?= demo

.PHONY: install demo reproduce test test-slow lint bench data toy-model clean-runs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,notebooks]" "$(TORCH_PIN)"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m difflens.run --config demo

reproduce: $(STAMP)
	$(PY) -m difflens.run --config paper

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks notebooks
	$(VENV)/bin/ruff format --check lib tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/distances.py
	$(PY) benchmarks/extraction.py

data: $(STAMP)
	$(PY) -m difflens.data download voc --root $${DIFFLENS_DATA:-data}
	$(PY) -m difflens.data download coco --root $${DIFFLENS_DATA:-data}
	$(PY) -m difflens.data download davis --root $${DIFFLENS_DATA:-data}

toy-model: $(STAMP)
	$(PY) -m difflens.toymodel train

clean-runs:
	rm -rf runs
