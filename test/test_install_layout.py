"""After ``make setup`` the environment is a ROS 2 install prefix that ``ros2 launch`` can use.

``ros2 launch modseg_ros any2seg.launch.py`` (with AMENT_PREFIX_PATH naming the environment) finds
the package in the ament index, the launch file and parameter files in its share directory and
``any2seg_node`` in its libexec directory, lib/modseg_ros; ``ros2 pkg executables modseg_ros``
lists the executables. The lookup rules are restated in ros_layout.py (the real tools are not on
PyPI; docs/install.md tells how to check with them). test_colcon_build.py checks the same for a
colcon install.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ros_layout import PACKAGE, check_prefix, libexec_executable, package_prefix, run_entry_probe

# What a user's AMENT_PREFIX_PATH holds on the make-setup route: this environment (after any
# workspace the user sourced, which ament searches first).
AMENT_PREFIX_PATH = os.pathsep.join(p for p in (os.environ.get("AMENT_PREFIX_PATH"), sys.prefix) if p)


@pytest.fixture(scope="module")
def prefix() -> Path:
    found = package_prefix(PACKAGE, AMENT_PREFIX_PATH)
    assert found is not None, f"{PACKAGE} is not in the ament index of {AMENT_PREFIX_PATH} (run make setup)"
    return found


def test_ament_index_finds_the_package_in_this_environment(prefix):
    # the real ament_index_python (installed with rclpy) agrees with the restated rule
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    saved = os.environ.get("AMENT_PREFIX_PATH")
    os.environ["AMENT_PREFIX_PATH"] = AMENT_PREFIX_PATH
    try:
        assert Path(get_package_prefix(PACKAGE)) == prefix
        assert Path(get_package_share_directory(PACKAGE)) == prefix / "share" / PACKAGE
    finally:
        if saved is None:
            del os.environ["AMENT_PREFIX_PATH"]
        else:
            os.environ["AMENT_PREFIX_PATH"] = saved


def test_launch_files_and_executables_resolve_as_ros2_launch_does(prefix):
    check_prefix(prefix, dict(os.environ))


def test_libexec_node_runs_from_the_shebang(prefix):
    # the kernel's own exec of the script (what launch does), through its shebang
    cli = prefix / "lib" / PACKAGE / "modseg"
    out = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "usage: modseg" in out.stdout + out.stderr


def test_node_started_from_another_ros_environment_runs_with_this_one(prefix, tmp_path):
    # ros2 launch from a sourced ROS installation or from another environment of ROS wheels: the
    # child inherits that environment's library path and PYTHONPATH, and the wheels' bootstrapper
    # flag that keeps this environment's Python from setting up its own library path (on this
    # route, before the prologue, the node died in create_publisher: "Could not import
    # 'rosidl_typesupport_c' for package 'sensor_msgs'")
    script = prefix / "lib" / PACKAGE / "any2seg_node"
    if "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in script.read_text():
        pytest.skip(f"{prefix} is a colcon install: the sourced environment is the node's own")
    shadow = tmp_path / "other_ros" / "site-packages" / "rclpy"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the rclpy of another ROS installation')\n")
    env = {**os.environ, "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1", "LD_LIBRARY_PATH": str(tmp_path / "other_ros" / "lib"),
           "PYTHONPATH": str(shadow.parent)}  # fmt: skip
    run_entry_probe(script, "modseg_ros.ros.node", env)


def test_missing_libexec_directory_is_reported_like_launch_ros(tmp_path):
    # the failure the make-setup route had before lib/modseg_ros was installed
    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / PACKAGE).write_text("")
    assert package_prefix(PACKAGE, str(tmp_path)) == tmp_path
    with pytest.raises(LookupError, match="but libexec directory .* does not exist"):
        libexec_executable(tmp_path, PACKAGE, "any2seg_node")
