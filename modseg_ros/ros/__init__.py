"""The thin ROS 2 shell: rclpy nodes (the node, the player, the recorder), numpy -> message writers
and the DDS environment set-up. The message readers need no rclpy and live in core/messages.py.

Everything outside this package is importable without rclpy.
"""
