"""Real labelled camera datasets: images + label-id PNGs + a YAML class mapping onto DELIVER's ids.

A mapping file (``config/datasets/camvid.yaml`` is the shipped one) says where the files are and
what the dataset's label ids mean::

    name: CamVid
    images: "{split}/*.png"                 # glob under the root
    labels: [["{split}/", "{split}annot/"]] # label path = image path with these replacements
    ignore: [11]
    classes:
      0: {name: Sky, deliver: [Sky]}        # the first DELIVER class is the training target
      1: {name: Building, deliver: [Building, Wall, Bridge]}
      3: {name: Grass, deliver: [Terrain], also: [1, 33]}   # ids 1 and 33 are scored as this class too

Cityscapes-style folders (``leftImg8bit/{split}/<city>/x_leftImg8bit.png`` beside
``gtFine/{split}/<city>/x_gtFine_labelIds.png``) take the same form with two replacements:
``[["leftImg8bit/", "gtFine/"], ["_leftImg8bit.png", "_gtFine_labelIds.png"]]``. Each replacement
changes the first occurrence, in order.

Frames are camera-only ``data.deliver.Frame``s, so training treats them like any DELIVER-layout
frame: ``label`` holds DELIVER ids (255 = ignore: the ``ignore`` ids and ids no class covers).
Evaluation scores the dataset's own classes: ``dataset_label`` reads a frame's label as class
indices 0..C-1 (255 = ignore) and ``LabelMapping.prediction_lut`` maps DELIVER predictions onto
them (C = a DELIVER class with no counterpart, which counts as wrong).

Every problem names its file and value: a missing or mis-sized label file, a label id that the
mapping neither lists nor ignores, an unknown DELIVER class name in the mapping. Label PNGs hold ids
0..255; point labels (data/pointframes.py) read the same mapping with ids up to 65535.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from modseg_ros.core.palette import CLASS_ID, IGNORE, NUM_CLASSES
from modseg_ros.core.types import Modality
from modseg_ros.data.deliver import SPLITS, Frame, FrameRef, fingerprint, read_png
from modseg_ros.errors import DatasetError
from modseg_ros.paths import config_file

SHIPPED = ("camvid", "semantickitti", "rellis3d")  # mapping names that resolve to config/datasets/<name>.yaml
CLASS_ID_NAME = {i: name for name, i in CLASS_ID.items()}


@dataclass(frozen=True)
class DatasetClass:
    ids: tuple[int, ...]  # label ids in the dataset's files (the YAML key, then its 'also' list)
    name: str
    deliver: tuple[int, ...]  # DELIVER class ids it covers; the first is the training target


@dataclass(frozen=True)
class LabelMapping:
    name: str
    images: str  # glob with {split}
    labels: tuple[tuple[str, str], ...]  # (old, new) replacements in order, each with {split}
    classes: tuple[DatasetClass, ...]
    ignore: frozenset[int]
    source: str  # the mapping file's name, for messages

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def training_lut(self) -> np.ndarray:
        """(256,) uint8: dataset label id -> DELIVER training id (255 = ignore)."""
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for c in self.classes:
            lut[list(c.ids)] = c.deliver[0]
        return lut

    def index_lut(self, size: int = 256) -> np.ndarray:
        """(size,) uint8: dataset label id -> class index 0..C-1 (255 = ignore)."""
        lut = np.full(size, IGNORE, dtype=np.uint8)
        for i, c in enumerate(self.classes):
            lut[list(c.ids)] = i
        return lut

    def prediction_lut(self) -> np.ndarray:
        """(NUM_CLASSES,) uint8: DELIVER prediction -> class index, C where no class covers it."""
        lut = np.full(NUM_CLASSES, len(self.classes), dtype=np.uint8)
        for i, c in enumerate(self.classes):
            lut[list(c.deliver)] = i
        return lut

    def known_ids(self, size: int = 256) -> np.ndarray:
        """(size,) bool: label ids the mapping lists or ignores."""
        known = np.zeros(size, dtype=bool)
        known[[i for c in self.classes for i in c.ids]] = True
        known[list(self.ignore)] = True
        return known


def mapping_path(name_or_path: str | Path) -> Path:
    """A shipped mapping's file (``camvid``, ``semantickitti``, ...) or the path given."""
    return config_file(f"datasets/{name_or_path}.yaml") if str(name_or_path) in SHIPPED else Path(name_or_path)


def read_mapping_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as err:
        raise DatasetError(f"cannot read dataset mapping {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise DatasetError(f"dataset mapping {path} is not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise DatasetError(f"dataset mapping {path}: expected a mapping with name, images, labels, classes")
    return doc


def load_mapping(name_or_path: str | Path, max_id: int = 254) -> LabelMapping:
    """A shipped mapping by name (``camvid``) or a mapping YAML file, validated; class ids up to
    ``max_id`` (label PNGs: 254, as 255 is the ignore value)."""
    path = mapping_path(name_or_path)
    doc = read_mapping_yaml(path)
    for key in ("images", "labels", "classes"):
        if key not in doc:
            raise DatasetError(f"dataset mapping {path}: missing key '{key}'")
    labels = doc["labels"]
    pairs = isinstance(labels, list) and labels and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) and s for s in p) for p in labels)
    if not pairs:
        raise DatasetError(f"dataset mapping {path}: 'labels' must be a list of [old, new] replacements that turn an image path into its label path")
    if not isinstance(doc["classes"], dict) or not doc["classes"]:
        raise DatasetError(f"dataset mapping {path}: 'classes' must map label ids to {{name, deliver}}")
    classes, seen = [], set()
    for raw_id, entry in doc["classes"].items():
        if not isinstance(raw_id, int) or not 0 <= raw_id <= max_id:
            raise DatasetError(f"dataset mapping {path}: class id {raw_id!r} is not an integer in 0..{max_id}")
        if not isinstance(entry, dict) or "name" not in entry or not entry.get("deliver"):
            raise DatasetError(f"dataset mapping {path}: class {raw_id} needs a name and a non-empty deliver list")
        also = entry.get("also", [])
        if not isinstance(also, list) or not all(isinstance(i, int) and 0 <= i <= max_id for i in also):
            raise DatasetError(f"dataset mapping {path}: class {raw_id} ({entry['name']}): 'also' must be a list of label ids 0..{max_id}")
        ids = (raw_id, *also)
        if seen & set(ids):
            raise DatasetError(f"dataset mapping {path}: label id(s) {', '.join(map(str, sorted(seen & set(ids))))} belong to more than one class")
        seen.update(ids)
        deliver = []
        for cls in entry["deliver"]:
            if cls not in CLASS_ID:
                raise DatasetError(f"dataset mapping {path}: class {raw_id} ({entry['name']}) maps onto unknown DELIVER class '{cls}'")
            deliver.append(CLASS_ID[cls])
        classes.append(DatasetClass(ids, str(entry["name"]), tuple(deliver)))
    covered = [d for c in classes for d in c.deliver]
    if len(covered) != len(set(covered)):
        twice = sorted({CLASS_ID_NAME[d] for d in covered if covered.count(d) > 1})
        raise DatasetError(f"dataset mapping {path}: DELIVER class(es) {', '.join(twice)} listed under more than one class")
    ignore = doc.get("ignore", [])
    top = max(max_id, IGNORE)
    if not isinstance(ignore, list) or not all(isinstance(i, int) and 0 <= i <= top for i in ignore):
        raise DatasetError(f"dataset mapping {path}: 'ignore' must be a list of label ids 0..{top}")
    return LabelMapping(
        name=str(doc.get("name", path.stem)), images=str(doc["images"]), labels=tuple((old, new) for old, new in labels),
        classes=tuple(classes), ignore=frozenset(ignore), source=path.name,
    )  # fmt: skip



class LabelledDataset:
    """The camera frames of one split of a labelled dataset (``Frame`` with the camera only)."""

    def __init__(self, root: str | Path, mapping: LabelMapping | str | Path, split: str = "train") -> None:
        self.root = Path(root)
        self.mapping = mapping if isinstance(mapping, LabelMapping) else load_mapping(mapping)
        self.split = split
        if split not in SPLITS:
            raise DatasetError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder {self.root} does not exist")
        pattern = self.mapping.images.format(split=split)
        images = sorted(self.root.glob(pattern))
        if not images:
            raise DatasetError(f"no images in {self.root}/{pattern} ({self.mapping.name}, split {split})")
        replacements = [(old.format(split=split), new.format(split=split)) for old, new in self.mapping.labels]
        self.refs: list[FrameRef] = []
        for image in images:
            rel = label_rel = str(image.relative_to(self.root))
            for old, new in replacements:
                if old not in label_rel:
                    raise DatasetError(f"{image}: its path has no '{old}' to turn into its label path ({self.mapping.source})")
                label_rel = label_rel.replace(old, new, 1)
            label = self.root / label_rel
            if not label.is_file():
                raise DatasetError(f"{image}: label file {label} is missing")
            self.refs.append(FrameRef(rel, "", "normal", {Modality.CAMERA: image}, label))
        self._training_lut = self.mapping.training_lut()
        self._index_lut = self.mapping.index_lut()
        self._known = self.mapping.known_ids()

    def __len__(self) -> int:
        return len(self.refs)

    def fingerprint(self) -> str:
        return fingerprint(self.refs)

    def raw_label(self, index: int) -> np.ndarray:
        """The label file's ids (H×W uint8), checked against the image's size and the mapping."""
        ref = self.refs[index]
        from PIL import Image

        try:
            with Image.open(ref.label) as image:
                raw = np.asarray(image)
        except (OSError, ValueError) as err:
            raise DatasetError(f"cannot read label {ref.label}: {err}") from err
        if raw.ndim == 3:
            raw = raw[..., 0]
        if raw.dtype != np.uint8:
            if raw.size and (raw.min() < 0 or raw.max() > 255):
                raise DatasetError(f"label {ref.label}: id {int(raw.max() if raw.max() > 255 else raw.min())} is out of range (0..255)")
            raw = raw.astype(np.uint8)
        unknown = ~self._known[raw]
        if unknown.any():
            value = int(raw[unknown][0])
            raise DatasetError(f"label {ref.label}: id {value} is neither a class nor ignored in {self.mapping.source}")
        return raw

    def _camera(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        ref = self.refs[index]
        rgb = read_png(ref.files[Modality.CAMERA])
        if rgb.shape[:2] != shape:
            raise DatasetError(f"{ref.files[Modality.CAMERA]} is {rgb.shape[1]}×{rgb.shape[0]} but its label {ref.label} is {shape[1]}×{shape[0]}")
        return rgb

    def label(self, index: int) -> np.ndarray:
        """Frame ``index``'s training target as DELIVER ids (H×W uint8, 255 = ignore), without its image."""
        return self._training_lut[self.raw_label(index)]

    def __getitem__(self, index: int) -> Frame:
        raw = self.raw_label(index)
        return Frame(self.refs[index], {Modality.CAMERA: self._camera(index, raw.shape)}, self._training_lut[raw])

    def dataset_frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB H×W×3 uint8, label as class indices 0..C-1, 255 = ignore) for evaluation."""
        raw = self.raw_label(index)
        return self._camera(index, raw.shape), self._index_lut[raw]
