"""The node draws the colour mask, overlay and labelled points only while somebody subscribes to
them (as image_transport publishers do), and the masks flow either way. Its own module: the other
node tests' recorder subscribes to every output."""
from __future__ import annotations

import time

from harness import HERE, NodeProcess, Outputs, play

PARAMS = HERE / "params" / "node_test.yaml"
RATES = {"camera": 10, "depth": 10, "lidar": 5, "events": 10}


def test_outputs_are_drawn_only_while_somebody_subscribes():
    viewer = Outputs(only=("info", "mask", "diagnostics"))
    node = NodeProcess(PARAMS)
    try:
        node.wait_ready(viewer)
        play({"duration_s": 2.0, "rate_hz": RATES})
        assert viewer.wait_for(lambda: int(viewer.pipeline_values().get("masks_published", 0)) >= 10, 5.0), viewer.pipeline_values()
        assert len(viewer.get("mask")) >= 10
        assert viewer.pipeline_values()["masks_drawn_for_subscribers"] == "0"

        # somebody opens the overlay and the labelled points (RViz): from then on they are drawn
        viewer.subscribe("overlay")
        viewer.subscribe("points")
        time.sleep(1.0)  # discovery: the node sees the new subscriptions
        play({"duration_s": 2.0, "rate_hz": RATES})
        assert viewer.wait_for(lambda: len(viewer.get("overlay")) >= 5 and len(viewer.get("points")) >= 3, 5.0)
        assert viewer.wait_for(lambda: int(viewer.pipeline_values()["masks_drawn_for_subscribers"]) >= 5, 3.0), viewer.pipeline_values()
        overlay = viewer.get("overlay")[-1].msg
        assert (overlay.encoding, overlay.height, overlay.width) == ("rgb8", 32, 64)
    finally:
        assert node.stop() == 0, node.log()
        viewer.close()
