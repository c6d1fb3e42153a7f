# scorelib: `make demo` trains on the embedded demo data; `make test` runs the tests and notebooks.
# Both create .venv on first use. PyTorch is installed first (TORCH), so that the package's
# `torch>=2.6` (pyproject.toml's floor) is already met and pip does not pull a second, multi-GB build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.scorelib-installed
# The real data sets: scorelib.datasets reads its local copy from $SCORELIB_DATA, set here to ../shared/data
# beside the checkout where that exists (the notebooks, tests and benchmarks then download nothing).
export SCORELIB_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: install demo test test-fast notebooks bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scorelib-train --save-dir checkpoints/demo --no-epoch-checkpoints

test: $(STAMP)
	SCORELIB_FAST=1 $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider

# The unit tests alone: no notebooks, no browser, none of the slow end-to-end runs (a few minutes).
test-fast: $(STAMP)
	SCORELIB_FAST=1 $(PY) -m pytest tests -m "not slow and not browser" -p no:cacheprovider

# Re-run the notebooks in full mode (05 in its medium mode) and keep their outputs (times measured: docs/training.md).
notebooks: $(STAMP)
	for nb in notebooks/0*.ipynb; do SCORELIB_FAST=0 $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1800 $$nb || exit 1; done
	$(PY) tools/clean_notebooks.py notebooks/0*.ipynb

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) checkpoints
