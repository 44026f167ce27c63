import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from model_fixtures import world_root  # noqa: F401  (fixture)
from modseg_ros.data.deliver import DeliverDataset
from modseg_ros.data.transforms import TrainAugmentation
from modseg_ros.model.checkpoint import load_checkpoint
from modseg_ros.model.training import TrainConfig, modality_dropout, train

TINY = dict(input_size=(32, 64), batch_size=4, lr=1e-3, warmup_steps=2, workers=0, log_every=1, threads=1)


def test_deliver_loader_reads_the_world_output(world_root):  # noqa: F811
    data = DeliverDataset(world_root, "train")
    assert len(data) == 12
    frame = data[0]
    assert set(frame.encodings) == {"camera", "depth", "lidar", "events"}
    assert all(e.shape == (64, 128, 3) and e.dtype == np.uint8 for e in frame.encodings.values())
    assert frame.label.shape == (64, 128) and set(np.unique(frame.label)) <= set(range(25)) | {255}
    assert frame.ref.condition in ("cloud", "fog", "night", "rain", "sun")
    assert {r.case for r in data.refs} <= {"normal", "motionblur", "overexposure", "underexposure", "lidarjitter", "eventlowres"}
    inputs, label = TrainAugmentation((32, 64))(frame.encodings, frame.label, np.random.default_rng(0))
    assert {m: x.shape for m, x in inputs.items()} == {m: (3, 32, 64) for m in frame.encodings}
    assert label.shape == (32, 64) and label.dtype == np.uint8


def test_modality_dropout_draws_non_empty_subsets_of_the_available():
    available = torch.tensor([[1, 1, 1, 1], [0, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool)
    sizes = []
    for seed in range(200):
        present = modality_dropout(available, torch.Generator().manual_seed(seed)).T
        assert present.any(dim=1).all() and not (present & ~available).any()
        sizes.append(int(present[0].sum()))
    assert set(sizes) == {1, 2, 3, 4}  # k ~ U{1..4}
    assert 0.15 < sizes.count(4) / len(sizes) < 0.35


def test_a_tiny_training_run_lowers_the_loss_and_resumes(tmp_path, world_root):  # noqa: F811
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(world_root), out=str(out), steps=24, checkpoint_every=12, **TINY)
    result = train(cfg)
    losses = [json.loads(line)["ohem"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 24 and np.mean(losses[-6:]) < 0.8 * np.mean(losses[:6])
    model, info = load_checkpoint(result.checkpoint)
    assert info.training["steps"] == 24 and info.config.input_size == (32, 64)
    assert (out / "curve.png").stat().st_size > 1000 and (out / "any2seg_b0_step12.safetensors").is_file()
    longer = train(TrainConfig(data=str(world_root), out=str(out), steps=30, checkpoint_every=12, **TINY))
    assert longer.steps == 30
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()][-6:] == list(range(25, 31))


@pytest.mark.parametrize("arch", ["equiseg", "cmnext", "meanfusion"])
def test_every_architecture_trains_with_its_own_losses(tmp_path, world_root, arch):  # noqa: F811
    out = tmp_path / arch
    train(TrainConfig(data=str(world_root), out=str(out), arch=arch, steps=3, checkpoint_every=3, **TINY))
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(last["loss"])
    assert ("sgm" in last) == (arch == "equiseg")


def test_ddp_with_two_cpu_processes_keeps_the_replicas_identical(tmp_path, world_root):  # noqa: F811
    out = tmp_path / "ddp"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc-per-node=2", "-m", "modseg_ros.cli", "train", str(world_root),
           "--out", str(out), "--steps", "4", "--checkpoint-every", "2", "--batch-size", "2", "--input-size", "32", "64",
           "--workers", "0", "--threads", "1", "--log-every", "1"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 4 and state["history"]["replicas_identical_at"] == 4
    _, info = load_checkpoint(out / "any2seg_b0.safetensors")
    assert info.training["world_size"] == 2
