"""``modseg replay-eval``: replay bags through the node (live, over DDS on sim time, or offline
through the same core), score the masks against the bags' ground truth and write a report folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from modseg_ros.data.failures import load_failure_schedule
from modseg_ros.errors import ConfigError
from modseg_ros.paths import config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", metavar="BAG", help="bags (directories or .mcap/.db3 files) or folders of bags")
    parser.add_argument("--out", required=True, type=Path, help="report folder (report.json, report.md, pictures)")
    parser.add_argument("--offline", action="store_true",
                        help="run the node's perception core straight from the bags (no DDS; every bundle is segmented)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="offline: bags replayed in parallel processes (default 1)")
    parser.add_argument("--params", type=Path, default=config_file("any2seg.yaml"),
                        help="node parameter file (default: config/any2seg.yaml, as the launch file)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=1.0, help="live: playback speed (default 1.0)")
    parser.add_argument("--clock", type=float, default=100.0, metavar="HZ", help="/clock rate per second of bag time (default 100)")
    parser.add_argument("--start", type=float, default=0.0, metavar="S", help="start S seconds into each bag")
    parser.add_argument("--duration", type=float, metavar="S", help="replay S seconds of each bag")
    parser.add_argument("--fail", default="", metavar="SPEC",
                        help="failures injected by the player on top of those a bag records, e.g. 'camera:blackout@3-6s'")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected failures' noise (default 0)")
    parser.add_argument("--panels", type=int, default=4, help="frames shown in panels.png per bag (default 4)")
    parser.add_argument("--record", action="store_true",
                        help="live: write each bag's replay (the inputs as published, every output of the node, TF "
                             "and ground truth) as an MCAP bag OUT/recording/<bag> for Foxglove and RViz")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from modseg_ros.data.bags import bag_paths
    from modseg_ros.data.playback import PlaybackOptions
    from modseg_ros.eval.replay_eval import replay_eval
    from modseg_ros.eval.run import ReplayOptions
    from modseg_ros.eval.summary import print_summary, progress_bar

    if args.workers != 1 and not args.offline:
        raise ConfigError("--workers needs --offline (live, one node replays the bags one after the other)")
    if args.record and args.offline:
        raise ConfigError("--record records what the live node publishes: drop --offline")
    record = args.out / "recording" if args.record else None
    bags = bag_paths(args.bags)
    failures = tuple(load_failure_schedule(args.fail))
    PlaybackOptions(rate=args.rate, start_s=args.start, duration_s=args.duration, clock_hz=args.clock).validate()
    options = ReplayOptions(params=args.params, failures=failures, seed=args.seed, rate=args.rate, clock_hz=args.clock,
                            start_s=args.start, duration_s=args.duration, record=record)  # fmt: skip
    if args.offline:
        from modseg_ros.eval.offline import run_offline as runner
    else:
        from modseg_ros.ros.live_replay import run_live as runner
    with progress_bar("replay" + (" (offline)" if args.offline else "")) as progress:
        report = replay_eval(bags, args.out, options, runner, workers=args.workers, panels=args.panels, progress=progress)
    print_summary(report, args.out)
    return 0
