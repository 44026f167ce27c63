"""``modseg eval``: every-subset evaluation of a checkpoint on a DELIVER-layout split, camera-only
evaluation on a real labelled dataset with ``--dataset``, or camera only against camera + LiDAR at
the labelled points of real camera + LiDAR frames with a point dataset's ``--dataset`` (JSON,
Markdown, PNGs)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model .safetensors (with its .json sidecar)")
    parser.add_argument("data", type=Path, help="DELIVER-layout root, or a labelled dataset's root with --dataset")
    parser.add_argument("--dataset", default="",
                        help="a labelled camera dataset: 'camvid' or a mapping YAML (data/labelled.py); camera-only "
                             "mIoU over its own classes at its native resolution. A camera + LiDAR dataset with point "
                             "labels: 'semantickitti', 'rellis3d' or a mapping YAML with 'scans' (data/pointframes.py); "
                             "camera only against camera + LiDAR at the labelled points")
    parser.add_argument("--split", default=None, help="split to evaluate (default val, as DELIVER; test with --dataset)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="--dataset: network input size (default: the image's aspect ratio at the checkpoint's pixel count)")
    parser.add_argument("--squash", action="store_true", help="--dataset: run at the checkpoint's input size whatever the aspect")
    parser.add_argument("--out", type=Path, required=True, help="folder for eval.json, eval.md, confusion.png, panels.png")
    parser.add_argument("--absent", choices=("drop", "zero"), default="drop",
                        help="absent modalities: dropped by the network (default) or zero-filled (benchmark protocol)")
    parser.add_argument("--frames", type=int, default=0, help="evaluate N frames evenly spread over the split (default all)")
    parser.add_argument("--robust-frames", type=int, default=64, help="frames for the RMM and NM passes (0 = skip)")
    parser.add_argument("--panels", type=int, default=3, help="example frames in panels.png")
    parser.add_argument("--panels-without-image", action="store_true",
                        help="point datasets: leave the camera image out of panels.png (images whose licence forbids showing them)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")


def run(args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} frames", end="", file=sys.stderr, flush=True)

    if args.dataset:
        from modseg_ros.data.pointframes import is_point_mapping

        if is_point_mapping(args.dataset):
            return _point_frames(args, progress)
        from modseg_ros.eval.labelled import evaluate_labelled

        summary = evaluate_labelled(
            args.checkpoint, args.data, args.dataset, args.out, split=args.split or "test",
            input_size=tuple(args.input_size) if args.input_size else None, squash=args.squash, frames=args.frames,
            panels=args.panels, threads=args.threads, progress=progress,
        )  # fmt: skip
        print(file=sys.stderr)
        print(f"{summary['dataset']} {summary['split']}: mIoU {summary['miou']:.2f} (camera only, {summary['frames']} frames) -> {args.out}/eval.md")
        return 0
    from modseg_ros.eval.evaluate import evaluate_checkpoint

    summary = evaluate_checkpoint(
        args.checkpoint, args.data, args.out, split=args.split or "val", absent=args.absent, frames=args.frames,
        robust_frames=args.robust_frames, panels=args.panels, batch_size=args.batch_size, threads=args.threads,
        progress=progress,
    )  # fmt: skip
    print(file=sys.stderr)
    emm = summary["emm"]
    print(f"full set mIoU {summary['full_set']['miou']:.2f}  15-subset mean {emm['avg']:.2f}  "
          f"E(0.2) {emm['expected']['0.2']:.2f}  -> {args.out}/eval.md")  # fmt: skip
    return 0


def _point_frames(args: argparse.Namespace, progress) -> int:
    from modseg_ros.eval.pointframes import INPUT_SETS, evaluate_point_frames

    summary = evaluate_point_frames(
        args.checkpoint, args.data, args.dataset, args.out, input_size=tuple(args.input_size) if args.input_size else None,
        squash=args.squash, frames=args.frames, panels=args.panels, panel_image=not args.panels_without_image,
        threads=args.threads, progress=progress,
    )  # fmt: skip
    print(file=sys.stderr)
    scores = ", ".join(f"{name} {summary[name]['miou']}" for name in INPUT_SETS)
    print(f"{summary['dataset']}: point mIoU {scores} ({summary['frames']} frames) -> {args.out}/eval.md")
    return 0
