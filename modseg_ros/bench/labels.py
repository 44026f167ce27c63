"""``modseg bench labels``: what taking the labels on the network's input grid costs in mIoU and saves
in time, against bilinear labels at the label's full resolution (model/labels.py ``labels_at``
against ``labels_on_grid``, the engine's way), on a DELIVER-layout split.

Every modality a frame has, one thread; the time is the label step alone (logits -> labels).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from time import perf_counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="DELIVER-layout root (frames the checkpoint never trained on)")
    parser.add_argument("--checkpoint", type=Path, help="model .safetensors (default: the shipped model)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--frames", type=int, default=60, help="frames spread over the split (default 60)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from modseg_ros.core.types import MODALITIES
    from modseg_ros.data.deliver import DeliverDataset
    from modseg_ros.data.transforms import EvalTransform
    from modseg_ros.core.metrics import ConfusionMatrix
    from modseg_ros.model.checkpoint import load_checkpoint
    from modseg_ros.model.loading import default_checkpoint
    from modseg_ros.model.labels import labels_at, labels_on_grid
    from modseg_ros.model.segmenter import ModalBatch

    torch.set_num_threads(1)
    model, info = load_checkpoint(args.checkpoint or default_checkpoint())
    data = DeliverDataset(args.data, args.split)
    transform = EvalTransform(info.config.input_size, info.lidar_intensity)
    matrices = {"full": ConfusionMatrix(), "grid": ConfusionMatrix()}
    times: dict[str, list[float]] = {"full": [], "grid": []}
    with torch.no_grad():
        for i in np.linspace(0, len(data) - 1, min(args.frames, len(data))).astype(int):
            frame = data[int(i)]
            inputs, label = transform(frame.encodings, frame.label)
            slots = [s for s, m in enumerate(MODALITIES) if m in inputs]
            images = torch.stack([torch.from_numpy(inputs[MODALITIES[s]]) for s in slots])[:, None]
            logits = model(ModalBatch(images, torch.tensor(slots))).logits.numpy()
            for name, labels in (("full", lambda: labels_at(logits, label.shape)),
                                 ("grid", lambda: labels_on_grid(logits, label.shape, info.config.input_size))):  # fmt: skip
                start = perf_counter()
                prediction = labels()[0]
                times[name].append((perf_counter() - start) * 1e3)
                matrices[name].update(prediction, label)
    h, w = label.shape
    print(f"{info.name}: input {info.config.input_size[0]}×{info.config.input_size[1]}, labels {h}×{w}, "
          f"{len(times['full'])} frames of {args.data.name}/{args.split}")  # fmt: skip
    for name, what in (("full", "bilinear at the label's resolution"), ("grid", "on the input grid, then nearest")):
        print(f"  {what:38s} mIoU {matrices[name].miou():6.2f}  {statistics.median(times[name]):6.1f} ms")
    print(f"  difference {matrices['grid'].miou() - matrices['full'].miou():+.2f} mIoU")
    return 0
