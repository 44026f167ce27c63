"""Small embedded-world datasets for the model tests (generated once per test session)."""
from __future__ import annotations

import pytest

from modseg_ros.data.world.generate import WorldOptions, generate


def world_dataset(root, split: str = "train", frames: int = 12, seed: int = 3):
    options = WorldOptions(out=root, format="deliver", frames=frames, seed=seed, split=split, width=128, height=64,
                           sequence_frames=6, threads=1)  # fmt: skip
    options.validate()
    generate(options)
    return root


@pytest.fixture(scope="session")
def world_root(tmp_path_factory):
    """A 64×128 DELIVER-layout world: 12 train frames (seed 3) and 6 val frames (seed 4)."""
    root = tmp_path_factory.mktemp("world")
    world_dataset(root, "train", 12, seed=3)
    world_dataset(root, "val", 6, seed=4)
    return root
