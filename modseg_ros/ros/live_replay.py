"""The live replay: the any2seg node in its own process on sim time, the bag played into it with
/clock, and what it publishes recorded, all in a private ROS domain.

The node runs exactly as ``modseg run --params FILE --ros-args -p use_sim_time:=true`` (the launch
file's parameters); this process holds one node that plays the bag (ros/player.py) and records the
node's outputs (ros/recorder.py) as raw CDR, decoded into ``RunOutputs`` at the end.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from modseg_ros.core import messages
from modseg_ros.core.config import NodeConfig
from modseg_ros.core.types import HealthLevel, Modality
from modseg_ros.data.bags import Bag
from modseg_ros.data.playback import CLOCK_TOPIC, Outgoing, play, window
from modseg_ros.data.recording import RecordingWriter
from modseg_ros.errors import ModsegError
from modseg_ros.eval.offline import node_inputs, node_topics, playback_options
from modseg_ros.eval.run import HealthRecord, MaskRecord, ReplayOptions, RunOutputs
from modseg_ros.ros.env import apply_dds_environment, use_private_domain
from modseg_ros.ros.node_process import NodeProcess
from modseg_ros.ros.player import BagPublisher, message_class
from modseg_ros.ros.recorder import TopicRecorder

READY_TIMEOUT_S = 180.0  # node start-up: imports, network construction, checkpoint
QUIET_S = 1.5  # the node is done when no output arrived for this long after playback
DRAIN_TIMEOUT_S = 60.0
# What the evaluation needs of the node's outputs; a recording takes the rest too.
OUTPUTS = {
    "segmentation/mask": "sensor_msgs/msg/Image",
    "segmentation/overlay": "sensor_msgs/msg/Image",
    "segmentation/info": "modseg_ros/msg/SegmentationInfo",
    "sensor_health": "modseg_ros/msg/SensorHealthArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
RECORDED_OUTPUTS = {**OUTPUTS, "segmentation/color_mask": "sensor_msgs/msg/Image",
                    "segmentation/points": "sensor_msgs/msg/PointCloud2"}  # fmt: skip
TF_TOPICS = ("/tf_static", "/tf")  # copied from the bag into a recording, for RViz's frames


class ReplayError(ModsegError):
    """The node of a live replay did not start or did not answer."""


def run_live(bag_path: Path, options: ReplayOptions, progress: Callable[[float], None] | None = None) -> RunOutputs:
    """Replay one bag through the live node; ``progress`` gets the fraction of the bag played."""
    apply_dds_environment()
    use_private_domain()  # children inherit it: the node and this process see only each other
    config = NodeConfig.load(options.params)
    started = time.monotonic()
    with Bag(bag_path) as bag:
        topics = node_topics(bag, config)
        if not topics:
            raise ReplayError(f"{bag.path}: none of the node's input topics ({', '.join(node_inputs(config))}) is in the bag")
        played = topics + _tf_topics(bag, config)
        playback = playback_options(options, played, config)
        begin, end = window(bag, playback)
        published: dict[tuple[str, int], float] = {}
        recording = RecordingWriter(options.record) if options.record is not None else None

        def on_publish(item: Outgoing, wall: float) -> None:
            if item.stamp_ns is not None:
                published[(item.topic, item.stamp_ns)] = wall
            if recording is not None and item.raw is not None and item.topic not in TF_TOPICS:  # the inputs as the node received them (TF: _record_rest)
                recording.write(item.topic, bag.topics[item.topic].msgtype, item.bag_ns, item.raw)
            if progress is not None:
                progress(min(1.0, (item.bag_ns - begin) / max(end - begin, 1)))

        node_process = NodeProcess(options.params, ["-p", "use_sim_time:=true"])
        context = rclpy.Context()
        rclpy.init(context=context)
        executor = None
        try:
            node = rclpy.create_node("modseg_replay", context=context,
                                     parameter_overrides=[Parameter("use_sim_time", value=True)])  # fmt: skip
            sink = BagPublisher(node, [bag.topics[t] for t in played], clock=True, on_publish=on_publish)
            recorder = TopicRecorder(node, RECORDED_OUTPUTS if recording is not None else OUTPUTS)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            spinner = threading.Thread(target=executor.spin, daemon=True)
            spinner.start()
            ready = sink.wait_for_subscribers(played, READY_TIMEOUT_S, node_process.alive)
            while ready and node_process.alive() and not recorder.publishers_matched():
                time.sleep(0.05)
            if not node_process.alive() or not ready:
                raise ReplayError(f"the node did not come up (exit code {node_process.proc.poll()}):\n{node_process.tail()}")
            stats = play(bag, played, playback, sink)
            _drain(recorder, node_process)
            outputs = _decode(recorder, config, published)
            if recording is not None:
                _record_rest(recording, bag, recorder, node, config, (begin, end))
        finally:
            if recording is not None:
                recording.close()
            code = node_process.stop()
            if executor is not None:
                executor.shutdown()
            rclpy.try_shutdown(context=context)
    outputs.wall_s = time.monotonic() - started
    if code not in (0, None):
        outputs.notes.append(f"the node exited with code {code}: {node_process.tail(5)}")
    problems = [line for line in node_process.lines if "[ERROR]" in line or "Traceback" in line]
    outputs.notes += problems[:5]
    if stats.max_late_ms > 50:
        outputs.notes.append(f"the player published up to {stats.max_late_ms:.0f} ms late (rate {options.rate:g} is too fast "
                             f"for this machine's failure injection)")  # fmt: skip
    outputs.counters["player_messages"] = sum(n for t, n in stats.published.items() if t != CLOCK_TOPIC and t not in TF_TOPICS)
    return outputs


def _tf_topics(bag: Bag, config: NodeConfig) -> list[str]:
    """The bag's /tf_static and /tf when the node takes its sensor poses from TF (and tf2_msgs imports)."""
    if config.rig_source != "tf":
        return []
    return [t for t in TF_TOPICS if t in bag.topics and message_class(bag.topics[t].msgtype) is not None]


def _record_rest(recording: RecordingWriter, bag: Bag, recorder: TopicRecorder, node, config: NodeConfig,
                 window_ns: tuple[int, int]) -> None:  # fmt: skip
    """Into the recording: every output of the node (log time: its arrival on sim time) and the bag's
    TF and ground truth over the played window."""
    for topic in recorder.subscriptions:
        name = node.resolve_topic_name(topic)
        for record in recorder.messages(topic):
            recording.write(name, record.msgtype, record.log_ns, record.raw)
    copied = [t for t in (*TF_TOPICS, config.ground_truth.topic) if t in bag.topics]
    for message in bag.messages(copied, window_ns[0], window_ns[1] + 1):
        recording.write(message.topic, message.msgtype, message.log_ns, message.raw, latched=message.topic == "/tf_static")


def _drain(recorder: TopicRecorder, node: NodeProcess) -> None:
    """Wait until the node has published what it will (no new output for QUIET_S)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline and node.alive():
        count = recorder.count("segmentation/info") + recorder.count("segmentation/mask")
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since > QUIET_S:
            return
        time.sleep(0.05)


def _stamp(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _decode(recorder: TopicRecorder, config: NodeConfig, published: dict[tuple[str, int], float]) -> RunOutputs:
    topic_of = {spec.modality: topic for topic, spec in node_inputs(config).items()}
    masks = {}
    for record in recorder.messages("segmentation/mask"):
        msg = recorder.decode(record)
        masks[_stamp(msg.header.stamp)] = (record.wall, np.array(messages.image_array(msg, record.topic)))
    overlays = {}
    for record in recorder.messages("segmentation/overlay"):
        msg = recorder.decode(record)
        overlays[_stamp(msg.header.stamp)] = np.array(messages.image_array(msg, record.topic))
    outputs = RunOutputs("live", "")
    for record in recorder.messages("segmentation/info"):
        info = recorder.decode(record)
        stamp = _stamp(info.header.stamp)
        if stamp not in masks:
            continue  # a mask lost on the way (counted as dropped)
        wall, labels = masks[stamp]
        used = [Modality.parse(m) for m in info.modalities_used]
        excluded = tuple(Modality.parse(m) for m in info.modalities_excluded)
        stamps = {m: _stamp(t) for m, t in zip(used, info.modality_stamps)}
        sent = [published.get((topic_of.get(m, ""), s)) for m, s in stamps.items()]
        e2e = (wall - max(sent)) * 1e3 if sent and all(w is not None for w in sent) else None
        outputs.masks.append(MaskRecord(
            stamp_ns=stamp, modality_stamps=stamps, weights=dict(zip(used, (float(w) for w in info.modality_weights))),
            labels=labels, overlay=overlays.get(stamp), inference_ms=float(info.inference_ms),
            node_ms=float(info.end_to_end_ms), end_to_end_ms=e2e,
            consistency=dict(zip((*used, *excluded), (float(c) for c in info.modality_consistency))), excluded=excluded,
        ))  # fmt: skip
        outputs.model = str(info.model)
    for record in recorder.messages("sensor_health"):
        msg = recorder.decode(record)
        sensors = {Modality.parse(s.modality): s for s in msg.sensors}
        outputs.health.append(HealthRecord(
            _stamp(msg.header.stamp), {m: HealthLevel(int(s.level)) for m, s in sensors.items()},
            {m: bool(s.alive) for m, s in sensors.items()}, {m: str(s.reason) for m, s in sensors.items()},
        ))  # fmt: skip
    outputs.health.sort(key=lambda h: h.stamp_ns)
    outputs.masks.sort(key=lambda m: m.stamp_ns)
    for record in reversed(recorder.messages("/diagnostics")):
        statuses = [s for s in recorder.decode(record).status if s.name.endswith(": pipeline")]
        if statuses:
            outputs.counters.update({kv.key: _number(kv.value) for kv in statuses[0].values})
            break
    outputs.counters["masks_received"] = len(masks)
    return outputs


def _number(text: str) -> float | int | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text
