"""Camera-only against camera + LiDAR on real frames with point labels (data/pointframes.py).

Each frame is encoded as the node encodes it: camera and LiDAR on the processing grid (the image's
view at most ``PROCESSING_SCALE`` × the network input, core/perception.py), the LiDAR through the
frame's calibration (core/encoding.py) and read as the checkpoint's sidecar says
(``lidar_intensity``). The network runs at the image's aspect ratio with the checkpoint's pixel
count (as ``modseg eval --dataset camvid``), ``--squash`` at its input size, and its masks come out
at the image's resolution. Both masks are scored at the labelled LiDAR points that project into the
image: one confusion matrix per input set over all frames (ignored points skipped, DELIVER
predictions mapped onto the dataset's classes, a DELIVER class without a counterpart counts as
wrong), IoU per class, mIoU over the classes present among the labelled points.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from modseg_ros.core.encoding import MIN_DEPTH_M, EncodingConfig, encode_camera, encode_lidar
from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.palette import IGNORE, PALETTE
from modseg_ros.core.perception import processing_camera
from modseg_ros.core.types import CameraFrame, Modality
from modseg_ros.data.pointframes import PointFrame, PointFrameDataset
from modseg_ros.eval.labelled import dataset_network, frame_indices

PROCESSING_SCALE = 4.0  # the node's default inputs.processing_scale
INPUT_SETS = {"camera": (Modality.CAMERA,), "camera+lidar": (Modality.CAMERA, Modality.LIDAR)}
PANEL_WIDTH = 320


def project_points(frame: PointFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, index) of the frame's points that land in its image (full resolution)."""
    points = frame.rig.camera_from(Modality.LIDAR).apply(frame.cloud.points)
    return frame.rig.camera.project(points, MIN_DEPTH_M)


def score_points(matrix: ConfusionMatrix, mask: np.ndarray, u: np.ndarray, v: np.ndarray, labels: np.ndarray) -> None:
    """Add the mask's class at each point's pixel against the point's label (255 skipped)."""
    matrix.update(mask[v, u], labels)


def present_iou(matrix: ConfusionMatrix, classes: tuple[str, ...]) -> dict[str, float]:
    """IoU (%) of the classes that occur among the labelled points (the matrix's rows)."""
    iou = matrix.iou()
    rows = matrix.matrix[: len(classes)].sum(axis=1)
    return {c: round(float(iou[i]), 2) for i, c in enumerate(classes) if rows[i] > 0}


def evaluate_point_frames(checkpoint: str | Path, data: str | Path, mapping: str, out: str | Path,
                          input_size: tuple[int, int] | None = None, squash: bool = False, frames: int = 0,
                          panels: int = 4, panel_image: bool = True, threads: int = 0,
                          progress: Callable[[int, int], None] | None = None) -> dict:  # fmt: skip
    """Evaluate, write eval.json / eval.md / panels.png to ``out``; the summary."""
    from modseg_ros.model.segmenter import segment_encoded

    model, info, size_for = dataset_network(checkpoint, input_size, squash, threads)
    dataset = PointFrameDataset(data, mapping)
    classes = dataset.mapping.classes.class_names
    lut = dataset.mapping.classes.prediction_lut()
    cfg = EncodingConfig()
    matrices = {name: ConfusionMatrix(len(classes) + 1) for name in INPUT_SETS}  # last column: no counterpart
    indices = frame_indices(len(dataset), frames)
    shown = set(indices[: max(panels, 0)].tolist())
    rows, per_frame, sizes = [], [], set()
    for done, idx in enumerate(indices, start=1):
        frame = dataset[int(idx)]
        size = size_for(frame.rgb.shape[:2])
        sizes.add(size)
        rig = frame.rig.with_camera(processing_camera(frame.rig.camera, size, PROCESSING_SCALE))
        encoded = {Modality.CAMERA: encode_camera(CameraFrame(frame.rgb), rig), Modality.LIDAR: encode_lidar(frame.cloud, rig, cfg, info.lidar_intensity)}
        masks = {name: lut[segment_encoded(model, {m: encoded[m] for m in modalities}, size, frame.rgb.shape[:2], info.lidar_intensity)]
                 for name, modalities in INPUT_SETS.items()}  # fmt: skip
        u, v, index = project_points(frame)
        record = {"frame": frame.name, "points_in_view": int(len(index)), "lidar_pixels_share": round(float((encoded[Modality.LIDAR][..., 0] > 0).mean() * 100), 2)}
        if frame.labels is not None:
            labels = frame.labels[index]
            record["labelled_points"] = int((labels != IGNORE).sum())
            for name, mask in masks.items():
                score_points(matrices[name], mask, u, v, labels)
        per_frame.append(record)
        if int(idx) in shown:
            rows.append(_panel_row(frame, masks, u, v, index, dataset, panel_image))
        if progress:
            progress(done, len(indices))
    summary = {
        "checkpoint": Path(checkpoint).name,
        "dataset": dataset.mapping.classes.name,
        "frames": len(indices),
        "lidar_intensity": info.lidar_intensity,
        "network_input": sorted(f"{h}x{w}" for h, w in sizes),
        "per_frame": per_frame,
    }
    for name, matrix in matrices.items():
        per_class = present_iou(matrix, classes)
        scored = matrix.matrix[: len(classes)]
        summary[name] = {
            "miou": round(float(np.mean(list(per_class.values()))), 2) if per_class else None,
            "point_accuracy": round(float(np.trace(scored[:, : len(classes)]) / max(scored.sum(), 1) * 100), 2),
            "per_class_iou": per_class,
            "confusion": scored.tolist(),
        }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_reports(out, summary, info.name, classes)
    if rows:
        from PIL import Image

        Image.fromarray(np.concatenate(rows, axis=0)).save(out / "panels.png", optimize=True)
    return summary


def _panel_row(frame: PointFrame, masks: dict[str, np.ndarray], u: np.ndarray, v: np.ndarray, index: np.ndarray,
               dataset: PointFrameDataset, panel_image: bool) -> np.ndarray:  # fmt: skip
    """image | camera only | camera + LiDAR | labelled points, each ``PANEL_WIDTH`` wide, in the
    dataset's class colours (black: void or a DELIVER class with no counterpart). Without
    ``panel_image`` the image is left out and the points are drawn on grey (for a licence that
    does not allow showing the images)."""
    from PIL import Image, ImageDraw

    colours = np.zeros((256, 3), np.uint8)
    colours[: len(dataset.mapping.classes.classes)] = [PALETTE[c.deliver[0]] for c in dataset.mapping.classes.classes]
    h, w = frame.rgb.shape[:2]
    height = max(1, round(h * PANEL_WIDTH / w))

    def small(image: np.ndarray, resample: int) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((PANEL_WIDTH, height), resample))

    background = small(frame.rgb, Image.Resampling.BOX) // 2 if panel_image else np.full((height, PANEL_WIDTH, 3), 96, np.uint8)
    points = background.copy()
    if frame.labels is not None:
        labels = frame.labels[index]
        keep = labels != IGNORE
        pu = np.minimum(u[keep] * PANEL_WIDTH // w, PANEL_WIDTH - 1)
        pv = np.minimum(v[keep] * height // h, height - 1)
        points[pv, pu] = colours[labels[keep]]
    tiles = ([small(frame.rgb, Image.Resampling.BOX)] if panel_image else []) + [
        small(colours[masks[name]], Image.Resampling.NEAREST) for name in INPUT_SETS] + [points]
    captions = ([frame.name] if panel_image else []) + [f"{name} (prediction)" for name in INPUT_SETS] + ["labelled LiDAR points"]
    row = Image.fromarray(np.concatenate(tiles, axis=1))
    draw = ImageDraw.Draw(row)
    for i, text in enumerate(captions):
        draw.rectangle([i * PANEL_WIDTH + 2, 2, i * PANEL_WIDTH + 6 + 6 * len(text), 14], fill=(0, 0, 0))
        draw.text((i * PANEL_WIDTH + 4, 3), text, fill=(255, 255, 255))
    return np.asarray(row)


def _write_reports(out: Path, summary: dict, name: str, classes: tuple[str, ...]) -> None:
    import json

    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    points = sum(f.get("labelled_points", 0) for f in summary["per_frame"])
    lines = [f"# {name} on {summary['dataset']}: camera only against camera + LiDAR", "",
             f"{summary['frames']} frames, {points} labelled LiDAR points in view, network input "
             f"{', '.join(summary['network_input'])}, LiDAR intensity read as '{summary['lidar_intensity']}'. "
             "IoU at the labelled points; mIoU over the classes present among them.", "",
             "| input | mIoU | point accuracy |", "|---|---|---|"]  # fmt: skip
    lines += [f"| {s} | {summary[s]['miou']} | {summary[s]['point_accuracy']:.2f} |" for s in INPUT_SETS]
    present = [c for c in classes if c in summary["camera"]["per_class_iou"]]
    lines += ["", "| class | " + " | ".join(INPUT_SETS) + " |", "|---|" + "---|" * len(INPUT_SETS)]
    lines += [f"| {c} | " + " | ".join(f"{summary[s]['per_class_iou'][c]:.2f}" for s in INPUT_SETS) + " |" for c in present]
    (out / "eval.md").write_text("\n".join(lines) + "\n")
