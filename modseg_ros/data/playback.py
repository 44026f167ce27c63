"""Bag playback without ROS: which messages go out, when, and with which injected failures.

``modseg play`` (ros/player.py) and the replay evaluation publish what ``play`` hands to their sink;
the offline replay walks the same ``schedule`` without pacing, so both see identical messages.

- **Selection and timing**: the chosen topics, from ``start_s`` into the bag for ``duration_s`` of
  bag time, paced at ``rate`` times the recorded log-time spacing, optionally looped.
- **/clock**: ticks every ``1 / clock_hz`` seconds *of bag time* carrying the bag time, merged with
  the messages so that a tick due at a message's time goes out before it (the node's clock then
  reads that time when the message arrives). ``tail_s`` keeps the clock running after the last
  message so that the consumers' timers (synchronizer max-wait, health timeouts) complete.
- **Failures** (``data/failures.py``, the same spec, parser and appliers as the world): a failure
  at ``t`` seconds from the recording's start (``Bag.origin_ns``) acts on the messages of its
  sensor's topics logged at ``t``. Untouched messages go out as the recorded CDR bytes; only a
  message a failure touches is decoded, changed and re-encoded: content failures rewrite it in the
  world's layout (rgb8 camera; depth in its recorded encoding; LiDAR x, y, z, intensity, ring;
  events x, y, t, polarity), stamp failures only change its header stamp; ``frozen`` re-sends the
  last message before the failure with new stamps; ``silent`` drops it. Ground-truth topics follow
  their sensor's stamp failures (so labels stay matched to the frames) but nothing else.
"""
from __future__ import annotations

import math
import queue
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from modseg_ros.core.types import CameraFrame, DepthFrame, EventFrame, EventPacket, Modality, Payload, PointCloud
from modseg_ros.data.bags import Bag, BagMessage
from modseg_ros.data.failures import Failure, FailureInjector, active_failures, apply_to_payload, apply_to_stamp
from modseg_ros.errors import BagError, ConfigError, ConversionError

NS = 1_000_000_000
CLOCK_TOPIC = "/clock"
STAMP_KINDS = frozenset({"stamp_jitter", "stamp_delay", "stamp_jump"})

# The node's input topics (relative names) and the modality each belongs to; a bag topic matches
# when it equals '/<name>' or ends with '/<name>' (a namespaced recording).
SENSOR_TOPICS: dict[str, Modality] = {
    "camera/image": Modality.CAMERA,
    "camera/camera_info": Modality.CAMERA,
    "depth/image": Modality.DEPTH,
    "lidar/points": Modality.LIDAR,
    "events/points": Modality.EVENTS,
    "events/image": Modality.EVENTS,
}
GROUND_TRUTH_TOPICS: dict[str, Modality] = {
    "ground_truth/labels": Modality.CAMERA,
    "ground_truth/lidar_points": Modality.LIDAR,
}


@dataclass(frozen=True)
class PlaybackOptions:
    topics: tuple[str, ...] = ()  # empty: every topic of the bag
    rate: float = 1.0
    loop: bool = False
    start_s: float = 0.0  # offset into the bag, from its first message
    duration_s: float | None = None  # bag time to play; None: to the end
    clock_hz: float = 0.0  # /clock ticks per second of bag time; 0: no /clock
    failures: tuple[Failure, ...] = ()
    seed: int = 0  # of the injected failures' randomness
    sensor_topics: Mapping[str, Modality] = field(default_factory=dict)  # extra topic -> modality for --fail
    delay_s: float = 0.0  # wall time to wait before the first message
    tail_s: float = 0.0  # bag time of /clock after the last message

    def validate(self) -> None:
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise ConfigError(f"--rate must be a positive number, got {self.rate}")
        if self.start_s < 0:
            raise ConfigError(f"--start must be >= 0 seconds, got {self.start_s}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError(f"--duration must be positive, got {self.duration_s}")
        if self.clock_hz < 0 or self.clock_hz > 10_000:
            raise ConfigError(f"--clock must be within 0..10000 Hz, got {self.clock_hz}")
        if self.delay_s < 0 or self.tail_s < 0:
            raise ConfigError("--delay and the clock tail must be >= 0 seconds")


@dataclass(frozen=True)
class TopicRole:
    """How failures of ``modality`` act on a topic."""

    modality: Modality
    ground_truth: bool = False  # follows the sensor's stamp failures only


def topic_roles(topics: Sequence[str], overrides: Mapping[str, Modality] | None = None,
                ground_truth: Mapping[str, Modality] | None = None) -> dict[str, TopicRole]:  # fmt: skip
    """The sensor (and ground-truth) topics among ``topics``, by name or by explicit mapping
    (``overrides``: sensor topics, ``ground_truth``: ground truth following a sensor's stamps)."""
    roles: dict[str, TopicRole] = {}
    overrides = overrides or {}
    ground_truth = ground_truth or {}
    for topic in topics:
        if topic in overrides or topic in ground_truth:
            roles[topic] = TopicRole(overrides[topic]) if topic in overrides else TopicRole(ground_truth[topic], True)
            continue
        for table, is_ground_truth in ((SENSOR_TOPICS, False), (GROUND_TRUTH_TOPICS, True)):
            for name, modality in table.items():
                if topic == "/" + name or topic.endswith("/" + name):
                    roles[topic] = TopicRole(modality, is_ground_truth)
    return roles


def header_stamp(raw: bytes) -> int | None:
    """The header stamp of a CDR message whose first field is a std_msgs/Header (ns), else None."""
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return None
    sec, nanosec = struct.unpack("<iI" if raw[1] == 1 else ">iI", raw[4:12])
    return sec * NS + nanosec


def _with_stamp(raw: bytes, stamp_ns: int) -> bytes:
    """The same CDR bytes with another header stamp (the header is the first field)."""
    sec, nanosec = divmod(int(stamp_ns), NS)
    return raw[:4] + struct.pack("<iI" if raw[1] == 1 else ">iI", sec, nanosec) + raw[12:]


def event_grid(bag: Bag, events_topic: str) -> tuple[int, int] | None:
    """(width, height) of the event sensor: from the world sidecar's rig, else from the first
    CameraInfo next to the events topic (``<namespace>/camera_info``) or of any camera; None when
    the bag has neither (then each packet's grid is taken from its coordinates)."""
    rig = (bag.sidecar or {}).get("rig") or {}
    for key in ("events", "camera"):
        entry = rig.get(key) or {}
        intr = entry.get("intrinsics", entry)
        if isinstance(intr, Mapping) and intr.get("width") and intr.get("height"):
            return int(intr["width"]), int(intr["height"])
    beside = events_topic.rsplit("/", 1)[0] + "/camera_info"
    infos = [t for t, info in bag.topics.items() if info.msgtype == "sensor_msgs/msg/CameraInfo"]
    for topic in sorted(infos, key=lambda t: t != beside):
        for message in bag.messages([topic]):
            msg = bag.deserialize(message)
            if int(msg.width) > 0 and int(msg.height) > 0:
                return int(msg.width), int(msg.height)
            break
    return None


# --- rosbags message <-> payload ---------------------------------------------------------------------


def _payload(role: TopicRole, msgtype: str, msg: Any, topic: str, grid: tuple[int, int] | None) -> Payload | None:
    """The payload a failure acts on, or None when the topic carries none (CameraInfo)."""
    from modseg_ros.core import messages  # message-field readers; they take rosbags messages as well

    m = role.modality
    image = msgtype == "sensor_msgs/msg/Image"
    cloud = msgtype == "sensor_msgs/msg/PointCloud2"
    if m is Modality.CAMERA and image:
        return messages.camera_frame(msg, topic)
    if m is Modality.DEPTH and image:
        return messages.depth_frame(msg, topic)
    if m is Modality.LIDAR and cloud:
        points = messages.cloud_array(msg, topic).reshape(-1)
        names = points.dtype.names
        if not all(a in names for a in "xyz"):
            raise ConversionError(topic, f"point cloud has no x, y, z fields (has {', '.join(names)})")
        xyz = np.stack([points[a] for a in "xyz"], axis=1).astype(np.float32)
        intensity = points["intensity"].astype(np.float32) if "intensity" in names else np.zeros(len(points), np.float32)
        ring = points["ring"].astype(np.uint16) if "ring" in names else None
        return PointCloud(xyz, intensity, ring)  # intensity as recorded (not rescaled)
    if m is Modality.EVENTS and cloud:
        width, height = grid or (1, 1)
        packet = messages.event_packet(msg, topic, width, height)
        if grid is None and len(packet.x):
            packet = EventPacket(packet.x, packet.y, packet.t_ns, packet.polarity, int(packet.x.max()) + 1, int(packet.y.max()) + 1)
        return packet
    if m is Modality.EVENTS and image:
        return messages.event_frame(msg, topic)
    return None


class _Builders:
    """Message builders of the world's bag writer (standard types, Kilted definitions)."""

    def __init__(self) -> None:
        from modseg_ros.data.world.bag_writer import Messages

        self.msgs = Messages()

    def message(self, original: Any, stamp_ns: int, payload: Payload, grid: tuple[int, int] | None) -> bytes:
        """The message carrying ``payload``; ``grid``: the event sensor's (width, height)."""
        from modseg_ros.data.world.bag_writer import depth_image, event_cloud, lidar_cloud

        frame_id = str(original.header.frame_id)
        msgs = self.msgs
        if isinstance(payload, (CameraFrame, EventFrame)):
            msg = msgs.image(stamp_ns, frame_id, payload.image, "rgb8")
        elif isinstance(payload, DepthFrame):
            millimetres = str(original.encoding) in ("16UC1", "mono16")
            msg = depth_image(msgs, stamp_ns, frame_id, payload, "16UC1" if millimetres else "32FC1")
        elif isinstance(payload, PointCloud):
            msg = lidar_cloud(msgs, stamp_ns, frame_id, payload)
        else:  # in the layout it came in: the world's (int64 ns bytes) or the carla-ros-bridge's (double ns, 'pol')
            msg = event_cloud(msgs, stamp_ns, frame_id, payload, grid or (payload.width, payload.height), bridge=_bridge_events(original))
        return bytes(msgs.serialize(msg))


def _bridge_events(msg: Any) -> bool:
    """Whether an event cloud is in the carla-ros-bridge's layout: 'pol' and t holding double nanoseconds."""
    from modseg_ros.core import messages
    from modseg_ros.core.types import EventTime

    if "pol" not in [str(f.name) for f in msg.fields]:
        return False
    points = messages.cloud_array(msg, "events").reshape(-1)
    t = points["t"] if "t" in points.dtype.names else np.zeros(0)
    return len(t) > 0 and t.dtype.kind == "f" and messages.resolve_event_time(t, messages.stamp_ns(msg.header)) is EventTime.FLOAT_NS


# --- failure injection ---------------------------------------------------------------------------------


@dataclass
class InjectionStats:
    dropped: Counter = field(default_factory=Counter)  # topic -> messages silenced
    rewritten: Counter = field(default_factory=Counter)  # topic -> messages a failure changed
    unconvertible: Counter = field(default_factory=Counter)  # topic -> touched messages passed on unchanged
    last_problem: dict[str, str] = field(default_factory=dict)


class MessageInjector:
    """Applies a failure schedule to a bag's messages (see the module docstring)."""

    def __init__(self, bag: Bag, failures: Sequence[Failure], seed: int, roles: Mapping[str, TopicRole]) -> None:
        self.bag = bag
        self.failures = list(failures)
        self.roles = {t: r for t, r in roles.items() if any(f.modality is r.modality for f in self.failures)}
        self.origin_ns = bag.origin_ns
        self._grids: dict[str, tuple[int, int] | None] = {}  # event sensor grid per events topic
        self.stats = InjectionStats()
        world = FailureInjector(self.failures, seed)  # the world's generators: per (modality, time) and per stamp
        self._rng, self._stamp_rng = world.rng, world.stamp_rng
        self._builders: _Builders | None = None
        self._last: dict[str, BagMessage] = {}  # last message delivered untouched per topic (for 'frozen')
        self._frozen: dict[str, BagMessage] = {}

    def t_s(self, log_ns: int) -> float:
        return (log_ns - self.origin_ns) / NS

    def process(self, message: BagMessage) -> bytes | None:
        """The bytes to publish for ``message``, or None when its sensor is silent."""
        role = self.roles.get(message.topic)
        if role is None:
            return message.raw
        t_s = self.t_s(message.log_ns)
        active = active_failures(self.failures, role.modality, t_s)
        if role.ground_truth:
            active = [f for f in active if f.kind in STAMP_KINDS]
        if not active:
            self._frozen.pop(message.topic, None)
            self._last[message.topic] = message
            return message.raw
        if any(f.kind == "silent" for f in active):
            self.stats.dropped[message.topic] += 1
            return None
        source = message
        if any(f.kind == "frozen" for f in active):
            source = self._frozen.setdefault(message.topic, self._last.get(message.topic, message))
        else:
            self._frozen.pop(message.topic, None)
            self._last[message.topic] = message
        try:
            out = self._rewrite(message, source, role, active, t_s)
        except (ConversionError, BagError) as err:  # malformed content: sent as recorded, counted
            self.stats.unconvertible[message.topic] += 1
            self.stats.last_problem[message.topic] = getattr(err, "problem", str(err))
            return message.raw
        if out is not message.raw:
            self.stats.rewritten[message.topic] += 1
        return out

    def _rewrite(self, message: BagMessage, source: BagMessage, role: TopicRole, active: list[Failure], t_s: float) -> bytes:
        stamp = header_stamp(message.raw)
        if stamp is None:
            return message.raw  # no header: nothing a sensor failure can change
        rng, stamp_rng = self._rng(role.modality, t_s), self._stamp_rng(role.modality, stamp)
        msg = None
        payload: Payload | None = None
        grid = None
        changed = False
        for failure in active:  # same order of draws as FailureInjector.process
            if failure.spec.payload is not None:
                if msg is None:
                    msg = self.bag.deserialize(source)
                    if role.modality is Modality.EVENTS and message.topic not in self._grids:
                        self._grids[message.topic] = event_grid(self.bag, message.topic)
                    payload = _payload(role, source.msgtype, msg, message.topic, self._grids.get(message.topic))
                    if isinstance(payload, EventPacket):
                        grid = (payload.width, payload.height)  # the sensor grid before a failure changes it
                if payload is not None and isinstance(payload, failure.spec.payload_types):
                    payload = apply_to_payload(failure, payload, rng)
                    changed = True
            stamp = apply_to_stamp(failure, stamp, stamp_rng)
        if changed:
            if self._builders is None:
                self._builders = _Builders()
            return self._builders.message(msg, stamp, payload, grid)
        return _with_stamp(source.raw, stamp) if (stamp != header_stamp(source.raw)) else source.raw


# --- schedule and pacing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outgoing:
    bag_ns: int  # the bag time it stands for: the log time, or the value of a /clock tick
    topic: str  # CLOCK_TOPIC for clock ticks
    raw: bytes | None  # None for clock ticks
    stamp_ns: int | None = None  # header stamp as published, for messages with a header


def select_topics(bag: Bag, requested: Sequence[str]) -> list[str]:
    """The requested topics (all when empty), checked against the bag."""
    if not requested:
        return list(bag.topics)
    unknown = [t for t in requested if t not in bag.topics]
    if unknown:
        raise ConfigError(f"--topics: {', '.join(unknown)} not in {bag.path} (it has {', '.join(bag.topics)})")
    return [t for t in bag.topics if t in requested]


def window(bag: Bag, options: PlaybackOptions) -> tuple[int, int]:
    """[begin, end] log times played (inclusive)."""
    begin = bag.start_ns + int(round(options.start_s * NS))
    end = bag.end_ns if options.duration_s is None else min(bag.end_ns, begin + int(round(options.duration_s * NS)) - 1)
    if begin > bag.end_ns:
        raise ConfigError(f"--start {options.start_s:g}s is beyond the end of {bag.path} ({bag.duration_s:.3f} s long)")
    return begin, end


def schedule(bag: Bag, topics: Sequence[str], options: PlaybackOptions, injector: MessageInjector | None = None) -> Iterator[Outgoing]:
    """One pass over the played window in bag-time order: /clock ticks merged with the messages."""
    begin, end = window(bag, options)
    period = int(round(NS / options.clock_hz)) if options.clock_hz > 0 else 0
    next_tick = begin
    for message in bag.messages(topics, begin, end + 1):
        while period and next_tick <= message.log_ns:
            yield Outgoing(next_tick, CLOCK_TOPIC, None)
            next_tick += period
        raw = injector.process(message) if injector is not None else message.raw
        if raw is None:
            continue
        yield Outgoing(message.log_ns, message.topic, raw, header_stamp(raw) if _has_header(bag, message.msgtype) else None)
    last = end + int(round(options.tail_s * NS))
    while period and next_tick <= last:
        yield Outgoing(next_tick, CLOCK_TOPIC, None)
        next_tick += period


def _has_header(bag: Bag, msgtype: str) -> bool:
    fields = bag.types().fielddefs.get(msgtype)
    return bool(fields and fields[1] and fields[1][0][0] == "header" and fields[1][0][1][1] == "std_msgs/msg/Header")


class Sink(Protocol):
    def publish(self, item: Outgoing) -> None: ...


@dataclass
class PlaybackStats:
    published: Counter = field(default_factory=Counter)  # topic -> messages (CLOCK_TOPIC: ticks)
    passes: int = 0
    wall_s: float = 0.0
    max_late_ms: float = 0.0  # worst lateness of a message behind its due time
    injection: InjectionStats = field(default_factory=InjectionStats)


READ_AHEAD = 100  # items prepared ahead of their due time (reading, failure injection)
_END = object()


class _ReadAhead:
    """Runs a schedule in a thread, ``READ_AHEAD`` items ahead of the publishing loop, so that
    reading and rewriting messages (a full-resolution noise burst takes tens of ms) does not delay
    the messages due before them. Errors (a corrupt bag) are re-raised in the consumer."""

    def __init__(self, items: Iterator[Outgoing]) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(items,), name="playback-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self, items: Iterator[Outgoing]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the consumer
            self._put(err)

    def _put(self, value: object) -> bool:
        """Queue ``value`` unless the consumer closed first (then False)."""
        while not self._closed.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def primed(self, timeout_s: float) -> None:
        """Wait until the queue is full or the schedule is exhausted (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.qsize() < READ_AHEAD and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def __iter__(self) -> Iterator[Outgoing]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5.0)


def play(bag: Bag, topics: Sequence[str], options: PlaybackOptions, sink: Sink,
         now: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
         stop: Callable[[], bool] = lambda: False) -> PlaybackStats:  # fmt: skip
    """Publish the schedule through ``sink`` in real time (wall clock ``now``, seconds)."""
    options.validate()
    begin, _ = window(bag, options)
    stats = PlaybackStats()
    started = now()
    origin = None
    while not stop():
        injector = MessageInjector(bag, options.failures, options.seed, topic_roles(topics, options.sensor_topics))
        items = _ReadAhead(schedule(bag, topics, options, injector if options.failures else None))
        try:
            items.primed(timeout_s=5.0)
            if origin is None:
                origin = max(now(), started + options.delay_s)
            last_due = origin
            for item in items:
                due = origin + (item.bag_ns - begin) / NS / options.rate
                while (wait := due - now()) > 0 and not stop():
                    sleep(min(wait, 0.1))
                if stop():
                    break
                sink.publish(item)
                stats.published[item.topic] += 1
                if item.raw is not None:
                    stats.max_late_ms = max(stats.max_late_ms, (now() - due) * 1e3)
                last_due = due
        finally:
            items.close()
        stats.passes += 1
        for key in ("dropped", "rewritten", "unconvertible"):
            getattr(stats.injection, key).update(getattr(injector.stats, key))
        stats.injection.last_problem.update(injector.stats.last_problem)
        if not options.loop:
            break
        origin = max(now(), last_due)
    stats.wall_s = now() - started
    return stats
