import numpy as np
import pytest
import torch

from modseg_ros.core.types import MODALITIES, Modality, all_subsets
from modseg_ros.model import labels as numpy_labels
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.segmenter import labels_at, labels_on_grid, upsample


@pytest.fixture(scope="module")
def engine():
    return SegmentationEngine.untrained("any2seg", input_size=(64, 128))


def encodings(seed=0, size=(96, 160)):
    rng = np.random.default_rng(seed)
    return {m: rng.integers(0, 256, size + (3,), dtype=np.uint8) for m in MODALITIES}


def test_untrained_engine_describes_itself(engine):
    assert engine.input_size == (64, 128)
    assert len(engine.classes) == 25 and engine.classes[6] == "Road"
    assert engine.name == "any2seg-untrained"


def test_predict_on_every_subset(engine):
    full = encodings()
    for subset in all_subsets():
        p = engine.predict({m: full[m] for m in subset}, output_size=(48, 80))
        assert p.labels.shape == (48, 80) and p.labels.dtype == np.uint8
        assert p.labels.max() < 25
        assert set(p.modality_weights) == set(subset) and p.modalities == subset
        assert sum(p.modality_weights.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.inference_ms > 0


def test_consistency_scores_and_exclusion(engine):
    full = encodings(3)
    p = engine.predict(full)
    assert set(p.modality_consistency) == set(MODALITIES)
    assert all(0.0 < c <= 1.0 + 1e-6 for c in p.modality_consistency.values())
    without_lidar = engine.predict({m: e for m, e in full.items() if m is not Modality.LIDAR})
    excluded = engine.predict(full, exclude={Modality.LIDAR})
    assert np.array_equal(excluded.labels, without_lidar.labels)  # fused like the others alone ...
    assert excluded.modality_weights[Modality.LIDAR] == 0.0
    assert excluded.modality_consistency == pytest.approx(p.modality_consistency)  # ... and still scored alike
    pair = engine.predict({m: full[m] for m in (Modality.CAMERA, Modality.DEPTH)})
    assert all(np.isnan(c) for c in pair.modality_consistency.values())  # two cannot outvote each other
    with pytest.raises(ValueError, match="every present modality is excluded"):
        engine.predict({Modality.CAMERA: full[Modality.CAMERA]}, exclude={Modality.CAMERA})


def test_unasked_consistency_is_not_computed_and_changes_nothing_else(engine):
    full = encodings(4)
    scored, unscored = engine.predict(full), engine.predict(full, consistency=False)
    assert all(np.isnan(c) for c in unscored.modality_consistency.values()) and set(unscored.modality_consistency) == set(MODALITIES)
    assert np.array_equal(scored.labels, unscored.labels) and scored.modality_weights == unscored.modality_weights


def test_the_labels_are_handed_on_before_the_scores_are_computed(engine, monkeypatch):
    events = []
    score = engine._backend.score
    monkeypatch.setattr(engine._backend, "score", lambda features: events.append("scores") or score(features))
    p = engine.predict(encodings(5), output_size=(48, 80), on_labels=lambda labels: events.append(labels.copy()))
    assert len(events) == 2 and events[1] == "scores"
    assert np.array_equal(events[0], p.labels) and all(np.isfinite(c) for c in p.modality_consistency.values())


def test_subsets_scored_from_one_encoder_pass_match_predicting_each_subset_alone(engine):
    from modseg_ros.core.network_input import encode_input

    inputs = {m: encode_input(m, e, engine.input_size) for m, e in encodings(5).items()}
    subsets = [(Modality.CAMERA, Modality.LIDAR, Modality.EVENTS), (Modality.DEPTH, Modality.LIDAR, Modality.EVENTS)]
    prediction, per_subset = engine.predict_scoring_subsets(inputs, (48, 80), subsets, exclude={Modality.DEPTH})
    alone = engine.predict_inputs(inputs, (48, 80), exclude={Modality.DEPTH})
    assert np.array_equal(prediction.labels, alone.labels) and prediction.modality_consistency == pytest.approx(alone.modality_consistency)
    for subset, scores in zip(subsets, per_subset):
        assert scores == pytest.approx(engine.predict_inputs({m: inputs[m] for m in subset}, (8, 16)).modality_consistency, abs=1e-5)


def test_output_size_defaults_to_the_input_grid(engine):
    p = engine.predict({Modality.EVENTS: encodings()[Modality.EVENTS]})
    assert p.labels.shape == (96, 160)
    assert p.modality_weights == {Modality.EVENTS: pytest.approx(1.0)}


def test_zero_fill_feeds_every_modality(engine):
    full = encodings()
    dropped = engine.predict({Modality.CAMERA: full[Modality.CAMERA]})
    filled = engine.predict({Modality.CAMERA: full[Modality.CAMERA]}, absent="zero")
    assert set(filled.modality_weights) == set(MODALITIES)
    assert filled.modalities == (Modality.CAMERA,)
    assert not np.array_equal(dropped.labels, filled.labels)


def test_predict_is_deterministic_and_independent_of_dict_order(engine):
    full = encodings(1)
    a = engine.predict(full)
    b = engine.predict(dict(reversed(list(full.items()))))
    assert np.array_equal(a.labels, b.labels)
    assert a.modality_weights == pytest.approx(b.modality_weights)


def test_predict_rejects_bad_input(engine):
    with pytest.raises(ValueError, match="empty"):
        engine.predict({})
    with pytest.raises(ValueError, match="depth encoding"):
        engine.predict({Modality.DEPTH: np.zeros((8, 8, 3), dtype=np.float32)})
    with pytest.raises(ValueError, match="absent"):
        engine.predict(encodings(), absent="mean")


def test_untrained_weights_depend_only_on_the_seed():
    a = SegmentationEngine.untrained("any2seg", input_size=(64, 128), seed=3)
    state = torch.get_rng_state()
    b = SegmentationEngine.untrained("any2seg", input_size=(64, 128), seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    x = encodings(2)
    assert np.array_equal(a.predict(x).labels, b.predict(x).labels)


def test_labels_equal_upsampled_logits_argmax():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 25, 16, 32, generator=generator) * 3
    expected = upsample(logits, (256, 512)).argmax(dim=1).to(torch.uint8)
    assert torch.equal(labels_at(logits, (256, 512)), expected)
    for trial in range(60):  # any size ratio, either way; smooth fields, noise, exact ties
        b, c, h, w, out_h, out_w = (int(torch.randint(1, n, (1,), generator=generator)) for n in (3, 30, 40, 40, 200, 200))
        logits = torch.randn(b, c, h, w, generator=generator) * 10
        if trial % 3 == 0:
            logits = upsample(torch.randn(b, c, max(h // 4, 1), max(w // 4, 1), generator=generator), (h, w))
        if trial % 4 == 0:
            logits = logits.round()
        # channels-last interpolation (labels_at's) rounds differently from (B, C, H, W): with exact ties
        # the two can pick different classes
        channels_last = logits.contiguous(memory_format=torch.channels_last)
        expected = upsample(channels_last, (out_h, out_w)).argmax(dim=1).to(torch.uint8)
        assert torch.equal(labels_at(logits, (out_h, out_w)), expected), (b, c, h, w, out_h, out_w)


def test_labels_on_a_bounded_grid_are_the_nearest_of_the_grid_labels():
    logits = torch.randn(1, 25, 16, 32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(labels_on_grid(logits, (64, 128), (64, 128)), labels_at(logits, (64, 128)))  # within the grid: exact
    on_grid = labels_at(logits, (64, 128))
    big = labels_on_grid(logits, (1080, 1920), (64, 128))
    assert big.shape == (1, 1080, 1920)
    rows = ((torch.arange(1080) + 0.5) * 64 / 1080).long()
    cols = ((torch.arange(1920) + 0.5) * 128 / 1920).long()
    assert torch.equal(big, on_grid[:, rows][:, :, cols])
    assert labels_on_grid(logits, (1080, 64), (64, 128)).shape == (1, 1080, 64)  # each axis bounded on its own


def test_the_onnx_backends_numpy_labels_equal_the_torch_labels():
    # model/labels.py against model/segmenter.py on logits of any size ratio, either way, and any grid;
    # exact ties (integer logits) may round either way in either, so they are left out here
    generator = torch.Generator().manual_seed(1)
    for trial in range(80):
        b, c, h, w, out_h, out_w, grid_h, grid_w = (int(torch.randint(1, n, (1,), generator=generator))
                                                    for n in (3, 30, 40, 40, 300, 300, 100, 100))  # fmt: skip
        logits = torch.randn(b, c, h, w, generator=generator) * 10
        if trial % 2:  # smooth fields: long class borders, many near-equal scores
            logits = upsample(torch.randn(b, c, max(h // 4, 1), max(w // 4, 1), generator=generator), (h, w))
        size, grid = (out_h, out_w), (grid_h, grid_w)
        assert np.array_equal(numpy_labels.labels_at(logits.numpy(), size), labels_at(logits, size).numpy()), (b, c, h, w, size)
        assert np.array_equal(numpy_labels.labels_on_grid(logits.numpy(), size, grid), labels_on_grid(logits, size, grid).numpy()), \
            (b, c, h, w, size, grid)
