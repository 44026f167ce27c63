"""ROS-free core: sensor samples, synchronisation, health, geometry, encodings. Imports no rclpy."""
