"""Datasets: the DELIVER-layout data and the embedded driving world that generates it. No rclpy."""
