# Two commands on a fresh machine (Python ≥ 3.10 and make are all it needs):
#   make demo   — install into .venv and run the whole chain end to end on built-in data
#   make test   — install into .venv, run the test suite and build the documentation site
# (make docs builds the site alone into build/site; make serve-docs serves it at localhost:8000)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
QCALO  := $(VENV)/bin/qcalo
# torch is pinned to the CPU wheel first: an unpinned resolve would pull GBs of CUDA packages.
TORCH  := torch==2.13.0

# Lint and format checks cover the docs' hooks and the tutorial notebook too (not the Markdown pages).
LINTED := src tests benchmarks docs/hooks docs/tutorial.ipynb

.PHONY: install demo test docs serve-docs bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(QCALO) demo --out demo_out

# Lint and format check first (seconds), then the type check of src/ and the import contracts
# (pyproject.toml: layers, evaluation on data only, independent kinds), then the tests, then the
# documentation site with --strict: a broken link, a missing page, a field without a meaning or a
# failing tutorial cell fails it (the notebook runs from scratch, limit 120 s).
test: install
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	QCALO_QUIET=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -n 2 --dist loadfile -q
	$(MAKE) docs

docs: install
	QCALO_QUIET=1 OMP_NUM_THREADS=1 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

serve-docs: install
	QCALO_QUIET=1 OMP_NUM_THREADS=1 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# Benchmarks print tables and write JSON to benchmarks/results/ (about 15 minutes on 2 cores).
# The Geant4 quality study is separate and long: $(PY) benchmarks/quality_g4.py --epochs 40
bench: install
	OMP_WAIT_POLICY=PASSIVE $(QCALO) bench circuits --out benchmarks/results/circuits.json --markdown benchmarks/results/circuits.md
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_simulate.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_generation.py --configs classical_photons hybrid_photons --threads 2
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_seed_training.py --threads 1
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_io_memory.py
	OMP_WAIT_POLICY=PASSIVE $(PY) benchmarks/bench_evaluation.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache build/site
