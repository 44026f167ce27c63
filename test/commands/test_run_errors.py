"""``modseg run`` with bad configuration or model files: one clear line naming the parameter or
file, exit code 1, no traceback, and nothing half-started (the node never advertises its outputs).

The checkpoint checks themselves are unit-tested in test_model_checkpoint.py and the parameter
checks in test_config.py; this runs the real command the way a user would.
"""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import time

import pytest
import yaml
from harness import MODSEG

from modseg_ros.model.loading import default_checkpoint
from modseg_ros.model.sidecar import sidecar_path


def _params(tmp_path, values: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"any2seg": {"ros__parameters": values}}))
    return path


def _checkpoint_copy(tmp_path):
    shipped = default_checkpoint()
    if shipped is None:
        pytest.skip("no shipped checkpoint to corrupt")
    copy = tmp_path / "net.safetensors"
    shutil.copy(shipped, copy)
    shutil.copy(sidecar_path(shipped), sidecar_path(copy))
    return copy


def corrupted(tmp_path):
    path = _checkpoint_copy(tmp_path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated mid-tensor, as by a failed copy
    return {"model.path": str(path)}, [], [str(path)]


def pickled(tmp_path):
    path = _checkpoint_copy(tmp_path)
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    return {"model.path": str(path)}, [], [str(path), "refused"]


def unknown_classes(tmp_path):
    path = _checkpoint_copy(tmp_path)
    side = json.loads(sidecar_path(path).read_text())
    side["classes"][3] = "Gnome"
    sidecar_path(path).write_text(json.dumps(side))
    return {"model.path": str(path)}, [], ["class 3 is 'Gnome'"]


def missing_model(tmp_path):
    return {"model.path": str(tmp_path / "absent.safetensors")}, [], ["'model.path'", "absent.safetensors"]


def missing_onnx_graph(tmp_path):
    path = _checkpoint_copy(tmp_path)
    return {"model.path": str(path), "model.backend": "onnx"}, [], ["net.onnx"]


def invalid_value_in_file(tmp_path):
    return {"sync": {"max_wait_s": -0.5}}, [], ["'sync.max_wait_s'", "params.yaml"]


def invalid_value_on_command_line(tmp_path):
    return {"model": {"threads": 1}}, ["-p", "model.threads:=-2"], ["'model.threads'"]


def unknown_parameter(tmp_path):
    return {"health": {"camera": {"rate_hz": 20.0, "timout_s": 0.1}}}, [], ["health.camera.timout_s"]


@pytest.mark.parametrize("case", [corrupted, pickled, unknown_classes, missing_model, missing_onnx_graph,
                                  invalid_value_in_file, invalid_value_on_command_line, unknown_parameter],
                         ids=lambda case: case.__name__)  # fmt: skip
def test_bad_configuration_fails_fast_with_one_clear_line(case, tmp_path, outputs):
    values, ros_args, needles = case(tmp_path)
    args = [str(MODSEG), "run", "--params", str(_params(tmp_path, values))]
    if ros_args:
        args += ["--ros-args", *ros_args]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    advertised = False
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        advertised |= outputs.node.count_publishers(outputs.info_topic) > 0
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    out, err = proc.communicate()
    assert proc.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("modseg run: error: "), err
    assert all(needle in lines[-1] for needle in needles), (needles, lines[-1])
    assert "Traceback" not in err + out and "segmenting" not in out, err + out
    assert not advertised, "the node advertised its outputs before failing"
