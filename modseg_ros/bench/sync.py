"""``modseg bench sync``: how many messages per second the synchronizer takes, on the rig's streams.

The streams are the default rig's (camera, depth and events at 20 Hz, LiDAR at 10 Hz) with stamp
jitter and delivery latency; each message is pushed and the synchronizer polled, as the node does.
Cases: all alive; the camera dead (depth triggers); LiDAR silent but still believed alive (every
bundle waits for max_wait). The figures that matter are the headroom over the rig's message rate
and, on the all-alive stream, the speed against message_filters' Python ApproximateTimeSynchronizer
approach (bench/reference.py: a product search over the queues, slop = the widest of ours; it
cannot reuse the 10 Hz LiDAR scan, so it emits at most one bundle per scan).
"""
from __future__ import annotations

import argparse
import random
from time import perf_counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=600.0, help="stream time per case (default 600)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case; the best is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queue-size", type=int, default=10, help="queue per input of the reference synchronizer (default 10)")


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
    table = Table(title=f"synchronizer: {args.seconds:.0f} s of the default rig's streams ({rig_rate:.0f} msg/s, 4 inputs)")
    for column in ("case", "messages", "bundles", "partial", "µs / message", "messages / s", "bundles / s", "headroom ×"):
        table.add_column(column, justify="right" if column != "case" else "left")

    def row(name: str, stream: list, bundles: int, partial: str, seconds: float) -> None:
        rate = len(stream) / seconds
        table.add_row(name, f"{len(stream)}", f"{bundles}", partial, f"{seconds / len(stream) * 1e6:.1f}", f"{rate:,.0f}",
                      f"{bundles / seconds:,.0f}", f"{rate / rig_rate:,.0f}")  # fmt: skip

    ours = reference = (0, 0.0)  # (bundles, seconds) on the all-alive stream
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
        row(name, stream, sync.stats.bundles, f"{sync.stats.partial}", best)
        if not silent:
            ours, reference = (sync.stats.bundles, best), _reference(config, stream, args)
            row("all alive: ApproximateTime product search", stream, reference[0], "-", reference[1])
    Console(width=180).print(table)
    print(f"ours / ApproximateTime product search, all alive: messages/s {reference[1] / ours[1]:.2f}×, "
          f"bundles {ours[0]} vs {reference[0]}, bundles/s {ours[0] / ours[1] / (reference[0] / reference[1]):.2f}×")
    return 0


def _reference(config, stream: list, args: argparse.Namespace) -> tuple[int, float]:
    """Bundles the reference synchronizer emits on the stream, and its best time."""
    from modseg_ros.bench.reference import ApproximateTimeProductSearch

    order = list(config.sync.priority)
    slop_ns = max(s.slop_ns for s in config.sync.inputs.values())
    best, bundles = float("inf"), 0
    for _ in range(args.repeat):
        reference = ApproximateTimeProductSearch(len(order), args.queue_size, slop_ns)
        start = perf_counter()
        for sample in stream:
            reference.add(order.index(sample.modality), sample.stamp_ns, sample)
        best, bundles = min(best, perf_counter() - start), reference.bundles
    return bundles, best
