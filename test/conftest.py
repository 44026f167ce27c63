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
