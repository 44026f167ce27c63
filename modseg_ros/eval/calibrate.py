"""Calibrate the consistency check of a checkpoint on nominal drives (``modseg calibrate``).

Each nominal bag is replayed through the perception core exactly as the node runs it (the offline
replay, eval/offline.py), with the check itself off. Beside every frame the node segments, the
scores of each smaller set of at least three of its modalities are measured too (what the node
sees when one sensor dies), so every set the node can judge gets thresholds. Each modality's
series is smoothed as the monitor smooths it, the first ``settle_s`` of every series dropped, and
``core/checks/consistency.py: thresholds_from`` turns the nominal values into thresholds: those of every
frame, and, for the sets with the camera, those of the lit and of the dark frames apart (each
frame's light from its camera image, as the node tells it). The result is
written beside the checkpoint as ``<checkpoint>.consistency.json``, tied to the weights' sha256.

Without bags, nominal world drives are rendered (one per condition and seed: sun, cloud, fog,
rain, night) into a cache folder and reused by the next run, so recalibrating a new checkpoint is
one command.
"""
from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modseg_ros.core.checks.consistency import (
    MIN_MODALITIES,
    CalibrationRule,
    ConsistencyCalibration,
    Light,
    Thresholds,
    calibration_path,
    scene_brightness,
    smooth,
    thresholds_from,
)
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.types import MODALITIES, Modality, subset_name
from modseg_ros.data.bags import Bag
from modseg_ros.errors import ConfigError
from modseg_ros.eval.offline import OfflineNode, replay_into, with_bag_tf
from modseg_ros.eval.run import ReplayOptions
from modseg_ros.model.loading import load_engine

CONDITIONS = ("sun", "cloud", "fog", "rain", "night")


def parse_seeds(text: str) -> tuple[int, ...]:
    """'41,51,61' -> (41, 51, 61) (argparse reports the ValueError with the option's name)."""
    seeds = tuple(int(part) for part in text.split(",") if part.strip())
    if not seeds:
        raise ValueError("no seed")
    return seeds


@dataclass(frozen=True)
class NominalDrives:
    """World drives without failures, one per condition and seed (rendered once, then reused)."""

    cache: Path
    frames: int = 100  # camera frames (20 Hz) per drive
    seeds: tuple[int, ...] = (11,)  # one town and route per seed
    conditions: tuple[str, ...] = CONDITIONS
    params: Path | None = None  # rig (default config/any2seg.yaml)

    def paths(self, progress: Callable[[str], None] | None = None) -> list[Path]:
        from modseg_ros.data.world.generate import WorldOptions, generate

        out = []
        for seed in self.seeds:
            for condition in self.conditions:
                path = self.cache / f"{condition}-seed{seed}-{self.frames}f"
                if not (path / "metadata.yaml").is_file():
                    if progress is not None:
                        progress(f"rendering the nominal {condition} drive of seed {seed} ({self.frames} frames) into {path}")
                    generate(WorldOptions(out=path, format="bag", frames=self.frames, seed=seed, conditions=(condition,),
                                          parameters=self.params, overwrite=True))  # fmt: skip
                out.append(path)
        return out


class _SubsetProbe:
    """The node's engine, also scoring each smaller set (≥ 3) of the modalities it is given (from
    the encoder pass of the frame: model/consistency.py ``subset_consistency``)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.input_size = engine.input_size
        self.lidar_intensity = engine.lidar_intensity
        self.frames: list[dict[str, Mapping[Modality, float]]] = []  # per segmented frame: subset -> scores

    def predict_inputs(self, inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int],
                       exclude: Collection[Modality] = (), consistency: bool = True,
                       on_labels: Callable[[np.ndarray], None] | None = None):  # fmt: skip
        # scored whatever the parameter file says: scoring is what a calibration is for
        present = tuple(m for m in MODALITIES if m in inputs)
        subsets = [s for k in range(MIN_MODALITIES, len(present)) for s in itertools.combinations(present, k)]
        prediction, per_subset = self.engine.predict_scoring_subsets(inputs, output_size, subsets, exclude=exclude)
        if on_labels is not None:
            on_labels(prediction.labels)
        self.frames.append({subset_name(present): prediction.modality_consistency, **dict(zip(map(subset_name, subsets), per_subset))})
        return prediction


@dataclass
class ScoreSeries:
    """Smoothed nominal scores gathered over drives: (subset, modality, light) -> values after
    settling; light None: every frame (pooled)."""

    values: dict[tuple[str, Modality, Light | None], list[np.ndarray]] = field(default_factory=dict)
    frames: int = 0


class _CalibrationNode(OfflineNode):
    """The offline node, also noting the camera brightness of each bundle it segments (the light
    its scores were measured in: core/checks/consistency.py ``scene_brightness``)."""

    def __init__(self, config: NodeConfig, engine) -> None:
        super().__init__(config, engine)
        self.brightness: list[float] = []

    def _segment(self, bundles) -> None:
        for bundle in bundles:
            self.brightness.append(scene_brightness(bundle.samples))
            super()._segment([bundle])


def collect_scores(node: _CalibrationNode, probe: _SubsetProbe, rule: CalibrationRule, into: ScoreSeries) -> None:
    """Smooth one replay's per-subset series and keep the values after ``settle_s``, pooled and,
    for the sets with the camera, per light."""
    if not len(probe.frames) == len(node.masks) == len(node.brightness):
        raise RuntimeError("calibration probe and offline node disagree on the frames segmented")
    stamps = np.array([m.stamp_ns for m in node.masks], dtype=np.int64)
    dark = np.array(node.brightness) < rule.dark_below
    into.frames += len(stamps)
    keys = sorted({(subset, m) for frame in probe.frames for subset, per in frame.items() for m in per}, key=str)
    for subset, modality in keys:  # each key comes from a frame: rows is never empty
        rows = np.array([i for i, frame in enumerate(probe.frames) if modality in frame.get(subset, {})], dtype=np.int64)
        series = smooth(stamps[rows].tolist(), [float(probe.frames[i][subset][modality]) for i in rows], rule.smoothing_s)
        keep = np.isfinite(series) & ((stamps[rows] - stamps[rows][0]) >= rule.settle_s * 1e9)
        groups = {None: keep}
        if Modality.CAMERA in probe.frames[rows[0]][subset]:  # the light is the camera's
            groups.update({Light.DARK: keep & dark[rows], Light.LIT: keep & ~dark[rows]})
        for light, chosen in groups.items():
            if chosen.any():
                into.values.setdefault((subset, modality, light), []).append(series[chosen])


def calibrate(checkpoint: Path, bags: Sequence[Path], params: Path, rule: CalibrationRule = CalibrationRule(),
              threads: int = 1, progress: Callable[[str], None] | None = None, command: str = "") -> ConsistencyCalibration:  # fmt: skip
    """Thresholds for ``checkpoint`` from nominal ``bags`` replayed with the node parameters ``params``."""
    checkpoint = Path(checkpoint).with_suffix(".safetensors")
    if not checkpoint.is_file():
        raise ConfigError(f"calibrate: no checkpoint at {checkpoint}")
    if not bags:
        raise ConfigError("calibrate: no nominal bags to calibrate on")
    # torch: the subsets' scores reuse the encoder features (the ONNX graph's scores are the same to 1e-4)
    config = NodeConfig.load(params, {"model.path": str(checkpoint), "model.threads": threads, "model.backend": "torch",
                                      "health.consistency.enabled": False})  # fmt: skip
    engine, _ = load_engine(config.model, config.rig.camera)
    if len(config.inputs.modalities) < MIN_MODALITIES:
        raise ConfigError(f"parameter 'inputs.modalities': the consistency check needs at least {MIN_MODALITIES} sensors")
    series = ScoreSeries()
    for bag in bags:
        if progress is not None:
            progress(f"replaying {bag}")
        probe = _SubsetProbe(engine)
        with Bag(bag) as opened:  # the sensor poses of its /tf_static with rig.source: tf, as the node takes them
            bag_config, _ = with_bag_tf(config, opened)
        node = _CalibrationNode(bag_config, probe)
        replay_into(node, Path(bag), ReplayOptions(params=params))
        collect_scores(node, probe, rule, series)
    thresholds: dict[str, dict[Modality, Thresholds]] = {}
    by_light: dict[Light, dict[str, dict[Modality, Thresholds]]] = {}
    counts: dict[str, int] = {}
    ordered = sorted(series.values.items(), key=lambda kv: (len(kv[0][0]), kv[0][0], kv[0][1].value, str(kv[0][2])))
    for (subset, modality, light), parts in ordered:
        values = np.concatenate(parts)
        counts[f"{subset}/{modality.value}" + (f"/{light.value}" if light else "")] = int(len(values))
        if light is None:
            thresholds.setdefault(subset, {})[modality] = thresholds_from(values, rule)
        elif len(values) >= rule.min_light_frames:
            by_light.setdefault(light, {}).setdefault(subset, {})[modality] = thresholds_from(values, rule)
    if not thresholds:
        raise ConfigError(f"calibrate: the bags gave no frame with {MIN_MODALITIES} or more sensors to calibrate on")
    info = engine.info
    provenance = {
        "command": command, "bags": [_shown(b) for b in bags], "frames": series.frames, "values": counts,
        "rule": {"smoothing_s": rule.smoothing_s, "warn_margin": rule.warn_margin, "exclude_factor": rule.exclude_factor,
                 "settle_s": rule.settle_s, "min_light_frames": rule.min_light_frames},
        "params": _shown(params),
    }  # fmt: skip
    return ConsistencyCalibration(info.name, info.weights_sha256, rule.smoothing_s, thresholds, provenance, by_light,
                                  rule.dark_below if by_light else math.nan)  # fmt: skip


def _shown(path: Path) -> str:
    """A path as the provenance records it: relative to the package's share folder when inside it."""
    from modseg_ros.paths import share_dir

    try:
        return str(Path(path).resolve().relative_to(share_dir()))
    except ValueError:
        return str(path)


def calibrate_checkpoint(checkpoint: Path, bags: Sequence[Path], params: Path, drives: NominalDrives,
                         rule: CalibrationRule = CalibrationRule(), out: Path | None = None, threads: int = 1,
                         progress: Callable[[str], None] | None = None) -> tuple[ConsistencyCalibration, Path]:  # fmt: skip
    """``modseg calibrate``: calibrate on ``bags`` (or on the nominal world drives) and write the file."""
    if not Path(checkpoint).with_suffix(".safetensors").is_file():  # before minutes of rendering
        raise ConfigError(f"calibrate: no checkpoint at {Path(checkpoint).with_suffix('.safetensors')}")
    bags = list(bags) or drives.paths(progress)
    calibration = calibrate(checkpoint, bags, params, rule, threads, progress, command=" ".join(["modseg", "calibrate", *sys.argv[2:]]))
    path = out or calibration_path(checkpoint)
    calibration.save(path)
    return calibration, path
