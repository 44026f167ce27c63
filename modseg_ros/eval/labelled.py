"""Camera-only evaluation on a real labelled dataset (data/labelled.py), over the dataset's own classes.

The network sees each image at its own aspect ratio: the input keeps the image's shape and the
pixel count of the checkpoint's input size (both sides multiples of 32; MiT and the heads take any
such size), or a size the caller gives. Labels are taken at the image's native resolution. DELIVER
predictions map onto the dataset's classes through the mapping; a DELIVER class that no dataset
class covers counts as wrong (a column of its own in the confusion matrix). One confusion matrix
over the split; void pixels are skipped; mIoU is the mean over the dataset's classes.

``squash`` runs the network at the checkpoint's input size whatever the image's shape (what the node
does with a camera of another aspect ratio), to measure what squashing costs.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.network_input import aspect_size
from modseg_ros.core.palette import PALETTE
from modseg_ros.data.labelled import LabelledDataset
from modseg_ros.errors import ConfigError
from modseg_ros.model.segmenter import segment_camera


def dataset_network(checkpoint: str | Path, input_size: tuple[int, int] | None, squash: bool, threads: int):
    """The checkpoint's network and sidecar for a dataset evaluation, and the input size it runs an
    image of a given (H, W) at: the image's aspect at the checkpoint's pixel count, ``input_size``
    if given, the checkpoint's own with ``squash``."""
    from modseg_ros.model.checkpoint import load_checkpoint

    if squash and input_size:
        raise ConfigError("--squash and --input-size exclude each other")
    if threads:
        torch.set_num_threads(threads)
    model, info = load_checkpoint(checkpoint)
    pixels = info.config.input_size[0] * info.config.input_size[1]

    def size_for(shape: tuple[int, int]) -> tuple[int, int]:
        return tuple(info.config.input_size) if squash else (tuple(input_size) if input_size else aspect_size(shape, pixels))

    return model, info, size_for


def frame_indices(count: int, frames: int) -> np.ndarray:
    """``frames`` indices spread evenly over a dataset of ``count`` (0 or more than it: all)."""
    return np.linspace(0, count - 1, frames).astype(int) if 0 < frames < count else np.arange(count)


def evaluate_labelled(checkpoint: str | Path, data: str | Path, mapping: str, out: str | Path, split: str = "test",
                      input_size: tuple[int, int] | None = None, squash: bool = False, frames: int = 0,
                      panels: int = 4, threads: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> dict:  # fmt: skip
    """Evaluate, write eval.json / eval.md / confusion.png / panels.png to ``out``; the summary."""
    from modseg_ros.eval.report import dataset_confusion_png, dataset_panels_png, write_labelled_reports

    model, info, size_for = dataset_network(checkpoint, input_size, squash, threads)
    dataset = LabelledDataset(data, mapping, split)
    classes = dataset.mapping.class_names
    lut = dataset.mapping.prediction_lut()
    matrix = ConfusionMatrix(len(classes) + 1)  # the last column: DELIVER classes with no counterpart
    indices = frame_indices(len(dataset), frames)
    shown = set(indices[np.linspace(0, len(indices) - 1, panels).astype(int)].tolist()) if panels else set()
    examples, sizes = [], set()
    for done, idx in enumerate(indices, start=1):
        rgb, label = dataset.dataset_frame(int(idx))
        size = size_for(rgb.shape[:2])
        sizes.add(size)
        prediction = lut[segment_camera(model, rgb, size=size)]
        matrix.update(prediction, label)
        if int(idx) in shown:
            examples.append((dataset.refs[int(idx)].name, rgb, label, prediction))
        if progress:
            progress(done, len(indices))
    iou = matrix.iou()[: len(classes)]
    total = matrix.matrix[: len(classes)].sum()
    summary = {
        "checkpoint": Path(checkpoint).name,
        "dataset": dataset.mapping.name,
        "split": split,
        "frames": len(indices),
        "fingerprint": dataset.fingerprint(),
        "modalities": ["camera"],
        "network_input": sorted(f"{h}x{w}" for h, w in sizes),
        "miou": round(float(iou.mean()), 2),
        "pixel_accuracy": round(float(np.trace(matrix.matrix[: len(classes), : len(classes)]) / max(total, 1) * 100), 2),
        "per_class_iou": {c: round(float(v), 2) for c, v in zip(classes, iou)},
        "no_counterpart_share": round(float(matrix.matrix[: len(classes), -1].sum() / max(total, 1) * 100), 2),
        "confusion": matrix.matrix[: len(classes)].tolist(),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_labelled_reports(out, summary, info.name, classes)
    dataset_confusion_png(matrix.matrix[: len(classes)], classes, out / "confusion.png", f"{info.name}: {dataset.mapping.name} {split}")
    if examples:
        colours = np.array([PALETTE[c.deliver[0]] for c in dataset.mapping.classes] + [(0, 0, 0)], dtype=np.uint8)
        dataset_panels_png(examples, colours, out / "panels.png")
    return summary
