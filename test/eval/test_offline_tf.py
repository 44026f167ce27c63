"""The offline replay takes the sensor poses from a bag's /tf_static as the live node does (rig.source: tf)."""
from __future__ import annotations

import numpy as np
from replay_fixtures import PARAMS, small_world_bag

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.types import Modality
from modseg_ros.data.bags import Bag
from modseg_ros.eval.offline import with_bag_tf

WRONG = {"rig.lidar.xyz": [0.5, 1.0, 1.2], "rig.lidar.rpy": [0.0, 0.0, 0.3], "rig.depth.xyz": [1.5, 0.8, 1.6]}


def test_the_bag_tf_static_replaces_a_wrong_yaml_rig_and_only_with_rig_source_tf(tmp_path):
    bag_path = small_world_bag(tmp_path / "drive", frames=4)
    right = NodeConfig.load(PARAMS).rig
    with Bag(bag_path) as bag:
        config, note = with_bag_tf(NodeConfig.load(PARAMS, {**WRONG, "rig.source": "tf"}), bag)
        assert note == "sensor poses from the bag's /tf_static"
        for m in Modality:
            assert np.allclose(config.rig.base_from[m].matrix, right.base_from[m].matrix, atol=1e-6), m
        yaml = NodeConfig.load(PARAMS, {**WRONG, "rig.source": "yaml"})
        assert with_bag_tf(yaml, bag) == (yaml, "")
        odd = NodeConfig.load(PARAMS, {"rig.source": "tf", "rig.lidar.frame_id": "velodyne"})
        kept, note = with_bag_tf(odd, bag)
        assert kept is odd and "lidar 'velodyne' in 'base_link': no transform names frame 'velodyne'" in note
