"""Extrinsics from TF without ROS: the transform tree, lookups across it, the rig made from them."""
import numpy as np
import pytest

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.geometry import Transform
from modseg_ros.core.transforms import TfRig, TransformError, TransformTree
from modseg_ros.core.types import Modality


def put(tree: TransformTree, parent: str, child: str, t: Transform, static: bool = True) -> str:
    return tree.set(parent, child, t.translation, t.quaternion(), static)


def test_lookup_composes_up_and_down_the_tree():
    tree = TransformTree()
    base_from_mount = Transform.from_xyz_rpy([1.0, 0.0, 1.5], [0.0, 0.1, 0.0])
    mount_from_lidar = Transform.from_xyz_rpy([0.2, 0.0, 0.3], [0.0, 0.0, 0.5])
    base_from_camera = Transform.from_xyz_rpy([1.5, 0.0, 1.6], [-np.pi / 2, 0.0, -np.pi / 2])
    assert put(tree, "base_link", "mount", base_from_mount) == ""
    assert put(tree, "/mount", "lidar", mount_from_lidar) == ""  # a leading '/' is dropped, as tf2 does
    assert put(tree, "base_link", "camera_optical", base_from_camera) == ""
    assert put(tree, "map", "base_link", Transform.from_xyz_rpy([100.0, 5.0, 0.0], [0.0, 0.0, 1.0]), static=False) == ""
    assert np.allclose(tree.lookup("base_link", "lidar").matrix, (base_from_mount @ mount_from_lidar).matrix)
    assert np.allclose(tree.lookup("lidar", "base_link").matrix, (base_from_mount @ mount_from_lidar).inverse().matrix)
    camera_from_lidar = base_from_camera.inverse() @ base_from_mount @ mount_from_lidar
    assert np.allclose(tree.lookup("camera_optical", "lidar").matrix, camera_from_lidar.matrix)
    assert tree.lookup("base_link", "base_link").is_identity()


def test_unknown_unconnected_and_looping_frames_are_named():
    tree = TransformTree()
    put(tree, "base_link", "lidar", Transform())
    put(tree, "odom", "imu", Transform())
    with pytest.raises(TransformError, match="no transform names frame 'radar'"):
        tree.lookup("base_link", "radar")
    with pytest.raises(TransformError, match="frames 'base_link' and 'imu' are not connected"):
        tree.lookup("base_link", "imu")
    assert "loop" in put(tree, "lidar", "base_link", Transform())  # base_link is above lidar
    assert "itself" in tree.set("a", "a", [0, 0, 0], [0, 0, 0, 1], True)
    assert "not finite" in tree.set("base_link", "x", [np.nan, 0, 0], [0, 0, 0, 1], True)
    assert "quaternion is zero" in tree.set("base_link", "x", [0, 0, 0], [0, 0, 0, 0], True)
    assert np.allclose(tree.lookup("base_link", "lidar").matrix, np.eye(4))  # the rejected edges left the tree as it was


def test_the_rig_takes_every_sensor_pose_from_tf_or_stays_as_it_is():
    config = NodeConfig.load(overrides={"inputs.modalities": ["camera", "lidar"]})
    yaml_rig = config.rig
    tf = TfRig(config.base_frame, yaml_rig.frame_ids, config.inputs.modalities)
    # nothing yet: the YAML rig stays, the problem names the frames
    update = tf.update(yaml_rig)
    assert update.rig is yaml_rig and not update.changed
    assert update.problem == "no transform received yet (needed: 'base_link' to camera 'camera_optical', lidar 'lidar')"
    put(tf.tree, "base_link", "mount", Transform())
    update = tf.update(yaml_rig)
    assert update.rig is yaml_rig and "camera 'camera_optical' in 'base_link': no transform names frame 'camera_optical'" in update.problem
    assert "lidar 'lidar' in 'base_link': no transform names frame 'lidar'" in update.problem
    # the same poses as the YAML rig: no change (no re-encoding)
    for m in (Modality.CAMERA, Modality.LIDAR):
        put(tf.tree, "base_link", yaml_rig.frame_ids[m], yaml_rig.base_from[m])
    update = tf.update(yaml_rig)
    assert update.problem == "" and update.rig is yaml_rig and not update.changed
    # the LiDAR moved: a new rig with the new pose, the intrinsics kept
    moved = Transform.from_xyz_rpy([1.0, 0.1, 2.0], [0.0, 0.0, 0.05])
    put(tf.tree, "base_link", "lidar", moved)
    update = tf.update(yaml_rig)
    assert update.changed and update.problem == ""
    assert np.allclose(update.rig.base_from[Modality.LIDAR].matrix, moved.matrix)
    assert update.rig.camera == yaml_rig.camera and update.rig.base_from[Modality.DEPTH] is yaml_rig.base_from[Modality.DEPTH]
    # the messages name another LiDAR frame, which TF does not know yet: the last good rig stays
    assert tf.observe_frame(Modality.LIDAR, "velodyne") and not tf.observe_frame(Modality.LIDAR, "velodyne")
    assert not tf.observe_frame(Modality.LIDAR, "")
    stay = tf.update(update.rig)
    assert stay.rig is update.rig and "lidar 'velodyne' in 'base_link': no transform names frame 'velodyne'" in stay.problem
    put(tf.tree, "lidar", "velodyne", Transform.from_xyz_rpy([0.0, 0.0, 0.1], [0.0, 0.0, 0.0]))
    final = tf.update(update.rig)
    assert final.changed and final.rig.frame_ids[Modality.LIDAR] == "velodyne"
    assert np.allclose(final.rig.base_from[Modality.LIDAR].translation, moved.apply(np.array([[0.0, 0.0, 0.1]]))[0], atol=1e-6)


def test_only_transforms_on_a_sensor_path_call_for_a_new_rig():
    config = NodeConfig.load(overrides={"inputs.modalities": ["camera", "lidar"]})
    tf = TfRig(config.base_frame, config.rig.frame_ids, config.inputs.modalities)
    assert tf.relevant("anything")  # nothing resolved yet
    put(tf.tree, "base_link", "mount", Transform())
    put(tf.tree, "mount", "lidar", Transform())
    put(tf.tree, "base_link", "camera_optical", Transform())
    put(tf.tree, "map", "base_link", Transform(), static=False)
    assert tf.update(config.rig).problem == ""
    assert tf.relevant("mount") and tf.relevant("lidar") and tf.relevant("camera_optical")
    assert not tf.relevant("base_link") and not tf.relevant("wheel")  # the vehicle moving in the map moves no sensor
