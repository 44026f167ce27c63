"""DELIVER-layout datasets: a real DELIVER copy or the embedded world's ``--format deliver`` output.

Layout (jamycheung/DELIVER ``semseg/datasets/deliver.py``, docs/design.md#d1-deliver-layout)::

    <root>/img/<condition>/<split>/<sequence>/<id>_rgb_front.png
    <root>/hha/...      <id>_depth_front.png     (CMNeXt's depth source; ``depth/`` if no ``hha/``)
    <root>/lidar/...    <id>_lidar_front.png
    <root>/event/...    <id>_event_front.png
    <root>/semantic/... <id>_semantic_front.png  (channel 0: DELIVER ids 1..25, 0 = unlabelled)

The frame list is the sorted glob of ``img/*/<split>/*/*.png``; the other files are found by the
same string replacements as DELIVER's loader. Labels become 0..24 with 255 = ignore (DELIVER's
``label[label == 255] = 0; label -= 1``). A corner case (motionblur, overexposure, underexposure,
lidarjitter, eventlowres) is recognised by substring in the path, as DELIVER does; else "normal".
Images are read as uint8; 1-channel files are repeated to 3 channels and 4-channel files cut to 3;
a modality stored at another resolution (DELIVER's low-resolution events) is resized to the label's
grid with nearest neighbour, as DELIVER does. A missing modality file means that modality is absent
for that frame; a frame without a label file is skipped.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from modseg_ros.core.palette import IGNORE
from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import DatasetError

CONDITIONS: tuple[str, ...] = ("cloud", "fog", "night", "rain", "sun")
CORNER_CASES: tuple[str, ...] = ("motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# modality -> (folder, file tag) as DELIVER names them
FOLDERS = {
    Modality.CAMERA: ("img", "_rgb"),
    Modality.DEPTH: ("hha", "_depth"),
    Modality.LIDAR: ("lidar", "_lidar"),
    Modality.EVENTS: ("event", "_event"),
}
LABEL_FOLDER = ("semantic", "_semantic")


@dataclass(frozen=True)
class FrameRef:
    name: str  # path of the RGB file relative to the root
    condition: str
    case: str  # "normal" or one of CORNER_CASES
    files: dict[Modality, Path] = field(hash=False)
    label: Path = field(hash=False)


@dataclass(frozen=True, eq=False)
class Frame:
    ref: FrameRef
    encodings: dict[Modality, np.ndarray]  # H×W×3 uint8 on the label's grid, present modalities only
    label: np.ndarray  # H×W uint8, 0..24, 255 = ignore


def _swap(rgb: Path, root: Path, folder: str, tag: str) -> Path:
    rel = rgb.relative_to(root / "img")
    return root / folder / rel.parent / rel.name.replace("_rgb", tag)


def _read_array(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {what} {path}: {err}") from err


def read_png(path: Path) -> np.ndarray:
    """Any PNG -> H×W×3 uint8 (grey repeated, alpha dropped; 16-bit scaled to 8)."""
    array = _read_array(path, "image")
    if array.dtype == np.uint16 or array.dtype == np.int32:
        array = (array.astype(np.uint32) >> 8).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return np.ascontiguousarray(array[..., :3].astype(np.uint8))


def read_label(path: Path) -> np.ndarray:
    """A DELIVER semantic PNG -> H×W uint8 ids 0..24, 255 = ignore."""
    raw = _read_array(path, "label")
    raw = (raw[..., 0] if raw.ndim == 3 else raw).astype(np.uint8)
    label = np.where(raw == IGNORE, 0, raw)
    return (label.astype(np.int16) - 1).astype(np.uint8)  # 0 -> 255 (ignore), 1..25 -> 0..24


def fingerprint(refs: Sequence[FrameRef]) -> str:
    """sha256 (16 hex digits) of the frames' relative file names: which frames, not where they lie."""
    return hashlib.sha256("\n".join(r.name for r in refs).encode()).hexdigest()[:16]


def _nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = ((np.arange(height) + 0.5) * image.shape[0] / height).astype(np.int64)
    cols = ((np.arange(width) + 0.5) * image.shape[1] / width).astype(np.int64)
    return image[rows][:, cols]


class DeliverDataset:
    """The frames of one split, optionally restricted to some conditions and corner cases."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        conditions: Sequence[str] | None = None,
        cases: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        if split not in SPLITS:
            raise DatasetError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        if not (self.root / "img").is_dir():
            raise DatasetError(f"{self.root} is not a DELIVER-layout folder (no img/ inside)")
        depth_folder = "hha" if (self.root / "hha").is_dir() else "depth"
        folders = dict(FOLDERS)
        folders[Modality.DEPTH] = (depth_folder, "_depth")
        refs = []
        for rgb in sorted((self.root / "img").glob(f"*/{split}/*/*.png")):
            rel = rgb.relative_to(self.root)
            condition = rel.parts[1]
            if conditions is not None and condition not in conditions:
                continue
            case = next((c for c in CORNER_CASES if c in str(rel)), "normal")
            if cases is not None and case not in cases:
                continue
            label = _swap(rgb, self.root, *LABEL_FOLDER)
            if not label.is_file():
                continue  # unlabelled (or still being written): not a usable frame
            files = {m: _swap(rgb, self.root, *folders[m]) for m in MODALITIES}
            refs.append(FrameRef(str(rel), condition, case, files, label))
        if not refs:
            raise DatasetError(f"no frames in {self.root}/img/*/{split}/*/*.png (conditions={conditions}, cases={cases})")
        self.refs: list[FrameRef] = refs

    def __len__(self) -> int:
        return len(self.refs)

    def fingerprint(self) -> str:
        return fingerprint(self.refs)

    def label(self, index: int) -> np.ndarray:
        """Frame ``index``'s DELIVER ids (H×W uint8, 255 = ignore), without reading its sensors."""
        return read_label(self.refs[index].label)

    def __getitem__(self, index: int) -> Frame:
        ref = self.refs[index]
        label = self.label(index)
        h, w = label.shape
        encodings = {}
        for modality, path in ref.files.items():
            if not path.is_file():
                continue
            image = read_png(path)
            encodings[modality] = image if image.shape[:2] == (h, w) else _nearest(image, h, w)
        return Frame(ref, encodings, label)
