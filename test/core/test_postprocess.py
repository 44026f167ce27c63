"""Colour mask, overlay (camera or fallback renderings) and labelled LiDAR points."""
import numpy as np
import pytest

from modseg_ros.core.geometry import OPTICAL_FROM_BODY, Intrinsics, Rig, Transform
from modseg_ros.core.palette import IGNORE, PALETTE
from modseg_ros.core.postprocess import LABELLED_POINT, UNLABELLED_RGB, color_mask, labelled_points, overlay_image
from modseg_ros.core.types import Modality, PointCloud


def make_rig(width=8, height=4):
    camera = Transform.from_xyz_rpy([0.0, 0.0, 1.5], [0.0, 0.0, 0.0]) @ OPTICAL_FROM_BODY.inverse()
    lidar = Transform.from_xyz_rpy([0.0, 0.0, 1.5], [0.0, 0.0, 0.0])
    return Rig(Intrinsics.from_fov(width, height, 90.0),
               {Modality.CAMERA: camera, Modality.DEPTH: camera, Modality.EVENTS: camera, Modality.LIDAR: lidar})  # fmt: skip


def test_color_mask_uses_the_palette_and_blacks_out_ignore():
    labels = np.array([[0, 6, IGNORE], [24, 12, 3]], np.uint8)
    colours = color_mask(labels)
    assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
    assert (colours[0, 1] == PALETTE[6]).all() and (colours[0, 2] == 0).all() and (colours[1, 0] == PALETTE[24]).all()


def test_overlay_is_drawn_on_the_camera_when_present_and_on_depth_lidar_events_otherwise():
    labels = np.full((4, 8), 6, np.uint8)
    camera = np.full((4, 8, 3), 200, np.uint8)
    depth = np.zeros((4, 8, 3), np.uint8)
    depth[..., 0] = 100  # range code channel
    lidar = np.zeros((4, 8, 3), np.uint8)
    lidar[2, 3, 0] = 250  # one projected point
    events = np.zeros((4, 8, 3), np.uint8)
    events[1, 1] = (0, 255, 200)
    cases = [
        ({Modality.CAMERA: camera, Modality.DEPTH: depth, Modality.LIDAR: lidar}, Modality.CAMERA, camera),
        ({Modality.DEPTH: depth, Modality.LIDAR: lidar}, Modality.DEPTH, np.repeat(depth[..., :1], 3, axis=2)),
        ({Modality.LIDAR: lidar, Modality.EVENTS: events}, Modality.LIDAR, None),
        ({Modality.EVENTS: events}, Modality.EVENTS, events),
    ]
    for encoded, source, background in cases:
        modality, image = overlay_image(labels, encoded, alpha=0.5)
        assert modality is source and image.shape == (4, 8, 3)
        if background is not None:
            expected = np.rint(background.astype(np.float32) * 0.5 + PALETTE[6].astype(np.float32) * 0.5)
            assert np.array_equal(image, expected.astype(np.uint8))
    _, lidar_overlay = overlay_image(labels, {Modality.LIDAR: lidar}, alpha=0.0)
    # the sparse point is dilated into a 5×5 patch (clipped at the border) so it shows
    assert (lidar_overlay[..., 0] == 250).sum() == 5 * 4 and lidar_overlay[0, 7, 0] == 0
    with pytest.raises(ValueError):
        overlay_image(labels, {}, 0.5)


def test_labelled_points_take_the_class_of_their_pixel_in_the_camera_frame():
    rig = make_rig()
    labels = np.arange(32, dtype=np.uint8).reshape(4, 8) % 25
    # LiDAR frame: x forward, y left, z up, at the camera's position
    pts = np.array([[10.0, 0.0, 0.0], [10.0, 9.0, -4.0], [-5.0, 0.0, 0.0], [np.nan, 0.0, 0.0]], np.float32)
    cloud = PointCloud(points=pts, intensity=np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    out = labelled_points(cloud, labels, rig)
    assert out.dtype == LABELLED_POINT and len(out) == 3  # the NaN point is dropped
    # straight ahead: optical (0, 0, 10) -> pixel (4, 2); left-down: optical (-9, 4, 10) -> (0, 3)
    assert np.allclose([out["x"][0], out["y"][0], out["z"][0]], [0.0, 0.0, 10.0], atol=1e-5)
    assert out["label"].tolist() == [labels[2, 4], labels[3, 0], IGNORE]
    rgb = out["rgb"].view(np.uint32)
    unpack = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1)
    assert (unpack[0] == PALETTE[labels[2, 4]]).all() and tuple(unpack[2]) == UNLABELLED_RGB
    assert np.allclose(out["intensity"], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="camera grid"):
        labelled_points(cloud, labels[:2], rig)
