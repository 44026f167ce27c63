"""From a label mask to what the node publishes: colour mask, overlay, labelled LiDAR points.

The overlay is drawn over the camera image when the camera is in the bundle; otherwise over a
rendering of the best modality present (depth, then LiDAR, then events), so the picture in RViz
keeps meaning something while the camera is down.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from modseg_ros.core.encoding import resize_nearest
from modseg_ros.core.geometry import Rig
from modseg_ros.core.palette import IGNORE, colorize, overlay
from modseg_ros.core.types import MODALITIES, Modality, PointCloud

# PointCloud2 layout of segmentation/points: RViz's RGB8 colour transformer reads "rgb" as packed
# 0x00RRGGBB in a float32, as PCL writes it.
LABELLED_POINT = np.dtype({
    "names": ["x", "y", "z", "intensity", "label", "rgb"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "u1", "<f4"],
    "offsets": [0, 4, 8, 12, 16, 20],
    "itemsize": 24,
})  # fmt: skip
UNLABELLED_RGB = (128, 128, 128)  # points outside the camera's view


def color_mask(labels: np.ndarray) -> np.ndarray:
    """H×W class ids -> H×W×3 rgb8 in the DELIVER palette (ignore = black)."""
    return colorize(labels)


def _dilate(image: np.ndarray, radius: int) -> np.ndarray:
    """Grey-level dilation with a (2r+1)² square, so sparse projected points become visible."""
    out = image.copy()
    h, w = image.shape[:2]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            src = image[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            dst = out[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
            np.maximum(dst, src, out=dst)
    return out


def overlay_background(encoded: Mapping[Modality, np.ndarray]) -> tuple[Modality, np.ndarray]:
    """The image the overlay is drawn on and the modality it comes from.

    Camera: the image itself. Depth and LiDAR: their range channel as grey (near is bright), LiDAR
    dilated to fill between points. Events: the rendered event frame.
    """
    for modality in MODALITIES:
        if modality not in encoded:
            continue
        image = encoded[modality]
        if modality is Modality.CAMERA or modality is Modality.EVENTS:
            return modality, image
        grey = image[..., 0]
        if modality is Modality.LIDAR:
            grey = _dilate(grey, 2)
        return modality, np.repeat(grey[..., None], 3, axis=2)
    raise ValueError("no modality to draw the overlay on")


def overlay_image(labels: np.ndarray, encoded: Mapping[Modality, np.ndarray], alpha: float) -> tuple[Modality, np.ndarray]:
    """Colour mask blended over the background of ``overlay_background`` (an encoding on a coarser
    processing grid is enlarged to the mask's grid, nearest)."""
    modality, background = overlay_background(encoded)
    if background.shape[:2] != labels.shape:
        background = resize_nearest(background, *labels.shape)
    return modality, overlay(background, labels, alpha)


def labelled_points(cloud: PointCloud, labels: np.ndarray, rig: Rig) -> np.ndarray:
    """The LiDAR points in the camera optical frame, each with the class of the mask pixel it
    projects to (IGNORE outside the image) and the palette colour; points without a return are dropped."""
    finite = np.isfinite(cloud.points).all(axis=1)
    points = rig.camera_from(Modality.LIDAR).apply(cloud.points[finite])
    intensity = cloud.intensity[finite]
    cam = rig.camera
    if labels.shape != (cam.height, cam.width):
        raise ValueError(f"mask {labels.shape} is not on the camera grid {(cam.height, cam.width)}")
    point_labels = np.full(len(points), IGNORE, dtype=np.uint8)
    u, v, index = cam.project(points)
    point_labels[index] = labels[v, u]
    rgb = colorize(point_labels).astype(np.uint32)
    rgb[point_labels == IGNORE] = UNLABELLED_RGB
    out = np.empty(len(points), dtype=LABELLED_POINT)
    out["x"], out["y"], out["z"] = points[:, 0], points[:, 1], points[:, 2]
    out["intensity"] = intensity
    out["label"] = point_labels
    out["rgb"] = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).view(np.float32)
    return out
