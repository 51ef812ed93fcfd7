"""Compare two evaluation reports: the kidney paper's main table and its qualitative figure.

``compare_reports(A, B, out)`` reads ``A/metrics.json`` and ``B/metrics.json`` (written by
``evaluate_model``) and writes to ``out``:

- ``comparison.json``: one row per headline metric with both values, the absolute change
  ``B - A``, the relative change ``(B - A) / |A|``, a 95 % paired bootstrap interval of the change
  over the test images both reports share (from their ``predictions.csv``), the verdict, the
  chance/random baselines, and optionally the paper's published values as a reference;
- ``comparison.md`` and ``comparison.html`` (self-contained) with the same table plus a per-class
  CAM table;
- ``paired_overlays.png``: the same test images under both models, paired by file id through each
  report's ``cam_examples.npz`` (no model is re-run).

Verdicts (``improved``): True / False only when the paired interval excludes 0 (better / worse
beyond the image-to-image noise), None ("within noise") otherwise; reports without per-image
values fall back to the sign of the change and say so (``verdict``). Localisation metrics also say
whether B is above its chance level (``vs_chance``: the lower end of B's own bootstrap interval
above chance). A row for the fostered model's own map (``fostering_entropy``) sits next to the
evaluated Grad-CAM++ map; a warning says when the two move differently.

Usage::

    from kidney_tf.evaluation.compare import compare_reports
    result = compare_reports("reports/baseline", "reports/fostered", "reports/comparison",
                             labels=("baseline", "fostered"), reference="kidney")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kidney_tf.evaluation.html import Document
from kidney_tf.evaluation.schema import (
    CAM_EXAMPLES_FILE,
    CAM_STATISTICS,
    HEADLINE_METRICS,
    LOCALISATION_STATISTICS,
    chance_value,
    load_cam_examples,
    metric_value,
)
from kidney_tf.utils.io import ensure_writable_dir, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

# Published figures, used as an optional reference column: {name: {label, values: {metric: (A, B)}}}.
PAPER_REFERENCES: dict[str, dict[str, Any]] = {
    "kidney": {
        "label": "paper (kidney CT, CAM fostering)",
        "values": {"entropy": (0.6168, 0.3313), "radius": (0.4254, 0.2394)},
    },
}


def load_report(report: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Read a report folder's (or a file's) ``metrics.json``; return ``(metrics, report_dir)``."""
    path = Path(report)
    metrics_path = path / "metrics.json" if path.is_dir() else path
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: metrics.json not found (run kidney-tf evaluate)")
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{metrics_path}: not valid JSON ({exc})") from exc
    if not isinstance(metrics, dict) or "accuracy" not in metrics:
        raise ValueError(f"{metrics_path}: not a kidney_tf metrics.json (no 'accuracy')")
    return metrics, metrics_path.parent


BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_interval(
    values, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaNs left out): ``(low, high)``.

    ``(nan, nan)`` when no value is finite. Usage: ``low, high = bootstrap_interval(hits)``.
    """
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def per_image_values(report_dir: str | os.PathLike) -> dict[str, dict[str, float]] | None:
    """``{metric: {file: value}}`` from a report's ``predictions.csv`` (None when absent).

    ``accuracy`` is the per-image ``correct`` column; CAM statistics are the ``cam_*`` columns
    (empty cells, e.g. lesion statistics of Normal images, are left out).
    """
    import csv

    path = Path(report_dir) / "predictions.csv"
    if not path.is_file():
        return None
    values: dict[str, dict[str, float]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            for column, cell in row.items():
                if column == "correct":
                    key = "accuracy"
                elif column and column.startswith("cam_"):
                    key = column[4:]
                else:
                    continue
                if cell not in ("", None):
                    values.setdefault(key, {})[row["file"]] = float(cell)
    return values


def paired_interval(
    values_a: dict[str, float], values_b: dict[str, float], **options
) -> tuple[float, float, int]:
    """Bootstrap interval of the mean change ``B - A`` over the files both have, and their count."""
    common = sorted(set(values_a) & set(values_b))
    diff = np.array([values_b[f] - values_a[f] for f in common], np.float64)
    low, high = bootstrap_interval(diff, **options)
    return low, high, len(common)


def _verdict(row: dict[str, Any], higher_is_better: bool) -> tuple[bool | None, str]:
    low, high = row.get("ci_low"), row.get("ci_high")
    change = row["abs_change"]
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        if change is None or change == 0:
            return None, "no change" if change == 0 else "n/a"
        better = (change > 0) == higher_is_better
        return better, ("better" if better else "worse") + " (no per-image values: noise unknown)"
    if low > 0 or high < 0:
        better = (low > 0) == higher_is_better
        return better, "better" if better else "worse"
    return None, "within noise"


def _change(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    if a is None or b is None:
        return None, None
    rel = (b - a) / abs(a) if abs(a) > 1e-12 else None
    return b - a, rel


def compare_metrics(
    metrics_a: dict[str, Any],
    metrics_b: dict[str, Any],
    *,
    reference: str | None = None,
    per_image: tuple[dict | None, dict | None] = (None, None),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per headline metric present in either report (see ``schema.HEADLINE_METRICS``).

    ``per_image``: both reports' :func:`per_image_values`, for the paired bootstrap intervals and
    verdicts (see the module docstring).

    Usage: ``rows = compare_metrics(json.load(fa), json.load(fb), reference="kidney")``.
    """
    ref = _reference(reference)
    rows = []
    for spec in HEADLINE_METRICS:
        a, b = metric_value(metrics_a, spec.key), metric_value(metrics_b, spec.key)
        if a is None and b is None:
            continue
        abs_change, rel_change = _change(a, b)
        row: dict[str, Any] = {
            "key": spec.key,
            "label": spec.label,
            "a": a,
            "b": b,
            "abs_change": abs_change,
            "rel_change": rel_change,
            "higher_is_better": spec.higher_is_better,
            "chance_a": chance_value(metrics_a, spec.key),
            "chance_b": chance_value(metrics_b, spec.key),
            "ci_low": None,
            "ci_high": None,
            "n_paired": None,
        }
        values_a, values_b = ((p or {}).get(spec.key) for p in per_image)
        if values_a and values_b:
            low, high, n = paired_interval(values_a, values_b, seed=seed)
            if n:
                row.update(ci_low=low, ci_high=high, n_paired=n)
        row["improved"], row["verdict"] = _verdict(row, spec.higher_is_better)
        if spec.key in LOCALISATION_STATISTICS and row["chance_b"] is not None and b is not None:
            low_b = bootstrap_interval(list(values_b.values()), seed=seed)[0] if values_b else b
            row["vs_chance"] = "above chance" if low_b > row["chance_b"] else "at chance"
        if ref is not None and spec.key in ref["values"]:
            ra, rb = ref["values"][spec.key]
            row["reference_a"], row["reference_b"] = ra, rb
            row["reference_rel_change"] = _change(ra, rb)[1]
        rows.append(row)
    return rows


def _reference(reference: str | None) -> dict[str, Any] | None:
    if reference in (None, "", "none"):
        return None
    if reference not in PAPER_REFERENCES:
        raise ValueError(
            f"unknown reference {reference!r}; choose from {sorted(PAPER_REFERENCES)} or none"
        )
    return PAPER_REFERENCES[reference]


def _per_class_rows(metrics_a, metrics_b) -> tuple[list[str], list[list[Any]]]:
    pa = (metrics_a.get("cam") or {}).get("per_class") or {}
    pb = (metrics_b.get("cam") or {}).get("per_class") or {}
    classes = [c for c in pa if c in pb]
    stats = [
        s
        for s in (*CAM_STATISTICS, *LOCALISATION_STATISTICS)
        if s != "snr" and any(pa[c].get(s) is not None for c in classes)
    ]
    headers = ["class"]
    for s in stats:
        headers += [f"{s} A", f"{s} B", f"{s} Δ%"]
    rows = []
    for c in classes:
        row: list[Any] = [c]
        for s in stats:
            a, b = pa[c].get(s), pb[c].get(s)
            rel = _change(a, b)[1]
            row += [a, b, None if rel is None else f"{100 * rel:+.1f}%"]
        rows.append(row)
    return headers, rows


def _consistency_warnings(metrics_a, metrics_b, labels) -> list[str]:
    warnings = []
    if metrics_a.get("class_names") != metrics_b.get("class_names"):
        warnings.append(
            f"class names differ: {labels[0]} {metrics_a.get('class_names')} vs "
            f"{labels[1]} {metrics_b.get('class_names')}"
        )
    if metrics_a.get("n_images") != metrics_b.get("n_images"):
        warnings.append(
            f"evaluated on different numbers of images ({metrics_a.get('n_images')} vs "
            f"{metrics_b.get('n_images')}): the comparison may not be on the same test split"
        )
    cam_a, cam_b = metrics_a.get("cam") or {}, metrics_b.get("cam") or {}
    for key in ("method", "native_grid", "target", "foreground"):
        if cam_a.get(key) != cam_b.get(key):
            warnings.append(f"CAM {key} differs: {cam_a.get(key)} vs {cam_b.get(key)}")
    return warnings


def maps_diverge(own_change: float, evaluated_change: float) -> bool:
    """Whether the fostered map and the evaluated map moved differently under fostering.

    True when the fostered map's relative change is at least 10 % and the evaluated map's is less
    than a third of it (used by ``compare`` and the reproduce summary).

    Usage::

        maps_diverge(-0.5, -0.02)  # True: the penalised map halved, Grad-CAM++ barely moved
    """
    return abs(own_change) >= 0.10 and abs(evaluated_change) < abs(own_change) / 3


def divergence_warning(rows: list[dict[str, Any]]) -> str | None:
    """A warning when the fostered map's entropy and the evaluated map's move differently.

    (Fostering the ``exact`` map halved its entropy on real CT while Grad-CAM++ barely moved.)
    """
    by_key = {r["key"]: r for r in rows}
    own, evaluated = by_key.get("fostering_entropy"), by_key.get("entropy")
    if not own or not evaluated or own["rel_change"] is None or evaluated["rel_change"] is None:
        return None
    a, b = own["rel_change"], evaluated["rel_change"]
    if maps_diverge(a, b):
        return (
            f"the fostered map's entropy changed {100 * a:+.1f} % but the evaluated map's only "
            f"{100 * b:+.1f} %: fostering sharpened a different map from the one this report "
            "measures"
        )
    return None


def _pair_examples(dir_a: Path, dir_b: Path, max_pairs: int) -> dict[str, Any] | None:
    try:
        ex_a = load_cam_examples(dir_a / CAM_EXAMPLES_FILE)
        ex_b = load_cam_examples(dir_b / CAM_EXAMPLES_FILE)
    except (FileNotFoundError, ValueError) as exc:
        log.warning("no paired overlays: %s", exc)
        return None
    index_b = {str(f): i for i, f in enumerate(ex_b["files"])}
    common = [(i, index_b[str(f)]) for i, f in enumerate(ex_a["files"]) if str(f) in index_b]
    if not common:
        log.warning("no paired overlays: the two reports share no CAM example images")
        return None
    # Round-robin over true classes so every class appears before any repeats.
    by_class: dict[int, list[tuple[int, int]]] = {}
    for i, j in common:
        by_class.setdefault(int(ex_a["labels"][i]), []).append((i, j))
    chosen: list[tuple[int, int]] = []
    while len(chosen) < max_pairs and any(by_class.values()):
        for label in sorted(by_class):
            if by_class[label] and len(chosen) < max_pairs:
                chosen.append(by_class[label].pop(0))
    return {"a": ex_a, "b": ex_b, "pairs": chosen}


def _plot_pairs(paired: dict[str, Any], labels: tuple[str, str], out: Path) -> Path:
    from kidney_tf.evaluation.figures import plot_paired_overlays

    ex_a, ex_b, pairs = paired["a"], paired["b"], paired["pairs"]
    names = ex_a["class_names"]

    def stat_title(ex, i):
        pred = names[int(ex["predictions"][i])] if int(ex["predictions"][i]) < len(names) else "?"
        return (
            f"pred {pred}  H={ex['entropy'][i]:.3f}\n"
            f"r={ex['radius'][i]:.3f}  SNR={ex['snr'][i]:.2f}"
        )

    return plot_paired_overlays(
        [ex_a["images"][i] for i, _ in pairs],
        [ex_a["maps"][i] for i, _ in pairs],
        [ex_b["maps"][j] for _, j in pairs],
        out,
        labels=labels,
        row_titles=[
            f"{Path(str(ex_a['files'][i])).name}\ntrue: {names[int(ex_a['labels'][i])]}"
            for i, _ in pairs
        ],
        titles_a=[stat_title(ex_a, i) for i, _ in pairs],
        titles_b=[stat_title(ex_b, j) for _, j in pairs],
        method=ex_a["method"],
        masks=None if ex_a.get("masks") is None else [ex_a["masks"][i] for i, _ in pairs],
    )


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:+.1f}%"


def comparison_document(result: dict[str, Any]) -> Document:
    """The comparison as a ``Document`` (rendered to HTML and Markdown)."""
    la, lb = result["labels"]
    doc = Document(f"Comparison: {la} vs {lb}")
    doc.text(f"{la}: {result['reports'][0]}  ·  {lb}: {result['reports'][1]}")
    doc.warnings(result["warnings"])
    doc.heading("Headline metrics")
    has_ref = any("reference_a" in r for r in result["rows"])
    headers = [
        "metric",
        la,
        lb,
        "abs. change",
        "rel. change",
        "better",
        "95 % CI of change",
        "verdict",
        f"chance ({la} / {lb})",
    ]
    if has_ref:
        headers += ["paper A", "paper B", "paper rel. change"]
    rows = []
    for r in result["rows"]:
        chance = None
        if r["chance_a"] is not None or r["chance_b"] is not None:
            ca, cb = r["chance_a"], r["chance_b"]
            chance = f"{_fmt(ca)} / {_fmt(cb)}"
        row = [
            r["label"],
            r["a"],
            r["b"],
            r["abs_change"],
            _pct(r["rel_change"]),
            "higher" if r["higher_is_better"] else "lower",
            _interval(r.get("ci_low"), r.get("ci_high"), r.get("n_paired")),
            r.get("verdict") + (f"; {lb} {r['vs_chance']}" if r.get("vs_chance") else ""),
            chance,
        ]
        if has_ref:
            row += [
                r.get("reference_a"),
                r.get("reference_b"),
                _pct(r.get("reference_rel_change")),
            ]
        rows.append(row)
    doc.table(headers, rows)
    doc.note(
        "Verdict: better/worse only when the 95 % paired bootstrap interval of the change over "
        "the shared test images excludes 0; otherwise 'within noise'."
    )
    if result.get("reference"):
        doc.note(f"Reference column: {result['reference']} (published values).")
    if result["per_class"]["rows"]:
        doc.heading("CAM statistics per true class")
        doc.table(result["per_class"]["headers"], result["per_class"]["rows"])
    doc.heading("Same images under both models")
    if result.get("paired_overlays"):
        doc.figure(
            result["paired_overlays"],
            f"Grad-CAM overlays of the same test images: {la} (middle) vs {lb} (right).",
        )
    else:
        doc.note("No paired overlays: the reports share no CAM example images.")
    return doc


def _interval(low: float | None, high: float | None, n: int | None) -> str | None:
    if low is None or high is None:
        return None
    return f"[{low:+.4f}, {high:+.4f}] (n={n})"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def compare_reports(
    report_a: str | os.PathLike,
    report_b: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels: tuple[str, str] = ("A", "B"),
    reference: str | None = None,
    max_pairs: int = 8,
) -> dict[str, Any]:
    """Compare two report folders and write comparison.{json,md,html} + paired_overlays.png.

    Usage: ``compare_reports("reports/baseline", "reports/fostered", "reports/cmp",
    labels=("baseline", "fostered"), reference="kidney")``. Returns the comparison dict.
    """
    labels = (str(labels[0]), str(labels[1]))
    if labels[0] == labels[1]:
        raise ValueError(f"the two labels must differ, got {labels}")
    metrics_a, dir_a = load_report(report_a)
    metrics_b, dir_b = load_report(report_b)
    out = ensure_writable_dir(out_dir)
    result: dict[str, Any] = {
        "labels": list(labels),
        "reports": [str(dir_a), str(dir_b)],
        "reference": _reference(reference)["label"] if _reference(reference) else None,
        "rows": compare_metrics(
            metrics_a,
            metrics_b,
            reference=reference,
            per_image=(per_image_values(dir_a), per_image_values(dir_b)),
        ),
        "warnings": _consistency_warnings(metrics_a, metrics_b, labels),
        "paired_overlays": None,
        "paired_files": [],
    }
    diverged = divergence_warning(result["rows"])
    if diverged:
        result["warnings"].append(diverged)
    headers, rows = _per_class_rows(metrics_a, metrics_b)
    result["per_class"] = {"headers": headers, "rows": rows}
    paired = _pair_examples(dir_a, dir_b, max_pairs) if max_pairs > 0 else None
    if paired is not None:
        _plot_pairs(paired, labels, out / "paired_overlays.png")
        result["paired_overlays"] = "paired_overlays.png"
        result["paired_files"] = [str(paired["a"]["files"][i]) for i, _ in paired["pairs"]]
    write_json_atomic(out / "comparison.json", result)
    doc = comparison_document(result)
    doc.write(out / "comparison.html", out / "comparison.md", base_dir=out)
    log.info("comparison written to %s", out)
    return result


def rows_as_array(result: dict[str, Any], key: str) -> np.ndarray:
    """``[a, b]`` of one metric from a comparison dict (NaN when absent); handy in notebooks."""
    for row in result["rows"]:
        if row["key"] == key:
            return np.array([np.nan if v is None else v for v in (row["a"], row["b"])], float)
    return np.array([np.nan, np.nan])


__all__ = [
    "PAPER_REFERENCES",
    "bootstrap_interval",
    "divergence_warning",
    "maps_diverge",
    "paired_interval",
    "per_image_values",
    "compare_metrics",
    "compare_reports",
    "comparison_document",
    "load_report",
    "rows_as_array",
]
