"""Rig geometry: pinhole intrinsics, rigid transforms, projection. numpy only.

Frames (REP 103): the vehicle ``base_link`` has x forward, y left, z up, origin on the ground; a
LiDAR frame is oriented the same way; a camera *optical* frame has x right, y down, z forward.
``Transform`` maps points from a source frame into a target frame: ``T_target_from_source``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from modseg_ros.core.types import Modality


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera without distortion (sensor_msgs/CameraInfo K, image size)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(width, height, f, f, width / 2.0, height / 2.0)

    @classmethod
    def from_k(cls, k: Sequence[float], width: int, height: int) -> Intrinsics:
        """From a row-major 3×3 K (CameraInfo.k)."""
        return cls(int(width), int(height), float(k[0]), float(k[4]), float(k[2]), float(k[5]))

    @property
    def k(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera at another resolution (pixel-centre convention: edges stay edges)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def project(self, points: np.ndarray, min_depth: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Camera-frame N×3 points -> integer pixel (u, v) and depth z of the points in the image.

        Returns (u, v, index) where index selects the input points that land inside the image.
        """
        z = points[:, 2]
        front = z > min_depth  # NaN is not in front
        zf = np.where(front, z, 1.0)
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite or huge points land nowhere
            u = self.fx * points[:, 0] / zf + self.cx
            v = self.fy * points[:, 1] / zf + self.cy
        inside = front & (u >= 0) & (u < self.width) & (v >= 0) & (v < self.height)
        index = np.flatnonzero(inside)
        return np.floor(u[index]).astype(np.int64), np.floor(v[index]).astype(np.int64), index

    def pixel_rays(self) -> np.ndarray:
        """H×W×3 camera-frame ray directions with z = 1 through each pixel centre."""
        u = (np.arange(self.width) + 0.5 - self.cx) / self.fx
        v = (np.arange(self.height) + 0.5 - self.cy) / self.fy
        uu, vv = np.meshgrid(u, v)
        return np.stack([uu, vv, np.ones_like(uu)], axis=-1)

    def to_dict(self) -> dict[str, float]:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Transform:
    """Rigid transform T_target_from_source as a 4×4 matrix."""

    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))

    @classmethod
    def from_rotation_translation(cls, rotation: np.ndarray, translation: Sequence[float]) -> Transform:
        m = np.eye(4)
        m[:3, :3] = rotation
        m[:3, 3] = translation
        return cls(m)

    @classmethod
    def from_xyz_rpy(cls, xyz: Sequence[float], rpy: Sequence[float]) -> Transform:
        """Translation plus roll, pitch, yaw in radians (fixed axes X, Y, Z, as URDF and tf2)."""
        return cls.from_rotation_translation(rotation_from_rpy(*rpy), xyz)

    @classmethod
    def from_xyz_quaternion(cls, xyz: Sequence[float], xyzw: Sequence[float]) -> Transform:
        return cls.from_rotation_translation(rotation_from_quaternion(xyzw), xyz)

    @property
    def rotation(self) -> np.ndarray:
        return self.matrix[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:3, 3]

    def quaternion(self) -> np.ndarray:
        """Rotation as (x, y, z, w)."""
        return quaternion_from_rotation(self.rotation)

    def inverse(self) -> Transform:
        r = self.rotation.T
        return Transform.from_rotation_translation(r, -r @ self.translation)

    def __matmul__(self, other: Transform) -> Transform:
        return Transform(self.matrix @ other.matrix)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """N×3 points in the source frame -> N×3 float32 points in the target frame (axis-major in
        memory: ``rotate_points``)."""
        planes = _rotated_planes(points, self.rotation)
        for axis, offset in enumerate(self.translation.astype(np.float32)):
            planes[axis] += offset  # (one contiguous add per axis: an N×3 += 3-vector runs rows of 3)
        return np.moveaxis(planes, 0, -1)

    def is_identity(self, atol: float = 1e-9) -> bool:
        return bool(np.allclose(self.matrix, np.eye(4), atol=atol))

    def to_dict(self) -> dict[str, list[float]]:
        return {"xyz": self.translation.tolist(), "quaternion_xyzw": self.quaternion().tolist()}


def rotate_points(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """N×3 points (or directions) rotated by a 3×3 matrix, as float32.

    One matrix-vector product per output axis: an N×3 @ 3×3 matrix product goes through BLAS
    gemm, which is 20-50× slower for this shape (and worse when other processes load the cores).
    Each axis is written to its own contiguous plane (a product into every third float is twice
    as slow), so the result is an axis-major view: the same values, columns contiguous."""
    return np.moveaxis(_rotated_planes(points, rotation), 0, -1)


def _rotated_planes(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``rotate_points`` as 3×N planes (3×... for points of any leading shape)."""
    p = np.asarray(points, dtype=np.float32)
    r = np.asarray(rotation, dtype=np.float32)
    out = np.empty((3, *p.shape[:-1]), np.float32)
    for axis in range(3):
        np.matmul(p, r[axis], out=out[axis])
    return out


def dot3(points: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``points @ vector`` for N×3 float32 points, as float32, column by column: on a cloud's view
    over its message (point_step 18 or 22 bytes: unaligned rows) matmul falls back to a scalar
    loop 10-30× slower than this."""
    v = np.asarray(vector, dtype=np.float32)
    out = points[:, 0] * v[0]
    out += points[:, 1] * v[1]
    out += points[:, 2] * v[2]
    return out


def rotation_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_from_quaternion(xyzw: Sequence[float]) -> np.ndarray:
    x, y, z, w = np.asarray(xyzw, dtype=np.float64) / np.linalg.norm(xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def quaternion_from_rotation(r: np.ndarray) -> np.ndarray:
    """3×3 rotation -> (x, y, z, w) with w ≥ 0."""
    m = r
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


# Optical frame (x right, y down, z forward) relative to a body-aligned frame (x forward, y left, z up).
OPTICAL_FROM_BODY = Transform.from_rotation_translation(
    np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), [0.0, 0.0, 0.0]
)


@dataclass(frozen=True, eq=False)
class Rig:
    """Sensor calibration: camera intrinsics and every sensor's pose in ``base_link``.

    ``base_from`` maps each modality's frame (the frame_id of its messages) into base_link; the
    camera entry is the camera *optical* frame. Depth and event cameras that have intrinsics of
    their own list them in ``intrinsics``; otherwise they share the camera's.
    """

    camera: Intrinsics
    base_from: Mapping[Modality, Transform]
    intrinsics: Mapping[Modality, Intrinsics] = field(default_factory=dict)
    frame_ids: Mapping[Modality, str] = field(default_factory=dict)

    def camera_from(self, modality: Modality) -> Transform:
        """T_camera_optical_from_<modality>."""
        return self.base_from[Modality.CAMERA].inverse() @ self.base_from[modality]

    def intrinsics_of(self, modality: Modality) -> Intrinsics:
        return self.intrinsics.get(modality, self.camera)

    def with_camera(self, camera: Intrinsics) -> Rig:
        """The same rig with the camera intrinsics replaced (e.g. from a CameraInfo message)."""
        return Rig(camera, self.base_from, self.intrinsics, self.frame_ids)
