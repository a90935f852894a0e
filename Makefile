# compress-papers: `make reproduce` (the full run) and `make test` (what CI runs).
# Both create .venv and install the project on first use, and again whenever settings.ini or setup.py change.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat settings.ini setup.py | sha1sum | cut -c1-12)
TORCH := torch==2.14.1 torchvision==0.29.1
# Optional knobs for `make reproduce`: PAPERS="baselines ..." DEVICE=cuda DATA=cifar10 DATA_ROOT=/data SIZE=full ALLOW_DIRTY=1
SIZE ?= full
DEVICE ?= cpu
DATA ?= mnist5k
RUN_ARGS = --size $(SIZE) --device $(DEVICE) --data $(DATA) $(if $(PAPERS),--papers $(PAPERS)) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) $(if $(ALLOW_DIRTY),--allow-dirty)

.PHONY: all venv reproduce test sync-check nbtest pytest smoke lab export clean

all: test

$(STAMP): settings.ini setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]" $(TORCH)
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

## The main job: run every notebook at full size, write figures/<paper>/ and figures/REPORT.md.
reproduce: $(STAMP)
	$(BIN)/compress-papers reproduce $(RUN_ARGS)

## The tests: library/notebooks in sync, notebooks clean, notebook tests, pytest, and a smoke reproduction.
test: $(STAMP) sync-check nbtest pytest smoke

# nbdev_export and nbdev_clean must leave the tree unchanged: the notebooks are the source of truth.
sync-check: $(STAMP)
	@before=$$(cat compress_papers/*.py nbs/*.ipynb | sha1sum); \
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean; \
	after=$$(cat compress_papers/*.py nbs/*.ipynb | sha1sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export/nbdev_clean changed compress_papers/ or nbs/: export and clean, then commit both"; exit 1; \
	else echo "ok: notebooks and library in sync, notebooks clean"; fi

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2

pytest: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Every notebook again through the real runner, into a temporary folder; then the determinism check:
# the smoke results written by nbdev_test and by this second run must be byte-identical.
smoke: $(STAMP)
	@tmp=$$(mktemp -d); set -e; \
	$(BIN)/compress-papers reproduce --size smoke --out $$tmp/figures; \
	ls $$tmp/figures/*/; test -s $$tmp/figures/REPORT.md; \
	for f in nbs/_runs/figures-smoke/*/results.json; do \
	  p=$$(basename $$(dirname $$f)); \
	  if [ -f $$tmp/figures/$$p/results.json ]; then \
	    if cmp $$f $$tmp/figures/$$p/results.json; then echo "ok: $$p results.json identical across two runs"; \
	    else echo "FAIL: $$p results.json differs between the nbdev_test run and the smoke run"; rm -rf $$tmp; exit 1; fi; \
	  fi; \
	done; rm -rf $$tmp

## JupyterLab on nbs/ with the project's environment (installs JupyterLab on first use).
lab: $(STAMP)
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install -q jupyterlab
	$(BIN)/jupyter lab --notebook-dir=nbs

export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

clean:
	rm -rf nbs/_runs .pytest_cache
