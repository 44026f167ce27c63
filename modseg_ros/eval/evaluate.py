"""Evaluation of a checkpoint on a DELIVER-layout split, as the any-modal papers and the
missing-modality benchmark report it (docs/design.md#d2-evaluation-protocol, D12).

- EMM: every one of the 15 non-empty modality subsets; an absent modality is dropped (the network's
  own way) or, with ``absent="zero"``, zero-filled after normalisation (the benchmark's protocol);
  mIoU per subset, their mean (EMM-Avg) and E(p), p = 0.2 / 0.1 / 0.05;
- per condition and per failure case (DELIVER corner cases) for the full set and as 15-subset means;
  per class IoU of the full set; pixel accuracy; the full-set confusion matrix;
- RMM: each "missing" modality keeps its tensor but a fraction r of its elements is zeroed
  (independently per element); Avg and E(p) over the 15 subsets;
- NM: salt-and-pepper noise (salt = tensor max, pepper = tensor min) on all four modalities plus
  Gaussian noise on camera, depth and LiDAR, after normalisation, at three levels, full set.

Predictions are upsampled (bilinear logits) to the label's own resolution before scoring. RMM and NM
need an extra pass per subset or level, so they run on ``robust_frames`` of the frames. A partial
evaluation (``frames``) takes frames evenly spread over the split.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from modseg_ros.core.metrics import ConfusionMatrix, summarise_subsets
from modseg_ros.core.types import MODALITIES, Modality, all_subsets, subset_name
from modseg_ros.data.deliver import CONDITIONS, CORNER_CASES, DeliverDataset, Frame
from modseg_ros.data.transforms import EvalTransform
from modseg_ros.model.labels import labels_at
from modseg_ros.model.segmenter import ModalBatch, Segmenter

NOISE_LEVELS = {"low": (0.05, 0.1), "mid": (0.1, 0.2), "high": (0.2, 0.5)}  # (salt-and-pepper density, Gaussian σ)
SUBSETS = all_subsets()
FULL = tuple(MODALITIES)


@dataclass
class EvalOptions:
    absent: str = "drop"  # drop | zero
    frames: int = 0  # 0 = all
    batch_size: int = 4
    rmm_rate: float = 0.5
    robust_frames: int = 64  # frames for RMM and NM (0 = skip them)
    seed: int = 0
    lidar_intensity: str = "raw"  # the checkpoint's (core/network_input.py LIDAR_INTENSITY)


@dataclass
class EvalResult:
    subsets: dict[tuple[Modality, ...], ConfusionMatrix]
    by_condition: dict[str, dict[tuple[Modality, ...], ConfusionMatrix]]
    by_case: dict[str, dict[tuple[Modality, ...], ConfusionMatrix]]
    rmm: dict[tuple[Modality, ...], ConfusionMatrix] = field(default_factory=dict)
    noise: dict[str, ConfusionMatrix] = field(default_factory=dict)
    frames: int = 0
    robust_frames: int = 0

    def summary(self) -> dict:
        from modseg_ros.core.palette import CLASSES

        full = self.subsets[FULL]
        out = {
            "frames": self.frames,
            "emm": summarise_subsets({s: m.miou() for s, m in self.subsets.items()}),
            "full_set": {"miou": full.miou(), "pixel_accuracy": full.pixel_accuracy()},
            "per_class_iou": {c: round(float(v), 2) for c, v in zip(CLASSES, full.iou())},
            "by_condition": _grouped(self.by_condition),
            "by_case": _grouped(self.by_case),
        }
        if self.rmm:
            out["rmm"] = summarise_subsets({s: m.miou() for s, m in self.rmm.items()}) | {"frames": self.robust_frames}
        if self.noise:
            out["noise"] = {level: m.miou() for level, m in self.noise.items()} | {"frames": self.robust_frames}
        return out


def _grouped(groups: dict[str, dict[tuple[Modality, ...], ConfusionMatrix]]) -> dict:
    result = {}
    for name, matrices in groups.items():
        if matrices[FULL].matrix.sum() == 0:
            continue
        frames_mious = {s: m.miou() for s, m in matrices.items()}
        result[name] = {"full_set": frames_mious[FULL], "subset_mean": summarise_subsets(frames_mious)["avg"],
                        "subsets": {subset_name(s): v for s, v in frames_mious.items()}}  # fmt: skip
    return result


def _new_group() -> dict[tuple[Modality, ...], ConfusionMatrix]:
    return {s: ConfusionMatrix() for s in SUBSETS}


class Evaluator:
    def __init__(self, model: Segmenter, options: EvalOptions) -> None:
        self.model = model.eval()
        self.options = options
        self.transform = EvalTransform(model.config.input_size, options.lidar_intensity)

    @torch.no_grad()
    def predict(self, inputs: Sequence[dict[Modality, np.ndarray]], subset: Sequence[Modality], size: tuple[int, int],
                corrupt: Callable[[int, Modality, np.ndarray], np.ndarray] | None = None,
                feed: Sequence[Modality] | None = None) -> np.ndarray:  # fmt: skip
        """Labels (B, H, W) for a batch of prepared frames seeing only ``subset``.

        ``feed`` = slots given to the network (default: the subset, or all four under zero-fill);
        a fed modality outside the subset is zeros, or ``corrupt(frame, modality, tensor)``.
        """
        zero_fill = self.options.absent == "zero" or self.model.config.arch == "cmnext"
        slots = tuple(feed) if feed is not None else (FULL if zero_fill else tuple(subset))
        b = len(inputs)
        c, h, w = next(iter(inputs[0].values())).shape
        images = torch.zeros((len(slots), b, c, h, w))
        present = torch.zeros((len(slots), b), dtype=torch.bool)
        for i, m in enumerate(slots):
            for j, frame in enumerate(inputs):
                if m not in frame:
                    continue
                if m in subset:
                    images[i, j] = torch.from_numpy(frame[m])
                    present[i, j] = True
                elif corrupt is not None:
                    images[i, j] = torch.from_numpy(corrupt(j, m, frame[m]))
        every_slot_fed = zero_fill or corrupt is not None or bool(present.all())  # zeros/corrupted count as fed
        index = torch.tensor([MODALITIES.index(m) for m in slots])
        out = self.model(ModalBatch(images, index, None if every_slot_fed else present))
        return labels_at(out.logits.float().cpu().numpy(), size)

    def run(self, dataset: DeliverDataset, progress: Callable[[int, int], None] | None = None,
            on_batch: Callable[[list[Frame], dict[tuple[Modality, ...], np.ndarray]], None] | None = None) -> EvalResult:  # fmt: skip
        opts = self.options
        selected = spread(len(dataset), opts.frames)
        count = len(selected)
        robust_positions = set(spread(count, min(opts.robust_frames, count)).tolist()) if opts.robust_frames > 0 else set()
        robust = len(robust_positions)
        result = EvalResult(_new_group(), {c: _new_group() for c in CONDITIONS}, {c: _new_group() for c in ("normal", *CORNER_CASES)})
        result.rmm = {s: ConfusionMatrix() for s in SUBSETS} if robust else {}
        result.noise = {level: ConfusionMatrix() for level in NOISE_LEVELS} if robust else {}
        result.frames, result.robust_frames = count, robust
        for start in range(0, count, opts.batch_size):
            frames = [dataset[int(i)] for i in selected[start : start + opts.batch_size]]
            inputs = [self.transform(f.encodings, f.label)[0] for f in frames]
            size = frames[0].label.shape
            predictions = {}
            for subset in SUBSETS:
                usable = [j for j, f in enumerate(frames) if any(m in f.encodings for m in subset)]
                pred = self.predict([inputs[j] for j in usable], subset, size)
                predictions[subset] = pred
                for p, j in zip(pred, usable):
                    frame = frames[j]
                    for matrices in (result.subsets, result.by_condition.get(frame.ref.condition), result.by_case.get(frame.ref.case)):
                        if matrices is not None:
                            matrices[subset].update(p, frame.label)
            if on_batch:
                on_batch(frames, predictions)
            in_robust = [j for j in range(len(frames)) if start + j in robust_positions]
            if in_robust:
                self._robustness(start, [frames[j] for j in in_robust], [inputs[j] for j in in_robust], result)
            if progress:
                progress(min(start + opts.batch_size, count), count)
        return result

    def _robustness(self, start: int, frames: list[Frame], inputs: list[dict[Modality, np.ndarray]], result: EvalResult) -> None:
        size = frames[0].label.shape
        for k, subset in enumerate(SUBSETS):
            def drop_elements(j: int, m: Modality, x: np.ndarray, k: int = k) -> np.ndarray:
                rng = np.random.default_rng([self.options.seed, start + j, k, MODALITIES.index(m)])
                return np.where(rng.random(x.shape) < self.options.rmm_rate, 0.0, x).astype(np.float32)

            pred = self.predict(inputs, subset, size, corrupt=drop_elements, feed=FULL)
            for p, f in zip(pred, frames):
                result.rmm[subset].update(p, f.label)
        for level, (density, sigma) in NOISE_LEVELS.items():
            noisy = []
            for j, frame in enumerate(inputs):
                rng = np.random.default_rng([self.options.seed, start + j, 99, int(density * 100)])
                noisy.append({m: add_noise(m, x, density, sigma, rng) for m, x in frame.items()})
            pred = self.predict(noisy, FULL, size)
            for p, f in zip(pred, frames):
                result.noise[level].update(p, f.label)


def spread(total: int, count: int) -> np.ndarray:
    """``count`` indices evenly spread over ``range(total)`` (all of them when count is 0 or ≥ total),
    so a partial evaluation still covers every condition and case of a split sorted by condition."""
    if count <= 0 or count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def add_noise(modality: Modality, x: np.ndarray, density: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The benchmark's NM corruption of one normalised tensor."""
    lo, hi = float(x.min()), float(x.max())
    out = x.copy()
    if modality is not Modality.EVENTS:
        out = out + rng.normal(0.0, sigma, x.shape).astype(np.float32)
    u = rng.random(x.shape)
    out[u < density / 2] = lo
    out[(u >= density / 2) & (u < density)] = hi
    return out.astype(np.float32)


def evaluate_checkpoint(checkpoint, data, out, split: str = "val", absent: str = "drop", frames: int = 0,
                        robust_frames: int = 64, panels: int = 3, batch_size: int = 4, threads: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> dict:  # fmt: skip
    """Load, evaluate, write eval.json / eval.md / confusion.png / panels.png to ``out``; the summary."""
    from pathlib import Path

    from modseg_ros.errors import ConfigError
    from modseg_ros.eval.report import PANEL_SUBSETS, confusion_png, panels_png, write_reports
    from modseg_ros.model.checkpoint import load_checkpoint

    if absent not in ("drop", "zero"):
        raise ConfigError(f"--absent must be 'drop' or 'zero', got {absent!r}")
    if threads:
        torch.set_num_threads(threads)
    model, info = load_checkpoint(checkpoint)
    dataset = DeliverDataset(data, split)
    options = EvalOptions(absent=absent, frames=frames, batch_size=batch_size, robust_frames=robust_frames,
                          lidar_intensity=info.lidar_intensity)  # fmt: skip
    examples: list[tuple] = []
    selected = spread(len(dataset), frames)
    wanted = {int(selected[i]) for i in spread(len(selected), panels)} if panels else set()

    def keep_examples(batch: list[Frame], predictions: dict) -> None:
        for j, frame in enumerate(batch):
            if dataset.refs.index(frame.ref) in wanted:
                examples.append((frame.encodings, frame.label, {s: predictions[s][j] for s in PANEL_SUBSETS if j < len(predictions[s])}))

    result = Evaluator(model, options).run(dataset, progress, keep_examples if panels else None)
    summary = result.summary() | {"checkpoint": str(checkpoint), "arch": info.config.arch, "split": split,
                                  "protocol": "zero-fill" if absent == "zero" or info.config.arch == "cmnext" else "drop"}  # fmt: skip
    out = Path(out)
    write_reports(out, summary, info.name)
    confusion_png(result.subsets[FULL], out / "confusion.png", f"{info.name}: full set, {split}")
    if examples:
        panels_png(examples, out / "panels.png")
    return summary
