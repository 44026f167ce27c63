"""The any2seg ROS 2 node: a thin shell around core/perception.py.

Subscriptions convert messages (core/messages.py) and hand them to the health monitor and the
synchronizer; completed bundles go to a newest-wins mailbox; the inference thread encodes, runs the
network, publishes the mask as soon as it exists and ``segmentation/info`` once the consistency
scores are computed, then hands the segmentation to the
rendering thread (the cross-checks' verdicts on it; colour mask, overlay and labelled points for
the topics somebody subscribes to), so that neither holds up the next bundle's forward. Timers
run the node's loop (core/loop.py: re-check health, complete waiting bundles, publish
``sensor_health``; the offline replay runs the same loop on bag time) and publish ``/diagnostics``. A
malformed message never raises out of a callback: it is counted against its sensor and logged at
most every few seconds per topic.

    ros2 run modseg_ros any2seg_node --ros-args --params-file config/any2seg.yaml
    modseg run --params config/any2seg.yaml
"""
from __future__ import annotations

import os

# numpy's BLAS would otherwise start a thread per core beside torch's threads; on a small machine
# they preempt each other (a 3×3 transform of a depth image took 10× longer). Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import gc
import signal
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from modseg_ros.core import messages
from modseg_ros.core import runtime_parameters
from modseg_ros.core.config import NodeConfig, declared_parameters, default_parameters, load_parameters
from modseg_ros.core.loop import LevelChanges, NodeLoop
from modseg_ros.core.params import Parameter
from modseg_ros.core.perception import Perception, Segmentation
from modseg_ros.core.transforms import TfRig, describe_change
from modseg_ros.core.types import MODALITIES, Bundle, HealthLevel, Modality, SensorSample, subset_name
from modseg_ros.errors import ConfigError, ConversionError, ModsegError
from modseg_ros.model.engine_process import EngineProcess
from modseg_ros.model.loading import load_calibration, load_engine
from modseg_ros.msg import SegmentationInfo, SensorHealth, SensorHealthArray
from modseg_ros.ros import convert

try:  # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

T = TypeVar("T")
NODE_NAME = "any2seg"
WARN_EVERY_S = 5.0  # per-topic limit for repeated warnings (malformed messages)
LATENCY_WINDOW = 200  # published masks the latency figures in /diagnostics cover
TF_CHECK_S = 1.0  # how often missing transforms are looked for (rig.source: tf)
TF_GRACE_S = 2.0  # no warning about missing transforms before sensor data has flowed this long
TF_WARN_EVERY_S = 30.0  # an unchanged transform problem is repeated at most this often
# tf2's listener QoS: /tf_static latched (transient local), both reliable with a deep queue
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def _time_msg(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


class Mailbox(Generic[T]):
    """A one-slot, newest-wins hand-over between threads (callbacks -> inference -> rendering)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.offered = 0
        self.replaced = 0  # items overwritten before the taker took them

    def put(self, item: T) -> None:
        with self._cond:
            self.offered += 1
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout_s: float) -> T | None:
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class _Topic:
    """Book-keeping of one subscribed topic."""

    modality: Modality
    name: str  # resolved (remapped) name
    camera_info: bool = False  # the camera's CameraInfo (not a sensor stream of its own)
    rejected: int = 0
    last_warning_s: float = -1e9
    suppressed: int = 0
    qos_incompatible: str = ""  # last incompatible policy reported by DDS


@dataclass
class _PipelineStats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    published: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    inference_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    last_used: str = ""
    failures: int = 0  # bundles that could not be segmented (logged)
    render_failures: int = 0  # masks that could not be cross-checked or drawn (logged)
    drawn: int = 0  # masks drawn as a colour mask, overlay or points for a subscriber


class Any2SegNode(Node):
    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.config = NodeConfig.from_parameters(self._declared_parameters())
        engine, engine_note = load_engine(self.config.model, self.config.rig.camera, isolate=self.config.model.process)
        calibration, consistency_note = load_calibration(self.config.consistency, self.config.model, engine)
        self.perception = Perception(self.config, engine, calibration)
        self.loop = NodeLoop(self.perception, self._hand_over, self._publish_health)
        self.get_logger().info(engine_note)
        self.get_logger().info(consistency_note)
        self._mailbox: Mailbox[Bundle] = Mailbox()
        self._renders: Mailbox[tuple[Segmentation, Header]] = Mailbox()
        self._stats = _PipelineStats()
        self._wall_arrival: weakref.WeakKeyDictionary[SensorSample, float] = weakref.WeakKeyDictionary()
        self._topics: dict[str, _Topic] = {}
        self._publisher_qos: dict[str, str] = {}
        self._clock_jumps_logged = 0
        self._watch_period_ns = int(1e9 / self.config.health_tick_rate_hz)
        self._watch_last_ns: int | None = None  # (set by the first run: the executor may start long after this)
        self._late_ns = 0  # the executor's largest delay since the last health tick (steady clock)

        self._create_publishers()
        self._create_subscriptions()
        self._tf: TfRig | None = None
        self._extrinsics = "rig.* (rig.source: yaml)"  # where the rig's poses come from (diagnostics)
        self._tf_warned: dict[str, float] = {}  # problem -> when it was last warned (monotonic)
        self._first_input: float | None = None  # monotonic time of the first sensor message
        self._follow_tf()
        cfg = self.config
        self.create_timer(1.0 / cfg.health_tick_rate_hz, self._on_health_tick)
        # on the steady clock: how late the executor runs, whatever the node clock does (sim time)
        self.create_timer(1.0 / cfg.health_tick_rate_hz, self._on_watch, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(1.0 / cfg.sync_poll_rate_hz, self._on_sync_poll)
        self.create_timer(1.0 / cfg.outputs.health_rate_hz, self._publish_health)
        self.create_timer(1.0 / cfg.outputs.diagnostics_rate_hz, self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._running = True
        self._threads = [threading.Thread(target=self._infer, name="any2seg-inference", daemon=True),
                         threading.Thread(target=self._render, name="any2seg-rendering", daemon=True)]  # fmt: skip
        for thread in self._threads:
            thread.start()
        inputs = ", ".join(f"{t.modality.value}: {t.name}" for t in self._topics.values())
        self.get_logger().info(f"segmenting {subset_name(cfg.inputs.modalities)} ({inputs}); trigger order "
                               f"{' > '.join(m.value for m in cfg.sync.priority)}")  # fmt: skip

    # --- set-up ----------------------------------------------------------------------------------

    def _declared_parameters(self) -> dict:
        """Declare every parameter as its module declares it (core/config.py ``declared_parameters``:
        description, accepted values, read-only unless it can change at run time), its default from
        the shipped file unless overridden, and return all of them, flat (with any override that names
        no parameter, which NodeConfig refuses by name)."""
        defaults = default_parameters()
        for parameter in declared_parameters():
            if not self.has_parameter(parameter.key):
                self.declare_parameter(parameter.key, defaults[parameter.key], _descriptor(parameter))
        values = {name: runtime_parameters.plain_value(p.value) for name, p in self.get_parameters_by_prefix("").items()}
        overrides = getattr(self, "_parameter_overrides", {})  # rclpy keeps the --ros-args values here
        values.update({name: p.value for name, p in overrides.items() if name not in values})
        return values

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """A change at run time: validated as at start-up, then the modules' settings are swapped;
        a parameter read only at start-up is read-only (rclpy refuses it before this is called)."""
        try:
            config = runtime_parameters.changed(self.config, {p.name: p.value for p in parameters})
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if config.parameters != self.config.parameters:
            runtime_parameters.apply(self.perception, config)
            changes = ", ".join(f"{k}: {config.parameters[k]!r}" for k in config.parameters
                                if config.parameters[k] != self.config.parameters[k])  # fmt: skip
            self.config = config
            self.get_logger().info(f"parameters changed at run time: {changes}")
        return SetParametersResult(successful=True)

    def _create_publishers(self) -> None:
        qos = QoSProfile(depth=self.config.outputs.qos_depth, reliability=ReliabilityPolicy.RELIABLE)

        def publisher(msg_type, topic: str, depth_qos: QoSProfile = qos):
            events = PublisherEventCallbacks(incompatible_qos=lambda info, t=topic: self._on_offered_incompatible(t, info))
            return self.create_publisher(msg_type, topic, depth_qos, event_callbacks=events)

        self._pub_mask = publisher(Image, "segmentation/mask")
        self._pub_color = publisher(Image, "segmentation/color_mask")
        self._pub_overlay = publisher(Image, "segmentation/overlay")
        self._pub_points = publisher(PointCloud2, "segmentation/points")
        self._pub_info = publisher(SegmentationInfo, "segmentation/info", QoSProfile(depth=10))
        self._pub_health = publisher(SensorHealthArray, "sensor_health", QoSProfile(depth=10))
        self._pub_diagnostics = publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))

    def _create_subscriptions(self) -> None:
        cfg = self.config.inputs
        if cfg.qos_reliability == "best_effort":
            qos = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.BEST_EFFORT,
                             durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)  # fmt: skip
        else:
            qos = QoSProfile(depth=cfg.qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        topics = self.config.topics
        for source in messages.sensor_inputs(self.config).values():
            self._subscribe(source.modality, convert.MESSAGE_CLASSES[source.msg_type], source.topic, qos, lambda msg, s=source: self._on_sensor(s, msg))
        if Modality.CAMERA in cfg.modalities:
            self._subscribe(Modality.CAMERA, CameraInfo, topics.camera_info, qos, self._on_camera_info, info=True)

    def _subscribe(self, modality: Modality, msg_type: type, topic: str, qos: QoSProfile, callback: Callable,
                   info: bool = False) -> None:  # fmt: skip
        events = SubscriptionEventCallbacks(incompatible_qos=lambda info, t=topic: self._on_requested_incompatible(t, info))
        subscription = self.create_subscription(msg_type, topic, callback, qos, event_callbacks=events)
        self._topics[topic] = _Topic(modality, subscription.topic_name, camera_info=info)

    def _follow_tf(self) -> None:
        """rig.source: tf: subscribe /tf_static and /tf and take the sensor poses from them."""
        if self.config.rig_source != "tf":
            return
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self._extrinsics = "rig.* (tf2_msgs cannot be imported)"
            self.get_logger().warning("rig.source is tf, but tf2_msgs cannot be imported here (make setup builds it; on a "
                                      "ROS installation install its tf2_msgs package): the sensor poses are rig.*")  # fmt: skip
            return
        self._tf = TfRig(self.config.base_frame, self.config.rig.frame_ids, self.config.inputs.modalities)
        self._extrinsics = "rig.* until TF has every sensor frame"
        self.create_subscription(TFMessage, "/tf_static", lambda msg: self._on_tf(msg, True), TF_STATIC_QOS)
        self.create_subscription(TFMessage, "/tf", lambda msg: self._on_tf(msg, False), TF_QOS)
        self.create_timer(TF_CHECK_S, self._check_tf)

    def _on_tf(self, msg, static: bool) -> None:
        tf = self._tf
        moved = False
        for t in msg.transforms:
            v, q = t.transform.translation, t.transform.rotation
            problem = tf.tree.set(t.header.frame_id, t.child_frame_id, (v.x, v.y, v.z), (q.x, q.y, q.z, q.w), static)
            if problem:
                self._warn_tf(f"{'/tf_static' if static else '/tf'}: {problem}")
            elif tf.relevant(t.child_frame_id):
                moved = True
        if moved:
            self._update_rig()

    def _update_rig(self) -> str:
        """The sensor poses from TF when every needed frame resolves (the rig replaced whole, as
        ``Perception.set_camera`` does); the problem naming the frames otherwise ("" when none)."""
        old = self.perception.rig
        update = self._tf.update(old)
        if update.changed:
            self.perception.rig = update.rig
            self._extrinsics = f"TF ({self._tf.base_frame})"
            self.get_logger().info(f"sensor poses from TF in '{self._tf.base_frame}': "
                                   f"{describe_change(old, update.rig, self._tf.modalities)}")  # fmt: skip
        elif not update.problem and self._extrinsics.startswith("rig.*"):
            self._extrinsics = f"TF ({self._tf.base_frame}; as rig.*)"
            self.get_logger().info(f"sensor poses from TF in '{self._tf.base_frame}': the same as rig.*")
        return update.problem

    def _check_tf(self) -> None:
        problem = self._update_rig()
        # no sensor data, nothing to pose: the grace starts with the first message (a node that waits
        # for its bag or driver, or loads its model, must not warn about TF that comes with the data)
        flowing = self._first_input is not None and time.monotonic() - self._first_input >= TF_GRACE_S
        if problem and flowing:
            rig = "the last poses from TF" if self._extrinsics.startswith("TF") else "the poses of rig.*"
            self._warn_tf(f"no sensor pose from TF for {problem}; keeping {rig}")

    def _warn_tf(self, text: str) -> None:
        """A transform problem: warned once, then again only if it persists TF_WARN_EVERY_S."""
        wall = time.monotonic()
        if wall - self._tf_warned.get(text, -1e9) >= TF_WARN_EVERY_S:
            if len(self._tf_warned) > 100:  # problems that name ever new frames: keep the record bounded
                self._tf_warned.clear()
            self._tf_warned[text] = wall
            self.get_logger().warning(text)

    # --- receiving ----------------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_sensor(self, source: messages.SensorInput, msg) -> None:
        now = self._now_ns()
        wall = time.monotonic()
        if self._first_input is None:
            self._first_input = wall
        topic = self._topics[source.topic]
        intake = self.perception.receive(source.modality, lambda: source.sample(msg, topic.name, now), now)
        if intake.sample is None:
            topic.rejected += 1
            self._warn_topic(topic, f"dropped a malformed message: {intake.problem}")
            return
        self._wall_arrival[intake.sample] = wall
        if self._tf is not None and self._tf.observe_frame(source.modality, intake.sample.frame_id):
            self._update_rig()  # its messages name another frame than rig.<sensor>.frame_id
        self._hand_over(intake.bundles)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        topic = self._topics[self.config.topics.camera_info]
        try:
            intrinsics = messages.camera_intrinsics(msg, topic.name)
        except ConversionError as err:
            self._warn_topic(topic, f"dropped: {err.problem}")
            return
        if self.perception.set_camera(intrinsics):
            self.get_logger().info(f"camera intrinsics from {topic.name}: {intrinsics.width}×{intrinsics.height}, "
                                   f"fx={intrinsics.fx:.1f}; masks are published on this grid")  # fmt: skip

    def _warn_topic(self, topic: _Topic, text: str) -> None:
        wall = time.monotonic()
        if wall - topic.last_warning_s < WARN_EVERY_S:
            topic.suppressed += 1
            return
        more = f" ({topic.suppressed} more since the last warning)" if topic.suppressed else ""
        self.get_logger().warning(f"{topic.name}: {text}{more}")
        topic.last_warning_s, topic.suppressed = wall, 0

    def _on_requested_incompatible(self, topic_key: str, info) -> None:
        topic = self._topics[topic_key]
        policy = _policy_name(info.last_policy_kind)
        topic.qos_incompatible = policy
        self.get_logger().error(
            f"{topic.name}: a publisher's QoS is incompatible with this subscription ({policy}; "
            f"{info.total_count} so far): its messages cannot arrive. Subscription QoS: "
            f"{self.config.inputs.qos_reliability}, depth {self.config.inputs.qos_depth} (inputs.qos_reliability)"
        )

    def _on_offered_incompatible(self, topic: str, info) -> None:
        policy = _policy_name(info.last_policy_kind)
        self._publisher_qos[topic] = policy
        self.get_logger().error(f"{topic}: a subscriber requests QoS incompatible with this publisher ({policy}; "
                                f"{info.total_count} so far); outputs are RELIABLE, VOLATILE")  # fmt: skip

    def _on_watch(self) -> None:
        wall = time.monotonic_ns()
        if self._watch_last_ns is not None:
            self._late_ns = max(self._late_ns, wall - self._watch_last_ns - self._watch_period_ns)
        self._watch_last_ns = wall

    def _on_health_tick(self) -> None:
        now = self._now_ns()
        self._on_watch()  # a stall that ends with this tick counts now (the executor runs timers before waiting messages)
        late, self._late_ns = self._late_ns, 0
        changes = self.loop.health_tick(now, late)
        if self.perception.clock_jumps_back > self._clock_jumps_logged:
            self._clock_jumps_logged = self.perception.clock_jumps_back
            self.get_logger().warning(f"the clock jumped back (now {now / 1e9:.3f} s; a bag loop?): time matching and "
                                      f"stream statistics restarted, sensors keep their health")  # fmt: skip
        self._report_changes(changes)

    def _on_sync_poll(self) -> None:
        self.loop.sync_poll(self._now_ns())

    def _hand_over(self, bundles: Sequence[Bundle]) -> None:
        for bundle in bundles:
            self._mailbox.put(bundle)

    def _report_changes(self, changes: LevelChanges) -> None:
        for modality, state in changes.reported:
            text = f"{modality.value}: {state.level.name}{' (' + state.reason + ')' if state.reason else ''}"
            if state.alive:
                self.get_logger().info(text)
            else:
                self.get_logger().warning(text)
        if changes.node_late is not None:
            health = self.perception.health
            if changes.node_late:
                self.get_logger().warning(f"{self.get_name()} is late: its callbacks ran {health.worst_late_ns / 1e6:.0f} ms behind "
                                          f"schedule (starved of CPU?); sensor rates are not judged and timeouts allow "
                                          f"for the delay until it catches up")  # fmt: skip
            else:
                self.get_logger().info(f"{self.get_name()} caught up (callbacks up to {health.worst_late_ns / 1e6:.0f} ms "
                                       f"behind); sensor rates are judged again")  # fmt: skip
        if changes.fused is not None:
            if changes.fused:
                self.get_logger().info(f"fusing {subset_name(changes.fused)}")
            else:
                self.get_logger().error("all sensors failed: no masks until one returns")

    # --- inference and rendering threads -----------------------------------------------------------

    def _infer(self) -> None:
        while self._running:
            bundle = self._mailbox.take(timeout_s=0.1)
            if bundle is None:
                continue
            self.perception.worker_busy = True
            try:
                self._segment_and_publish(bundle)
            except Exception as err:  # the thread must outlive any one bundle; the error is reported
                with self._stats.lock:
                    self._stats.failures += 1
                self.get_logger().error(f"bundle at {bundle.stamp_ns / 1e9:.3f} s could not be segmented: {err!r}",
                                        throttle_duration_sec=WARN_EVERY_S)  # fmt: skip
            finally:
                self.perception.worker_busy = False

    def _segment_and_publish(self, bundle: Bundle) -> None:
        """The mask as soon as the network has it (its latency is the node's), then its info with the
        consistency scores; the rest goes to the rendering thread."""
        header = Header(stamp=_time_msg(bundle.stamp_ns), frame_id=self.config.outputs.frame_id)
        arrivals = [a for a in map(self._wall_arrival.get, bundle.samples.values()) if a is not None]
        end_to_end_ms = 0.0

        def publish_mask(labels: np.ndarray) -> None:  # before the consistency scores are computed
            nonlocal end_to_end_ms
            self._pub_mask.publish(convert.image_msg(labels, "mono8", header))
            end_to_end_ms = (time.monotonic() - max(arrivals)) * 1e3 if arrivals else 0.0

        seg = self.perception.segment(bundle, on_labels=publish_mask)
        self._renders.put((seg, header))
        used, excluded = seg.fused, [m for m in bundle.modalities if m in seg.excluded]
        info = SegmentationInfo(header=header, model=self.perception.engine.name)
        info.modalities_used = [m.value for m in used]
        info.modality_stamps = [_time_msg(bundle.samples[m].stamp_ns) for m in used]
        info.modalities_missing = [m.value for m in MODALITIES if m in bundle.missing]
        info.modality_weights = [float(seg.modality_weights.get(m, 0.0)) for m in used]
        info.inference_ms = float(seg.inference_ms)
        info.end_to_end_ms = float(end_to_end_ms)
        info.modalities_excluded = [m.value for m in excluded]
        info.modality_consistency = [float(seg.modality_consistency.get(m, float("nan"))) for m in (*used, *excluded)]
        self._pub_info.publish(info)
        with self._stats.lock:
            self._stats.published += 1
            self._stats.latencies_ms.append(end_to_end_ms)
            self._stats.inference_ms.append(seg.inference_ms)
            self._stats.last_used = subset_name(used)

    def _render(self) -> None:
        while self._running:
            item = self._renders.take(timeout_s=0.1)
            if item is None:
                continue
            seg, header = item
            try:
                # judged here, off the inference thread: the verdicts act on later bundles anyway (a
                # segmentation replaced before rendering under overload goes unjudged: the check's
                # smoothing weighs frames by their stamps)
                self.perception.cross_check(seg)
                # drawn only for subscribers (as image_transport does): on a small machine the
                # drawing competes with the next forward for the cores
                rendering = self.perception.render(seg, color=self._pub_color.get_subscription_count() > 0,
                                                   overlay=self._pub_overlay.get_subscription_count() > 0,
                                                   points=self._pub_points.get_subscription_count() > 0)  # fmt: skip
                if rendering.color is not None:
                    self._pub_color.publish(convert.image_msg(rendering.color, "rgb8", header))
                if rendering.overlay is not None:
                    self._pub_overlay.publish(convert.image_msg(rendering.overlay, "rgb8", header))
                if rendering.points is not None:
                    self._pub_points.publish(convert.cloud_msg(rendering.points, header))
                if any(x is not None for x in (rendering.color, rendering.overlay, rendering.points)):
                    with self._stats.lock:
                        self._stats.drawn += 1
            except Exception as err:  # as for inference: report, keep rendering the next ones
                with self._stats.lock:
                    self._stats.render_failures += 1
                self.get_logger().error(f"mask at {seg.bundle.stamp_ns / 1e9:.3f} s could not be cross-checked or drawn: "
                                        f"{err!r}", throttle_duration_sec=WARN_EVERY_S)  # fmt: skip

    # --- health and diagnostics ---------------------------------------------------------------------

    def _publish_health(self) -> None:
        msg = SensorHealthArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        for modality, state in self.perception.health.states.items():
            msg.sensors.append(SensorHealth(header=msg.header, modality=modality.value, level=int(state.level),
                                            reason=state.reason, rate_hz=float(state.rate_hz), age_s=float(state.age_s),
                                            alive=state.alive))  # fmt: skip
        self._pub_health.publish(msg)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        name = self.get_name()
        for topic in self._topics.values():
            if topic.camera_info:
                continue
            state = self.perception.health.states[topic.modality]
            message = state.reason or "OK"
            level = state.level
            if topic.qos_incompatible:
                message += f"; a publisher's QoS is incompatible ({topic.qos_incompatible})"
                level = max(level, HealthLevel.WARN)
            values = {"topic": topic.name, "alive": state.alive, "rate_hz": f"{state.rate_hz:.2f}",
                      "age_s": f"{state.age_s:.3f}", "malformed_dropped": topic.rejected, **state.details}  # fmt: skip
            array.status.append(_status(f"{name}: {topic.modality.value} health", level, message, topic.name, values))
        array.status.append(self._pipeline_status(name))
        self._pub_diagnostics.publish(array)

    def _pipeline_status(self, name: str) -> DiagnosticStatus:
        alive = self.perception.health.alive
        configured = self.config.inputs.modalities
        with self._stats.lock:
            latencies = np.array(self._stats.latencies_ms) if self._stats.latencies_ms else np.zeros(1)
            inference = np.array(self._stats.inference_ms) if self._stats.inference_ms else np.zeros(1)
            published, failures, last_used = self._stats.published, self._stats.failures, self._stats.last_used
            render_failures, drawn = self._stats.render_failures, self._stats.drawn
        sync = self.perception.sync.stats
        if not alive:
            level, message = HealthLevel.ERROR, "all sensors failed: no masks"
        elif set(alive) != set(configured):
            level, message = HealthLevel.WARN, f"degraded: fusing {subset_name(alive)} of {subset_name(configured)}"
        else:
            level, message = HealthLevel.OK, f"fusing {subset_name(alive)}"
        excluded = self.perception.excluded & alive
        if excluded and alive - excluded:
            level = max(level, HealthLevel.WARN)
            message = f"fusing {subset_name(alive - excluded)} of {subset_name(configured)}; excluded as inconsistent: " + \
                ", ".join(m.value for m in MODALITIES if m in excluded)
        health = self.perception.health
        if health.node_late:
            level = max(level, HealthLevel.WARN)
            message += f"; node late: callbacks up to {health.worst_late_ns / 1e6:.0f} ms behind (sensor rates not judged)"
        if self._publisher_qos:
            level = max(level, HealthLevel.WARN)
            message += "; incompatible subscriber QoS on " + ", ".join(f"{t} ({p})" for t, p in self._publisher_qos.items())
        values = {
            "masks_published": published,
            "bundles_offered": self._mailbox.offered,
            "bundles_dropped_newer_arrived": self._mailbox.replaced,
            "renders_skipped_newer_mask": self._renders.replaced,
            "masks_drawn_for_subscribers": drawn,
            "bundles_partial": sync.partial,
            "triggers_dropped": sync.triggers_dropped,
            "sync_evicted": sync.evicted,
            "segmentation_failures": failures,
            "render_failures": render_failures,
            "sync_resets": sync.resets,
            "clock_jumps_back": self.perception.clock_jumps_back,
            "node_late": health.late_episodes,
            "node_late_worst_ms": f"{health.worst_late_ns / 1e6:.0f}",
            **self.perception.backlog(),
            "end_to_end_ms_p50": f"{np.percentile(latencies, 50):.1f}",
            "end_to_end_ms_p99": f"{np.percentile(latencies, 99):.1f}",
            "inference_ms_p50": f"{np.percentile(inference, 50):.1f}",
            "last_modalities": last_used,
            "model": self.perception.engine.name,
            "extrinsics": self._extrinsics,
        }
        return _status(f"{name}: pipeline", level, message, name, values)

    def close(self) -> None:
        self._running = False
        self._mailbox.close()
        self._renders.close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if isinstance(self.perception.engine, EngineProcess):
            self.perception.engine.close()
        self.destroy_node()


def _descriptor(parameter: Parameter) -> ParameterDescriptor:
    """What ``ros2 param describe`` shows; the values are checked by the parameter's reader, so any
    type is accepted here (dynamic typing) and refused there with the parameter named."""
    restart = " (read at start-up: changing it needs a restart)" if parameter.read_only else " (can change at run time)"
    return ParameterDescriptor(name=parameter.key, description=parameter.description + restart,
                               additional_constraints=parameter.range, read_only=parameter.read_only,
                               dynamic_typing=True)  # fmt: skip


def _policy_name(kind) -> str:
    """The QoS policy an incompatibility event names (rmw passes its own enum)."""
    try:
        return QoSPolicyKind(int(kind)).name
    except (TypeError, ValueError):
        return str(getattr(kind, "name", kind)).removeprefix("RMW_QOS_POLICY_")


def _status(name: str, level: HealthLevel, message: str, hardware_id: str, values: dict) -> DiagnosticStatus:
    return DiagnosticStatus(level=bytes([int(level)]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])  # fmt: skip


def spin(ros_args: Sequence[str] = (), params_file: str | None = None, foxglove=None) -> None:
    """Run the node until shut down (Ctrl-C, SIGTERM or rclpy shutdown).

    ``params_file`` is checked before anything starts (ConfigError naming the file and the
    parameter) and passed to rclpy as ``--params-file``; ``ros_args`` are further ROS arguments.
    ``foxglove`` (ros/foxglove_live.py FoxgloveOptions): also serve the outputs and the camera over
    Foxglove's WebSocket protocol.
    """
    args = list(ros_args)
    if params_file is not None:
        try:
            NodeConfig.from_parameters(load_parameters(params_file, NODE_NAME))
        except ConfigError as err:
            raise ConfigError(f"{params_file}: {err}") if str(params_file) not in str(err) else err from None
        args = ["--ros-args", "--params-file", str(params_file), *(args[1:] if args[:1] == ["--ros-args"] else args)]
    if foxglove is not None:
        foxglove.validate()
    rclpy.init(args=[NODE_NAME, *args])
    node = None
    relay = None
    try:
        node = Any2SegNode()
        # Everything made so far lives as long as the node: keep the collector from walking it at
        # every full collection (those pause all the node's threads).
        gc.freeze()
        if foxglove is not None:
            from modseg_ros.ros.foxglove_live import OUTPUT_TOPICS, FoxgloveRelay

            relay = FoxgloveRelay(node, {**OUTPUT_TOPICS, node.config.topics.camera: "sensor_msgs/msg/Image"}, foxglove)
            node.get_logger().info(f"foxglove: serving {len(relay.channels)} topics on ws://{foxglove.host}:{relay.port}")
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except _rclpy.RCLError:
        # Ctrl-C or SIGTERM shut the context down between two waits of the executor: its next wait
        # set then fails instead of raising ExternalShutdownException. Anything else is an error.
        if rclpy.ok():
            raise
    finally:
        # A second Ctrl-C (a terminal signals launch and the node, then launch signals the node
        # again) must not interrupt the teardown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if relay is not None:
            relay.close()
        if node is not None:
            node.close()
        rclpy.try_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``any2seg_node`` (what launch_ros runs): ROS arguments only."""
    try:
        spin(list(sys.argv[1:] if argv is None else argv))
    except ModsegError as err:
        print(f"{NODE_NAME}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
