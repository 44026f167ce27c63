"""Devices (model/device.py): resolution, the errors for a device that is asked for and absent, and
the CPU path of every backend on this GPU-less machine (the GPU check: modseg bench model --device cuda)."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from modseg_ros.core.types import Modality
from modseg_ros.errors import ConfigError
from modseg_ros.model.device import parse_device, providers_for, torch_device
from modseg_ros.model.runtime import SegmentationEngine
from modseg_ros.model.training import TrainConfig
from modseg_ros.paths import model_file

HAS_CUDA = torch.cuda.is_available()


def test_device_names_are_parsed_and_bad_ones_refused():
    assert parse_device("cpu") == ("cpu", 0) and parse_device("cuda") == ("cuda", 0) and parse_device("CUDA:3") == ("cuda", 3)
    for bad in ("gpu", "cuda:x", "cpu:1", "", "cuda:-1"):
        with pytest.raises(ConfigError, match="device must be cpu, cuda or cuda:N"):
            parse_device(bad)
    with pytest.raises(ConfigError, match="device must be"):
        TrainConfig(data="x", out="y", device="tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error of a machine without a GPU")
def test_an_absent_cuda_device_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"device 'cuda:1' was asked for, but torch .* (CPU-only build|sees no GPU); use device 'cpu'"):
        torch_device("cuda:1")
    with pytest.raises(ConfigError, match="device 'cuda' was asked for"):
        SegmentationEngine.load(model_file("any2seg_b0.safetensors"), device="cuda")


def test_onnx_providers_follow_the_device_best_first():
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("cpu", every) == ["CPUExecutionProvider"]
    assert providers_for("cuda:1", every) == [("TensorrtExecutionProvider", {"device_id": 1}),
                                              ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]  # fmt: skip
    assert providers_for("cuda", every[1:]) == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="ONNX Runtime offers only CPUExecutionProvider .*install onnxruntime-gpu"):
        providers_for("cuda", ["CPUExecutionProvider"])


def test_the_engine_says_where_it_runs_and_segments_on_the_cpu():
    engine = SegmentationEngine.load(model_file("any2seg_b0.safetensors"), device="cpu", threads=1)
    assert engine.runs_on == "torch on cpu (fp32)"
    rgb = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    prediction = engine.predict({Modality.CAMERA: rgb})
    assert prediction.labels.shape == (64, 128) and prediction.labels.dtype == np.uint8


def test_bench_model_takes_the_device_and_refuses_an_absent_one():
    run = subprocess.run([sys.executable, "-m", "modseg_ros.cli", "bench", "model", "--device", "cuda:7", "--repeat", "1"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    if HAS_CUDA:
        pytest.skip("this machine has a GPU")
    assert run.returncode != 0 and "device 'cuda:7' was asked for" in run.stderr.strip().splitlines()[-1]
