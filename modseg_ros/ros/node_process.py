"""The any2seg node in a child process (``modseg run``), as the live replay, the benchmarks and the
tests start it: its log collected line by line, its CPU time and memory readable (psutil).

The child inherits this process's environment, so call ``ros.env.apply_dds_environment()`` (and
``use_private_domain()`` for a self-contained run) first.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from modseg_ros.errors import ModsegError


class NodeStartError(ModsegError):
    """The node process exited or did not come up in time (the message carries its last log lines)."""


@dataclass(frozen=True)
class Resources:
    rss_bytes: int  # resident memory (shared pages counted in each process)
    cpu_s: float  # user + system CPU time since start


class NodeProcess:
    """``modseg run --params FILE [RUN_ARGS] [--ros-args ...]`` in a child process."""

    def __init__(self, params: str | Path, ros_args: Sequence[str] = (), run_args: Sequence[str] = ()) -> None:
        args = [sys.executable, "-m", "modseg_ros.cli", "run", "--params", str(params), *run_args]
        if ros_args:
            args += ["--ros-args", *ros_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._ps = psutil.Process(self.proc.pid)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return "\n".join(self.lines)

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.lines[-lines:])

    def started(self) -> bool:
        """The node has set up (it logs what it segments once its topics and worker exist)."""
        return any(line.startswith("[INFO]") and "segmenting " in line for line in self.lines)

    def wait_ready(self, also: Callable[[], bool] = lambda: True, timeout_s: float = 180.0) -> None:
        """Until the node has started and ``also()`` holds (e.g. its outputs reach a recorder);
        NodeStartError with its log if it exits or takes longer."""
        deadline = time.monotonic() + timeout_s
        while self.alive() and not (self.started() and also()):
            if time.monotonic() > deadline:
                self.stop()
                raise NodeStartError(f"the node did not come up within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.05)
        if not self.alive():
            code = self.stop()
            raise NodeStartError(f"the node did not come up (exit code {code}):\n{self.tail()}")

    def resources(self) -> Resources:
        """Memory and CPU time of the node process and its children (the engine process) now."""
        rss, cpu = 0, 0.0
        for process in (self._ps, *self._ps.children(recursive=True)):
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss, cpu = rss + process.memory_info().rss, cpu + times.user + times.system
            except psutil.NoSuchProcess:  # a child that just exited
                continue
        return Resources(rss, cpu)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT (as Ctrl-C and launch do), then SIGKILL after ``timeout_s``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        return self.proc.returncode
