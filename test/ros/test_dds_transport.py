"""Two processes exchange a 1 MB Image and a SegmentationInfo over real DDS, with the project's
environment set-up (loopback discovery, 32 MB shared-memory profile), and lose nothing."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from modseg_ros.msg import SegmentationInfo

PUBLISHER = Path(__file__).parents[1] / "procs" / "publish_image_and_info.py"


def test_image_and_info_cross_processes_without_loss():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    count, rate_hz = 40, 10.0
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("transport_test_subscriber", context=context)
    images, infos = [], []
    node.create_subscription(Image, "transport_test/image", images.append, qos_profile_sensor_data)
    node.create_subscription(SegmentationInfo, "transport_test/info", infos.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    publisher = subprocess.Popen([sys.executable, str(PUBLISHER), str(count), str(rate_hz)])
    try:
        deadline = time.monotonic() + 30.0
        while publisher.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.05)
        assert publisher.wait(timeout=5) == 0
    finally:
        if publisher.poll() is None:
            publisher.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)

    assert len(images) == count and len(infos) == count
    assert [m.header.stamp.sec for m in images] == list(range(count))
    first = np.frombuffer(images[7].data, dtype=np.uint8).reshape(512, 683, 3)
    assert len(images[7].data) == 512 * 683 * 3 > 1_000_000 and first[0, 0, 0] == 7
    info = infos[3]
    assert list(info.modalities_used) == ["camera", "lidar"]
    assert [(t.sec, t.nanosec) for t in info.modality_stamps] == [(3, 0), (3, 5_000_000)]
    assert list(info.modalities_missing) == ["depth", "events"]
    assert np.allclose(info.modality_weights, [0.75, 0.25]) and info.model == "transport-test"
