# difflens: `make demo` runs every notebook offline, `make test` runs the default test suite.
PYTHON ?= python3
VENV ?= .venv
# Override for a CUDA build, e.g. make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126"
TORCH ?= torch==2.13.0
TORCH_PIN := $(firstword $(TORCH))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.difflens-installed
CONFIG ?= demo

.PHONY: install demo reproduce test test-slow test-browser browser-deps explore lint docs bench data toy-model clean-runs

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev,notebooks]" "$(TORCH_PIN)"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m difflens.runner --config demo

# make reproduce GPUS=8: one process per GPU under accelerate launch, extraction shared out
GPUS ?= 1
reproduce: $(STAMP)
ifeq ($(GPUS),1)
	$(PY) -m difflens.runner --config paper
else
	$(VENV)/bin/accelerate launch --multi_gpu --num_processes $(GPUS) --num_machines 1 \
		--mixed_precision no --dynamo_backend no -m difflens.runner --config paper
endif

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The explorer page driven in headless Chromium (selenium); skipped, with the reason, when
# Debian's chromium and chromedriver are missing (make browser-deps installs them, as root).
test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser tests/test_explorer_browser.py

browser-deps:
	apt-get update
	apt-get install -y chromium chromium-driver

# Serve notebooks/12_explorer.ipynb as a standalone page (Voila) on 127.0.0.1, a free port.
explore: $(STAMP)
	@port=$$($(PY) -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	echo "difflens explorer: http://127.0.0.1:$$port/ (starting; Ctrl-C stops it)"; \
	$(VENV)/bin/voila notebooks/12_explorer.ipynb --no-browser --Voila.ip=127.0.0.1 --port=$$port

lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests benchmarks notebooks
	$(VENV)/bin/ruff format --check lib tests benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pydoclint lib/difflens

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) benchmarks/distances.py
	$(PY) benchmarks/extraction.py

data: $(STAMP)
	$(PY) -m difflens.data download voc --root $${DIFFLENS_DATA:-data}
	$(PY) -m difflens.data download coco --root $${DIFFLENS_DATA:-data}
	$(PY) -m difflens.data download davis --root $${DIFFLENS_DATA:-data}
	$(PY) -m difflens.data download spair --root $${DIFFLENS_DATA:-data}

# The committed toy models (see each MODEL_CARD.md): the shape classifier that checks samples,
# the positive control ("toy", four stages) and the denoiser-only model ("toy-denoiser"), each resumable
# from its checkpoint; then the validation search of the controls' layer and timestep and the
# class-prompted sample check of each model.
toy-model: $(STAMP)
	$(PY) -m difflens.runner.toy_model classifier
	$(PY) -m difflens.runner.toy_model train --preset control-stage1
	$(PY) -m difflens.runner.toy_model train --preset control-stage2
	$(PY) -m difflens.runner.toy_model train --preset control-stage3
	$(PY) -m difflens.runner.toy_model train --preset control
	$(PY) -m difflens.runner.toy_model train --preset denoiser
	$(PY) -m difflens.runner.toy_model search --model toy
	$(PY) -m difflens.runner.toy_model search --model toy-denoiser
	$(PY) -m difflens.runner.toy_model check-samples --model toy
	$(PY) -m difflens.runner.toy_model check-samples --model toy-denoiser

clean-runs:
	rm -rf runs
