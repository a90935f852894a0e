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

# CPU kernels pinned to AVX2 on x86-64 (the runner pins them for every notebook it runs; see nbs/00_core.ipynb)
PIN = $(shell $(BIN)/python -c "from compress_papers.core import pinned_kernel_env as p; print(' '.join(f'{k}={v}' for k, v in p().items()))")
# The smoke check: every experiment notebook once, two at a time with one thread each (JOBS). Then, side by side and
# each from an empty checkpoint cache, two checks: the $(DETERMINISM) notebooks run again (as many threads each) must give
# identical results.json (determinism), and the $(CROSS) notebooks run with two threads and the processor's own kernels
# must give the same verdicts (what another machine may see). CROSS holds only notebooks whose verdicts rest on paired
# tests or margins that survive such a change; add each paper once its verdicts do.
JOBS ?= 2
DETERMINISM ?= baselines vaq int8-training deep-kmeans
CROSS ?= baselines
# Library tests: two pytest workers (a file each at a time), one thread each
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: all venv reproduce test test-fast sync-check nbtest pytest smoke docs docs-test browser qemu lab export clean

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

## The tests: library/notebooks in sync, notebooks clean, the core notebooks' tests, pytest, every experiment notebook
## once at smoke size through the runner (with the determinism and cross-setting checks), and the site in a browser.
test: $(STAMP) sync-check nbtest pytest smoke docs-test

## The inner loop: the same without the experiment notebooks.
test-fast: $(STAMP) sync-check nbtest pytest

# nbdev_export and nbdev_clean must leave the tree unchanged: the notebooks are the source of truth.
sync-check: $(STAMP)
	@before=$$(cat compress_papers/*.py nbs/*.ipynb | sha1sum); \
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean; \
	after=$$(cat compress_papers/*.py nbs/*.ipynb | sha1sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export/nbdev_clean changed compress_papers/ or nbs/: export and clean, then commit both"; exit 1; \
	else echo "ok: notebooks and library in sync, notebooks clean"; fi

# The core notebooks (00-09); the experiment notebooks (1x_) run once, through the runner, in `smoke`.
nbtest: $(STAMP)
	env $(PIN) $(BIN)/nbdev_test --n_workers 2 --skip_file_re '^([_.]|1[0-9]_|21_)'

pytest: $(STAMP) qemu
	env $(PIN) COMPRESS_PAPERS_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS) --ignore=tests/browser tests

# Every experiment notebook once at smoke size through the real runner (it fails if a notebook fails), then the
# determinism and cross-setting checks described above.
smoke: $(STAMP)
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; set -e; \
	$(BIN)/compress-papers reproduce --size smoke --jobs $(JOBS) --out $$tmp/a --cache $$tmp/cache-a; \
	test -s $$tmp/a/REPORT.md; \
	$(BIN)/compress-papers reproduce --size smoke --jobs $(JOBS) --out $$tmp/b --cache $$tmp/cache-b --runs $$tmp/runs-b --papers $(DETERMINISM) > $$tmp/b.log 2>&1 & b=$$!; \
	COMPRESS_PAPERS_THREADS=2 COMPRESS_PAPERS_NATIVE_KERNELS=1 $(BIN)/compress-papers reproduce --size smoke --out $$tmp/c --cache $$tmp/cache-c --runs $$tmp/runs-c --papers $(CROSS) > $$tmp/c.log 2>&1 & c=$$!; \
	wait $$b || { cat $$tmp/b.log; exit 1; }; wait $$c || { cat $$tmp/c.log; exit 1; }; \
	$(BIN)/compress-papers compare $$tmp/a $$tmp/b --exact --papers $(DETERMINISM); \
	$(BIN)/compress-papers compare $$tmp/a $$tmp/c --papers $(CROSS)

## The documentation site in site/: the README, one page per paper with its executed notebook, the report, the API.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python docs/build.py

## The site in headless Chromium: every page renders, no broken link or image; screenshots in site/screenshots/.
docs-test: docs browser
	$(BIN)/python -m pytest -q tests/browser

# Debian's chromium and chromium-driver, installed when missing (as root; otherwise say how)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium chromium-driver >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }; \
	  else echo "the browser test needs Debian's chromium and chromium-driver: sudo apt-get install chromium chromium-driver"; exit 1; fi; }

# Debian's qemu-user, installed when missing (as root; otherwise the cross-vendor test is skipped): tests/test_cross_vendor.py
# runs a probe under an emulated Intel CPU and checks that it computes the same bits as this processor
qemu:
	@command -v qemu-x86_64 >/dev/null || [ "$$(uname -m)" != x86_64 ] || { \
	  if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q qemu-user >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q qemu-user >/dev/null; }; \
	  else echo "note: tests/test_cross_vendor.py is skipped without qemu-x86_64: sudo apt-get install qemu-user"; fi; }

## JupyterLab on nbs/ with the project's environment (installs JupyterLab on first use).
lab: $(STAMP)
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install -q jupyterlab
	env $(PIN) $(BIN)/jupyter lab --notebook-dir=nbs

export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean

clean:
	rm -rf nbs/_runs .pytest_cache site build/site-src build/mkdocs.yml
