"""What a checkpoint's JSON sidecar says, read without torch: the ONNX Runtime backend needs the
architecture's input size, the classes and the weights' sha256, never the weights themselves
(model/checkpoint.py writes sidecars and loads the weights into torch).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from modseg_ros.core.network_input import LIDAR_INTENSITY
from modseg_ros.core.palette import CLASSES, NUM_CLASSES
from modseg_ros.errors import CheckpointError, ConfigError

FORMAT = "modseg-segmenter"
VERSION = 1


@dataclass(frozen=True)
class SegmenterConfig:
    arch: str = "any2seg"  # a name of model/architectures.py ARCHITECTURES (checked when the model is built)
    backbone: str = "b0"  # MiT variant: b0 | b1 | b2
    num_classes: int = NUM_CLASSES
    head_dim: int = 256  # SegFormer head width (256 for B0/B1, 768 for B2 in the paper; 256 here)
    input_size: tuple[int, int] = (128, 256)  # (H, W) the network runs at
    mff_temperature: float = 0.1  # Any2Seg: initial MFF softmax temperature
    embedding_dim: int = 128  # Any2Seg: LSCD student embedding width
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if self.backbone not in ("b0", "b1", "b2"):
            raise ConfigError(f"unknown backbone '{self.backbone}' (choose from b0, b1, b2)")
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise ConfigError(f"input_size must be positive multiples of 32, got {h}×{w}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SegmenterConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "input_size" in d:
            d["input_size"] = tuple(int(v) for v in d["input_size"])
        return cls(**d)


@dataclass(frozen=True)
class CheckpointInfo:
    name: str
    config: SegmenterConfig
    classes: tuple[str, ...] = CLASSES
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""  # from the sidecar; ties calibrations (core/checks/consistency.py) and ONNX graphs to these weights
    lidar_intensity: str = "raw"  # how the network reads the LiDAR intensity (core/network_input.py LIDAR_INTENSITY)


def sidecar_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def read_sidecar(path: str | Path) -> CheckpointInfo:
    """The sidecar of weights file ``path`` (or the sidecar itself), validated."""
    path = Path(path)
    side = path if path.suffix == ".json" else sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint sidecar {side} not found (it describes the weights next to it)")
    try:
        doc = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint sidecar {side} is not valid JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint sidecar {side}: 'format' must be '{FORMAT}'")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"checkpoint sidecar {side}: unsupported version {doc.get('version')!r} (expected {VERSION})")
    classes = tuple(doc.get("classes", ()))
    if classes != CLASSES:
        detail = f"{len(classes)} classes" if len(classes) != len(CLASSES) else next(
            f"class {i} is '{a}', expected '{b}'" for i, (a, b) in enumerate(zip(classes, CLASSES)) if a != b
        )
        raise CheckpointError(
            f"checkpoint sidecar {side}: 'classes' differ from the {len(CLASSES)} DELIVER classes this "
            f"package uses ({detail})"
        )
    try:
        config = SegmenterConfig.from_dict(doc.get("model", {}))
    except (ConfigError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint sidecar {side}: 'model': {err}") from err
    if config.num_classes != len(CLASSES):
        raise CheckpointError(f"checkpoint sidecar {side}: model.num_classes is {config.num_classes}, expected {len(CLASSES)}")
    lidar_intensity = doc.get("lidar_intensity", "raw")  # sidecars from before it was a choice: raw
    if lidar_intensity not in LIDAR_INTENSITY:
        raise CheckpointError(f"checkpoint sidecar {side}: lidar_intensity {lidar_intensity!r} is not one of {', '.join(LIDAR_INTENSITY)}")
    return CheckpointInfo(
        name=str(doc.get("name", path.stem)),
        config=config,
        classes=classes,
        lidar_intensity=lidar_intensity,
        training=dict(doc.get("training", {})),
        metrics=dict(doc.get("metrics", {})),
        weights_sha256=str(doc.get("weights_sha256", "")),
    )
