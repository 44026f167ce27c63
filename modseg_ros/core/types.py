"""The vocabulary every layer shares: modalities, sensor payloads, samples, bundles, health states.

Times are integer nanoseconds. ``stamp_ns`` is a message's header stamp (the sensor's clock);
``arrival_ns`` is the node clock when the message was received (ROS time, so sim time works).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum

import numpy as np


class Modality(str, Enum):
    """The four sensor modalities; the value is the name used in topics, config keys and files."""

    CAMERA = "camera"
    DEPTH = "depth"
    LIDAR = "lidar"
    EVENTS = "events"

    @property
    def letter(self) -> str:
        """One-letter tag for compact subset names in tables (C, D, L, E)."""
        return self.value[0].upper()

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, name: str) -> Modality:
        try:
            return cls(name.strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown modality '{name}' (choose from {choices})") from None


# Canonical order: fusion order, table columns, default trigger priority.
MODALITIES: tuple[Modality, ...] = tuple(Modality)


def subset_name(modalities: Iterable[Modality]) -> str:
    """Canonical short name of a modality subset, e.g. ``CDL`` for camera+depth+lidar."""
    present = set(modalities)
    return "".join(m.letter for m in MODALITIES if m in present)


def all_subsets() -> list[tuple[Modality, ...]]:
    """The 15 non-empty subsets of the four modalities, smallest first, canonical order inside."""
    subsets = []
    for mask in range(1, 1 << len(MODALITIES)):
        subsets.append(tuple(m for i, m in enumerate(MODALITIES) if mask >> i & 1))
    return sorted(subsets, key=lambda s: (len(s), [MODALITIES.index(m) for m in s]))


# --- Payloads: what a sensor message holds, already converted to numpy ---------------------------


@dataclass(frozen=True, eq=False)
class CameraFrame:
    image: np.ndarray  # H×W×3 uint8, RGB order


@dataclass(frozen=True, eq=False)
class DepthFrame:
    depth_m: np.ndarray  # H×W float32 metres; no depth where a value is not finite and positive (NaN, 0, ±inf, < 0)


@dataclass(frozen=True, eq=False)
class PointCloud:
    points: np.ndarray  # N×3 float32, sensor frame (x forward, y left, z up for a LiDAR)
    intensity: np.ndarray  # N float32, nominally in [0, 1] (encodings clip); zeros when the sensor has none
    ring: np.ndarray | None = None  # N uint16 beam index, when the driver provides it


@dataclass(frozen=True, eq=False)
class EventPacket:
    """Events of one message: pixel coordinates, time relative to the header stamp, polarity."""

    x: np.ndarray  # N uint16
    y: np.ndarray  # N uint16
    t_ns: np.ndarray  # N int64, event time minus the message's header stamp (≤ 0 for past events)
    polarity: np.ndarray  # N int8, +1 brighter / -1 darker
    width: int
    height: int


class EventTime(str, Enum):
    """How a PointCloud2 event time field encodes time (``inputs.event_time``). Integer fields
    always hold nanoseconds; these conventions concern fields declared FLOAT32/FLOAT64."""

    AUTO = "auto"  # decided per message (core/messages.py event_times_ns)
    INT64_NS = "int64_ns"  # int64 ns stored in the 8 bytes of a FLOAT64 field (CARLA's native ROS 2 publisher, the world's bags)
    FLOAT_NS = "float_ns"  # a float value in nanoseconds (carla-ros-bridge: struct-packs the int64 as a double)
    FLOAT_S = "float_s"  # a float value in seconds

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class EventFrame:
    image: np.ndarray  # H×W×3 uint8 rendered event frame (see core/encoding.py)


Payload = CameraFrame | DepthFrame | PointCloud | EventPacket | EventFrame


@dataclass(frozen=True, eq=False)
class SensorSample:
    """One received sensor message, converted."""

    modality: Modality
    stamp_ns: int  # header stamp
    arrival_ns: int  # node clock at receipt
    frame_id: str
    data: Payload


@dataclass(frozen=True, eq=False)
class Bundle:
    """What the synchronizer emits: the trigger's stamp and the samples matched to it."""

    stamp_ns: int  # the trigger sample's header stamp; every output is stamped with it
    trigger: Modality
    samples: Mapping[Modality, SensorSample]
    missing: frozenset[Modality]  # modalities expected (configured) but absent from this bundle
    emitted_ns: int  # node clock when the bundle was completed

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(m for m in MODALITIES if m in self.samples)

    @property
    def last_arrival_ns(self) -> int:
        """When the last input of this bundle reached the node (start of end-to-end latency)."""
        return max(s.arrival_ns for s in self.samples.values())


# --- Health ---------------------------------------------------------------------------------------


class HealthLevel(IntEnum):
    """Same values and meaning as diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


@dataclass(frozen=True)
class HealthState:
    modality: Modality
    level: HealthLevel
    reason: str  # "" when OK
    alive: bool  # drives the synchronizer and the model
    rate_hz: float
    age_s: float  # seconds since the last message on the node clock; -1 before the first one
    details: Mapping[str, float | int | str] = field(default_factory=dict)  # for /diagnostics
