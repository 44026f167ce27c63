import numpy as np
import pytest

from modseg_ros.core.network_input import IMAGENET_MEAN, IMAGENET_STD, _block_reduce, _block_starts, prepare, resize_encoding
from modseg_ros.core.types import MODALITIES, Modality


def test_lidar_downscale_keeps_the_nearest_point_whole():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[0, 0] = (100, 10, 20)  # far point
    image[1, 1] = (200, 30, 40)  # near point, same 2×2 block
    image[2, 3] = (50, 60, 70)  # alone in its block
    out = resize_encoding(Modality.LIDAR, image, (2, 2))
    assert np.allclose(out[0, 0] * 255, (200, 30, 40))  # one real return, not a blend
    assert np.allclose(out[1, 1] * 255, (50, 60, 70))  # not faded by the empty pixels
    assert np.all(out[0, 1] == 0) and np.all(out[1, 0] == 0)


def test_depth_downscale_ignores_invalid_pixels():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = (100, 50, 200)
    image[1, 1] = (120, 70, 220)
    out = resize_encoding(Modality.DEPTH, image, (1, 1))
    assert np.allclose(out[0, 0] * 255, (110, 60, 210))


def test_event_counts_add_up_and_recency_keeps_the_newest():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = (64, 0, 100)
    image[1, 0] = (64, 128, 250)
    out = resize_encoding(Modality.EVENTS, image, (1, 1))
    assert np.allclose(out[0, 0] * 255, (128, 128, 250))
    image[:, :, 1] = 255
    assert resize_encoding(Modality.EVENTS, image, (1, 1))[0, 0, 1] == 1.0  # clipped


def test_camera_downscale_is_the_block_mean_and_enlarging_repeats_pixels():
    image = np.arange(16 * 3, dtype=np.uint8).reshape(4, 4, 3)
    out = resize_encoding(Modality.CAMERA, image, (2, 2))
    assert np.allclose(out * 255, image.reshape(2, 2, 2, 2, 3).mean(axis=(1, 3)))
    big = resize_encoding(Modality.CAMERA, image, (8, 8))
    assert np.allclose(big * 255, image.repeat(2, axis=0).repeat(2, axis=1))


def test_prepare_drops_absent_modalities_or_zero_fills_them():
    rng = np.random.default_rng(0)
    encoded = {m: rng.integers(0, 256, (16, 32, 3), dtype=np.uint8) for m in (Modality.CAMERA, Modality.LIDAR)}
    images, index = prepare(encoded, (8, 16))
    assert images.shape == (2, 3, 8, 16) and index.tolist() == [0, 2]
    rgb = encoded[Modality.CAMERA].reshape(8, 2, 16, 2, 3).mean(axis=(1, 3)) / 255
    assert np.allclose(images[0], ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1), atol=1e-5)
    filled, index = prepare(encoded, (8, 16), zero_fill=True)
    assert index.tolist() == [0, 1, 2, 3] and len(MODALITIES) == 4
    assert np.all(filled[1] == 0) and np.all(filled[3] == 0) and np.allclose(filled[2], images[1])


def test_prepare_rejects_empty_and_malformed_inputs():
    with pytest.raises(ValueError, match="empty"):
        prepare({}, (8, 16))
    with pytest.raises(ValueError, match="lidar encoding must be an H×W×3 uint8"):
        prepare({Modality.LIDAR: np.zeros((16, 32), dtype=np.float32)}, (8, 16))



@pytest.mark.parametrize("shape", [(256, 512), (250, 500), (37, 91), (64, 100)])
def test_block_reduce_gives_what_reduceat_gives(shape):
    """The strided fast path (an axis that divides evenly) and reduceat (any ratio) agree exactly."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    image[rng.random(shape) < 0.3] = 0  # holes, as invalid depth and empty LiDAR pixels
    for size in [(64, 128), (32, 50), (100, 200), shape]:
        rows, cols = (_block_starts(n, m) for n, m in zip(shape, size))
        for ufunc, x in [(np.add, image.astype(np.float32)), (np.maximum, image.astype(np.uint32) << 8)]:
            expected = ufunc.reduceat(ufunc.reduceat(x, rows, axis=0), cols, axis=1)
            got = _block_reduce(ufunc, x, size)
            assert got.dtype == expected.dtype and np.array_equal(got, expected), (ufunc, size)
