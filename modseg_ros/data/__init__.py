"""Data: DELIVER-layout datasets, rosbag2 bags and their playback with injected sensor failures
(failures.py), the embedded driving world that generates both, and a synthetic street. No rclpy."""
