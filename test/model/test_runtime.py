import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modseg_ros.core.types import MODALITIES, Modality, all_subsets
from modseg_ros.model import labels
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.segmenter import upsample


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


def random_logits(generator, trial):
    """float32 logits (B, C, h, w) of any shape; every third trial smooth fields (long class borders,
    many near-equal scores), every fourth rounded to integers (exact ties between interpolated scores)."""
    b, c, h, w = (int(torch.randint(1, n, (1,), generator=generator)) for n in (3, 30, 40, 40))
    logits = torch.randn(b, c, h, w, generator=generator) * 10
    if trial % 3 == 0:
        logits = upsample(torch.randn(b, c, max(h // 4, 1), max(w // 4, 1), generator=generator), (h, w))
    if trial % 4 == 0:
        logits = logits.round()
    return logits.numpy()


def random_size(generator, limit):
    return tuple(int(torch.randint(1, limit, (1,), generator=generator)) for _ in range(2))


def interpolated_everywhere(logits, size):
    """labels_at's definition without its shortcut: every output pixel's interpolated scores (B, H, W, C)."""
    scores = np.ascontiguousarray(logits.transpose(0, 2, 3, 1))
    pixels = np.arange(logits.shape[0] * size[0] * size[1])
    return labels._interpolated(scores, size, pixels).reshape(logits.shape[0], *size, logits.shape[1])


def test_labels_are_the_argmax_of_the_interpolated_scores_ties_included():
    generator = torch.Generator().manual_seed(0)
    for trial in range(60):  # any size ratio, either way; smooth fields, noise, exact ties
        logits, size = random_logits(generator, trial), random_size(generator, 200)
        expected = interpolated_everywhere(logits, size).argmax(axis=-1).astype(np.uint8)
        assert np.array_equal(labels.labels_at(logits, size), expected), (logits.shape, size)


def test_labels_equal_the_argmax_of_torchs_interpolation_but_at_exact_ties():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 25, 16, 32, generator=generator) * 3
    expected = upsample(logits, (256, 512)).argmax(dim=1).to(torch.uint8).numpy()
    assert np.array_equal(labels.labels_at(logits.numpy(), (256, 512)), expected)
    ties, pixels = 0, 0
    for trial in range(60):
        logits, size = random_logits(generator, trial), random_size(generator, 200)
        for layout in (torch.contiguous_format, torch.channels_last):
            # torch sums the four terms in another order (by memory layout and instruction set), so
            # at an exact tie between two interpolated scores it may pick the other class
            scores = upsample(torch.from_numpy(logits).contiguous(memory_format=layout), size)
            top_two = scores.topk(min(2, scores.shape[1]), dim=1).values
            tied = (top_two[:, 0] - top_two[:, -1] <= 1e-5 * (1 + np.abs(logits).max())).numpy() & (logits.shape[1] > 1)
            differ = labels.labels_at(logits, size) != scores.argmax(dim=1).to(torch.uint8).numpy()
            assert not (differ & ~tied).any(), (trial, logits.shape, size, layout)
            ties, pixels = ties + int(differ.sum()), pixels + differ.size
    assert ties < 1e-3 * pixels


def nearest(grid_labels, size):
    return F.interpolate(torch.from_numpy(grid_labels).float()[:, None], size=size, mode="nearest-exact")[:, 0].to(torch.uint8).numpy()


def test_labels_on_a_bounded_grid_are_the_nearest_of_the_grid_labels():
    logits = torch.randn(1, 25, 16, 32, generator=torch.Generator().manual_seed(5)).numpy()
    on_grid = labels.labels_at(logits, (64, 128))
    assert np.array_equal(labels.labels_on_grid(logits, (64, 128), (64, 128)), on_grid)  # within the grid: exact
    big = labels.labels_on_grid(logits, (1080, 1920), (64, 128))
    assert big.shape == (1, 1080, 1920) and big.dtype == np.uint8
    assert np.array_equal(big, nearest(on_grid, (1080, 1920)))
    assert labels.labels_on_grid(logits, (1080, 64), (64, 128)).shape == (1, 1080, 64)  # each axis bounded on its own
    generator = torch.Generator().manual_seed(1)
    for trial in range(40):  # any grid, larger or smaller than the output on either axis
        logits, size, grid = random_logits(generator, trial), random_size(generator, 300), random_size(generator, 100)
        small = labels.labels_at(logits, (min(size[0], grid[0]), min(size[1], grid[1])))
        assert np.array_equal(labels.labels_on_grid(logits, size, grid), nearest(small, size)), (logits.shape, size, grid)
