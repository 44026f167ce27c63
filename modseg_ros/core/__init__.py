"""ROS-free core: the node's pipeline without ROS. Imports no rclpy, no torch, and nothing of
modseg_ros but errors and paths (test/test_layers.py checks the layers).

- what a sensor gives: types.py (Modality, SensorSample, Bundle, HealthState), geometry.py (the
  rig), messages.py (ROS messages -> samples; duck-typed, no rclpy);
- what the node does with it: sync.py (bundles), health.py (stream and content checks) and
  checks/ (the cross-checks between sensors: network consistency, depth against LiDAR ranges,
  camera against events), encoding.py and network_input.py (camera-grid encodings -> network
  inputs), postprocess.py (masks, overlays, labelled points);
- how it is put together: perception.py (samples -> segmentations, with an engine it is handed),
  loop.py (the node's timers and level tracking, live and offline), params.py and config.py (each
  module's parameters, composed into the node's configuration);
- the label spaces everything scores and draws in: palette.py (DELIVER classes and colours),
  carla.py (CARLA's tags), metrics.py (confusion matrices, mIoU).
"""
