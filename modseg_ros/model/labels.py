"""Class ids from logits, in numpy: the one implementation for both backends, evaluation, training
validation and ``modseg bench labels`` (callers holding torch logits pass ``.numpy()`` of them; the
ONNX path runs without torch).

The definition: ``labels_at`` is the argmax over classes of the logits upsampled bilinearly to the
output size (align_corners=False, as torch's ``F.interpolate``), in float32, each output pixel's
scores summed as s00·(u·l) + s01·(u·r) + s10·(d·l) + s11·(d·r) (its four source pixels, rows
u/d, columns l/r), the lowest class id winning an exact tie. ``labels_on_grid`` bounds the cost of
large outputs: ``labels_at`` on the grid (the network's input size), then the nearest of those
labels for each output pixel. A 1920×1080 mask costs what one at the grid's size does; mIoU on 60
unseen world frames within 0.05 of bilinear labels at full resolution (BENCHMARKS.md).

The shortcut that makes it fast: a convex combination of score vectors that share their argmax has
that argmax too, so a pixel whose four source pixels agree on the class, each ahead of its
runner-up by more than the interpolation's rounding (``_SAFE_MARGIN``), takes that class; only the
others (class borders: about a quarter of the shipped model's logit cells on the synthetic street)
are interpolated, a few thousand at a time. With one thread it is as fast as or faster than torch's
``F.interpolate`` + argmax on the same logits (BENCHMARKS.md). torch's own interpolation may pick
the other class at an exact tie: its float32 sums follow the memory layout and instruction set.
"""
from __future__ import annotations

import numpy as np

# Score gaps (relative to the largest |logit|) that the interpolation's float32 rounding could close.
_SAFE_MARGIN = 1e-5
# Interpolated scores per chunk of border pixels (float32 values): 512 kB, within a core's L2 cache.
_CHUNK_SCORES = 1 << 17


def labels_at(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class ids (B, H, W) uint8 of float32 logits (B, C, h, w) upsampled bilinearly to ``size``."""
    batch, classes = logits.shape[:2]
    if classes < 2:
        return np.zeros((batch, *size), dtype=np.uint8)
    scores = np.ascontiguousarray(logits.transpose(0, 2, 3, 1))  # (B, h, w, C): each pixel's scores contiguous
    best_class = scores.argmax(axis=-1).astype(np.uint8)
    top_two = np.partition(scores, classes - 2, axis=-1)[..., -2:]
    classes_padded = _pad_last(best_class)
    margins = _pad_last(top_two[..., 1] - top_two[..., 0])
    near_tie = np.float32(_SAFE_MARGIN) * (np.float32(1.0) + np.abs(logits).max())
    corner = classes_padded[:, :-1, :-1]
    settled = (corner == classes_padded[:, 1:, :-1]) & (corner == classes_padded[:, :-1, 1:]) & (corner == classes_padded[:, 1:, 1:])
    settled &= np.minimum(np.minimum(margins[:, :-1, :-1], margins[:, 1:, :-1]),
                          np.minimum(margins[:, :-1, 1:], margins[:, 1:, 1:])) > near_tie  # fmt: skip
    rows, rows_clear = _source_taps(logits.shape[2], size[0])
    cols, cols_clear = _source_taps(logits.shape[3], size[1])
    labels = np.ascontiguousarray(corner[:, rows][:, :, cols])  # (B, H, W) the class of each pixel's first source pixel
    unsettled = ~(settled[:, rows][:, :, cols] & rows_clear[:, None] & cols_clear[None, :])
    exact = np.flatnonzero(unsettled)
    step = max(1, _CHUNK_SCORES // classes)  # a few thousand pixels at a time: the scores stay in cache
    for start in range(0, len(exact), step):
        pixels = exact[start:start + step]
        labels.reshape(-1)[pixels] = _interpolated(scores, size, pixels).argmax(axis=-1)
    return labels


def labels_on_grid(logits: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Class ids (B, H, W) uint8 at ``size``: ``labels_at`` on ``grid`` where ``size`` is larger (each
    axis on its own), then the nearest of those labels for each output pixel."""
    if size[0] <= grid[0] and size[1] <= grid[1]:
        return labels_at(logits, size)
    small = labels_at(logits, (min(size[0], grid[0]), min(size[1], grid[1])))
    # nearest-neighbour source indices in float32 (as torch's F.interpolate mode="nearest-exact" computes them)
    rows = ((np.arange(size[0], dtype=np.float32) + np.float32(0.5)) * np.float32(small.shape[1] / size[0])).astype(np.int64)
    cols = ((np.arange(size[1], dtype=np.float32) + np.float32(0.5)) * np.float32(small.shape[2] / size[1])).astype(np.int64)
    return small[:, rows][:, :, cols]


def _interpolated(scores: np.ndarray, size: tuple[int, int], pixels: np.ndarray) -> np.ndarray:
    """The bilinearly interpolated scores (N, C) float32 of the output pixels at flat indices ``pixels``
    of (B, H, W): s00·(u·l) + s01·(u·r) + s10·(d·l) + s11·(d·r), summed in that order."""
    _, h, w, classes = scores.shape
    row0, row1, up, down = _weights(h, size[0])
    col0, col1, left, right = _weights(w, size[1])
    b, rest = np.divmod(pixels, size[0] * size[1])
    y, x = np.divmod(rest, size[1])
    top, bottom = b * (h * w) + row0[y] * w, b * (h * w) + row1[y] * w  # flat (B·h·w) index of each source row
    c0, c1, u, d, lf, rt = col0[x], col1[x], up[y], down[y], left[x], right[x]
    flat = scores.reshape(-1, classes)
    out = np.take(flat, top + c0, axis=0)
    out *= (u * lf)[:, None]
    term = np.empty_like(out)
    for rows, cols, weight in ((top, c1, u * rt), (bottom, c0, d * lf), (bottom, c1, d * rt)):
        np.take(flat, rows + cols, axis=0, out=term)
        term *= weight[:, None]
        out += term
    return out


def _weights(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear interpolation (align_corners=False) along one axis, in
    float32 as torch's CPU kernels compute them."""
    position = np.maximum(np.float32(src) / np.float32(dst) * (np.arange(dst, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    first = position.astype(np.int64)
    second_weight = np.clip(position - first.astype(np.float32), np.float32(0.0), np.float32(1.0))
    return first, np.minimum(first + 1, src - 1), np.float32(1.0) - second_weight, second_weight


def _pad_last(x: np.ndarray) -> np.ndarray:
    """(B, h, w) -> (B, h + 1, w + 1) with the last row and column repeated (interpolation clamps there)."""
    return np.pad(x, ((0, 0), (0, 1), (0, 1)), mode="edge")


def _source_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """The first source index bilinear interpolation reads for each of ``dst`` output indices, and
    whether it is certain: a position within rounding of an integer could be floored either way, so
    those outputs are interpolated exactly."""
    position = np.maximum((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5, 0.0)
    first = np.floor(position)
    clear = (position - first > 1e-4) & (first + 1.0 - position > 1e-4) | (position == 0.0)
    return np.minimum(first.astype(np.int64), src - 1), clear
