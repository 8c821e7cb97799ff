# Both targets do all of their own set-up on a fresh clone: create .venv if
# missing, install the project (editable, with the dev requirements), then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.supcomp-installed

.PHONY: demo test bench install clean

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

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/report.py
	$(PY) benchmarks/tms_train.py --append benchmarks/RESULTS.md

clean:
	rm -rf build *.egg-info supcomp/_C*.so $(VENV)

bench-sweep: $(STAMP)
	$(PY) benchmarks/sweep_tms.py --append benchmarks/RESULTS.md

# C++ kernels under AddressSanitizer + UndefinedBehaviorSanitizer (separate build in build/sanitize/,
# the normal build is untouched); runs the C++-touching tests there. `make test` runs it too.
.PHONY: sanitize
sanitize: $(STAMP)
	$(PY) tools/sanitize.py
# Added prerequisite (no recipe change): CI's `make test` also runs the sanitizer pass.
test: sanitize
