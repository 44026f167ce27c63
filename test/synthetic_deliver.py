"""A small DELIVER-layout folder with learnable structure, written in milliseconds for the tests.

Each frame: sky on top, buildings in the middle, road below with lane lines, a few cars. Every
modality shows the scene its own way (camera colours, depth/LiDAR range by row, events on edges),
so a network can learn it from any single modality.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from modseg_ros.core.palette import CLASS_ID, PALETTE

SKY, BUILDING, ROAD, LINE, CAR = (CLASS_ID[n] for n in ("Sky", "Building", "Road", "RoadLine", "Cars"))


def scene(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    label = np.full((h, w), ROAD, dtype=np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.45))
    skyline = horizon - rng.integers(0, h // 5, size=w // 8 + 1).repeat(8)[:w]
    rows = np.arange(h)[:, None]
    label[rows < skyline[None]] = SKY
    label[(rows >= skyline[None]) & (rows < horizon + h // 10)] = BUILDING
    label[rows[-h // 3 :: 4].ravel(), w // 2 - 1 : w // 2 + 1] = LINE
    for _ in range(rng.integers(1, 4)):
        ch, cw = rng.integers(h // 10, h // 5), rng.integers(w // 10, w // 5)
        top, left = rng.integers(horizon, h - ch), rng.integers(0, w - cw)
        label[top : top + ch, left : left + cw] = CAR
    return label


def encodings(label: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = label.shape
    camera = np.clip(PALETTE[label].astype(np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    rng_code = np.linspace(60, 250, h, dtype=np.float32)[:, None].repeat(w, 1)
    rng_code[label == CAR] += 30
    depth = np.stack([rng_code, 40.0 * (label == BUILDING) + 80, 200.0 * (label != BUILDING)], -1)
    depth[label == SKY] = 0
    lidar = np.zeros((h, w, 3), dtype=np.float32)
    lidar[::4] = np.stack([rng_code, 100.0 + 20 * label, 120.0 + 4 * label], -1)[::4]
    lidar[label == SKY] = 0
    edges = np.zeros((h, w), dtype=bool)
    edges[:, 1:] |= label[:, 1:] != label[:, :-1]
    edges[1:] |= label[1:] != label[:-1]
    events = np.zeros((h, w, 3), dtype=np.uint8)
    events[edges] = (128, 64, 200)
    events[label == CAR, 1] = 64
    return {"rgb": camera, "depth": np.clip(depth, 0, 255).astype(np.uint8),
            "lidar": np.clip(lidar, 0, 255).astype(np.uint8), "event": events}  # fmt: skip


FOLDERS = {"rgb": "img", "depth": "hha", "lidar": "lidar", "event": "event", "semantic": "semantic"}


def write(root: Path, frames: int = 8, size: tuple[int, int] = (64, 128), seed: int = 0,
          splits: tuple[str, ...] = ("train", "val"), conditions: tuple[str, ...] = ("sun", "night")) -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    for split in splits:
        for i in range(frames):
            condition = conditions[i % len(conditions)]
            label = scene(rng, *size)
            files = encodings(label, rng) | {"semantic": label + 1}  # DELIVER stores ids + 1, 0 = unlabelled
            seq = f"MAP_{seed}_point{i // 4}" + ("_motionblur" if i % 5 == 4 else "")
            for tag, image in files.items():
                folder = root / FOLDERS[tag] / condition / split / seq
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{i:06d}_{tag}_front.png")
    return root
