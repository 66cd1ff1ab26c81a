# Skip Connections course module. Quick start: `make book` and `make test`.
# Everything installs into .venv from requirements.txt (exact versions; CPU build of torch).

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
# One thread and a fixed hash seed: printed numbers must not depend on the machine's load.
export OMP_NUM_THREADS ?= 1
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

NOTEBOOKS := $(sort $(wildcard chapters/*.ipynb))
BUILD_FLAGS := -W -n --keep-going

.PHONY: help install book test unit guard nbval nbval-default test-repro build browser execute bench mutation lab clean vendor-check vendor-fetch

help:
	@echo "make book     build the HTML book strictly (creates .venv on first use)"
	@echo "make test     unit tests, notebook guard, nbval, strict build, browser check"
	@echo "make execute  re-execute every chapter notebook in place (deterministic)"
	@echo "make test-repro  nbval under portable and native CPU kernels, 1 and 2 threads"
	@echo "make bench    measure the speed budgets, write BENCHMARKS.md"
	@echo "make mutation  mutation-test reslab with mutmut (about an hour), write MUTATION.md"
	@echo "make lab      open JupyterLab with widgets working"
	@echo "make clean    remove _build and caches (keeps .venv; 'make distclean' removes it)"

install: $(STAMP)

$(STAMP): requirements.txt code/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build $(BUILD_FLAGS) .
	@echo "The book is at file://$(abspath _build/html/index.html)"

build: book

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests --ignore=tests/test_browser.py --ignore=tests/test_notebooks.py -p no:cacheprovider

guard: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_notebooks.py -p no:cacheprovider

nbval: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg chapters/

# The same nbval suite with PyTorch's portable (non-SIMD) kernels, as on an older CPU.
nbval-default: $(STAMP)
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q -p no:cacheprovider --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg chapters/

# Stored outputs must reproduce on other CPUs and thread counts: four legs of nbval.
test-repro: $(STAMP)
	@for cap in default native; do for threads in 1 2; do \
	  echo "== nbval with ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$threads"; \
	  if [ $$cap = native ]; then unset ATEN_CPU_CAPABILITY; else export ATEN_CPU_CAPABILITY=$$cap; fi; \
	  OMP_NUM_THREADS=$$threads $(BIN)/python -m pytest -q -p no:cacheprovider --nbval \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg chapters/ || exit 1; \
	done; done

browser: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser.py

# Order matters: cheap checks first; the browser check needs the built book.
test: $(STAMP)
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory guard
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory browser

execute: $(STAMP)
	cd chapters && for nb in $(notdir $(NOTEBOOKS)); do \
	  echo "executing $$nb"; \
	  $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; \
	done

# Speed budgets measured on this machine; writes BENCHMARKS.md (needs a built book for the
# browser measurement: run `make book` first).
bench: $(STAMP)
	$(BIN)/python tools/bench.py

# Mutation score of reslab's library layer (>= 80 %); judged-equivalent survivors are listed in
# tests/mutation_equivalent.toml. MODULES="nets probes" limits the run to part of the scope.
mutation: $(STAMP)
	$(BIN)/python tools/mutation.py $(if $(MODULES),--modules $(MODULES))

lab: $(STAMP)
	$(BIN)/jupyter lab chapters/

vendor-check:
	$(PYTHON) tools/vendor_assets.py --check

vendor-fetch:
	$(PYTHON) tools/vendor_assets.py --fetch

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -name __pycache__ -not -path "./.venv/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
