"""DELIVER frames (with ground truth) -> a timed rosbag2 bag the node and ``modseg replay-eval`` consume.

DELIVER stores each modality as a PNG on the camera grid, not as raw sensor data; the bag turns
each PNG back into the message the node takes (topics as the embedded world's bags, MCAP):

==========================  ====================================  ===================================
bag topic                   from                                  how
==========================  ====================================  ===================================
/camera/image  rgb8         ``img/..._rgb_front.png``             as is (exact)
/camera/camera_info         image size + ``--hfov-deg``           plumb_bob, no distortion; a world
                                                                  root's own intrinsics (world.yaml)
/depth/image   32FC1        ``depth/..._depth_front.png``         ``--depth-format``: ``carla`` =
                                                                  CARLA's raw depth (R + 256 G +
                                                                  65536 B) / (2^24 - 1) × 1000 m;
                                                                  ``modseg`` = the world's code
                                                                  (core/encoding.py decode_range of
                                                                  channel 0); ``none``: no depth
/lidar/points  x,y,z,int.   ``lidar/..._lidar_front.png``         every non-zero pixel back-projected
               (+ ring 0)                                         through its pixel centre to the
                                                                  depth it codes, into the rig's
                                                                  LiDAR frame: ``modseg`` = range
                                                                  code in channel 0, intensity in 1;
                                                                  ``linear`` = channel 0 × range /
                                                                  255 m, no intensity; ``none``
/events/image  rgb8         ``event/..._event_front.png``         as is, at its own size (the node
                                                                  reads it with ``inputs.events_source:
                                                                  image`` and maps it onto the camera
                                                                  grid, nearest neighbour)
/ground_truth/labels mono8  ``semantic/..._semantic_front.png``   DELIVER ids (channel 0 - 1; 0 -> 255)
/tf_static                  the rig of ``--params``               base_link -> each sensor frame
==========================  ====================================  ===================================

Frames follow DELIVER's sorted frame list, one every ``1 / rate_hz`` seconds, every topic of a
frame with the same stamp (its log time). What is approximated: depth and LiDAR come back at the
precision their PNG codes them (the world's range code: about 2.4 % of the distance per step); the
node recomputes its depth encoding's height and surface channels and its LiDAR encoding's height
channel from those points (so they differ slightly from the PNG's); LiDAR points exist only where
the PNG has one (what the camera sees, one per pixel); events are the rendered frame, not packets
(the node's event health checks count lit pixels). DELIVER does not document how its depth and
LiDAR PNGs code distance (InSAI-Lab/DELIVER issue 21): ``carla`` and ``linear`` are assumptions
for a real DELIVER copy; a folder written by ``modseg world --format deliver`` is decoded exactly
as it was coded (``auto`` picks ``modseg`` when the root's world.yaml says so).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modseg_ros.core.config import dump_yaml, load_parameters, read_yaml, rig_from_parameters
from modseg_ros.core.encoding import EncodingConfig, decode_range
from modseg_ros.core.geometry import Intrinsics, Rig
from modseg_ros.core.types import CameraFrame, DepthFrame, EventFrame, Modality, PointCloud
from modseg_ros.data.deliver import DeliverDataset, FrameRef, read_label, read_png
from modseg_ros.data.world.bag_writer import WORLD_TOPICS, BagRecorder, BagStyle
from modseg_ros.errors import ConfigError, DatasetError
from modseg_ros.paths import config_file

NS = 1_000_000_000
DEPTH_FORMATS = ("auto", "modseg", "carla", "none")
LIDAR_FORMATS = ("auto", "modseg", "linear", "none")
WORLD_GENERATOR = "modseg_ros embedded world"
START_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z, as the world's bags
TOPIC_ROLES = ("camera", "camera_info", "depth", "lidar", "events_image", "labels", "tf_static")
# What the node needs beyond the shipped parameters to read such a bag (written beside it).
NODE_PARAMS_FILE = "any2seg.yaml"


@dataclass(frozen=True)
class DeliverBagOptions:
    root: Path
    out: Path
    split: str = "val"
    conditions: tuple[str, ...] | None = None  # None: all
    cases: tuple[str, ...] | None = None  # None: all (normal and the corner cases)
    rate_hz: float = 20.0
    hfov_deg: float = 90.0  # DELIVER's camera: CARLA's default field of view
    depth_format: str = "auto"
    lidar_format: str = "auto"
    lidar_range_m: float = 100.0  # linear LiDAR PNGs: the distance coded 255
    max_frames: int | None = None
    params: Path | None = None  # rig (sensor poses) and encoding; default config/any2seg.yaml
    overwrite: bool = False

    def validate(self) -> None:
        if self.depth_format not in DEPTH_FORMATS:
            raise ConfigError(f"--depth-format must be one of {', '.join(DEPTH_FORMATS)}, got '{self.depth_format}'")
        if self.lidar_format not in LIDAR_FORMATS:
            raise ConfigError(f"--lidar-format must be one of {', '.join(LIDAR_FORMATS)}, got '{self.lidar_format}'")
        if not 0 < self.rate_hz <= 1000:
            raise ConfigError(f"--rate-hz must be within (0, 1000], got {self.rate_hz}")
        if not 0 < self.hfov_deg < 180:
            raise ConfigError(f"--hfov-deg must be within (0, 180), got {self.hfov_deg}")
        if self.lidar_range_m <= 0:
            raise ConfigError(f"--lidar-range-m must be positive, got {self.lidar_range_m}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1, got {self.max_frames}")


@dataclass
class DeliverBagSummary:
    frames: int = 0
    depth_format: str = ""
    lidar_format: str = ""
    missing: dict[str, int] = field(default_factory=dict)  # modality -> frames without its PNG
    node_params: Path | None = None


# --- PNG -> sensor payloads ------------------------------------------------------------------------------


def carla_depth_m(rgb: np.ndarray) -> np.ndarray:
    """CARLA's raw depth camera image (RGB) -> metres: (R + 256 G + 65536 B) / (2^24 - 1) × 1000."""
    code = rgb[..., 0].astype(np.float64) + 256.0 * rgb[..., 1] + 65536.0 * rgb[..., 2]
    depth = (code / (256**3 - 1) * 1000.0).astype(np.float32)
    depth[code == 0] = np.nan
    return depth


def depth_from_png(png: np.ndarray, fmt: str, encoding: EncodingConfig) -> DepthFrame:
    if fmt == "carla":
        return DepthFrame(carla_depth_m(png))
    return DepthFrame(decode_range(png[..., 0], encoding))  # modseg: NaN where the code is 0


def lidar_from_png(png: np.ndarray, fmt: str, rig: Rig, encoding: EncodingConfig, range_m: float) -> PointCloud:
    """Every non-zero pixel of a LiDAR PNG back-projected through its pixel centre, in the LiDAR frame."""
    code = png[..., 0]
    v, u = np.nonzero(code)
    if fmt == "modseg":
        z = decode_range(code[v, u], encoding)
        intensity = png[v, u, 1].astype(np.float32) / 255.0
    else:  # linear
        z = code[v, u].astype(np.float32) * np.float32(range_m / 255.0)
        intensity = np.zeros(len(z), np.float32)
    cam = rig.camera if (rig.camera.height, rig.camera.width) == png.shape[:2] else rig.camera.scaled(png.shape[1], png.shape[0])
    rays = np.stack([(u + 0.5 - cam.cx) / cam.fx, (v + 0.5 - cam.cy) / cam.fy, np.ones(len(u))], axis=1)
    points_cam = rays * z[:, None]
    points = rig.camera_from(Modality.LIDAR).inverse().apply(points_cam).astype(np.float32)
    return PointCloud(points=points, intensity=intensity, ring=np.zeros(len(points), np.uint16))


# --- the conversion ------------------------------------------------------------------------------------------


def _world_meta(root: Path) -> dict[str, Any] | None:
    meta = root / "world.yaml"
    if not meta.is_file():
        return None
    document = read_yaml(meta, "DELIVER-layout metadata")
    if isinstance(document, dict) and str(document.get("generator", "")).startswith(WORLD_GENERATOR):
        return document
    return None


def _camera(options: DeliverBagOptions, meta: dict[str, Any] | None, width: int, height: int) -> Intrinsics:
    """The camera: a world root's own intrinsics (scaled to the PNGs), else square pixels from --hfov-deg."""
    recorded = ((meta or {}).get("rig") or {}).get("camera")
    if isinstance(recorded, dict) and {"width", "height", "fx", "fy", "cx", "cy"} <= set(recorded):
        intr = Intrinsics(**{k: recorded[k] for k in ("width", "height", "fx", "fy", "cx", "cy")})
        return intr if (intr.width, intr.height) == (width, height) else intr.scaled(width, height)
    return Intrinsics.from_fov(width, height, options.hfov_deg)


def _raw_depth_path(ref: FrameRef, root: Path) -> Path:
    """DELIVER's depth/ file of a frame (the hha/ folder holds HHA, which does not decode to metres)."""
    rgb = root / ref.name
    rel = rgb.relative_to(root / "img")
    return root / "depth" / rel.parent / rel.name.replace("_rgb", "_depth")


def deliver_to_bag(options: DeliverBagOptions, progress: Callable[[int], None] | None = None) -> DeliverBagSummary:
    """Write the selected DELIVER frames as a bag at ``options.out``, and the node parameters that
    read it beside the bag (``any2seg.yaml``: events from ``events/image``, the camera grid)."""
    options.validate()
    dataset = DeliverDataset(options.root, options.split, options.conditions, options.cases)
    refs: Sequence[FrameRef] = dataset.refs[: options.max_frames] if options.max_frames else dataset.refs
    meta = _world_meta(options.root)
    depth_format = options.depth_format if options.depth_format != "auto" else ("modseg" if meta else "carla")
    lidar_format = options.lidar_format if options.lidar_format != "auto" else ("modseg" if meta else "linear")
    encoding = EncodingConfig(**(meta or {}).get("encoding", {})) if meta else EncodingConfig()
    first = read_png(options.root / refs[0].name)
    height, width = first.shape[:2]
    rig = rig_from_parameters(load_parameters(options.params or config_file("any2seg.yaml")))
    rig = Rig(_camera(options, meta, width, height), rig.base_from, {}, rig.frame_ids)  # depth, events: the camera's grid

    if options.out.exists():
        if not options.overwrite:
            raise ConfigError(f"--out {options.out} already exists (pass --overwrite to replace it)")
        shutil.rmtree(options.out) if options.out.is_dir() else options.out.unlink()
    try:
        options.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {options.out}: cannot create the parent directory: {err.strerror}") from None
    roles = [r for r in TOPIC_ROLES if not (r == "depth" and depth_format == "none") and not (r == "lidar" and lidar_format == "none")]
    style = BagStyle(topics={r: WORLD_TOPICS[r] for r in roles})
    summary = DeliverBagSummary(depth_format=depth_format, lidar_format=lidar_format)
    period = int(round(NS / options.rate_hz))
    frames = []
    with BagRecorder(options.out, rig, encoding=encoding, style=style) as record:
        record.tf_static(START_NS)
        for k, ref in enumerate(refs):
            stamp = START_NS + k * period
            image = first if k == 0 else read_png(options.root / ref.name)
            if image.shape[:2] != (height, width):
                raise DatasetError(f"{options.root / ref.name}: {image.shape[1]}×{image.shape[0]} differs from the first frame's {width}×{height}")
            record.camera(stamp, stamp, CameraFrame(image))
            record.labels(stamp, stamp, read_label(ref.label))
            depth_png = _raw_depth_path(ref, options.root)
            if depth_format != "none" and _present(depth_png, "depth", summary):
                record.depth(stamp, stamp, depth_from_png(read_png(depth_png), depth_format, encoding))
            if lidar_format != "none" and _present(ref.files[Modality.LIDAR], "lidar", summary):
                record.lidar(stamp, stamp, lidar_from_png(read_png(ref.files[Modality.LIDAR]), lidar_format, rig, encoding,
                                                          options.lidar_range_m))  # fmt: skip
            if _present(ref.files[Modality.EVENTS], "events", summary):
                record.event_frame(stamp, stamp, EventFrame(read_png(ref.files[Modality.EVENTS])))
            record.flush(stamp)
            frames.append({"stamp_ns": stamp, "frame": ref.name, "condition": ref.condition, "case": ref.case})
            summary.frames += 1
            if progress is not None:
                progress(1)
    conditions = sorted({f["condition"] for f in frames})
    sidecar = {
        "generator": "modseg convert deliver2bag",
        "source": str(options.root), "split": options.split,
        "condition": conditions[0] if len(conditions) == 1 else "mixed (" + ", ".join(conditions) + ")",
        "start_ns": START_NS, "rate_hz": options.rate_hz,
        "depth_format": depth_format, "lidar_format": lidar_format,
        "lidar_range_m": options.lidar_range_m if lidar_format == "linear" else None,
        "encoding": encoding.to_dict(), "camera": rig.camera.to_dict(),
        "topics": style.describe(), "missing_pngs": summary.missing, "frames": frames,
    }  # fmt: skip
    (options.out / "world.yaml").write_text(dump_yaml(sidecar))
    summary.node_params = options.out / NODE_PARAMS_FILE
    summary.node_params.write_text(node_parameters(rig.camera, options.params))
    return summary


def _present(path: Path, what: str, summary: DeliverBagSummary) -> bool:
    if path.is_file():
        return True
    summary.missing[what] = summary.missing.get(what, 0) + 1  # that frame has no such message: the sensor is silent
    return False


def node_parameters(camera: Intrinsics, params: Path | None) -> str:
    """The parameter file that reads the bag: the given (or shipped) parameters with events from
    rendered frames, the bag's camera grid (until its CameraInfo arrives), and no LiDAR
    blocked-sector check (the points cover the camera's field of view only)."""
    source = params or config_file("any2seg.yaml")
    flat = load_parameters(source)
    hfov = float(np.degrees(2 * np.arctan(camera.width / (2 * camera.fx))))
    flat.update({"inputs.events_source": "image", "rig.camera.width": camera.width, "rig.camera.height": camera.height,
                 "rig.camera.hfov_deg": round(hfov, 6),
                 # back-projected LiDAR covers only the camera's field of view: no blocked-sector verdicts
                 "health.lidar.warn_blocked_sector_deg": 0.0, "health.lidar.error_blocked_sector_deg": 0.0})  # fmt: skip
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    header = (f"# Node parameters for a bag written by modseg convert deliver2bag: {source} with events read from\n"
              f"# events/image and the bag's camera grid. modseg replay-eval BAG --params BAG/{NODE_PARAMS_FILE}\n")  # fmt: skip
    return header + dump_yaml({"/**": {"ros__parameters": tree}})
