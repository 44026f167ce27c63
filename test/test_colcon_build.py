"""A ROS user can drop the repository into a colcon workspace and build it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "install", "log", "__pycache__", "*.egg-info",
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
    share = prefix / "share" / "modseg_ros"
    for sub in ("launch/any2seg.launch.py", "config/fastdds_shm.xml", "rviz/any2seg.rviz", "models", "package.xml"):
        assert (share / sub).exists(), sub
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "modseg_ros").exists()
    for script in ("lib/modseg_ros/any2seg_node", "lib/modseg_ros/modseg", "bin/modseg"):
        assert os.access(prefix / script, os.X_OK), script
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert (site / "modseg_ros" / "msg" / "_segmentation_info.py").exists()

    # The installed copy imports on its own: messages and core modules from the install tree.
    probe = (
        "import modseg_ros.core.types as t, modseg_ros.msg as m\n"
        "from modseg_ros.msg import SegmentationInfo, SensorHealthArray\n"
        "print(t.__file__); print(m.__file__); print(SegmentationInfo().model == '')\n"
    )
    run_env = {**env, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=run_env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    core_file, msg_file, ok = out.stdout.split()
    assert core_file.startswith(str(site)) and msg_file.startswith(str(site)) and ok == "True"
