"""Scoring a replay (live or offline) against the bag's ground truth and failure schedule.

- **Matching**: each ground-truth label frame (parameter ``ground_truth.topic``, default
  ``/ground_truth/labels``, the camera's stamp; CARLA tags or colours mapped by core/carla.py) is
  matched to the published mask nearest in stamp within half a label period (a mask triggered by
  depth or LiDAR while the camera is down has that sensor's stamp). Ground truth goes through the
  player's failure injection too, so injected stamp faults keep labels and frames matched.
- **Metrics** (core/metrics.py, DELIVER's conventions): one confusion matrix per group (label 255
  ignored), IoU = TP / (TP + FP + FN), a NaN IoU counts as 0, mIoU over all 25 classes. Groups:
  overall, per condition (the world's sidecar), per set of modalities the node actually fused
  (``segmentation/info``), per failure phase (the set of ``modality:kind`` active at the frame).
  The per-frame mIoU of the timeline averages only the classes present in that frame's ground
  truth or prediction (otherwise one frame's mIoU is dominated by the 20 classes it does not show).
- **Counts**: frames offered (label frames in the played window), masks published, frames with a
  mask, frames dropped (without one).
- **Latency**: live, the end-to-end time from the player publishing a bundle's newest input to the
  mask arriving back (p50/p95/p99), and the node's own input-to-publish figure; offline, encode +
  inference.
- **Health**: for each scheduled failure (recorded in the bag's sidecar or injected by the player),
  the detection delay (failure start -> the monitor first reports WARN or ERROR for that sensor),
  the level reached and the reason, and the recovery delay (failure end -> OK again); a false alarm
  is a change from OK to WARN/ERROR outside every failure of that sensor (plus ``GRACE_S`` after it).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modseg_ros.core.carla import TAG_SETS, labels_from_cityscapes, labels_from_tags
from modseg_ros.core.config import GroundTruthConfig, NodeConfig
from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.palette import CLASSES
from modseg_ros.core.types import MODALITIES, HealthLevel, Modality
from modseg_ros.data.bags import Bag, BagMessage
from modseg_ros.data.failures import Failure, load_failure_schedule
from modseg_ros.data.playback import MessageInjector, PlaybackOptions, header_stamp, topic_roles, window
from modseg_ros.errors import BagError
from modseg_ros.eval.run import MaskRecord, ReplayOptions, RunOutputs

NS = 1_000_000_000
GRACE_S = 1.0  # after a failure ends, the monitor may still be recovering: not a false alarm
NOMINAL = "nominal"


@dataclass(frozen=True)
class ScheduledFailure:
    failure: Failure
    source: str  # recorded (the world's sidecar) | injected (the player)


@dataclass(frozen=True, eq=False)
class LabelFrame:
    stamp_ns: int
    labels: np.ndarray  # H×W uint8, 255 = ignore


@dataclass(frozen=True)
class FrameScore:
    stamp_ns: int
    t_s: float  # from the recording's start
    phase: str
    mask: int | None  # index into RunOutputs.masks
    subset: str | None  # modalities fused into the matched mask
    miou: float  # per-frame mIoU (classes present), NaN without a mask


@dataclass
class Group:
    confusion: ConfusionMatrix = field(default_factory=ConfusionMatrix)
    frames: int = 0

    def add(self, prediction: np.ndarray, labels: np.ndarray) -> None:
        self.confusion.update(prediction, labels)
        self.frames += 1

    def merge(self, other: Group) -> None:
        self.confusion.merge(other.confusion)
        self.frames += other.frames

    def summary(self) -> dict[str, Any]:
        return {"miou": self.confusion.miou(), "pixel_accuracy": self.confusion.pixel_accuracy(), "frames": self.frames}


@dataclass(frozen=True)
class FailureReport:
    spec: str
    source: str
    modality: str
    start_s: float
    end_s: float | None  # None: until the end of the recording
    detected: bool
    detection_delay_s: float | None
    level: str  # worst level the monitor reported during the failure (OK if never flagged)
    reason: str  # the monitor's reason at detection
    recovery_delay_s: float | None  # None: not recovered in the recording, never flagged, or followed
    followed: bool = False  # another failure of the same sensor is active when this one ends


@dataclass(frozen=True)
class FalseAlarm:
    modality: str
    t_s: float
    level: str
    reason: str


@dataclass
class BagEvaluation:
    name: str
    path: str
    mode: str
    model: str
    condition: str
    origin_ns: int
    window_s: tuple[float, float]  # played window, seconds from the recording's start
    frames: list[FrameScore]
    overall: Group
    by_condition: dict[str, Group]
    by_subset: dict[str, Group]
    by_phase: dict[str, Group]
    masks_published: int
    latency_ms: dict[str, dict[str, float]]
    failures: list[FailureReport]
    false_alarms: list[FalseAlarm]
    counters: dict[str, Any]
    notes: list[str]
    wall_s: float
    has_ground_truth: bool
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def frames_offered(self) -> int:
        return len(self.frames)

    @property
    def frames_with_mask(self) -> int:
        return sum(f.mask is not None for f in self.frames)

    def counts(self) -> dict[str, int]:
        return {"frames_offered": self.frames_offered, "masks_published": self.masks_published,
                "frames_with_mask": self.frames_with_mask, "frames_dropped": self.frames_offered - self.frames_with_mask}  # fmt: skip

    def fused_by_phase(self) -> dict[str, dict[str, int]]:
        """How often each modality set was fused in each failure phase (frames with a mask)."""
        out: dict[str, dict[str, int]] = {}
        for f in self.frames:
            if f.subset is not None:
                out.setdefault(f.phase, {}).setdefault(f.subset, 0)
                out[f.phase][f.subset] += 1
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": self.path, "mode": self.mode, "model": self.model, "condition": self.condition,
            "window_s": list(self.window_s), "wall_s": round(self.wall_s, 2), "ground_truth": self.has_ground_truth,
            **self.counts(),
            "miou": self.overall.confusion.miou() if self.has_ground_truth else None,
            "pixel_accuracy": self.overall.confusion.pixel_accuracy() if self.has_ground_truth else None,
            "per_condition": _groups(self.by_condition), "per_modalities": _groups(self.by_subset),
            "per_phase": _groups(self.by_phase), "fused_by_phase": self.fused_by_phase(),
            "per_class_iou": _per_class(self.overall.confusion),
            "latency_ms": self.latency_ms,
            "failures": [f.__dict__ for f in self.failures], "false_alarms": [a.__dict__ for a in self.false_alarms],
            "node": self.counters, "notes": self.notes, "figures": self.figures,
        }  # fmt: skip


def _groups(groups: dict[str, Group]) -> dict[str, dict[str, Any]]:
    return {name: g.summary() for name, g in groups.items()}


def _per_class(confusion: ConfusionMatrix) -> dict[str, float]:
    return {name: round(float(v), 2) for name, v in zip(CLASSES, confusion.iou())}


# --- inputs of the evaluation ------------------------------------------------------------------------------


def failure_schedule(bag: Bag, injected: Sequence[Failure]) -> list[ScheduledFailure]:
    recorded = load_failure_schedule((bag.sidecar or {}).get("failure_schedule") or [])
    return [ScheduledFailure(f, "recorded") for f in recorded] + [ScheduledFailure(f, "injected") for f in injected]


def condition_of(bag: Bag) -> str:
    condition = (bag.sidecar or {}).get("condition")
    if isinstance(condition, dict):
        return str(condition.get("name", "unknown"))
    return str(condition) if condition else "unknown"


def label_frames(bag: Bag, options: ReplayOptions) -> list[LabelFrame]:
    """The ground-truth labels of the played window (parameters ``ground_truth.*``), as DELIVER ids,
    stamped as the player publishes them."""
    gt = NodeConfig.load(options.params).ground_truth
    if gt.topic not in bag.topics:
        return []
    playback = PlaybackOptions(start_s=options.start_s, duration_s=options.duration_s)
    begin, end = window(bag, playback)
    injector = MessageInjector(bag, options.failures, options.seed, topic_roles([gt.topic], ground_truth={gt.topic: Modality.CAMERA}))
    frames = []
    for message in bag.messages([gt.topic], begin, end + 1):
        raw = injector.process(message)
        msg = bag.deserialize(BagMessage(message.topic, message.msgtype, message.log_ns, raw))
        try:
            labels = decode_labels(msg, gt)
        except Exception as err:
            raise BagError(f"{bag.path}: {gt.topic} at {message.log_ns} ns is not a {gt.encoding} label image ({err})") from None
        frames.append(LabelFrame(header_stamp(raw), labels))
    return frames


def decode_labels(msg, gt: GroundTruthConfig) -> np.ndarray:
    """A ground-truth image -> H×W DELIVER ids (255 = ignore), per ``ground_truth.encoding``:
    ``deliver`` mono8 ids; ``carla_tags`` CARLA tags (mono8, or the red channel of a colour image,
    as CARLA's raw semantic image); ``carla_cityscapes`` CARLA's CityScapes colours."""
    from modseg_ros.core import messages

    if gt.encoding == "deliver":
        return np.array(messages.image_array(msg, gt.topic))
    rgb = messages.camera_frame(msg, gt.topic).image  # bgr8/bgra8 (the bridge) become RGB
    tag_set = TAG_SETS[gt.carla_tags]
    if gt.encoding == "carla_tags":
        return labels_from_tags(rgb[..., 0], tag_set)
    return labels_from_cityscapes(rgb, tag_set)


# --- scoring ------------------------------------------------------------------------------------------------


def frame_miou(prediction: np.ndarray, labels: np.ndarray) -> float:
    """mIoU (%) over the classes present in the frame's ground truth or prediction; NaN if none."""
    cm = ConfusionMatrix()
    cm.update(prediction, labels)
    return cm.present_miou()


def _fit(prediction: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of a mask to the label grid (when the node's grid differs)."""
    if prediction.shape == shape:
        return prediction
    rows = (np.arange(shape[0]) * prediction.shape[0] / shape[0]).astype(int)
    cols = (np.arange(shape[1]) * prediction.shape[1] / shape[1]).astype(int)
    return prediction[rows][:, cols]


def match_masks(frames: Sequence[LabelFrame], masks: Sequence[MaskRecord]) -> list[int | None]:
    """Index of the mask matched to each label frame: nearest stamp within half a label period,
    each mask used once."""
    if not frames:
        return []
    stamps = np.array([m.stamp_ns for m in masks], dtype=np.int64)
    period = np.median(np.diff([f.stamp_ns for f in frames])) if len(frames) > 1 else 0.05 * NS
    tolerance = period / 2
    order = np.argsort(stamps)
    sorted_stamps = stamps[order]
    used: set[int] = set()
    matched: list[int | None] = []
    for frame in frames:
        i = int(np.searchsorted(sorted_stamps, frame.stamp_ns))
        best, best_delta = None, tolerance
        for j in (i - 1, i):
            if 0 <= j < len(sorted_stamps) and int(order[j]) not in used:
                delta = abs(int(sorted_stamps[j]) - frame.stamp_ns)
                if delta <= best_delta:
                    best, best_delta = int(order[j]), delta
        if best is not None:
            used.add(best)
        matched.append(best)
    return matched


def phase_of(failures: Sequence[ScheduledFailure], t_s: float) -> str:
    active = {f"{s.failure.modality.value}:{s.failure.kind}" for s in failures if s.failure.active(t_s)}
    return " + ".join(sorted(active, key=lambda k: (MODALITIES.index(Modality(k.split(":")[0])), k))) or NOMINAL


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    p = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1), "count": len(values)}


def health_series(outputs: RunOutputs, modality: Modality) -> list[tuple[int, HealthLevel, str]]:
    return [(h.stamp_ns, h.levels[modality], h.reasons.get(modality, "")) for h in outputs.health if modality in h.levels]


FLAGGED = (HealthLevel.WARN, HealthLevel.ERROR)


def failure_reports(failures: Sequence[ScheduledFailure], outputs: RunOutputs, origin_ns: int,
                    window_s: tuple[float, float]) -> list[FailureReport]:  # fmt: skip
    reports = []
    for scheduled in failures:
        f = scheduled.failure
        if f.start_s > window_s[1] or f.end_s <= window_s[0]:
            continue  # outside the played window
        series = health_series(outputs, f.modality)
        start = origin_ns + int(f.start_s * NS)
        ends = f.end_s < window_s[1]
        end = origin_ns + int(f.end_s * NS) if ends else origin_ns + int(window_s[1] * NS)
        during = [(s, lvl, r) for s, lvl, r in series if start <= s <= end + GRACE_S * NS]
        first = next(((s, lvl, r) for s, lvl, r in during if lvl in FLAGGED), None)
        worst = max((lvl for _, lvl, _ in during if lvl in FLAGGED), default=HealthLevel.OK)
        recovery = None
        followed = any(o.failure is not f and o.failure.modality is f.modality and o.failure.start_s <= f.end_s < o.failure.end_s
                       for o in failures)  # fmt: skip
        if first is not None and ends and not followed:
            back = next((s for s, lvl, _ in series if s >= max(end, first[0]) and lvl == HealthLevel.OK), None)
            recovery = None if back is None else round((back - end) / NS, 3)
        reports.append(FailureReport(
            spec=str(f), source=scheduled.source, modality=f.modality.value, start_s=f.start_s,
            end_s=f.end_s if ends else None, detected=first is not None,
            detection_delay_s=None if first is None else round((first[0] - start) / NS, 3),
            level=worst.name, reason="" if first is None else first[2], recovery_delay_s=recovery, followed=followed,
        ))  # fmt: skip
    return reports


def false_alarms(failures: Sequence[ScheduledFailure], outputs: RunOutputs, origin_ns: int, end_ns: int) -> list[FalseAlarm]:
    alarms = []
    for modality in MODALITIES:
        windows = [(origin_ns + int(s.failure.start_s * NS), origin_ns + int(min(s.failure.end_s + GRACE_S, 1e9) * NS))
                   for s in failures if s.failure.modality is modality]  # fmt: skip
        previous = None
        for stamp, level, reason in health_series(outputs, modality):
            if previous == HealthLevel.OK and level in FLAGGED and stamp <= end_ns:
                if not any(lo <= stamp <= hi for lo, hi in windows):
                    alarms.append(FalseAlarm(modality.value, round((stamp - origin_ns) / NS, 3), level.name, reason))
            previous = level
    return alarms


def evaluate(bag: Bag, outputs: RunOutputs, options: ReplayOptions) -> BagEvaluation:
    """Score one replay of ``bag``."""
    origin = bag.origin_ns
    begin, end = window(bag, PlaybackOptions(start_s=options.start_s, duration_s=options.duration_s))
    window_s = ((begin - origin) / NS, (end - origin) / NS)
    failures = failure_schedule(bag, options.failures)
    condition = condition_of(bag)
    frames = label_frames(bag, options)
    matched = match_masks(frames, outputs.masks)
    overall, by_condition, by_subset, by_phase = Group(), {}, {}, {}
    scores = []
    for frame, index in zip(frames, matched):
        t_s = (frame.stamp_ns - origin) / NS
        phase = phase_of(failures, t_s)
        if index is None:
            scores.append(FrameScore(frame.stamp_ns, t_s, phase, None, None, math.nan))
            continue
        mask = outputs.masks[index]
        prediction = _fit(mask.labels, frame.labels.shape)
        for group in (overall, by_condition.setdefault(condition, Group()), by_subset.setdefault(mask.subset, Group()),
                      by_phase.setdefault(phase, Group())):  # fmt: skip
            group.add(prediction, frame.labels)
        scores.append(FrameScore(frame.stamp_ns, t_s, phase, index, mask.subset, frame_miou(prediction, frame.labels)))
    if not frames:  # no ground truth: count the trigger messages instead of label frames
        outputs.notes.append(f"no {NodeConfig.load(options.params).ground_truth.topic} in the bag: counts and latency only, no mIoU")
    latency = {"node": _percentiles([m.node_ms for m in outputs.masks]),
               "inference": _percentiles([m.inference_ms for m in outputs.masks])}  # fmt: skip
    e2e = [m.end_to_end_ms for m in outputs.masks if m.end_to_end_ms is not None]
    if e2e:
        latency = {"end_to_end": _percentiles(e2e), **latency}
    return BagEvaluation(
        name=bag.name, path=str(bag.path), mode=outputs.mode, model=outputs.model, condition=condition, origin_ns=origin,
        window_s=(round(window_s[0], 3), round(window_s[1], 3)), frames=scores, overall=overall,
        by_condition=by_condition, by_subset=by_subset, by_phase=by_phase, masks_published=len(outputs.masks),
        latency_ms=latency, failures=failure_reports(failures, outputs, origin, window_s),
        false_alarms=false_alarms(failures, outputs, origin, end), counters=dict(outputs.counters),
        notes=list(outputs.notes), wall_s=outputs.wall_s, has_ground_truth=bool(frames),
    )  # fmt: skip


def aggregate(evaluations: Sequence[BagEvaluation]) -> tuple[dict[str, Any], ConfusionMatrix]:
    """Totals over several bags (groups merged into one confusion matrix each) and the overall matrix."""
    overall, groups = Group(), {"per_condition": {}, "per_modalities": {}, "per_phase": {}}
    for ev in evaluations:
        overall.merge(ev.overall)
        for key, source in (("per_condition", ev.by_condition), ("per_modalities", ev.by_subset), ("per_phase", ev.by_phase)):
            for name, group in source.items():
                groups[key].setdefault(name, Group()).merge(group)
    counts = {k: sum(ev.counts()[k] for ev in evaluations) for k in evaluations[0].counts()} if evaluations else {}
    detected = [f for ev in evaluations for f in ev.failures]
    delays = [f.detection_delay_s for f in detected if f.detection_delay_s is not None]
    recoveries = [f.recovery_delay_s for f in detected if f.recovery_delay_s is not None]
    has_gt = any(ev.has_ground_truth for ev in evaluations)
    summary = {
        "bags": len(evaluations), **counts,
        "miou": overall.confusion.miou() if has_gt else None,
        "pixel_accuracy": overall.confusion.pixel_accuracy() if has_gt else None,
        **{key: _groups(value) for key, value in groups.items()},
        "per_class_iou": _per_class(overall.confusion),
        "failures": {"scheduled": len(detected), "detected": sum(f.detected for f in detected),
                     "detection_delay_s": _spread(delays), "recovery_delay_s": _spread(recoveries),
                     "false_alarms": sum(len(ev.false_alarms) for ev in evaluations)},  # fmt: skip
    }
    return summary, overall.confusion


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"mean": round(float(np.mean(values)), 3), "max": round(float(np.max(values)), 3)}

