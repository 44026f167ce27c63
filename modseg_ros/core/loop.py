"""The node's loop without ROS: what its timers do (health tick, synchronizer poll, ``sensor_health``
cadence) and the tracking of each sensor's level, around a Perception.

The live node (ros/node.py) calls these from its rclpy timers; the offline replay (eval/offline.py)
calls ``advance`` on the bag's clock, which fires them as rclpy timers would. Both hand the completed
bundles to ``hand_over`` and publish or record the sensors' health through ``publish_health``, so
live and offline runs make the same bundles from the same messages.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from modseg_ros.core.perception import Perception
from modseg_ros.core.types import Bundle, HealthLevel, HealthState, Modality


@dataclass(frozen=True)
class LevelChanges:
    """What a health tick changed."""

    changed: bool  # a sensor's level or liveness changed (``sensor_health`` is published at once)
    reported: tuple[tuple[Modality, HealthState], ...]  # the changes worth a log line (not a first STALE)
    fused: frozenset[Modality] | None  # the alive sensors when that set changed (None: unchanged)
    node_late: bool | None = None  # whether the node itself is late, when that changed (None: unchanged)


class LevelTracker:
    """Each sensor's last (level, alive) and the last set of alive sensors."""

    def __init__(self) -> None:
        self._levels: dict[Modality, tuple[HealthLevel, bool]] = {}
        self._alive: frozenset[Modality] | None = None

    def update(self, states: dict[Modality, HealthState], alive: frozenset[Modality]) -> LevelChanges:
        changed = False
        reported = []
        for modality, state in states.items():
            key = (state.level, state.alive)
            if self._levels.get(modality) != key:
                if modality in self._levels or state.level != HealthLevel.STALE:
                    reported.append((modality, state))
                self._levels[modality] = key
                changed = True
        fused = None
        if alive != self._alive:
            if self._alive is not None or alive:
                fused = alive
            self._alive = alive
        return LevelChanges(changed, tuple(reported), fused)


class ClockTimer:
    """An rclpy timer created before sim time started: due at multiples of its period; it fires at
    the first clock message, and after a jump it fires once and skips the periods it missed."""

    def __init__(self, rate_hz: float) -> None:
        self.period = int(round(1e9 / rate_hz))
        self.next_ns: int | None = None

    def due(self, now_ns: int) -> bool:
        if self.next_ns is not None and now_ns < self.next_ns:
            return False
        self.next_ns = (now_ns // self.period + 1) * self.period
        return True


class NodeLoop:
    """The node's timers around ``perception``: bundles go to ``hand_over``, and ``publish_health``
    is called on every change of a sensor's level and at ``outputs.health_rate_hz``."""

    def __init__(self, perception: Perception, hand_over: Callable[[Sequence[Bundle]], None],
                 publish_health: Callable[[], None]) -> None:  # fmt: skip
        self.perception = perception
        self.hand_over = hand_over
        self.publish_health = publish_health
        self.levels = LevelTracker()
        self._node_late = False
        config = perception.config
        self._timers = (ClockTimer(config.health_tick_rate_hz), ClockTimer(config.sync_poll_rate_hz),
                        ClockTimer(config.outputs.health_rate_hz))  # fmt: skip

    def health_tick(self, now_ns: int, late_ns: int = 0) -> LevelChanges:
        """Timeouts and rates at ``now_ns`` (``late_ns``: how far the live node's callbacks fell
        behind since the last tick; the offline replay is never late); the health is published if a
        level changed, then the bundles max-wait or a verdict completed are handed over."""
        states, bundles = self.perception.tick(now_ns, late_ns)
        changes = self.levels.update(states, self.perception.health.alive)
        late = self.perception.health.node_late
        if late != self._node_late:
            self._node_late = late
            changes = replace(changes, node_late=late)
        if changes.changed:
            self.publish_health()
        self.hand_over(bundles)
        return changes

    def sync_poll(self, now_ns: int) -> None:
        """Bundles completed by max-wait since the last call (between health ticks)."""
        self.hand_over(self.perception.poll(now_ns))

    def advance(self, now_ns: int) -> None:
        """The node clock is at ``now_ns`` (a /clock message): fire the timers that are due, in the
        order the node creates them."""
        tick, poll, health = self._timers
        if tick.due(now_ns):
            self.health_tick(now_ns)
        if poll.due(now_ns):
            self.sync_poll(now_ns)
        if health.due(now_ns):
            self.publish_health()
