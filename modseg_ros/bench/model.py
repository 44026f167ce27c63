"""``modseg bench model``: network speed on this CPU, torch against ONNX Runtime, per number of modalities.

For each subset size (1..4 modalities, the first subset of that size in canonical order: C, CD, CDL,
CDLE) it times the network (prepared inputs -> logits and consistency scores) in torch and, if the checkpoint's
``.onnx`` graph exists (``modseg export --onnx``; ``--export`` writes one beside a temporary copy of
the checkpoint when it is missing), in ONNX Runtime, and ``SegmentationEngine.predict``
end to end (uint8 encodings at the camera size -> labels at the camera size). Median of ``--repeat``
runs after one warm-up. ``--device cuda`` runs both backends on the GPU (torch fp16; ORT with the
TensorRT / CUDA providers its build has): the check to run on a machine that has one; the table's
title says where each ran.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from time import perf_counter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, help="model .safetensors (default: the shipped model; else an untrained Any2Seg)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and ORT (default 2)")
    parser.add_argument("--export", action="store_true", help="export the ONNX graph to a temporary folder if it is missing")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--camera", type=int, nargs=2, default=(256, 512), metavar=("H", "W"), help="encoding size (default 256 512)")


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = perf_counter()
        fn()
        times.append((perf_counter() - start) * 1e3)
    return statistics.median(times)


def _exported_copy(checkpoint: Path) -> Path:
    """The checkpoint and its sidecar copied to a temporary folder, with the ONNX graph exported beside them."""
    import shutil
    import tempfile

    from modseg_ros.model.export import export_onnx

    folder = Path(tempfile.mkdtemp(prefix="modseg-bench-model-"))
    for suffix in (".safetensors", ".json"):
        shutil.copy(checkpoint.with_suffix(suffix), folder)
    copy = folder / checkpoint.with_suffix(".safetensors").name
    export_onnx(copy)
    return copy


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from modseg_ros.core.network_input import prepare
    from modseg_ros.core.types import MODALITIES, subset_name
    from modseg_ros.model.loading import default_checkpoint
    from modseg_ros.model.runtime import SegmentationEngine

    torch.set_num_threads(args.threads)
    path = args.checkpoint or default_checkpoint()
    if path is not None and args.export and not Path(path).with_suffix(".onnx").is_file():
        path = _exported_copy(Path(path))
    if path is not None and Path(path).with_suffix(".safetensors").is_file():
        engine = SegmentationEngine.load(path, threads=args.threads, device=args.device)
        has_onnx = Path(path).with_suffix(".onnx").is_file()
        onnx_engine = SegmentationEngine.load(path, "onnx", args.threads, device=args.device) if has_onnx else None
    else:
        engine, onnx_engine = SegmentationEngine.untrained("any2seg", device=args.device), None
    rng = np.random.default_rng(0)
    h, w = args.camera
    encoded = {m: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for m in MODALITIES}
    where = engine.runs_on + (f"; {onnx_engine.runs_on}" if onnx_engine is not None else "")
    table = Table(title=f"{engine.name}: input {engine.input_size[0]}×{engine.input_size[1]}, camera {h}×{w}, {args.threads} threads, "
                        f"median ms ({where})")  # fmt: skip
    for column in ("modalities", "torch forward", "ORT forward", "ORT/torch time", "predict (torch)", "predict (ORT)"):
        table.add_column(column, justify="right")
    for k in range(1, len(MODALITIES) + 1):
        subset = MODALITIES[:k]
        images, index = prepare({m: encoded[m] for m in subset}, engine.input_size)
        fused = np.ones(len(index), dtype=bool)
        torch_ms = _median_ms(lambda: _network(engine, images, index, fused), args.repeat)
        predict_ms = _median_ms(lambda: engine.predict({m: encoded[m] for m in subset}), args.repeat)
        row = [subset_name(subset), f"{torch_ms:.1f}"]
        if onnx_engine is not None:
            ort_ms = _median_ms(lambda: _network(onnx_engine, images, index, fused), args.repeat)
            ort_predict = _median_ms(lambda: onnx_engine.predict({m: encoded[m] for m in subset}), args.repeat)
            row += [f"{ort_ms:.1f}", f"{ort_ms / torch_ms:.2f}", f"{predict_ms:.1f}", f"{ort_predict:.1f}"]
        else:
            row += ["-", "-", f"{predict_ms:.1f}", "-"]
        table.add_row(*row)
    Console().print(table)
    return 0


def _network(engine, images, index, fused) -> None:
    """The backend's forward and, from its features, the consistency scores (where measurable)."""
    _, _, features = engine._backend.run(images, index, fused)
    engine._slot_scores(features, len(index))
