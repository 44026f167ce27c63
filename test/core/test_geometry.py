import numpy as np
import pytest

from modseg_ros.core.geometry import (
    OPTICAL_FROM_BODY,
    Intrinsics,
    Transform,
    quaternion_from_rotation,
    rotation_from_quaternion,
    rotation_from_rpy,
)


def test_rpy_matches_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for roll, pitch, yaw in rng.uniform(-3, 3, size=(50, 3)):
        r = rotation_from_rpy(roll, pitch, yaw)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.allclose(rotation_from_quaternion(quaternion_from_rotation(r)), r, atol=1e-9)


def test_yaw_turns_x_into_y():
    t = Transform.from_xyz_rpy([1.0, 2.0, 3.0], [0.0, 0.0, np.pi / 2])
    assert np.allclose(t.apply(np.array([[1.0, 0.0, 0.0]])), [[1.0, 3.0, 3.0]], atol=1e-6)
    assert np.allclose((t.inverse() @ t).matrix, np.eye(4))


def test_optical_frame_looks_forward():
    forward_body = np.array([[5.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    optical = OPTICAL_FROM_BODY.apply(forward_body)
    assert np.allclose(optical, [[0, 0, 5], [-1, 0, 0], [0, -1, 0]])


def test_projection_of_pixel_rays_lands_on_the_pixel():
    intr = Intrinsics.from_fov(64, 32, 90.0)
    rays = intr.pixel_rays().reshape(-1, 3) * 7.5
    u, v, idx = intr.project(rays)
    assert len(idx) == 64 * 32
    uu, vv = np.meshgrid(np.arange(64), np.arange(32))
    assert np.array_equal(u, uu.ravel()) and np.array_equal(v, vv.ravel())


def test_projection_drops_points_behind_and_outside():
    intr = Intrinsics.from_fov(10, 10, 60.0)
    pts = np.array([[0, 0, -1], [0, 0, 1], [100, 0, 1]], dtype=np.float32)
    _, _, idx = intr.project(pts)
    assert idx.tolist() == [1]


@pytest.mark.parametrize("w,h", [(32, 16), (128, 64)])
def test_scaled_intrinsics_keep_the_field_of_view(w, h):
    intr = Intrinsics.from_fov(64, 32, 90.0).scaled(w, h)
    assert np.isclose(2 * np.degrees(np.arctan(intr.width / 2 / intr.fx)), 90.0)
