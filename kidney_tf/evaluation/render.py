"""The one-page evaluation report (``report.html`` / ``report.md``) built from ``metrics.json``.

CAM statistics are always shown next to the outside-body fraction and, where lesion masks exist,
next to localisation scores and their chance baselines: entropy, radius and SNR alone cannot tell
a sharp right map from a sharp map on the scanner table.

Usage::

    from kidney_tf.evaluation.render import render_report
    render_report("reports/fostered")   # re-renders report.html/.md from metrics.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kidney_tf.evaluation.html import Document, fmt_value
from kidney_tf.evaluation.schema import CAM_STATISTICS, LOCALISATION_STATISTICS

SECTIONS = (
    "Summary",
    "Shortcut checks",
    "Per-class metrics",
    "CAM statistics",
    "Faithfulness",
    "Calibration",
    "Figures",
    "Classification report",
    "Definitions",
)

_STAT_HEADERS = {
    "entropy": "entropy ↓",
    "radius": "radius ↓",
    "snr": "SNR ↑",
    "snr_db": "SNR dB ↑",
    "outside_fraction": "outside body ↓",
    "pointing_game": "pointing game ↑",
    "energy_in_mask": "energy in mask ↑",
    "iou": "IoU ↑",
}

DEFINITIONS = (
    "entropy: Shannon entropy of the CAM mass divided by ln(H·W); 1 = uniform, 0 = one pixel.",
    "radius: radius of gyration of the CAM mass around its centroid, image side = 1 "
    "(uniform ≈ 0.408).",
    "SNR: mean CAM inside the peak region (≥ 0.5·max) over the mean outside; dB = 10·log10.",
    "outside body: fraction of CAM mass outside the body/brain foreground mask.",
    "pointing game: 1 when the CAM maximum lies in the (tolerance-dilated) lesion mask.",
    "energy in mask: fraction of CAM mass inside the lesion mask. IoU: peak region vs lesion.",
    "chance: the same score for an uninformative map (uniform map / uniformly random point).",
    "deletion/insertion AUC: class score while the most salient pixels are removed/revealed; "
    "lower deletion and higher insertion than the random ordering mean faithful maps.",
    "ECE: expected calibration error with 15 equal-width confidence bins (Guo et al. 2017).",
)


def _cam_table(cam: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Rows: all images, then each true class; localisation columns paired with chance."""
    per_class = cam.get("per_class") or {}
    stats = [s for s in CAM_STATISTICS if isinstance(cam.get(s), dict)]
    loc = [s for s in LOCALISATION_STATISTICS if isinstance(cam.get(s), dict)]
    headers = ["images", "n"] + [_STAT_HEADERS[s] for s in stats]
    for s in loc:
        headers += [_STAT_HEADERS[s], "chance"]
    rows: list[list[Any]] = []
    all_row: list[Any] = ["all", cam.get("n_images")] + [cam[s]["mean"] for s in stats]
    for s in loc:
        all_row += [cam[s]["mean"], cam[s].get("chance")]
    rows.append(all_row)
    for name, entry in per_class.items():
        chance = entry.get("chance") or {}
        row: list[Any] = [name, entry.get("n")] + [entry.get(s) for s in stats]
        for s in loc:
            row += [entry.get(s), chance.get(s)]
        rows.append(row)
    return headers, rows


def report_document(metrics: dict[str, Any], classification_report: str = "") -> Document:
    """Build the report ``Document`` from a metrics dict (as written to metrics.json)."""
    model = metrics.get("model") or {}
    cam = metrics.get("cam") or {}
    cal = metrics.get("calibration") or {}
    title = f"Evaluation report: {model.get('name') or 'model'} on the {metrics.get('split')} split"
    doc = Document(title)
    doc.note(
        f"data: {(metrics.get('data') or {}).get('source', '')} · "
        f"{metrics.get('n_images')} images · classes: {', '.join(metrics.get('class_names', []))}"
        f" · kidney_tf {metrics.get('kidney_tf_version', '')}"
    )

    doc.heading("Summary")
    summary = [
        ["accuracy", metrics.get("accuracy")],
        ["macro-F1", metrics.get("macro_f1")],
        ["weighted-F1", metrics.get("weighted_f1")],
        ["balanced accuracy", metrics.get("balanced_accuracy")],
        ["ECE (15 bins)", cal.get("ece")],
        ["temperature", cal.get("temperature")],
    ]
    if cam.get("method"):
        summary += [
            [f"CAM ({cam['method']}, layer {cam.get('layer')}, grid {cam.get('native_grid')})", ""],
        ]
        for s in (*CAM_STATISTICS, *LOCALISATION_STATISTICS, "deletion_auc", "insertion_auc"):
            entry = cam.get(s)
            if isinstance(entry, dict):
                label = _STAT_HEADERS.get(s, s.replace("_", " "))
                extra = ""
                if entry.get("chance") is not None:
                    extra = f" (chance {fmt_value(entry['chance'])})"
                elif entry.get("random") is not None:
                    extra = f" (random order {fmt_value(entry['random'])})"
                summary.append([f"  {label}{extra}", entry.get("mean")])
    doc.table(["metric", "value"], summary)

    doc.heading("Shortcut checks")
    if cam.get("method"):
        doc.warnings(
            cam.get("shortcut_warnings") or [],
            none_text="No shortcut pattern found: no class has most maps peaking in one grid "
            f"cell or outside the foreground (maps counted by {cam.get('target', 'predicted')} "
            "class).",
        )
        if cam.get("n_foreground_missing"):
            doc.note(
                f"{cam['n_foreground_missing']} image(s) had no detectable {cam.get('foreground')} "
                "foreground; their outside fraction is left out."
            )
    else:
        doc.note("CAMs were not computed (max_cam_images=0).")

    doc.heading("Per-class metrics")
    per_class = metrics.get("per_class") or {}
    doc.table(
        ["class", "precision", "recall", "F1", "support"],
        [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in per_class.items()],
    )

    doc.heading("CAM statistics")
    if cam.get("method") and cam.get("n_images"):
        doc.text(
            f"{cam['method']} maps of the {cam.get('target')} class at layer {cam.get('layer')} "
            f"(native grid {cam.get('native_grid')}, upsampled to {cam.get('input_size')}), "
            f"{cam.get('n_images')} images, foreground: {cam.get('foreground') or 'none'}. "
            "Means per true class; every statistic stands next to the outside-body fraction and, "
            "with lesion masks, localisation and its chance level."
        )
        headers, rows = _cam_table(cam)
        doc.table(headers, rows)
        if not any(isinstance(cam.get(s), dict) for s in LOCALISATION_STATISTICS):
            doc.note("No lesion masks in this data: localisation scores not available.")
    else:
        doc.note("No CAM statistics.")

    doc.heading("Faithfulness")
    faith = [s for s in ("deletion_auc", "insertion_auc") if isinstance(cam.get(s), dict)]
    if faith:
        doc.table(
            ["score", "CAM order", "random order", "images"],
            [
                [s.replace("_", " "), cam[s]["mean"], cam[s].get("random"), cam[s].get("n")]
                for s in faith
            ],
        )
    else:
        doc.note("Deletion/insertion AUC not computed.")

    doc.heading("Calibration")
    cal_rows = [["ECE", cal.get("ece")], ["MCE", cal.get("mce")], ["NLL", cal.get("nll")]]
    if cal.get("temperature") is not None:
        cal_rows += [
            ["temperature T", cal.get("temperature")],
            ["ECE before scaling", cal.get("ece_uncalibrated")],
            ["NLL before scaling", cal.get("nll_uncalibrated")],
        ]
    doc.table(["calibration", "value"], cal_rows)
    doc.figure("reliability_diagram.png", "Reliability diagram (15 equal-width bins).")

    doc.heading("Figures")
    figures = (metrics.get("files") or {}).get("figures") or {}
    captions = {
        "confusion_matrix": "Confusion matrix: counts and row-normalised.",
        "samples": "Samples per class with predictions (green correct, red wrong).",
        "cam_statistics": "Per-image CAM statistics per true class.",
    }
    for key, file in figures.items():
        if key == "reliability_diagram":
            continue
        caption = captions.get(key)
        if caption is None and key.startswith("cam_overlays_"):
            caption = f"{key[len('cam_overlays_') :]}: image | heatmap | overlay, with statistics."
        doc.figure(file, caption or key)

    doc.heading("Classification report")
    doc.pre(classification_report or "(see classification_report.txt)")

    doc.heading("Definitions")
    for line in DEFINITIONS:
        doc.text(line)
    return doc


def render_report(report_dir: str | os.PathLike) -> Path:
    """Re-render ``report.html``/``report.md`` of a report folder from its metrics.json."""
    report_dir = Path(report_dir)
    metrics_path = report_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: not found")
    metrics = json.loads(metrics_path.read_text())
    text_path = report_dir / "classification_report.txt"
    text = text_path.read_text() if text_path.is_file() else ""
    report_document(metrics, text).write(
        report_dir / "report.html", report_dir / "report.md", base_dir=report_dir
    )
    return report_dir / "report.html"


__all__ = ["SECTIONS", "render_report", "report_document"]
