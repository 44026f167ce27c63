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
