"""Test-session set-up shared by every test.

Before anything imports rclpy, this process gets the project's DDS environment (loopback discovery,
large-message Fast DDS profile) and a ROS domain id that no other process on the machine holds, so
concurrent test runs never see each other. Child processes inherit both.
"""
from __future__ import annotations

import os

from modseg_ros.ros.env import DISCOVERY_RANGE, apply_dds_environment, use_private_domain

os.environ[DISCOVERY_RANGE] = "LOCALHOST"  # tests never leave the machine, whatever the caller set
apply_dds_environment()
use_private_domain()

# --- the node's outputs over DDS, recorded in this process (one recorder per test module) --------------
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def outputs():
    from harness import Outputs  # imports rclpy: only after the DDS environment above

    recorder = Outputs()
    yield recorder
    recorder.close()


# --- hypothesis: modest example counts (the suite runs on 2 shared cores); no per-example deadline,
# since a loaded machine makes timings meaningless. HYPOTHESIS_PROFILE=ci replays a fixed set of
# examples (reproducible in CI); =thorough searches far longer, by hand.
from hypothesis import HealthCheck, settings  # noqa: E402

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("default", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=40, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# --- soak runs: minutes long, only with --soak ------------------------------------------------------


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true", help="also run the soak tests (minutes; see modseg bench soak)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak (or modseg bench soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
