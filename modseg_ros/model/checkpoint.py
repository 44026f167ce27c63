"""Checkpoints: safetensors weights + a JSON sidecar; loading never unpickles.

``<name>.safetensors`` holds the state dict (floating tensors stored as float16 by default, which
halves the file and changes predictions negligibly; they are loaded back as float32).
``<name>.json`` holds what is needed to rebuild and use the model without the training code (model/sidecar.py
reads it, without torch):

    {"format": "modseg-segmenter", "version": 1, "name": ..., "model": SegmenterConfig,
     "classes": [...], "palette": [[r, g, b], ...], "modalities": [...],
     "inputs": {modality: {"encoding", "resize", "normalisation"}}, "encoding": EncodingConfig,
     "weights_sha256": ..., "training": {...}, "metrics": {...}}

Loading checks, each with an error naming the file: the file exists and is safetensors (a pickle
or ``torch.save`` archive is refused before anything reads it), the sidecar matches these weights
(sha256), the class list is the package's DELIVER list, and every tensor name and shape matches
the architecture.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modseg_ros.core.encoding import EncodingConfig
from modseg_ros.core.palette import CLASSES, PALETTE
from modseg_ros.core.types import MODALITIES
from modseg_ros.errors import CheckpointError
from modseg_ros.core.network_input import NORMALISATION, RESIZE_METHOD
from modseg_ros.model.architectures import build
from modseg_ros.model.segmenter import Segmenter
from modseg_ros.model.sidecar import FORMAT, VERSION, CheckpointInfo, read_sidecar, sidecar_path

ENCODING_DESCRIPTION = {
    "camera": "RGB",
    "depth": "[log range code, height above ground, |cos| normal-vertical], 0 = invalid",
    "lidar": "points projected into the camera: [log range code, intensity, height], 0 = no point",
    "events": "[negative count, positive count, recency of last event], 0 = no event",
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(
    model: Segmenter,
    path: str | Path,
    name: str | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    half: bool = True,
    lidar_intensity: str = "raw",
) -> Path:
    """Write ``path`` (.safetensors) and its sidecar; returns the weights path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint {path}: the weights file must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        state[key] = tensor.half() if half and tensor.is_floating_point() else tensor
    tmp = path.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    sidecar = {
        "format": FORMAT,
        "version": VERSION,
        "name": name or path.stem,
        "model": model.config.to_dict(),
        "classes": list(CLASSES),
        "palette": PALETTE.tolist(),
        "modalities": [m.value for m in MODALITIES],
        "inputs": {
            m.value: {
                "encoding": ENCODING_DESCRIPTION[m.value],
                "resize": RESIZE_METHOD[m],
                "normalisation": NORMALISATION[m],
            }
            for m in MODALITIES
        },
        "lidar_intensity": lidar_intensity,
        "encoding": EncodingConfig().to_dict(),
        "weights_sha256": _sha256(path),
        "training": training or {},
        "metrics": metrics or {},
    }
    side = sidecar_path(path)
    side.write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def _check_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file, reading only its first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"checkpoint {path} is a pickle / torch.save file; it is refused because unpickling can "
            "run arbitrary code. Convert it to safetensors (safetensors.torch.save_file) with a sidecar"
        )
    if len(head) < 9 or head[8:9] != b"{" or struct.unpack("<Q", head[:8])[0] > (1 << 28):
        raise CheckpointError(f"checkpoint {path} is not a safetensors file")


def load_checkpoint(path: str | Path) -> tuple[Segmenter, CheckpointInfo]:
    """Rebuild the model of a checkpoint (float32, eval mode) and its sidecar info."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    _check_safetensors(path)
    info = read_sidecar(path)
    expected_sha = json.loads(sidecar_path(path).read_text()).get("weights_sha256")
    if expected_sha and expected_sha != _sha256(path):
        raise CheckpointError(f"checkpoint {path} does not match its sidecar {sidecar_path(path)} (sha256 differs)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read as safetensors: {err}") from err
    model = build(info.config)
    reference = model.state_dict()
    problems = [f"missing '{k}'" for k in reference if k not in state]
    problems += [f"unexpected '{k}'" for k in state if k not in reference]
    problems += [
        f"'{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in reference.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise CheckpointError(f"checkpoint {path} does not fit architecture '{info.config.arch}': {shown}")
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()})
    return model.eval(), info
