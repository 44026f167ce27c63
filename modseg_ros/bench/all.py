"""``modseg bench all``: every benchmark target once, with run lengths cut to finish in about ten
minutes on a 2-core machine, each printing its figures (ratios are measured within the run).

The soak runs with ``--soak-bundles`` (default 2 000); ``modseg bench soak`` alone runs the full
20 000. The exit code is 1 if a target fails or the soak's checks do.
"""
from __future__ import annotations

import argparse
import importlib
import time

# target -> its arguments in the short run (the rest keep their defaults)
SHORT_RUN: dict[str, list[str]] = {
    "sync": ["--seconds", "120", "--repeat", "1"],
    "convert": ["--repeat", "10"],
    "world": ["--frames", "10", "--conditions", "sun"],
    "model": ["--repeat", "3", "--export"],
    "scale": ["--repeat", "3"],
    "node": ["--seconds", "10", "--warmup", "2"],
    "soak": [],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--soak-bundles", type=int, default=2000, help="bundles in the soak (default 2000; 20000 is the full soak)")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(SHORT_RUN), metavar="TARGET", help="targets to leave out")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from modseg_ros.bench import TARGETS

    console = Console(width=180)
    timings, failed = [], []
    for target, short in SHORT_RUN.items():
        if target in args.skip:
            continue
        module = importlib.import_module(TARGETS[target][0])
        parser = argparse.ArgumentParser(prog=f"modseg bench {target}")
        module.add_arguments(parser)
        argv = [*short, "--bundles", str(args.soak_bundles)] if target == "soak" else short
        console.rule(f"modseg bench {target} {' '.join(argv)}")
        start = time.monotonic()
        try:
            code = int(module.run(parser.parse_args(argv)) or 0)
        except Exception as err:  # one target's failure must not hide the others' figures
            console.print(f"[red]bench {target} failed: {type(err).__name__}: {err}[/red]")
            code = 1
        timings.append((target, time.monotonic() - start, code))
        if code:
            failed.append(target)
    console.rule("bench all")
    console.print(", ".join(f"{t} {s:.0f} s" + (" (FAILED)" if c else "") for t, s, c in timings)
                  + f"; total {sum(s for _, s, _ in timings) / 60:.1f} min")  # fmt: skip
    return 1 if failed else 0
