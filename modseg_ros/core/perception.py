"""The node's logic without ROS: samples in, bundles out, bundles to segmentations.

The ROS node (ros/node.py) is a thin shell around this class, and the offline replay drives the
same class straight from a bag, both through the same loop (core/loop.py), so live and offline runs
give the same masks for the same bundles. The engine is handed in (model/loading.py makes it).
Two threads use it: the receiving side (``observe``, ``reject``, ``tick``, ``set_camera``) and one
worker (``segment``); they share nothing mutable but the rigs, which are replaced, never modified.
``render`` reads only its segmentation and the configuration, so the node draws on a third thread.

Two grids: the *processing grid*, on which every sensor is encoded and the cross-checks look (the
camera's view scaled down to at most ``inputs.processing_scale`` × the network input per axis: a
1920×1080 camera costs what a 512×256 one does), and the *output grid*, the camera's own, on which
the mask is published (labels from the network's grid, nearest). For a camera no larger than that
bound both are the camera grid.
"""
from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from modseg_ros.core.checks.consistency import ConsistencyCalibration, ConsistencyMonitor, scene_brightness
from modseg_ros.core.checks.motion_agreement import MotionAgreementMonitor
from modseg_ros.core.checks.range_agreement import RangeAgreementMonitor
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.encoding import encode_payload
from modseg_ros.core.geometry import Intrinsics, Rig
from modseg_ros.core.health import HealthMonitor
from modseg_ros.core.network_input import encode_input
from modseg_ros.core.postprocess import color_mask, labelled_points, overlay_image
from modseg_ros.core.sync import Synchronizer
from modseg_ros.core.types import Bundle, CameraFrame, HealthState, Modality, PointCloud, SensorSample
from modseg_ros.errors import ConversionError


class Engine(Protocol):
    """What the pipeline needs of model/runtime.py's SegmentationEngine (model/loading.py makes one)."""

    name: str
    input_size: tuple[int, int]
    lidar_intensity: str  # core/network_input.py LIDAR_INTENSITY

    def predict_inputs(self, inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int],
                       exclude: Collection[Modality] = (), consistency: bool = True,
                       on_labels: Callable[[np.ndarray], None] | None = None): ...  # fmt: skip


@dataclass(frozen=True, eq=False)
class Segmentation:
    """The network's answer for one bundle."""

    bundle: Bundle
    labels: np.ndarray  # H×W uint8 class ids on the camera grid
    encoded: Mapping[Modality, np.ndarray]  # the inputs it was computed from (on the processing grid)
    rig: Rig  # the calibration it was computed with (its camera: the output grid of ``labels``)
    modality_weights: Mapping[Modality, float]
    encode_ms: float  # encodings not already made on arrival
    inference_ms: float
    modality_consistency: Mapping[Modality, float]  # this frame's score per bundle modality (NaN: not measurable)
    excluded: frozenset[Modality]  # in the bundle but left out of the fusion as inconsistent

    @property
    def fused(self) -> tuple[Modality, ...]:
        """The modalities fused into the labels, canonical order."""
        return tuple(m for m in self.bundle.modalities if m not in self.excluded)


@dataclass(frozen=True, eq=False)
class _Encoding:
    """One sample encoded for one rig: the processing-grid image and the network's input made from it."""

    sample: weakref.ref[SensorSample]  # (not the sample: the cache must not keep full-size payloads alive)
    rig: Rig
    image: np.ndarray  # H×W×3 uint8 (core/encoding.py)
    network_input: np.ndarray  # 3×h×w float32 at the engine's input size (core/network_input.py)


@dataclass(frozen=True, eq=False)
class Rendering:
    """What is published beside the mask, for people and RViz (None: not asked for)."""

    color: np.ndarray | None  # H×W×3 rgb8
    overlay: np.ndarray | None  # H×W×3 rgb8
    overlay_source: Modality | None  # what the overlay is drawn on
    points: np.ndarray | None  # labelled LiDAR points (postprocess.LABELLED_POINT) when LiDAR is in the bundle


@dataclass(frozen=True, eq=False)
class Intake:
    """What became of one sensor message."""

    sample: SensorSample | None  # the converted message; None when it was rejected
    bundles: list[Bundle]  # the bundles it completed
    problem: str = ""  # why it was rejected ("" when it was used)


def processing_camera(camera: Intrinsics, input_size: tuple[int, int], scale: float) -> Intrinsics:
    """The grid the sensors are encoded on: ``camera``'s view, scaled down (aspect kept) to at most
    ``scale`` × the network input (h, w) per axis; the camera itself when it is no larger or
    ``scale`` is 0. Every encoding costs in proportion to this grid, not to the camera's pixels."""
    if scale <= 0:
        return camera
    factor = min(1.0, scale * input_size[0] / camera.height, scale * input_size[1] / camera.width)
    if factor >= 1.0:
        return camera
    return camera.scaled(max(1, round(camera.width * factor)), max(1, round(camera.height * factor)))


# The node clock going back by more than this is a jump (a bag looping on sim time, a reset clock).
CLOCK_JUMP_BACK_NS = 200_000_000


class Perception:
    # Encodings kept per modality: enough for the partners a pending trigger can still take.
    ENCODINGS_KEPT = 4

    def __init__(self, config: NodeConfig, engine: Engine, calibration: ConsistencyCalibration | None = None):
        self.config = config
        self.engine = engine
        self._rigs = self._rigs_for(config.rig)  # (output, processing): replaced together, never modified
        self.health = HealthMonitor(config.health, config.inputs.modalities)
        self.consistency = ConsistencyMonitor(config.consistency, calibration)  # worker side only
        self.range_agreement = RangeAgreementMonitor(config.range_agreement, config.encoding)  # worker side only
        self.motion_agreement = MotionAgreementMonitor(config.motion_agreement)  # worker side only
        self.sync = Synchronizer(config.sync)
        self._encoded: dict[Modality, OrderedDict[int, _Encoding]] = {
            m: OrderedDict() for m in config.inputs.modalities
        }
        self._encoded_lock = threading.Lock()
        self._latest_ns: int | None = None  # the latest node clock seen (receiving side)
        # Set by the live node while its worker runs a forward: most messages that arrive meanwhile
        # join bundles a newer one replaces before the worker is free, so their encoding would only
        # take CPU from the forward; the worker encodes the bundle it takes.
        self.worker_busy = False
        self.clock_jumps_back = 0

    # --- receiving side ------------------------------------------------------------------------

    def receive(self, modality: Modality, read: Callable[[], SensorSample], now_ns: int) -> Intake:
        """One raw message of ``modality``: ``read()`` converts it (raising ``ConversionError`` when it
        is malformed), then it is observed. A message that cannot be converted or judged is rejected
        and counted against its sensor; nothing about a message's content raises out of here."""
        try:
            sample = read()
        except ConversionError as err:
            self.reject(modality, now_ns, err.problem)
            return Intake(None, [], err.problem)
        try:
            return Intake(sample, self.observe(sample, now_ns))
        except (ValueError, TypeError, IndexError, FloatingPointError) as err:  # content beyond what conversion checks
            problem = f"unusable content ({err})"
            self.reject(modality, now_ns, problem)
            return Intake(None, [], problem)

    def observe(self, sample: SensorSample, now_ns: int) -> list[Bundle]:
        """A converted message: judge it, encode it if its sensor is alive (``inputs.encode_on_arrival``:
        the worker then only runs the network), then synchronise it with what is alive."""
        self._follow_clock(now_ns)
        self.health.observe(sample, now_ns)
        alive = self.health.alive
        if not self.health.stamp_usable(sample.modality):
            return self.sync.poll(now_ns, alive)  # judged (it counts against its sensor), never matched
        if self.config.inputs.encode_on_arrival and not self.worker_busy and sample.modality in alive:
            self.encode(sample)
        return self.sync.push(sample, now_ns, alive)

    def reject(self, modality: Modality, now_ns: int, problem: str) -> HealthState:
        """A message that could not be converted: it counts against its sensor."""
        self._follow_clock(now_ns)
        return self.health.reject(modality, now_ns, problem)

    def tick(self, now_ns: int, late_ns: int = 0) -> tuple[dict[Modality, HealthState], list[Bundle]]:
        """Timeouts and rates at ``now_ns`` (a tick ``late_ns`` behind its schedule: see
        ``HealthMonitor.tick``), then the bundles that max-wait or a verdict completed."""
        self._follow_clock(now_ns)
        states = self.health.tick(now_ns, late_ns)
        return states, self.sync.poll(now_ns, self.health.alive)

    def poll(self, now_ns: int) -> list[Bundle]:
        """Bundles completed by max-wait since the last call (between health ticks)."""
        self._follow_clock(now_ns)
        return self.sync.poll(now_ns, self.health.alive)

    def _follow_clock(self, now_ns: int) -> None:
        """On a jump back of the node clock (a bag loop on sim time), start time matching and the
        stream statistics again from ``now_ns``: sensors keep their levels, nothing is declared
        failed for it, and ``clock_jumps_back`` counts it."""
        if self._latest_ns is not None and now_ns < self._latest_ns - CLOCK_JUMP_BACK_NS:
            self.clock_jumps_back += 1
            self.sync.clear()
            self.health.clock_jumped_back(now_ns)
            with self._encoded_lock:
                for cache in self._encoded.values():
                    cache.clear()
            self._latest_ns = now_ns
        else:
            self._latest_ns = now_ns if self._latest_ns is None else max(self._latest_ns, now_ns)

    @property
    def rig(self) -> Rig:
        """The calibration with the camera's own grid (the output grid)."""
        return self._rigs[0]

    @rig.setter
    def rig(self, rig: Rig) -> None:
        """A new calibration (extrinsics from TF): the processing grid follows it."""
        self._rigs = self._rigs_for(rig)

    @property
    def processing_rig(self) -> Rig:
        """The calibration with the processing grid as its camera (what the encodings are made on)."""
        return self._rigs[1]

    def _rigs_for(self, rig: Rig) -> tuple[Rig, Rig]:
        if self.engine is None:  # health and sync only: nothing is segmented, no network input to bound the grid
            return rig, rig
        grid = processing_camera(rig.camera, self.engine.input_size, self.config.inputs.processing_scale)
        return rig, (rig if grid == rig.camera else rig.with_camera(grid))

    def set_camera(self, intrinsics: Intrinsics) -> bool:
        """Camera intrinsics from CameraInfo; True if they changed the rig (the output grid)."""
        if intrinsics == self.rig.camera:
            return False
        self._rigs = self._rigs_for(self.rig.with_camera(intrinsics))
        return True

    # --- both sides --------------------------------------------------------------------------------

    def encode(self, sample: SensorSample) -> np.ndarray:
        """The sample's processing-grid encoding (computed once per sample and rig, with its network input)."""
        return self._encoding(sample, self.processing_rig).image

    def _encoding(self, sample: SensorSample, rig: Rig) -> _Encoding:
        """The sample's encoding and network input, made once per sample and rig (a LiDAR scan reused
        by several bundles, a message encoded on arrival: the worker then only runs the network)."""
        key = id(sample)
        cache = self._encoded[sample.modality]
        with self._encoded_lock:
            cached = cache.get(key)
        if cached is not None and cached.sample() is sample and cached.rig is rig:
            return cached
        image = encode_payload(sample.modality, sample.data, rig, self.config.encoding, self.engine.lidar_intensity)
        network_input = encode_input(sample.modality, image, self.engine.input_size, self.engine.lidar_intensity)
        encoding = _Encoding(weakref.ref(sample), rig, image, network_input)
        with self._encoded_lock:
            cache[key] = encoding
            while len(cache) > self.ENCODINGS_KEPT:
                cache.popitem(last=False)
        return encoding

    def backlog(self) -> dict[str, int]:
        """What the pipeline holds between messages: all of it is bounded (the soak test watches it)."""
        queued, pending = self.sync.backlog()
        with self._encoded_lock:
            encodings = sum(len(cache) for cache in self._encoded.values())
        return {"sync_queued": sum(queued.values()), "sync_pending": pending, "encodings_cached": encodings}

    # --- worker side -----------------------------------------------------------------------------

    @property
    def excluded(self) -> frozenset[Modality]:
        """Sensors the cross-checks (the network's consistency, depth against LiDAR ranges, the camera
        against the events' motion) leave out of the fusion."""
        return self.consistency.excluded | self.range_agreement.excluded | self.motion_agreement.excluded

    def segment(self, bundle: Bundle, on_labels: Callable[[np.ndarray], None] | None = None) -> Segmentation:
        """Encode what is not encoded yet and run the network on the bundle's modalities, leaving
        out those the cross-checks judged inconsistent (but never all of them). ``on_labels`` gets
        the mask as soon as it exists, before the consistency scores are computed."""
        rig, processing = self._rigs
        start = time.perf_counter()
        encodings = {m: self._encoding(s, processing) for m, s in bundle.samples.items()}
        encode_ms = (time.perf_counter() - start) * 1e3
        excluded = self.excluded & frozenset(bundle.modalities)
        if excluded == frozenset(bundle.modalities):
            excluded = frozenset()  # a mask from doubtful sensors beats no mask
        prediction = self.engine.predict_inputs({m: e.network_input for m, e in encodings.items()},
                                                (rig.camera.height, rig.camera.width), exclude=excluded,
                                                consistency=self.config.consistency.enabled, on_labels=on_labels)  # fmt: skip
        return Segmentation(bundle, prediction.labels, {m: e.image for m, e in encodings.items()}, rig,
                            prediction.modality_weights, encode_ms, prediction.inference_ms,
                            prediction.modality_consistency, excluded)  # fmt: skip

    def cross_check(self, seg: Segmentation) -> None:
        """Judge a segmented bundle's consistency scores, its depth-LiDAR range agreement and the
        camera's motion against the events'. The verdicts act on the bundles after it, so the node
        calls this once the mask is out."""
        stamp_ns, encoded = seg.bundle.stamp_ns, seg.encoded
        brightness = scene_brightness(seg.bundle.samples)  # lit or dark: whose thresholds judge
        self.health.judge("consistency", self.consistency.update(stamp_ns, seg.modality_consistency, brightness))
        self.health.judge("ranges", self.range_agreement.update(stamp_ns, encoded.get(Modality.DEPTH), encoded.get(Modality.LIDAR)))
        self.health.judge("motion", self.motion_agreement.update(stamp_ns, encoded.get(Modality.CAMERA), encoded.get(Modality.EVENTS)))

    def render(self, seg: Segmentation, color: bool = True, overlay: bool = True, points: bool = True) -> Rendering:
        """Colour mask, overlay and labelled LiDAR points of a segmentation, those asked for (the
        node asks for the ones somebody subscribes to)."""
        backgrounds = dict(seg.encoded)
        camera = seg.bundle.samples.get(Modality.CAMERA)
        if camera is not None and isinstance(camera.data, CameraFrame) and camera.data.image.shape[:2] == seg.labels.shape:
            backgrounds[Modality.CAMERA] = camera.data.image  # the camera's own pixels, not the processing grid's
        source, blended = overlay_image(seg.labels, backgrounds, self.config.outputs.overlay_alpha) if overlay else (None, None)
        labelled = None
        lidar = seg.bundle.samples.get(Modality.LIDAR)
        if points and lidar is not None and self.config.outputs.publish_points and isinstance(lidar.data, PointCloud):
            labelled = labelled_points(lidar.data, seg.labels, seg.rig)
        return Rendering(color_mask(seg.labels) if color else None, blended, source, labelled)
