"""The segmentation engine and the consistency thresholds the node's parameters ask for.

The node, the offline replay, the calibration and the benchmarks load them here; the perception
pipeline (core/perception.py) takes the engine it is handed.
"""
from __future__ import annotations

import importlib.util
from functools import partial
from pathlib import Path

from modseg_ros.core.checks.consistency import ConsistencyCalibration, ConsistencySettings, calibration_path
from modseg_ros.core.config import ModelConfig
from modseg_ros.core.geometry import Intrinsics
from modseg_ros.core.perception import Engine
from modseg_ros.errors import ConfigError
from modseg_ros.paths import model_file

# The checkpoint used when model.path is empty (models/ in the share directory).
DEFAULT_CHECKPOINT = "any2seg_b0.safetensors"
UNTRAINED_INPUT = (128, 256)  # (H, W) of the untrained fallback, or the camera grid when smaller
TORCH_EXTRA = "pip install 'modseg-ros-py[torch]' (the CPU build: docs/install.md)"


def default_checkpoint() -> Path | None:
    """The shipped default checkpoint (models/any2seg_b0.safetensors), if installed."""
    path = model_file(DEFAULT_CHECKPOINT)
    return path if path.is_file() else None


def checkpoint_path(model: ModelConfig) -> Path:
    """The checkpoint ``model.path`` names ("" = the shipped one), as a .safetensors path."""
    return (Path(model.path) if model.path else model_file(DEFAULT_CHECKPOINT)).with_suffix(".safetensors")


def load_engine(model: ModelConfig, camera: Intrinsics, isolate: bool = False) -> tuple[Engine, str]:
    """The segmentation engine the parameters ask for, and a sentence saying what was loaded
(model/runtime.py is imported here, when an engine is made; torch only for ``model.backend: torch``
and the untrained fallback, and a runtime installed without torch hears which parameter asks for it).

    An empty ``model.path`` means the shipped checkpoint; if none is shipped, the real architecture
    with initial weights runs instead (the sentence says so: its masks are noise), at the camera
    grid when that is smaller than its default input. An explicit path that does not exist is an error.
    ``isolate``: run it in a child process (model/engine_process.py; the live node's ``model.process``).
    """
    from modseg_ros.model.runtime import SegmentationEngine

    weights = checkpoint_path(model)
    trained = weights.is_file()
    if model.path and not trained:
        raise ConfigError(f"parameter 'model.path': no checkpoint at {weights}")
    if (model.backend == "torch" or not trained) and importlib.util.find_spec("torch") is None:
        if not trained:
            raise ConfigError(f"no checkpoint at {weights}, and the untrained fallback needs torch, which is not installed: {TORCH_EXTRA}")
        raise ConfigError(f"parameter 'model.backend': torch is not installed; set it to onnx (the shipped models carry "
                          f"their ONNX graphs) or {TORCH_EXTRA}")  # fmt: skip
    threads = model.threads or None
    if trained:
        factory = partial(SegmentationEngine.load, weights, backend=model.backend, threads=threads, device=model.device)
    else:
        grid = (camera.height, camera.width)
        fits = all(g <= d and g % 32 == 0 for g, d in zip(grid, UNTRAINED_INPUT))
        factory = partial(SegmentationEngine.untrained, model.arch, input_size=grid if fits else UNTRAINED_INPUT, threads=threads,
                          device=model.device)  # fmt: skip
    if isolate:
        from modseg_ros.model.engine_process import EngineProcess

        engine = EngineProcess(factory)
        where = f", in process {engine.pid}"
    else:
        engine, where = factory(), ""
    if trained:
        return engine, f"model {engine.name} from {weights} ({engine.runs_on}, {model.threads or 'default'} threads{where})"
    return engine, (f"no checkpoint at {weights}: running {engine.name}, the {model.arch} architecture with initial weights "
                    f"(masks are noise until a trained checkpoint is installed; {engine.runs_on}){where}")  # fmt: skip


def load_calibration(settings: ConsistencySettings, model: ModelConfig, engine) -> tuple[ConsistencyCalibration | None, str]:
    """The consistency thresholds for ``engine`` and a sentence saying what the check will do.

    ``health.consistency.calibration`` names the file ("" = ``<checkpoint>.consistency.json``
    beside the checkpoint). An explicit file that is missing or made for other weights is an
    error; a default one that is missing or stale only leaves the scores unjudged (the sentence says
    how to calibrate).
    """
    if not settings.enabled:
        return None, "consistency check off (health.consistency.enabled: false): scores are not computed"
    explicit = bool(settings.calibration)
    checkpoint = checkpoint_path(model)
    path = Path(settings.calibration) if explicit else calibration_path(checkpoint)
    command = f"modseg calibrate {checkpoint} BAG..."
    sha = getattr(getattr(engine, "info", None), "weights_sha256", "")
    if not path.is_file():
        if explicit:
            raise ConfigError(f"parameter 'health.consistency.calibration': no calibration at {path}")
        return None, f"no consistency calibration at {path}: scores are published, not judged (make one: {command})"
    calibration = ConsistencyCalibration.load(path)
    if calibration.weights_sha256 != sha:
        problem = f"consistency calibration {path} was made for other weights ({calibration.model}); recalibrate: {command}"
        if explicit:
            raise ConfigError(f"parameter 'health.consistency.calibration': {problem}")
        return None, problem + "; scores are published, not judged"
    action = "WARN and exclusion from fusion" if settings.exclude else "WARN (exclusion off)"
    return calibration, f"consistency thresholds from {path} ({action} after {settings.enter_s:g} s below threshold)"
