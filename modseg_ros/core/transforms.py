"""Extrinsics from TF (``rig.source: tf``): the newest transform of each frame, and the rig's sensor
poses composed from them. ROS-free: ros/node.py hands in the transforms of /tf_static and /tf.

TF is a tree: every frame has at most one parent, and a transform message gives T_parent_from_child.
The node looks up each sensor's frame (its messages' ``header.frame_id``; ``rig.<m>.frame_id``
until one arrives) in ``rig.base_frame`` with the newest transform of each edge (sensor mounts are
static or slow; there is no time interpolation). Until every needed frame resolves, or when the tree
is inconsistent (a cycle, a non-finite transform), the node keeps its last good rig: at start the
YAML rig (``rig.<m>.xyz/rpy``).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from modseg_ros.core.geometry import Rig, Transform
from modseg_ros.core.types import Modality

RIG_SOURCES = ("tf", "yaml")
# Poses closer than this to the current ones leave the rig as it is (no re-encoding for nothing).
SAME_TRANSLATION_M = 1e-6
SAME_ROTATION_RAD = 1e-6


class TransformError(LookupError):
    """A transform that cannot be looked up; the message names the frames."""


@dataclass(frozen=True, eq=False)
class Edge:
    parent: str
    transform: Transform  # T_parent_from_child
    static: bool


class TransformTree:
    """The newest transform of each child frame, as /tf_static and /tf give them."""

    def __init__(self) -> None:
        self._edges: dict[str, Edge] = {}

    def __contains__(self, frame: str) -> bool:
        return frame in self._edges or any(e.parent == frame for e in self._edges.values())

    @property
    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def parent_of(self, frame: str) -> str | None:
        edge = self._edges.get(frame)
        return None if edge is None else edge.parent

    def set(self, parent: str, child: str, xyz: Iterable[float], xyzw: Iterable[float], static: bool) -> str:
        """One transform (T_parent_from_child as translation and quaternion); returns "" when it was
        taken, else why not (the frames named). Frame ids lose a leading '/' as in tf2."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        xyz, xyzw = [float(v) for v in xyz], [float(v) for v in xyzw]
        if not parent or not child:
            return f"a transform with an empty frame id ('{parent}' -> '{child}') was ignored"
        if parent == child:
            return f"a transform from frame '{child}' to itself was ignored"
        norm = math.sqrt(sum(q * q for q in xyzw)) if all(map(math.isfinite, xyzw)) else math.nan
        if not all(map(math.isfinite, xyz)) or not norm > 1e-6:
            return f"the transform '{parent}' -> '{child}' is not finite or its quaternion is zero: ignored"
        ancestor = parent
        for _ in range(len(self._edges) + 1):  # would the new edge close a loop?
            if ancestor == child:
                return f"the transform '{parent}' -> '{child}' would make a loop ('{child}' is above '{parent}'): ignored"
            edge = self._edges.get(ancestor)
            if edge is None:
                break
            ancestor = edge.parent
        self._edges[child] = Edge(parent, Transform.from_xyz_quaternion(xyz, xyzw), static)
        return ""

    def _path_to_root(self, frame: str) -> list[tuple[str, Transform]]:
        """(ancestor, T_ancestor_from_frame) from the frame itself up to its tree's root."""
        path = [(frame, Transform())]
        while (edge := self._edges.get(path[-1][0])) is not None and len(path) <= len(self._edges) + 1:
            path.append((edge.parent, edge.transform @ path[-1][1]))
        return path

    def lookup(self, target: str, source: str) -> Transform:
        """T_target_from_source; TransformError naming the frames when they are unknown or not connected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        unknown = [f for f in dict.fromkeys((target, source)) if f not in self]
        if unknown:
            raise TransformError(f"no transform names frame {' or '.join(repr(f) for f in unknown)}")
        up_from_source = dict(self._path_to_root(source))
        for ancestor, target_up in self._path_to_root(target):  # target_up: T_ancestor_from_target
            if ancestor in up_from_source:
                return target_up.inverse() @ up_from_source[ancestor]
        roots = self._path_to_root(target)[-1][0], self._path_to_root(source)[-1][0]
        raise TransformError(f"frames '{target}' and '{source}' are not connected (their trees' roots: '{roots[0]}', '{roots[1]}')")


@dataclass(frozen=True)
class RigUpdate:
    rig: Rig  # the rig to use: the current one when nothing changed or something is missing
    changed: bool  # ``rig`` differs from the current one
    problem: str  # "" when every needed frame resolved


class TfRig:
    """The rig's sensor poses from a TransformTree: each needed sensor frame looked up in the base frame."""

    def __init__(self, base_frame: str, frame_ids: Mapping[Modality, str], modalities: Iterable[Modality]) -> None:
        self.base_frame = base_frame.lstrip("/")
        self.frame_ids = {m: f.lstrip("/") for m, f in frame_ids.items()}
        # the camera's frame is the output grid's, whatever is fused
        self.modalities = tuple(dict.fromkeys((Modality.CAMERA, *modalities)))
        self.tree = TransformTree()
        self.resolved = False  # the last update found every frame

    def observe_frame(self, modality: Modality, frame_id: str) -> bool:
        """A sensor message's header.frame_id: True when it names another frame than before."""
        frame_id = frame_id.lstrip("/")
        if not frame_id or self.frame_ids.get(modality) == frame_id:
            return False
        self.frame_ids = {**self.frame_ids, modality: frame_id}
        return True

    def relevant(self, child: str) -> bool:
        """Whether a transform of ``child`` can move a sensor (it lies on a looked-up path, or one is missing)."""
        if not self.resolved:
            return True
        child = child.lstrip("/")
        for modality in self.modalities:
            frame = self.frame_ids[modality]
            while frame is not None and frame != self.base_frame:
                if frame == child:
                    return True
                frame = self.tree.parent_of(frame)
            if frame is None:  # the base frame is below this sensor, or another tree: a move anywhere counts
                return True
        return False

    def update(self, rig: Rig) -> RigUpdate:
        """The rig with every needed sensor pose from TF, or ``rig`` itself with the problem (frames named)."""
        poses: dict[Modality, Transform] = {}
        problems = []
        if not self.tree.frames:
            needed = ", ".join(f"{m.value} '{self.frame_ids[m]}'" for m in self.modalities)
            self.resolved = False
            return RigUpdate(rig, False, f"no transform received yet (needed: '{self.base_frame}' to {needed})")
        for modality in self.modalities:
            frame = self.frame_ids[modality]
            try:
                poses[modality] = self.tree.lookup(self.base_frame, frame)
            except TransformError as err:
                problems.append(f"{modality.value} '{frame}' in '{self.base_frame}': {err}")
        self.resolved = not problems
        if problems:
            return RigUpdate(rig, False, "; ".join(problems))
        frame_ids = {**rig.frame_ids, **{m: self.frame_ids[m] for m in self.modalities}}
        if all(same_pose(rig.base_from[m], t) for m, t in poses.items()) and frame_ids == dict(rig.frame_ids):
            return RigUpdate(rig, False, "")
        return RigUpdate(replace(rig, base_from={**rig.base_from, **poses}, frame_ids=frame_ids), True, "")


def same_pose(a: Transform, b: Transform) -> bool:
    metres, radians = pose_difference(a, b)
    return metres <= SAME_TRANSLATION_M and radians <= SAME_ROTATION_RAD


def pose_difference(a: Transform, b: Transform) -> tuple[float, float]:
    """(translation in m, rotation angle in rad) between two poses."""
    delta = a.inverse() @ b
    cos = (np.trace(delta.rotation) - 1.0) / 2.0
    return float(np.linalg.norm(a.translation - b.translation)), float(math.acos(min(1.0, max(-1.0, cos))))


def describe_change(old: Rig, new: Rig, modalities: Iterable[Modality]) -> str:
    """How far each sensor's pose moved, for the log: 'lidar 0.300 m 2.0°, camera same'."""
    parts = []
    for m in modalities:
        metres, radians = pose_difference(old.base_from[m], new.base_from[m])
        moved = "unchanged" if same_pose(old.base_from[m], new.base_from[m]) else f"moved {metres:.3f} m, {math.degrees(radians):.2f}°"
        parts.append(f"{m.value} '{new.frame_ids.get(m, m.value)}' {moved}")
    return ", ".join(parts)
