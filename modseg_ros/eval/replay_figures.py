"""Pictures of a replay: the timeline, panels of selected frames, the overlay stream as a GIF."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modseg_ros.core.palette import colorize
from modseg_ros.core.types import MODALITIES, HealthLevel, Modality
from modseg_ros.eval.replay import NOMINAL, BagEvaluation, FrameScore, ScheduledFailure, health_series
from modseg_ros.eval.run import RunOutputs

LEVEL_COLOURS = {HealthLevel.OK: "#43a047", HealthLevel.WARN: "#fbc02d", HealthLevel.ERROR: "#e53935", HealthLevel.STALE: "#9e9e9e"}
MODALITY_COLOURS = {Modality.CAMERA: "#1e88e5", Modality.DEPTH: "#8e24aa", Modality.LIDAR: "#00897b", Modality.EVENTS: "#f4511e"}
TILE_WIDTH = 256  # panel tiles and GIF frames are scaled to this width at most
GIF_FRAMES = 150


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def timeline_png(path: Path, ev: BagEvaluation, outputs: RunOutputs, failures: Sequence[ScheduledFailure]) -> None:
    """Per-sensor health level, modalities fused per mask, per-frame mIoU and latency over time."""
    plt = _pyplot()
    origin = ev.origin_ns
    t0, t1 = ev.window_s
    fig, axes = plt.subplots(4, 1, figsize=(11, 7.2), sharex=True, gridspec_kw={"height_ratios": [2.0, 1.6, 1.5, 1.2]},
                             layout="constrained")  # fmt: skip
    health_ax, fused_ax, miou_ax, latency_ax = axes
    rows = {m: len(MODALITIES) - 1 - i for i, m in enumerate(MODALITIES)}  # camera on top

    for m in MODALITIES:
        series = health_series(outputs, m)
        for (s, level, _), nxt in zip(series, [*series[1:], None]):
            start = (s - origin) / 1e9
            stop = (nxt[0] - origin) / 1e9 if nxt is not None else t1
            if stop > start:
                health_ax.broken_barh([(start, stop - start)], (rows[m] - 0.3, 0.6), color=LEVEL_COLOURS[level], linewidth=0)
    for scheduled in failures:
        f = scheduled.failure
        start, stop = max(f.start_s, t0), min(f.end_s, t1)
        if stop <= start:
            continue  # outside the played window
        health_ax.broken_barh([(start, stop - start)], (rows[f.modality] + 0.32, 0.14), facecolor="black")
        health_ax.text(start, rows[f.modality] + 0.5, f.kind, fontsize=7, va="bottom", clip_on=True)
        for ax in (miou_ax, latency_ax):
            ax.axvspan(start, stop, color=MODALITY_COLOURS[f.modality], alpha=0.07, linewidth=0)
    health_ax.set_yticks([rows[m] for m in MODALITIES], [m.value for m in MODALITIES])
    health_ax.set_ylim(-0.6, len(MODALITIES) - 0.1)
    health_ax.set_title("sensor health; black bars: scheduled failures", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in LEVEL_COLOURS.values()]
    health_ax.legend(handles, [lvl.name for lvl in LEVEL_COLOURS], loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)

    times = [(m.stamp_ns - origin) / 1e9 for m in outputs.masks]
    for m in MODALITIES:
        used = [t for t, mask in zip(times, outputs.masks) if m in mask.modality_stamps]
        fused_ax.scatter(used, [rows[m]] * len(used), marker="|", s=60, color=MODALITY_COLOURS[m], linewidths=1.2)
    dropped = [f.t_s for f in ev.frames if f.mask is None]
    fused_ax.scatter(dropped, [-1] * len(dropped), marker="|", s=60, color="#616161", linewidths=1.2)
    fused_ax.set_yticks([rows[m] for m in MODALITIES] + [-1], [m.value for m in MODALITIES] + ["no mask"])
    fused_ax.set_ylim(-1.6, len(MODALITIES) - 0.4)
    fused_ax.set_title(f"modalities fused into each published mask ({len(outputs.masks)} masks, {len(dropped)} frames without one)", fontsize=9)

    scored = [(f.t_s, f.miou) for f in ev.frames if f.mask is not None and not math.isnan(f.miou)]
    if scored:
        miou_ax.plot(*zip(*scored), ".-", color="#3949ab", markersize=3, linewidth=0.8)
    miou_ax.set_ylabel("mIoU %", fontsize=8)
    miou_ax.set_ylim(0, 100)
    miou_ax.set_title("per-frame mIoU (classes present in the frame)" if ev.has_ground_truth else "no ground truth in this bag", fontsize=9)

    key = "end-to-end" if any(m.end_to_end_ms is not None for m in outputs.masks) else "compute"
    latency = [(t, m.end_to_end_ms if m.end_to_end_ms is not None else m.node_ms) for t, m in zip(times, outputs.masks)]
    if latency:
        latency_ax.plot(*zip(*latency), ".", color="#6d4c41", markersize=3)
    latency_ax.set_ylabel("ms", fontsize=8)
    latency_ax.set_title(f"{key} latency per mask", fontsize=9)
    latency_ax.set_xlabel("time from the recording's start (s)")
    latency_ax.set_xlim(t0, t1)
    miou = f"mIoU {ev.overall.confusion.miou():.1f}" if ev.has_ground_truth else "no ground truth"
    fig.suptitle(f"{ev.name} · {ev.condition} · {ev.mode} · {ev.model} · {miou}", fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def select_panel_frames(frames: Sequence[FrameScore], count: int) -> list[FrameScore]:
    """One frame with a mask per failure phase (its middle one), in time order, nominal first."""
    by_phase: dict[str, list[FrameScore]] = {}
    for f in frames:
        if f.mask is not None:
            by_phase.setdefault(f.phase, []).append(f)
    phases = sorted(by_phase, key=lambda p: (p != NOMINAL, by_phase[p][0].t_s))
    chosen = [by_phase[p][len(by_phase[p]) // 2] for p in phases[:count]]
    return sorted(chosen, key=lambda f: f.t_s)


@dataclass(frozen=True, eq=False)
class Panel:
    caption: str
    inputs: Mapping[Modality, np.ndarray]  # encodings the node fused (camera-grid H×W×3)
    labels: np.ndarray  # ground truth
    prediction: np.ndarray
    overlay: np.ndarray | None


def _scaled(image: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    if image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


def _viewable(modality: Modality, image: np.ndarray) -> np.ndarray:
    if modality is Modality.LIDAR:  # sparse projected points: thicken them to show at tile size
        from scipy.ndimage import grey_dilation

        return grey_dilation(image, size=(3, 3, 1))
    return image


def panels_png(path: Path, panels: Sequence[Panel]) -> None:
    """One row per frame: camera, depth, LiDAR, events inputs | ground truth | prediction | overlay."""
    from PIL import Image, ImageDraw

    rows = []
    for panel in panels:
        h, w = panel.labels.shape
        blank = np.full((h, w, 3), 40, np.uint8)
        tiles = [_viewable(m, panel.inputs[m]) if m in panel.inputs else blank for m in MODALITIES]
        tiles += [colorize(panel.labels), colorize(panel.prediction), panel.overlay if panel.overlay is not None else blank]
        names = [m.value if m in panel.inputs else f"{m.value}: not used" for m in MODALITIES] + ["ground truth", "prediction", "overlay"]
        tiles = [_scaled(t if t.shape[:2] == (h, w) else _resize(t, h, w), TILE_WIDTH) for t in tiles]
        strip = np.concatenate(tiles, axis=1)
        header = np.full((16, strip.shape[1], 3), 255, np.uint8)
        image = Image.fromarray(np.concatenate([header, strip], axis=0))
        draw = ImageDraw.Draw(image)
        draw.text((4, 2), panel.caption, fill=(0, 0, 0))
        tile_w = tiles[0].shape[1]
        for i, name in enumerate(names):
            x, y = i * tile_w + 3, 19
            draw.rectangle([x - 2, y - 1, x + 6 * len(name) + 2, y + 10], fill=(0, 0, 0))
            draw.text((x, y - 1), name, fill=(255, 255, 255))
        rows.append(np.asarray(image))
    if rows:
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    return image[rows][:, cols]


def overlay_gif(path: Path, ev: BagEvaluation, outputs: RunOutputs, fps: float = 10.0) -> int:
    """The overlay stream with a caption (time, fused modalities, failure phase); returns the frames written."""
    from PIL import Image, ImageDraw

    phases = {f.mask: f.phase for f in ev.frames if f.mask is not None}
    masks = [(i, m) for i, m in enumerate(outputs.masks) if m.overlay is not None]
    stride = max(1, math.ceil(len(masks) / GIF_FRAMES))
    frames = []
    for i, mask in masks[::stride]:
        image = Image.fromarray(_scaled(mask.overlay, TILE_WIDTH * 5 // 4))
        canvas = Image.new("RGB", (image.width, image.height + 14), (0, 0, 0))
        canvas.paste(image, (0, 14))
        t = (mask.stamp_ns - ev.origin_ns) / 1e9
        ImageDraw.Draw(canvas).text((3, 1), f"t {t:5.2f}s  fused {mask.subset:<4}  {phases.get(i, '')}", fill=(255, 255, 255))
        frames.append(canvas)
    if frames:
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    return len(frames)
