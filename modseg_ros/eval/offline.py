"""The offline replay: the node's perception core (core/perception.py) driven straight from a bag,
without DDS, for fast batch scoring and as the reference the live node is checked against.

It mirrors ros/node.py on bag time: the messages the player would publish (same schedule, same
injected failures, data/playback.py) are converted with the node's converters (core/messages.py reads
rosbags messages too) and observed at the node clock the player's /clock gives them; the node's
loop (core/loop.py: health tick, synchronizer poll, ``sensor_health``) runs on that clock. The one difference
is deliberate: every bundle is segmented (the live node's newest-wins mailbox drops bundles when
the network is slower than the sensors), so offline masks are a superset of live ones, equal for
equal bundles.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.config import resolved_topic as resolved
from modseg_ros.core.loop import NodeLoop
from modseg_ros.core.perception import Perception
from modseg_ros.core.transforms import TfRig
from modseg_ros.core.types import Bundle, Modality
from modseg_ros.data.bags import Bag, BagMessage
from modseg_ros.data.playback import CLOCK_TOPIC, MessageInjector, PlaybackOptions, schedule, topic_roles, window
from modseg_ros.errors import ConversionError
from modseg_ros.eval.run import HealthRecord, MaskRecord, ReplayOptions, RunOutputs
from modseg_ros.model.loading import load_calibration, load_engine

def node_inputs(config: NodeConfig) -> dict:
    """The node's inputs (core/messages.py ``SensorInput``) by the absolute topic the node resolves
    them to in the root namespace (the launch default), as recorded in bags."""
    from modseg_ros.core import messages  # message-field readers; they take rosbags messages as well

    return {resolved(source.topic): source for source in messages.sensor_inputs(config).values()}


def with_bag_tf(config: NodeConfig, bag: Bag) -> tuple[NodeConfig, str]:
    """With ``rig.source: tf``, the configuration with the sensor poses of the bag's /tf_static when
    it has every needed frame (as the live node takes them), and a note saying which poses are used.
    (/tf is not read: the live node's sensor mounts on /tf would move during the drive.)"""
    if config.rig_source != "tf" or "/tf_static" not in bag.topics:
        return config, ""
    tf = TfRig(config.base_frame, config.rig.frame_ids, config.inputs.modalities)
    for message in bag.messages(["/tf_static"]):
        for t in bag.deserialize(message).transforms:
            v, q = t.transform.translation, t.transform.rotation
            tf.tree.set(t.header.frame_id, t.child_frame_id, (v.x, v.y, v.z), (q.x, q.y, q.z, q.w), True)
    update = tf.update(config.rig)
    if update.problem:
        return config, f"sensor poses of rig.*: the bag's /tf_static lacks {update.problem}"
    return replace(config, rig=update.rig), "sensor poses from the bag's /tf_static"


def node_topic_roles(config: NodeConfig) -> dict[str, Modality]:
    """Bag topic -> modality for failure injection: the node's inputs, its camera_info and ground truth."""
    roles = {topic: source.modality for topic, source in node_inputs(config).items()}
    roles[resolved(config.topics.camera_info)] = Modality.CAMERA
    return roles


class OfflineNode:
    """ros/node.py's callbacks and its loop (core/loop.py) on the bag's clock, with every bundle segmented."""

    def __init__(self, config: NodeConfig, engine, calibration=None) -> None:
        self.config = config
        self.perception = Perception(config, engine, calibration)
        self.inputs = node_inputs(config)
        self.camera_info_topic = resolved(config.topics.camera_info)
        self.masks: list[MaskRecord] = []
        self.health: list[HealthRecord] = []
        self.rejected = 0
        self.now_ns = 0
        self.loop = NodeLoop(self.perception, self._segment, self._record_health)

    def clock(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.loop.advance(now_ns)

    def message(self, topic: str, msg) -> None:
        if topic == self.camera_info_topic:
            from modseg_ros.core import messages

            try:
                self.perception.set_camera(messages.camera_intrinsics(msg, topic))
            except ConversionError:
                pass  # the node drops it with a warning
            return
        source, now = self.inputs[topic], self.now_ns
        intake = self.perception.receive(source.modality, lambda: source.sample(msg, topic, now), now)
        self.rejected += intake.sample is None
        self._segment(intake.bundles)

    def _segment(self, bundles: Sequence[Bundle]) -> None:
        for bundle in bundles:
            seg = self.perception.segment(bundle)
            self.perception.cross_check(seg)
            overlay = self.perception.render(seg).overlay  # what the node publishes beside the mask
            self.masks.append(MaskRecord(
                stamp_ns=bundle.stamp_ns,
                modality_stamps={m: bundle.samples[m].stamp_ns for m in seg.fused},
                weights={m: float(seg.modality_weights.get(m, 0.0)) for m in seg.fused},
                labels=seg.labels, overlay=overlay, inference_ms=seg.inference_ms,
                node_ms=seg.encode_ms + seg.inference_ms,
                consistency={m: float(seg.modality_consistency.get(m, float("nan"))) for m in bundle.modalities},
                excluded=tuple(m for m in bundle.modalities if m in seg.excluded),
            ))  # fmt: skip

    def _record_health(self) -> None:
        states = self.perception.health.states
        self.health.append(HealthRecord(
            self.now_ns, {m: s.level for m, s in states.items()}, {m: s.alive for m, s in states.items()},
            {m: s.reason for m, s in states.items()},
        ))  # fmt: skip


def playback_options(options: ReplayOptions, topics: list[str], config: NodeConfig) -> PlaybackOptions:
    """The player's settings for a replay (shared by the live and the offline runs); failures act
    on the node's input topics as the parameters name them."""
    return PlaybackOptions(topics=tuple(topics), rate=options.rate, start_s=options.start_s, duration_s=options.duration_s,
                           clock_hz=options.clock_hz, failures=options.failures, seed=options.seed, tail_s=options.tail_s,
                           sensor_topics=node_topic_roles(config))  # fmt: skip


def node_topics(bag: Bag, config: NodeConfig) -> list[str]:
    """The bag topics the node subscribes to (sensor inputs and camera_info)."""
    wanted = list(node_inputs(config)) + [resolved(config.topics.camera_info)]
    return [t for t in wanted if t in bag.topics]


def run_offline(bag_path: Path, options: ReplayOptions, progress: Callable[[float], None] | None = None,
                threads: int | None = None, overrides: Mapping[str, Any] | None = None) -> RunOutputs:  # fmt: skip
    """Replay one bag through the perception core; ``progress`` gets the fraction of the bag done,
    ``threads`` overrides the parameter ``model.threads``, ``overrides`` any parameters of the file."""
    started = time.monotonic()
    config = NodeConfig.load(options.params, {**(overrides or {}), **({"model.threads": threads} if threads else {})})
    with Bag(bag_path) as bag:
        config, rig_note = with_bag_tf(config, bag)
    engine, note = load_engine(config.model, config.rig.camera)
    calibration, consistency_note = load_calibration(config.consistency, config.model, engine)
    node = OfflineNode(config, engine, calibration)
    replay_into(node, bag_path, options, progress)
    outputs = RunOutputs("offline", engine.name, node.masks, node.health, wall_s=time.monotonic() - started)
    sync = node.perception.sync.stats
    outputs.counters = {"bundles": sync.bundles, "bundles_partial": sync.partial, "triggers_dropped": sync.triggers_dropped,
                        "malformed_dropped": node.rejected, "masks_published": len(node.masks)}  # fmt: skip
    outputs.notes += [note, consistency_note, *([rig_note] if rig_note else [])]
    return outputs


def replay_into(node: OfflineNode, bag_path: Path, options: ReplayOptions,
                progress: Callable[[float], None] | None = None) -> None:  # fmt: skip
    """Feed one bag to an offline node: the player's schedule and injected failures on bag time."""
    with Bag(bag_path) as bag:
        topics = node_topics(bag, node.config)
        playback = playback_options(options, topics, node.config)
        injector = MessageInjector(bag, playback.failures, playback.seed, topic_roles(topics, playback.sensor_topics))
        begin, end = window(bag, playback)
        for item in schedule(bag, topics, playback, injector):
            if progress is not None:
                progress(min(1.0, (item.bag_ns - begin) / max(end - begin, 1)))
            if item.topic == CLOCK_TOPIC:
                node.clock(item.bag_ns)
                continue
            if playback.clock_hz <= 0:
                node.clock(item.bag_ns)
            message = BagMessage(item.topic, bag.topics[item.topic].msgtype, item.bag_ns, item.raw)
            node.message(item.topic, bag.deserialize(message))


def encode_inputs(bag: Bag, options: ReplayOptions, config: NodeConfig,
                  wanted: set[tuple[Modality, int]]) -> dict[tuple[Modality, int], np.ndarray]:  # fmt: skip
    """The camera-grid encodings of the inputs with the given (modality, header stamp), as the node
    received them (same schedule and injected failures), for the report's panels."""
    from modseg_ros.core import messages
    from modseg_ros.core.encoding import encode_payload

    config, _ = with_bag_tf(config, bag)
    inputs = node_inputs(config)
    topics = node_topics(bag, config)
    playback = playback_options(options, topics, config)
    injector = MessageInjector(bag, playback.failures, playback.seed, topic_roles(topics, playback.sensor_topics))
    rig = config.rig
    found: dict[tuple[Modality, int], np.ndarray] = {}
    for item in schedule(bag, topics, replace(playback, clock_hz=0.0), injector):
        message = BagMessage(item.topic, bag.topics[item.topic].msgtype, item.bag_ns, item.raw)
        if item.topic == resolved(config.topics.camera_info):
            try:
                rig = rig.with_camera(messages.camera_intrinsics(bag.deserialize(message), item.topic))
            except ConversionError:
                pass
            continue
        spec = inputs[item.topic]
        if (spec.modality, item.stamp_ns) not in wanted:
            continue
        try:
            payload = spec.read(bag.deserialize(message), item.topic)
        except ConversionError:
            continue
        found[(spec.modality, item.stamp_ns)] = encode_payload(spec.modality, payload, rig, config.encoding)
        if len(found) == len(wanted):
            break
    return found
