"""User-facing errors, one type per layer, each naming the file, key or topic at fault.

The CLI prints them as one line and exits non-zero; the node logs them. Anything else that escapes
is a bug and keeps its traceback.
"""
from __future__ import annotations


class ModsegError(Exception):
    """Base class: a problem with the user's input, not with the code."""


class ConfigError(ModsegError):
    """An invalid parameter, parameter file or command-line value."""


class CheckpointError(ModsegError):
    """A model file that is missing, unsafe or does not match its architecture."""


class DatasetError(ModsegError):
    """A dataset folder or file that cannot be read as expected."""


class BagError(ModsegError):
    """A rosbag2 bag that cannot be read or written as expected."""


class ConversionError(ModsegError):
    """A sensor message that cannot be converted: names the topic and what is wrong with it."""

    def __init__(self, topic: str, problem: str):
        super().__init__(f"{topic}: {problem}")
        self.topic = topic
        self.problem = problem
