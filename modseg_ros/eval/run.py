"""What a replay produced, the same for the live node and the offline replay: masks with their
bundle and timing, and the health monitor's verdicts over time. The evaluation reads only this."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modseg_ros.core.types import HealthLevel, Modality, subset_name
from modseg_ros.data.failures import Failure


@dataclass(frozen=True)
class ReplayOptions:
    """How bags are replayed: the node's parameters and the player's settings."""

    params: Path  # node parameter file (the launch file's default: config/any2seg.yaml)
    failures: tuple[Failure, ...] = ()  # injected by the player, on top of what a bag records
    seed: int = 0  # of the injected failures' noise
    rate: float = 1.0  # live playback speed
    clock_hz: float = 100.0  # /clock ticks per second of bag time
    start_s: float = 0.0
    duration_s: float | None = None
    tail_s: float = 0.3  # bag time of /clock after the last message (completes max-wait and timeouts)
    record: Path | None = None  # live: write the replay (inputs and every output) to this MCAP bag


@dataclass(frozen=True, eq=False)
class MaskRecord:
    stamp_ns: int  # the mask's header stamp (the bundle's trigger stamp)
    modality_stamps: dict[Modality, int]  # header stamp of each fused input
    weights: dict[Modality, float]
    labels: np.ndarray  # H×W uint8
    overlay: np.ndarray | None  # H×W×3 uint8, as published
    inference_ms: float
    node_ms: float  # live: the node's input-arrival-to-publish figure; offline: encode + inference
    end_to_end_ms: float | None = None  # live: player publish of the newest input -> mask received
    consistency: dict[Modality, float] = field(default_factory=dict)  # per bundle modality (fused or excluded)
    excluded: tuple[Modality, ...] = ()  # in the bundle, left out of the fusion as inconsistent

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(self.modality_stamps)

    @property
    def subset(self) -> str:
        return subset_name(self.modality_stamps)


@dataclass(frozen=True)
class HealthRecord:
    stamp_ns: int  # node clock (bag time)
    levels: dict[Modality, HealthLevel]
    alive: dict[Modality, bool]
    reasons: dict[Modality, str]


@dataclass
class RunOutputs:
    mode: str  # live | offline
    model: str
    masks: list[MaskRecord] = field(default_factory=list)
    health: list[HealthRecord] = field(default_factory=list)
    counters: dict[str, float | int | str] = field(default_factory=dict)  # pipeline figures
    notes: list[str] = field(default_factory=list)  # what the user should know about this run
    wall_s: float = 0.0
