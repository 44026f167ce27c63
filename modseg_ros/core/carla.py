"""CARLA's semantic tags and CityScapes colours <-> the 25 DELIVER classes.

DELIVER was rendered with CARLA, and its classes 0-21 are CARLA's tags 1-22 as numbered up to
CARLA 0.9.13 (DELIVER id = tag - 1); DELIVER adds TwoWheeler, Bus and Truck, which that CARLA tags
as Vehicles. CARLA 0.9.14 renumbered the tags (Cityscapes order first) and split the vehicles.
Both numberings are here (``TAG_SETS``), with the colour CARLA's ``CityScapesPalette`` converter
gives each tag (LibCarla ``image/CityScapesPalette.h``), which is what the carla-ros-bridge
publishes on a semantic camera's ``image`` topic (bgra8).

Tag -> DELIVER id (255 = ignore):

=====  ==============  ===============  ======  ==============  ===============
0.9.13 tag             DELIVER          0.9.14  tag             DELIVER
=====  ==============  ===============  ======  ==============  ===============
0      Unlabeled       ignore           0       Unlabeled       ignore
1-22   Building..Terr  tag - 1          1       Roads           Road
                                        2       SideWalks       SideWalk
                                        3       Building        Building
                                        4       Wall            Wall
                                        5       Fence           Fence
                                        6       Pole            Pole
                                        7       TrafficLight    TrafficLight
                                        8       TrafficSign     TrafficSign
                                        9       Vegetation      Vegetation
                                        10      Terrain         Terrain
                                        11      Sky             Sky
                                        12      Pedestrian      Pedestrian
                                        13      Rider           TwoWheeler (*)
                                        14      Car             Cars
                                        15      Truck           Truck
                                        16      Bus             Bus
                                        17      Train           Cars (*)
                                        18      Motorcycle      TwoWheeler
                                        19      Bicycle         TwoWheeler
                                        20      Static          Static
                                        21      Dynamic         Dynamic
                                        22      Other           Other
                                        23      Water           Water
                                        24      RoadLine        RoadLine
                                        25      Ground          Ground
                                        26      Bridge          Bridge
                                        27      RailTrack       RailTrack
                                        28      GuardRail       GroundRail
>22    (none)          ignore           >28     (e.g. Rock)     ignore
=====  ==============  ===============  ======  ==============  ===============

(*) judgement calls: a rider is labelled with its two-wheeler (as DELIVER's TwoWheeler covers
the vehicle with its rider), a train as a vehicle (CARLA 0.9.13 tags every vehicle Vehicles,
DELIVER's Cars, and DELIVER splits out only two-wheelers, buses and trucks).

The reverse direction (``tags_from_labels``, used by the embedded world to write a semantic camera
as CARLA would) picks one tag per DELIVER id; with the 0.9.13 numbering TwoWheeler, Bus and Truck
can only be written as Vehicles, which reads back as Cars.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from modseg_ros.core.palette import CLASS_ID, IGNORE, NUM_CLASSES


@dataclass(frozen=True)
class TagSet:
    """One CARLA tag numbering: per tag its name, CityScapes colour and DELIVER id."""

    version: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    deliver: tuple[int, ...]  # DELIVER id per tag, IGNORE for none

    @cached_property
    def tag_to_deliver(self) -> np.ndarray:
        """256-entry lookup table: tag -> DELIVER id (unknown tags -> IGNORE)."""
        lut = np.full(256, IGNORE, np.uint8)
        lut[: len(self.deliver)] = self.deliver
        return lut

    @cached_property
    def deliver_to_tag(self) -> np.ndarray:
        """256-entry lookup table: DELIVER id -> the tag CARLA would give it (IGNORE -> Unlabeled)."""
        lut = np.zeros(256, np.uint8)
        for tag in range(len(self.deliver) - 1, 0, -1):  # the lowest tag of several wins
            if self.deliver[tag] != IGNORE:
                lut[self.deliver[tag]] = tag
        if self.version == "0.9.13":  # TwoWheeler, Bus and Truck are Vehicles there
            for name in ("TwoWheeler", "Bus", "Truck"):
                lut[CLASS_ID[name]] = self.names.index("Vehicles")
        return lut

    @cached_property
    def _color_keys(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in self.colors], np.int64)
        order = np.argsort(keys)
        return keys[order], order.astype(np.uint8)


def _tag_set(version: str, rows: list[tuple[str, tuple[int, int, int], str | None]]) -> TagSet:
    names = tuple(r[0] for r in rows)
    colors = tuple(r[1] for r in rows)
    deliver = tuple(IGNORE if r[2] is None else CLASS_ID[r[2]] for r in rows)
    return TagSet(version, names, colors, deliver)


# (CARLA name, CityScapesPalette colour, DELIVER class)
CARLA_0_9_13 = _tag_set("0.9.13", [
    ("Unlabeled", (0, 0, 0), None), ("Building", (70, 70, 70), "Building"), ("Fence", (100, 40, 40), "Fence"),
    ("Other", (55, 90, 80), "Other"), ("Pedestrian", (220, 20, 60), "Pedestrian"), ("Pole", (153, 153, 153), "Pole"),
    ("RoadLine", (157, 234, 50), "RoadLine"), ("Road", (128, 64, 128), "Road"), ("SideWalk", (244, 35, 232), "SideWalk"),
    ("Vegetation", (107, 142, 35), "Vegetation"), ("Vehicles", (0, 0, 142), "Cars"), ("Wall", (102, 102, 156), "Wall"),
    ("TrafficSign", (220, 220, 0), "TrafficSign"), ("Sky", (70, 130, 180), "Sky"), ("Ground", (81, 0, 81), "Ground"),
    ("Bridge", (150, 100, 100), "Bridge"), ("RailTrack", (230, 150, 140), "RailTrack"),
    ("GuardRail", (180, 165, 180), "GroundRail"), ("TrafficLight", (250, 170, 30), "TrafficLight"),
    ("Static", (110, 190, 160), "Static"), ("Dynamic", (170, 120, 50), "Dynamic"), ("Water", (45, 60, 150), "Water"),
    ("Terrain", (145, 170, 100), "Terrain"),
])  # fmt: skip
CARLA_0_9_14 = _tag_set("0.9.14", [
    ("Unlabeled", (0, 0, 0), None), ("Roads", (128, 64, 128), "Road"), ("SideWalks", (244, 35, 232), "SideWalk"),
    ("Building", (70, 70, 70), "Building"), ("Wall", (102, 102, 156), "Wall"), ("Fence", (190, 153, 153), "Fence"),
    ("Pole", (153, 153, 153), "Pole"), ("TrafficLight", (250, 170, 30), "TrafficLight"),
    ("TrafficSign", (220, 220, 0), "TrafficSign"), ("Vegetation", (107, 142, 35), "Vegetation"),
    ("Terrain", (152, 251, 152), "Terrain"), ("Sky", (70, 130, 180), "Sky"), ("Pedestrian", (220, 20, 60), "Pedestrian"),
    ("Rider", (255, 0, 0), "TwoWheeler"), ("Car", (0, 0, 142), "Cars"), ("Truck", (0, 0, 70), "Truck"),
    ("Bus", (0, 60, 100), "Bus"), ("Train", (0, 80, 100), "Cars"), ("Motorcycle", (0, 0, 230), "TwoWheeler"),
    ("Bicycle", (119, 11, 32), "TwoWheeler"), ("Static", (110, 190, 160), "Static"), ("Dynamic", (170, 120, 50), "Dynamic"),
    ("Other", (55, 90, 80), "Other"), ("Water", (45, 60, 150), "Water"), ("RoadLine", (157, 234, 50), "RoadLine"),
    ("Ground", (81, 0, 81), "Ground"), ("Bridge", (150, 100, 100), "Bridge"), ("RailTrack", (230, 150, 140), "RailTrack"),
    ("GuardRail", (180, 165, 180), "GroundRail"),
])  # fmt: skip
TAG_SETS: dict[str, TagSet] = {s.version: s for s in (CARLA_0_9_13, CARLA_0_9_14)}

# How per-pixel ground truth is encoded (parameter ground_truth.encoding)
GT_ENCODINGS = ("deliver", "carla_tags", "carla_cityscapes")

assert all(len(s.names) == len(s.colors) == len(s.deliver) for s in TAG_SETS.values())
assert max(max(d for d in s.deliver if d != IGNORE) for s in TAG_SETS.values()) < NUM_CLASSES


def labels_from_tags(tags: np.ndarray, tag_set: TagSet) -> np.ndarray:
    """H×W CARLA tags (or H×W×C with the tag in channel 0, red, as CARLA's raw image) -> DELIVER ids."""
    tags = tags[..., 0] if tags.ndim == 3 else tags
    return tag_set.tag_to_deliver[tags.astype(np.uint8)]


def labels_from_cityscapes(rgb: np.ndarray, tag_set: TagSet) -> np.ndarray:
    """H×W×3 RGB CityScapes colours (as the carla-ros-bridge publishes them) -> DELIVER ids; a
    colour that is no tag's is ignored (255)."""
    rgb = rgb.astype(np.int64)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    sorted_keys, tags = tag_set._color_keys
    index = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    found = sorted_keys[index] == keys
    return np.where(found, tag_set.tag_to_deliver[tags[index]], IGNORE).astype(np.uint8)


def tags_from_labels(labels: np.ndarray, tag_set: TagSet) -> np.ndarray:
    """H×W DELIVER ids -> the CARLA tags a semantic camera would report (ignore -> Unlabeled)."""
    return tag_set.deliver_to_tag[labels]


def cityscapes_from_labels(labels: np.ndarray, tag_set: TagSet) -> np.ndarray:
    """H×W DELIVER ids -> H×W×3 RGB, CARLA's CityScapesPalette conversion of those tags."""
    return np.asarray(tag_set.colors, np.uint8)[tags_from_labels(labels, tag_set)]
