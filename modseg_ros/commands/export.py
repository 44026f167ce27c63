"""``modseg export --onnx``: write the ONNX graphs of a checkpoint beside it and check them against torch."""
from __future__ import annotations

import argparse
from pathlib import Path

from modseg_ros.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="model .safetensors (with its .json sidecar)")
    parser.add_argument("--onnx", action="store_true", help="export to ONNX (the only format so far)")
    parser.add_argument("--out", type=Path, help="mask graph path (default: beside the checkpoint); the scoring graph goes beside it as *.scores.onnx")


def run(args: argparse.Namespace) -> int:
    if not args.onnx:
        raise ConfigError("choose an export format: --onnx")
    from modseg_ros.model.export import export_onnx

    report = export_onnx(args.checkpoint, args.out)
    scope = "any subset of modalities" if report.dynamic_subsets else "all four modalities only"
    print(f"wrote {report.path} ({report.path.stat().st_size / 1e6:.1f} MB, {scope})")
    if report.scores is not None:
        print(f"wrote {report.scores} ({report.scores.stat().st_size / 1e6:.1f} MB, the consistency scores)")
    for name, diff in report.max_abs_diff.items():
        print(f"  {name:<5} max |ORT - torch| = {diff:.2e}   same label {100 * report.label_agreement[name]:.3f} %")
    print(f"max abs diff over {len(report.max_abs_diff)} subset(s): {report.worst:.2e}")
    return 0
