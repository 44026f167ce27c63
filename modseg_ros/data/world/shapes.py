"""Triangle meshes of the world's primitives (numpy only), and a builder that tags each with a surface.

Every primitive is a ``Mesh`` (float32 vertices, int32 triangles) attached to a ``Surface``: its
DELIVER class id and the material the sensors see. Labels therefore come from the geometry a ray
hits, never from colours.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from modseg_ros.core.geometry import rotate_points


class Texture(IntEnum):
    """Procedural pattern applied on top of a surface's albedo (see sensors.py)."""

    PLAIN = 0
    ASPHALT = 1
    PAVING = 2  # sidewalk slabs
    FACADE = 3  # walls with a grid of windows
    GRASS = 4
    LEAVES = 5
    BRICK = 6
    VEHICLE = 7  # painted body with darker windows on the upper part
    BARK = 8
    PLANKS = 9  # fences
    SIGN = 10  # a face with a bright border and a symbol
    LAMP = 11  # emits (brightly at night): street-light heads
    SIGNAL = 12  # a dark traffic-light housing with one lit lamp (a disc around Surface.anchor)


@dataclass(frozen=True)
class Surface:
    """What a sensor sees on a primitive."""

    class_id: int  # DELIVER id 0..24
    albedo: tuple[float, float, float]  # linear RGB reflectance 0..1
    texture: Texture = Texture.PLAIN
    reflectivity: float = 0.3  # LiDAR return strength 0..1 (retro-reflectors close to 1)
    emission: tuple[float, float, float] = (0.0, 0.0, 0.0)  # linear RGB radiance added at night
    seed: int = 0  # varies the texture between instances
    anchor: tuple[float, float, float] = (0.0, 0.0, 0.0)  # SIGNAL: the lit lamp's centre; VEHICLE: heading


@dataclass(frozen=True, eq=False)
class Mesh:
    vertices: np.ndarray  # V×3 float32
    triangles: np.ndarray  # T×3 int32

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> Mesh:
        v = rotate_points(self.vertices, rotation) + np.asarray(translation, dtype=np.float32)
        return Mesh(v, self.triangles)


_BOX_FACES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
     [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]],
    dtype=np.int32,
)  # fmt: skip


def box(center, size, yaw: float = 0.0) -> Mesh:
    """Axis-aligned box (rotated by ``yaw`` about z) with its centre at ``center``, size (dx, dy, dz)."""
    hx, hy, hz = (0.5 * float(s) for s in size)
    corners = np.array(
        [[-hx, -hy, -hz], [hx, -hy, -hz], [hx, hy, -hz], [-hx, hy, -hz],
         [-hx, -hy, hz], [hx, -hy, hz], [hx, hy, hz], [-hx, hy, hz]],
        dtype=np.float32,
    )  # fmt: skip
    return Mesh(corners, _BOX_FACES).transformed(yaw_matrix(yaw), center)


def cylinder(center, radius: float, height: float, segments: int = 8, axis: str = "z") -> Mesh:
    """Closed cylinder centred at ``center`` along the world ``axis`` (x, y or z)."""
    angle = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    ring = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    h = 0.5 * height
    bottom = np.column_stack([ring, np.full(segments, -h)])
    top = np.column_stack([ring, np.full(segments, h)])
    vertices = np.vstack([bottom, top, [[0, 0, -h], [0, 0, h]]]).astype(np.float32)
    i = np.arange(segments)
    j = (i + 1) % segments
    sides = np.concatenate([np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)])
    caps = np.concatenate([
        np.stack([np.full(segments, 2 * segments), j, i], 1),
        np.stack([np.full(segments, 2 * segments + 1), i + segments, j + segments], 1),
    ])  # fmt: skip
    mesh = Mesh(vertices, np.concatenate([sides, caps]).astype(np.int32))
    rotation = {"z": np.eye(3), "x": _axis_swap("x"), "y": _axis_swap("y")}[axis]
    return mesh.transformed(rotation, center)


def _axis_swap(axis: str) -> np.ndarray:
    if axis == "x":  # z -> x
        return np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=np.float32)
    return np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float32)  # z -> y


def _icosahedron() -> Mesh:
    t = (1.0 + 5.0**0.5) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=np.float64,
    )  # fmt: skip
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
         [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
         [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int32,
    )  # fmt: skip
    return Mesh((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32), f)


def _subdivide(mesh: Mesh) -> Mesh:
    v = [tuple(p) for p in mesh.vertices.tolist()]
    index = {p: i for i, p in enumerate(v)}
    faces = []

    def midpoint(a: int, b: int) -> int:
        m = np.add(v[a], v[b]) / 2.0
        m = tuple((m / np.linalg.norm(m)).tolist())
        if m not in index:
            index[m] = len(v)
            v.append(m)
        return index[m]

    for a, b, c in mesh.triangles.tolist():
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        faces += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
    return Mesh(np.asarray(v, dtype=np.float32), np.asarray(faces, dtype=np.int32))


_UNIT_SPHERE = _subdivide(_icosahedron())  # 80 triangles


def blob(center, radii, rng: np.random.Generator, roughness: float = 0.15) -> Mesh:
    """A lumpy ellipsoid (tree crowns, bushes): a subdivided icosahedron with random radial bumps."""
    unit = _UNIT_SPHERE.vertices
    bumps = 1.0 + roughness * rng.uniform(-1.0, 1.0, size=(len(unit), 1))
    v = unit * bumps * np.asarray(radii, dtype=np.float32) + np.asarray(center, dtype=np.float32)
    return Mesh(v.astype(np.float32), _UNIT_SPHERE.triangles)


def yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class MeshGroup:
    """Meshes collected with their surfaces; ``merged()`` concatenates them for one scene geometry.

    Each triangle keeps the index of its surface, so one open3d geometry can carry many surfaces
    (ray hits report the triangle, the triangle gives the surface).
    """

    def __init__(self) -> None:
        self._meshes: list[Mesh] = []
        self._surface_of_mesh: list[int] = []

    def add(self, mesh: Mesh, surface: int) -> None:
        self._meshes.append(mesh)
        self._surface_of_mesh.append(surface)

    def extend(self, other: MeshGroup) -> None:
        self._meshes += other._meshes
        self._surface_of_mesh += other._surface_of_mesh

    def __len__(self) -> int:
        return len(self._meshes)

    def merged(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(V×3 float32 vertices, T×3 int32 triangles, T int32 surface index per triangle)."""
        if not self._meshes:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.int32)
        offsets = np.cumsum([0] + [len(m.vertices) for m in self._meshes[:-1]])
        vertices = np.concatenate([m.vertices for m in self._meshes])
        triangles = np.concatenate([m.triangles + o for m, o in zip(self._meshes, offsets)])
        surfaces = np.concatenate([np.full(len(m.triangles), s, np.int32) for m, s in zip(self._meshes, self._surface_of_mesh)])
        return vertices.astype(np.float32), triangles.astype(np.int32), surfaces
