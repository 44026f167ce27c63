"""Benchmarks behind ``modseg bench <target>`` (commands/bench.py).

Each target is a module here with ``add_arguments(parser)`` and ``run(args) -> int``; register it
with one line in ``TARGETS``.
"""
from __future__ import annotations

# target -> (module, one-line summary)
TARGETS: dict[str, tuple[str, str]] = {
    "node": ("modseg_ros.bench.node", "end-to-end latency over bare model forward, and masks per bundle offered"),
    "sync": ("modseg_ros.bench.sync", "synchronizer throughput (messages/s) on a four-sensor rig's streams"),
    "convert": ("modseg_ros.bench.convert", "message -> numpy conversions against cv_bridge / sensor_msgs_py's approach"),
    "world": ("modseg_ros.bench.world", "frames/s of the embedded world's four-sensor rig, and where the time goes"),
    "model": ("modseg_ros.bench.model", "network speed per number of modalities, torch against ONNX Runtime"),
    "consistency": ("modseg_ros.bench.consistency", "model-aware sensor health: detection per quiet fault, false alarms, mIoU with exclusion"),
    "labels": ("modseg_ros.bench.labels", "labels on the network's input grid against full resolution: mIoU and time"),
    "scale": ("modseg_ros.bench.scale", "latency and memory against LiDAR point count and image size"),
    "soak": ("modseg_ros.bench.soak", "20 000 bundles with flapping sensors through the live node: RSS, queues, drops"),
    "all": ("modseg_ros.bench.all", "every target above, cut to about ten minutes (soak: 2 000 bundles)"),
}
