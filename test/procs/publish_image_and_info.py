"""Publisher process for test_dds_transport: N × (1 MB Image, SegmentationInfo) at a fixed rate."""
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from modseg_ros.msg import SegmentationInfo


def main() -> int:
    count, rate_hz = int(sys.argv[1]), float(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("transport_test_publisher")
    image_pub = node.create_publisher(Image, "transport_test/image", qos_profile_sensor_data)
    info_pub = node.create_publisher(SegmentationInfo, "transport_test/info", 10)
    deadline = time.monotonic() + 20.0
    while image_pub.get_subscription_count() == 0 or info_pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("no subscriber discovered", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.3)  # let the subscriber's readers finish matching
    pixels = np.random.default_rng(0).integers(0, 256, size=(512, 683, 3), dtype=np.uint8)
    for seq in range(count):
        stamp = Time(sec=seq, nanosec=0)
        image = Image(height=512, width=683, encoding="rgb8", step=683 * 3)
        image.header.stamp = stamp
        image.header.frame_id = "camera_optical"
        pixels[0, 0, 0] = seq % 256
        image.data = pixels.tobytes()
        info = SegmentationInfo()
        info.header.stamp = stamp
        info.modalities_used = ["camera", "lidar"]
        info.modality_stamps = [stamp, Time(sec=seq, nanosec=5_000_000)]
        info.modalities_missing = ["depth", "events"]
        info.modality_weights = [0.75, 0.25]
        info.inference_ms = 12.5
        info.end_to_end_ms = 20.0
        info.model = "transport-test"
        image_pub.publish(image)
        info_pub.publish(info)
        time.sleep(1.0 / rate_hz)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
