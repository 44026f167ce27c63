"""``modseg compare``: the eval.json files of several models side by side as Markdown tables."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from modseg_ros.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="LABEL=EVAL_JSON", help="e.g. any2seg=eval/any2seg/eval.json")


def run(args: argparse.Namespace) -> int:
    from modseg_ros.eval.report import comparison_markdown

    summaries = {}
    for item in args.results:
        label, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"'{item}': expected LABEL=EVAL_JSON")
        try:
            summaries[label] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read {path}: {err}") from err
    print(comparison_markdown(summaries), end="")
    return 0
