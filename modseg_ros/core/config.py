"""Typed configuration from the node's parameter file (config/any2seg.yaml), validated.

The parameter file is the single source of truth for the node, ``modseg run``, the launch file, the
offline replay and the embedded world. ROS parameter files nest keys under
``<node name or /**>: ros__parameters:``; here they are flattened to dotted names
(``rig.lidar.xyz``), which is also how rclpy names them.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modseg_ros.core.carla import GT_ENCODINGS, TAG_SETS
from modseg_ros.core.checks.consistency import ConsistencySettings
from modseg_ros.core.checks.motion_agreement import MotionAgreementSettings
from modseg_ros.core.checks.range_agreement import RangeAgreementSettings
from modseg_ros.core.encoding import EncodingConfig
from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.health import CameraChecks, DepthChecks, EventChecks, HealthConfig, LidarChecks, StreamLimits
from modseg_ros.core.sync import InputSync, SyncConfig
from modseg_ros.core.types import MODALITIES, EventTime, Modality
from modseg_ros.errors import ConfigError
from modseg_ros.paths import config_file

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


def resolved_topic(topic: str) -> str:
    """A topic name as a node in the root namespace resolves it (what a bag records)."""
    return topic if topic.startswith("/") else "/" + topic.removeprefix("~/")


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


# --- the node's configuration ----------------------------------------------------------------------

# Parameters every rclpy node has; they are not the node's to validate.
_ROS_PARAMETERS = ("use_sim_time", "start_type_description_service")
_ROS_PREFIXES = ("qos_overrides.",)

EVENTS_SOURCES = ("points", "image")
QOS_RELIABILITIES = ("best_effort", "reliable")
BACKENDS = ("torch", "onnx")


def default_parameters() -> Parameters:
    """The shipped parameter file: the default of every parameter and the list of known ones."""
    return load_parameters(config_file("any2seg.yaml"))


class _Reader:
    """Typed, validated access to flat parameters; every error names the parameter."""

    def __init__(self, params: Parameters):
        self.params = params

    def _get(self, key: str) -> Any:
        if key not in self.params:
            raise ConfigError(f"parameter '{key}' is missing")
        return self.params[key]

    def number(self, key: str, low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"parameter '{key}' must be a number, got {value!r}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise ConfigError(f"parameter '{key}' must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and value > high:
            raise ConfigError(f"parameter '{key}' must be <= {high:g}, got {value:g}")
        return value

    def positive(self, key: str) -> float:
        return self.number(key, 0.0, low_open=True)

    def integer(self, key: str, low: int | None = None) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter '{key}' must be an integer, got {value!r}")
        if low is not None and value < low:
            raise ConfigError(f"parameter '{key}' must be >= {low}, got {value}")
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise ConfigError(f"parameter '{key}' must be true or false, got {value!r}")
        return value

    def string(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise ConfigError(f"parameter '{key}' must be a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"parameter '{key}' must be one of {', '.join(choices)}, got '{value}'")
        return value

    def topic(self, key: str) -> str:
        """A ROS topic name: alphanumerics, '_' and '/' separators, '~' only first, no empty tokens."""
        value = self.string(key)
        body = value[1:] if value[:1] in "/~" else value
        tokens = body.lstrip("/").split("/") if value.startswith("~/") else body.split("/")
        if not value or not all(t and (t[0].isalpha() or t[0] == "_") and t.replace("_", "").isalnum() for t in tokens):
            raise ConfigError(f"parameter '{key}' is not a valid ROS topic name: '{value}'")
        return value

    def modalities(self, key: str) -> tuple[Modality, ...]:
        value = self._get(key)
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"parameter '{key}' must be a non-empty list of modalities, got {value!r}")
        try:
            parsed = tuple(Modality.parse(str(v)) for v in value)
        except ValueError as err:
            raise ConfigError(f"parameter '{key}': {err}") from None
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"parameter '{key}' lists a modality twice: {value!r}")
        return parsed

    def seconds(self, key: str, allow_zero: bool = True) -> int:
        """A duration in seconds -> integer nanoseconds."""
        return int(round(self.number(key, 0.0, low_open=not allow_zero) * 1e9))


@dataclass(frozen=True)
class TopicsConfig:
    """The node's input topics (relative names resolve in its namespace)."""

    camera: str
    camera_info: str
    depth: str
    lidar: str
    events: str  # PointCloud2 events
    events_image: str  # rendered event frames

    def sensor(self, modality: Modality, events_source: str) -> str:
        """The topic a modality's messages arrive on."""
        if modality is Modality.EVENTS:
            return self.events if events_source == "points" else self.events_image
        return getattr(self, modality.value)


@dataclass(frozen=True)
class GroundTruthConfig:
    """Where a bag's per-pixel ground truth is and how it is encoded (read by the replay evaluation)."""

    topic: str
    encoding: str  # one of core/carla.py GT_ENCODINGS
    carla_tags: str  # a key of core/carla.py TAG_SETS


@dataclass(frozen=True)
class InputsConfig:
    modalities: tuple[Modality, ...]  # subscribed and fused, canonical order
    events_source: str  # "points" | "image"
    event_time: EventTime  # how float event time fields are read
    qos_reliability: str  # "best_effort" | "reliable"
    qos_depth: int
    lidar_intensity_scale: float
    encode_on_arrival: bool  # encode each alive sensor's message when it arrives (off: in the worker)


@dataclass(frozen=True)
class ModelConfig:
    path: str  # "" = the shipped checkpoint
    arch: str
    backend: str
    threads: int  # 0 = library default
    process: bool  # the live node runs the network in a child process (model/engine_process.py)


@dataclass(frozen=True)
class OutputsConfig:
    frame_id: str
    overlay_alpha: float
    publish_points: bool
    qos_depth: int
    diagnostics_rate_hz: float
    health_rate_hz: float


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node, ``modseg run`` and the offline replay need, validated."""

    rig: Rig
    topics: TopicsConfig
    inputs: InputsConfig
    sync: SyncConfig
    sync_poll_rate_hz: float
    health: HealthConfig
    health_tick_rate_hz: float
    consistency: ConsistencySettings
    range_agreement: RangeAgreementSettings
    motion_agreement: MotionAgreementSettings
    model: ModelConfig
    encoding: EncodingConfig
    outputs: OutputsConfig
    ground_truth: GroundTruthConfig
    parameters: Parameters  # the merged flat parameters this was built from

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any], defaults: Parameters | None = None) -> NodeConfig:
        """Overlay ``params`` (flat dotted names, from rclpy or a YAML file) on the shipped defaults,
        reject unknown names and invalid values (ConfigError naming the parameter)."""
        merged = dict(default_parameters() if defaults is None else defaults)
        for key, value in params.items():
            if key in _ROS_PARAMETERS or key.startswith(_ROS_PREFIXES):
                continue
            if key not in merged:
                raise ConfigError(f"unknown parameter '{key}' (the known ones are listed in config/any2seg.yaml)")
            merged[key] = value
        r = _Reader(merged)
        enabled = r.modalities("inputs.modalities")
        inputs = InputsConfig(
            modalities=tuple(m for m in MODALITIES if m in enabled),
            events_source=r.string("inputs.events_source", EVENTS_SOURCES),
            event_time=EventTime(r.string("inputs.event_time", tuple(e.value for e in EventTime))),
            qos_reliability=r.string("inputs.qos_reliability", QOS_RELIABILITIES),
            qos_depth=r.integer("inputs.qos_depth", 1),
            lidar_intensity_scale=r.positive("inputs.lidar_intensity_scale"),
            encode_on_arrival=r.boolean("inputs.encode_on_arrival"),
        )
        ranked = r.modalities("sync.priority")
        unranked = [m.value for m in inputs.modalities if m not in ranked]
        if unranked:
            raise ConfigError(f"parameter 'sync.priority' must rank every enabled modality; missing {', '.join(unranked)}")
        priority = tuple(m for m in ranked if m in enabled)
        sync = SyncConfig(
            priority=priority,
            inputs={
                m: InputSync(
                    slop_ns=r.seconds(f"sync.{m.value}.slop_s", allow_zero=False),
                    offset_ns=int(round(r.number(f"sync.{m.value}.offset_s") * 1e9)),
                    reuse=r.boolean(f"sync.{m.value}.reuse"),
                    period_ns=int(round(1e9 / r.positive(f"health.{m.value}.rate_hz"))),
                )
                for m in priority
            },
            max_wait_ns=r.seconds("sync.max_wait_s"),
            queue_size=r.integer("sync.queue_size", 1),
            queue_duration_ns=r.seconds("sync.queue_duration_s", allow_zero=False),
        )
        health = _health_config(r, inputs.modalities)
        model = ModelConfig(
            path=r.string("model.path"),
            arch=r.string("model.arch"),
            backend=r.string("model.backend", BACKENDS),
            threads=r.integer("model.threads", 0),
            process=r.boolean("model.process"),
        )
        consistency = ConsistencySettings(
            enabled=r.boolean("health.consistency.enabled"),
            calibration=r.string("health.consistency.calibration"),
            exclude=r.boolean("health.consistency.exclude"),
            enter_s=r.number("health.consistency.enter_s", 0.0),
            recover_s=r.number("health.consistency.recover_s", 0.0),
        )
        range_agreement = RangeAgreementSettings(
            enabled=r.boolean("health.range_agreement.enabled"),
            max_shift_codes=r.positive("health.range_agreement.max_shift_codes"),
            max_misregistration=r.positive("health.range_agreement.max_misregistration"),
            tolerance_codes=r.integer("health.range_agreement.tolerance_codes", 1),
            min_pixels=r.integer("health.range_agreement.min_pixels", 1),
            smoothing_s=r.number("health.range_agreement.smoothing_s", 0.0),
            enter_s=consistency.enter_s,
            recover_s=consistency.recover_s,
            exclude=consistency.exclude,
        )
        motion_agreement = MotionAgreementSettings(
            enabled=r.boolean("health.motion_agreement.enabled"),
            blocks_across=r.integer("health.motion_agreement.blocks_across", 1),
            lag_s=r.positive("health.motion_agreement.lag_s"),
            still_below=r.positive("health.motion_agreement.still_below"),
            min_event_share=r.positive("health.motion_agreement.min_event_share"),
            min_moving_blocks=r.integer("health.motion_agreement.min_moving_blocks", 1),
            max_still_share=r.positive("health.motion_agreement.max_still_share"),
            exclude_still_share=r.positive("health.motion_agreement.exclude_still_share"),
            smoothing_s=r.number("health.motion_agreement.smoothing_s", 0.0),
            enter_s=consistency.enter_s,
            recover_s=consistency.recover_s,
            exclude=consistency.exclude,
        )
        if motion_agreement.exclude_still_share < motion_agreement.max_still_share:
            raise ConfigError("parameter 'health.motion_agreement.exclude_still_share' must be at least "
                              f"'health.motion_agreement.max_still_share' ({motion_agreement.max_still_share:g}), "
                              f"got {motion_agreement.exclude_still_share:g}")  # fmt: skip
        encoding = EncodingConfig(
            near_m=r.positive("encoding.near_m"),
            far_m=r.positive("encoding.far_m"),
            height_min_m=r.number("encoding.height_min_m"),
            height_max_m=r.number("encoding.height_max_m"),
            event_saturation=r.integer("encoding.event_saturation", 1),
            event_window_ms=r.positive("encoding.event_window_ms"),
        )
        if encoding.far_m <= encoding.near_m:
            raise ConfigError(f"parameter 'encoding.far_m' must exceed 'encoding.near_m' ({encoding.near_m:g})")
        if encoding.height_max_m <= encoding.height_min_m:
            raise ConfigError("parameter 'encoding.height_max_m' must exceed 'encoding.height_min_m'")
        rig = rig_from_parameters(merged)
        outputs = OutputsConfig(
            frame_id=r.string("outputs.frame_id") or rig.frame_ids[Modality.CAMERA],
            overlay_alpha=r.number("outputs.overlay_alpha", 0.0, 1.0),
            publish_points=r.boolean("outputs.publish_points"),
            qos_depth=r.integer("outputs.qos_depth", 1),
            diagnostics_rate_hz=r.positive("outputs.diagnostics_rate_hz"),
            health_rate_hz=r.positive("outputs.health_rate_hz"),
        )
        topics = TopicsConfig(**{name: r.topic(f"topics.{name}") for name in TopicsConfig.__dataclass_fields__})
        ground_truth = GroundTruthConfig(
            topic=r.topic("ground_truth.topic"),
            encoding=r.string("ground_truth.encoding", GT_ENCODINGS),
            carla_tags=r.string("ground_truth.carla_tags", tuple(TAG_SETS)),
        )
        return cls(
            rig=rig,
            topics=topics,
            inputs=inputs,
            sync=sync,
            sync_poll_rate_hz=r.positive("sync.poll_rate_hz"),
            health=health,
            health_tick_rate_hz=r.positive("health.tick_rate_hz"),
            consistency=consistency,
            range_agreement=range_agreement,
            motion_agreement=motion_agreement,
            model=model,
            encoding=encoding,
            outputs=outputs,
            ground_truth=ground_truth,
            parameters=merged,
        )

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
        """From a parameter file (default: the shipped one) plus overrides."""
        params = load_parameters(path) if path is not None else {}
        params.update(overrides or {})
        return cls.from_parameters(params)


def _health_config(r: _Reader, modalities: tuple[Modality, ...]) -> HealthConfig:
    streams = {}
    max_rate_factor = r.number("health.max_rate_factor", 0.0)
    if 0.0 < max_rate_factor <= 1.0:
        raise ConfigError(f"parameter 'health.max_rate_factor' must be 0 (off) or above 1, got {max_rate_factor:g}")
    for m in modalities:
        p = f"health.{m.value}"
        warn, error = r.number(f"{p}.warn_rate_hz", 0.0), r.number(f"{p}.error_rate_hz", 0.0)
        if error > warn:
            raise ConfigError(f"parameter '{p}.error_rate_hz' ({error:g}) must not exceed '{p}.warn_rate_hz' ({warn:g})")
        rate_hz = r.positive(f"{p}.rate_hz")
        streams[m] = StreamLimits(
            rate_hz=rate_hz,
            timeout_ns=r.seconds(f"{p}.timeout_s", allow_zero=False),
            warn_rate_hz=warn,
            error_rate_hz=error,
            frozen_count=r.integer(f"{p}.frozen_count", 0),
            max_rate_hz=max_rate_factor * rate_hz,
        )
    grid = r._get("health.camera.grid")
    if not (isinstance(grid, (list, tuple)) and len(grid) == 2 and all(isinstance(g, int) and g > 0 for g in grid)):
        raise ConfigError(f"parameter 'health.camera.grid' must be [rows, columns] of positive integers, got {grid!r}")

    def fraction(key: str) -> float:
        return r.number(key, 0.0, 1.0)

    return HealthConfig(
        streams=streams,
        window_ns=r.seconds("health.window_s", allow_zero=False),
        fail_count=r.integer("health.fail_count", 1),
        recover_count=r.integer("health.recover_count", 1),
        max_delay_ns=r.seconds("health.max_delay_s"),
        max_future_ns=r.seconds("health.max_future_s"),
        camera=CameraChecks(
            grid=(grid[0], grid[1]),
            dark_level=r.number("health.camera.dark_level", 0.0, 255.0),
            bright_level=r.number("health.camera.bright_level", 0.0, 255.0),
            uniform_std=r.number("health.camera.uniform_std", 0.0),
            warn_fraction=fraction("health.camera.warn_fraction"),
            error_fraction=fraction("health.camera.error_fraction"),
        ),
        depth=DepthChecks(
            warn_valid_fraction=fraction("health.depth.warn_valid_fraction"),
            error_valid_fraction=fraction("health.depth.error_valid_fraction"),
        ),
        lidar=LidarChecks(
            min_points=r.integer("health.lidar.min_points", 0),
            warn_no_return_ratio=fraction("health.lidar.warn_no_return_ratio"),
            error_no_return_ratio=fraction("health.lidar.error_no_return_ratio"),
            warn_blocked_sector_deg=r.number("health.lidar.warn_blocked_sector_deg", 0.0, 360.0),
            error_blocked_sector_deg=r.number("health.lidar.error_blocked_sector_deg", 0.0, 360.0),
        ),
        events=EventChecks(
            warn_min_active_fraction=fraction("health.events.warn_min_active_fraction"),
            error_max_active_fraction=fraction("health.events.error_max_active_fraction"),
        ),
    )
