"""The processing grid (core/perception.py): a large camera is encoded on a grid bounded by the network
input, the mask still comes out on the camera's own grid, with the real shipped network."""
import gc
import weakref

import numpy as np

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.geometry import Intrinsics
from modseg_ros.core.perception import Perception, processing_camera
from modseg_ros.core.types import Bundle, CameraFrame, Modality, PointCloud, SensorSample
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.paths import model_file

FULL_HD = Intrinsics.from_fov(1920, 1080, 90.0)


def test_the_processing_grid_keeps_the_view_and_bounds_the_pixels():
    grid = processing_camera(FULL_HD, (64, 128), 4.0)
    assert (grid.width, grid.height) == (455, 256)
    assert abs(grid.fx / grid.width - FULL_HD.fx / FULL_HD.width) < 1e-3  # same field of view
    small = Intrinsics.from_fov(512, 256, 90.0)
    assert processing_camera(small, (64, 128), 4.0) == small  # no larger than the bound: the camera itself
    assert processing_camera(FULL_HD, (64, 128), 0.0) == FULL_HD  # 0: the camera grid


def test_a_1080p_bundle_is_encoded_small_and_masked_at_full_resolution():
    config = NodeConfig.from_parameters({"rig.camera.width": 1920, "rig.camera.height": 1080})
    engine = SegmentationEngine.load(model_file("any2seg_b0.safetensors"), threads=1)
    perception = Perception(config, engine)
    assert (perception.processing_rig.camera.width, perception.processing_rig.camera.height) == (455, 256)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    points = rng.uniform([2, -10, -2], [40, 10, 3], (20000, 3)).astype(np.float32)
    samples = {
        Modality.CAMERA: SensorSample(Modality.CAMERA, 10, 10, "camera_optical", CameraFrame(image)),
        Modality.LIDAR: SensorSample(Modality.LIDAR, 10, 10, "lidar", PointCloud(points, rng.random(20000).astype(np.float32))),
    }
    seg = perception.segment(Bundle(10, Modality.CAMERA, samples, frozenset(), 10))
    assert seg.labels.shape == (1080, 1920) and seg.rig.camera == config.rig.camera
    assert seg.encoded[Modality.CAMERA].shape == (256, 455, 3) and seg.encoded[Modality.LIDAR].shape == (256, 455, 3)
    # the camera is area-averaged, not sampled: its mean survives
    assert abs(float(seg.encoded[Modality.CAMERA].mean()) - float(image.mean())) < 1.0
    rendering = perception.render(seg)
    assert rendering.overlay.shape == (1080, 1920, 3) and rendering.color.shape == (1080, 1920, 3)
    assert rendering.overlay_source is Modality.CAMERA


def test_encoded_samples_are_not_kept_alive_by_the_encodings_cache():
    # a 1080p image is 6 MB: once the synchronizer and the worker let go of a sample, its encoding
    # must not hold it (the cache keeps four per sensor)
    config = NodeConfig.from_parameters({"rig.camera.width": 1920, "rig.camera.height": 1080})
    perception = Perception(config, SegmentationEngine.load(model_file("any2seg_b0.safetensors"), threads=1))
    image = np.random.default_rng(1).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    sample = SensorSample(Modality.CAMERA, 10, 10, "camera_optical", CameraFrame(image))
    first = perception.encode(sample)
    assert perception.encode(sample) is first  # encoded once
    alive = weakref.ref(sample)
    del sample
    gc.collect()
    assert alive() is None and perception.backlog()["encodings_cached"] == 1
