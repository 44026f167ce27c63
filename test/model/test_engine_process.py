"""The engine in a child process (the live node's ``model.process``): same answers as in process,
errors raised here, a dead child replaced, a missing checkpoint reported."""
import os
import signal
from functools import partial

import numpy as np
import pytest

from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import CheckpointError, ModsegError
from modseg_ros.model.engine_process import EngineProcess
from modseg_ros.model.runtime import SegmentationEngine

UNTRAINED = partial(SegmentationEngine.untrained, "any2seg", input_size=(64, 128), threads=1)


@pytest.fixture(scope="module")
def remote():
    engine = EngineProcess(UNTRAINED)
    yield engine
    engine.close()


def encodings(seed=0, size=(96, 160)):
    rng = np.random.default_rng(seed)
    return {m: rng.integers(0, 256, size + (3,), dtype=np.uint8) for m in MODALITIES}


def test_answers_as_the_engine_in_this_process(remote):
    local = UNTRAINED()
    assert remote.name == local.name and remote.info.config == local.config and remote.backend == "torch"
    full = encodings(1)
    for kwargs in ({}, {"exclude": {Modality.LIDAR}}, {"consistency": False}, {"absent": "zero"}):
        inputs = {m: full[m] for m in (Modality.CAMERA, Modality.LIDAR, Modality.EVENTS)}
        theirs, ours = remote.predict(inputs, (48, 80), **kwargs), local.predict(inputs, (48, 80), **kwargs)
        assert np.array_equal(theirs.labels, ours.labels)
        assert theirs.modality_weights == pytest.approx(ours.modality_weights)
        assert theirs.modality_consistency == pytest.approx(ours.modality_consistency, nan_ok=True)


def test_a_bad_bundle_raises_here_and_the_child_serves_on(remote):
    with pytest.raises(ValueError, match="no modality to segment"):
        remote.predict({}, (48, 80))
    assert remote.predict(encodings(2), (48, 80)).labels.shape == (48, 80)


def test_the_labels_come_first_and_a_failing_receiver_leaves_the_pipe_in_step(remote):
    received = []
    p = remote.predict(encodings(4), (48, 80), on_labels=received.append)
    assert len(received) == 1 and np.array_equal(received[0], p.labels)

    def refuse(labels):
        raise RuntimeError("publisher gone")

    with pytest.raises(RuntimeError, match="publisher gone"):
        remote.predict(encodings(5), (48, 80), on_labels=refuse)
    again = remote.predict(encodings(6), (48, 80))  # this call's answer, not the previous one's
    assert np.array_equal(again.labels, UNTRAINED().predict(encodings(6), (48, 80)).labels)


def test_a_dead_child_is_reported_once_then_replaced(remote):
    first = remote.pid
    os.kill(first, signal.SIGKILL)
    with pytest.raises(ModsegError, match=r"engine process died \(exit code -9\)"):
        remote.predict(encodings(3), (48, 80))
    assert remote.predict(encodings(3), (48, 80)).labels.shape == (48, 80)
    assert remote.pid not in (None, first)


def test_a_missing_checkpoint_is_raised_by_the_constructor(tmp_path):
    with pytest.raises(CheckpointError, match="absent.safetensors"):
        EngineProcess(partial(SegmentationEngine.load, tmp_path / "absent.safetensors"))
