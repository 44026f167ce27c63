"""A procedural street scene from a seed: static geometry, moving actors and the ego path.

Map frame: x along the main street (the ego drives +x), y to the left, z up, road surface at z=0.
Traffic drives on the right. Cross streets cut the main street at random intervals; between them,
lots hold buildings, yards with fences, walls or hedges, parks and plazas. Street furniture (lights,
signs, traffic lights, benches, bins), trees, parked and moving vehicles, two-wheelers and
pedestrians populate the street. Every primitive carries its DELIVER class (``core/palette.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from modseg_ros.core.palette import CLASS_ID
from modseg_ros.data.world.drive import EgoPath
from modseg_ros.data.world.shapes import Mesh, MeshGroup, Surface, Texture, blob, box, cylinder, yaw_matrix

C = CLASS_ID  # DELIVER class ids by name


@dataclass(frozen=True)
class TownParams:
    duration_s: float = 10.0  # how long the ego drives (sets the street length)
    actors: bool = True  # moving vehicles and pedestrians
    ego_speed: tuple[float, float] = (5.0, 12.0)  # m/s, drawn uniformly
    view_m: float = 260.0  # street length kept ahead of the ego's last position


@dataclass(frozen=True)
class Motion:
    """Straight-line motion on the ground: position p0 at t_start, moving until t_stop."""

    x0: float
    y0: float
    heading: float  # rad, 0 = +x
    speed: float
    t_start: float = 0.0
    t_stop: float = float("inf")

    def position(self, t: float) -> tuple[float, float]:
        d = self.speed * float(np.clip(t - self.t_start, 0.0, self.t_stop - self.t_start))
        return self.x0 + d * np.cos(self.heading), self.y0 + d * np.sin(self.heading)

    def moving(self, t: float) -> bool:
        return self.speed > 0 and self.t_start <= t < self.t_stop


@dataclass(frozen=True)
class ActorPart:
    mesh: Mesh  # in the actor frame (x forward, z up, origin on the ground)
    surface: int
    swing: float = 0.0  # walking swing amplitude (rad) about the y axis at pivot_z; sign = phase
    pivot_z: float = 0.0


@dataclass
class Actor:
    kind: str
    parts: list[ActorPart]
    motion: Motion
    gait_hz: float = 0.0  # steps per second for walkers
    gait_phase: float = 0.0

    def meshes_at(self, t: float) -> list[tuple[Mesh, int]]:
        x, y = self.motion.position(t)
        rotation = yaw_matrix(self.motion.heading)
        translation = np.array([x, y, 0.0])
        out = []
        walking = self.gait_hz > 0 and self.motion.moving(t)
        for part in self.parts:
            mesh = part.mesh
            if part.swing and walking:
                angle = part.swing * np.sin(2 * np.pi * self.gait_hz * t + self.gait_phase)
                c, s = np.cos(angle), np.sin(angle)
                r = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
                pivot = np.array([0.0, 0.0, part.pivot_z])
                mesh = Mesh(((mesh.vertices - pivot) @ r.T + pivot).astype(np.float32), mesh.triangles)
            out.append((mesh.transformed(rotation, translation), part.surface))
        return out


@dataclass
class Town:
    seed: int
    surfaces: list[Surface]
    static: MeshGroup
    actors: list[Actor]
    ego: EgoPath
    lights: np.ndarray  # L×3 positions of street-light heads (night lighting)
    style: dict[str, float] = field(default_factory=dict)

    def actor_meshes(self, t: float) -> tuple[MeshGroup, np.ndarray]:
        """All actors' meshes at time t, and each actor's axis-aligned bounds (A×2×3: min, max)."""
        group = MeshGroup()
        bounds = np.zeros((len(self.actors), 2, 3), np.float32)
        for i, actor in enumerate(self.actors):
            meshes = actor.meshes_at(t)
            for mesh, surface in meshes:
                group.add(mesh, surface)
            vertices = np.concatenate([mesh.vertices for mesh, _ in meshes])
            bounds[i] = vertices.min(0), vertices.max(0)
        return group, bounds


# --- materials -------------------------------------------------------------------------------------

FACADE_COLOURS = [(0.55, 0.50, 0.45), (0.62, 0.58, 0.52), (0.45, 0.30, 0.22), (0.70, 0.68, 0.62),
                  (0.35, 0.35, 0.38), (0.58, 0.46, 0.36), (0.75, 0.72, 0.60), (0.40, 0.42, 0.48),
                  (0.52, 0.25, 0.18), (0.66, 0.60, 0.48)]  # fmt: skip
CAR_COLOURS = [(0.8, 0.8, 0.82), (0.05, 0.05, 0.06), (0.5, 0.05, 0.04), (0.08, 0.15, 0.45),
               (0.45, 0.46, 0.48), (0.75, 0.6, 0.1), (0.1, 0.3, 0.12), (0.9, 0.9, 0.9),
               (0.25, 0.25, 0.27), (0.6, 0.25, 0.05)]  # fmt: skip
CLOTH_COLOURS = [(0.05, 0.05, 0.07), (0.15, 0.2, 0.45), (0.5, 0.1, 0.1), (0.55, 0.5, 0.4),
                 (0.2, 0.35, 0.2), (0.7, 0.7, 0.7), (0.35, 0.25, 0.2), (0.6, 0.45, 0.1)]  # fmt: skip
SKIN_COLOURS = [(0.75, 0.55, 0.42), (0.55, 0.38, 0.26), (0.35, 0.22, 0.14), (0.85, 0.68, 0.56)]


class _Builder:
    """Collects surfaces and meshes while the town is generated."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.surfaces: list[Surface] = []
        self.static = MeshGroup()
        self.lights: list[tuple[float, float, float]] = []

    def surface(self, class_name: str, albedo, texture: Texture = Texture.PLAIN, reflectivity: float = 0.3,
                emission=(0.0, 0.0, 0.0), anchor=(0.0, 0.0, 0.0)) -> int:
        jitter = self.rng.uniform(0.9, 1.1, size=3)
        albedo = tuple(float(np.clip(a * j, 0.0, 1.0)) for a, j in zip(albedo, jitter))
        seed = int(self.rng.integers(0, 2**31 - 1))
        self.surfaces.append(Surface(C[class_name], albedo, texture, reflectivity, tuple(emission), seed,
                                     tuple(float(v) for v in anchor)))
        return len(self.surfaces) - 1

    def add(self, mesh: Mesh, surface: int) -> None:
        self.static.add(mesh, surface)

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]


# --- the town --------------------------------------------------------------------------------------


def generate_town(seed: int, params: TownParams = TownParams()) -> Town:
    rng = np.random.default_rng(seed)
    b = _Builder(rng)
    style = {
        "lanes": int(rng.integers(1, 3)),  # per direction
        "lane_w": float(rng.uniform(3.0, 3.6)),
        "parking": float(rng.choice([0.0, 2.2])),
        "sidewalk": float(rng.uniform(2.5, 5.0)),
        "height_scale": float(rng.choice([0.5, 1.0, 1.8])),  # suburb, town, downtown
        "green": float(rng.uniform(0.1, 0.7)),  # share of trees, yards and parks
        "block": float(rng.uniform(50.0, 110.0)),
    }
    lane_w, lanes, parking = style["lane_w"], style["lanes"], style["parking"]
    road_half = lanes * lane_w + parking
    side_in = road_half  # kerb line
    side_out = road_half + style["sidewalk"]

    ego_lane = int(rng.integers(lanes))
    ego_y = -(ego_lane + 0.5) * lane_w  # lanes count from the centre line; parking is outermost
    ego_speed = float(rng.uniform(*params.ego_speed)) if params.ego_speed[1] > 0 else 0.0
    ego = EgoPath(x0=0.0, lane_y=ego_y, speed=ego_speed, sway_m=float(rng.uniform(0.0, 0.25)),
                  sway_period_s=float(rng.uniform(5.0, 10.0)), sway_phase=float(rng.uniform(0, 2 * np.pi)))
    x_min = -90.0
    x_max = ego.speed * params.duration_s + params.view_m

    # Cross streets.
    crossings = []
    x = float(rng.uniform(15.0, style["block"]))
    while x < x_max - 20:
        crossings.append((x, float(rng.uniform(0.8, 1.0)) * lane_w * (1 + (rng.random() < 0.4))))
        x += float(rng.uniform(0.7, 1.3)) * style["block"]

    road = b.surface("Road", (0.1, 0.1, 0.105), Texture.ASPHALT, 0.15)
    walk = b.surface("SideWalk", b.pick([(0.5, 0.48, 0.45), (0.58, 0.55, 0.5), (0.45, 0.4, 0.38)]), Texture.PAVING, 0.35)
    line_white = b.surface("RoadLine", (0.85, 0.85, 0.82), Texture.PLAIN, 0.9)
    line_yellow = b.surface("RoadLine", (0.8, 0.6, 0.1), Texture.PLAIN, 0.9)
    grass = b.surface("Terrain", (0.18, 0.3, 0.08), Texture.GRASS, 0.45)

    # Ground plane (terrain far away) and the main road.
    b.add(box((0.5 * (x_min + x_max), 0.0, -0.1), (x_max - x_min + 800, 800, 0.1)), grass)
    b.add(box((0.5 * (x_min + x_max), 0.0, -0.1), (x_max - x_min, 2 * road_half, 0.2)), road)

    # Main-street sidewalks, split at the crossings.
    gaps = [(xc - hw, xc + hw) for xc, hw in crossings]
    for side in (-1, 1):
        for x0, x1 in _free_spans(x_min, x_max, gaps):
            b.add(box((0.5 * (x0 + x1), side * 0.5 * (side_in + side_out), 0.075), (x1 - x0, side_out - side_in, 0.15)), walk)

    _lane_markings(b, style, x_min, x_max, gaps, line_white, line_yellow)

    for xc, hw in crossings:
        _crossing(b, style, xc, hw, road, walk, line_white)

    # Lots behind the sidewalks, street furniture along them.
    for side in (-1, 1):
        for x0, x1 in _free_spans(x_min, x_max, [(a - style["sidewalk"], c + style["sidewalk"]) for a, c in gaps]):
            _lots(b, style, side, side_out, x0, x1, grass)
        _furniture(b, style, side, side_in, side_out, x_min, x_max, gaps, crossings)
    _background(b, style, side_out, x_min, x_max)

    _parked_vehicles(b, style, side_in, x_min, x_max, gaps)
    actors = _actors(b, style, ego, crossings, road_half, side_in, side_out, x_min, x_max, params.duration_s) if params.actors else []
    return Town(seed=seed, surfaces=b.surfaces, static=b.static, actors=actors, ego=ego,
                lights=np.asarray(b.lights, dtype=np.float32).reshape(-1, 3), style=style)


def _free_spans(x0: float, x1: float, gaps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    spans, start = [], x0
    for a, c in sorted(gaps):
        if a > start:
            spans.append((start, min(a, x1)))
        start = max(start, c)
    if start < x1:
        spans.append((start, x1))
    return [(a, c) for a, c in spans if c - a > 0.5]


def _lane_markings(b: _Builder, style, x_min, x_max, gaps, white, yellow) -> None:
    lane_w, lanes, parking = style["lane_w"], style["lanes"], style["parking"]
    dash, period = float(b.rng.uniform(2.5, 4.0)), float(b.rng.uniform(8.0, 12.0))
    double_centre = b.rng.random() < 0.5
    for x0, x1 in _free_spans(x_min, x_max, [(a - 3, c + 3) for a, c in gaps]):
        # centre line: double yellow or dashed white
        if double_centre:
            for dy in (-0.12, 0.12):
                b.add(box((0.5 * (x0 + x1), dy, 0.005), (x1 - x0, 0.12, 0.02)), yellow)
        else:
            _dashes(b, x0, x1, 0.0, dash, period, white)
        for side in (-1, 1):
            for k in range(1, lanes):
                _dashes(b, x0, x1, side * k * lane_w, dash, period, white)
            edge = lanes * lane_w - (0.25 if parking == 0 else 0.0)  # kerb line, or between lanes and parking
            b.add(box((0.5 * (x0 + x1), side * edge, 0.005), (x1 - x0, 0.15, 0.02)), white)


def _dashes(b: _Builder, x0, x1, y, dash, period, surface) -> None:
    x = x0 + float(b.rng.uniform(0, period))
    while x + dash < x1:
        b.add(box((x + dash / 2, y, 0.005), (dash, 0.15, 0.02)), surface)
        x += period


def _crossing(b: _Builder, style, xc, hw, road, walk, white) -> None:
    """A cross street along y at x = xc (half width hw): road, sidewalks, zebra crossings, stop lines."""
    y_far = 220.0
    road_half = style["lanes"] * style["lane_w"] + style["parking"]
    sw = style["sidewalk"]
    for side in (-1, 1):
        y0, y1 = side * road_half, side * y_far
        b.add(box((xc, 0.5 * (y0 + y1), -0.1), (2 * hw, abs(y1 - y0), 0.2)), road)
        for xs in (-1, 1):  # sidewalks of the cross street
            b.add(box((xc + xs * (hw + sw / 2), 0.5 * (side * (road_half + sw) + y1), 0.075), (sw, abs(y1 - side * (road_half + sw)), 0.15)), walk)
        # centre line of the cross street
        b.add(box((xc, 0.5 * (side * (road_half + 2) + y1), 0.005), (0.12, abs(y1 - side * (road_half + 2)), 0.02)), white)
    # zebra crossings over the main street, on both sides of the junction
    for xs in (-1, 1):
        xz = xc + xs * (hw + 2.0)
        y = -road_half + 0.3
        while y < road_half - 0.3:
            b.add(box((xz, y + 0.25, 0.005), (3.0, 0.5, 0.02)), white)
            y += 1.0
        # stop line on the approaching side of each direction
        sy = -1 if xs < 0 else 1
        b.add(box((xz - xs * 2.0, sy * road_half / 2, 0.005), (0.4, road_half, 0.02)), white)


def _lots(b: _Builder, style, side, y_front, x0, x1, grass) -> None:
    rng = b.rng
    x = x0
    while x < x1 - 4:
        width = min(float(rng.uniform(8.0, 30.0)), x1 - x)
        kind = rng.choice(["building", "yard", "park", "walled", "plaza"],
                          p=_lot_probabilities(style["green"]))
        xa, xb = x + 0.3, x + width - 0.3
        cx = 0.5 * (xa + xb)
        if kind == "building":
            _building(b, style, side, y_front + float(rng.uniform(0.0, 1.0)), xa, xb)
        elif kind == "yard":
            setback = float(rng.uniform(3.0, 8.0))
            b.add(box((cx, side * (y_front + setback / 2), 0.06), (xb - xa, setback, 0.12)), grass)
            _boundary(b, side, y_front + 0.3, xa, xb)
            _building(b, style, side, y_front + setback, xa + 1, xb - 1)
            if rng.random() < 0.6:
                _tree(b, cx + float(rng.uniform(-3, 3)), side * (y_front + setback / 2), float(rng.uniform(0.7, 1.2)))
        elif kind == "park":
            depth = float(rng.uniform(15.0, 40.0))
            b.add(box((cx, side * (y_front + depth / 2), 0.06), (xb - xa, depth, 0.12)), grass)
            if rng.random() < 0.5:
                _boundary(b, side, y_front + 0.3, xa, xb)
            for _ in range(int(rng.integers(2, 6))):
                _tree(b, float(rng.uniform(xa + 1, xb - 1)), side * (y_front + float(rng.uniform(2, depth))), float(rng.uniform(0.8, 1.4)))
            for _ in range(int(rng.integers(0, 4))):
                hedge = b.surface("Vegetation", (0.08, 0.2, 0.05), Texture.LEAVES, 0.5)
                hx = float(rng.uniform(xa, xb))
                b.add(blob((hx, side * (y_front + float(rng.uniform(1, depth))), 0.5), (1.2, 1.0, 0.8), rng), hedge)
        elif kind == "walled":
            wall = b.surface("Wall", b.pick([(0.55, 0.52, 0.48), (0.45, 0.3, 0.25), (0.6, 0.6, 0.6)]), Texture.BRICK, 0.4)
            h = float(rng.uniform(1.5, 3.2))
            b.add(box((cx, side * (y_front + 0.3), h / 2), (xb - xa, 0.35, h)), wall)
            _building(b, style, side, y_front + float(rng.uniform(4.0, 10.0)), xa, xb)
        else:  # plaza / parking lot: open ground, some bins and a few parked cars
            depth = float(rng.uniform(12.0, 30.0))
            ground = b.surface("Ground", b.pick([(0.35, 0.33, 0.3), (0.25, 0.25, 0.26)]), Texture.PAVING, 0.3)
            b.add(box((cx, side * (y_front + depth / 2), 0.05), (xb - xa, depth, 0.1)), ground)
            _building(b, style, side, y_front + depth, xa, xb)
            for _ in range(int(rng.integers(0, 3)) if xb - xa >= 4.0 else 0):
                _vehicle_static(b, float(rng.uniform(xa + 2, xb - 2)), side * (y_front + float(rng.uniform(3, depth - 3))),
                                float(rng.choice([0.0, np.pi / 2])) + float(rng.normal(0, 0.05)))
        x += width


def _lot_probabilities(green: float) -> list[float]:
    p = np.array([0.55 * (1 - green) + 0.1, 0.15 + 0.2 * green, 0.05 + 0.25 * green, 0.12, 0.08])
    return list(p / p.sum())


def _boundary(b: _Builder, side, y, xa, xb) -> None:
    """Fence, hedge or low wall along a lot's front."""
    rng = b.rng
    kind = rng.choice(["fence", "hedge", "wall"], p=[0.5, 0.25, 0.25])
    cx = 0.5 * (xa + xb)
    if kind == "fence":
        fence = b.surface("Fence", b.pick([(0.35, 0.25, 0.15), (0.5, 0.5, 0.5), (0.2, 0.2, 0.22)]), Texture.PLANKS, 0.4)
        h = float(rng.uniform(1.0, 2.0))
        b.add(box((cx, side * y, h / 2 + 0.15), (xb - xa, 0.08, h)), fence)
    elif kind == "hedge":
        hedge = b.surface("Vegetation", (0.07, 0.2, 0.05), Texture.LEAVES, 0.5)
        h = float(rng.uniform(0.8, 1.8))
        b.add(box((cx, side * y, h / 2 + 0.1), (xb - xa, 0.8, h)), hedge)
    else:
        wall = b.surface("Wall", b.pick([(0.6, 0.58, 0.55), (0.5, 0.35, 0.28)]), Texture.BRICK, 0.4)
        h = float(rng.uniform(0.6, 1.4))
        b.add(box((cx, side * y, h / 2 + 0.1), (xb - xa, 0.3, h)), wall)


def _building(b: _Builder, style, side, y_front, xa, xb) -> None:
    rng = b.rng
    if xb - xa < 3:
        return
    depth = float(rng.uniform(10.0, 25.0))
    height = float(np.clip(rng.lognormal(np.log(12.0 * style["height_scale"]), 0.45), 4.0, 70.0))
    facade = b.surface("Building", b.pick(FACADE_COLOURS), Texture.FACADE, 0.35)
    cy = side * (y_front + depth / 2)
    b.add(box((0.5 * (xa + xb), cy, height / 2), (xb - xa, depth, height)), facade)
    if rng.random() < 0.3 and height > 10:  # set-back upper storey
        h2 = float(rng.uniform(3.0, 10.0))
        b.add(box((0.5 * (xa + xb), cy + side * 2.0, height + h2 / 2), (xb - xa - 2, depth - 4, h2)), facade)


def _background(b: _Builder, style, side_out, x_min, x_max) -> None:
    """Taller blocks behind the lots: a skyline instead of empty land between the buildings."""
    rng = b.rng
    for side in (-1, 1):
        x = x_min
        while x < x_max + 100:
            w = float(rng.uniform(15, 45))
            if rng.random() < 0.8:
                h = float(np.clip(rng.lognormal(np.log(18.0 * style["height_scale"]), 0.5), 6.0, 90.0))
                y = side_out + float(rng.uniform(45.0, 80.0))
                s = b.surface("Building", b.pick(FACADE_COLOURS), Texture.FACADE, 0.35)
                b.add(box((x + w / 2, side * (y + 15), h / 2), (w - 2, 30, h)), s)
            x += w
    # the street's far end: a block across the road beyond the view
    s = b.surface("Building", b.pick(FACADE_COLOURS), Texture.FACADE, 0.35)
    b.add(box((x_max + 40, 0, 15), (30, 200, 30)), s)
    b.add(box((x_min - 40, 0, 15), (30, 200, 30)), s)


def _tree(b: _Builder, x, y, scale) -> None:
    rng = b.rng
    trunk = b.surface("Vegetation", (0.22, 0.15, 0.1), Texture.BARK, 0.4)
    leaves = b.surface("Vegetation", b.pick([(0.1, 0.22, 0.05), (0.15, 0.28, 0.06), (0.08, 0.16, 0.06)]), Texture.LEAVES, 0.5)
    h = float(rng.uniform(2.5, 4.0)) * scale
    b.add(cylinder((x, y, h / 2), 0.15 * scale, h, segments=6), trunk)
    r = float(rng.uniform(1.6, 2.8)) * scale
    b.add(blob((x, y, h + r * 0.7), (r, r, r * float(rng.uniform(0.8, 1.3))), rng, 0.2), leaves)


def _furniture(b: _Builder, style, side, side_in, side_out, x_min, x_max, gaps, crossings) -> None:
    rng = b.rng
    pole = b.surface("Pole", b.pick([(0.35, 0.35, 0.36), (0.2, 0.22, 0.2), (0.5, 0.5, 0.48)]), Texture.PLAIN, 0.5)
    lamp = b.surface("Pole", (0.8, 0.8, 0.75), Texture.LAMP, 0.6, emission=(6.0, 5.0, 3.2))
    in_gap = lambda x, m=0.0: any(a - m <= x <= c + m for a, c in gaps)  # noqa: E731
    y_kerb = side * (side_in + 0.6)

    # Street lights (their heads light the street at night).
    spacing = float(rng.uniform(22.0, 40.0))
    x = x_min + float(rng.uniform(0, spacing)) + (spacing / 2 if side > 0 else 0)
    while x < x_max:
        if not in_gap(x, 2.0):
            h = float(rng.uniform(6.5, 9.0))
            b.add(cylinder((x, y_kerb, h / 2), 0.1, h, segments=6), pole)
            arm = float(rng.uniform(1.0, 2.5))
            b.add(box((x, y_kerb - side * arm / 2, h - 0.1), (0.12, arm, 0.12)), pole)
            b.add(box((x, y_kerb - side * arm, h - 0.25), (0.6, 0.35, 0.2)), lamp)
            b.lights.append((x, y_kerb - side * arm, h - 0.4))
        x += spacing

    # A grass verge along the kerb, and/or trees (in pits where there is no verge).
    verge = rng.random() < 0.55
    if verge:
        grass = b.surface("Terrain", (0.2, 0.3, 0.1), Texture.GRASS, 0.45)
        for a, c in _free_spans(x_min, x_max, gaps):
            b.add(box((0.5 * (a + c), side * (side_in + 0.9), 0.16), (c - a, 1.2, 0.04)), grass)
    if rng.random() < style["green"] + 0.2:
        spacing = float(rng.uniform(7.0, 15.0))
        x = x_min + float(rng.uniform(0, spacing))
        pit = b.surface("Terrain", (0.2, 0.15, 0.08), Texture.GRASS, 0.4)
        while x < x_max:
            if not in_gap(x, 3.0) and rng.random() < 0.85:
                y = side * (side_in + (0.9 if verge else float(rng.uniform(0.9, 1.4))))
                if not verge:
                    b.add(box((x, y, 0.16), (1.4, 1.4, 0.04)), pit)
                _tree(b, x, y, float(rng.uniform(0.7, 1.2)))
            x += spacing

    # Signs.
    for _ in range(int(rng.integers(6, 16) * (x_max - x_min) / 400)):
        x = float(rng.uniform(x_min, x_max))
        if in_gap(x, 1.0):
            continue
        _sign(b, x, side * (side_in + 0.4), side, pole)
    # Traffic lights at the junctions' corners (on this side), facing the traffic.
    for xc, hw in crossings:
        for xs in (-1, 1):
            if rng.random() < 0.8:
                _traffic_light(b, xc + xs * (hw + 0.8), side * (side_in + 0.5), side, xs, style, pole)
    # Static clutter: benches, bins, bollards, bus shelters.
    static_colour = [(0.3, 0.2, 0.12), (0.15, 0.25, 0.15), (0.4, 0.4, 0.42)]
    for _ in range(int(rng.integers(4, 14))):
        x = float(rng.uniform(x_min, x_max))
        if in_gap(x, 1.0):
            continue
        y = side * (side_out - float(rng.uniform(0.5, 1.2)))
        kind = rng.choice(["bench", "bin", "shelter", "box", "cart"], p=[0.3, 0.3, 0.1, 0.2, 0.1])
        if kind == "bench":
            s = b.surface("Static", b.pick(static_colour), Texture.PLANKS, 0.3)
            b.add(box((x, y, 0.45), (1.8, 0.5, 0.1)), s)
            b.add(box((x, y + side * 0.22, 0.75), (1.8, 0.06, 0.5)), s)
            for dx in (-0.8, 0.8):
                b.add(box((x + dx, y, 0.22), (0.06, 0.45, 0.45)), s)
        elif kind == "bin":
            s = b.surface("Static", b.pick(static_colour), Texture.PLAIN, 0.3)
            b.add(cylinder((x, y, 0.5), 0.3, 0.9, segments=8), s)
        elif kind == "shelter":
            s = b.surface("Static", (0.5, 0.55, 0.6), Texture.PLAIN, 0.3)
            b.add(box((x, y, 2.5), (4.0, 1.6, 0.1)), s)
            b.add(box((x, y + side * 0.75, 1.3), (4.0, 0.06, 2.3)), s)
            b.add(box((x - 1.95, y, 1.3), (0.06, 1.5, 2.3)), s)
        elif kind == "box":  # utility cabinet
            s = b.surface("Static", b.pick([(0.45, 0.47, 0.42), (0.3, 0.35, 0.3)]), Texture.PLAIN, 0.4)
            b.add(box((x, y, 0.75), (0.9, 0.5, 1.3)), s)
        else:  # something movable: a cart or a skip
            s = b.surface("Dynamic", b.pick([(0.6, 0.35, 0.05), (0.1, 0.3, 0.5)]), Texture.PLAIN, 0.35)
            b.add(box((x, y, 0.6), (1.2, 0.8, 1.0)), s)


def _sign(b: _Builder, x, y, side, pole) -> None:
    rng = b.rng
    colour = b.pick([(0.7, 0.05, 0.05), (0.05, 0.15, 0.6), (0.85, 0.7, 0.05), (0.05, 0.35, 0.1), (0.8, 0.8, 0.8)])
    sign = b.surface("TrafficSign", colour, Texture.SIGN, 0.95)
    h = float(rng.uniform(2.0, 3.2))
    b.add(cylinder((x, y, h / 2), 0.04, h, segments=6), pole)
    facing = -1.0 if side < 0 else 1.0  # the plate faces the traffic driving towards it
    if rng.random() < 0.5:
        plate = cylinder((x + facing * 0.05, y, h + 0.3), float(rng.uniform(0.35, 0.5)), 0.04, segments=12, axis="x")
    else:
        plate = box((x + facing * 0.05, y, h + 0.3), (0.04, float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.6, 1.0))))
    b.add(plate, sign)


def _traffic_light(b: _Builder, x, y, side, xs, style, pole) -> None:
    """A pole with a signal head at the kerb, sometimes a mast arm with a second head over the road."""
    rng = b.rng
    h = float(rng.uniform(3.0, 4.0))
    state = int(rng.integers(3))  # 0 red (top), 1 amber, 2 green (bottom)
    colour = [(5.0, 0.3, 0.2), (5.0, 3.0, 0.2), (0.3, 5.0, 1.2)][state]
    b.add(cylinder((x, y, h / 2), 0.09, h, segments=6), pole)
    heads = [(y, h + 0.5)]
    if rng.random() < 0.5:
        arm = min(style["lanes"] * style["lane_w"] * 0.8, 6.0)
        b.add(box((x, y - side * arm / 2, h + 1.0), (0.12, arm, 0.12)), pole)
        heads.append((y - side * arm, h + 0.45))
    for hy, hz in heads:
        lamp = (x - xs * 0.18, hy, hz + 0.3 - 0.3 * state)  # on the face towards the approaching traffic
        housing = b.surface("TrafficLight", (0.06, 0.06, 0.05), Texture.SIGNAL, 0.4, emission=colour, anchor=lamp)
        b.add(box((x, hy, hz), (0.35, 0.35, 1.0)), housing)


# --- vehicles and people ---------------------------------------------------------------------------


def _vehicle_parts(b: _Builder, kind: str, heading: float) -> list[ActorPart]:
    """A vehicle's parts in its own frame; its body surfaces carry the heading (for their lamps)."""
    rng = b.rng
    forward = (float(np.cos(heading)), float(np.sin(heading)), 0.0)
    tyre = b.surface({"car": "Cars", "truck": "Truck", "bus": "Bus", "twowheeler": "TwoWheeler"}[kind], (0.03, 0.03, 0.03), Texture.PLAIN, 0.1)
    parts: list[ActorPart] = []
    if kind == "car":
        body = b.surface("Cars", b.pick(CAR_COLOURS), Texture.VEHICLE, 0.7, anchor=forward)
        length, width = float(rng.uniform(3.8, 4.9)), float(rng.uniform(1.7, 1.95))
        h_body = float(rng.uniform(0.6, 0.8))
        parts.append(ActorPart(box((0, 0, 0.3 + h_body / 2), (length, width, h_body)), body))
        cabin_len = length * float(rng.uniform(0.45, 0.6))
        h_cab = float(rng.uniform(0.5, 0.7)) * (1.3 if rng.random() < 0.3 else 1.0)  # SUVs
        parts.append(ActorPart(box((-0.1 * length, 0, 0.3 + h_body + h_cab / 2), (cabin_len, width * 0.9, h_cab)), body))
        wheel_x = 0.35 * length
    elif kind == "truck":
        cab = b.surface("Truck", b.pick(CAR_COLOURS), Texture.VEHICLE, 0.7, anchor=forward)
        cargo = b.surface("Truck", b.pick([(0.8, 0.8, 0.8), (0.5, 0.1, 0.1), (0.2, 0.3, 0.5)]), Texture.PLAIN, 0.6)
        length = float(rng.uniform(7.0, 10.0))
        parts.append(ActorPart(box((length / 2 - 1.2, 0, 1.6), (2.2, 2.4, 2.6)), cab))
        parts.append(ActorPart(box((-1.0, 0, 2.0), (length - 2.6, 2.5, 3.2)), cargo))
        wheel_x = 0.38 * length
        width = 2.4
    elif kind == "bus":
        body = b.surface("Bus", b.pick([(0.7, 0.1, 0.1), (0.1, 0.3, 0.6), (0.85, 0.7, 0.1), (0.8, 0.8, 0.8)]), Texture.VEHICLE, 0.7,
                         anchor=forward)
        length = float(rng.uniform(10.0, 12.5))
        parts.append(ActorPart(box((0, 0, 1.75), (length, 2.55, 3.0)), body))
        wheel_x = 0.36 * length
        width = 2.55
    else:  # two-wheeler with its rider
        frame = b.surface("TwoWheeler", b.pick(CAR_COLOURS), Texture.PLAIN, 0.5)
        rider = b.surface("TwoWheeler", b.pick(CLOTH_COLOURS), Texture.PLAIN, 0.3)
        head = b.surface("TwoWheeler", b.pick([(0.1, 0.1, 0.1), (0.8, 0.8, 0.8), (0.6, 0.1, 0.1)]), Texture.PLAIN, 0.3)
        parts.append(ActorPart(box((0, 0, 0.65), (1.5, 0.25, 0.45)), frame))
        parts.append(ActorPart(box((-0.1, 0, 1.2), (0.4, 0.4, 0.7)), rider))
        parts.append(ActorPart(blob((0.0, 0, 1.75), (0.15, 0.15, 0.17), rng, 0.05), head))
        for wx in (-0.6, 0.6):
            parts.append(ActorPart(cylinder((wx, 0, 0.33), 0.33, 0.08, segments=10, axis="y"), tyre))
        return parts
    for wx in (-wheel_x, wheel_x):
        for wy in (-0.5 * width + 0.15, 0.5 * width - 0.15):
            parts.append(ActorPart(cylinder((wx, wy, 0.34), 0.34, 0.25, segments=10, axis="y"), tyre))
    return parts


def _vehicle_static(b: _Builder, x, y, heading, kind: str | None = None) -> None:
    kind = kind or str(b.rng.choice(["car", "car", "car", "car", "truck", "twowheeler"]))
    r, t = yaw_matrix(heading), np.array([x, y, 0.0])
    for part in _vehicle_parts(b, kind, heading):
        b.add(part.mesh.transformed(r, t), part.surface)


def _pedestrian_parts(b: _Builder) -> list[ActorPart]:
    rng = b.rng
    s = float(rng.uniform(0.85, 1.1))  # height scale (1.0 ~ 1.75 m)
    skin = b.surface("Pedestrian", b.pick(SKIN_COLOURS), Texture.PLAIN, 0.3)
    top = b.surface("Pedestrian", b.pick(CLOTH_COLOURS), Texture.PLAIN, 0.3)
    legs = b.surface("Pedestrian", b.pick(CLOTH_COLOURS), Texture.PLAIN, 0.3)
    hip = 0.9 * s
    parts = [
        ActorPart(box((0, -0.1 * s, hip / 2), (0.16 * s, 0.14 * s, hip)), legs, swing=0.45, pivot_z=hip),
        ActorPart(box((0, 0.1 * s, hip / 2), (0.16 * s, 0.14 * s, hip)), legs, swing=-0.45, pivot_z=hip),
        ActorPart(box((0, 0, hip + 0.3 * s), (0.25 * s, 0.42 * s, 0.6 * s)), top),
        ActorPart(box((0, -0.27 * s, hip + 0.28 * s), (0.1 * s, 0.1 * s, 0.6 * s)), top, swing=-0.35, pivot_z=hip + 0.55 * s),
        ActorPart(box((0, 0.27 * s, hip + 0.28 * s), (0.1 * s, 0.1 * s, 0.6 * s)), top, swing=0.35, pivot_z=hip + 0.55 * s),
        ActorPart(blob((0, 0, hip + 0.75 * s), (0.11 * s, 0.1 * s, 0.13 * s), rng, 0.05), skin),
    ]
    if rng.random() < 0.3:  # a bag or a backpack
        bag = b.surface("Pedestrian", b.pick(CLOTH_COLOURS), Texture.PLAIN, 0.3)
        parts.append(ActorPart(box((-0.2 * s, 0, hip + 0.3 * s), (0.15 * s, 0.3 * s, 0.4 * s)), bag))
    return parts


def _parked_vehicles(b: _Builder, style, side_in, x_min, x_max, gaps) -> None:
    rng = b.rng
    if style["parking"] <= 0:
        return
    for side in (-1, 1):
        x = x_min + float(rng.uniform(0, 8))
        while x < x_max:
            if not any(a - 4 <= x <= c + 4 for a, c in gaps) and rng.random() < 0.65:
                kind = str(rng.choice(["car"] * 8 + ["truck", "twowheeler"]))
                heading = (0.0 if side < 0 else np.pi) + float(rng.normal(0, 0.03))
                _vehicle_static(b, x, side * (side_in - 0.5 * style["parking"] - 0.1), heading, kind)
            x += float(rng.uniform(5.5, 8.0))


def _actors(b: _Builder, style, ego: EgoPath, crossings, road_half, side_in, side_out, x_min, x_max, duration) -> list[Actor]:
    rng = b.rng
    lane_w, lanes = style["lane_w"], style["lanes"]
    actors: list[Actor] = []
    ego_lane_y = ego.lane_y
    span = x_max - x_min
    # Traffic on the main street: every lane has one speed so that vehicles never run into each other.
    for direction in (1, -1):
        for k in range(lanes):
            y = -direction * (k + 0.5) * lane_w
            same_as_ego = direction == 1 and abs(y - ego_lane_y) < 0.5
            speed = float(rng.uniform(6.0, 14.0))
            if same_as_ego:
                speed = ego.speed + float(rng.uniform(0.0, 2.5))
            x = x_min + float(rng.uniform(0, 20))
            if same_as_ego:
                x = ego.x0 + float(rng.uniform(12.0, 35.0))
            while x < x_max:
                kind = str(rng.choice(["car"] * 10 + ["truck", "truck", "bus", "twowheeler", "twowheeler"]))
                heading = 0.0 if direction == 1 else np.pi
                offset = float(rng.normal(0, 0.15)) + (0.8 * -direction if kind == "twowheeler" else 0.0)
                if rng.random() < 0.7 * (0.5 + 0.5 * (span < 600)):
                    actors.append(Actor(kind, _vehicle_parts(b, kind, heading), Motion(x, y + offset, heading, speed)))
                x += float(rng.uniform(14.0, 45.0)) + (8.0 if kind in ("bus", "truck") else 0.0)
    # Cross traffic that passes the junction when the ego is not in it.
    ego_t = np.linspace(0.0, duration, 200)
    ego_x, _ = ego.position(ego_t)
    for xc, hw in crossings:
        for direction in (1, -1):
            for _ in range(int(rng.integers(0, 3))):
                speed = float(rng.uniform(5.0, 11.0))
                y0 = -direction * float(rng.uniform(10.0, 120.0))
                t_cross = abs(y0) / speed  # when it reaches the main street
                x_ego = float(np.interp(t_cross, ego_t, ego_x))
                if xc - 20.0 < x_ego < xc + hw + 6.0:
                    continue
                kind = str(rng.choice(["car"] * 6 + ["truck", "bus", "twowheeler"]))
                lane = xc - direction * 0.5 * hw
                actors.append(Actor(kind, _vehicle_parts(b, kind, direction * np.pi / 2), Motion(lane, y0, direction * np.pi / 2, speed)))
    # Pedestrians walking along the sidewalks, some standing, some crossing at the zebra crossings.
    n_walkers = int(rng.integers(25, 55) * span / 400)
    for _ in range(n_walkers):
        side = 1 if rng.random() < 0.5 else -1
        x = float(rng.uniform(x_min, x_max))
        y = side * float(rng.uniform(side_in + 0.8, side_out - 0.4))
        standing = rng.random() < 0.2
        speed = 0.0 if standing else float(rng.uniform(0.9, 1.7))
        heading = float(rng.choice([0.0, np.pi])) + float(rng.normal(0, 0.05)) if not standing else float(rng.uniform(0, 2 * np.pi))
        actors.append(_walker(b, Motion(x, y, heading, speed), speed))
    for xc, hw in crossings:
        for _ in range(int(rng.integers(0, 4))):
            side = 1 if rng.random() < 0.5 else -1
            speed = float(rng.uniform(1.0, 1.6))
            xz = xc + float(rng.choice([-1, 1])) * (hw + 2.0) + float(rng.uniform(-1, 1))
            t_start = float(rng.uniform(0.0, duration))
            y0 = side * (road_half + 1.0)
            # on the road between t_start and t_start + 2*road_half/speed: keep clear of the ego
            t_on = np.linspace(t_start, t_start + 2 * (road_half + 1) / speed, 20)
            ex, _ = ego.position(t_on)
            if np.any((ex > xz - 25.0) & (ex < xz + 3.0)):
                continue  # would step in front of the ego
            heading = -side * np.pi / 2
            actors.append(_walker(b, Motion(xz, y0, heading, speed, t_start, t_start + 2 * (road_half + 1) / speed), speed))
    return actors


def _walker(b: _Builder, motion: Motion, speed: float) -> Actor:
    gait = 0.9 * speed if speed > 0 else 0.0
    return Actor("pedestrian", _pedestrian_parts(b), motion, gait_hz=gait, gait_phase=float(b.rng.uniform(0, 2 * np.pi)))
