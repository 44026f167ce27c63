"""The embedded multi-sensor driving world: a procedural town, four sensors with ground truth,
weather and sensor failures, written as DELIVER-layout datasets or rosbag2 bags.

town.py (scene from a seed) -> raycast.py (open3d) -> sensors.py (camera, depth, LiDAR, events)
-> simulator.py (the rig at a world time) -> generate.py (sequences, failures) -> deliver_writer.py /
bag_writer.py. conditions.py holds the five DELIVER conditions, drive.py the ego path and clocks.
"""
