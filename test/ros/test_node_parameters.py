"""The node's parameters over ROS, as ``ros2 param describe / set`` see them: every parameter
described from the one declaration (core/config.py ``declared_parameters``), thresholds changed at
run time validated and applied, everything else refused with the reason."""
from __future__ import annotations

import time

from harness import HERE, NodeProcess, play
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters

from modseg_ros.core.config import declared_parameters


def call(outputs, srv_type, service: str, request, timeout_s: float = 10.0):
    client = outputs.node.create_client(srv_type, service)
    try:
        assert client.wait_for_service(timeout_sec=timeout_s), service
        future = client.call_async(request)  # the recorder's executor spins in its own thread
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert future.done(), f"{service} did not answer"
        return future.result()
    finally:
        outputs.node.destroy_client(client)


def value_msg(value) -> ParameterValue:
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, list):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)


def set_parameters(outputs, **values):
    request = SetParameters.Request(parameters=[ParameterMsg(name=k.replace("__", "."), value=value_msg(v)) for k, v in values.items()])
    return call(outputs, SetParameters, "/any2seg/set_parameters", request).results


def test_parameters_are_described_and_thresholds_change_at_run_time(outputs):
    outputs.clear()
    node = NodeProcess(HERE / "params" / "node_test.yaml", ["-p", "inputs.modalities:=[camera, lidar]", "-p", "rig.source:=yaml"])
    try:
        node.wait_ready(outputs)
        # every parameter: its module's description, accepted values, read-only unless it may change
        declared = declared_parameters()
        answer = call(outputs, DescribeParameters, "/any2seg/describe_parameters",
                      DescribeParameters.Request(names=[p.key for p in declared]))  # fmt: skip
        assert len(answer.descriptors) == len(declared)
        for parameter, descriptor in zip(declared, answer.descriptors):
            assert descriptor.name == parameter.key
            assert descriptor.description.startswith(parameter.description)
            assert descriptor.additional_constraints == parameter.range and descriptor.read_only == parameter.read_only
        described = dict(zip([p.key for p in declared], answer.descriptors))
        assert described["rig.lidar.xyz"].read_only and "changing it needs a restart" in described["rig.lidar.xyz"].description
        assert not described["health.lidar.min_points"].read_only

        # start-up parameters and invalid values are refused with the reason; nothing changes
        refused = set_parameters(outputs, rig__lidar__xyz=[0.0, 0.0, 3.0])[0]
        assert not refused.successful and "read-only" in refused.reason and "rig.lidar.xyz" in refused.reason
        invalid = set_parameters(outputs, health__camera__warn_fraction=2.0)[0]
        assert not invalid.successful and invalid.reason == "parameter 'health.camera.warn_fraction' must be <= 1, got 2"
        crossed = set_parameters(outputs, health__lidar__error_rate_hz=4.0)[0]  # above warn_rate_hz (3)
        assert not crossed.successful and "must not exceed 'health.lidar.warn_rate_hz'" in crossed.reason
        got = call(outputs, GetParameters, "/any2seg/get_parameters",
                   GetParameters.Request(names=["health.camera.warn_fraction", "health.lidar.min_points"])).values  # fmt: skip
        assert got[0].double_value == 0.5 and got[1].integer_value == 100

        # a threshold that may change: it takes effect on the running checks
        play({"duration_s": 1.5, "rate_hz": {"camera": 10, "lidar": 5}})
        assert any(s.alive and s.level == 0 for _, s in outputs.health_of("lidar"))
        assert not any("returns (minimum" in s.reason for _, s in outputs.health_of("lidar"))
        ok = set_parameters(outputs, health__lidar__min_points=10_000_000)[0]
        assert ok.successful, ok.reason
        assert "parameters changed at run time: health.lidar.min_points: 10000000" in node.log()
        outputs.clear()
        play({"duration_s": 2.0, "rate_hz": {"camera": 10, "lidar": 5}})
        failed = [s for _, s in outputs.health_of("lidar") if s.level == 2 and "(minimum 10000000)" in s.reason]
        assert failed, [s.reason for _, s in outputs.health_of("lidar")]
        assert all(s.level == 0 for _, s in outputs.health_of("camera") if s.alive)  # the camera's thresholds are untouched
        got = call(outputs, GetParameters, "/any2seg/get_parameters", GetParameters.Request(names=["health.lidar.min_points"]))
        assert got.values[0].integer_value == 10_000_000
    finally:
        assert node.stop() == 0, node.log()
    assert "Traceback" not in node.log(), node.log()


def test_a_misspelt_parameter_on_the_command_line_stops_the_node_with_its_name():
    node = NodeProcess(HERE / "params" / "node_test.yaml", ["-p", "sync.max_wiat_s:=0.1"])
    assert node.proc.wait(timeout=60) != 0
    node.stop()
    assert "unknown parameter 'sync.max_wiat_s'" in node.log(), node.log()
