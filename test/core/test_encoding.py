import numpy as np

from modseg_ros.core.encoding import (
    EncodingConfig,
    decode_range,
    encode_depth,
    encode_events,
    encode_lidar,
    nearest_per_pixel,
    range_code,
    render_events,
)
from modseg_ros.core.geometry import OPTICAL_FROM_BODY, Intrinsics, Rig, Transform
from modseg_ros.core.types import DepthFrame, EventPacket, Modality, PointCloud

CFG = EncodingConfig()


def rig(width=64, height=32, camera_height=1.5):
    camera_in_base = Transform.from_xyz_rpy([0.0, 0.0, camera_height], [0.0, 0.0, 0.0]) @ OPTICAL_FROM_BODY.inverse()
    lidar_in_base = Transform.from_xyz_rpy([0.0, 0.0, camera_height + 0.3], [0.0, 0.0, 0.0])
    return Rig(
        camera=Intrinsics.from_fov(width, height, 90.0),
        base_from={Modality.CAMERA: camera_in_base, Modality.DEPTH: camera_in_base,
                   Modality.EVENTS: camera_in_base, Modality.LIDAR: lidar_in_base},
    )  # fmt: skip


def test_range_code_round_trips_within_quantisation():
    z = np.geomspace(CFG.near_m, CFG.far_m, 1000).astype(np.float32)
    back = decode_range(range_code(z, CFG), CFG)
    step = np.log(CFG.far_m / CFG.near_m) / 254
    assert np.all(np.abs(np.log(back / z)) <= step / 2 + 1e-5)
    assert range_code(np.array([np.nan, 0.0, -1.0, np.inf]), CFG).tolist() == [0, 0, 0, 0]
    assert range_code(np.array([CFG.near_m]), CFG)[0] == 255


def test_every_no_depth_marker_encodes_as_nan_does():
    # conversion keeps a driver's markers (0, ±inf, negative) as sent: the encoding reads them as no depth
    r = rig(16, 8)
    rays = r.camera.pixel_rays()
    with np.errstate(divide="ignore"):
        z = np.where(rays[..., 1] > 0.05, 1.5 / rays[..., 1], np.nan).astype(np.float32)
    marked = z.copy()
    markers = np.array([0.0, np.inf, -np.inf, -2.0, np.nan], np.float32)
    marked[np.isnan(z)] = np.resize(markers, int(np.isnan(z).sum()))
    marked[2, 3], z[2, 3] = 0.0, np.nan  # and a hole in the ground
    enc = encode_depth(DepthFrame(marked), r, CFG)
    assert np.array_equal(enc, encode_depth(DepthFrame(z), r, CFG)) and (enc[2, 3] == 0).all()


def test_depth_of_flat_ground_is_horizontal_at_zero_height():
    r = rig()
    rays = r.camera.pixel_rays()
    # camera 1.5 m above a flat ground: optical y points down, so ground depth z = 1.5 / ray_y
    with np.errstate(divide="ignore"):
        z = np.where(rays[..., 1] > 0.05, 1.5 / rays[..., 1], np.nan).astype(np.float32)
    enc = encode_depth(DepthFrame(z), r, CFG)
    ground = np.isfinite(z)
    interior = ground.copy()
    interior[:, [0, -1]] = False
    interior[-1] = False
    interior[:-1] &= ground[1:]
    interior[1:] &= ground[:-1]
    zero_height = int(np.rint(1 + 254 * (0 - CFG.height_min_m) / (CFG.height_max_m - CFG.height_min_m)))
    assert np.all(np.abs(enc[ground, 1].astype(int) - zero_height) <= 1)
    assert np.all(enc[interior, 2] >= 253)  # normal points straight up
    assert np.all(enc[~ground] == 0)


def test_lidar_projection_keeps_the_nearest_point_per_pixel():
    r = rig()
    # two points on the optical axis of the camera, 10 m and 20 m ahead (LiDAR frame is 0.3 m higher)
    pts = np.array([[20.0, 0.0, -0.3], [10.0, 0.0, -0.3]], dtype=np.float32)
    cloud = PointCloud(pts, np.array([0.2, 0.8], dtype=np.float32))
    enc = encode_lidar(cloud, r, CFG)
    hit = np.argwhere(enc[..., 0] > 0)
    assert len(hit) == 1
    v, u = hit[0]
    assert enc[v, u, 0] == range_code(np.array([10.0]), CFG)[0]
    assert enc[v, u, 1] == 204  # intensity 0.8 of the nearer point
    assert abs(int(v) - 16) <= 1 and abs(int(u) - 32) <= 1


def test_events_counts_and_recency():
    packet = EventPacket(
        x=np.array([1, 1, 1, 3], dtype=np.uint16),
        y=np.array([0, 0, 0, 2], dtype=np.uint16),
        t_ns=np.array([-40e6, -10e6, 0, -50e6], dtype=np.int64),
        polarity=np.array([1, 1, -1, -1], dtype=np.int8),
        width=4,
        height=3,
    )
    frame = render_events(packet, CFG)
    assert frame[0, 1, 1] == 127  # two positive events, 255 / 4 each
    assert frame[0, 1, 0] == 63  # one negative event
    assert frame[0, 1, 2] == 255  # newest event at t = 0
    assert frame[2, 3, 2] == 1  # an event one window old
    assert frame.sum() == frame[0, 1].sum() + frame[2, 3].sum()


def test_low_resolution_events_are_upsampled_nearest():
    r = rig(width=8, height=4)
    r = Rig(r.camera, r.base_from, intrinsics={Modality.EVENTS: r.camera.scaled(4, 2)})
    packet = EventPacket(np.array([0], np.uint16), np.array([0], np.uint16), np.array([0], np.int64),
                         np.array([1], np.int8), width=4, height=2)  # fmt: skip
    enc = encode_events(packet, r, CFG)
    assert enc.shape == (4, 8, 3)
    assert np.argwhere(enc[..., 1] > 0).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_nearest_per_pixel_takes_the_nearest_and_of_equals_the_first():
    rng = np.random.default_rng(3)
    pixel = rng.integers(0, 50, 4000)
    z = np.round(rng.uniform(1, 5, 4000), 1).astype(np.float32)  # many equal depths
    order = np.argsort(z, kind="stable")  # the sort-based reference: nearest first, then index
    _, first = np.unique(pixel[order], return_index=True)
    assert sorted(nearest_per_pixel(pixel, z, 50).tolist()) == sorted(order[first].tolist())


def test_lidar_intensity_counts_beyond_one_keep_their_order():
    points = np.array([[5.0, -0.5, 0.0], [5.0, 0.5, 0.0], [5.0, 0.0, 0.3], [np.nan, 0.0, 0.0], [np.inf, 1.0, 0.0]], np.float32)
    unit = encode_lidar(PointCloud(points=points, intensity=np.array([0.1, 0.4, 0.2, 0.9, 0.9], np.float32)), rig(), CFG)
    counts = encode_lidar(PointCloud(points=points, intensity=np.array([25.0, 100.0, 50.0, 255.0, 255.0], np.float32)), rig(), CFG)
    hit = unit[..., 0] > 0
    assert hit.sum() == 3 and (counts[..., 0] == unit[..., 0]).all()  # the non-finite points land nowhere
    assert list(np.argsort(unit[..., 1][hit])) == list(np.argsort(counts[..., 1][hit]))
    assert counts[..., 1][hit].max() == 255 and len(set(counts[..., 1][hit].tolist())) == 3  # not all clipped to 255


def test_a_scan_read_by_its_order_keeps_its_levels_whatever_the_scale():
    """An Ouster-like scan whose intensities span 0-0.0085 keeps three raw 8-bit levels; read by its
    order, any scale of it gives the same codes, with the order of the values."""
    rng = np.random.default_rng(5)
    n = 400
    points = np.stack([np.full(n, 8.0), rng.uniform(-3, 3, n), rng.uniform(-1, 1, n)], axis=1).astype(np.float32)
    dim = rng.uniform(0, 0.0085, n).astype(np.float32)
    raw = encode_lidar(PointCloud(points=points, intensity=dim), rig(), CFG)
    hit = raw[..., 0] > 0
    assert len(np.unique(raw[..., 1][hit])) <= 3
    codes = [encode_lidar(PointCloud(points=points, intensity=dim * k), rig(), CFG, "scan_rank")[..., 1][hit] for k in (1, 100, 30_000)]
    assert (codes[0] == codes[1]).all() and (codes[0] == codes[2]).all()
    assert len(np.unique(codes[0])) > 100 and codes[0].max() == 255


def test_events_of_a_finer_sensor_binned_straight_onto_the_grid_equal_render_then_sample():
    rng = np.random.default_rng(4)
    n, w, h = 50_000, 640, 320
    packet = EventPacket(x=rng.integers(0, w, n).astype(np.uint16), y=rng.integers(0, h, n).astype(np.uint16),
                         t_ns=-rng.integers(0, 50_000_000, n).astype(np.int64), polarity=rng.choice([-1, 1], n).astype(np.int8),
                         width=w, height=h)  # fmt: skip
    grid = rig(width=150, height=75)  # not a divisor of the sensor's grid
    fine = Rig(grid.camera.scaled(w, h), grid.base_from)
    direct = encode_events(packet, grid, CFG)
    reference = encode_events(packet, fine, CFG)  # rendered on the sensor's grid ...
    from modseg_ros.core.encoding import _warp_nearest

    assert (direct == _warp_nearest(reference, fine.camera, grid.camera, fill=0)).all()  # ... then sampled
