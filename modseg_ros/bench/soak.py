"""``modseg bench soak``: many bundles with flapping sensors through the live node; does anything grow?

The node runs on sim time (``modseg run``, ``use_sim_time``) and the synthetic street streams at
``--sim-rate`` times real time (``python -m modseg_ros.ros.stream``: the default rig's rates, every
sensor up 0.8-2 s then silent 0.5-1.5 s at random), so ``--bundles`` bundles are offered faster than
the model can segment them: the newest bundle wins the worker and the others are counted as
dropped. Every ``--sample-s`` wall seconds the node's RSS and CPU (psutil) and its pipeline counters
(``/diagnostics``) are sampled. Checks, after a warm-up (the first ``--warmup`` of the bundles):

- RSS growth < 5 % (the median of the last five samples against the median of the five after the warm-up);
- no growing queue: the synchronizer's queues, pending triggers and cached encodings stay within
  their bounds by construction (queue_size per input, queue_size triggers, four encodings per
  input) all along; their maxima over the first and second half are printed;
- every drop explained: bundles offered = masks published + dropped because a newer one arrived +
  segmentation failures + at most two in flight (one in the mailbox, one being segmented).

The exit code is 1 if a check fails.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

RIG_RATES = {"camera": 20.0, "depth": 20.0, "lidar": 10.0, "events": 20.0}  # the shipped parameters'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundles", type=int, default=20_000, help="bundles to offer the node (default 20000)")
    parser.add_argument("--sim-rate", type=float, default=2.0, help="stream (sim) seconds per wall second (default 2)")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the bundles before the RSS reference (default 0.1)")
    parser.add_argument("--sample-s", type=float, default=2.0, help="wall seconds between samples (default 2)")
    parser.add_argument("--width", type=int, default=256, help="camera width (default 256)")
    parser.add_argument("--height", type=int, default=128, help="camera height (default 128)")
    parser.add_argument("--threads", type=int, default=1, help="model threads in the node (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flapping pattern")


def soak(args: argparse.Namespace, print_progress=print) -> dict:
    """Run the soak; returns the samples and the final counters."""
    import yaml

    from modseg_ros.bench.node import PipelineRecorder
    from modseg_ros.ros.node_process import NodeProcess
    from modseg_ros.ros.stream import flapping

    tmp = Path(tempfile.mkdtemp(prefix="modseg-bench-soak-"))
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"any2seg": {"ros__parameters": {
        "rig": {"camera": {"width": args.width, "height": args.height}},
        "model": {"threads": args.threads}, "outputs": {"diagnostics_rate_hz": 2.0},
    }}}))  # fmt: skip
    # Long enough for the bundles even if only half the camera periods make one (flapping: a trigger
    # that fell silent is replaced after its timeout, a sensor back needs a few messages to be trusted);
    # the stream is stopped once the node has offered them.
    duration = args.bundles / RIG_RATES["camera"] / 0.5
    scenario = {"duration_s": duration, "rate_hz": RIG_RATES, "width": args.width, "height": args.height,
                "silent": flapping(args.seed, list(RIG_RATES), duration), "sim_time": True, "sim_rate": args.sim_rate,
                "sim_start_s": 100.0}  # fmt: skip
    recorder = PipelineRecorder()
    node = NodeProcess(params, ["-p", "use_sim_time:=true"])
    samples: list[dict] = []
    try:
        node.wait_ready(lambda: recorder.node.count_publishers("/segmentation/info") > 0)
        started = time.monotonic()
        with (tmp / "stream.jsonl").open("w") as sent:
            (tmp / "scenario.json").write_text(json.dumps(scenario))
            stream = subprocess.Popen([sys.executable, "-m", "modseg_ros.ros.stream", f"@{tmp / 'scenario.json'}"], stdout=sent,
                                      stderr=subprocess.PIPE, text=True)  # fmt: skip
            stopped = False
            while stream.poll() is None:
                time.sleep(args.sample_s)
                if int(recorder.pipeline.get("bundles_offered", 0)) >= args.bundles:
                    stream.terminate()
                    stream.wait()
                    stopped = True
                if not node.alive():
                    raise RuntimeError(f"the node died during the soak:\n{node.tail()}")
                resources, counters = node.resources(), dict(recorder.pipeline)
                samples.append({"wall_s": time.monotonic() - started, "rss_mb": resources.rss_bytes / 2**20,
                                "cpu_s": resources.cpu_s, **counters})  # fmt: skip
                if len(samples) % 30 == 0:
                    print_progress(f"  {samples[-1]['wall_s']:.0f} s: {counters.get('bundles_offered', 0)} bundles offered, "
                                   f"RSS {samples[-1]['rss_mb']:.0f} MB")  # fmt: skip
        if stream.returncode != 0 and not stopped:
            raise RuntimeError(f"the stream failed: {stream.stderr.read()}")
        time.sleep(2.0)  # the last bundle segmented, one more diagnostics period
        final = dict(recorder.pipeline)
    finally:
        code = node.stop(timeout_s=30)
        recorder.close()
    return {"samples": samples, "final": final, "exit_code": code, "log": node.log(), "wall_s": time.monotonic() - started}


def _backlog_bounds() -> dict[str, int]:
    """What the pipeline may hold by construction (core/sync.py, core/perception.py), per backlog figure."""
    from modseg_ros.core.config import NodeConfig
    from modseg_ros.core.perception import Perception

    config = NodeConfig.load()
    inputs = len(config.inputs.modalities)
    return {"sync_queued": config.sync.queue_size * inputs, "sync_pending": config.sync.queue_size,
            "encodings_cached": Perception.ENCODINGS_KEPT * inputs}  # fmt: skip


def _checks(result: dict, warmup: float, bundles: int) -> list[tuple[str, str, bool]]:
    samples, final = result["samples"], result["final"]
    offered = int(final["bundles_offered"])
    after = [s for s in samples if int(s.get("bundles_offered", 0)) >= warmup * bundles]
    checks = []
    if len(after) >= 10:
        reference, last = median(s["rss_mb"] for s in after[:5]), median(s["rss_mb"] for s in after[-5:])
        growth = last / reference - 1
        checks.append(("RSS growth after warm-up", f"{reference:.0f} → {last:.0f} MB ({100 * growth:+.1f} %, "
                       f"max {max(s['rss_mb'] for s in after):.0f} MB)", growth < 0.05))  # fmt: skip
        half = len(after) // 2
        for key, bound in _backlog_bounds().items():
            first, second = (max(int(s.get(key, 0)) for s in part) for part in (after[:half], after[half:]))
            checks.append((f"{key} max, first → second half (bound)", f"{first} → {second} ({bound})", max(first, second) <= bound))
    else:
        checks.append(("samples after warm-up", f"{len(after)} (too few for the RSS and queue checks)", False))
    published, replaced = int(final["masks_published"]), int(final["bundles_dropped_newer_arrived"])
    failures = int(final["segmentation_failures"])
    in_flight = offered - published - replaced - failures
    checks.append(("drops explained: offered = published + dropped (newer arrived) + failures + in flight",
                   f"{offered} = {published} + {replaced} + {failures} + {in_flight}", 0 <= in_flight <= 2))  # fmt: skip
    checks.append(("node exit code after SIGINT", str(result["exit_code"]), result["exit_code"] == 0))
    return checks


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=180)
    console.print(f"soak: {args.bundles} bundles, sensors flapping, stream at {args.sim_rate:g}× real time on sim time, "
                  f"{args.width}×{args.height}, {args.threads} model thread(s)")  # fmt: skip
    result = soak(args, console.print)
    final, samples = result["final"], result["samples"]
    table = Table(title=f"soak: {result['wall_s']:.0f} s wall, {len(samples)} samples")
    for column in ("figure", "value", "ok"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    cpu = (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / max(samples[-1]["wall_s"] - samples[0]["wall_s"], 1e-9)
    for key in ("bundles_offered", "masks_published", "bundles_dropped_newer_arrived", "bundles_partial", "triggers_dropped",
                "sync_evicted", "sync_resets", "segmentation_failures", "renders_skipped_newer_mask", "render_failures",
                "end_to_end_ms_p50", "end_to_end_ms_p99"):  # fmt: skip
        table.add_row(key, str(final.get(key, "-")), "")
    table.add_row("node CPU (one core = 100 %)", f"{100 * cpu:.0f} %", "")
    checks = _checks(result, args.warmup, args.bundles)
    for name, value, ok in checks:
        table.add_row(name, value, "yes" if ok else "NO")
    console.print(table)
    return 0 if all(ok for _, _, ok in checks) else 1
