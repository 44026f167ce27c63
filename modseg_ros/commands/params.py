"""``modseg params``: the node's parameters, as the modules that read them declare them, with the
defaults of a parameter file (a Markdown table for the docs with ``--markdown``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from modseg_ros.paths import config_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=config_file("any2seg.yaml"),
                        help="parameter file whose values are shown as the defaults (default: config/any2seg.yaml)")  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (the docs' parameter table)")


def run(args: argparse.Namespace) -> int:
    from modseg_ros.core.config import NodeConfig, declared_parameters
    from modseg_ros.core.params import format_value, parameter_table

    values = NodeConfig.load(args.params).parameters  # validated: a bad file is an error, not a table
    if args.markdown:
        print(parameter_table(declared_parameters(), values))
        return 0
    width = max(len(p.key) for p in declared_parameters())
    for p in declared_parameters():
        runtime = "" if p.read_only else " [changes at run time]"
        print(f"{p.key:<{width}}  {format_value(values.get(p.key)):<24} {p.range:<28} {p.description}{runtime}")
    return 0
