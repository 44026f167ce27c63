"""Writes frames in the DELIVER layout (docs/design.md#d1-deliver-layout), readable by DELIVER's own loader:

    <root>/{img,depth,event,lidar,semantic}/<condition>/<split>/<sequence>/<id>_{rgb,depth,event,lidar,semantic}_front.png

- ``img``: the RGB image;
- ``depth``, ``lidar``, ``event``: the H×W×3 uint8 ``core/encoding.py`` encodings of the frame's depth
  image, LiDAR scan and event packet (an absent message, e.g. a silent sensor, is all zeros: the
  encoding of "nothing measured");
- ``semantic``: channel 0 = DELIVER id + 1, 0 = unlabelled (DELIVER's loader maps 0 and 255 to 255
  and subtracts 1, giving ids 0..24 and 255 = ignore); channels 1 and 2 are 0, as in CARLA.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modseg_ros.core.config import dump_yaml, read_yaml
from modseg_ros.core.palette import IGNORE, NUM_CLASSES
from modseg_ros.core.types import Modality

# DELIVER folder and file-name token of each written modality
FOLDERS: dict[str, str] = {"img": "rgb", "depth": "depth", "event": "event", "lidar": "lidar", "semantic": "semantic"}
FOLDER_OF: dict[Modality, str] = {Modality.CAMERA: "img", Modality.DEPTH: "depth", Modality.LIDAR: "lidar", Modality.EVENTS: "event"}
META_FILE = "world.yaml"


def frame_paths(root: Path, condition: str, split: str, sequence: str, frame_id: str) -> dict[str, Path]:
    return {folder: root / folder / condition / split / sequence / f"{frame_id}_{token}_front.png"
            for folder, token in FOLDERS.items()}  # fmt: skip


def semantic_png(labels: np.ndarray) -> np.ndarray:
    """H×W DELIVER ids (255 = ignore) -> H×W×3 uint8 with id + 1 in channel 0 (0 = unlabelled)."""
    out = np.zeros((*labels.shape, 3), np.uint8)
    valid = labels < NUM_CLASSES
    out[..., 0] = np.where(valid, labels.astype(np.uint16) + 1, 0).astype(np.uint8)
    return out


def labels_from_semantic_png(image: np.ndarray) -> np.ndarray:
    """Inverse of ``semantic_png``, with DELIVER's loader rule (0 -> ignore)."""
    channel = image[..., 0] if image.ndim == 3 else image
    return np.where(channel == 0, IGNORE, channel.astype(np.int16) - 1).astype(np.uint8)


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format="PNG", compress_level=1)


def write_frame(root: Path, condition: str, split: str, sequence: str, frame_id: str,
                encoded: Mapping[Modality, np.ndarray], labels: np.ndarray) -> None:
    """One frame: the four encodings (keys: modalities) and the label image."""
    paths = frame_paths(root, condition, split, sequence, frame_id)
    for modality, folder in FOLDER_OF.items():
        write_png(paths[folder], encoded[modality])
    write_png(paths["semantic"], semantic_png(labels))


def update_meta(root: Path, common: Mapping[str, Any], split: str, run: Mapping[str, Any]) -> None:
    """Record the dataset-wide settings and this split's run in <root>/world.yaml (other splits kept)."""
    path = root / META_FILE
    meta: dict[str, Any] = {}
    if path.is_file():
        loaded = read_yaml(path, "dataset description") or {}
        if isinstance(loaded, dict):
            meta = loaded
    splits = dict(meta.get("splits") or {})
    splits[split] = dict(run)
    meta = {**common, "splits": {k: splits[k] for k in sorted(splits)}}
    path.write_text(dump_yaml(meta))

