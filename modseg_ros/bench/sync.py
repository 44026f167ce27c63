"""``modseg bench sync``: how many messages per second the synchronizer takes, on the rig's streams.

The streams are the default rig's (camera, depth and events at 20 Hz, LiDAR at 10 Hz) with stamp
jitter and delivery latency; each message is pushed and the synchronizer polled, as the node does.
Cases: all alive; the camera dead (depth triggers); LiDAR silent but still believed alive (every
bundle waits for max_wait). The figure that matters is the headroom over the rig's message rate.
"""
from __future__ import annotations

import argparse
import random
from time import perf_counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="stream time per case (default 600)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0)


def _streams(config, seconds: float, seed: int, silent: frozenset = frozenset()):
    from modseg_ros.core.types import SensorSample

    rng = random.Random(seed)
    events = []
    for modality, limits in config.health.streams.items():
        if modality in silent:
            continue
        period = int(1e9 / limits.rate_hz)
        last = 0
        for k in range(int(seconds * limits.rate_hz)):
            stamp = 10**9 + k * period + rng.randint(-2_000_000, 2_000_000)
            arrival = max(stamp + rng.randint(1_000_000, 15_000_000), last + 1)
            last = arrival
            events.append(SensorSample(modality, stamp, arrival, modality.value, None))
    events.sort(key=lambda s: s.arrival_ns)
    return events


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.sync import Synchronizer
    from modseg_ros.core.types import MODALITIES, Modality

    config = NodeConfig.load()
    rig_rate = sum(limits.rate_hz for limits in config.health.streams.values())
    everyone = frozenset(MODALITIES)
    cases = [
        ("all alive", everyone, frozenset()),
        ("camera dead (depth triggers)", everyone - {Modality.CAMERA}, frozenset({Modality.CAMERA})),
        ("LiDAR silent, still believed alive", everyone, frozenset({Modality.LIDAR})),
    ]
    table = Table(title=f"synchronizer: {args.seconds:.0f} s of the default rig's streams ({rig_rate:.0f} msg/s)")
    for column in ("case", "messages", "bundles", "partial", "µs / message", "messages / s", "headroom ×"):
        table.add_column(column, justify="right" if column != "case" else "left")
    for name, alive, silent in cases:
        stream = _streams(config, args.seconds, args.seed, silent)
        best = float("inf")
        for _ in range(args.repeat):
            sync = Synchronizer(config.sync)
            start = perf_counter()
            for sample in stream:
                sync.push(sample, sample.arrival_ns, alive)
                sync.poll(sample.arrival_ns, alive)
            best = min(best, perf_counter() - start)
        rate = len(stream) / best
        table.add_row(name, f"{len(stream)}", f"{sync.stats.bundles}", f"{sync.stats.partial}",
                      f"{best / len(stream) * 1e6:.1f}", f"{rate:,.0f}", f"{rate / rig_rate:,.0f}")  # fmt: skip
    Console(width=180).print(table)
    return 0
