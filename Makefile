# Both user targets do all of their own set-up on a fresh clone: create .venv if missing,
# install the project (editable, with the dev requirements), then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.supcomp-installed

.PHONY: demo test lint format sanitize dist-check bench bench-gpu bench-sweep install docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall when the build inputs change (C++ sources, setup.py, requirements).
$(STAMP): $(PY) setup.py pyproject.toml requirements-dev.txt $(wildcard csrc/*.cpp csrc/*.h)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/supcomp demo

# Lint and format checks: ruff (lint + format) over the Python, clang-format over csrc/.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror csrc/*.cpp csrc/*.h

# Apply the formatters (what `make lint` checks).
format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i csrc/*.cpp csrc/*.h

# The whole suite, then the C++ kernels under AddressSanitizer + UndefinedBehaviorSanitizer
# (separate build in build/sanitize/; the normal build is untouched), then the sdist -> wheel -> fresh venv check.
test: lint
	$(PY) -m pytest -q tests
	$(PY) tools/sanitize.py
	$(PY) tools/dist_check.py

sanitize: $(STAMP)
	$(PY) tools/sanitize.py

# The documentation site (mkdocs Material + mkdocstrings, mkdocs.yml) into site/. --strict: a broken link,
# a page missing from the nav or an API reference that does not resolve fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# sdist -> wheel (built from the sdist) -> fresh venv outside the tree -> op check there
# (tools/dist_check.py says what each step checks).
dist-check: $(STAMP)
	$(PY) tools/dist_check.py

bench: $(STAMP)
	$(PY) benchmarks/report.py

# On one CUDA card: the GPU report (sparse_encode matrix, every op in fp32/fp16/bf16 against its peers, the
# toy-model step), printed and put into benchmarks/RESULTS.md with card, driver, torch and triton versions.
bench-gpu: $(STAMP)
	$(PY) benchmarks/gpu_report.py --matrix --half --append benchmarks/RESULTS.md

bench-sweep: $(STAMP)
	$(PY) benchmarks/sweep_tms.py --append benchmarks/RESULTS.md

clean:
	rm -rf build site *.egg-info supcomp/_C*.so $(VENV)
