"""A ROS user can drop the repository into a colcon workspace and build it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ros_layout import PACKAGE, check_prefix, package_prefix

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
IGNORED = shutil.ignore_patterns(".git", ".venv*", "build", "install", "log", "__pycache__", "*.egg-info",
                                 ".pytest_cache", ".hypothesis", "out", "cache")  # fmt: skip


@pytest.mark.slow
def test_colcon_build_installs_package_messages_and_data(tmp_path):
    colcon = VENV / "bin" / "colcon"
    shutil.copytree(REPO, tmp_path / "src" / "modseg_ros", ignore=IGNORED)
    env = {**os.environ, "CMAKE_PREFIX_PATH": str(VENV), "AMENT_PREFIX_PATH": str(VENV)}
    result = subprocess.run(
        [str(colcon), "build", "--packages-select", "modseg_ros", "--cmake-args", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    prefix = tmp_path / "install" / "modseg_ros"
    assert os.access(prefix / "bin" / "modseg", os.X_OK)
    # a sourced workspace comes before the environment in AMENT_PREFIX_PATH, and wins
    assert package_prefix(PACKAGE, os.pathsep.join([str(prefix), str(VENV)])) == prefix
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (site / "modseg_ros" / "msg" / "_segmentation_info.py").exists()

    # The installed copy imports on its own: messages and core modules from the install tree.
    probe = (
        "import modseg_ros.core.types as t, modseg_ros.msg as m\n"
        "from modseg_ros.msg import SegmentationInfo, SensorHealthArray\n"
        "print(t.__file__); print(m.__file__); print(SegmentationInfo().model == '')\n"
    )
    run_env = {**env, "PYTHONPATH": str(site)}
    # ament index, share/ and lib/modseg_ros as ros2 launch and ros2 pkg resolve them (ros_layout.py)
    check_prefix(prefix, run_env)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=run_env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    core_file, msg_file, ok = out.stdout.split()
    assert core_file.startswith(str(site)) and msg_file.startswith(str(site)) and ok == "True"
