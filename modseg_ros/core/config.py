"""Typed configuration from the node's parameter file (config/any2seg.yaml), validated.

The parameter file is the single source of truth for the node, ``modseg run``, the launch file, the
offline replay and the embedded world. ROS parameter files nest keys under
``<node name or /**>: ros__parameters:``; here they are flattened to dotted names
(``rig.lidar.xyz``), which is also how rclpy names them.

Each module reads and validates its own parameters (its settings' ``from_parameters``) and declares
them (``PARAMETERS``, core/params.py); ``NodeConfig`` composes those settings with the node's own
(rig, topics, inputs, model, outputs, ground truth), and ``declared_parameters`` lists them all.
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
from modseg_ros.core.health import HealthConfig
from modseg_ros.core.params import Parameter, ParameterReader, Parameters
from modseg_ros.core.sync import SyncConfig
from modseg_ros.core.transforms import RIG_SOURCES
from modseg_ros.core.types import MODALITIES, EventTime, Modality
from modseg_ros.errors import ConfigError
from modseg_ros.paths import config_file


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


def is_ros_parameter(key: str) -> bool:
    """A parameter rclpy gives every node (not the node's own)."""
    return key in _ROS_PARAMETERS or key.startswith(_ROS_PREFIXES)

EVENTS_SOURCES = ("points", "image")
QOS_RELIABILITIES = ("best_effort", "reliable")
BACKENDS = ("torch", "onnx")

RIG_PARAMETERS = (
    Parameter("rig.source", "tf: sensor poses from /tf_static and /tf (the rig.<sensor>.xyz/rpy until they arrive); "
              "yaml: rig.<sensor>.xyz/rpy only", " | ".join(RIG_SOURCES)),
    Parameter("rig.base_frame", "the vehicle frame the sensor poses are given in", "frame id"),
    *Parameter("rig.{m}.frame_id", "the sensor's frame (its messages' frame_id)", "frame id").for_modalities(),
    *Parameter("rig.{m}.xyz", "the sensor frame's position in the base frame", "[x, y, z] m").for_modalities(),
    *Parameter("rig.{m}.rpy", "the sensor frame's roll, pitch, yaw in the base frame (fixed axes)", "[r, p, y] rad").for_modalities(),
    *(p for m in MODALITIES if m is not Modality.LIDAR for p in (
        Parameter(f"rig.{m.value}.width", "image width until a CameraInfo arrives (0: the camera's)", "px"),
        Parameter(f"rig.{m.value}.height", "image height (0: the camera's)", "px"),
        Parameter(f"rig.{m.value}.hfov_deg", "horizontal field of view (0: the camera's)", "0 < hfov < 180 deg"),
    )),
)  # fmt: skip
LOOP_PARAMETERS = (
    Parameter("sync.poll_rate_hz", "how often max_wait and health changes are checked", "> 0 Hz"),
    Parameter("health.tick_rate_hz", "timeout and rate checks; detection delay <= timeout + 1 / tick_rate", "> 0 Hz"),
)


def declared_parameters() -> tuple[Parameter, ...]:
    """Every parameter of the node, as the modules that read it declare it (the one list the
    parameter table and the ROS parameter descriptions come from)."""
    return (*RIG_PARAMETERS, *TopicsConfig.PARAMETERS, *InputsConfig.PARAMETERS, *SyncConfig.PARAMETERS, *LOOP_PARAMETERS,
            *HealthConfig.PARAMETERS, *ConsistencySettings.PARAMETERS, *RangeAgreementSettings.PARAMETERS,
            *MotionAgreementSettings.PARAMETERS, *ModelConfig.PARAMETERS, *EncodingConfig.PARAMETERS,
            *OutputsConfig.PARAMETERS, *GroundTruthConfig.PARAMETERS)  # fmt: skip


def default_parameters() -> Parameters:
    """The shipped parameter file: the default of every parameter and the list of known ones."""
    return load_parameters(config_file("any2seg.yaml"))


@dataclass(frozen=True)
class TopicsConfig:
    """The node's input topics (relative names resolve in its namespace)."""

    camera: str
    camera_info: str
    depth: str
    lidar: str
    events: str  # PointCloud2 events
    events_image: str  # rendered event frames

    PARAMETERS = (
        Parameter("topics.camera", "camera images (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8)", "topic"),
        Parameter("topics.camera_info", "the camera's intrinsics (sensor_msgs/CameraInfo); the output grid", "topic"),
        Parameter("topics.depth", "depth images (32FC1 metres; 16UC1, mono16 millimetres)", "topic"),
        Parameter("topics.lidar", "LiDAR points (PointCloud2 x, y, z[, intensity])", "topic"),
        Parameter("topics.events", "events as PointCloud2 x, y, t, polarity (inputs.events_source: points)", "topic"),
        Parameter("topics.events_image", "rendered event frames (inputs.events_source: image)", "topic"),
    )

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> TopicsConfig:
        return cls(**{name: r.topic(f"topics.{name}") for name in cls.__dataclass_fields__})

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

    PARAMETERS = (
        Parameter("ground_truth.topic", "per-pixel labels in a bag, stamped as the camera image (replay evaluation)", "topic"),
        Parameter("ground_truth.encoding", "deliver: DELIVER ids; carla_tags: CARLA tag in the red channel; "
                  "carla_cityscapes: CARLA's CityScapes colours", " | ".join(GT_ENCODINGS)),
        Parameter("ground_truth.carla_tags", "CARLA tag numbering of the carla_* encodings", " | ".join(TAG_SETS)),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> GroundTruthConfig:
        return cls(topic=r.topic("ground_truth.topic"), encoding=r.string("ground_truth.encoding", GT_ENCODINGS),
                   carla_tags=r.string("ground_truth.carla_tags", tuple(TAG_SETS)))  # fmt: skip


@dataclass(frozen=True)
class InputsConfig:
    modalities: tuple[Modality, ...]  # subscribed and fused, canonical order
    events_source: str  # "points" | "image"
    event_time: EventTime  # how float event time fields are read
    qos_reliability: str  # "best_effort" | "reliable"
    qos_depth: int
    lidar_intensity_scale: float
    encode_on_arrival: bool  # encode each alive sensor's message when it arrives (off: in the worker)
    processing_scale: float  # encodings on a grid of at most this × the network input (0 = the camera grid)

    PARAMETERS = (
        Parameter("inputs.modalities", "sensors to subscribe to and fuse", "list of camera, depth, lidar, events"),
        Parameter("inputs.events_source", "points: topics.events (PointCloud2); image: topics.events_image", " | ".join(EVENTS_SOURCES)),
        Parameter("inputs.event_time", "how float event time fields are read", " | ".join(e.value for e in EventTime)),
        Parameter("inputs.qos_reliability", "subscription reliability (best_effort: SensorDataQoS)", " | ".join(QOS_RELIABILITIES)),
        Parameter("inputs.qos_depth", "subscription queue depth", ">= 1"),
        Parameter("inputs.lidar_intensity_scale", "LiDAR intensity is divided by this into [0, 1] (255 for 8-bit drivers)", "> 0"),
        Parameter("inputs.encode_on_arrival", "encode messages as they arrive; false: per bundle, in the worker", "bool"),
        Parameter("inputs.processing_scale", "encodings are made on the camera grid scaled down (same view) to at most this "
                  "multiple of the network input per axis; masks are still published at the camera's resolution; "
                  "0 = the camera grid", ">= 0"),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> InputsConfig:
        enabled = r.modalities("inputs.modalities")
        return cls(
            modalities=tuple(m for m in MODALITIES if m in enabled),
            events_source=r.string("inputs.events_source", EVENTS_SOURCES),
            event_time=EventTime(r.string("inputs.event_time", tuple(e.value for e in EventTime))),
            qos_reliability=r.string("inputs.qos_reliability", QOS_RELIABILITIES),
            qos_depth=r.integer("inputs.qos_depth", 1),
            lidar_intensity_scale=r.positive("inputs.lidar_intensity_scale"),
            encode_on_arrival=r.boolean("inputs.encode_on_arrival"),
            processing_scale=r.number("inputs.processing_scale", 0.0),
        )


@dataclass(frozen=True)
class ModelConfig:
    path: str  # "" = the shipped checkpoint
    arch: str
    backend: str
    threads: int  # 0 = library default
    process: bool  # the live node runs the network in a child process (model/engine_process.py)
    device: str = "cpu"  # cpu | cuda | cuda:N (model/device.py)

    PARAMETERS = (
        Parameter("model.path", "checkpoint (.safetensors; .onnx beside it for backend onnx); \"\" = the shipped one", "path"),
        Parameter("model.arch", "architecture built with initial weights when no checkpoint exists", "model/architectures.py names"),
        Parameter("model.backend", "inference library", " | ".join(BACKENDS)),
        Parameter("model.threads", "intra-op threads; 0 keeps the library default", ">= 0"),
        Parameter("model.process", "live node: run the network in its own process", "bool"),
        Parameter("model.device", "where the network runs: torch in fp16 on CUDA; ONNX Runtime with TensorRT, "
                  "CUDA, then CPU providers; absent device = error at start-up", "cpu | cuda | cuda:N"),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader) -> ModelConfig:
        return cls(path=r.string("model.path"), arch=r.string("model.arch"), backend=r.string("model.backend", BACKENDS),
                   threads=r.integer("model.threads", 0), process=r.boolean("model.process"),
                   device=r.device("model.device"))  # fmt: skip


@dataclass(frozen=True)
class OutputsConfig:
    frame_id: str
    overlay_alpha: float
    publish_points: bool
    qos_depth: int
    diagnostics_rate_hz: float
    health_rate_hz: float

    PARAMETERS = (
        Parameter("outputs.frame_id", "frame of every output; \"\" = rig.camera.frame_id", "frame id"),
        Parameter("outputs.overlay_alpha", "weight of the colour mask in segmentation/overlay", "0 .. 1", read_only=False),
        Parameter("outputs.publish_points", "publish segmentation/points (LiDAR labelled from the mask)", "bool", read_only=False),
        Parameter("outputs.qos_depth", "outputs are RELIABLE, KEEP_LAST with this depth", ">= 1"),
        Parameter("outputs.diagnostics_rate_hz", "/diagnostics rate", "> 0 Hz"),
        Parameter("outputs.health_rate_hz", "sensor_health rate (also published on every change)", "> 0 Hz"),
    )

    @classmethod
    def from_parameters(cls, r: ParameterReader, rig: Rig) -> OutputsConfig:
        return cls(
            frame_id=r.string("outputs.frame_id") or rig.frame_ids[Modality.CAMERA],
            overlay_alpha=r.number("outputs.overlay_alpha", 0.0, 1.0),
            publish_points=r.boolean("outputs.publish_points"),
            qos_depth=r.integer("outputs.qos_depth", 1),
            diagnostics_rate_hz=r.positive("outputs.diagnostics_rate_hz"),
            health_rate_hz=r.positive("outputs.health_rate_hz"),
        )


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node, ``modseg run`` and the offline replay need, validated."""

    rig: Rig
    rig_source: str  # "tf" | "yaml" (core/transforms.py)
    base_frame: str  # the frame rig.base_from maps into (TF looks sensors up in it)
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
            if is_ros_parameter(key):
                continue
            if key not in merged:
                raise ConfigError(f"unknown parameter '{key}' (the known ones are listed in config/any2seg.yaml)")
            merged[key] = value
        r = ParameterReader(merged)
        inputs = InputsConfig.from_parameters(r)
        consistency = ConsistencySettings.from_parameters(r)
        rig = rig_from_parameters(merged)
        return cls(
            rig=rig,
            rig_source=r.string("rig.source", RIG_SOURCES),
            base_frame=r.string("rig.base_frame"),
            topics=TopicsConfig.from_parameters(r),
            inputs=inputs,
            sync=SyncConfig.from_parameters(r, inputs.modalities),
            sync_poll_rate_hz=r.positive("sync.poll_rate_hz"),
            health=HealthConfig.from_parameters(r, inputs.modalities),
            health_tick_rate_hz=r.positive("health.tick_rate_hz"),
            consistency=consistency,
            range_agreement=RangeAgreementSettings.from_parameters(r, consistency),
            motion_agreement=MotionAgreementSettings.from_parameters(r, consistency),
            model=ModelConfig.from_parameters(r),
            encoding=EncodingConfig.from_parameters(r),
            outputs=OutputsConfig.from_parameters(r, rig),
            ground_truth=GroundTruthConfig.from_parameters(r),
            parameters=merged,
        )

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
        """From a parameter file (default: the shipped one) plus overrides."""
        params = load_parameters(path) if path is not None else {}
        params.update(overrides or {})
        return cls.from_parameters(params)

