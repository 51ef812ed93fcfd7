"""The two papers end to end, as resumable stages.

``kidney-cam-fostering``: data (phantoms or the public CT-KIDNEY folder) → verify → baseline
ResNet-50 (λ = 0, class-weighted CE) → CAM-fostering fine-tune → Grad-CAM++ evaluation of both →
comparison → SavedModel export → summary next to the paper's numbers.

``brain-mri-efficientnet``: data (phantoms or Training/ + Testing/) → verify → brain-contour crop
of every image → EfficientNetB1 transfer learning → evaluation → export → summary.

Every stage records its result under ``OUT/stages``; running the same command again after an
interruption skips the finished stages (and training resumes mid-run from its backup).

Usage::

    from kidney_tf.pipelines.reproduce import reproduce
    summary = reproduce("kidney-cam-fostering", out="runs/kidney", quick=True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.pipelines.stages import StageRunner
from kidney_tf.utils.io import write_json_atomic, write_text_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

PIPELINES = ("kidney-cam-fostering", "brain-mri-efficientnet")

# Published figures, for the summary table.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "kidney-cam-fostering": {
        "baseline": {"entropy": 0.6168, "radius": 0.4254},
        "fostered": {"entropy": 0.3313, "radius": 0.2394},
    },
    "brain-mri-efficientnet": {"model": {"accuracy": 0.99}},
}

KIDNEY_FOLDER = "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"


@dataclass
class ReproduceConfig:
    """Settings of a reproduce run. ``paper()`` and ``quick()`` give the two presets."""

    pipeline: str
    out: str
    data: str | None = None
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 30
    finetune_epochs: int = 10
    cam_weight: float = 0.1
    weights: str | None = "imagenet"
    freeze_epochs: int = 0
    lr: float | None = None
    finetune_lr: float | None = 1e-4
    patience: int = 5
    bn_momentum: float | None = None
    phantom_per_class: int = 150
    phantom_image_size: int = 256
    max_cam_images: int | None = 200
    seed: int = 42
    split: str = "auto"
    crop: str | None = None
    verbose: int | str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def preset(cls, pipeline: str, out: str, *, quick: bool, data: str | None = None, **overrides):
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
        kidney = pipeline == "kidney-cam-fostering"
        base: dict[str, Any] = {
            "pipeline": pipeline,
            "out": out,
            "data": data,
            "image_size": 224 if kidney else 240,
            "epochs": 30 if kidney else 20,
            "finetune_epochs": 10,
            "freeze_epochs": 0 if kidney else 3,
            # Kidney CT keeps the body and drops the scanner table (an acquisition shortcut of
            # the public data); the brain paper crops every image to the brain's contour.
            "crop": "body" if kidney else "brain",
        }
        if quick:
            base.update(
                image_size=128,
                batch_size=16,
                epochs=8,
                finetune_epochs=3,
                weights=None,
                freeze_epochs=0,
                bn_momentum=0.9,
                patience=0,
                phantom_per_class=90,
                phantom_image_size=160,
                max_cam_images=64,
                lr=1e-3,
            )
        base.update({k: v for k, v in overrides.items() if v is not None})
        if str(base.get("weights")).lower() == "none":
            base["weights"] = None
        return cls(**base)


def _find_class_root(data: Path, pipeline: str) -> Path:
    """Accept the public datasets as users download them (and the folders inside them)."""
    if pipeline == "kidney-cam-fostering":
        for candidate in (data / KIDNEY_FOLDER / KIDNEY_FOLDER, data / KIDNEY_FOLDER, data):
            if candidate.is_dir() and any((candidate / c).is_dir() for c in ("Cyst", "Normal")):
                return candidate
    else:
        for candidate in (data, data.parent):
            if (candidate / "Training").is_dir():
                return candidate
        if any((data / c).is_dir() for c in ("glioma", "notumor")):
            return data
    raise FileNotFoundError(
        f"{data}: no {pipeline} dataset layout found (see data_manifests/README.md)"
    )


def _stage_data(config: ReproduceConfig, out: Path) -> dict[str, Any]:
    if config.data is None:
        from kidney_tf.data.phantoms import generate_phantoms

        kind = "kidney-ct" if config.pipeline == "kidney-cam-fostering" else "brain-mri"
        manifest = generate_phantoms(
            kind,
            out / "data" / kind,
            per_class=config.phantom_per_class,
            image_size=config.phantom_image_size,
            seed=config.seed,
        )
        return {"root": str(Path(manifest).parent), "phantom": True, "kind": kind}
    data = Path(config.data)
    if not data.exists():
        raise FileNotFoundError(f"{data}: data folder not found")
    return {"root": str(_find_class_root(data, config.pipeline)), "phantom": False}


def _stage_verify(config: ReproduceConfig, data: dict[str, Any], out: Path) -> dict[str, Any]:
    from kidney_tf.data.verify import verify_dataset

    manifest = None
    if not data["phantom"]:
        manifest = "ct_kidney" if config.pipeline == "kidney-cam-fostering" else "brain_tumor_mri"
    report = verify_dataset(data["root"], manifest)
    summary = report.to_dict() if hasattr(report, "to_dict") else dataclasses.asdict(report)
    write_json_atomic(out / "verify.json", summary)
    return {"report": str(out / "verify.json"), "ok": bool(getattr(report, "ok", True))}


def _train(config: ReproduceConfig, data_root: str, run: Path, **kwargs) -> dict[str, Any]:
    from kidney_tf.training.trainer import TrainConfig, train

    settings: dict[str, Any] = {
        "out": str(run),
        "data": data_root,
        "arch": "resnet50" if config.pipeline == "kidney-cam-fostering" else "efficientnetb1",
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "lr": config.lr,
        "weights": config.weights,
        "freeze_epochs": config.freeze_epochs,
        "patience": config.patience,
        "bn_momentum": config.bn_momentum,
        "seed": config.seed,
        "split": config.split,
        "crop": config.crop,
        "verbose": config.verbose,
    }
    settings.update(kwargs)
    result = train(TrainConfig(**settings))
    return {
        "run": str(run),
        "model": str(run / "model.keras"),
        "split_csv": str(run / "split.csv"),
        "test_metrics": result.test_metrics,
    }


def _evaluate(config: ReproduceConfig, model_path: str, split_csv: str, report: Path) -> dict:
    from kidney_tf._loading import load_model
    from kidney_tf.evaluation.report import evaluate_model

    model = load_model(model_path)
    metrics = evaluate_model(
        model,
        split_csv,
        out_dir=report,
        split="test",
        method="gradcam++",
        crop=config.crop,
        max_cam_images=config.max_cam_images,
        batch_size=config.batch_size,
    )
    return {"report": str(report), "metrics": _headline(metrics)}


def _headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    cam = metrics.get("cam", {})

    def pick(name):
        value = cam.get(name)
        if isinstance(value, dict):
            value = value.get("mean")
        return None if value is None else float(value)

    return {
        "accuracy": float(metrics.get("accuracy", float("nan"))),
        "macro_f1": float(metrics.get("macro_f1", float("nan"))),
        **{
            name: pick(name)
            for name in (
                "entropy",
                "radius",
                "snr",
                "outside_fraction",
                "pointing_game",
                "energy_in_mask",
                "iou",
            )
        },
    }


def reproduce(
    pipeline: str, out: str | Path, *, quick: bool = False, data: str | None = None, **overrides
) -> dict:
    """Run (or resume) a paper's pipeline; returns the summary dict also written to OUT."""
    config = ReproduceConfig.preset(pipeline, str(out), quick=quick, data=data, **overrides)
    out = Path(config.out)
    runner = StageRunner(out, params=dataclasses.asdict(config))
    data_info = runner.run("data", lambda: _stage_data(config, out))
    runner.run("verify", lambda: _stage_verify(config, data_info, out))
    kidney = pipeline == "kidney-cam-fostering"
    root = data_info["root"]
    if not kidney and config.crop == "brain":
        # The brain paper crops the image files once, before training.
        def crop_stage():
            from kidney_tf.data.crop import crop_folder

            summary = crop_folder(
                root, out / "data" / "cropped", mode="brain", size=config.image_size
            )
            info = summary.to_dict() if hasattr(summary, "to_dict") else dataclasses.asdict(summary)
            return {"root": str(out / "data" / "cropped"), "summary": _jsonable_summary(info)}

        root = runner.run("crop", crop_stage)["root"]
        config.crop = None  # already cropped on disk

    baseline = runner.run(
        "train_baseline", lambda: _train(config, root, out / "baseline", cam_weight=0.0)
    )
    models = {"baseline" if kidney else "model": baseline}
    if kidney:
        fostered = runner.run(
            "train_fostered",
            lambda: _train(
                config,
                root,
                out / "fostered",
                init=baseline["model"],
                cam_weight=config.cam_weight,
                epochs=config.finetune_epochs,
                lr=config.finetune_lr,
                split_csv=baseline["split_csv"],
                freeze_epochs=0,
            ),
        )
        models["fostered"] = fostered
    evaluations = {
        name: runner.run(
            f"evaluate_{name}",
            lambda m=m, name=name: _evaluate(
                config, m["model"], baseline["split_csv"], out / "reports" / name
            ),
        )
        for name, m in models.items()
    }
    if kidney:

        def compare_stage():
            from kidney_tf.evaluation.compare import compare_reports

            compare_reports(
                evaluations["baseline"]["report"],
                evaluations["fostered"]["report"],
                out / "reports" / "comparison",
                labels=("baseline", "fostered"),
            )
            return {"comparison": str(out / "reports" / "comparison")}

        runner.run("compare", compare_stage)
    final = models["fostered" if kidney else "model"]

    def export_stage():
        from kidney_tf._loading import load_model
        from kidney_tf.export.saved_model import export_saved_model

        path = export_saved_model(load_model(final["model"]), out / "export" / "1", overwrite=True)
        return {"export": str(path)}

    export = runner.run("export", export_stage)
    summary = _summary(pipeline, config, evaluations, export, data_info)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", summary_table(summary))
    return summary


def _jsonable_summary(info: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else len(v))
        for k, v in info.items()
    }


def _summary(pipeline, config, evaluations, export, data_info) -> dict[str, Any]:
    return {
        "pipeline": pipeline,
        "data": "synthetic phantoms" if data_info["phantom"] else data_info["root"],
        "settings": {
            "image_size": config.image_size,
            "epochs": config.epochs,
            "finetune_epochs": config.finetune_epochs,
            "cam_weight": config.cam_weight,
            "weights": config.weights,
        },
        "results": {name: e["metrics"] for name, e in evaluations.items()},
        "paper": PAPER_RESULTS[pipeline],
        "export": export["export"],
    }


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown table of the measured figures next to the paper's."""
    results = summary["results"]
    paper = summary["paper"]
    names = list(results)
    metrics = [
        "accuracy",
        "macro_f1",
        "entropy",
        "radius",
        "snr",
        "outside_fraction",
        "pointing_game",
        "energy_in_mask",
    ]
    header = "| metric | " + " | ".join(f"{n} (ours)" for n in names)
    header += " | " + " | ".join(f"{n} (paper)" for n in paper) + " |"
    lines = [
        f"# {summary['pipeline']} on {summary['data']}",
        "",
        header,
        "|" + "---|" * (1 + len(names) + len(paper)),
    ]

    def fmt(v):
        return "–" if v is None else f"{v:.4f}"

    for metric in metrics:
        row = [fmt(results[n].get(metric)) for n in names] + [
            fmt(paper[p].get(metric)) for p in paper
        ]
        lines.append(f"| {metric} | " + " | ".join(row) + " |")
    if "baseline" in results and "fostered" in results:
        lines.append("")
        for metric in ("entropy", "radius"):
            a, b = results["baseline"].get(metric), results["fostered"].get(metric)
            if a and b is not None:
                pa, pb = paper["baseline"][metric], paper["fostered"][metric]
                lines.append(
                    f"- {metric}: ours {a:.4f} → {b:.4f} ({(b - a) / a:+.1%}); "
                    f"paper {pa:.4f} → {pb:.4f} ({(pb - pa) / pa:+.1%})"
                )
    lines.append("")
    lines.append(f"SavedModel: {summary['export']}")
    return "\n".join(lines) + "\n"
