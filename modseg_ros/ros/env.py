"""DDS environment for the project's own single-machine entry points.

Fast DDS reads these variables when a participant is created, so they must be in ``os.environ`` (or
a child's environment) before ``rclpy.init``. This module imports no rclpy.

- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery traffic stays on this machine.
- ``FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_shm.xml``: a 32 MB shared-memory segment, without
  which messages above about 512 KB (camera images, LiDAR scans) are dropped between processes.
- ``ROS_DOMAIN_ID``: tests and self-contained runs (demo, replay evaluation) take a free domain id so
  that concurrent runs on one machine never see each other's topics.

A user's own settings win: values already present are kept. The launch file does not use this
module, so a ROS installation's DDS configuration is left alone.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from modseg_ros.paths import config_file

DISCOVERY_RANGE = "ROS_AUTOMATIC_DISCOVERY_RANGE"
PROFILES_FILE = "FASTDDS_DEFAULT_PROFILES_FILE"
DOMAIN_ID = "ROS_DOMAIN_ID"
# Fast DDS derives UDP ports from the domain id; ids above 101 overflow the port range on Linux
# with default participant ids ("port number too high").
MAX_DOMAIN_ID = 101

_held_domain_locks: list[int] = []


def dds_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: ``os.environ``) with the project's DDS defaults filled in."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault(DISCOVERY_RANGE, "LOCALHOST")
    env.setdefault(PROFILES_FILE, str(config_file("fastdds_shm.xml")))
    return env


def apply_dds_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Fill the DDS defaults into ``environ`` (default: this process's environment) in place."""
    target = os.environ if environ is None else environ
    for key, value in dds_environment(target).items():
        if key not in target:
            target[key] = value


def allocate_domain_id(first: int | None = None) -> int:
    """Reserve a ROS domain id (0..101) that no other process on this machine holds.

    The reservation is an exclusive ``flock`` on a file in the temp directory, held until this
    process exits; the kernel releases it even if the process is killed. ``first`` picks where the
    search starts (default: derived from the pid, so concurrent runs rarely probe the same ids).
    """
    lock_dir = Path(tempfile.gettempdir()) / "modseg_ros_domains"
    lock_dir.mkdir(exist_ok=True)
    start = os.getpid() % (MAX_DOMAIN_ID + 1) if first is None else first
    for i in range(MAX_DOMAIN_ID + 1):
        domain = (start + i) % (MAX_DOMAIN_ID + 1)
        fd = os.open(lock_dir / f"{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_domain_locks.append(fd)
        return domain
    raise RuntimeError(f"all ROS domain ids 0..{MAX_DOMAIN_ID} are held by other processes")


def use_private_domain(environ: MutableMapping[str, str] | None = None) -> int:
    """Give this process (and the children it starts) a domain id of its own."""
    target = os.environ if environ is None else environ
    domain = allocate_domain_id()
    target[DOMAIN_ID] = str(domain)
    return domain
