"""Evaluation outputs: ``eval.json``, ``eval.md`` (the papers' tables), ``confusion.png``, ``panels.png``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from modseg_ros.core.metrics import ConfusionMatrix
from modseg_ros.core.palette import CLASSES, colorize
from modseg_ros.core.types import MODALITIES, Modality, all_subsets, subset_name

PANEL_SUBSETS: tuple[tuple[Modality, ...], ...] = (tuple(MODALITIES), (Modality.CAMERA,), (Modality.LIDAR,), (Modality.EVENTS,))


def subset_table(rows: dict[str, dict], title: str = "model") -> str:
    """Markdown: one row per model with its 15 subset mIoUs, the mean and E(p)."""
    names = [subset_name(s) for s in all_subsets()]
    head = f"| {title} | " + " | ".join(names) + " | Avg | E(.2) | E(.1) | E(.05) |"
    lines = [head, "|" + "---|" * (len(names) + 5)]
    for label, emm in rows.items():
        e = emm["expected"]
        cells = [f"{emm['subsets'][n]:.2f}" for n in names] + [f"**{emm['avg']:.2f}**", f"{e['0.2']:.2f}", f"{e['0.1']:.2f}", f"{e['0.05']:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(summary: dict, name: str) -> str:
    out = [f"# Evaluation of {name}", "", f"{summary['frames']} frames; protocol: {summary.get('protocol', 'drop')}.", ""]
    out += ["## Every modality subset (mIoU, %)", "", subset_table({name: summary["emm"]}), ""]
    full = summary["full_set"]
    out += [f"Full set: mIoU {full['miou']:.2f}, pixel accuracy {full['pixel_accuracy']:.2f}.", ""]
    for key, title in (("by_condition", "condition"), ("by_case", "failure case")):
        groups = summary[key]
        if groups:
            out += [f"## Per {title}", "", f"| {title} | full set | 15-subset mean |", "|---|---|---|"]
            out += [f"| {g} | {v['full_set']:.2f} | {v['subset_mean']:.2f} |" for g, v in groups.items()]
            out.append("")
    if "rmm" in summary:
        out += [f"## Random-missing modalities (RMM, {summary['rmm']['frames']} frames)", "", subset_table({name: summary["rmm"]}), ""]
    if "noise" in summary:
        n = summary["noise"]
        out += [f"## Noisy modalities (NM, full set, {n['frames']} frames)", "", "| low | mid | high |", "|---|---|---|",
                f"| {n['low']:.2f} | {n['mid']:.2f} | {n['high']:.2f} |", ""]  # fmt: skip
    out += ["## Per class IoU (full set)", "", "| class | IoU |", "|---|---|"]
    out += [f"| {c} | {v:.2f} |" for c, v in summary["per_class_iou"].items()]
    return "\n".join(out) + "\n"


def write_reports(out: Path, summary: dict, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "eval.md").write_text(markdown(summary, name))


def confusion_png(matrix: ConfusionMatrix, path: Path, title: str) -> None:
    _confusion_figure(matrix.matrix, CLASSES, CLASSES, path, title)


def dataset_confusion_png(matrix: np.ndarray, classes: tuple[str, ...], path: Path, title: str) -> None:
    """A dataset's classes (rows) against the predictions mapped onto them, plus "no counterpart"."""
    _confusion_figure(matrix, classes, (*classes, "no counterpart"), path, title)


def _confusion_figure(matrix: np.ndarray, rows: tuple[str, ...], columns: tuple[str, ...], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = matrix.astype(np.float64)
    totals = m.sum(axis=1, keepdims=True)
    norm = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    size = 3 + 0.3 * len(columns)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth (rows normalised)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _viewable(modality: Modality, image: np.ndarray) -> np.ndarray:
    if modality is Modality.LIDAR:  # sparse points: thicken them so they show at panel size
        from scipy.ndimage import grey_dilation

        return grey_dilation(image, size=(2, 2, 1))
    return image


def panels_png(examples: list[tuple], path: Path) -> None:
    """examples: (encodings dict, label, {subset: prediction}) -> one block per frame:
    row 1 the four inputs, row 2 ground truth and predictions from the full set, C, L and E alone."""
    from PIL import Image, ImageDraw

    blocks = []
    for encodings, label, predictions in examples:
        h, w = label.shape
        blank = np.zeros((h, w, 3), np.uint8)
        top = [_viewable(m, encodings[m]) if m in encodings else blank for m in MODALITIES] + [blank]
        bottom = [colorize(label)] + [colorize(predictions[s]) if s in predictions else blank for s in PANEL_SUBSETS]
        captions = [m.value for m in MODALITIES] + [""] + ["ground truth"] + [f"pred {subset_name(s)}" for s in PANEL_SUBSETS]
        tiles = top + bottom
        image = Image.fromarray(np.concatenate([np.concatenate(tiles[:5], 1), np.concatenate(tiles[5:], 1)], 0))
        draw = ImageDraw.Draw(image)
        for i, text in enumerate(captions):
            if text:
                x, y = (i % 5) * w + 4, (i // 5) * h + 3
                draw.rectangle([x - 2, y - 1, x + 7 * len(text), y + 11], fill=(0, 0, 0))
                draw.text((x, y), text, fill=(255, 255, 255))
        blocks.append(np.asarray(image))
    Image.fromarray(np.concatenate(blocks, 0)).save(path)


def comparison_markdown(summaries: dict[str, dict]) -> str:
    """Side-by-side Markdown of several ``eval.json`` summaries (label -> summary)."""
    out = ["### Every modality subset (mIoU, %)", "", subset_table({k: s["emm"] for k, s in summaries.items()}), ""]
    out += ["### Full set, targets and robustness", "",
            "| model | protocol | frames | full set | 15-subset mean | mean / full | E only / full | L only / full | RMM(r=.5) avg | NM low / mid / high |",
            "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, s in summaries.items():
        full, emm = s["full_set"]["miou"], s["emm"]
        ratio = (lambda v: f"{v / full:.2f}" if full else "-")
        rmm = f"{s['rmm']['avg']:.2f}" if "rmm" in s else "-"
        nm = " / ".join(f"{s['noise'][k]:.2f}" for k in ("low", "mid", "high")) if "noise" in s else "-"
        out.append(f"| {label} | {s.get('protocol', 'drop')} | {s['frames']} | {full:.2f} | {emm['avg']:.2f} | {ratio(emm['avg'])} | "
                   f"{ratio(emm['subsets']['E'])} | {ratio(emm['subsets']['L'])} | {rmm} | {nm} |")  # fmt: skip
    for key, title in (("by_condition", "condition"), ("by_case", "failure case")):
        groups = sorted({g for s in summaries.values() for g in s[key]})
        out += ["", f"### Per {title}: full set / 15-subset mean", "", "| model | " + " | ".join(groups) + " |",
                "|---|" + "---|" * len(groups)]  # fmt: skip
        for label, s in summaries.items():
            cells = [f"{s[key][g]['full_set']:.2f} / {s[key][g]['subset_mean']:.2f}" if g in s[key] else "-" for g in groups]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def labelled_markdown(summary: dict, name: str, classes: tuple[str, ...]) -> str:
    out = [f"# {name} on {summary['dataset']} {summary['split']}", "",
           f"{summary['frames']} frames, camera only, network input {', '.join(summary['network_input'])}, "
           f"labels at the images' resolution; void skipped.", "",
           f"**mIoU {summary['miou']:.2f}** over {len(classes)} classes; pixel accuracy {summary['pixel_accuracy']:.2f}; "
           f"{summary['no_counterpart_share']:.2f} % of pixels predicted as a class the dataset does not have.", "",
           "| class | IoU |", "|---|---|"]  # fmt: skip
    out += [f"| {c} | {v:.2f} |" for c, v in summary["per_class_iou"].items()]
    return "\n".join(out) + "\n"


def write_labelled_reports(out: Path, summary: dict, name: str, classes: tuple[str, ...]) -> None:
    (out / "eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "eval.md").write_text(labelled_markdown(summary, name, classes))


def dataset_panels_png(examples: list[tuple], colours: np.ndarray, path: Path) -> None:
    """examples: (name, rgb, label, prediction) in dataset class indices -> one row per frame:
    image, ground truth, prediction (void and "no counterpart" black)."""
    from PIL import Image, ImageDraw

    lut = np.zeros((256, 3), np.uint8)
    lut[: len(colours)] = colours
    rows = []
    for name, rgb, label, prediction in examples:
        h, w = label.shape
        row = Image.fromarray(np.concatenate([rgb, lut[label], lut[prediction]], 1))
        draw = ImageDraw.Draw(row)
        for i, text in enumerate((name, "ground truth", "prediction (camera only)")):
            draw.rectangle([i * w + 2, 2, i * w + 6 + 6 * len(text), 14], fill=(0, 0, 0))
            draw.text((i * w + 4, 3), text, fill=(255, 255, 255))
        rows.append(np.asarray(row))
    Image.fromarray(np.concatenate(rows, 0)).save(path)
