"""A segmentation engine in a child process: the live node's network, out of reach of its GIL.

The node's subscription callbacks (conversion, health checks, encoding on arrival) and its
rendering are Python. In one process they take turns on the GIL with the inference thread, and a
torch forward takes the GIL back between its ~1500 operator calls, so every turn costs it up to the
interpreter's switch interval: measured at 512×256 on two cores, the in-node forward took 130-200 ms
where the bare forward took 75-80 ms. In its own process the network has its own interpreter; the
node's inference thread only waits on a pipe.

    engine = EngineProcess(partial(SegmentationEngine.load, "models/any2seg_b0.safetensors", threads=1))
    engine.predict(encoded, output_size=(256, 512))  # the same Prediction as SegmentationEngine's
    engine.predict(encoded, on_labels=publish_mask)  # called with the labels before the scores are computed
    engine.close()

Bundles cross a socket pair, the arrays' bytes sent as they lie in memory (four 512×256
encodings, 1.5 MB, and the mask back: 3 ms round trip). An error raised by ``predict`` in the child
is raised again here; a child that died (killed, out of memory) is started again on the next call,
which raises once to say so.
"""
from __future__ import annotations

import gc
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from modseg_ros.core.types import Modality
from modseg_ros.errors import ModsegError
from modseg_ros.model.runtime import Prediction, SegmentationEngine
from modseg_ros.model.sidecar import CheckpointInfo

START_TIMEOUT_S = 180.0  # importing torch and loading a checkpoint on a busy two-core machine


def _send(conn: Connection, obj) -> None:
    """Pickle with the arrays' bytes out of band: each goes to the socket as it lies in memory (a
    plain ``conn.send`` copies them into the pickle first, 3 ms for a bundle)."""
    buffers: list[pickle.PickleBuffer] = []
    conn.send_bytes(pickle.dumps(obj, protocol=5, buffer_callback=buffers.append))
    conn.send_bytes(struct.pack("<I", len(buffers)))
    for buffer in buffers:
        conn.send_bytes(buffer.raw())


def _receive(conn: Connection):
    header = conn.recv_bytes()
    (count,) = struct.unpack("<I", conn.recv_bytes())
    return pickle.loads(header, buffers=[conn.recv_bytes() for _ in range(count)])


def _serve(conn: Connection) -> None:
    """The child: build the engine from the factory the parent sends first, then answer ``predict``
    requests until told to stop or the parent's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    try:
        engine = _receive(conn)()
    except Exception as err:  # a missing or broken checkpoint: the parent raises it
        _send(conn, ("error", err))
        return
    gc.freeze()  # the model's objects are permanent: collections need not walk them
    _send(conn, ("ready", (engine.info, engine.backend, engine.runs_on)))
    while True:
        try:
            request = _receive(conn)
        except EOFError:  # the parent is gone
            return
        if request is None:
            return
        method, inputs, kwargs = request
        labels_first = kwargs.pop("labels_first", False)
        if labels_first:  # the labels go back as soon as they exist, the scores after
            kwargs["on_labels"] = lambda labels: _send(conn, ("labels", labels))
        try:
            prediction = getattr(engine, method)(inputs, **kwargs)
            # labels sent first are not sent again with the scores (a 1080p mask is 2 MB)
            _send(conn, ("ok", replace(prediction, labels=None) if labels_first else prediction))
        except Exception as err:  # bad input for this bundle: raised in the parent, the child serves on
            _send(conn, ("error", err))


def _reap(process: subprocess.Popen) -> int:
    """The child's exit code, killing it if it does not exit within a few seconds."""
    try:
        return process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class EngineProcess:
    """``SegmentationEngine``'s ``predict`` and ``predict_inputs`` served by a child process built from ``factory``."""

    def __init__(self, factory: Callable[[], SegmentationEngine]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self.info, self.backend, self.runs_on = self._start()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> tuple[CheckpointInfo, str, str]:
        # A plain interpreter on one end of a socket pair: multiprocessing's spawn would re-run the
        # parent's __main__ (a launch_ros entry point, pytest), which must not happen twice.
        ours, theirs = socket.socketpair()
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
        process = subprocess.Popen([sys.executable, "-m", "modseg_ros.model.engine_process", str(theirs.fileno())],
                                   pass_fds=[theirs.fileno()], env=env)  # fmt: skip
        theirs.close()
        conn = Connection(ours.detach())
        _send(conn, self._factory)
        if not conn.poll(START_TIMEOUT_S):
            process.kill()
            raise ModsegError(f"the engine process did not load the model within {START_TIMEOUT_S:.0f} s")
        try:
            status, value = _receive(conn)
        except EOFError:
            raise ModsegError(f"the engine process exited while loading the model (exit code {process.wait()})") from None
        if status == "error":
            process.wait()
            raise value
        self._process, self._conn = process, conn
        return value

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) the network runs at."""
        return self.info.config.input_size

    @property
    def lidar_intensity(self) -> str:
        """How the network reads LiDAR intensity (core/network_input.py LIDAR_INTENSITY)."""
        return self.info.lidar_intensity

    def predict(self, encoded: Mapping[Modality, np.ndarray], output_size: tuple[int, int] | None = None,
                absent: str = "drop", exclude: Collection[Modality] = (), consistency: bool = True,
                on_labels: Callable[[np.ndarray], None] | None = None) -> Prediction:  # fmt: skip
        """As ``SegmentationEngine.predict``; ``inference_ms`` is the child's (the pipe excluded)."""
        return self._call("predict", encoded, output_size, absent, exclude, consistency, on_labels)

    def predict_inputs(self, inputs: Mapping[Modality, np.ndarray], output_size: tuple[int, int], absent: str = "drop",
                       exclude: Collection[Modality] = (), consistency: bool = True,
                       on_labels: Callable[[np.ndarray], None] | None = None) -> Prediction:  # fmt: skip
        """As ``SegmentationEngine.predict_inputs`` (network inputs: a quarter of the encodings' bytes
        at the shipped sizes, 4 × 3×64×128 float32 against 4 × 512×256×3 uint8)."""
        return self._call("predict_inputs", inputs, output_size, absent, exclude, consistency, on_labels)

    def _call(self, method: str, arrays: Mapping[Modality, np.ndarray], output_size, absent, exclude, consistency,
              on_labels: Callable[[np.ndarray], None] | None) -> Prediction:  # fmt: skip
        with self._lock:
            if self._conn is None:
                self._start()
            kwargs = {"output_size": output_size, "absent": absent, "exclude": tuple(exclude), "consistency": consistency,
                      "labels_first": on_labels is not None}  # fmt: skip
            failure = None
            try:
                _send(self._conn, (method, dict(arrays), kwargs))
                status, value = _receive(self._conn)
                if status == "labels":
                    labels = value
                    try:
                        on_labels(labels)
                    except Exception as err:  # read the prediction still on its way, or the next call reads it
                        failure = err
                    status, value = _receive(self._conn)
                    if status == "ok":
                        value = replace(value, labels=labels)
            except (EOFError, BrokenPipeError, ConnectionResetError):
                code = _reap(self._process)
                self._conn = self._process = None
                raise ModsegError(f"the engine process died (exit code {code}); it is started again for the next bundle") from None
            if status == "error":
                raise value
            if failure is not None:
                raise failure
            return value

    def close(self) -> None:
        """Stop the child (it also stops when this process exits: its pipe closes)."""
        with self._lock:
            if self._conn is None:
                return
            try:
                _send(self._conn, None)
            except (BrokenPipeError, OSError):
                pass
            _reap(self._process)
            self._conn.close()
            self._conn = self._process = None


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
