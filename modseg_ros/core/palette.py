"""The 25 DELIVER classes in DELIVER's order and colours (jamycheung/DELIVER, semseg/datasets/deliver.py).

Label images hold these ids (0..24); ``IGNORE`` (255) marks pixels without a label.
"""
from __future__ import annotations

import numpy as np

CLASSES: tuple[str, ...] = (
    "Building", "Fence", "Other", "Pedestrian", "Pole", "RoadLine", "Road", "SideWalk",
    "Vegetation", "Cars", "Wall", "TrafficSign", "Sky", "Ground", "Bridge", "RailTrack",
    "GroundRail", "TrafficLight", "Static", "Dynamic", "Water", "Terrain", "TwoWheeler", "Bus",
    "Truck",
)  # fmt: skip

PALETTE = np.array(
    [
        (70, 70, 70), (100, 40, 40), (55, 90, 80), (220, 20, 60), (153, 153, 153),
        (157, 234, 50), (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142),
        (102, 102, 156), (220, 220, 0), (70, 130, 180), (81, 0, 81), (150, 100, 100),
        (230, 150, 140), (180, 165, 180), (250, 170, 30), (110, 190, 160), (170, 120, 50),
        (45, 60, 150), (145, 170, 100), (0, 0, 230), (0, 60, 100), (0, 0, 70),
    ],
    dtype=np.uint8,
)  # fmt: skip

NUM_CLASSES = len(CLASSES)
IGNORE = 255
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}

# Colour of IGNORE pixels in colour masks.
_LUT = np.zeros((256, 3), dtype=np.uint8)
_LUT[:NUM_CLASSES] = PALETTE


def colorize(labels: np.ndarray) -> np.ndarray:
    """H×W uint8 class ids -> H×W×3 uint8 RGB colours (ignore and unknown ids are black)."""
    return _LUT[labels]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour mask over an H×W×3 uint8 image; ignore pixels keep the image."""
    colour = colorize(labels).astype(np.float32)
    blended = image.astype(np.float32) * (1.0 - alpha) + colour * alpha
    keep = (labels >= NUM_CLASSES)[..., None]
    return np.where(keep, image, blended.round().astype(np.uint8))
