"""Frames of a recording (``modseg replay-eval --record``) rendered to PNG: what Foxglove or RViz
shows for the same topics at the same instant, for documentation and quick looks without a viewer.

Each picture is one published mask: the camera image the node fused (or the nearest one), the
overlay, the colour mask, the ground truth (if recorded), the labelled LiDAR points from above
(``segmentation/points``, x forward, y left) and the health of every sensor at that time with
what was fused (``sensor_health``, ``segmentation/info``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modseg_ros.core.config import NodeConfig, resolved_topic
from modseg_ros.core.palette import CLASSES, PALETTE, colorize
from modseg_ros.core.types import HealthLevel
from modseg_ros.data.bags import Bag
from modseg_ros.errors import BagError
from modseg_ros.eval.replay_figures import LEVEL_COLOURS, _pyplot

INFO, MASK, COLOR, OVERLAY, POINTS, HEALTH = ("/segmentation/info", "/segmentation/mask", "/segmentation/color_mask",
                                              "/segmentation/overlay", "/segmentation/points", "/sensor_health")  # fmt: skip


@dataclass
class _Frame:
    log_ns: int
    stamp_ns: int
    info: object
    images: dict[str, np.ndarray]
    points: np.ndarray | None
    health: object | None


def _stamp(header) -> int:
    return _time(header.stamp)


def _time(t) -> int:
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _nearest(bag: Bag, topic: str, stamp_ns: int, convert_fn) -> np.ndarray | None:
    if topic not in bag.topics:
        return None
    best, best_delta = None, None
    for message in bag.messages([topic]):
        msg = bag.deserialize(message)
        delta = abs(_stamp(msg.header) - stamp_ns)
        if best_delta is None or delta < best_delta:
            best, best_delta = msg, delta
    return None if best is None else np.array(convert_fn(best, topic))


def render_recording(bag_path: Path, out: Path, frames: int = 3, params: Path | None = None,
                     at_s: Sequence[float] = ()) -> list[Path]:  # fmt: skip
    """Render ``frames`` masks spread over the recording (or those published nearest to the times
    ``at_s``, seconds from its start) to ``out/frame_<t>.png``; returns the paths."""
    from modseg_ros.core import messages

    config = NodeConfig.load(params)
    with Bag(bag_path) as bag:
        if INFO not in bag.topics:
            raise BagError(f"{bag.path}: no {INFO} topic: not a recording of the node (modseg replay-eval --record)")
        infos = list(bag.messages([INFO]))
        if at_s:
            log_s = np.array([(m.log_ns - bag.start_ns) / 1e9 for m in infos])
            picks = {int(np.argmin(np.abs(log_s - t))) for t in at_s}
        else:
            picks = {round(x) for x in np.linspace(0, len(infos) - 1, min(frames, len(infos)))}
        chosen = [infos[i] for i in sorted(picks)]
        wanted = {_stamp(bag.deserialize(m).header) for m in chosen}
        by_stamp: dict[int, dict[str, object]] = {s: {} for s in wanted}
        for message in bag.messages([t for t in (MASK, COLOR, OVERLAY, POINTS) if t in bag.topics]):
            msg = bag.deserialize(message)
            if _stamp(msg.header) in by_stamp:
                by_stamp[_stamp(msg.header)][message.topic] = msg
        health = [(m.log_ns, bag.deserialize(m)) for m in bag.messages([HEALTH])] if HEALTH in bag.topics else []
        camera_topic = resolved_topic(config.topics.camera)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for message in chosen:
            info = bag.deserialize(message)
            stamp = _stamp(info.header)
            found = by_stamp[stamp]
            images = {t: np.array(messages.camera_frame(found[t], t).image) for t in (COLOR, OVERLAY) if t in found}
            used = dict(zip(info.modalities_used, (_time(s) for s in info.modality_stamps)))
            camera = _nearest(bag, camera_topic, used.get("camera", stamp), lambda m, t: messages.camera_frame(m, t).image)
            if camera is not None:
                images["camera"] = camera
            labels = _labels(bag, config, stamp)
            if labels is not None:
                images["ground truth"] = colorize(labels)
            points = messages.cloud_array(found[POINTS], POINTS).reshape(-1) if POINTS in found else None
            state = next((h for log, h in reversed(health) if log <= message.log_ns), None)
            frame = _Frame(message.log_ns, stamp, info, images, points, state)
            t_s = (message.log_ns - bag.start_ns) / 1e9
            path = out / f"frame_{t_s:07.3f}s.png"
            _draw(frame, path, f"{bag.name}  t = {t_s:.2f} s")
            paths.append(path)
    return paths


def _labels(bag: Bag, config: NodeConfig, stamp_ns: int) -> np.ndarray | None:
    from modseg_ros.eval.replay import decode_labels

    gt = config.ground_truth
    if gt.topic not in bag.topics:
        return None
    for message in bag.messages([gt.topic]):
        msg = bag.deserialize(message)
        if _stamp(msg.header) == stamp_ns:
            return decode_labels(msg, gt)
    return None


def _draw(frame: _Frame, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.2), layout="constrained")
    tiles = [("camera", "camera (input)"), (OVERLAY, "segmentation/overlay"), (COLOR, "segmentation/color_mask"),
             ("ground truth", "ground truth")]  # fmt: skip
    for ax, (key, name) in zip(axes.flat[:4], tiles):
        ax.set_axis_off()
        ax.set_title(name, fontsize=9)
        if key in frame.images:
            ax.imshow(frame.images[key], interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="grey")
    _draw_points(axes.flat[4], frame.points)
    _draw_status(axes.flat[5], frame)
    shown = [i for i in range(len(CLASSES)) if COLOR in frame.images
             and (frame.images[COLOR].reshape(-1, 3) == PALETTE[i]).all(axis=1).any()]  # fmt: skip
    handles = [plt.Rectangle((0, 0), 1, 1, color=PALETTE[i] / 255.0) for i in shown]
    names = [CLASSES[i] for i in shown]
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 8), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_points(ax, points: np.ndarray | None) -> None:
    ax.set_title("segmentation/points (from above)", fontsize=9)
    if points is None or len(points) == 0:
        ax.text(0.5, 0.5, "no labelled points", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_axis_off()
        return
    # points are in the output frame (camera optical: x right, z forward): seen from above, z up the page
    labelled = points["label"] < len(CLASSES)
    ax.scatter(points["x"][~labelled], points["z"][~labelled], c="#cfcfcf", s=1, linewidths=0)  # outside the image
    ax.scatter(points["x"][labelled], points["z"][labelled], c=PALETTE[points["label"][labelled]] / 255.0, s=3, linewidths=0)
    ax.set_xlim(-30, 30)
    ax.set_ylim(-10, 50)
    ax.set_aspect("equal")
    ax.set_xlabel("right (m)", fontsize=8)
    ax.set_ylabel("forward (m)", fontsize=8)
    ax.tick_params(labelsize=7)


def _draw_status(ax, frame: _Frame) -> None:
    ax.set_axis_off()
    ax.set_title("sensor_health, segmentation/info", fontsize=9)
    rows = []
    if frame.health is not None:
        for sensor in frame.health.sensors:
            level = HealthLevel(int(sensor.level))
            rows.append((f"{sensor.modality:7s} {level.name:5s} {sensor.rate_hz:5.1f} Hz  {sensor.reason}"[:60], LEVEL_COLOURS[level]))
    info = frame.info
    weights = ", ".join(f"{m} {w:.2f}" for m, w in zip(info.modalities_used, info.modality_weights))
    rows += [("", "black"), (f"fused: {weights}", "black"), (f"missing: {', '.join(info.modalities_missing) or '-'}", "black"),
             (f"inference {info.inference_ms:.0f} ms, end to end {info.end_to_end_ms:.0f} ms", "black"), (f"model {info.model}", "black")]  # fmt: skip
    for i, (text, colour) in enumerate(rows):
        ax.text(0.0, 1.0 - i * 0.1, text, transform=ax.transAxes, fontsize=8, family="monospace", color=colour, va="top")
