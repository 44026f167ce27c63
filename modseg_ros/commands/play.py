"""``modseg play``: publish a rosbag2 bag (MCAP or sqlite3) over ROS 2, optionally with injected failures."""
from __future__ import annotations

import argparse
import sys

from modseg_ros.core.types import Modality
from modseg_ros.data.failures import load_failure_schedule
from modseg_ros.errors import ConfigError

DEFAULT_CLOCK_HZ = 40.0  # as `ros2 bag play --clock`
LATE_WARNING_MS = 50.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="bag directory (metadata.yaml) or a single .mcap / .db3 file")
    parser.add_argument("--topics", nargs="+", default=[], metavar="TOPIC", help="play only these topics (default: all)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    parser.add_argument("--start", type=float, default=0.0, metavar="S", help="start S seconds into the bag")
    parser.add_argument("--duration", type=float, metavar="S", help="play S seconds of the bag")
    parser.add_argument("--clock", type=float, nargs="?", const=DEFAULT_CLOCK_HZ, default=0.0, metavar="HZ",
                        help=f"publish /clock (bag time) at HZ per second of bag time (default {DEFAULT_CLOCK_HZ:g}) "
                             "for nodes with use_sim_time:=true")  # fmt: skip
    parser.add_argument("--fail", default="", metavar="SPEC",
                        help="inject failures, e.g. 'camera:blackout@3-6s,lidar:silent@5-8s' (seconds from the "
                             "bag's start), or a YAML file; same spec as 'modseg world --failures'")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected failures' noise (default 0)")
    parser.add_argument("--sensor-topic", action="append", default=[], metavar="MODALITY=TOPIC",
                        help="a sensor topic with a non-standard name, for --fail (e.g. camera=/front/image_raw)")  # fmt: skip
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="wait S seconds before playing")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds until every played topic (and /clock) has a subscriber")  # fmt: skip


def sensor_topics(pairs: list[str]) -> dict[str, Modality]:
    mapping = {}
    for pair in pairs:
        modality, sep, topic = pair.partition("=")
        if not sep or not topic:
            raise ConfigError(f"--sensor-topic '{pair}': expected MODALITY=TOPIC, e.g. camera=/front/image_raw")
        try:
            mapping[topic] = Modality.parse(modality)
        except ValueError as err:
            raise ConfigError(f"--sensor-topic '{pair}': {err}") from None
    return mapping


def run(args: argparse.Namespace) -> int:
    from modseg_ros.data.playback import CLOCK_TOPIC, PlaybackOptions
    from modseg_ros.ros.player import run as play

    options = PlaybackOptions(topics=tuple(args.topics), rate=args.rate, loop=args.loop, start_s=args.start,
                              duration_s=args.duration, clock_hz=args.clock, failures=tuple(load_failure_schedule(args.fail)),
                              seed=args.seed, sensor_topics=sensor_topics(args.sensor_topic), delay_s=args.delay)  # fmt: skip
    stats = play(args.bag, options, warn=lambda text: print(f"modseg play: warning: {text}", file=sys.stderr),
                 wait_for_subscribers_s=args.wait_for_subscribers)
    messages = sum(n for t, n in stats.published.items() if t != CLOCK_TOPIC)
    print(f"played {messages} messages on {len(stats.published) - (CLOCK_TOPIC in stats.published)} topics in "
          f"{stats.wall_s:.2f} s ({stats.passes} pass{'es' if stats.passes != 1 else ''})"
          + (f", {stats.published[CLOCK_TOPIC]} /clock ticks" if CLOCK_TOPIC in stats.published else ""))  # fmt: skip
    if stats.max_late_ms > LATE_WARNING_MS:
        print(f"modseg play: warning: messages went out up to {stats.max_late_ms:.0f} ms late (this machine cannot "
              f"read and inject failures at --rate {args.rate:g}; try a lower rate)", file=sys.stderr)  # fmt: skip
    injection = stats.injection
    for topic in sorted(set(injection.dropped) | set(injection.rewritten)):
        print(f"  {topic}: {injection.rewritten[topic]} changed, {injection.dropped[topic]} silenced by --fail")
    for topic, count in injection.unconvertible.items():
        print(f"modseg play: warning: {topic}: {count} messages could not be decoded to inject a failure "
              f"({injection.last_problem[topic]}); sent unchanged", file=sys.stderr)  # fmt: skip
    return 0
