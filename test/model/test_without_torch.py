"""The node's inference without torch: the runtime (setup.cfg install_requires) has no torch, so a
node installed with it alone runs ``model.backend: onnx`` on the graphs shipped in models/. The
child interpreters here cannot import torch (test/no_torch/sitecustomize.py), as on such an install."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import MODSEG
from model_fixtures import world_root  # noqa: F401  (fixture)

from modseg_ros.core.types import MODALITIES
from modseg_ros.model.loading import default_checkpoint
from modseg_ros.model.runtime import SegmentationEngine

REPO = Path(__file__).resolve().parents[2]
NO_TORCH = REPO / "test" / "no_torch"

CHILD = """
import importlib.util
import sys

import numpy as np

assert importlib.util.find_spec("torch") is None, "torch is importable"
import modseg_ros.cli  # noqa: F401  the command line, the node and the engine process import no torch
import modseg_ros.model.engine_process  # noqa: F401
import modseg_ros.ros.node  # noqa: F401
from modseg_ros.core.types import Modality
from modseg_ros.model.loading import default_checkpoint
from modseg_ros.model.runtime import SegmentationEngine

frame = np.load(sys.argv[1])
engine = SegmentationEngine.load(default_checkpoint(), backend="onnx", threads=1)
prediction = engine.predict({Modality(name): frame[name] for name in frame.files}, output_size=(256, 512))
np.savez(sys.argv[2], labels=prediction.labels, consistency=list(prediction.modality_consistency.values()))
"""


def without_torch() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_TORCH), str(REPO)])}


@pytest.fixture(scope="module")
def frame(world_root):  # noqa: F811
    from modseg_ros.data.deliver import DeliverDataset

    return DeliverDataset(world_root, "val")[0]


def test_the_onnx_engine_segments_a_world_frame_in_an_interpreter_without_torch(frame, tmp_path):
    np.savez(tmp_path / "frame.npz", **{m.value: frame.encodings[m] for m in MODALITIES})
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "frame.npz"), str(tmp_path / "out.npz")],
                           env=without_torch(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert child.returncode == 0, child.stderr
    result = np.load(tmp_path / "out.npz")
    here = SegmentationEngine.load(default_checkpoint(), backend="onnx", threads=1).predict(frame.encodings, output_size=(256, 512))
    assert np.array_equal(result["labels"], here.labels)  # the same graphs and numpy: the same masks as with torch installed
    assert np.allclose(result["consistency"], list(here.modality_consistency.values()))
    reference = SegmentationEngine.load(default_checkpoint()).predict(frame.encodings, output_size=(256, 512))
    assert (result["labels"] == reference.labels).mean() > 0.999  # and those of the torch backend


def test_modseg_run_without_torch_names_the_backend_parameter_and_the_extra(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("any2seg:\n  ros__parameters:\n    model:\n      backend: torch\n")
    run = subprocess.run([str(MODSEG), "run", "--params", str(params)], env=without_torch(), capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("modseg run: error: parameter 'model.backend': torch is not installed"), last
    assert "modseg-ros-py[torch]" in last and "Traceback" not in run.stderr
