"""DELIVER's five conditions as lighting and weather parameters (varied per sequence by a seed)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from modseg_ros.errors import ConfigError

CONDITIONS: tuple[str, ...] = ("cloud", "fog", "night", "rain", "sun")  # DELIVER's folder names


@dataclass(frozen=True)
class Condition:
    name: str
    sun_direction: tuple[float, float, float]  # unit vector towards the sun (map frame)
    sun: tuple[float, float, float]  # direct sun irradiance, linear RGB
    ambient: tuple[float, float, float]  # sky light on an upward surface
    sky_horizon: tuple[float, float, float]  # sky radiance at the horizon
    sky_zenith: tuple[float, float, float]
    shadows: bool
    cloud_cover: float  # 0..1 cloud texture in the sky
    fog_density: float  # extinction per metre (visibility ~ 3 / density)
    fog_colour: tuple[float, float, float]
    rain: float  # 0..1: streaks, wet dark roads, LiDAR drop-outs
    night: bool  # headlights, street lights, lit windows
    exposure: float  # scene radiance -> camera value before the tone curve
    noise: float  # camera read-noise std (0..1 scale)
    wind: float = 0.05  # cloud drift across the sky (sky-plane units per second)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_conditions(text: str) -> list[str]:
    """``"sun,night"`` -> ["sun", "night"]; ``all`` for the five; unknown names raise ConfigError."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(CONDITIONS)
    if not names:
        raise ConfigError("--conditions: give at least one of " + ", ".join(CONDITIONS))
    for name in names:
        if name not in CONDITIONS:
            raise ConfigError(f"--conditions: unknown condition '{name}' (choose from {', '.join(CONDITIONS)} or all)")
    return names


def _sun_vector(azimuth: float, elevation: float) -> tuple[float, float, float]:
    ce = np.cos(elevation)
    return (float(ce * np.cos(azimuth)), float(ce * np.sin(azimuth)), float(np.sin(elevation)))


def make_condition(name: str, rng: np.random.Generator) -> Condition:
    """A concrete instance of a condition, with sun position and weather drawn from ``rng``."""
    azimuth = float(rng.uniform(0, 2 * np.pi))
    if name == "sun":
        elevation = np.radians(rng.uniform(15, 65))
        warm = float(np.clip(1.0 - (elevation - np.radians(15)) / np.radians(50), 0.0, 1.0))  # low sun: warmer
        return Condition(
            name, _sun_vector(azimuth, elevation), (2.2, 2.1 - 0.2 * warm, 1.9 - 0.5 * warm), (0.45, 0.52, 0.68),
            (0.75, 0.82, 0.95), (0.25, 0.42, 0.8), True, float(rng.uniform(0.0, 0.25)), 0.0007,
            (0.75, 0.8, 0.9), 0.0, False, float(rng.uniform(0.85, 1.05)), 0.008,
        )  # fmt: skip
    if name == "cloud":
        elevation = np.radians(rng.uniform(20, 60))
        return Condition(
            name, _sun_vector(azimuth, elevation), (0.5, 0.5, 0.52), (1.05, 1.07, 1.12), (0.72, 0.74, 0.78),
            (0.5, 0.53, 0.6), False, float(rng.uniform(0.6, 1.0)), 0.0015, (0.7, 0.72, 0.75), 0.0, False,
            float(rng.uniform(0.9, 1.1)), 0.01,
        )  # fmt: skip
    if name == "fog":
        elevation = np.radians(rng.uniform(20, 50))
        density = float(rng.uniform(0.02, 0.06))  # visibility about 50..150 m
        return Condition(
            name, _sun_vector(azimuth, elevation), (0.35, 0.35, 0.35), (0.95, 0.97, 1.0), (0.78, 0.8, 0.82),
            (0.72, 0.74, 0.77), False, 0.0, density, (0.78, 0.8, 0.82), 0.0, False,
            float(rng.uniform(0.9, 1.05)), 0.01,
        )  # fmt: skip
    if name == "rain":
        elevation = np.radians(rng.uniform(20, 50))
        return Condition(
            name, _sun_vector(azimuth, elevation), (0.25, 0.25, 0.27), (0.7, 0.72, 0.78), (0.45, 0.47, 0.5),
            (0.3, 0.32, 0.36), False, 1.0, float(rng.uniform(0.006, 0.015)), (0.45, 0.47, 0.5),
            float(rng.uniform(0.5, 1.0)), False, float(rng.uniform(1.0, 1.25)), 0.015,
        )  # fmt: skip
    if name == "night":
        return Condition(
            name, _sun_vector(azimuth, -0.3), (0.0, 0.0, 0.0), (0.008, 0.009, 0.015), (0.02, 0.022, 0.035),
            (0.004, 0.005, 0.012), False, float(rng.uniform(0.0, 0.5)), 0.002, (0.02, 0.02, 0.03), 0.0, True,
            float(rng.uniform(0.9, 1.25)), 0.02,
        )  # fmt: skip
    raise ConfigError(f"unknown condition '{name}' (choose from {', '.join(CONDITIONS)})")
