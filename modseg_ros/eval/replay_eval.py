"""``modseg replay-eval``: replay bags (live node or offline core), score them, write the report.

Output folder::

    report.json  report.md  confusion.png        over all bags
    <bag>/timeline.png  panels.png  confusion.png  overlay.gif

The runner replays one bag: ``ros.live_replay.run_live`` (the node over DDS on sim time) or
``eval.offline.run_offline`` (the same core straight from the bag; several bags in parallel
worker processes).
"""
from __future__ import annotations

import json
import math
from dataclasses import replace
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from modseg_ros.core.config import NodeConfig
from modseg_ros.core.types import Modality
from modseg_ros.data.bags import Bag
from modseg_ros.errors import ConfigError
from modseg_ros.eval.replay import BagEvaluation, aggregate, evaluate, failure_schedule
from modseg_ros.eval.run import ReplayOptions, RunOutputs

Runner = Callable[[Path, ReplayOptions, Callable[[float], None] | None], RunOutputs]
Progress = Callable[[str, float], None]  # (bag name, fraction done)
REPORT_VERSION = 1


def folder_names(bags: Sequence[Path]) -> list[str]:
    """One output folder per bag, named after it (numbered when two bags share a name)."""
    names: list[str] = []
    for path in bags:
        base = path.stem if path.is_file() else path.name
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def evaluate_bag(bag_path: Path, folder: Path, options: ReplayOptions, runner: Runner, panels: int = 4,
                 progress: Callable[[float], None] | None = None) -> BagEvaluation:  # fmt: skip
    """Replay one bag, score it and draw its pictures into ``folder``."""
    from modseg_ros.eval.offline import encode_inputs
    from modseg_ros.eval.replay_figures import Panel, overlay_gif, panels_png, select_panel_frames, timeline_png
    from modseg_ros.eval.report import confusion_png

    if options.record is not None:  # one recording per bag, named as its report folder
        options.record.mkdir(parents=True, exist_ok=True)
        options = replace(options, record=options.record / folder.name)
    outputs = runner(bag_path, options, progress)
    folder.mkdir(parents=True, exist_ok=True)
    with Bag(bag_path) as bag:
        ev = evaluate(bag, outputs, options)
        ev.name = folder.name
        timeline_png(folder / "timeline.png", ev, outputs, failure_schedule(bag, options.failures))
        ev.figures["timeline"] = f"{folder.name}/timeline.png"
        if ev.has_ground_truth and ev.frames_with_mask:
            confusion_png(ev.overall.confusion, folder / "confusion.png", f"{ev.name}: confusion (rows: ground truth)")
            ev.figures["confusion"] = f"{folder.name}/confusion.png"
            chosen = select_panel_frames(ev.frames, panels)
            wanted = {(m, s) for f in chosen for m, s in outputs.masks[f.mask].modality_stamps.items()}
            encoded = encode_inputs(bag, options, NodeConfig.load(options.params), wanted)
            stamps = {f.stamp_ns for f in chosen}
            labels = {f.stamp_ns: frame for f, frame in zip(ev.frames, _labels(bag, options)) if f.stamp_ns in stamps}
            rows = []
            for f in chosen:
                mask = outputs.masks[f.mask]
                inputs = {m: encoded[(m, s)] for m, s in mask.modality_stamps.items() if (m, s) in encoded}
                caption = f"t = {f.t_s:.2f} s   {f.phase}   fused {mask.subset}   frame mIoU {f.miou:.1f}"
                rows.append(Panel(caption, inputs, labels[f.stamp_ns], mask.labels, mask.overlay))
            panels_png(folder / "panels.png", rows)
            ev.figures["panels"] = f"{folder.name}/panels.png"
        if overlay_gif(folder / "overlay.gif", ev, outputs):
            ev.figures["overlay"] = f"{folder.name}/overlay.gif"
    return ev


def _labels(bag: Bag, options: ReplayOptions):
    from modseg_ros.eval.replay import label_frames

    return [frame.labels for frame in label_frames(bag, options)]


def _offline_worker(args: tuple) -> BagEvaluation:
    bag_path, folder, options, panels = args
    from functools import partial

    from modseg_ros.eval.offline import run_offline

    return evaluate_bag(bag_path, folder, options, partial(run_offline, threads=1), panels)


def replay_eval(bags: Sequence[Path], out: Path, options: ReplayOptions, runner: Runner, workers: int = 1,
                panels: int = 4, progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
    """Replay and score every bag, write the report folder; returns the report (report.json)."""
    from modseg_ros.eval.report import confusion_png

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    NodeConfig.load(options.params)  # a bad parameter file fails before any replay starts
    out.mkdir(parents=True, exist_ok=True)
    folders = [out / name for name in folder_names(bags)]
    if workers > 1 and len(bags) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            evaluations = list(pool.map(_offline_worker, [(b, f, options, panels) for b, f in zip(bags, folders)]))
            if progress is not None:
                progress("all", 1.0)
    else:
        evaluations = []
        for bag, folder in zip(bags, folders):
            report_progress = None if progress is None else (lambda x, name=folder.name: progress(name, x))
            evaluations.append(evaluate_bag(bag, folder, options, runner, panels, report_progress))
    summary, confusion = aggregate(evaluations)
    if summary["frames_with_mask"] and any(ev.has_ground_truth for ev in evaluations):
        confusion_png(confusion, out / "confusion.png", "all bags: confusion (rows: ground truth)")
    report = {
        "report_version": REPORT_VERSION,
        "mode": evaluations[0].mode if evaluations else "",
        "model": evaluations[0].model if evaluations else "",
        "params": str(options.params),
        "options": {"rate": options.rate, "clock_hz": options.clock_hz, "start_s": options.start_s,
                    "duration_s": options.duration_s, "injected_failures": [str(f) for f in options.failures],
                    "seed": options.seed},  # fmt: skip
        "overall": summary,
        "bags": [ev.summary() for ev in evaluations],
    }
    (out / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Modality):
        return value.value
    return value


# --- report.md ------------------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _group_table(title: str, groups: dict[str, dict]) -> list[str]:
    if not groups:
        return []
    lines = [f"| {title} | mIoU | pixel acc. | frames |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_cell(g['miou'])} | {_cell(g['pixel_accuracy'])} | {g['frames']} |" for name, g in groups.items()]
    return lines + [""]


def _latency(latency: dict[str, dict]) -> str:
    parts = []
    for key, values in latency.items():
        if values:
            parts.append(f"{key.replace('_', '-')} p50 {values['p50']:.0f} / p95 {values['p95']:.0f} / p99 {values['p99']:.0f} ms")
    return "; ".join(parts) or "–"


def markdown(report: dict[str, Any]) -> str:
    overall = report["overall"]
    options = report["options"]
    injected = ", ".join(options["injected_failures"]) or "none"
    out = ["# Replay evaluation", "",
           f"Mode **{report['mode']}**, model `{report['model']}`, {overall['bags']} bag(s), parameters `{report['params']}`, "
           f"rate {options['rate']:g}, /clock {options['clock_hz']:g} Hz; injected failures: {injected}.", "",
           "| | |", "|---|---|",
           f"| mIoU (DELIVER: 25 classes, NaN IoU = 0) | **{_cell(overall['miou'])}** |",
           f"| pixel accuracy | {_cell(overall['pixel_accuracy'])} |",
           f"| frames offered / with a mask / dropped | {overall.get('frames_offered', 0)} / "
           f"{overall.get('frames_with_mask', 0)} / {overall.get('frames_dropped', 0)} |",
           f"| masks published | {overall.get('masks_published', 0)} |",
           f"| failures detected by the health monitor | {overall['failures']['detected']} of {overall['failures']['scheduled']} |",
           f"| false alarms | {overall['failures']['false_alarms']} |", ""]  # fmt: skip
    out += ["## Per condition", "", *_group_table("condition", overall["per_condition"])]
    out += ["## Per set of fused modalities (from segmentation/info)", "", *_group_table("fused", overall["per_modalities"])]
    out += ["## Per failure phase", "", *_group_table("active failures", overall["per_phase"])]
    out += ["## Failures and the health monitor", "",
            "| bag | failure | source | detected after (s) | level | reason | recovered after (s) |", "|---|---|---|---:|---|---|---:|"]  # fmt: skip
    for bag in report["bags"]:
        for f in bag["failures"]:
            detected = _cell(f["detection_delay_s"], 3) if f["detected"] else "not detected"
            recovered = ("(lasts to the end)" if f["end_s"] is None else "(another failure follows)" if f["followed"]
                         else _cell(f["recovery_delay_s"], 3) if f["recovery_delay_s"] is not None else "not recovered")  # fmt: skip
            out.append(f"| {bag['name']} | `{f['spec']}` | {f['source']} | {detected} | {f['level']} | {f['reason'] or '–'} | {recovered} |")
    alarms = [(bag["name"], a) for bag in report["bags"] for a in bag["false_alarms"]]
    out += ["", f"False alarms (OK -> WARN/ERROR outside every scheduled failure of that sensor): {len(alarms)}.", ""]
    out += [f"- {name}: {a['modality']} {a['level']} at {a['t_s']:.2f} s ({a['reason']})" for name, a in alarms]
    out += ["", "## Bags", "", "| bag | condition | mIoU | frames offered / with mask | masks | latency | wall (s) |",
            "|---|---|---:|---:|---:|---|---:|"]  # fmt: skip
    for bag in report["bags"]:
        out.append(f"| {bag['name']} | {bag['condition']} | {_cell(bag['miou'])} | {bag['frames_offered']} / {bag['frames_with_mask']} "
                   f"| {bag['masks_published']} | {_latency(bag['latency_ms'])} | {bag['wall_s']:.1f} |")  # fmt: skip
    for bag in report["bags"]:
        figures = bag["figures"]
        if figures:
            out += ["", f"### {bag['name']}", ""]
            out += [f"![{key}]({path})" for key, path in figures.items() if key != "overlay"]
            if "overlay" in figures:
                out.append(f"Overlay stream: [{figures['overlay']}]({figures['overlay']})")
        for note in bag["notes"]:
            out.append(f"- note: {note}")
    out += ["", "## Per class IoU (all bags)", "", "| class | IoU |", "|---|---:|"]
    out += [f"| {name} | {value:.2f} |" for name, value in overall["per_class_iou"].items()]
    return "\n".join(out) + "\n"
