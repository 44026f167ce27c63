"""``modseg bench consistency``: the model-aware sensor health check against the targets of issue 8.

World drives (one per condition and seed, rendered once into ``--cache`` and reused) are replayed
offline through the node's perception core (eval/offline.py) with the checkpoint's calibration:

- **nominal**, every condition of ``--nominal-seeds`` (towns): consistency alarms (a sensor
  entering WARN "inconsistent with other sensors" from the network's score, or a depth or LiDAR
  WARN from the depth-LiDAR range agreement, core/checks/range_agreement.py) per 10 minutes of drive;
- **each quiet fault and magnitude** injected by the player from ``--onset`` on, over the first
  ``--fault-duration`` seconds of the drives of ``--conditions``: detected or not, the delay from onset to WARN and to exclusion, and
  alarms on the healthy sensors;
- **mIoU over the fault's frames**: the faulty sensor fused until the check excludes it (exclusion
  on, as shipped), against the same frames with the faulty sensor removed by hand
  (``inputs.modalities`` without it) and the nominal drive (no fault).

The figures go in BENCHMARKS.md and docs/health.md.
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

NS = 1_000_000_000
# (case, failure spec without timing, goal case of the issue: >= 90 % detected within 2 s)
CASES: tuple[tuple[str, str, bool], ...] = (
    ("lidar rotation 1°", "lidar:rotation(yaw=1)", False),
    ("lidar rotation 3°", "lidar:rotation(yaw=3)", True),
    ("lidar rotation 5°", "lidar:rotation(yaw=5)", False),
    ("lidar translation 0.2 m", "lidar:translation(y=0.2)", False),
    ("lidar translation 0.5 m", "lidar:translation(y=0.5)", True),
    ("lidar blockage 30°", "lidar:blockage(from=-15,to=15)", False),
    ("lidar blockage 90°", "lidar:blockage(from=-45,to=45)", True),
    ("camera colour cast", "camera:color_cast", False),
    ("camera smear", "camera:smear", False),
    ("camera occlusion 20 %", "camera:occlusion(fraction=0.2)", False),
    ("camera occlusion 40 %", "camera:occlusion(fraction=0.4)", True),
    ("depth scale ×0.8", "depth:scale(factor=0.8)", False),
    ("depth scale ×1.25", "depth:scale(factor=1.25)", True),
    ("depth offset +1 m", "depth:offset(m=1)", False),
    ("events flicker", "events:flicker", False),
)
DETECT_WITHIN_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from modseg_ros.eval.calibrate import parse_seeds
    from modseg_ros.paths import config_file

    parser.add_argument("--checkpoint", type=Path, help="model .safetensors (default: the shipped one); calibrated beside it")
    parser.add_argument("--params", type=Path, default=config_file("any2seg.yaml"), help="node parameter file (default config/any2seg.yaml)")
    parser.add_argument("--cache", type=Path, default=Path("cache/consistency/eval"), help="where the drives are rendered and reused")
    parser.add_argument("--frames", type=int, default=100, help="camera frames (20 Hz) per drive (default 100)")
    parser.add_argument("--seed", type=int, default=21, help="world seed of the fault drives (default 21; the shipped calibration uses 41-91)")
    parser.add_argument("--conditions", default="sun,night", help="conditions of the fault drives (default sun,night; nominal: all five)")
    parser.add_argument("--nominal-conditions", default=",".join(("sun", "cloud", "fog", "rain", "night")),
                        help="conditions of the nominal drives counted for false alarms (default all five)")  # fmt: skip
    parser.add_argument("--nominal-seeds", type=parse_seeds, metavar="S[,S...]",
                        help="world seeds of the nominal drives counted for false alarms (default: --seed)")  # fmt: skip
    parser.add_argument("--nominal-frames", type=int, help="camera frames per nominal drive (default: --frames)")
    parser.add_argument("--nominal-only", action="store_true", help="count the false alarms on the nominal drives, no fault")
    parser.add_argument("--onset", type=float, default=1.0, help="fault start, seconds into the drive (default 1.0)")
    parser.add_argument("--fault-duration", type=float, default=3.5, metavar="S",
                        help="seconds of each fault drive replayed (default 3.5: the onset, then 2.5 s of fault)")  # fmt: skip
    parser.add_argument("--cases", default="", help="comma-separated substrings selecting cases (default all), e.g. 'rotation,scale'")
    parser.add_argument("--threads", type=int, default=1, help="network threads (default 1)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")


@dataclass
class Run:
    """One offline replay: per segmented frame its stamp, verdicts and mask; the label frames."""

    stamps: np.ndarray
    levels: list[dict]  # per frame: Modality -> HealthLevel of the consistency verdict
    excluded: list[frozenset]
    scores: list[dict]  # per frame: Modality -> smoothed score
    masks: list[np.ndarray]
    labels: list  # LabelFrame
    matched: list[int | None]
    origin_ns: int


@dataclass
class CaseResult:
    case: str
    spec: str
    goal: bool
    drives: int = 0
    detected: int = 0  # WARN within DETECT_WITHIN_S of the onset
    detected_late: int = 0  # WARN later in the drive
    delays_s: list[float] = field(default_factory=list)
    exclusion_delays_s: list[float] = field(default_factory=list)
    healthy_alarms: int = 0
    miou_exclusion: float = math.nan
    miou_removed: float = math.nan
    miou_nominal: float = math.nan
    miou_excluded_after: float = math.nan  # frames from the exclusion on, with exclusion
    miou_removed_after: float = math.nan  # the same frames, the faulty sensor removed by hand


def _replay(engine, calibration, params: Path, bag: Path, overrides: dict, spec: str, onset_s: float,
            duration_s: float | None) -> Run:  # fmt: skip
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.data.bags import Bag
    from modseg_ros.data.failures import parse_failure_spec
    from modseg_ros.data.playback import PlaybackOptions, window
    from modseg_ros.eval.offline import OfflineNode, replay_into
    from modseg_ros.eval.replay import label_frames, match_masks
    from modseg_ros.eval.run import ReplayOptions

    class Recorder(OfflineNode):
        """Every bundle segmented as the node does (no rendering), the verdicts after each."""

        def _segment(self, bundles):
            for bundle in bundles:
                seg = self.perception.segment(bundle)
                self.perception.cross_check(seg)
                verdicts = self.perception.consistency.verdicts()
                checks = (self.perception.range_agreement.verdicts(), self.perception.motion_agreement.verdicts())
                self.masks.append(SimpleNamespace(stamp_ns=bundle.stamp_ns, labels=seg.labels))
                levels.append({m: max([v.level] + [c[m].level for c in checks if m in c]) for m, v in verdicts.items()})
                excluded.append(self.perception.excluded)
                scores.append({m: v.score for m, v in verdicts.items()})

    levels, excluded, scores = [], [], []
    failures = tuple(parse_failure_spec(f"{spec}@{onset_s}s-")) if spec else ()
    options = ReplayOptions(params=params, failures=failures, duration_s=duration_s)
    config = NodeConfig.load(params, overrides)
    node = Recorder(config, engine, calibration)
    replay_into(node, bag, options)
    with Bag(bag) as opened:
        frames = label_frames(opened, options)
        origin = window(opened, PlaybackOptions())[0]
    stamps = np.array([m.stamp_ns for m in node.masks], dtype=np.int64)
    return Run(stamps, levels, excluded, scores, [m.labels for m in node.masks], frames, match_masks(frames, node.masks), origin)


def _confusion(run: Run, since_ns: int):
    from modseg_ros.core.metrics import ConfusionMatrix
    from modseg_ros.eval.replay import _fit

    cm = ConfusionMatrix()
    for frame, index in zip(run.labels, run.matched):
        if index is not None and frame.stamp_ns >= since_ns:
            cm.update(_fit(run.masks[index], frame.labels.shape), frame.labels)
    return cm


def present_miou(cms: Sequence) -> float:
    """mIoU (%) over the classes present in the pooled ground truth or predictions."""
    from modseg_ros.core.metrics import ConfusionMatrix

    if not cms:
        return math.nan
    pooled = ConfusionMatrix()
    for cm in cms:
        pooled.merge(cm)
    return pooled.present_miou()


def _alarms(run: Run, modalities) -> list[str]:
    """Entries into a consistency WARN of the given modalities, as 'modality@seconds into the drive'."""
    from modseg_ros.core.types import HealthLevel

    found = []
    for m in modalities:
        previous = HealthLevel.OK
        for stamp, levels in zip(run.stamps, run.levels):
            if levels[m] is HealthLevel.WARN and previous is HealthLevel.OK:
                found.append(f"{m.value}@{(int(stamp) - run.origin_ns) / NS:.1f}s")
            previous = levels[m]
    return found


def _first_at(run: Run, since_ns: int, hit) -> float | None:
    for i, stamp in enumerate(run.stamps):
        if stamp >= since_ns and hit(i):
            return (int(stamp) - since_ns) / NS
    return None


def run(args: argparse.Namespace) -> int:
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.types import MODALITIES, HealthLevel
    from modseg_ros.data.failures import parse_failure_spec
    from modseg_ros.errors import ConfigError
    from modseg_ros.eval.calibrate import CONDITIONS, NominalDrives
    from modseg_ros.model.loading import load_calibration, load_engine

    overrides = {"model.threads": args.threads, "health.consistency.exclude": True,  # what exclusion recovers is measured
                 **({"model.path": str(args.checkpoint)} if args.checkpoint else {})}  # fmt: skip
    base = NodeConfig.load(args.params, overrides)
    engine, note = load_engine(base.model, base.rig.camera)
    calibration, calibration_note = load_calibration(base.consistency, base.model, engine)
    if calibration is None:
        raise ConfigError(f"bench consistency needs a calibration: {calibration_note}")
    print(note)
    print(calibration_note)
    fault_conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
    nominal_conditions = tuple(c.strip() for c in args.nominal_conditions.split(",") if c.strip())
    unknown = set(nominal_conditions) - set(CONDITIONS)
    if unknown:
        raise ConfigError(f"--nominal-conditions: unknown condition(s) {', '.join(sorted(unknown))} (choose from {', '.join(CONDITIONS)})")
    args.nominal_seeds = args.nominal_seeds or (args.seed,)  # resolved once: the table names them
    counted = NominalDrives(args.cache, frames=args.nominal_frames or args.frames, seeds=args.nominal_seeds,
                            conditions=nominal_conditions, params=args.params)  # fmt: skip
    counted_bags = counted.paths(print)
    selected = [] if args.nominal_only else [c for c in CASES if not args.cases or any(s.strip() and s.strip() in c[0] + c[1]
                                                                                     for s in args.cases.split(","))]  # fmt: skip
    # the fault drives' nominal twins: the reference of the onset and of "no fault"
    bags = dict(zip(fault_conditions, NominalDrives(args.cache, frames=args.frames, seeds=(args.seed,), conditions=fault_conditions,
                                                    params=args.params).paths(print) if selected else []))  # fmt: skip

    def replay(bag, extra=None, spec="", duration_s=None):
        return _replay(engine, calibration, args.params, bag, {**overrides, **(extra or {})}, spec, args.onset, duration_s)

    runs: dict[Path, Run] = {}
    alarms, nominal_s = 0, 0.0
    for bag in counted_bags:
        runs[bag] = replay(bag)
        found = _alarms(runs[bag], MODALITIES)
        alarms += len(found)
        seconds = (runs[bag].stamps[-1] - runs[bag].stamps[0]) / NS
        nominal_s += seconds
        print(f"nominal {bag.name}: {len(found)} alarm(s) in {seconds:.1f} s {' '.join(found)}", flush=True)
    nominal = {condition: runs[bag] if bag in runs else replay(bag) for condition, bag in bags.items()}
    removed: dict[tuple[str, object], Run] = {}
    results = []
    for case, spec, goal in selected:
        modality = parse_failure_spec(spec)[0].modality
        result = CaseResult(case, spec, goal)
        cms_exclusion, cms_removed, cms_nominal, cms_after, cms_removed_after = [], [], [], [], []
        for condition in fault_conditions:
            bag = bags[condition]
            faulty = replay(bag, spec=spec, duration_s=args.fault_duration)
            onset_ns = nominal[condition].origin_ns + int(args.onset * NS)
            if (condition, modality) not in removed:
                keep = [m.value for m in base.inputs.modalities if m is not modality]
                removed[(condition, modality)] = replay(bag, {"inputs.modalities": keep, "sync.priority": keep}, duration_s=args.fault_duration)
            delay = _first_at(faulty, onset_ns, lambda i: faulty.levels[i][modality] is HealthLevel.WARN)
            exclusion = _first_at(faulty, onset_ns, lambda i: modality in faulty.excluded[i])
            result.drives += 1
            if delay is not None:
                result.delays_s.append(delay)
                result.detected += delay <= DETECT_WITHIN_S
                result.detected_late += delay > DETECT_WITHIN_S
            if exclusion is not None:
                result.exclusion_delays_s.append(exclusion)
                cms_after.append(_confusion(faulty, onset_ns + int(exclusion * NS)))
                cms_removed_after.append(_confusion(removed[(condition, modality)], onset_ns + int(exclusion * NS)))
            result.healthy_alarms += len(_alarms(faulty, [m for m in MODALITIES if m is not modality]))
            cms_exclusion.append(_confusion(faulty, onset_ns))
            cms_removed.append(_confusion(removed[(condition, modality)], onset_ns))
            cms_nominal.append(_confusion(nominal[condition], onset_ns))
        result.miou_exclusion, result.miou_removed, result.miou_nominal, result.miou_excluded_after, result.miou_removed_after = (
            present_miou(c) for c in (cms_exclusion, cms_removed, cms_nominal, cms_after, cms_removed_after))
        results.append(result)
        print(_row(result), flush=True)
    print()
    print(table(results, alarms, nominal_s, args, fault_conditions))
    if args.out:
        args.out.write_text(json.dumps({
            "nominal_s": nominal_s, "nominal_alarms": alarms, "alarms_per_10_min": alarms / nominal_s * 600 if nominal_s else None,
            "conditions": list(fault_conditions), "onset_s": args.onset, "frames": args.frames, "seed": args.seed,
            "nominal_drives": [str(b) for b in counted_bags],
            "cases": [r.__dict__ for r in results],
        }, indent=2, default=str) + "\n")  # fmt: skip
    return 0


def _median(values: Sequence[float]) -> str:
    return f"{np.median(values):.2f}" if values else "-"


def _row(r: CaseResult) -> str:
    return (f"| {r.case}{' (goal)' if r.goal else ''} | {r.detected}/{r.drives} | {r.detected_late} | {_median(r.delays_s)} | "
            f"{_median(r.exclusion_delays_s)} | {r.healthy_alarms} | {r.miou_exclusion:.1f} | {r.miou_removed:.1f} | {r.miou_nominal:.1f} | "
            f"{r.miou_excluded_after:.1f} / {r.miou_removed_after:.1f} |")  # fmt: skip


def table(results: Sequence[CaseResult], alarms: int, nominal_s: float, args, conditions: Sequence[str]) -> str:
    lines = [
        f"nominal drives ({', '.join(args.nominal_conditions.split(','))}; seeds {', '.join(map(str, args.nominal_seeds))};"
        f" {nominal_s:.0f} s): {alarms} consistency alarm(s)"
        f" = {alarms / nominal_s * 600 if nominal_s else math.nan:.1f} per 10 min",
        f"fault drives: {', '.join(conditions)}; fault from {args.onset:g} s on, {args.fault_duration:g} s replayed",
        "",
        f"| fault | detected ≤ {DETECT_WITHIN_S:g} s | later | median delay s | median exclusion delay s | alarms on healthy sensors "
        "| mIoU with exclusion | mIoU faulty sensor removed | mIoU no fault | mIoU from the exclusion on: with exclusion / removed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    lines += [_row(r) for r in results]
    goal = [r for r in results if r.goal]
    if goal:
        rate = sum(r.detected for r in goal) / max(sum(r.drives for r in goal), 1)
        lines += ["", f"goal cases (3°, 0.5 m, 40 %, ×1.25, 90°): {100 * rate:.0f} % detected within {DETECT_WITHIN_S:g} s (goal ≥ 90 %)"]
    return "\n".join(lines)
