"""Terminal output of ``modseg replay-eval`` and ``modseg demo``: a progress bar and a short summary."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def progress_bar(title: str) -> Iterator[Callable[[str, float], None]]:
    """A rich progress bar per bag; yields ``progress(bag name, fraction played)``."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(f"[bold]{title}[/] {{task.description}}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, transient=False) as progress:
        tasks: dict[str, int] = {}

        def update(name: str, fraction: float) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=1.0)
            progress.update(tasks[name], completed=fraction)

        yield update


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_summary(report: dict[str, Any], out: Path, console=None) -> None:
    """Overall figures, mIoU per failure phase and what the health monitor caught."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    overall = report["overall"]
    head = Table(title=f"replay evaluation ({report['mode']}, model {report['model']})", show_header=False)
    head.add_column(style="bold")
    head.add_column()
    head.add_row("mIoU", _fmt(overall["miou"], 2))
    head.add_row("frames offered / with mask / dropped",
                 f"{overall['frames_offered']} / {overall['frames_with_mask']} / {overall['frames_dropped']}")  # fmt: skip
    for bag in report["bags"][:1] if len(report["bags"]) == 1 else []:
        for key, values in bag["latency_ms"].items():
            if values:
                head.add_row(f"{key.replace('_', '-')} latency p50 / p95 / p99 (ms)",
                             f"{values['p50']:.0f} / {values['p95']:.0f} / {values['p99']:.0f}")  # fmt: skip
    failures = overall["failures"]
    head.add_row("failures detected", f"{failures['detected']} of {failures['scheduled']}, {failures['false_alarms']} false alarms")
    console.print(head)

    if overall["per_phase"]:
        phases = Table(title="mIoU per failure phase")
        for column in ("active failures", "fused (most frames)", "mIoU", "frames"):
            phases.add_column(column, justify="right" if column in ("mIoU", "frames") else "left")
        fused = _fused_by_phase(report)
        for name, group in overall["per_phase"].items():
            phases.add_row(name, fused.get(name, ""), _fmt(group["miou"], 2), str(group["frames"]))
        console.print(phases)

    rows = [(bag["name"], f) for bag in report["bags"] for f in bag["failures"]]
    if rows:
        health = Table(title="health monitor")
        for column in ("failure", "detected after", "level", "recovered after"):
            health.add_column(column)
        for _, f in rows:
            detected = f"{f['detection_delay_s']:.2f} s" if f["detected"] else "not detected"
            recovered = ("–" if f["end_s"] is None else "next failure" if f["followed"]
                         else f"{f['recovery_delay_s']:.2f} s" if f["recovery_delay_s"] is not None else "no")  # fmt: skip
            health.add_row(f["spec"], detected, f["level"], recovered)
        console.print(health)
    console.print(f"report: {out / 'report.md'} (and report.json, pictures per bag)")


def _fused_by_phase(report: dict[str, Any]) -> dict[str, str]:
    """The modality set fused most often in each phase, from the per-bag frame tables."""
    counts: dict[str, dict[str, int]] = {}
    for bag in report["bags"]:
        for phase, subsets in bag.get("fused_by_phase", {}).items():
            for subset, n in subsets.items():
                counts.setdefault(phase, {}).setdefault(subset, 0)
                counts[phase][subset] += n
    return {phase: max(c, key=c.get) for phase, c in counts.items() if c}
