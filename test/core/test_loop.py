"""The node's loop (core/loop.py) on its own: rclpy-timer timing on a handed clock, level tracking,
and what each timer hands on. The live node and the offline replay giving the same masks through it
is test/eval/test_replay_eval.py's."""
from __future__ import annotations

from types import SimpleNamespace

from modseg_ros.core.loop import ClockTimer, LevelTracker, NodeLoop
from modseg_ros.core.types import HealthLevel, HealthState, Modality

CAM, LIDAR = Modality.CAMERA, Modality.LIDAR
MS = 1_000_000


def state(modality: Modality, level: HealthLevel, alive: bool) -> HealthState:
    return HealthState(modality, level, "", alive, 0.0, -1.0)


def test_a_clock_timer_fires_at_the_first_clock_then_on_its_period_and_once_after_a_jump():
    timer = ClockTimer(50.0)  # 20 ms
    fired = [t for t in (5, 10, 19, 20, 21, 40, 200, 205, 220) if timer.due(t * MS)]
    assert fired == [5, 20, 40, 200, 220]


def test_levels_change_on_level_or_liveness_and_a_first_stale_is_not_reported():
    tracker = LevelTracker()
    first = tracker.update({CAM: state(CAM, HealthLevel.STALE, False)}, frozenset())
    assert first.changed and first.reported == () and first.fused is None
    assert not tracker.update({CAM: state(CAM, HealthLevel.STALE, False)}, frozenset()).changed
    up = tracker.update({CAM: state(CAM, HealthLevel.OK, True)}, frozenset({CAM}))
    assert up.changed and [m for m, _ in up.reported] == [CAM] and up.fused == frozenset({CAM})
    down = tracker.update({CAM: state(CAM, HealthLevel.ERROR, False)}, frozenset())
    assert down.fused == frozenset() and down.reported[0][1].level == HealthLevel.ERROR


class _Perception:
    """What the loop uses of core/perception.py Perception, recording the calls."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(health_tick_rate_hz=50.0, sync_poll_rate_hz=100.0,
                                      outputs=SimpleNamespace(health_rate_hz=10.0))  # fmt: skip
        self.health = SimpleNamespace(alive=frozenset({LIDAR}), node_late=False)
        self.calls: list[tuple[str, int]] = []

    def tick(self, now_ns: int, late_ns: int = 0):
        self.calls.append(("tick", now_ns))
        return {LIDAR: state(LIDAR, HealthLevel.OK, True)}, [f"tick@{now_ns}"]

    def poll(self, now_ns: int):
        self.calls.append(("poll", now_ns))
        return [f"poll@{now_ns}"]


def test_advance_fires_the_due_timers_in_the_node_order_and_publishes_health_on_change_and_cadence():
    perception = _Perception()
    handed, published = [], []
    loop = NodeLoop(perception, handed.extend, lambda: published.append(len(perception.calls)))
    for t in (0, 10, 20, 100):
        loop.advance(t * MS)
    assert perception.calls == [("tick", 0), ("poll", 0), ("poll", 10 * MS), ("tick", 20 * MS), ("poll", 20 * MS),
                                ("tick", 100 * MS), ("poll", 100 * MS)]  # fmt: skip
    assert handed == ["tick@0", "poll@0", f"poll@{10 * MS}", f"tick@{20 * MS}", f"poll@{20 * MS}",
                      f"tick@{100 * MS}", f"poll@{100 * MS}"]  # fmt: skip
    # the first tick's change, the 10 Hz cadence at 0 and at 100 ms
    assert published == [1, 2, 7]
