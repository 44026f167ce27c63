"""Extrinsics from TF through the live node: a world bag carries the rig on /tf_static; the node
started with ``rig.source: tf`` and a wrong YAML rig gives the masks of the right YAML rig."""
from __future__ import annotations

import subprocess
import time

import numpy as np
from harness import MODSEG, NodeProcess, make_world_bag, stamp_ns

from modseg_ros.paths import config_file

SENSORS = ["/camera/image", "/camera/camera_info", "/depth/image", "/lidar/points", "/events/points"]
# the world's 128×64 camera, one thread, the consistency check off (its calibration is for 512×256)
COMMON = ["-p", "use_sim_time:=true", "-p", "rig.camera.width:=128", "-p", "rig.camera.height:=64",
          "-p", "model.threads:=1", "-p", "health.consistency.enabled:=false"]  # fmt: skip
# a LiDAR and a depth camera a metre off and turned: what a stale YAML rig would say
WRONG = ["-p", "rig.lidar.xyz:=[0.5, 1.0, 1.2]", "-p", "rig.lidar.rpy:=[0.0, 0.0, 0.3]",
         "-p", "rig.depth.xyz:=[1.5, 0.8, 1.6]"]  # fmt: skip


def run(outputs, bag, ros_args: list[str], topics: list[str]) -> tuple[dict[int, tuple], str]:
    """The node on the bag (played at half speed with /clock): {stamp: (inputs used, mask)}, its log."""
    outputs.clear()
    node = NodeProcess(config_file("any2seg.yaml"), ros_args)
    try:
        node.wait_ready(outputs)
        played = subprocess.run([str(MODSEG), "play", str(bag), "--clock", "--rate", "0.5", "--wait-for-subscribers", "30",
                                 "--topics", *topics], capture_output=True, text=True, timeout=120)  # fmt: skip
        assert played.returncode == 0, played.stderr
        assert "skipping" not in played.stdout + played.stderr, played.stdout + played.stderr  # tf2_msgs is importable
        time.sleep(1.0)
    finally:
        assert node.stop() == 0, node.log()
    # what each mask was computed from: the modalities and their messages' stamps
    used = {stamp_ns(r.msg.header.stamp): tuple(zip(r.msg.modalities_used, map(stamp_ns, r.msg.modality_stamps)))
            for r in outputs.get("info")}  # fmt: skip
    masks = {stamp_ns(r.msg.header.stamp): np.frombuffer(r.msg.data, np.uint8).copy() for r in outputs.get("mask")}
    return {s: (used[s], m) for s, m in masks.items() if s in used}, node.log()


def test_sensor_poses_from_tf_static_give_the_masks_of_the_yaml_rig(outputs, tmp_path):
    bag = make_world_bag(tmp_path / "drive", 2.0)
    reference, _ = run(outputs, bag, [*COMMON, "-p", "rig.source:=yaml"], SENSORS)
    from_tf, log = run(outputs, bag, [*COMMON, "-p", "rig.source:=tf", *WRONG], [*SENSORS, "/tf_static", "/tf"])
    assert "sensor poses from TF in 'base_link'" in log, log
    assert "lidar 'lidar' moved 1." in log and "depth 'depth_optical' moved 0.800 m" in log, log
    assert "camera 'camera_optical' unchanged" in log, log
    assert "[WARN]" not in log, log
    common = [s for s in reference if s in from_tf and reference[s][0] == from_tf[s][0]]
    assert len(common) >= 0.6 * len(reference) and len(reference) >= 10, (len(common), len(reference), len(from_tf))
    assert any(len(reference[s][0]) == 4 for s in common)
    different = [s for s in common if not np.array_equal(reference[s][1], from_tf[s][1])]
    assert not different, f"{len(different)} of {len(common)} masks differ"
    # the control: the wrong rig on its own does change the masks
    wrong, _ = run(outputs, bag, [*COMMON, "-p", "rig.source:=yaml", *WRONG], SENSORS)
    both = [s for s in reference if s in wrong and reference[s][0] == wrong[s][0] and len(wrong[s][0]) == 4]
    assert both and sum(not np.array_equal(reference[s][1], wrong[s][1]) for s in both) >= 0.5 * len(both)


def test_missing_and_broken_transforms_are_warned_by_frame_and_the_node_keeps_its_rig(outputs):
    """No TF at all: one WARN naming the frames, masks on the YAML rig; then a /tf_static with a
    broken LiDAR transform: the good ones are taken, the broken one is named, the YAML LiDAR pose stays."""
    from geometry_msgs.msg import TransformStamped
    from harness import HERE, play
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from tf2_msgs.msg import TFMessage

    outputs.clear()
    node = NodeProcess(HERE / "params" / "node_test.yaml", ["-p", "inputs.modalities:=[camera, lidar]"])
    try:
        node.wait_ready(outputs)
        play({"duration_s": 3.0, "rate_hz": {"camera": 10, "lidar": 5}})
        assert outputs.get("info"), node.log()  # running on the YAML rig
        missing = [line for line in node.lines if "[WARN]" in line and "no sensor pose from TF" in line]
        assert len(missing) == 1, node.log()  # once, not once a second
        assert "no transform received yet (needed: 'base_link' to camera 'camera_optical', lidar 'lidar')" in missing[0]
        assert "keeping the poses of rig.*" in missing[0]
        assert outputs.pipeline_values()["extrinsics"] == "rig.* until TF has every sensor frame"

        def transform(child: str, x: float) -> TransformStamped:
            t = TransformStamped()
            t.header.frame_id, t.child_frame_id = "base_link", child
            t.transform.translation.x, t.transform.rotation.w = x, 1.0
            return t

        broken = transform("lidar", float("nan"))
        publisher = outputs.node.create_publisher(TFMessage, "/tf_static", QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        publisher.publish(TFMessage(transforms=[transform("camera_optical", 1.5), broken]))
        assert outputs.wait_for(lambda: "'base_link' -> 'lidar' is not finite" in node.log(), 10.0), node.log()
        assert outputs.wait_for(lambda: "lidar 'lidar' in 'base_link': no transform names frame 'lidar'" in node.log()
                                and "no sensor pose from TF for lidar" in node.log(), 10.0), node.log()  # fmt: skip
        assert "sensor poses from TF" not in node.log()  # never half a rig from TF
        outputs.node.destroy_publisher(publisher)
    finally:
        assert node.stop() == 0, node.log()
