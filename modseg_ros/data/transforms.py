"""DELIVER's training augmentation (``semseg/augmentations_mm.py``) on the project's encodings.

In DELIVER's order: ColorJitter (p 0.2, camera only; brightness, contrast, saturation ~U(0.5, 1.5)),
horizontal flip (p 0.5, all modalities and the label), 3×3 Gaussian blur (p 0.2, camera only,
σ ~U(0.1, 2.0)), random resized crop (scale r ~U(0.5, 2.0) of the size that fits the crop, random
crop, padding 0 for images and 255 for the label), normalisation. One deviation: images are resized
per modality with core/network_input.py's methods (sparse LiDAR and events keep whole returns; DELIVER
resizes every modality bilinearly), so training sees the same resizing as inference.

Real-camera robustness (``TrainAugmentation.real_camera``, on for mixed real/world training): the
camera also gets an exposure (gamma) change, sensor noise, a JPEG round trip and a stronger colour
jitter, so that neither domain's camera looks like the only one; a LiDAR image may be cut to a
narrower horizontal field of view (a sensor that covers part of the camera's view).

Both transforms return network inputs: ``{modality: (3, h, w) float32}`` and the label.
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from modseg_ros.core.network_input import LIDAR_INTENSITY, normalise, resize_encoding
from modseg_ros.core.palette import IGNORE
from modseg_ros.core.types import Modality


def nearest_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = ((np.arange(size[0]) + 0.5) * label.shape[0] / size[0]).astype(np.int64)
    cols = ((np.arange(size[1]) + 0.5) * label.shape[1] / size[1]).astype(np.int64)
    return label[rows][:, cols]


def _grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]


def color_jitter(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = rgb.astype(np.float32)
    x = x * rng.uniform(0.5, 1.5)  # brightness
    x = np.clip(x, 0, 255)
    x = _grey(x).mean() + (x - _grey(x).mean()) * rng.uniform(0.5, 1.5)  # contrast
    x = np.clip(x, 0, 255)
    g = _grey(x)
    x = g + (x - g) * rng.uniform(0.5, 1.5)  # saturation
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_blur3(rgb: np.ndarray, sigma: float) -> np.ndarray:
    k = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * sigma**2))
    k = (k / k.sum()).astype(np.float32)
    x = np.pad(rgb.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode="reflect")
    x = k[0] * x[:, :-2] + k[1] * x[:, 1:-1] + k[2] * x[:, 2:]
    x = k[0] * x[:-2] + k[1] * x[1:-1] + k[2] * x[2:]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def exposure(rgb: np.ndarray, gamma: float, gain: float) -> np.ndarray:
    """A different exposure and tone curve: ``255 · gain · (x/255)^gamma``."""
    x = gain * np.power(rgb.astype(np.float32) / 255.0, gamma) * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def sensor_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    x = rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


def narrow_field_of_view(image: np.ndarray, keep: float, rng: np.random.Generator) -> np.ndarray:
    """Zero the columns outside a random band of ``keep`` × the width (no point there)."""
    w = image.shape[1]
    width = max(1, round(w * keep))
    left = int(rng.integers(0, w - width + 1))
    out = np.zeros_like(image)
    out[:, left : left + width] = image[:, left : left + width]
    return out


def real_camera_augmentation(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, stronger colour, noise and compression: the spread of real cameras."""
    if rng.random() < 0.3:
        rgb = exposure(rgb, rng.uniform(0.6, 1.6), rng.uniform(0.7, 1.3))
    if rng.random() < 0.3:
        rgb = color_jitter(rgb, rng)
    if rng.random() < 0.25:
        rgb = sensor_noise(rgb, rng.uniform(2.0, 10.0), rng)
    if rng.random() < 0.25:
        rgb = jpeg_round_trip(rgb, int(rng.integers(30, 91)))
    return rgb


@dataclass(frozen=True)
class TrainAugmentation:
    size: tuple[int, int]  # (h, w) crop = network input size
    scale_range: tuple[float, float] = (0.5, 2.0)
    jitter_p: float = 0.2
    flip_p: float = 0.5
    blur_p: float = 0.2
    real_camera: bool = False  # exposure, noise, JPEG, more colour (mixed real/world training)
    narrow_lidar_p: float = 0.0  # chance of cutting the LiDAR image to a narrower field of view
    lidar_intensity: str = "raw"  # core/network_input.py LIDAR_INTENSITY

    def __post_init__(self) -> None:
        if self.lidar_intensity not in LIDAR_INTENSITY:
            raise ValueError(f"lidar_intensity must be one of {', '.join(LIDAR_INTENSITY)}, got {self.lidar_intensity!r}")

    def __call__(
        self, encodings: Mapping[Modality, np.ndarray], label: np.ndarray, rng: np.random.Generator
    ) -> tuple[dict[Modality, np.ndarray], np.ndarray]:
        enc = dict(encodings)
        if Modality.CAMERA in enc and rng.random() < self.jitter_p:
            enc[Modality.CAMERA] = color_jitter(enc[Modality.CAMERA], rng)
        if rng.random() < self.flip_p:
            enc = {m: img[:, ::-1] for m, img in enc.items()}
            label = label[:, ::-1]
        if Modality.CAMERA in enc and rng.random() < self.blur_p:
            enc[Modality.CAMERA] = gaussian_blur3(enc[Modality.CAMERA], rng.uniform(0.1, 2.0))
        if Modality.CAMERA in enc and self.real_camera:
            enc[Modality.CAMERA] = real_camera_augmentation(enc[Modality.CAMERA], rng)
        if Modality.LIDAR in enc and rng.random() < self.narrow_lidar_p:
            enc[Modality.LIDAR] = narrow_field_of_view(enc[Modality.LIDAR], rng.uniform(0.4, 0.9), rng)
        h, w = self.size
        big_h, big_w = label.shape
        scale = rng.uniform(*self.scale_range) * min(h / big_h, w / big_w)
        rh, rw = max(1, round(big_h * scale)), max(1, round(big_w * scale))
        top = int(rng.integers(0, max(rh - h, 0) + 1))
        left = int(rng.integers(0, max(rw - w, 0) + 1))
        out_label = np.full((h, w), IGNORE, dtype=np.uint8)
        crop = nearest_label(label, (rh, rw))[top : top + h, left : left + w]
        out_label[: crop.shape[0], : crop.shape[1]] = crop
        inputs = {}
        for m, img in enc.items():
            resized = resize_encoding(m, np.ascontiguousarray(img), (rh, rw))[top : top + h, left : left + w]
            padded = np.zeros((h, w, 3), dtype=np.float32)
            padded[: resized.shape[0], : resized.shape[1]] = resized
            inputs[m] = normalise(m, padded, self.lidar_intensity)
        return inputs, out_label


@dataclass(frozen=True)
class EvalTransform:
    """Resize every modality to the network input; the label stays at its own resolution."""

    size: tuple[int, int]
    lidar_intensity: str = "raw"  # core/network_input.py LIDAR_INTENSITY

    def __call__(self, encodings: Mapping[Modality, np.ndarray], label: np.ndarray) -> tuple[dict[Modality, np.ndarray], np.ndarray]:
        inputs = {m: normalise(m, resize_encoding(m, img, self.size), self.lidar_intensity) for m, img in encodings.items()}
        return inputs, label
