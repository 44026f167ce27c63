"""Parameter changes while the node runs: validated as at start-up, applied by swapping the settings.

Only the parameters declared with ``read_only=False`` (core/params.py) change at run time: the
thresholds of the health checks and the cross-checks, and what the drawing thread reads. Each is
read by one module whose settings are replaced whole, so a check sees either the old settings or
the new ones. Everything else (topics, rig, sync, model, rates of timers) is read at start-up:
changing it needs a restart. ROS-free: ros/node.py calls this from its set-parameters callback.
"""
from __future__ import annotations

import array
from collections.abc import Mapping
from typing import Any

from modseg_ros.core.config import NodeConfig, declared_parameters, is_ros_parameter
from modseg_ros.core.perception import Perception
from modseg_ros.errors import ConfigError


def runtime_keys() -> frozenset[str]:
    """The parameters that may change while the node runs."""
    return frozenset(p.key for p in declared_parameters() if not p.read_only)


def plain_value(value: Any) -> Any:
    """A value as rclpy hands it over (arrays from a service call) -> a plain Python value."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value


def changed(config: NodeConfig, changes: Mapping[str, Any]) -> NodeConfig:
    """The configuration with ``changes`` (flat names) applied; ConfigError with the reason when one of
    them cannot change at run time or is invalid (the same validation as at start-up)."""
    changes = {k: plain_value(v) for k, v in changes.items() if not is_ros_parameter(k)}
    allowed = runtime_keys()
    for key in changes:
        if key not in config.parameters:
            raise ConfigError(f"unknown parameter '{key}'")
        if key not in allowed:
            raise ConfigError(f"changing '{key}' needs a restart (it is read at start-up)")
    return NodeConfig.from_parameters(changes, defaults=config.parameters)


def apply(perception: Perception, config: NodeConfig) -> None:
    """Hand the run-time settings of ``config`` to the modules that read them."""
    perception.health.reconfigure(config.health)
    perception.consistency.settings = config.consistency
    perception.range_agreement.settings = config.range_agreement
    perception.motion_agreement.settings = config.motion_agreement
    perception.config = config  # outputs.* (the drawing reads them per segmentation)
