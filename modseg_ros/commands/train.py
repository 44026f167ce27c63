"""``modseg train``: train a segmentation network on a DELIVER-layout folder and/or real labelled camera
datasets (alone or under torchrun)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from modseg_ros.core.network_input import LIDAR_INTENSITY
from modseg_ros.model.architectures import ARCHITECTURES
from modseg_ros.model.training import CLASS_WEIGHTING, TrainConfig, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="-", out="")
    parser.add_argument("data", nargs="?", default="",
                        help="DELIVER-layout root (real DELIVER or 'modseg world --format deliver' output); optional with --real")
    parser.add_argument("--real", action="append", default=[], metavar="MAPPING=ROOT",
                        help="a real labelled camera dataset, e.g. camvid=path/to/CamVid (data/labelled.py); repeatable")
    parser.add_argument("--real-ratio", type=float, default=d.real_ratio, help="share of draws from the --real datasets")
    parser.add_argument("--real-val-frames", type=int, default=d.real_val_frames,
                        help="val frames of each --real dataset scored for the curve (0 = none)")
    parser.add_argument("--init", default="", help="checkpoint whose weights a new run starts from (fine-tuning)")
    parser.add_argument("--lidar-intensity", choices=LIDAR_INTENSITY, default=d.lidar_intensity,
                        help="how the network reads LiDAR intensity: raw, or scan_rank (rank within the scan: any sensor's scale)")
    parser.add_argument("--narrow-lidar-p", type=float, default=d.narrow_lidar_p,
                        help="chance of cutting a LiDAR image to a narrower field of view (augmentation)")
    parser.add_argument("--class-weighting", choices=CLASS_WEIGHTING, default=d.class_weighting,
                        help="weigh the loss by class: none, or enet (1 / ln(1.02 + share of pixels): thin classes count more)")
    parser.add_argument("--out", required=True, help="output folder: checkpoint, training state, log, curve")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), default=d.arch)
    parser.add_argument("--backbone", choices=("b0", "b1", "b2"), default=d.backbone)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=list(d.input_size))
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    parser.add_argument("--no-modality-dropout", dest="modality_dropout", action="store_false",
                        help="train on every available modality (the CMNeXt-style baseline's regime)")
    parser.add_argument("--lscd-weight", type=float, default=d.lscd_weight, help="Any2Seg LSCD weight (0 = off)")
    parser.add_argument("--sgm-weight", type=float, default=d.sgm_weight, help="EQUISeg SGM weight (0 = off)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--workers", type=int, default=d.workers, help="data-loading processes")
    parser.add_argument("--threads", type=int, default=d.threads, help="torch threads (0 = default)")
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--val-data", default="", help="DELIVER-layout root whose val split feeds the curve")
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--val-frames", type=int, default=d.val_frames)
    parser.add_argument("--name", default="", help="checkpoint name (default <arch>_<backbone>)")
    parser.add_argument("--device", default=d.device,
                        help="cpu, cuda or cuda:N (default: cuda where torch sees a GPU, else cpu); under torchrun each "
                             "process takes cuda:<LOCAL_RANK>")
    parser.add_argument("--restart", dest="resume", action="store_false", help="ignore a saved state in --out")


def run(args: argparse.Namespace) -> int:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values["input_size"] = tuple(values["input_size"])
    values["real"] = tuple(values["real"])
    cfg = TrainConfig(**values)

    def report(step: int, total: int, metrics: dict) -> None:
        parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("step", "valid_pixels"))
        print(f"step {step}/{total} {parts}", file=sys.stderr, flush=True)

    result = train(cfg, progress=report)
    print(f"{result.checkpoint} ({result.steps} steps, {result.seconds / 60:.1f} min)")
    return 0
