"""Camera-grid uint8 encodings (core/encoding.py) -> normalised network inputs, one way for all.

Training, evaluation, the ONNX runtime and the node all call ``prepare``, so the network sees the
same numbers offline and live. numpy only (the ONNX backend needs no torch for it).

Resizing to the network's input size is per modality, because the encodings differ in kind
(output pixel = a block of source pixels; blocks are adaptive, so any size ratio works, and
enlarging repeats the nearest pixel):

==========  =========================  ==============================================================
modality    downscale                  why
==========  =========================  ==============================================================
camera      block mean (area)          dense image: area averaging is the anti-aliased resize
depth       mean of valid pixels       dense with holes (0 = invalid): holes must not pull range down
lidar       nearest point in block     sparse: a mean with empty pixels would fade and mix points;
                                       the point with the highest range code (nearest) wins, with
                                       its intensity and height (one real return, never a blend)
events      counts summed, recency max a coarser pixel collects every event of its area, as a
                                       lower-resolution event sensor would
==========  =========================  ==============================================================

Normalisation (as DELIVER's loader): camera /255 then ImageNet mean/std; depth, LiDAR and events
/255 only, so "no measurement" stays exactly 0 - the same value an absent modality has under the
benchmark's zero-fill protocol.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from modseg_ros.core.types import MODALITIES, Modality

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

RESIZE_METHOD = {
    Modality.CAMERA: "block mean",
    Modality.DEPTH: "mean of valid pixels",
    Modality.LIDAR: "nearest point per block",
    Modality.EVENTS: "event counts summed, recency max",
}
NORMALISATION = {
    Modality.CAMERA: "x/255, then ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225)",
    Modality.DEPTH: "x/255 (invalid = 0)",
    Modality.LIDAR: "x/255 (no point = 0)",
    Modality.EVENTS: "x/255, summed counts clipped at 1 (no event = 0)",
}


def _block_starts(src: int, dst: int) -> np.ndarray:
    return (np.arange(dst, dtype=np.int64) * src) // dst


def _block_reduce(ufunc: np.ufunc, x: np.ndarray, size: tuple[int, int], dtype: type | None = None) -> np.ndarray:
    """Reduce H×W×C blocks with ``ufunc`` (adaptive blocks; enlarging repeats pixels), rows then
    columns, accumulating in ``dtype`` (default: ``x``'s).

    Where an axis divides evenly (512 -> 128), the blocks are combined from strided slices, the
    same operations in the same order as ``ufunc.reduceat`` (identical results) and 10× faster.
    """
    for axis, dst in enumerate(size):
        src = x.shape[axis]
        if src % dst:
            x = ufunc.reduceat(x, _block_starts(src, dst), axis=axis, dtype=dtype)
            continue
        factor = src // dst
        lead = (slice(None),) * axis
        combined = x[(*lead, slice(0, None, factor))].astype(dtype or x.dtype)
        for offset in range(1, factor):
            ufunc(combined, x[(*lead, slice(offset, None, factor))], out=combined)
        x = combined
    return x


def _block_counts(src: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Pixels per block (1 for repeated pixels when enlarging), (h, w, 1)."""
    counts = []
    for n, m in zip(src, size):
        starts = _block_starts(n, m)
        counts.append(np.maximum(np.diff(np.append(starts, n)), 1))
    return (counts[0][:, None] * counts[1][None, :])[..., None].astype(np.float32)


def resize_encoding(modality: Modality, image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H×W×3 uint8 encoding -> h×w×3 float32 in [0, 1], resized as the table above says."""
    if image.shape[:2] == tuple(size):
        return image.astype(np.float32) / 255.0
    if modality is Modality.CAMERA:
        total = _block_reduce(np.add, image, size, np.float32)
        return total / _block_counts(image.shape[:2], size) / 255.0
    if modality is Modality.DEPTH:
        valid = (image[..., :1] > 0).astype(np.float32)
        masked = image.astype(np.float32)
        masked *= valid  # (in place: half the time of a new array)
        total = _block_reduce(np.add, masked, size)
        count = _block_reduce(np.add, valid, size)
        return np.where(count > 0, total / np.maximum(count, 1.0), 0.0).astype(np.float32) / 255.0
    if modality is Modality.LIDAR:
        # one sortable key per pixel: range code first (nearest = highest), then intensity, height
        px = image.astype(np.uint32)
        key = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]
        best = _block_reduce(np.maximum, key[..., None], size)[..., 0]
        out = np.stack([(best >> 16) & 255, (best >> 8) & 255, best & 255], axis=-1)
        return out.astype(np.float32) / 255.0
    if modality is Modality.EVENTS:
        counts = _block_reduce(np.add, image[..., :2], size, np.float32)
        recency = _block_reduce(np.maximum, image[..., 2:], size).astype(np.float32)
        return np.concatenate([np.minimum(counts / 255.0, 1.0), recency / 255.0], axis=-1)
    raise ValueError(f"unknown modality {modality!r}")


# How a checkpoint wants the LiDAR intensity channel: as encoded ("raw": the driver's value scaled
# into [0, 1]), or as each point's rank among the intensities of the points in the image
# ("scan_rank", mid-rank in (0, 1]): independent of a sensor's intensity scale and distribution
# (any monotonic calibration gives the same ranks), so a network trained on one LiDAR reads another.
LIDAR_INTENSITY = ("raw", "scan_rank")


def scan_rank(intensity01: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each valid pixel's intensity -> its mid-rank among the valid pixels' (0 elsewhere).
    O(n): the image holds at most 256 distinct levels (8-bit channel), so the ranks come from
    their histogram."""
    levels = np.rint(intensity01 * 255.0).astype(np.int64)
    counts = np.bincount(levels[valid], minlength=256).astype(np.float32)
    total = counts.sum()
    if total == 0:
        return np.zeros_like(intensity01)
    mid_rank = (np.cumsum(counts) - 0.5 * counts) / total  # (256,)
    return np.where(valid, mid_rank[levels], 0.0).astype(np.float32)


def normalise(modality: Modality, image01: np.ndarray, lidar_intensity: str = "raw") -> np.ndarray:
    """h×w×3 float32 in [0, 1] -> 3×h×w float32 network input."""
    if modality is Modality.CAMERA:
        image01 = (image01 - IMAGENET_MEAN) / IMAGENET_STD
    elif modality is Modality.LIDAR and lidar_intensity == "scan_rank":
        image01 = image01.copy()
        image01[..., 1] = scan_rank(image01[..., 1], image01[..., 0] > 0)
    return np.ascontiguousarray(image01.transpose(2, 0, 1), dtype=np.float32)


def check_encoding(modality: Modality, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"{modality} encoding must be an H×W×3 uint8 array, got {got}")


def encode_input(modality: Modality, image: np.ndarray, size: tuple[int, int], lidar_intensity: str = "raw") -> np.ndarray:
    """One modality's H×W×3 uint8 encoding -> 3×h×w float32 network input (``lidar_intensity``: the
    checkpoint's, ``LIDAR_INTENSITY``)."""
    check_encoding(modality, image)
    return normalise(modality, resize_encoding(modality, image, size), lidar_intensity)


def prepare(
    encoded: Mapping[Modality, np.ndarray], size: tuple[int, int], zero_fill: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The present modalities' encodings -> (images (M, 3, h, w) float32, modality_index (M,) int64).

    Canonical modality order. With ``zero_fill`` every modality gets a slot and absent ones are
    zeros after normalisation (the benchmark's protocol, docs/design.md#d12-reporting); otherwise absent modalities
    are simply not there.
    """
    return stack_inputs({m: encode_input(m, image, size) for m, image in encoded.items()}, size, zero_fill)


def stack_inputs(
    inputs: Mapping[Modality, np.ndarray], size: tuple[int, int], zero_fill: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``prepare`` for network inputs already made by ``encode_input`` (the node makes each one when
    its message arrives, while the bundle waits for the others)."""
    order = MODALITIES if zero_fill else tuple(m for m in MODALITIES if m in inputs)
    if not any(m in inputs for m in MODALITIES):
        raise ValueError("no modality to segment: the encoded inputs are empty")
    images = np.zeros((len(order), 3, size[0], size[1]), dtype=np.float32)
    for slot, modality in enumerate(order):
        if modality in inputs:
            x = inputs[modality]
            if not isinstance(x, np.ndarray) or x.shape != images.shape[1:]:
                got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
                raise ValueError(f"{modality} network input must be 3×{size[0]}×{size[1]} (encode_input), got {got}")
            images[slot] = x
    index = np.array([MODALITIES.index(m) for m in order], dtype=np.int64)
    return images, index


def aspect_size(shape: tuple[int, int], pixels: int) -> tuple[int, int]:
    """A network input size (h, w), multiples of 32, with ``shape``'s aspect ratio and about ``pixels``
    pixels (the network takes any such size: no squashing of a 4:3 image into a 2:1 input)."""
    h, w = shape
    height = max(32, round(math.sqrt(pixels * h / w) / 32) * 32)
    width = max(32, round(height * w / h / 32) * 32)
    return height, width
