"""The summary of a reproduce run: measured figures next to the paper's, as JSON and Markdown.

Rows show each headline metric for every trained model, the relative change under CAM fostering
(points for accuracy-like metrics), the paper's published values and the chance level of an
uninformative map (uniform map / random point / majority class), so a number can be read
without knowing the metric. Kidney runs also list the paper's claims as pass/fail checks; a
direction ("lowers", "raises", "does not fall") passes only beyond the image-to-image noise (95 %
paired bootstrap interval over the test images, from the reports' ``predictions.csv``), and a
localisation statistic must also be above its chance level.

Usage::

    summary = build_summary(config=..., evaluations=..., ...)   # called by reproduce()
    print(summary_table(summary))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kidney_tf.recipes import BRAIN, KIDNEY, recipe

# Published figures (Grad-CAM++ statistics on the CT-KIDNEY test split).
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    KIDNEY: {
        "baseline": {"entropy": 0.6168, "radius": 0.4254},
        "fostered": {"entropy": 0.3313, "radius": 0.2394},
    },
    BRAIN: {"model": {"accuracy": 0.99}},
}
# Thresholds of the kidney paper's claims as the summary checks them.
MIN_ENTROPY_DROP = 0.30  # relative
MAX_ACCURACY_DROP = 0.01  # absolute (1 point)
MIN_ACCURACY = 0.90


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    higher_is_better: bool
    points: bool = False  # show changes in percentage points, not relative %


ROWS = (
    Row("accuracy", "accuracy", True, points=True),
    Row("macro_f1", "macro-F1", True, points=True),
    Row("penalty_cam_entropy", "CAM entropy of the training penalty (native grid)", False),
    Row("entropy", "Grad-CAM++ entropy (upsampled)", False),
    Row("radius", "Grad-CAM++ radius (upsampled)", False),
    Row("entropy_native", "Grad-CAM++ entropy, native grid", False),
    Row("radius_native", "Grad-CAM++ radius, native grid", False),
    Row("entropy_native_gradcam", "Grad-CAM entropy, native grid", False),
    Row("radius_native_gradcam", "Grad-CAM radius, native grid", False),
    Row("snr", "CAM SNR", True),
    Row("outside_fraction", "CAM mass outside body", False),
    Row("pointing_game", "pointing game (lesion)", True, points=True),
    Row("energy_in_mask", "CAM mass in lesion mask", True),
    Row("iou", "IoU peak region / lesion", True),
)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _uniform_radius(size: int) -> float:
    """Radius of gyration of a uniform ``size``×``size`` map (the ``cam_radius`` definition)."""
    return math.sqrt(2 * (1 - 1 / size**2) / 12)


def _chance(key: str, metrics: dict[str, Any], image_size: int) -> float | None:
    if key == "accuracy":
        return _finite(metrics.get("majority_fraction"))
    if key in ("entropy", "penalty_cam_entropy", "entropy_native", "entropy_native_gradcam"):
        return 1.0
    if key == "radius":
        return _uniform_radius(image_size)
    if key in ("radius_native", "radius_native_gradcam"):
        grid = metrics.get("cam_grid") or metrics.get("native_grid")
        return _uniform_radius(int(grid[0])) if grid else None
    if key == "snr":
        return 1.0
    return _finite((metrics.get("chance") or {}).get(key))


def _rows(results: dict[str, dict[str, Any]], paper: dict[str, dict[str, float]], size: int):
    names = list(results)
    rows = []
    for spec in ROWS:
        values = {n: _finite(results[n].get(spec.key)) for n in names}
        if all(v is None for v in values.values()):
            continue
        row: dict[str, Any] = {
            "key": spec.key,
            "label": spec.label,
            "higher_is_better": spec.higher_is_better,
            "values": values,
            "paper": {p: _finite(paper[p].get(spec.key)) for p in paper},
            "chance": next(
                (c for n in names if (c := _chance(spec.key, results[n], size)) is not None), None
            ),
        }
        if len(names) == 2:
            a, b = values[names[0]], values[names[1]]
            row["change"] = _change(a, b, spec.points)
            if set(names) <= set(paper):
                pa, pb = row["paper"][names[0]], row["paper"][names[1]]
                row["paper_change"] = _change(pa, pb, spec.points)
        rows.append(row)
    return rows


def _change(a: float | None, b: float | None, points: bool) -> dict[str, Any] | None:
    if a is None or b is None:
        return None
    rel = (b - a) / abs(a) if abs(a) > 1e-12 else None
    return {"abs": b - a, "rel": rel, "points": points}


def _noise(per_image: dict[str, Any], key: str) -> tuple[float, float, int] | None:
    """Paired bootstrap interval of fostered − baseline for ``key`` (None without values)."""
    from kidney_tf.evaluation.compare import paired_interval

    a = (per_image.get("baseline") or {}).get(key)
    b = (per_image.get("fostered") or {}).get(key)
    if not a or not b:
        return None
    low, high, n = paired_interval(a, b)
    return (low, high, n) if n else None


def _ci_text(ci: tuple[float, float, int] | None) -> str:
    return "" if ci is None else f"; 95 % CI of the change [{ci[0]:+.4f}, {ci[1]:+.4f}], n={ci[2]}"


def _checks(
    results: dict[str, dict[str, Any]], per_image: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    base, fost = results.get("baseline"), results.get("fostered")
    if base is None or fost is None:
        return []
    per_image = per_image or {}
    checks = []

    def add(name: str, passed: bool | None, detail: str) -> None:
        checks.append({"check": name, "passed": passed, "detail": detail})

    acc_a, acc_b = _finite(base.get("accuracy")), _finite(fost.get("accuracy"))
    if acc_a is not None and acc_b is not None:
        add(
            f"test accuracy >= {MIN_ACCURACY:.2f} for both models",
            min(acc_a, acc_b) >= MIN_ACCURACY,
            f"{acc_a:.4f} / {acc_b:.4f}",
        )
        add(
            f"fostering costs <= {100 * MAX_ACCURACY_DROP:.0f} accuracy point",
            acc_a - acc_b <= MAX_ACCURACY_DROP + 1e-9,
            f"{100 * (acc_b - acc_a):+.2f} points",
        )
    # The relative target applies to maps at the layer's grid; upsampled from a coarse grid the
    # entropy has a floor (see the summary's note), so only its direction is checked.
    for key, label, threshold in (
        ("penalty_cam_entropy", "CAM entropy of the training penalty", MIN_ENTROPY_DROP),
        ("entropy_native", "Grad-CAM++ entropy (native grid)", MIN_ENTROPY_DROP),
        ("entropy", "Grad-CAM++ entropy (upsampled)", 0.0),
        ("radius", "Grad-CAM++ radius", 0.0),
    ):
        a, b = _finite(base.get(key)), _finite(fost.get(key))
        if a is None or b is None or a <= 0:
            continue
        drop = (a - b) / a
        wanted = f"by >= {100 * threshold:.0f} %" if threshold else "beyond noise"
        ci = None if threshold else _noise(per_image, key)
        passed = drop >= threshold if threshold else (ci[1] < 0 if ci else drop > 0)
        add(
            f"fostering lowers the {label} {wanted}",
            passed,
            f"{a:.4f} -> {b:.4f} ({-100 * drop:+.1f} %){_ci_text(ci)}",
        )
    a, b = _finite(base.get("snr")), _finite(fost.get("snr"))
    if a is not None and b is not None:
        ci = _noise(per_image, "snr")
        add(
            "fostering raises the CAM SNR beyond noise",
            ci[0] > 0 if ci else b > a,
            f"{a:.4f} -> {b:.4f}{_ci_text(ci)}",
        )
    for key, label in (
        ("energy_in_mask", "CAM mass in the lesion mask"),
        ("pointing_game", "pointing game (lesion)"),
    ):
        a, b = _finite(base.get(key)), _finite(fost.get(key))
        if a is None or b is None:
            continue
        ci = _noise(per_image, key)
        add(
            f"{label} does not fall beyond noise",
            ci[1] >= 0 if ci else b >= a,
            f"{a:.4f} -> {b:.4f}{_ci_text(ci)}",
        )
        chance = _finite((fost.get("chance") or {}).get(key))
        if chance is not None:
            from kidney_tf.evaluation.compare import bootstrap_interval

            values = list(((per_image.get("fostered") or {}).get(key) or {}).values())
            low = bootstrap_interval(values)[0] if values else b
            add(
                f"{label} of the fostered model above chance",
                low > chance,
                f"{b:.4f} (95 % CI low {low:.4f}) vs chance {chance:.4f}",
            )
    return checks


def _divergence_note(results: dict[str, dict[str, Any]]) -> str | None:
    """Say so when the penalised map sharpened but the evaluated Grad-CAM++ map did not."""
    base, fost = results.get("baseline") or {}, results.get("fostered") or {}
    own_a, own_b = (
        _finite(base.get("penalty_cam_entropy")),
        _finite(fost.get("penalty_cam_entropy")),
    )
    ev_a, ev_b = _finite(base.get("entropy_native")), _finite(fost.get("entropy_native"))
    if None in (own_a, own_b, ev_a, ev_b) or not own_a or not ev_a:
        return None
    from kidney_tf.evaluation.compare import maps_diverge

    own, evaluated = (own_b - own_a) / own_a, (ev_b - ev_a) / ev_a
    if maps_diverge(own, evaluated):
        return (
            f"The fostered map and the evaluated map diverge: the penalised map's entropy moved "
            f"{100 * own:+.1f} %, the Grad-CAM++ map's (native grid) only {100 * evaluated:+.1f} % "
            "(foster the map the evaluation measures: --cam-method gradcam++)."
        )
    return None


def _floor_note(results: dict[str, dict[str, Any]], pipeline: str, size: int) -> str | None:
    first = next(iter(results.values()), {})
    floor, grid = _finite(first.get("entropy_floor")), first.get("cam_grid")
    if floor is None or not grid:
        return None
    text = (
        f"Upsampling floor: a map with one active cell of the {grid[0]}×{grid[1]} grid, "
        f"upsampled to {size} px, has entropy {floor:.3f}, so the upsampled "
        "entropy cannot fall below it"
    )
    base = _finite(first.get("entropy"))
    if base is not None and base > 0 and "baseline" in results:
        text += f" (at most {100 * (base - floor) / base:.1f} % below the baseline's {base:.4f})"
    text += ". The native-grid rows measure the same maps without upsampling"
    if pipeline == KIDNEY:
        text += (
            "; the paper's 0.3313 is below the floor of a 7×7 map upsampled to 224 px (≈0.76), "
            "so its definition differs from the upsampled one"
        )
    return text + "."


def build_summary(
    *,
    config: dict[str, Any],
    quick: bool,
    data_info: dict[str, Any],
    trainings: dict[str, dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    comparison: dict[str, Any] | None,
    export: dict[str, Any],
    stage_seconds: dict[str, float],
    resumed: list[str],
    wall_seconds: float,
    cpu_seconds: float | None = None,
) -> dict[str, Any]:
    """The summary dict written to ``OUT/summary.json`` (see the module docstring)."""
    pipeline, train = config["pipeline"], config["train"]
    results: dict[str, dict[str, Any]] = {}
    for name, ev in evaluations.items():
        metrics = dict(ev["metrics"])
        metrics["penalty_cam_entropy"] = _finite(
            (trainings.get(name, {}).get("test_metrics") or {}).get("cam_entropy")
        )
        results[name] = metrics
    paper = PAPER_RESULTS[pipeline]
    phantom = bool(data_info.get("phantom"))
    notes = []
    if phantom:
        notes.append(
            "Data: synthetic phantoms generated by kidney_tf, NOT the public dataset. Only the "
            "direction and size of changes are comparable with the paper, not absolute values."
        )
    if train.get("weights") is None:
        notes.append("Trained from scratch (weights=None); the paper starts from ImageNet.")
    notes.append(
        "CAM statistics: Grad-CAM++ of the predicted class, upsampled to the input size "
        f"({train['image_size']} px) from the last conv block; 'chance' = a uniform map "
        "(entropy, radius, SNR, mass/IoU in lesion), a random point (pointing game) or the "
        "majority class (accuracy). Lesion statistics skip lesion-free (Normal) images."
    )
    floor_note = _floor_note(results, pipeline, int(train["image_size"]))
    if floor_note:
        notes.append(floor_note)
    divergence = _divergence_note(results)
    if divergence:
        notes.append(divergence)
    from kidney_tf.evaluation.compare import per_image_values

    per_image = {
        name: per_image_values(ev["report"]) if ev.get("report") else None
        for name, ev in evaluations.items()
    }
    return {
        "pipeline": pipeline,
        "title": recipe(pipeline).title,
        "quick": quick,
        "data": {
            "description": "synthetic phantoms" if phantom else str(data_info.get("root")),
            "phantom": phantom,
            "root": data_info.get("root"),
            "layout": data_info.get("layout"),
        },
        "settings": {
            **{
                k: train.get(k)
                for k in (
                    "image_size",
                    "batch_size",
                    "epochs",
                    "lr",
                    "lr_schedule",
                    "weights",
                    "bn_momentum",
                    "cam_weight",
                    "cam_method",
                    "cam_layer",
                    "outside_weight",
                    "mask_weight",
                    "alive_weight",
                    "crop",
                    "split",
                    "seed",
                )
            },
            **{f"finetune_{k}": v for k, v in (config.get("finetune") or {}).items()},
            "phantom_per_class": config.get("phantom_per_class"),
        },
        "training": {
            name: {
                k: t.get(k)
                for k in ("epochs_run", "seconds", "seconds_per_epoch", "test_metrics", "model")
            }
            for name, t in trainings.items()
        },
        "results": results,
        "paper": paper,
        "rows": _rows(results, paper, int(train["image_size"])),
        "checks": _checks(results, per_image) if recipe(pipeline).fostering else [],
        "notes": notes,
        "comparison": (comparison or {}).get("comparison"),
        "export": export.get("export"),
        "stage_seconds": stage_seconds,
        "resumed_stages": resumed,
        "wall_seconds": round(wall_seconds, 1),
        "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 1),
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_change(change: dict[str, Any] | None) -> str:
    if not change:
        return "–"
    if change["points"]:
        return f"{100 * change['abs']:+.1f} pt"
    return "–" if change["rel"] is None else f"{100 * change['rel']:+.1f} %"


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown: title, data note, the ours-vs-paper table, checks and where the outputs are."""
    results = summary["results"]
    names = list(results)
    paper = summary["paper"]
    two = len(names) == 2
    lines = [f"# {summary.get('title', summary['pipeline'])} — on {summary['data']['description']}"]
    lines.append("")
    for name in names:
        r = results[name]
        lines.append(
            f"- {name}: test split {r.get('n_images')} images, CAMs on {r.get('cam_images')} "
            f"({r.get('cam_with_mask') or 0} with a lesion mask), CAM grid "
            f"{'×'.join(str(g) for g in r.get('cam_grid') or []) or '–'}"
        )
    lines.append("")
    header = ["metric", "better"] + [f"{n} (ours)" for n in names]
    if two:
        header.append("change (ours)")
    header += [f"{p} (paper)" for p in paper]
    if two and len(paper) == 2:
        header.append("change (paper)")
    header.append("chance")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in summary["rows"]:
        cells = [row["label"], "↑" if row["higher_is_better"] else "↓"]
        cells += [_fmt(row["values"][n]) for n in names]
        if two:
            cells.append(_fmt_change(row.get("change")))
        cells += [_fmt(row["paper"].get(p)) for p in paper]
        if two and len(paper) == 2:
            cells.append(_fmt_change(row.get("paper_change")))
        cells.append(_fmt(row.get("chance"), 3))
        lines.append("| " + " | ".join(cells) + " |")
    if summary.get("checks"):
        lines += ["", "Paper's claims, checked on this run:"]
        for check in summary["checks"]:
            mark = {True: "PASS", False: "FAIL", None: "n/a"}[check["passed"]]
            lines.append(f"- [{mark}] {check['check']}: {check['detail']}")
    warnings = [f"{n}: {w}" for n in names for w in results[n].get("shortcut_warnings") or []]
    if warnings:
        lines += ["", "Shortcut warnings (maps counted by predicted class):"]
        lines += [f"- {w}" for w in warnings]
    lines += [""] + [f"Note: {n}" for n in summary.get("notes", [])]
    training = summary.get("training", {})
    timing = ", ".join(
        f"{n} {t.get('epochs_run')} epochs in {_fmt(t.get('seconds'), 0)} s (incl. setup)"
        for n, t in training.items()
    )
    cpu = summary.get("cpu_seconds")
    resumed = summary.get("resumed_stages") or []
    lines += [
        "",
        f"Training: {timing}.",
        f"This invocation: {summary['wall_seconds']:.0f} s wall"
        + (f", {cpu:.0f} s CPU" if cpu is not None else "")
        + (f" (resumed: skipped {', '.join(resumed)})" if resumed else "")
        + ".",
    ]
    if summary.get("comparison"):
        lines.append(f"Comparison report: {summary['comparison']}/comparison.html")
    lines.append(f"SavedModel (TF Serving): {summary['export']}")
    return "\n".join(lines) + "\n"
