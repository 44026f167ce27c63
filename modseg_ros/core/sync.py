"""A time synchronizer that keeps emitting while inputs die: one trigger, nearest partners, max-wait.

message_filters' synchronizers need a message on every input before they emit, so one silent sensor
stops all output (docs/design.md#synchronizer). Here the **trigger** is the highest-priority modality that the health
monitor calls alive. For a trigger message at stamp ``t``, every other alive input contributes its
message nearest to ``t + offset`` with ``|stamp - (t + offset)| < slop`` (strict, as message_filters'
set spread). A partner is *settled* once the input has delivered a message stamped at or after the
target (a later message cannot be nearer, for an input whose stamps increase), or earlier when the
input's nominal period says its next message will not be nearer; the bundle is emitted
as soon as every alive partner is settled, or when ``max_wait`` has passed since the trigger arrived,
then with the best partners found so far and the rest marked missing. Dead inputs are never waited
for. With every input alive, equal rates and ``reuse`` off, the sets formed are exactly those of
message_filters' ApproximateTimeSynchronizer with the same slop; with a slower input, its complete
sets are among ours and the other triggers are emitted without that input (or reuse its message).

Bundles leave in trigger-stamp order (an input whose stamps jump back restarts on its own). Queues are bounded by count and by stamp age,
and a message that no later bundle can match leaves at once; everything is a
deterministic function of the samples (stamps and arrival times), the injected ``now`` and the alive
set, so sim time and offline replay give the same bundles.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from modseg_ros.core.params import Parameter, ParameterReader
from modseg_ros.core.types import MODALITIES, Bundle, Modality, SensorSample
from modseg_ros.errors import ConfigError


@dataclass(frozen=True)
class InputSync:
    """How one input is matched to the trigger."""

    slop_ns: int  # match only if |stamp - (trigger stamp + offset)| < slop
    offset_ns: int = 0  # expected stamp of this input minus the trigger's stamp
    reuse: bool = True  # may one message join consecutive bundles (a slower sensor)?
    # Nominal stamp interval of this input. 0: a partner is settled only once a message stamped at or
    # after the target has arrived (message_filters' behaviour). > 0: the next message is expected at
    # the newest stamp + period, so a partner is settled at once unless that message is expected to
    # be nearer by more than a tenth of the period, and an input is settled as missing when it is
    # expected outside the slop. Stamp jitter below a tenth of the period changes nothing.
    period_ns: int = 0


@dataclass(frozen=True)
class SyncConfig:
    priority: tuple[Modality, ...]  # trigger order, highest first; exactly the synchronised inputs
    inputs: Mapping[Modality, InputSync]
    max_wait_ns: int  # longest a trigger waits for its alive partners
    queue_size: int = 10  # messages kept per input, and pending triggers
    queue_duration_ns: int = 2_000_000_000  # messages older than the newest stamp minus this are dropped

    PARAMETERS = (
        Parameter("sync.priority", "trigger order: the first alive one starts bundles (ranks every enabled modality)", "modalities"),
        Parameter("sync.max_wait_s", "longest a trigger waits for alive partners before leaving without them", ">= 0 s"),
        Parameter("sync.queue_size", "messages kept per input", ">= 1"),
        Parameter("sync.queue_duration_s", "messages older than the newest one minus this are dropped", "> 0 s"),
        *Parameter("sync.{m}.slop_s", "largest stamp difference from the trigger's that matches", "> 0 s").for_modalities(),
        *Parameter("sync.{m}.offset_s", "added to the input's stamps before matching", "s").for_modalities(),
        *Parameter("sync.{m}.reuse", "a message may join more than one bundle (a slower sensor)", "bool").for_modalities(),
    )  # fmt: skip

    @classmethod
    def from_parameters(cls, r: ParameterReader, enabled: tuple[Modality, ...]) -> SyncConfig:
        """``sync.*`` for the ``enabled`` inputs (canonical order); each input's period is its
        sensor's nominal one (``health.<modality>.rate_hz``)."""
        ranked = r.modalities("sync.priority")
        unranked = [m.value for m in enabled if m not in ranked]
        if unranked:
            raise ConfigError(f"parameter 'sync.priority' must rank every enabled modality; missing {', '.join(unranked)}")
        priority = tuple(m for m in ranked if m in enabled)
        return cls(
            priority=priority,
            inputs={
                m: InputSync(
                    slop_ns=r.seconds(f"sync.{m.value}.slop_s", allow_zero=False),
                    offset_ns=int(round(r.number(f"sync.{m.value}.offset_s") * 1e9)),
                    reuse=r.boolean(f"sync.{m.value}.reuse"),
                    period_ns=int(round(1e9 / r.positive(f"health.{m.value}.rate_hz"))),
                )
                for m in priority
            },
            max_wait_ns=r.seconds("sync.max_wait_s"),
            queue_size=r.integer("sync.queue_size", 1),
            queue_duration_ns=r.seconds("sync.queue_duration_s", allow_zero=False),
        )

    def __post_init__(self) -> None:
        if not self.priority or len(set(self.priority)) != len(self.priority):
            raise ValueError("priority must list each synchronised modality once")
        missing = [m.value for m in self.priority if m not in self.inputs]
        if missing:
            raise ValueError(f"no input settings for {', '.join(missing)}")


@dataclass
class SyncStats:
    bundles: int = 0  # bundles emitted
    partial: int = 0  # of which some alive input was missing at max_wait
    triggers_dropped: int = 0  # trigger messages never emitted (trigger died, out of order, overflow)
    evicted: int = 0  # messages dropped from the queues by the count or age bound
    resets: int = 0  # an input's stamps jumped back by more than the queue duration (its queue restarted)


@dataclass
class _Pending:
    sample: SensorSample
    deadline_ns: int


@dataclass
class _Queue:
    """Messages of one input, sorted by stamp; a stamp seen twice keeps the newer message."""

    stamps: list[int] = field(default_factory=list)
    samples: list[SensorSample] = field(default_factory=list)
    watermark_ns: int | None = None  # highest stamp ever delivered (survives consumption)

    def insert(self, sample: SensorSample) -> None:
        i = bisect.bisect_left(self.stamps, sample.stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == sample.stamp_ns:
            self.samples[i] = sample
        else:
            self.stamps.insert(i, sample.stamp_ns)
            self.samples.insert(i, sample)
        if self.watermark_ns is None or sample.stamp_ns > self.watermark_ns:
            self.watermark_ns = sample.stamp_ns

    def nearest(self, target_ns: int, slop_ns: int) -> SensorSample | None:
        """Nearest message with |stamp - target| < slop; on a tie, the earlier one."""
        i = bisect.bisect_left(self.stamps, target_ns)
        best, best_delta = None, slop_ns
        for j in (i - 1, i):  # the neighbours of the target; the earlier wins ties
            if 0 <= j < len(self.stamps):
                delta = abs(self.stamps[j] - target_ns)
                if delta < best_delta:
                    best, best_delta = self.samples[j], delta
        return best

    def remove(self, sample: SensorSample) -> None:
        i = bisect.bisect_left(self.stamps, sample.stamp_ns)
        if i < len(self.stamps) and self.samples[i] is sample:
            del self.stamps[i], self.samples[i]

    def bound(self, size: int, duration_ns: int) -> int:
        """Drop the oldest messages beyond ``size`` or older than the newest minus ``duration``."""
        if not self.stamps:
            return 0
        cut = max(len(self.stamps) - size, bisect.bisect_left(self.stamps, self.stamps[-1] - duration_ns))
        if cut > 0:
            del self.stamps[:cut], self.samples[:cut]
        return max(cut, 0)


class Synchronizer:
    """Subset-tolerant approximate-time synchronizer (see the module docstring)."""

    def __init__(self, config: SyncConfig):
        self.config = config
        self.stats = SyncStats()
        self._queues = {m: _Queue() for m in config.priority}
        self._pending: list[_Pending] = []  # sorted by trigger stamp
        self._trigger: Modality | None = None
        self._last_emitted_ns: int | None = None

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return self.config.priority

    def trigger(self, alive: Set[Modality]) -> Modality | None:
        """The modality whose messages start bundles: the highest-priority alive one."""
        return next((m for m in self.config.priority if m in alive), None)

    def push(self, sample: SensorSample, now_ns: int, alive: Set[Modality]) -> list[Bundle]:
        """Add one received sample; returns the bundles completed by it (usually zero or one)."""
        modality = sample.modality
        if modality not in self._queues:
            return []
        queue = self._queues[modality]
        if queue.watermark_ns is not None and sample.stamp_ns < queue.watermark_ns - self.config.queue_duration_ns:
            queue = self._restart(modality)  # its stamps jumped back: a looped bag or a reset sensor clock
        queue.insert(sample)
        self.stats.evicted += queue.bound(self.config.queue_size, self.config.queue_duration_ns)
        self._switch_trigger(alive)
        if modality is self._trigger:
            self._add_pending(sample)
        return self._emit_ready(now_ns, alive)

    def poll(self, now_ns: int, alive: Set[Modality]) -> list[Bundle]:
        """Emit what ``max_wait`` or a change of the alive set has completed; call it periodically."""
        self._switch_trigger(alive)
        return self._emit_ready(now_ns, alive)

    def backlog(self) -> tuple[dict[Modality, int], int]:
        """Messages held per input and triggers waiting (both bounded by ``queue_size``)."""
        return {m: len(q.stamps) for m, q in self._queues.items()}, len(self._pending)

    def clear(self) -> None:
        """Forget every message and pending trigger (keeps the statistics)."""
        self._queues = {m: _Queue() for m in self.config.priority}
        self._pending.clear()
        self._trigger = None
        self._last_emitted_ns = None

    # --- internals ---------------------------------------------------------------------------

    def _restart(self, modality: Modality) -> _Queue:
        """Forget one input's messages; when it is the trigger, its pending triggers and the order of
        emitted stamps go too. The other inputs keep theirs: one sensor's clock must not cost the
        others their bundles (their own jump, if it comes, restarts them)."""
        self.stats.resets += 1
        self._queues[modality] = _Queue()
        if modality is self._trigger:
            self.stats.triggers_dropped += len(self._pending)
            self._pending.clear()
            self._last_emitted_ns = None
        return self._queues[modality]

    def _switch_trigger(self, alive: Set[Modality]) -> None:
        trigger = self.trigger(alive)
        if trigger is self._trigger:
            return
        self._trigger = trigger
        if trigger is None:
            return
        # Messages of the new trigger that arrived while the old one was failing start bundles too,
        # so the gap before the switch is covered.
        for sample in self._queues[trigger].samples:
            if self._last_emitted_ns is None or sample.stamp_ns > self._last_emitted_ns:
                self._add_pending(sample)

    def _add_pending(self, sample: SensorSample) -> None:
        if self._last_emitted_ns is not None and sample.stamp_ns <= self._last_emitted_ns:
            self.stats.triggers_dropped += 1  # older than a bundle already emitted
            return
        stamps = [p.sample.stamp_ns for p in self._pending]
        i = bisect.bisect_left(stamps, sample.stamp_ns)
        pending = _Pending(sample, sample.arrival_ns + self.config.max_wait_ns)
        if i < len(stamps) and stamps[i] == sample.stamp_ns:
            self._pending[i] = pending
            return
        self._pending.insert(i, pending)
        overflow = len(self._pending) - self.config.queue_size
        if overflow > 0:
            del self._pending[:overflow]
            self.stats.triggers_dropped += overflow

    def _emit_ready(self, now_ns: int, alive: Set[Modality]) -> list[Bundle]:
        bundles = []
        while self._pending:
            head = self._pending[0]
            if head.sample.modality not in alive:
                self._pending.pop(0)
                self.stats.triggers_dropped += 1
                continue
            partners, settled = self._partners(head.sample, alive)
            expired = now_ns >= head.deadline_ns
            if not (settled or expired):
                break  # head of line waits; later triggers leave after it
            self._pending.pop(0)
            bundles.append(self._bundle(head.sample, partners, alive, now_ns))
        return bundles

    def _partners(self, trigger: SensorSample, alive: Set[Modality]) -> tuple[dict[Modality, SensorSample], bool]:
        partners: dict[Modality, SensorSample] = {}
        settled = True
        for modality in self.config.priority:
            if modality is trigger.modality or modality not in alive:
                continue
            spec = self.config.inputs[modality]
            queue = self._queues[modality]
            target = trigger.stamp_ns + spec.offset_ns
            best = queue.nearest(target, spec.slop_ns)
            if best is not None:
                partners[modality] = best
            if not self._settled(queue, spec, target, best):
                settled = False
        return partners, settled

    @staticmethod
    def _settled(queue: _Queue, spec: InputSync, target_ns: int, best: SensorSample | None) -> bool:
        """Can no future message of this input change its partner for ``target_ns``?"""
        newest = queue.watermark_ns
        if newest is None:
            return False
        if best is not None and newest >= target_ns:
            return True  # stamps increase: nothing later can be nearer
        if spec.period_ns <= 0:
            return False
        expected_next = newest + spec.period_ns
        if best is None:
            return expected_next >= target_ns + spec.slop_ns
        return expected_next - target_ns >= abs(best.stamp_ns - target_ns) - spec.period_ns // 10

    def _forget_unmatchable(self) -> None:
        """Drop the messages no later bundle can use: every later trigger is stamped after the last
        emitted one, so a message at or before ``last + offset - slop`` (and, as a trigger, at or
        before ``last``) can never match. The queues hold full-size payloads (a 1080p image is 6 MB);
        a message the count bound would keep for a second costs memory and matches nothing."""
        for modality, queue in self._queues.items():
            spec = self.config.inputs[modality]
            cut = bisect.bisect_right(queue.stamps, self._last_emitted_ns + min(0, spec.offset_ns - spec.slop_ns))
            del queue.stamps[:cut], queue.samples[:cut]

    def _bundle(
        self, trigger: SensorSample, partners: Mapping[Modality, SensorSample], alive: Set[Modality], now_ns: int
    ) -> Bundle:
        samples = {trigger.modality: trigger, **partners}
        consumed = [s for m, s in samples.items() if not self.config.inputs[m].reuse]
        for sample in consumed:  # (the trigger too: once the trigger changes, it could be a partner)
            self._queues[sample.modality].remove(sample)
        # A partner that is itself a pending trigger (the trigger changed while it waited) is used up.
        self._pending = [p for p in self._pending if not any(p.sample is s for s in consumed)]
        missing = frozenset(m for m in self.config.priority if m not in samples)
        expected = [m for m in self.config.priority if m in alive]
        self.stats.bundles += 1
        if any(m not in samples for m in expected):
            self.stats.partial += 1
        self._last_emitted_ns = trigger.stamp_ns
        self._forget_unmatchable()
        ordered = {m: samples[m] for m in MODALITIES if m in samples}
        return Bundle(stamp_ns=trigger.stamp_ns, trigger=trigger.modality, samples=ordered, missing=missing, emitted_ns=now_ns)

