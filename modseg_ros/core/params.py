"""Reading and declaring the node's parameters: the part every module's settings share.

Each module declares the parameters it reads (``Parameter``: name, description, accepted values)
and builds its settings from the flat parameters with a ``ParameterReader``, which validates each
value and names the parameter in every error. core/config.py composes the modules' settings into
the node's configuration; the defaults are in the shipped parameter file (config/any2seg.yaml).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from modseg_ros.core.types import MODALITIES, Modality
from modseg_ros.errors import ConfigError

Parameters = dict[str, Any]


@dataclass(frozen=True)
class Parameter:
    """One parameter as the module that reads it declares it (its default is in config/any2seg.yaml)."""

    key: str  # dotted name; "{m}" stands for each modality (``for_modalities``)
    description: str
    range: str = ""  # the values the reader accepts
    read_only: bool = True  # read once at start-up; False: the node takes a change at run time (core/runtime_parameters.py)

    def for_modalities(self, modalities: Iterable[Modality] = MODALITIES) -> tuple[Parameter, ...]:
        """One parameter per modality from a "{m}" key."""
        return tuple(replace(self, key=self.key.format(m=m.value)) for m in modalities)


def format_value(value: Any) -> str:
    """A parameter value as the parameter file writes it (JSON is YAML's flow style)."""
    return json.dumps(value)


def parameter_table(parameters: Iterable[Parameter], defaults: Mapping[str, Any]) -> str:
    """A Markdown table of ``parameters`` with their defaults (the docs' parameter tables)."""
    rows = ["| parameter | default | values | description | changes at run time |", "|---|---|---|---|---|"]
    rows += [f"| `{p.key}` | `{format_value(defaults.get(p.key))}` | {p.range} | {p.description} | {'' if p.read_only else 'yes'} |"
             for p in parameters]
    return "\n".join(rows)


_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def parse_device(name: str) -> tuple[str, int]:
    """``cpu`` | ``cuda`` | ``cuda:N`` -> (kind, index); the index of ``cuda`` is 0 (model/device.py
    checks that the device exists)."""
    match = _DEVICE.match(name.strip().lower()) if isinstance(name, str) else None
    if not match or (match.group(1) == "cpu" and match.group(2) is not None):
        raise ConfigError(f"device must be cpu, cuda or cuda:N, got {name!r}")
    return match.group(1), int(match.group(2) or 0)


class ParameterReader:
    """Typed, validated access to flat parameters; every error names the parameter."""

    def __init__(self, params: Parameters):
        self.params = params

    def value(self, key: str) -> Any:
        if key not in self.params:
            raise ConfigError(f"parameter '{key}' is missing")
        return self.params[key]

    def number(self, key: str, low: float | None = None, high: float | None = None, low_open: bool = False) -> float:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ConfigError(f"parameter '{key}' must be a number, got {value!r}")
        value = float(value)
        if low is not None and (value < low or (low_open and value == low)):
            raise ConfigError(f"parameter '{key}' must be {'>' if low_open else '>='} {low:g}, got {value:g}")
        if high is not None and value > high:
            raise ConfigError(f"parameter '{key}' must be <= {high:g}, got {value:g}")
        return value

    def positive(self, key: str) -> float:
        return self.number(key, 0.0, low_open=True)

    def integer(self, key: str, low: int | None = None) -> int:
        value = self.value(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"parameter '{key}' must be an integer, got {value!r}")
        if low is not None and value < low:
            raise ConfigError(f"parameter '{key}' must be >= {low}, got {value}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.value(key)
        if not isinstance(value, bool):
            raise ConfigError(f"parameter '{key}' must be true or false, got {value!r}")
        return value

    def string(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self.value(key)
        if not isinstance(value, str):
            raise ConfigError(f"parameter '{key}' must be a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"parameter '{key}' must be one of {', '.join(choices)}, got '{value}'")
        return value

    def device(self, key: str) -> str:
        value = self.string(key)
        try:
            parse_device(value)
        except ConfigError as err:
            raise ConfigError(f"parameter '{key}': {err}") from None
        return value

    def topic(self, key: str) -> str:
        """A ROS topic name: alphanumerics, '_' and '/' separators, '~' only first, no empty tokens."""
        value = self.string(key)
        body = value[1:] if value[:1] in "/~" else value
        tokens = body.lstrip("/").split("/") if value.startswith("~/") else body.split("/")
        if not value or not all(t and (t[0].isalpha() or t[0] == "_") and t.replace("_", "").isalnum() for t in tokens):
            raise ConfigError(f"parameter '{key}' is not a valid ROS topic name: '{value}'")
        return value

    def modalities(self, key: str) -> tuple[Modality, ...]:
        value = self.value(key)
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"parameter '{key}' must be a non-empty list of modalities, got {value!r}")
        try:
            parsed = tuple(Modality.parse(str(v)) for v in value)
        except ValueError as err:
            raise ConfigError(f"parameter '{key}': {err}") from None
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"parameter '{key}' lists a modality twice: {value!r}")
        return parsed

    def seconds(self, key: str, allow_zero: bool = True) -> int:
        """A duration in seconds -> integer nanoseconds."""
        return int(round(self.number(key, 0.0, low_open=not allow_zero) * 1e9))
