"""Start the any-modal segmentation node (and optionally RViz).

    ros2 launch modseg_ros any2seg.launch.py [params_file:=...] [use_sim_time:=true] [namespace:=...]
        [model:=...] [rviz:=true] [camera_topic:=...] [camera_info_topic:=...] [depth_topic:=...]
        [lidar_topic:=...] [events_topic:=...] [events_image_topic:=...]

This is a standard launch_ros file: it leaves the DDS configuration of the ROS installation alone.
RViz's fixed frame is the parameter file's ``rig.base_frame``.
"""
import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "modseg_ros"

# (launch argument, the node's relative input topic); each argument defaults to the topic itself
INPUTS = (
    ("camera_topic", "camera/image"),
    ("camera_info_topic", "camera/camera_info"),
    ("depth_topic", "depth/image"),
    ("lidar_topic", "lidar/points"),
    ("events_topic", "events/points"),
    ("events_image_topic", "events/image"),
)


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "any2seg.yaml"]),
            description="Node parameter file",
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
        DeclareLaunchArgument(arg, default_value=topic, description=f"Remapping of {topic}")
        for arg, topic in INPUTS
    ]

    node = OpaqueFunction(function=_segmentation_node)
    rviz = OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription([*arguments, node, rviz])


def _base_frame(params_file: str) -> str:
    """``rig.base_frame`` of a ROS 2 parameter file (its ``/**`` or node section), else base_link."""
    with open(params_file) as stream:
        document = yaml.safe_load(stream) or {}
    frame = "base_link"
    for section in ("/**", "any2seg", "/any2seg"):
        rig = ((document.get(section) or {}).get("ros__parameters") or {}).get("rig") or {}
        frame = rig.get("base_frame", frame)
    return frame


def _rviz(context):
    config = PathJoinSubstitution([FindPackageShare(PACKAGE), "rviz", "any2seg.rviz"])
    fixed_frame = _base_frame(LaunchConfiguration("params_file").perform(context))
    return [
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            namespace=LaunchConfiguration("namespace"),
            arguments=["-d", config, "-f", fixed_frame],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            remappings=[("camera/image", LaunchConfiguration("camera_topic"))],  # the camera display
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
            remappings=[(topic, LaunchConfiguration(arg)) for arg, topic in INPUTS],
        )
    ]
