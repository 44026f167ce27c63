"""The node's logic without ROS: samples in, bundles out, bundles to segmentations.

The ROS node (ros/node.py) is a thin shell around this class, and the offline replay drives the
same class straight from a bag, so live and offline runs give the same masks for the same bundles.
Two threads use it: the receiving side (``observe``, ``reject``, ``tick``, ``set_camera``) and one
worker (``segment``); they share nothing mutable but the rig, which is replaced, never modified.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from modseg_ros.core.config import ModelConfig, NodeConfig
from modseg_ros.core.encoding import encode_payload
from modseg_ros.core.geometry import Intrinsics, Rig
from modseg_ros.core.health import HealthMonitor
from modseg_ros.core.postprocess import color_mask, labelled_points, overlay_image
from modseg_ros.core.sync import Synchronizer
from modseg_ros.core.types import Bundle, HealthState, Modality, PointCloud, SensorSample
from modseg_ros.errors import ConfigError


class Engine(Protocol):
    """What the pipeline needs of model/runtime.py's SegmentationEngine."""

    name: str

    def predict(self, encoded: Mapping[Modality, np.ndarray], output_size: tuple[int, int]): ...


@dataclass(frozen=True, eq=False)
class Segmentation:
    bundle: Bundle
    labels: np.ndarray  # H×W uint8 class ids on the camera grid
    color: np.ndarray  # H×W×3 rgb8
    overlay: np.ndarray  # H×W×3 rgb8
    overlay_source: Modality  # what the overlay is drawn on
    points: np.ndarray | None  # labelled LiDAR points (postprocess.LABELLED_POINT) when LiDAR is in the bundle
    modality_weights: Mapping[Modality, float]
    encode_ms: float
    inference_ms: float


class Perception:
    def __init__(self, config: NodeConfig, engine: Engine):
        self.config = config
        self.engine = engine
        self.rig: Rig = config.rig
        self.health = HealthMonitor(config.health, config.inputs.modalities)
        self.sync = Synchronizer(config.sync)
        self._encoded: OrderedDict[int, tuple[SensorSample, np.ndarray, Rig]] = OrderedDict()

    # --- receiving side ------------------------------------------------------------------------

    def observe(self, sample: SensorSample, now_ns: int) -> list[Bundle]:
        """A converted message: judge it, then synchronise it with what is alive."""
        self.health.observe(sample, now_ns)
        return self.sync.push(sample, now_ns, self.health.alive)

    def reject(self, modality: Modality, now_ns: int, problem: str) -> HealthState:
        """A message that could not be converted: it counts against its sensor."""
        return self.health.reject(modality, now_ns, problem)

    def tick(self, now_ns: int) -> tuple[dict[Modality, HealthState], list[Bundle]]:
        """Timeouts and rates at ``now_ns``, then the bundles that max-wait or a verdict completed."""
        states = self.health.tick(now_ns)
        return states, self.sync.poll(now_ns, self.health.alive)

    def poll(self, now_ns: int) -> list[Bundle]:
        """Bundles completed by max-wait since the last call (between health ticks)."""
        return self.sync.poll(now_ns, self.health.alive)

    def set_camera(self, intrinsics: Intrinsics) -> bool:
        """Camera intrinsics from CameraInfo; True if they changed the rig (the output grid)."""
        if intrinsics == self.rig.camera:
            return False
        self.rig = self.rig.with_camera(intrinsics)
        return True

    # --- worker side -----------------------------------------------------------------------------

    def encode(self, sample: SensorSample, rig: Rig) -> np.ndarray:
        """The sample's camera-grid encoding; a LiDAR scan reused by several bundles is encoded once."""
        key = id(sample)
        cached = self._encoded.get(key)
        if cached is not None and cached[0] is sample and cached[2] is rig:
            return cached[1]
        encoded = encode_payload(sample.modality, sample.data, rig, self.config.encoding)
        self._encoded[key] = (sample, encoded, rig)
        while len(self._encoded) > 8:
            self._encoded.popitem(last=False)
        return encoded

    def segment(self, bundle: Bundle) -> Segmentation:
        rig = self.rig
        start = time.perf_counter()
        encoded = {m: self.encode(s, rig) for m, s in bundle.samples.items()}
        encode_ms = (time.perf_counter() - start) * 1e3
        prediction = self.engine.predict(encoded, output_size=(rig.camera.height, rig.camera.width))
        labels = prediction.labels
        source, overlay = overlay_image(labels, encoded, self.config.outputs.overlay_alpha)
        points = None
        lidar = bundle.samples.get(Modality.LIDAR)
        if lidar is not None and self.config.outputs.publish_points and isinstance(lidar.data, PointCloud):
            points = labelled_points(lidar.data, labels, rig)
        return Segmentation(
            bundle=bundle,
            labels=labels,
            color=color_mask(labels),
            overlay=overlay,
            overlay_source=source,
            points=points,
            modality_weights=prediction.modality_weights,
            encode_ms=encode_ms,
            inference_ms=prediction.inference_ms,
        )


# The checkpoint used when model.path is empty (models/ in the share directory).
DEFAULT_CHECKPOINT = "any2seg_b0.safetensors"
UNTRAINED_INPUT = (128, 256)  # (H, W) of the untrained fallback, or the camera grid when smaller


def load_engine(model: ModelConfig, camera: Intrinsics) -> tuple[Engine, str]:
    """The segmentation engine the parameters ask for, and a sentence saying what was loaded.

    An empty ``model.path`` means the shipped checkpoint; if none is shipped, the real architecture
    with initial weights runs instead (the sentence says so: its masks are noise), at the camera
    grid when that is smaller than its default input. An explicit path that does not exist is an error.
    """
    import torch

    from modseg_ros.model.runtime import SegmentationEngine
    from modseg_ros.paths import model_file

    path = Path(model.path) if model.path else model_file(DEFAULT_CHECKPOINT)
    if model.path and not path.with_suffix(".safetensors").is_file():
        raise ConfigError(f"parameter 'model.path': no checkpoint at {path.with_suffix('.safetensors')}")
    if path.with_suffix(".safetensors").is_file():
        engine = SegmentationEngine.load(path, backend=model.backend, threads=model.threads or None)
        return engine, f"model {engine.name} from {path} ({model.backend}, {torch.get_num_threads()} threads)"
    if model.threads:
        torch.set_num_threads(model.threads)
    grid = (camera.height, camera.width)
    fits = all(g <= d and g % 32 == 0 for g, d in zip(grid, UNTRAINED_INPUT))
    engine = SegmentationEngine.untrained(model.arch, input_size=grid if fits else UNTRAINED_INPUT)
    return engine, (
        f"no checkpoint at {path}: running {engine.name}, the {model.arch} architecture with initial "
        f"weights (masks are noise until a trained checkpoint is installed)"
    )
