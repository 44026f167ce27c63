"""Every segmentation architecture by the name ``SegmenterConfig.arch`` gives it, and ``build``.

The architectures import what they share from model/segmenter.py; this registry imports them, so
segmenter.py knows none of them. A new architecture is one module and one line here.
"""
from __future__ import annotations

from modseg_ros.errors import ConfigError
from modseg_ros.model.any2seg import Any2Seg
from modseg_ros.model.cmnext import CMNeXtStyle
from modseg_ros.model.equiseg import EQUISeg
from modseg_ros.model.meanfusion import MeanFusionSeg
from modseg_ros.model.segmenter import Segmenter
from modseg_ros.model.sidecar import SegmenterConfig

ARCHITECTURES: dict[str, type[Segmenter]] = {
    "any2seg": Any2Seg,
    "equiseg": EQUISeg,
    "cmnext": CMNeXtStyle,
    "meanfusion": MeanFusionSeg,
}


def build(config: SegmenterConfig) -> Segmenter:
    """A freshly initialised model of ``config.arch`` (ConfigError for an unknown name)."""
    if config.arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture '{config.arch}' (choose from {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[config.arch](config)
