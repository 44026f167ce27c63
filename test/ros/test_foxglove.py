"""``modseg run --foxglove``: the node serves its topics over Foxglove's WebSocket protocol on
loopback; a real WebSocket client (the ``websockets`` package) subscribes and decodes a mask."""
from __future__ import annotations

import json
import re
import struct
import threading
import time

import numpy as np
import psutil
import pytest
from harness import HERE, NodeProcess, play
from replay_fixtures import modseg
from rosbags.typesys import Stores, get_typestore
from websockets.sync.client import connect

from modseg_ros.core import messages

PARAMS = HERE / "params" / "node_test.yaml"
SUBPROTOCOL = "foxglove.sdk.v1"  # the subprotocol foxglove-sdk 0.30 accepts (Foxglove WebSocket protocol)
MESSAGE_DATA = 0x01  # binary opcode: subscription id uint32, log time uint64, payload


def wait_for_port(node: NodeProcess, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and node.proc.poll() is None:
        for line in node.lines:
            found = re.search(r"foxglove: serving \d+ topics on ws://127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise RuntimeError(f"the node did not start its Foxglove server:\n{node.log()}")


def test_a_websocket_client_on_loopback_receives_a_mask():
    node = NodeProcess(PARAMS, run_args=["--foxglove", "--foxglove-port", "0"])
    stream = None
    try:
        port = wait_for_port(node)
        # bound to loopback only
        listening = [c.laddr for c in psutil.Process(node.proc.pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening) and port in [a.port for a in listening]
        with connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], open_timeout=30) as ws:
            channels = {}
            deadline = time.monotonic() + 30
            while "/segmentation/mask" not in channels and time.monotonic() < deadline:
                message = json.loads(ws.recv(timeout=30))
                if message["op"] == "advertise":
                    channels.update({c["topic"]: c for c in message["channels"]})
            mask = channels["/segmentation/mask"]
            assert (mask["encoding"], mask["schemaName"], mask["schemaEncoding"]) == ("cdr", "sensor_msgs/msg/Image", "ros2msg")
            info = channels["/segmentation/info"]
            assert info["schemaName"] == "modseg_ros/msg/SegmentationInfo" and "string[] modalities_used" in info["schema"]
            assert "/camera/image" in channels and "/sensor_health" in channels
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": mask["id"]}]}))
            stream = threading.Thread(target=play, args=({"duration_s": 8.0},), kwargs={"timeout_s": 90}, daemon=True)
            stream.start()
            payload = None
            deadline = time.monotonic() + 60
            while payload is None and time.monotonic() < deadline:
                frame = ws.recv(timeout=60)
                if isinstance(frame, bytes) and frame[0] == MESSAGE_DATA:
                    subscription, log_time = struct.unpack_from("<IQ", frame, 1)
                    assert subscription == 7 and log_time > 0
                    payload = frame[13:]
        image = get_typestore(Stores.ROS2_KILTED).deserialize_cdr(payload, "sensor_msgs/msg/Image")
        labels = np.array(messages.image_array(image, "/segmentation/mask"))
        assert image.encoding == "mono8" and labels.shape == (32, 64) and labels.max() < 25
    finally:
        node.stop()
        if stream is not None:
            stream.join(timeout=90)


@pytest.mark.parametrize("args,needle", [(["--foxglove-port", "70000"], "--foxglove-port must be within 0..65535")])
def test_a_bad_foxglove_port_is_named(args, needle):
    result = modseg("run", "--params", str(PARAMS), "--foxglove", *args, timeout=60)
    assert result.returncode == 1 and needle in result.stderr
