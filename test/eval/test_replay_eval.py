"""``modseg replay-eval``: the report's numbers against a hand-computed case, the live node and the
offline core giving the same masks for the same bundles, and the command end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from replay_fixtures import PARAMS, modseg, small_world_bag
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from modseg_ros.core.types import HealthLevel, Modality
from modseg_ros.data.bags import Bag
from modseg_ros.data.failures import parse_failure_spec
from modseg_ros.eval.offline import run_offline
from modseg_ros.eval.replay import evaluate
from modseg_ros.eval.replay_eval import replay_eval
from modseg_ros.eval.run import HealthRecord, MaskRecord, ReplayOptions, RunOutputs

NS = 1_000_000_000
MS = 1_000_000
ORIGIN = 1_767_225_600 * NS
C, D, L, E = Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS
OK, WARN, ERROR, STALE = HealthLevel.OK, HealthLevel.WARN, HealthLevel.ERROR, HealthLevel.STALE

# Four label frames at 20 Hz; frame 2 gets no mask. Class ids 0, 1, 2, 5, 6; 255 is ignored.
LABELS = [np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8), np.array([[0, 0, 0, 0], [1, 1, 1, 1]], np.uint8),
          np.array([[3, 3, 3, 3], [3, 3, 3, 3]], np.uint8), np.array([[6, 6, 6, 6], [6, 6, 6, 6]], np.uint8)]  # fmt: skip
PREDICTIONS = {0: np.array([[0, 1, 1, 1], [2, 0, 5, 5]], np.uint8), 1: LABELS[1].copy(), 3: np.array([[6, 6, 6, 6], [6, 6, 6, 0]], np.uint8)}


def label_bag(path: Path) -> Path:
    """A bag with only ground truth, and the world's sidecar: fog, a recorded camera blackout."""
    store = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        labels = writer.add_connection("/ground_truth/labels", "sensor_msgs/msg/Image", typestore=store)
        for k, array in enumerate(LABELS):
            stamp = ORIGIN + k * 50 * MS
            msg = Image(header=Header(stamp=Time(sec=stamp // NS, nanosec=stamp % NS), frame_id="camera_optical"), height=2,
                        width=4, encoding="mono8", is_bigendian=0, step=4, data=array.reshape(-1))  # fmt: skip
            writer.write(labels, stamp, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    sidecar = {"start_ns": ORIGIN, "condition": {"name": "fog"},
               "failure_schedule": [{"modality": "camera", "kind": "blackout", "start": 0.075, "end": 0.125},
                                    {"modality": "events", "kind": "burst", "start": 5.0, "end": 6.0}]}  # fmt: skip
    (path / "world.yaml").write_text(yaml.safe_dump(sidecar))
    return path


def health(t_ms: int, **levels: tuple[HealthLevel, str]) -> HealthRecord:
    full = {m: levels.get(m.value, (OK, "")) for m in Modality}
    return HealthRecord(ORIGIN + t_ms * MS, {m: v[0] for m, v in full.items()}, {m: v[0] < ERROR for m, v in full.items()},
                        {m: v[1] for m, v in full.items()})  # fmt: skip


def hand_made_outputs() -> RunOutputs:
    def mask(stamp_ms: int, modalities, prediction, e2e):
        stamp = ORIGIN + stamp_ms * MS
        return MaskRecord(stamp, {m: stamp for m in modalities}, {m: 0.25 for m in modalities}, prediction, None, 5.0, 7.0, e2e)

    masks = [mask(0, (C, D, L, E), PREDICTIONS[0], 10.0), mask(53, (D, L, E), PREDICTIONS[1], 20.0),
             mask(150, (C, D, L, E), PREDICTIONS[3], 30.0), mask(400, (C, D, L, E), PREDICTIONS[1], 40.0)]  # fmt: skip
    records = [
        health(0, lidar=(STALE, "never received")),
        health(60),
        health(90),
        health(110, camera=(ERROR, "under-exposed: 100% of blocks dark")),
        health(150, camera=(ERROR, "under-exposed: 100% of blocks dark"), depth=(WARN, "only 20% of pixels have a depth")),
        health(200),
    ]
    return RunOutputs("live", "hand-made", masks, records, counters={"masks_published": 4})


def test_report_numbers_match_a_hand_computed_case(tmp_path):
    bag = label_bag(tmp_path / "labels")
    options = ReplayOptions(params=PARAMS, failures=tuple(parse_failure_spec("lidar:silent@0-0.04s")))
    outputs = hand_made_outputs()
    with Bag(bag) as b:
        ev = evaluate(b, outputs, options)
    # confusion over frames 0, 1, 3 (rows gt, columns prediction): 0->0 5, 0->1 1, 1->1 6, 2->0 1, 2->2 1, 6->6 7, 6->0 1
    iou = {0: 5 / 8, 1: 6 / 7, 2: 1 / 2, 6: 7 / 8}
    assert ev.overall.confusion.miou() == pytest.approx(round(sum(iou.values()) / 25 * 100, 2))
    assert ev.overall.confusion.pixel_accuracy() == pytest.approx(round(19 / 22 * 100, 2))
    assert ev.counts() == {"frames_offered": 4, "masks_published": 4, "frames_with_mask": 3, "frames_dropped": 1}
    summary = ev.summary()
    assert summary["per_condition"] == {"fog": {"miou": ev.overall.confusion.miou(), "pixel_accuracy": ev.overall.confusion.pixel_accuracy(), "frames": 3}}
    # the mask at 53 ms (depth-triggered while the camera was failing) scores frame 1 under "DLE"
    assert summary["per_modalities"]["DLE"] == {"miou": 8.0, "pixel_accuracy": 100.0, "frames": 1}
    assert summary["per_modalities"]["CDLE"]["frames"] == 2
    # phases: frame 0 under the injected LiDAR silence, frames 1 and 3 nominal, frame 2 (blackout) has no mask
    assert summary["per_phase"]["lidar:silent"]["miou"] == pytest.approx(round((1 / 3 + 2 / 3 + 1 / 2) / 25 * 100, 2))
    assert summary["per_phase"]["nominal"]["miou"] == pytest.approx(round((4 / 5 + 1 + 7 / 8) / 25 * 100, 2))
    assert "camera:blackout" not in summary["per_phase"]
    assert [f.phase for f in ev.frames] == ["lidar:silent", "nominal", "camera:blackout", "nominal"]
    frame_mious = [f.miou for f in ev.frames]
    assert frame_mious[:2] == pytest.approx([50.0, 100.0]) and math.isnan(frame_mious[2]) and frame_mious[3] == pytest.approx(43.75)
    assert summary["per_class_iou"]["Building"] == pytest.approx(62.5)  # class 0
    assert summary["latency_ms"]["end_to_end"] == {"p50": 25.0, "p95": 38.5, "p99": 39.7, "count": 4}
    # the health monitor: blackout flagged 35 ms after it began, OK again 75 ms after it ended;
    # the LiDAR silence at the start shows only as STALE (never received), so it counts as not detected
    failures = {f["spec"]: f for f in summary["failures"]}
    assert set(failures) == {"camera:blackout@0.075-0.125s", "lidar:silent@0-0.04s"}  # the burst at 5 s is outside the bag
    blackout = failures["camera:blackout@0.075-0.125s"]
    assert (blackout["source"], blackout["detected"], blackout["detection_delay_s"], blackout["level"], blackout["recovery_delay_s"]) == (
        "recorded", True, 0.035, "ERROR", 0.075)
    assert blackout["reason"].startswith("under-exposed")
    silent = failures["lidar:silent@0-0.04s"]
    assert (silent["source"], silent["detected"], silent["detection_delay_s"]) == ("injected", False, None)
    assert summary["false_alarms"] == [{"modality": "depth", "t_s": 0.15, "level": "WARN", "reason": "only 20% of pixels have a depth"}]


def test_report_files_carry_the_same_numbers(tmp_path):
    bag = label_bag(tmp_path / "labels")
    options = ReplayOptions(params=PARAMS, failures=tuple(parse_failure_spec("lidar:silent@0-0.04s")))
    report = replay_eval([bag], tmp_path / "report", options, lambda path, opts, progress: hand_made_outputs())
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written == json.loads(json.dumps(report))
    overall = written["overall"]
    assert overall["miou"] == written["bags"][0]["miou"] == pytest.approx(round((5 / 8 + 6 / 7 + 1 / 2 + 7 / 8) / 25 * 100, 2))
    assert (overall["frames_offered"], overall["frames_with_mask"], overall["frames_dropped"]) == (4, 3, 1)
    assert overall["failures"] == {"scheduled": 2, "detected": 1, "detection_delay_s": {"mean": 0.035, "max": 0.035},
                                   "recovery_delay_s": {"mean": 0.075, "max": 0.075}, "false_alarms": 1}  # fmt: skip
    assert written["bags"][0]["frames_with_mask"] == 3 and written["options"]["injected_failures"] == ["lidar:silent@0-0.04s"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"| mIoU (DELIVER: 25 classes, NaN IoU = 0) | **{overall['miou']:.2f}** |" in markdown
    assert "| labels | `camera:blackout@0.075-0.125s` | recorded | 0.035 | ERROR |" in markdown
    for figure in ("timeline.png", "panels.png", "confusion.png"):
        assert (tmp_path / "report" / "labels" / figure).stat().st_size > 300
    assert (tmp_path / "report" / "confusion.png").is_file()


# --- live and offline: the same masks for the same bundles ------------------------------------------------


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return small_world_bag(tmp_path_factory.mktemp("replay") / "drive", frames=40, failures="camera:blackout@0.5-1.0s,lidar:silent@1.0-1.4s")


def bundle_key(mask: MaskRecord) -> tuple:
    return mask.stamp_ns, tuple(sorted((m.value, s) for m, s in mask.modality_stamps.items()))


@pytest.mark.slow
def test_live_and_offline_give_the_same_masks_for_the_same_bundles(drive):
    from modseg_ros.ros.live_replay import run_live

    options = ReplayOptions(params=PARAMS, failures=tuple(parse_failure_spec("events:burst(density=0.3)@1.5-1.8s")), rate=0.5)
    live = run_live(drive, options)
    offline = run_offline(drive, options)
    assert live.mode == "live" and offline.mode == "offline" and live.model == offline.model
    by_bundle = {bundle_key(m): m for m in offline.masks}
    common = [(m, by_bundle[bundle_key(m)]) for m in live.masks if bundle_key(m) in by_bundle]
    assert len(live.masks) >= 10, live.notes
    assert len(common) >= 0.8 * len(live.masks), (len(common), len(live.masks))
    for live_mask, offline_mask in common:
        assert np.array_equal(live_mask.labels, offline_mask.labels)
    # the live node draws overlays newest-wins: a loaded machine may skip one, never draw it differently
    drawn = [(a, b) for a, b in common if a.overlay is not None]
    assert len(drawn) >= 0.8 * len(common), (len(drawn), len(common))
    assert all(np.array_equal(a.overlay, b.overlay) for a, b in drawn)
    # both saw the camera die and come back: masks without the camera during the blackout
    for outputs in (live, offline):
        during = {m.subset for m in outputs.masks if 0.6e9 < m.stamp_ns - ORIGIN < 0.95e9}
        assert during and all("C" not in s for s in during), during
    assert len(offline.masks) >= len(live.masks)  # offline segments every bundle


def test_offline_command_aggregates_bags_in_worker_processes(drive, tmp_path):
    other = small_world_bag(tmp_path / "night", frames=20, condition="night", seed=9)
    out = tmp_path / "report"
    result = modseg("replay-eval", str(drive), str(other), "--out", str(out), "--offline", "--workers", "2", "--params", str(PARAMS),
                    "--fail", "depth:dropout@0.225-0.625s")  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [b["name"] for b in report["bags"]] == ["drive", "night"] and report["mode"] == "offline"
    assert report["overall"]["frames_offered"] == 40 + 20 == sum(b["frames_offered"] for b in report["bags"])
    assert set(report["overall"]["per_condition"]) == {"sun", "night"}
    phases = report["overall"]["per_phase"]  # the drive's own camera blackout overlaps the injected dropout
    assert sum(g["frames"] for name, g in phases.items() if "depth:dropout" in name) == 8 + 8
    assert phases["camera:blackout + depth:dropout"]["frames"] == 3
    assert all(b["frames_with_mask"] == b["frames_offered"] for b in report["bags"])  # offline: every frame
    for name in ("drive", "night"):
        for figure in ("timeline.png", "panels.png", "confusion.png", "overlay.gif"):
            assert (out / name / figure).is_file(), (name, figure)
    assert "mIoU per failure phase" in result.stdout and "Traceback" not in result.stderr


def test_workers_need_offline(drive, tmp_path):
    result = modseg("replay-eval", str(drive), "--out", str(tmp_path / "report"), "--workers", "2")
    assert result.returncode == 1 and "--workers needs --offline" in result.stderr


def test_bad_parameter_file_fails_before_any_replay(drive, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("any2seg:\n  ros__parameters:\n    sync:\n      max_wait_s: -1\n")
    result = modseg("replay-eval", str(drive), "--out", str(tmp_path / "report"), "--offline", "--params", str(params))
    assert result.returncode == 1 and "sync.max_wait_s" in result.stderr and "Traceback" not in result.stderr
