"""The world's sensors agree with each other and with physics (small resolution, one town)."""
from dataclasses import replace

import numpy as np
import pytest

from modseg_ros.core.config import load_parameters, rig_from_parameters
from modseg_ros.core.palette import CLASS_ID
from modseg_ros.core.types import Modality
from modseg_ros.data.world.conditions import make_condition
from modseg_ros.data.world.sensors import EventModel, LidarModel
from modseg_ros.data.world.simulator import SensorModels, Simulator, scaled_rig
from modseg_ros.data.world.town import TownParams, generate_town
from modseg_ros.paths import config_file

SEED = 11
T = 2.0


@pytest.fixture(scope="module")
def rig():
    return scaled_rig(rig_from_parameters(load_parameters(config_file("any2seg.yaml"))), 192, 96)


@pytest.fixture(scope="module")
def town():
    return generate_town(SEED, TownParams(duration_s=5.0))


def simulator(town, rig, condition="sun", threads=1, **models):
    sensors = SensorModels(lidar=LidarModel(beams=32, azimuths=512), **models)
    return Simulator(town, make_condition(condition, np.random.default_rng(3)), rig, sensors, seed=5, threads=threads)


@pytest.fixture(scope="module")
def sun(town, rig):
    return simulator(town, rig, "sun")


def lidar_in_camera(sim, rig, t):
    """LiDAR points projected through the rig calibration: pixel (u, v), camera depth z, labels."""
    scan = sim.lidar(t)
    pts_cam = rig.camera_from(Modality.LIDAR).apply(scan.points)
    u, v, idx = rig.camera.project(pts_cam)
    return u, v, pts_cam[idx, 2], scan.labels[idx]


def neighbours(image):
    """The 3×3 neighbourhood of every pixel, stacked: 9×H×W."""
    pad = np.pad(image, 1, mode="edge")
    h, w = image.shape
    return np.stack([pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])


def away_from_edges(depth, u, v, labels=None):
    """Pixels whose 3×3 neighbourhood has no depth discontinuity (parallax between the two sensors)
    and, if given, a single label (a point can fall either side of a boundary within a pixel)."""
    d = neighbours(np.nan_to_num(depth, nan=1e4))
    smooth = (d.max(0) - d.min(0)) < 0.03 * d[4] + 0.05
    if labels is not None:
        lab = neighbours(labels)
        smooth &= np.all(lab == lab[4], axis=0)
    return smooth[v, u]


def test_depth_equals_lidar_range_through_the_calibration(sun, rig):
    depth = sun.depth(T).depth_m
    u, v, z, _ = lidar_in_camera(sun, rig, T)
    keep = away_from_edges(depth, u, v) & np.isfinite(depth[v, u])
    assert keep.sum() > 500
    rel = np.abs(depth[v, u][keep] - z[keep]) / z[keep]
    assert np.median(rel) < 0.01  # both measure the same surfaces
    assert np.mean(rel < 0.05) > 0.95


def test_labels_at_lidar_points_agree_with_the_label_image(sun, rig):
    shot = sun.camera(T)
    depth = sun.depth(T).depth_m
    u, v, z, labels = lidar_in_camera(sun, rig, T)
    same_surface = np.abs(depth[v, u] - z) < 0.05 * z + 0.1  # not occluded from one of the two viewpoints
    keep = away_from_edges(depth, u, v, shot.labels) & same_surface
    assert keep.sum() > 500
    agree = labels[keep] == shot.labels[v, u][keep]
    assert agree.mean() > 0.99
    seen = set(np.unique(labels).tolist())
    assert {CLASS_ID["Road"], CLASS_ID["Building"]} <= seen


def test_label_image_and_depth_agree_on_the_sky(sun):
    shot = sun.camera(T)
    depth = sun.depth(T).depth_m
    sky = shot.labels == CLASS_ID["Sky"]
    assert sky.any() and np.all(np.isnan(depth[sky]))
    assert np.all(shot.labels[-5:] != CLASS_ID["Sky"])  # the bottom rows see the ground


def test_night_is_darker_than_sun_and_fog_lowers_contrast(town, rig, sun):
    day = sun.camera(T).frame.image.astype(float)
    night = simulator(town, rig, "night").camera(T).frame.image.astype(float)
    fog = simulator(town, rig, "fog").camera(T).frame.image.astype(float)
    assert night.mean() < 0.6 * day.mean()
    assert fog.std() < day.std()


def test_lidar_intensity_and_rings(sun):
    scan = sun.lidar(T)
    assert scan.points.dtype == np.float32 and len(scan.points) > 5000
    assert set(np.unique(scan.ring).tolist()) <= set(range(32)) and len(np.unique(scan.ring)) > 20
    lines = scan.labels == CLASS_ID["RoadLine"]
    road = scan.labels == CLASS_ID["Road"]
    if lines.sum() > 5:  # retro-reflective paint returns brighter than asphalt
        assert scan.intensity[lines].mean() > scan.intensity[road].mean()
    ranges = np.linalg.norm(scan.points, axis=1)
    assert ranges.max() <= 120.5 and ranges.min() >= 0.7


def test_no_events_on_a_static_scene_without_noise(rig):
    still = generate_town(SEED, TownParams(duration_s=5.0, actors=False, ego_speed=(0.0, 0.0)))
    sim = simulator(still, rig, "cloud", events=replace(EventModel(), noise_rate_hz=0.0))
    sim.condition = replace(sim.condition, wind=0.0)  # clouds that do not drift
    packet = sim.events(T - 0.05, T)
    assert len(packet.x) == 0


def test_events_appear_where_brightness_changes(town, rig):
    sim = simulator(town, rig, "sun", events=replace(EventModel(), noise_rate_hz=0.0, threshold_sigma=0.0))
    before = sim.event_luminance(T - 0.05)
    packet = sim.events(T - 0.05, T)
    after = sim.event_luminance(T)
    change = np.log(after + 0.002) - np.log(before + 0.002)
    assert len(packet.x) > 100
    assert np.all((packet.t_ns >= -50_000_000) & (packet.t_ns <= 0))
    # every event sits on a pixel whose log-luminance changed by at least the threshold, with its sign
    at = change[packet.y, packet.x]
    assert np.all(np.abs(at) >= 0.25 - 1e-4)
    assert np.all(np.sign(at) == packet.polarity)
    # and pixels that changed a lot fired
    strong = np.abs(change) > 0.5
    fired = np.zeros_like(strong)
    fired[packet.y, packet.x] = True
    assert fired[strong].mean() > 0.99


def test_actor_culling_gives_the_same_hits_as_a_full_cast(town, rig, sun):
    from modseg_ros.data.world.sensors import camera_rays

    intr = rig.camera
    for t in (0.5, 1.7, 3.9):
        pose = sun.sensor_pose(Modality.CAMERA, t)
        origins, dirs = camera_rays(intr, pose)
        mask = sun.caster.actor_mask(intr, pose, t)
        culled = sun.caster.cast(origins, dirs, t, candidates=mask)
        full = sun.caster.cast(origins, dirs, t)
        assert np.array_equal(culled.surface, full.surface) and np.array_equal(culled.t, full.t)
        assert not mask.all()  # the test would prove nothing if every ray were a candidate


def test_threads_do_not_change_the_measurements(town, rig):
    one, two = simulator(town, rig, "night", threads=1), simulator(town, rig, "night", threads=2)
    for sim in (one, two):
        sim.events(T - 0.1, T - 0.05)
    a, b = one.camera(T), two.camera(T)
    assert np.array_equal(a.frame.image, b.frame.image) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(one.depth(T).depth_m, two.depth(T).depth_m, equal_nan=True)
    ea, eb = one.events(T - 0.05, T), two.events(T - 0.05, T)
    assert all(np.array_equal(getattr(ea, f), getattr(eb, f)) for f in ("x", "y", "t_ns", "polarity"))
    two.close()


def test_event_subframes_spread_event_times_over_the_period(town, rig):
    sim = simulator(town, rig, "sun", events=replace(EventModel(), subframes=4, noise_rate_hz=0.0))
    packet = sim.events(T - 0.05, T)
    quarters = np.histogram(packet.t_ns, bins=4, range=(-50_000_000, 0))[0]
    assert len(packet.x) > 100 and np.all(quarters > 0.1 * len(packet.x) / 4)
