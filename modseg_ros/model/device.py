"""Where the network runs: ``cpu``, ``cuda`` or ``cuda:N``, for torch and for ONNX Runtime.

torch runs the model on the device (fp16 weights and inputs on CUDA, fp32 on the CPU). ONNX Runtime
takes the execution providers the device allows, best first: TensorRT, then CUDA, then the CPU for
whatever those two do not cover; ``providers_for`` keeps those the installed ORT build has. A device
that is asked for and absent is a ``ConfigError`` naming what is missing, never a silent CPU run.
torch is imported only by the functions that need it: the ONNX Runtime backend runs without it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modseg_ros.core.params import parse_device
from modseg_ros.errors import ConfigError

__all__ = ["GPU_PROVIDERS", "default_device", "parse_device", "providers_for", "torch_device"]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

if TYPE_CHECKING:
    import torch


def torch_device(name: str) -> torch.device:
    """The torch device for ``name``, checked against the CUDA devices this torch can see."""
    import torch

    kind, index = parse_device(name)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"torch {torch.__version__} " + ("has CUDA support but sees no GPU" if torch.version.cuda else "is a CPU-only build")
        raise ConfigError(f"device '{name}' was asked for, but {build}; use device 'cpu'")
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device '{name}' was asked for, but this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def default_device() -> str:
    """``cuda`` where torch sees a GPU, else ``cpu`` (training's default)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def providers_for(name: str, available: Sequence[str]) -> list:
    """ONNX Runtime providers for device ``name`` among the ``available`` ones, best first."""
    kind, index = parse_device(name)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [(p, {"device_id": index}) for p in GPU_PROVIDERS if p in available]
    if not gpu:
        raise ConfigError(f"device '{name}' was asked for, but ONNX Runtime offers only {', '.join(available)} "
                          f"(install onnxruntime-gpu for CUDA / TensorRT)")  # fmt: skip
    return [*gpu, "CPUExecutionProvider"]
