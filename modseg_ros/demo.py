"""``make demo`` / ``modseg demo``: a night drive whose sensors fail one after another, replayed
through the live node, scored and drawn.

1. The drive comes from the embedded world (generated once, then reused from the cache): night, so
   the camera is dark to begin with; then the camera is under-exposed, then blacks out; the LiDAR
   goes silent while the camera is still black (only depth and events are left) and comes back;
   the event camera gets a burst of noise; the last seconds are nominal again.
2. ``modseg replay-eval`` runs on it in live mode: the node (``modseg run``, the shipped parameters
   and checkpoint, use_sim_time) in its own process and a private ROS domain, the bag played with
   /clock, the outputs recorded and scored.
3. A short summary is printed and the report folder written (report.md, timeline, panels,
   confusion matrix, overlay GIF).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from modseg_ros.data.failures import format_failure_spec, parse_failure_spec
from modseg_ros.paths import config_file

CAMERA_RATE_HZ = 20.0
STORY_SECONDS = 10.0
PANELS = 6  # one frame per failure phase of the drive


@dataclass(frozen=True)
class DemoDrive:
    seconds: float = 10.0
    seed: int = 3
    condition: str = "night"
    width: int = 256  # the camera grid: the network's input size, so nothing is resampled
    height: int = 128
    story: str = "camera:underexposure@1.5-3.5s,camera:blackout@3.5-5.5s,lidar:silent@4.5-7s,events:burst@7.5-9s"  # for 10 s

    @property
    def frames(self) -> int:
        return int(round(self.seconds * CAMERA_RATE_HZ))

    @property
    def failures(self) -> str:
        """The story's failure schedule, its times scaled to the drive's length."""
        k = self.seconds / STORY_SECONDS
        scaled = [replace(f, start_s=round(f.start_s * k, 3), end_s=round(f.end_s * k, 3)) for f in parse_failure_spec(self.story)]
        return format_failure_spec(scaled)

    def key(self) -> str:
        """Cache key: the drive's settings and the world's code (a changed world gives a new drive)."""
        from modseg_ros.data import world

        digest = hashlib.sha256(json.dumps({**self.__dict__, "failures": self.failures}, sort_keys=True).encode())
        for source in sorted(Path(world.__file__).parent.glob("*.py")):
            digest.update(source.read_bytes())
        return digest.hexdigest()[:12]


def demo_parameters(drive: DemoDrive, folder: Path) -> Path:
    """The node's parameters for the demo: the shipped file, with the drive's camera grid and one
    inference thread (the player and the recorder share the machine's cores with the node). The
    consistency check is off: the shipped calibration is for the 512×256 rig, not this grid."""
    path = folder / "demo_params.yaml"
    overrides = {"any2seg": {"ros__parameters": {"rig": {"camera": {"width": drive.width, "height": drive.height}},
                                                  "model": {"threads": 1}, "health": {"consistency": {"enabled": False}}}}}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {config_file('any2seg.yaml')} plus these overrides (written by modseg demo)\n" + yaml.safe_dump(overrides))
    return path


def drive_bag(drive: DemoDrive, cache: Path, regenerate: bool = False, say=print) -> Path:
    """The drive's bag from the cache, generated there first if needed (atomically)."""
    from modseg_ros.data.world.generate import WorldOptions, generate

    folder = cache / "demo" / drive.key()
    bag = folder / "drive"
    if regenerate and folder.exists():
        shutil.rmtree(folder)
    if (bag / "metadata.yaml").is_file() and (bag / "world.yaml").is_file():
        say(f"reusing the drive in {bag}")
        return bag
    partial = folder / "partial"
    if partial.exists():
        shutil.rmtree(partial)
    say(f"generating a {drive.seconds:g} s {drive.condition} drive with the embedded world (first run only) -> {bag}")
    options = WorldOptions(out=partial / "drive", format="bag", frames=drive.frames, seed=drive.seed, conditions=(drive.condition,),
                           failures=tuple(parse_failure_spec(drive.failures)), width=drive.width, height=drive.height)  # fmt: skip
    generate(options)
    (partial / "drive").rename(bag)
    partial.rmdir()
    return bag


def run_demo(out: Path, cache: Path, rate: float, drive: DemoDrive = DemoDrive(), regenerate: bool = False,
             docs: Path | None = None, say=print) -> tuple[dict, float]:  # fmt: skip
    """Generate or reuse the drive, replay it through the live node, write the report; returns the
    report and the wall time in seconds."""
    from modseg_ros.eval.replay_eval import replay_eval
    from modseg_ros.eval.run import ReplayOptions
    from modseg_ros.eval.summary import progress_bar
    from modseg_ros.ros.live_replay import run_live

    started = time.monotonic()
    bag = drive_bag(drive, cache, regenerate, say)
    params = demo_parameters(drive, out)
    say(f"replaying it through the live node at {rate:g}x (failures recorded in the drive: {drive.failures})")
    with progress_bar("demo") as progress:
        report = replay_eval([bag], out, ReplayOptions(params=params, rate=rate), run_live, panels=PANELS, progress=progress)
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        for figure in ("timeline", "panels"):
            shutil.copyfile(out / "drive" / f"{figure}.png", docs / f"demo_{figure}.png")
    return report, time.monotonic() - started
