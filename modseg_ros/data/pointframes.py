"""Real camera + LiDAR frames with point labels: an image, the scan taken with it, the calibration
between them and optionally one label per scan point (SemanticKITTI's layout and formats).

A mapping YAML (``config/datasets/semantickitti.yaml``, ``rellis3d.yaml``) extends the camera
datasets' one (data/labelled.py) with where the scan and the calibration are::

    images: "sequences/*/image_2/*.png"
    scans: [["image_2/", "velodyne/"], [".png", ".bin"]]   # float32 x, y, z, intensity per point
    labels: [["image_2/", "labels/"], [".png", ".label"]]  # uint32 per point, lower 16 bits = class id
    calib: calib.txt        # in the image folder's parent (the sequence folder)
    camera: P2              # calib key of the image's 3×4 projection matrix; Tr maps LiDAR -> camera
    lidar_height_m: 1.73    # the LiDAR above the ground (the LiDAR encoding's height channel)

Frames without a label file are read (their panels still show), but are not scored. A missing scan,
a calibration without a usable key, or a label file whose count differs from the scan's stops with
one line naming the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modseg_ros.core.geometry import Intrinsics, Rig, Transform
from modseg_ros.core.types import Modality, PointCloud
from modseg_ros.data.deliver import read_png
from modseg_ros.data.labelled import LabelMapping, load_mapping, mapping_path, read_mapping_yaml
from modseg_ros.errors import DatasetError

LABEL_IDS = 1 << 16  # SemanticKITTI: the lower 16 bits of a label are the class, the upper the instance


@dataclass(frozen=True)
class PointMapping:
    classes: LabelMapping  # images glob, label replacements, classes
    scans: tuple[tuple[str, str], ...]
    calib: str
    camera: str
    lidar_height_m: float


@dataclass(frozen=True, eq=False)
class PointFrame:
    name: str  # the image's path relative to the root
    rgb: np.ndarray  # H×W×3 uint8
    cloud: PointCloud  # LiDAR frame, points without a return dropped
    rig: Rig  # the image's intrinsics; camera and LiDAR poses in a level base frame on the ground
    labels: np.ndarray | None  # per point of ``cloud``: class index 0..C-1, 255 = ignore; None = unlabelled


def is_point_mapping(name_or_path: str | Path) -> bool:
    """Whether a mapping describes camera + LiDAR frames (it says where the scans are)."""
    return "scans" in read_mapping_yaml(mapping_path(name_or_path))


def load_point_mapping(name_or_path: str | Path) -> PointMapping:
    path = mapping_path(name_or_path)
    doc = read_mapping_yaml(path)
    for key in ("scans", "calib", "camera", "lidar_height_m"):
        if key not in doc:
            raise DatasetError(f"dataset mapping {path}: missing key '{key}'")
    scans = doc["scans"]
    if not (isinstance(scans, list) and scans and all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in scans)):
        raise DatasetError(f"dataset mapping {path}: 'scans' must be a list of [old, new] replacements that turn an image path into its scan path")
    height = doc["lidar_height_m"]
    if not isinstance(height, (int, float)) or isinstance(height, bool):
        raise DatasetError(f"dataset mapping {path}: 'lidar_height_m' must be a number (metres), got {height!r}")
    return PointMapping(load_mapping(path, max_id=LABEL_IDS - 1), tuple((a, b) for a, b in scans), str(doc["calib"]),
                        str(doc["camera"]), float(height))  # fmt: skip


def read_calib(path: Path, camera: str) -> tuple[np.ndarray, np.ndarray]:
    """KITTI odometry calib.txt -> (the ``camera`` key's 3×4 projection P, Tr as 4×4 LiDAR -> camera 0)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read calibration {path}: {err.strerror or err}") from err
    values = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()]) if sep else None
        except ValueError:
            raise DatasetError(f"calibration {path}, line {number}: '{key.strip()}' holds a value that is not a number") from None
    matrices = []
    for key in (camera, "Tr"):
        value = values.get(key)
        if value is None or value.size != 12 or not np.isfinite(value).all():
            found = "missing" if value is None else f"{value.size} values"
            raise DatasetError(f"calibration {path}: key '{key}' needs 12 finite numbers (a 3×4 matrix), {found}")
        matrices.append(value.reshape(3, 4))
    p, tr = matrices
    if abs(p[0, 1]) > 1e-9 or p[1, 0] or p[2, 0] or p[2, 1] or p[2, 2] != 1 or p[0, 0] <= 0 or p[1, 1] <= 0:
        raise DatasetError(f"calibration {path}: '{camera}' is not a pinhole projection [fx 0 cx tx; 0 fy cy ty; 0 0 1 tz]")
    return p, np.vstack([tr, [0.0, 0.0, 0.0, 1.0]])


def frame_rig(p: np.ndarray, tr: np.ndarray, width: int, height: int, lidar_height_m: float) -> Rig:
    """The rig of one frame: P = K [I | t] (t: the rectified camera's offset from camera 0), so the
    camera sees LiDAR points through [I | t] · Tr; the base frame lies level under the LiDAR."""
    k = p[:, :3]
    offset = np.linalg.solve(k, p[:, 3])
    camera_from_lidar = Transform.from_rotation_translation(np.eye(3), offset) @ Transform(tr)
    base_from_lidar = Transform.from_rotation_translation(np.eye(3), [0.0, 0.0, lidar_height_m])
    camera = Intrinsics(width, height, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    return Rig(camera, {Modality.LIDAR: base_from_lidar, Modality.CAMERA: base_from_lidar @ camera_from_lidar.inverse()})


class PointFrameDataset:
    """Every image of a camera + LiDAR dataset, with its scan, calibration and point labels."""

    def __init__(self, root: str | Path, mapping: PointMapping | str | Path) -> None:
        self.root = Path(root)
        self.mapping = mapping if isinstance(mapping, PointMapping) else load_point_mapping(mapping)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        pattern = self.mapping.classes.images
        self.images = sorted(self.root.glob(pattern))
        if not self.images:
            raise DatasetError(f"no images in {self.root}/{pattern} ({self.mapping.classes.name})")
        self._index_lut = self.mapping.classes.index_lut(LABEL_IDS)
        self._known = self.mapping.classes.known_ids(LABEL_IDS)

    def __len__(self) -> int:
        return len(self.images)

    def _replaced(self, image: Path, replacements: tuple[tuple[str, str], ...]) -> Path:
        rel = str(image.relative_to(self.root))
        for old, new in replacements:
            if old not in rel:
                raise DatasetError(f"{image}: its path has no '{old}' to replace ({self.mapping.classes.source})")
            rel = rel.replace(old, new, 1)
        return self.root / rel

    def __getitem__(self, index: int) -> PointFrame:
        image = self.images[index]
        rgb = read_png(image)
        scan_path = self._replaced(image, self.mapping.scans)
        if not scan_path.is_file():
            raise DatasetError(f"{image}: scan {scan_path} is missing")
        raw = np.fromfile(scan_path, dtype=np.float32)
        if raw.size % 4:
            raise DatasetError(f"scan {scan_path}: {scan_path.stat().st_size} bytes is not a whole number of points (x, y, z, intensity as float32)")
        scan = raw.reshape(-1, 4)
        labels = self._labels(image, len(scan))
        returned = np.abs(scan[:, :3]).sum(axis=1) > 0  # organised scans (Ouster) store beams without a return as 0, 0, 0
        p, tr = read_calib(image.parent.parent / self.mapping.calib, self.mapping.camera)
        rig = frame_rig(p, tr, rgb.shape[1], rgb.shape[0], self.mapping.lidar_height_m)
        cloud = PointCloud(np.ascontiguousarray(scan[returned, :3]), np.ascontiguousarray(scan[returned, 3]))
        return PointFrame(str(image.relative_to(self.root)), rgb, cloud, rig, None if labels is None else labels[returned])

    def _labels(self, image: Path, points: int) -> np.ndarray | None:
        path = self._replaced(image, self.mapping.classes.labels)
        if not path.is_file():
            return None
        raw = np.fromfile(path, dtype=np.uint32)
        if path.stat().st_size % 4 or len(raw) != points:
            raise DatasetError(f"labels {path}: {path.stat().st_size / 4:g} labels for a scan of {points} points")
        ids = raw & (LABEL_IDS - 1)
        unknown = ~self._known[ids]
        if unknown.any():
            raise DatasetError(f"labels {path}: id {int(ids[unknown][0])} is neither a class nor ignored in {self.mapping.classes.source}")
        return self._index_lut[ids]
