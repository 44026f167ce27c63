"""Synchronizer: message_filters' upstream cases, equivalence with ApproximateTimeSynchronizer on
regular streams, and the dead-input cases message_filters cannot handle (docs/design.md#synchronizer)."""
from __future__ import annotations

import random

import pytest

from modseg_ros.bench.reference import ApproximateTimeProductSearch as ApproximateTimeOracle
from modseg_ros.core.sync import InputSync, SyncConfig, Synchronizer
from modseg_ros.core.types import Modality, SensorSample

C, D, L, E = Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS
MS = 1_000_000
S = 1_000_000_000
ALL = frozenset({C, D, L, E})


def sample(modality, stamp_ns, arrival_ns=None, tag=None):
    return SensorSample(modality, stamp_ns, stamp_ns if arrival_ns is None else arrival_ns, modality.value, tag)


def make(priority=(C, D, L, E), slop=30 * MS, max_wait=50 * MS, queue_size=10, duration=2 * S, reuse=False, **inputs):
    specs = {m: InputSync(slop_ns=slop, reuse=reuse) for m in priority}
    specs.update({Modality(k): v for k, v in inputs.items()})
    config = SyncConfig(tuple(priority), specs, max_wait_ns=max_wait, queue_size=queue_size, queue_duration_ns=duration)
    return Synchronizer(config)


def stamps_of(bundle):
    return tuple(bundle.samples[m].stamp_ns if m in bundle.samples else None for m in bundle.modalities)


# --- upstream test_approxsync.py::test_approx -----------------------------------------------------


def test_upstream_lockstep_pairs_emit_once_the_second_arrives():
    sync = make(priority=(C, D), slop=100 * MS, queue_size=1)
    for t in range(10):
        m0, m1 = sample(C, t * S, 0, "m0"), sample(D, t * S, 0, "m1")
        assert sync.push(m0, 0, ALL) == []
        out = sync.push(m1, 0, ALL)
        assert [(b.samples[C], b.samples[D]) for b in out] == [(m0, m1)]


@pytest.mark.parametrize("n", range(1, 10))
def test_upstream_shuffled_sequences_recombine(n):
    rng = random.Random(0)
    # message_filters bounds queues by count only; the age bound must not bite on 1 s spaced stamps
    sync = make(priority=(C, D), slop=100 * MS, queue_size=n, duration=60 * S)
    seq0 = [sample(C, t * S, 0, rng.random()) for t in range(n)]
    seq1 = [sample(D, t * S, 0, rng.random()) for t in range(n)]
    collected = []
    for msg in rng.sample(seq0, n):
        collected += sync.push(msg, 0, ALL)
    assert collected == []
    for msg in rng.sample(seq1, n):
        collected += sync.push(msg, 0, ALL)
    assert {(b.samples[C], b.samples[D]) for b in collected} == set(zip(seq0, seq1))


def test_upstream_headerless_case_has_no_counterpart():
    # allow_headerless stamps messages with the arrival time; every sensor message here has a header,
    # and a sample's stamp is always its header stamp, never its arrival.
    s = sample(C, 5 * S, arrival_ns=9 * S)
    assert (s.stamp_ns, s.arrival_ns) == (5 * S, 9 * S)


# --- equivalence with ApproximateTimeSynchronizer on regular streams ------------------------------


def regular_streams(modalities, rates_hz, duration_s, jitter_ns, latency_ns, seed):
    """Per-input periodic stamps with jitter, each delivered after a random latency, in arrival order."""
    rng = random.Random(seed)
    events = []
    for modality, rate in zip(modalities, rates_hz):
        period = int(S / rate)
        last_arrival = 0
        for k in range(int(duration_s * rate)):
            stamp = k * period + rng.randint(-jitter_ns, jitter_ns) + S
            arrival = max(stamp + rng.randint(0, latency_ns), last_arrival + 1)  # one topic arrives in order
            last_arrival = arrival
            events.append((arrival, modality, stamp))
    events.sort()
    return [sample(m, stamp, arrival) for arrival, m, stamp in events]


@pytest.mark.parametrize("inputs", [2, 3, 4])
@pytest.mark.parametrize("seed", range(5))
def test_equal_rates_form_exactly_the_approximate_time_sets(inputs, seed):
    # "Regular": stamp jitter J with 2J < slop (every true set fits the spread) and period - 2J >= slop
    # (a neighbouring message of another input is never a candidate).
    modalities = (C, D, L, E)[:inputs]
    slop = 30 * MS
    stream = regular_streams(modalities, [20.0] * inputs, 5.0, jitter_ns=10 * MS, latency_ns=20 * MS, seed=seed)
    oracle = ApproximateTimeOracle(inputs, queue_size=10, slop_ns=slop)
    sync = make(priority=modalities, slop=slop, max_wait=60 * MS)
    expected, ours = set(), []
    for s in stream:
        found = oracle.add(modalities.index(s.modality), s.stamp_ns, s)
        if found:
            expected.add(tuple(m.stamp_ns for m in found))
        ours += sync.push(s, s.arrival_ns, set(modalities))
    ours += sync.poll(stream[-1].arrival_ns + S, set(modalities))
    assert len(expected) == 100
    assert {stamps_of(b) for b in ours} == expected
    assert sync.stats.partial == 0


def test_slower_input_sets_of_approximate_time_are_our_complete_bundles():
    slop = 30 * MS
    stream = regular_streams((C, L), [20.0, 10.0], 5.0, jitter_ns=5 * MS, latency_ns=10 * MS, seed=3)
    oracle = ApproximateTimeOracle(2, queue_size=10, slop_ns=slop)
    sync = make(priority=(C, L), slop=slop, max_wait=60 * MS)
    expected, ours = set(), []
    for s in stream:
        found = oracle.add((C, L).index(s.modality), s.stamp_ns, s)
        if found:
            expected.add(tuple(m.stamp_ns for m in found))
        ours += sync.push(s, s.arrival_ns, {C, L})
        ours += sync.poll(s.arrival_ns, {C, L})
    ours += sync.poll(stream[-1].arrival_ns + S, {C, L})
    complete = {stamps_of(b) for b in ours if L in b.samples}
    assert complete == expected and len(expected) == 50
    # every camera frame still gets a bundle: the ones between LiDAR scans leave without it
    assert len(ours) == 100 and all(b.missing == {L} for b in ours if L not in b.samples)


def test_reuse_gives_every_trigger_the_nearest_scan_of_a_slower_input():
    sync = make(priority=(C, L), max_wait=60 * MS, lidar=InputSync(slop_ns=60 * MS, reuse=True))
    out = []
    for k in range(10):
        t = S + k * 50 * MS
        if k % 2 == 0:
            out += sync.push(sample(L, t, t + 5 * MS), t + 5 * MS, {C, L})
        out += sync.push(sample(C, t, t + 1 * MS), t + 1 * MS, {C, L})
        out += sync.poll(t + 40 * MS, {C, L})
    out += sync.poll(3 * S, {C, L})
    assert len(out) == 10
    # a camera frame midway between scans takes the earlier scan (ties go to the earlier message)
    assert [b.samples[L].stamp_ns - S for b in out] == [k // 2 * 100 * MS for k in range(10)]


def test_known_period_settles_without_waiting_for_the_next_message():
    # The scan is stamped 2 ms before the camera frame. Without a period the trigger must wait for the
    # next scan (or max_wait) to know no nearer one comes; with a 100 ms period it knows at once.
    for period, wait in ((0, 60), (100 * MS, 0)):
        sync = make(priority=(C, L), max_wait=60 * MS, lidar=InputSync(30 * MS, period_ns=period))
        sync.push(sample(L, S - 2 * MS, S), S, {C, L})
        out = sync.push(sample(C, S, S + MS), S + MS, {C, L})
        for dt in range(0, 80):
            out += sync.poll(S + dt * MS, {C, L})
        assert len(out) == 1 and out[0].samples[L].stamp_ns == S - 2 * MS
        assert (out[0].emitted_ns - S - MS) // MS == wait


@pytest.mark.parametrize("jitter_ms", [-4, 0, 4])
def test_frame_midway_between_scans_takes_the_earlier_scan_at_once_despite_jitter(jitter_ms):
    lidar = InputSync(60 * MS, reuse=True, period_ns=100 * MS)
    sync = make(priority=(C, L), max_wait=60 * MS, lidar=lidar)
    sync.push(sample(L, S + jitter_ms * MS, S + 5 * MS), S + 5 * MS, {C, L})
    out = sync.push(sample(C, S + 50 * MS, S + 51 * MS), S + 51 * MS, {C, L})
    assert len(out) == 1 and out[0].samples[L].stamp_ns == S + jitter_ms * MS and out[0].emitted_ns == S + 51 * MS


def test_input_expected_outside_the_slop_is_settled_missing_at_once():
    sync = make(priority=(C, L), max_wait=60 * MS, lidar=InputSync(30 * MS, period_ns=90 * MS))
    sync.push(sample(L, S - 40 * MS, S - 40 * MS), S, {C, L})
    out = sync.push(sample(C, S, S + MS), S + MS, {C, L})
    assert len(out) == 1 and out[0].missing == {L}


# --- dead inputs, offsets, boundaries, bounds ----------------------------------------------------


def test_dead_input_is_not_waited_for_and_is_reported_missing():
    sync = make(max_wait=50 * MS)
    out = []
    for k in range(5):
        t = S + k * 50 * MS
        for m in (D, E, C):
            out += sync.push(sample(m, t, t + MS), t + MS, {C, D, E})
    assert len(out) == 5 and sync.stats.partial == 0
    assert all(b.missing == {L} and b.modalities == (C, D, E) for b in out)
    assert [b.emitted_ns - b.samples[C].arrival_ns for b in out] == [0] * 5  # no waiting


def test_input_dying_mid_stream_costs_at_most_max_wait_then_nothing():
    sync = make(priority=(C, L), max_wait=50 * MS)
    out = []
    alive = {C, L}
    for k in range(30):
        t = S + k * 50 * MS
        if k == 10:
            pass  # LiDAR stops: the monitor still calls it alive until k == 13
        if k == 13:
            alive = {C}
        if k == 20:
            alive = {C, L}  # it is back
        out += sync.push(sample(C, t, t + MS), t + MS, alive)
        if k < 10 or k >= 20:
            out += sync.push(sample(L, t, t + 2 * MS), t + 2 * MS, alive)
        for dt in range(0, 50, 5):
            out += sync.poll(t + dt * MS, alive)
    assert len(out) == 30
    waits = [(b.emitted_ns - b.samples[C].arrival_ns) // MS for b in out]
    # alive and present: emitted when the LiDAR message arrives (1 ms after the camera)
    assert set(waits[:10]) == {1} and set(waits[20:]) == {1}
    # silent but still believed alive: waits max_wait (and no longer)
    assert all(50 <= w < 55 for w in waits[10:13]) and all(L not in b.samples for b in out[10:13])
    # declared dead: not waited for
    assert set(waits[13:20]) == {0} and all(b.missing == {L} for b in out[13:20])
    # the third of them left after the monitor's verdict, so only two count as partial
    assert sync.stats.partial == 2


def test_trigger_falls_to_the_next_alive_modality_and_covers_the_gap():
    sync = make(priority=(C, D), max_wait=50 * MS)
    out = []
    alive = {C, D}
    for k in range(20):
        t = S + k * 50 * MS
        if k == 8:
            alive = {D}  # the camera stopped at k == 5; the monitor notices at k == 8
        out += sync.push(sample(D, t, t + MS), t + MS, alive)
        if k < 5:
            out += sync.push(sample(C, t, t + 2 * MS), t + 2 * MS, alive)
        out += sync.poll(t + 49 * MS, alive)
    stamps = [b.stamp_ns for b in out]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [b.trigger for b in out] == [C] * 5 + [D] * 15  # depth frames 5..7 are emitted once the switch happens
    assert all(b.missing == {C} for b in out[5:])


def test_no_alive_input_no_bundles_until_one_returns():
    sync = make(priority=(C, D))
    assert sync.push(sample(C, S), S, set()) == [] and sync.poll(2 * S, set()) == []
    out = sync.push(sample(D, 3 * S), 3 * S, {D})
    assert len(out) == 1 and out[0].trigger is D and out[0].missing == {C}


def test_constant_offset_matches_the_shifted_input():
    lidar_late = InputSync(slop_ns=10 * MS, offset_ns=30 * MS)
    shifted = make(priority=(C, L), lidar=lidar_late)
    plain = make(priority=(C, L), slop=10 * MS)
    for sync in (shifted, plain):
        sync.push(sample(L, S + 30 * MS, S + 31 * MS), S + 31 * MS, {C, L})
    assert shifted.push(sample(C, S, S + 32 * MS), S + 32 * MS, {C, L})[0].samples[L].stamp_ns == S + 30 * MS
    assert plain.push(sample(C, S, S + 32 * MS), S + 32 * MS, {C, L}) == []
    assert L not in plain.poll(S + 200 * MS, {C, L})[0].samples


def test_equal_stamps_on_one_input_keep_the_newer_message():
    sync = make(priority=(C, D))
    sync.push(sample(D, S, tag="old"), S, {C, D})
    sync.push(sample(D, S, tag="new"), S, {C, D})
    assert sync.push(sample(C, S), S, {C, D})[0].samples[D].data == "new"


def test_slop_boundary_is_exclusive_as_message_filters_set_spread():
    for delta, matched in ((30 * MS, False), (30 * MS - 1, True)):
        sync = make(priority=(C, D), slop=30 * MS)
        sync.push(sample(D, S + delta), S + delta, {C, D})
        sync.push(sample(D, S + 200 * MS), S + 200 * MS, {C, D})
        out = sync.push(sample(C, S, S + 201 * MS), S + 201 * MS, {C, D}) + sync.poll(S + 300 * MS, {C, D})
        assert (D in out[0].samples) is matched
        oracle = ApproximateTimeOracle(2, 10, 30 * MS)
        oracle.add(1, S + delta, "d")
        assert (oracle.add(0, S, "c") is not None) is matched


def test_stamps_jumping_back_reset_the_queues_and_bundles_continue():
    sync = make(priority=(C, D))
    out = []
    for t in (100 * S, 100 * S + 50 * MS, S, S + 50 * MS):  # a bag loops back to its start
        out += sync.push(sample(D, t), t, {C, D})
        out += sync.push(sample(C, t), t, {C, D})
    assert [b.stamp_ns for b in out] == [100 * S, 100 * S + 50 * MS, S, S + 50 * MS]
    assert sync.stats.resets == 2  # each input restarts when its own stamps jump back


def test_one_input_jumping_back_does_not_cost_the_others_their_bundles():
    sync = make(priority=(C, D, L), lidar=InputSync(60 * MS, reuse=True, period_ns=100 * MS))
    out = []
    for k in range(20):
        t = 10 * S + k * 50 * MS
        out += sync.push(sample(D, t), t, {C, D, L})
        if k % 2 == 0:  # a LiDAR whose clock glitches back to zero now and then
            out += sync.push(sample(L, t if k % 4 else MS), t, {C, D, L})
        out += sync.push(sample(C, t), t, {C, D, L})
        out += sync.poll(t + 60 * MS, {C, D, L})
    assert [b.stamp_ns for b in out] == [10 * S + k * 50 * MS for k in range(20)]
    assert all(D in b.samples for b in out) and sync.stats.resets > 0


def test_memory_stays_bounded_whatever_the_input_does():
    sync = make(priority=(C, L), queue_size=8, max_wait=10 * S)
    for k in range(5000):  # LiDAR floods with stamps that never match; camera triggers pile up
        sync.push(sample(L, k * S + 500 * MS), k * S, {C, L})
        sync.push(sample(C, k * S), k * S, {C, L})
    queues = sync._queues
    assert len(queues[L].stamps) <= 8 and len(queues[C].stamps) <= 8 and len(sync._pending) <= 8
    assert sync.stats.evicted > 0


def test_messages_no_later_bundle_can_match_leave_the_queues():
    # the queues hold full-size payloads: with every input alive each keeps only what a coming
    # trigger can still take, not queue_size messages
    stream = regular_streams((C, D, L, E), [20.0, 20.0, 10.0, 20.0], 5.0, jitter_ns=5 * MS, latency_ns=30 * MS, seed=4)
    sync = make(priority=(C, D, L, E), max_wait=40 * MS, lidar=InputSync(60 * MS, reuse=True))
    out, held = [], []
    for s in stream:
        out += sync.push(s, s.arrival_ns, ALL) + sync.poll(s.arrival_ns, ALL)
        held.append(max(sync.backlog()[0].values()))
    out += sync.poll(stream[-1].arrival_ns + S, ALL)
    assert len(out) == 100 and sync.stats.partial == 0
    assert max(held) <= 3 and sync.config.queue_size == 10


def test_same_inputs_give_the_same_bundles():
    stream = regular_streams((C, D, L), [20.0, 20.0, 10.0], 2.0, jitter_ns=5 * MS, latency_ns=30 * MS, seed=9)

    def run():
        sync = make(priority=(C, D, L), max_wait=40 * MS, lidar=InputSync(60 * MS, reuse=True))
        out = []
        for s in stream:
            out += sync.push(s, s.arrival_ns, {C, D, L}) + sync.poll(s.arrival_ns, {C, D, L})
        out += sync.poll(stream[-1].arrival_ns + S, {C, D, L})
        return [(stamps_of(b), b.emitted_ns) for b in out]

    assert run() == run() and len(run()) == 40
