"""The thin ROS 2 shell: rclpy nodes, message conversions and DDS environment set-up.

Everything outside this package is importable without rclpy.
"""
