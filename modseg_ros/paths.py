"""Where the package's data (config/, models/, launch/, rviz/) lives, in every install route.

- source checkout or ``pip install -e``: the repository root, next to this package;
- colcon or CMake install: ``<prefix>/share/modseg_ros``;
- anything else registered in the ament index.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

PACKAGE = "modseg_ros"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    # <prefix>/lib/pythonX.Y/site-packages/modseg_ros/paths.py -> <prefix>/share/modseg_ros
    installed = here.parents[3] / "share" / PACKAGE
    if (installed / "config").is_dir():
        return installed
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / PACKAGE
        if prefix and (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (config/, models/): looked beside {here}, "
        f"in {installed} and in AMENT_PREFIX_PATH"
    )


def config_file(name: str) -> Path:
    return share_dir() / "config" / name


def model_file(name: str) -> Path:
    return share_dir() / "models" / name
