"""Start the any-modal segmentation node (and optionally RViz).

    ros2 launch modseg_ros any2seg.launch.py [preset:=carla] [params_file:=...] [use_sim_time:=true]
        [namespace:=...] [model:=...] [rviz:=true] [camera_topic:=...] [camera_info_topic:=...]
        [depth_topic:=...] [lidar_topic:=...] [events_topic:=...] [events_image_topic:=...]

``preset:=NAME`` takes the parameter file ``config/NAME.yaml`` of this package (``any2seg``, the
default, or ``carla``); ``params_file`` overrides it. The node subscribes to the topics the
parameter file names (``topics.*``); a ``*_topic`` argument remaps one of them.
This is a standard launch_ros file: it leaves the DDS configuration of the ROS installation alone.
RViz's fixed frame is the parameter file's ``rig.base_frame``.
"""
import os

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "modseg_ros"

# (launch argument, the parameter naming the node's input topic it remaps)
INPUTS = (
    ("camera_topic", "topics.camera"),
    ("camera_info_topic", "topics.camera_info"),
    ("depth_topic", "topics.depth"),
    ("lidar_topic", "topics.lidar"),
    ("events_topic", "topics.events"),
    ("events_image_topic", "topics.events_image"),
)


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument("preset", default_value="any2seg", description="Parameter preset: config/<preset>.yaml (any2seg, carla)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=[PathJoinSubstitution([share, "config", LaunchConfiguration("preset")]), ".yaml"],
            description="Node parameter file (default: the preset's)",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Follow /clock"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument(
            "model",
            default_value="",
            description="Checkpoint (.safetensors) or ONNX file; empty keeps the parameter file's",
        ),
        DeclareLaunchArgument("rviz", default_value="false", description="Also start RViz"),
    ] + [
        DeclareLaunchArgument(arg, default_value="", description=f"Remapping of the topic {parameter} names (empty: none)")
        for arg, parameter in INPUTS
    ]

    node = OpaqueFunction(function=_segmentation_node)
    rviz = OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([*arguments, node, rviz])


def _parameters(params_file: str) -> dict:
    """The ``/**`` then ``any2seg`` sections of a ROS 2 parameter file, flattened to dotted names."""
    with open(params_file) as stream:
        document = yaml.safe_load(stream) or {}

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    params = {}
    for section in ("/**", "any2seg", "/any2seg"):
        params.update(flat((document.get(section) or {}).get("ros__parameters") or {}))
    return params


def _effective_parameters(context) -> dict:
    """The shipped defaults (config/any2seg.yaml) with the chosen parameter file over them, as the node sees them."""
    shipped = os.path.join(FindPackageShare(PACKAGE).perform(context), "config", "any2seg.yaml")
    return {**_parameters(shipped), **_parameters(LaunchConfiguration("params_file").perform(context))}


def _remappings(context) -> list[tuple[str, str]]:
    """(the parameter file's topic, the launch argument) for every ``*_topic`` argument given."""
    params = _effective_parameters(context)
    return [(str(params[parameter]), LaunchConfiguration(arg).perform(context))
            for arg, parameter in INPUTS if LaunchConfiguration(arg).perform(context)]  # fmt: skip


def _rviz(context):
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "rviz", "any2seg.rviz"])
    params = _effective_parameters(context)
    fixed_frame = str(params["rig.base_frame"])
    camera = LaunchConfiguration("camera_topic").perform(context) or str(params["topics.camera"])
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=["-d", config, "-f", fixed_frame],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            remappings=[("camera/image", camera)],  # the camera display
        )
    ]


def _segmentation_node(context):
    parameters = [
        LaunchConfiguration("params_file"),
        {"use_sim_time": LaunchConfiguration("use_sim_time")},
    ]
    model = LaunchConfiguration("model").perform(context)
    if model:  # later entries override the parameter file
        parameters.append({"model.path": model})
    return [
        Node(
            package=PACKAGE,
            executable="any2seg_node",
            name="any2seg",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=parameters,
            remappings=_remappings(context),
        )
    ]
