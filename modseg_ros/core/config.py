"""Typed configuration from the node's parameter file (config/any2seg.yaml), validated.

The parameter file is the single source of truth for the node, ``modseg run``, the launch file, the
offline replay and the embedded world. ROS parameter files nest keys under
``<node name or /**>: ros__parameters:``; here they are flattened to dotted names
(``rig.lidar.xyz``), which is also how rclpy names them.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import ConfigError

Parameters = dict[str, Any]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Parameters:
    flat: Parameters = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML file's document; ConfigError naming ``what`` and the file if it cannot be read or parsed."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from err


def plain(value: Any) -> Any:
    """numpy scalars and arrays, tuples and paths -> plain YAML-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def dump_yaml(document: Mapping[str, Any]) -> str:
    """A YAML text of ``document`` (numpy values converted), keys in their given order."""
    return yaml.safe_dump(plain(document), sort_keys=False, default_flow_style=None, width=120)


def load_parameters(path: str | Path, node_name: str = "any2seg") -> Parameters:
    """Read a ROS 2 parameter file: the ``/**`` section, then the node's own section over it."""
    path = Path(path)
    document = read_yaml(path, "parameter file")
    if not isinstance(document, Mapping):
        raise ConfigError(f"parameter file {path} must map node names to 'ros__parameters'")
    params: Parameters = {}
    for section in ("/**", node_name, f"/{node_name}"):
        body = document.get(section)
        if body is None:
            continue
        if not isinstance(body, Mapping) or not isinstance(body.get("ros__parameters"), Mapping):
            raise ConfigError(f"parameter file {path}: section '{section}' has no 'ros__parameters' mapping")
        params.update(flatten(body["ros__parameters"]))
    if not params:
        raise ConfigError(f"parameter file {path} has no '/**' or '{node_name}' section")
    return params


def _vector(params: Parameters, key: str, length: int) -> list[float]:
    value = params.get(key)
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise ConfigError(f"parameter '{key}' must be a list of {length} numbers, got {value!r}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"parameter '{key}' must be a list of {length} numbers, got {value!r}") from None


def _number(params: Parameters, key: str, default: float | None = None) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"parameter '{key}' must be a number, got {value!r}")
    return float(value)


def _intrinsics(params: Parameters, prefix: str) -> Intrinsics | None:
    width = int(_number(params, f"{prefix}.width", 0))
    height = int(_number(params, f"{prefix}.height", 0))
    hfov = _number(params, f"{prefix}.hfov_deg", 0.0)
    if width == 0 and height == 0 and hfov == 0.0:
        return None
    if width <= 0 or height <= 0 or not 0.0 < hfov < 180.0:
        raise ConfigError(
            f"parameters '{prefix}.width/height/hfov_deg' must be positive with 0 < hfov_deg < 180 "
            f"(or all 0 to share the camera's), got {width}, {height}, {hfov}"
        )
    return Intrinsics.from_fov(width, height, hfov)


def rig_from_parameters(params: Parameters) -> Rig:
    """The sensor rig described by the ``rig.*`` parameters."""
    base_from: dict[Modality, Transform] = {}
    intrinsics: dict[Modality, Intrinsics] = {}
    frame_ids: dict[Modality, str] = {}
    for modality in MODALITIES:
        prefix = f"rig.{modality.value}"
        base_from[modality] = Transform.from_xyz_rpy(_vector(params, f"{prefix}.xyz", 3), _vector(params, f"{prefix}.rpy", 3))
        frame_ids[modality] = str(params.get(f"{prefix}.frame_id", modality.value))
        if modality is not Modality.LIDAR:
            intr = _intrinsics(params, prefix)
            if intr is not None:
                intrinsics[modality] = intr
    if Modality.CAMERA not in intrinsics:
        raise ConfigError("parameters 'rig.camera.width/height/hfov_deg' are required")
    camera = intrinsics.pop(Modality.CAMERA)
    return Rig(camera=camera, base_from=base_from, intrinsics=intrinsics, frame_ids=frame_ids)
