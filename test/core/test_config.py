import re

import numpy as np
import pytest

from modseg_ros.core.config import load_parameters, rig_from_parameters
from modseg_ros.core.types import Modality
from modseg_ros.errors import ConfigError
from modseg_ros.paths import config_file


def test_default_rig_puts_the_camera_looking_forward():
    rig = rig_from_parameters(load_parameters(config_file("any2seg.yaml")))
    assert (rig.camera.width, rig.camera.height) == (512, 256)
    forward_in_base = rig.base_from[Modality.CAMERA].apply(np.array([[0.0, 0.0, 10.0]]))
    assert np.allclose(forward_in_base, [[11.5, 0.0, 1.6]], atol=1e-6)
    # a point 10 m ahead of the LiDAR at its own height is 0.3 m above the camera's axis
    in_camera = rig.camera_from(Modality.LIDAR).apply(np.array([[10.0, 0.0, 0.0]]))
    assert np.allclose(in_camera, [[0.0, -0.3, 9.7]], atol=1e-6)
    assert rig.frame_ids[Modality.LIDAR] == "lidar" and Modality.DEPTH not in rig.intrinsics


def test_node_section_overrides_wildcard(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    a: 1\n    b: {c: 2}\nany2seg:\n  ros__parameters:\n    a: 3\n")
    assert load_parameters(path) == {"a": 3, "b.c": 2}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("[1, 2", "not valid YAML"),
        ("other:\n  ros__parameters: {a: 1}\n", "no '/**' or 'any2seg' section"),
        ("/**: {x: 1}\n", "no 'ros__parameters'"),
    ],
)
def test_bad_parameter_files_name_the_file(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(needle)) as err:
        load_parameters(path)
    assert str(path) in str(err.value)


def test_bad_rig_value_names_the_parameter():
    params = load_parameters(config_file("any2seg.yaml"))
    params["rig.lidar.xyz"] = [1.0, 2.0]
    with pytest.raises(ConfigError, match=r"rig\.lidar\.xyz"):
        rig_from_parameters(params)
    params = load_parameters(config_file("any2seg.yaml"))
    params["rig.camera.hfov_deg"] = 200
    with pytest.raises(ConfigError, match=r"rig\.camera"):
        rig_from_parameters(params)


# --- NodeConfig ------------------------------------------------------------------------------------

from modseg_ros.core.config import NodeConfig, default_parameters  # noqa: E402

MS = 1_000_000


def test_shipped_parameters_give_the_documented_node_defaults():
    config = NodeConfig.load()
    assert config.inputs.modalities == (Modality.CAMERA, Modality.DEPTH, Modality.LIDAR, Modality.EVENTS)
    assert config.sync.priority[0] is Modality.CAMERA and config.sync.max_wait_ns == 50 * MS
    lidar = config.sync.inputs[Modality.LIDAR]
    assert (lidar.slop_ns, lidar.reuse, lidar.period_ns) == (55 * MS, True, 100 * MS)  # period: health rate
    # detection bound: timeout + one tick <= 2 periods + 50 ms, for every sensor
    for modality, limits in config.health.streams.items():
        assert limits.timeout_ns + 1e9 / config.health_tick_rate_hz <= 2e9 / limits.rate_hz + 50 * MS
    assert config.outputs.frame_id == "camera_optical" and config.model.backend == "torch"


def test_yaml_file_and_flat_overrides_feed_the_same_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "any2seg:\n  ros__parameters:\n    inputs:\n      modalities: [lidar, camera]\n"
        "    sync:\n      max_wait_s: 0.2\n      lidar: {reuse: false}\n    outputs: {frame_id: cam}\n"
    )
    from_file = NodeConfig.load(path)
    flat = NodeConfig.from_parameters({"inputs.modalities": ["lidar", "camera"], "sync.max_wait_s": 0.2,
                                       "sync.lidar.reuse": False, "outputs.frame_id": "cam"})  # fmt: skip
    for config in (from_file, flat):
        assert config.inputs.modalities == (Modality.CAMERA, Modality.LIDAR)
        assert config.sync.priority == (Modality.CAMERA, Modality.LIDAR)  # the shipped order, filtered
        assert config.sync.max_wait_ns == 200 * MS and not config.sync.inputs[Modality.LIDAR].reuse
        assert config.outputs.frame_id == "cam" and set(config.health.streams) == {Modality.CAMERA, Modality.LIDAR}
    assert from_file.parameters == flat.parameters


def test_ros_parameters_are_not_ours_to_validate():
    config = NodeConfig.from_parameters({"use_sim_time": True, "qos_overrides./clock.subscription.depth": 1})
    assert "use_sim_time" not in config.parameters


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("sync.max_wiat_s", 0.1, "unknown parameter 'sync.max_wiat_s'"),
        ("sync.max_wait_s", -1.0, "'sync.max_wait_s' must be >= 0"),
        ("sync.max_wait_s", "fast", "'sync.max_wait_s' must be a number"),
        ("sync.lidar.slop_s", 0.0, "'sync.lidar.slop_s' must be > 0"),
        ("sync.lidar.reuse", "yes", "'sync.lidar.reuse' must be true or false"),
        ("sync.queue_size", 0, "'sync.queue_size' must be >= 1"),
        ("sync.priority", ["camera", "sonar"], "'sync.priority': unknown modality 'sonar'"),
        ("sync.priority", ["camera", "depth"], "'sync.priority' must rank every enabled modality; missing lidar, events"),
        ("inputs.modalities", [], "'inputs.modalities' must be a non-empty list"),
        ("inputs.modalities", ["camera", "camera"], "lists a modality twice"),
        ("inputs.events_source", "voxels", "'inputs.events_source' must be one of points, image"),
        ("inputs.qos_reliability", "maybe", "'inputs.qos_reliability' must be one of best_effort, reliable"),
        ("health.camera.error_rate_hz", 30.0, "'health.camera.error_rate_hz' (30) must not exceed"),
        ("health.camera.grid", [4], "'health.camera.grid' must be [rows, columns]"),
        ("health.depth.warn_valid_fraction", 1.5, "'health.depth.warn_valid_fraction' must be <= 1"),
        ("health.lidar.timeout_s", 0, "'health.lidar.timeout_s' must be > 0"),
        ("health.max_rate_factor", 0.5, "'health.max_rate_factor' must be 0 (off) or above 1"),
        ("model.backend", "tensorrt", "'model.backend' must be one of torch, onnx"),
        ("model.threads", 1.5, "'model.threads' must be an integer"),
        ("encoding.far_m", 0.1, "'encoding.far_m' must exceed 'encoding.near_m'"),
        ("health.motion_agreement.exclude_still_share", 0.2, "'health.motion_agreement.exclude_still_share' must be at least"),
        ("outputs.overlay_alpha", 2.0, "'outputs.overlay_alpha' must be <= 1"),
        ("rig.camera.width", -5, "rig.camera.width/height/hfov_deg"),
    ],
)
def test_invalid_node_parameters_name_the_parameter(key, value, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        NodeConfig.from_parameters({key: value})


@pytest.mark.parametrize("key", sorted(k for k in default_parameters() if not k.startswith("rig.")))
def test_every_node_parameter_is_read_and_validated(key):
    # a key of the parameter file that NodeConfig never reads would be a silent no-op for users
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        NodeConfig.from_parameters({key: {"not": "a valid value"}})


def test_every_parameter_is_documented_in_the_one_parameter_table():
    from pathlib import Path

    from modseg_ros.core.config import declared_parameters
    from modseg_ros.core.params import parameter_table

    page = (Path(__file__).resolve().parents[2] / "docs" / "node.md").read_text()
    table = page.split("<!-- generated by: modseg params --markdown -->\n")[1].split("<!-- end of generated table -->")[0]
    assert table.strip() == parameter_table(declared_parameters(), default_parameters()).strip(), "run: modseg params --markdown"
    documented = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert documented == set(default_parameters())


# --- the declared parameters ---------------------------------------------------------------------

from modseg_ros.core.config import declared_parameters  # noqa: E402
from modseg_ros.core.params import parameter_table  # noqa: E402


def test_every_parameter_of_the_shipped_file_is_declared_once_by_its_module():
    keys = [p.key for p in declared_parameters()]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert set(keys) == set(default_parameters()), {"undeclared": sorted(set(default_parameters()) - set(keys)),
                                                    "not in the file": sorted(set(keys) - set(default_parameters()))}  # fmt: skip
    assert all(p.description for p in declared_parameters())


def test_the_parameter_table_has_a_row_per_parameter_with_its_default():
    table = parameter_table(declared_parameters(), default_parameters()).splitlines()
    assert len(table) == 2 + len(declared_parameters())
    assert "| `sync.max_wait_s` | `0.05` |" in "\n".join(table)
