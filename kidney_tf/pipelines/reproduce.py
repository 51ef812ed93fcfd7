"""The two papers end to end, as resumable stages.

``kidney-cam-fostering``: data (phantoms or the public CT-KIDNEY folder) → verify → baseline
ResNet-50 (λ = 0, class-weighted CE) → CAM-fostering fine-tune → Grad-CAM++ evaluation of both →
comparison → SavedModel export → summary next to the paper's numbers.

``brain-mri-efficientnet``: data (phantoms or Training/ + Testing/) → verify → brain-contour crop
of every image → EfficientNetB1 → evaluation → export → summary.

Every stage records its result under ``OUT/stages``; running the same command again after an
interruption skips the finished stages (and training resumes mid-run from its backup). Resuming
with other settings is refused (``StageMismatchError``).

Usage::

    from kidney_tf.pipelines.reproduce import reproduce
    summary = reproduce("kidney-cam-fostering", out="runs/kidney", quick=True)
    print(summary_table(summary))
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.explain.fostering_maps import FOSTERING_CAM_METHODS
from kidney_tf.pipelines.layout import find_dataset_root
from kidney_tf.pipelines.stages import StageRunner
from kidney_tf.pipelines.summary import PAPER_RESULTS, build_summary, summary_table
from kidney_tf.utils.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

KIDNEY = "kidney-cam-fostering"
BRAIN = "brain-mri-efficientnet"
PIPELINES = (KIDNEY, BRAIN)
PHANTOM_KIND = {KIDNEY: "kidney-ct", BRAIN: "brain-mri"}
DATASET_MANIFEST = {KIDNEY: "ct_kidney", BRAIN: "brain_tumor_mri"}
ARCH = {KIDNEY: "resnet50", BRAIN: "efficientnetb1"}
# Settings that may change when a run is resumed.
RESUMABLE_KEYS = ("verbose", "out")

__all__ = [
    "BRAIN",
    "KIDNEY",
    "PAPER_RESULTS",
    "PIPELINES",
    "ReproduceConfig",
    "reproduce",
    "summary_table",
]


@dataclass
class ReproduceConfig:
    """Settings of a reproduce run. ``preset(..., quick=...)`` gives the paper/quick presets.

    ``quick`` (the demo) trains from scratch on phantoms at 128 px on a CPU; the paper preset
    uses ImageNet weights at the papers' input sizes. ``finetune_*`` apply to the kidney
    CAM-fostering stage only; ``finetune_unfreeze_top`` = N fine-tunes the top N backbone
    stages and the head (0: the head alone; None: the whole network).
    """

    pipeline: str
    out: str
    data: str | None = None
    image_size: int = 224
    batch_size: int = 32
    epochs: int = 30
    lr: float | None = None
    lr_schedule: str = "plateau"
    patience: int = 5
    weights: str | None = "imagenet"
    freeze_epochs: int = 0
    bn_momentum: float | None = None
    finetune_epochs: int = 10
    finetune_lr: float | None = 1e-4
    finetune_unfreeze_top: int | None = None
    cam_weight: float = 0.1
    cam_method: str = "gradcam++"
    cam_layer: str | None = None
    outside_weight: float = 0.0
    mask_weight: float = 0.0
    phantom_per_class: int = 150
    phantom_image_size: int = 256
    phantom_lesion_scale: float = 1.0
    max_cam_images: int | None = None
    faithfulness_images: int = 16
    native_grid_statistics: bool = True
    seed: int = 42
    split: str = "auto"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    crop: str | None = None
    verbose: int | str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def preset(
        cls, pipeline: str, out: str, *, quick: bool, data: str | None = None, **overrides
    ) -> ReproduceConfig:
        """The paper (``quick=False``) or quick/demo settings, with ``overrides`` applied."""
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(PIPELINES)}")
        kidney = pipeline == KIDNEY
        base: dict[str, Any] = {
            "pipeline": pipeline,
            "out": str(out),
            "data": None if data is None else str(data),
            "image_size": 224 if kidney else 240,
            "epochs": 30 if kidney else 20,
            "freeze_epochs": 0 if kidney else 3,
            # Kidney CT keeps the body and drops the scanner table (an acquisition shortcut of
            # the public data); the brain paper crops every image to the brain's contour.
            "crop": "body" if kidney else "brain",
            # Independent phantoms have no neighbouring slices: a stratified split is leak-free.
            "split": "auto" if data is not None else "stratified",
        }
        if quick:
            base.update(QUICK[pipeline])
        base.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(base.get("weights"), str) and base["weights"].lower() == "none":
            base["weights"] = None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(base) - known
        if unknown:
            raise ValueError(f"unknown reproduce settings: {', '.join(sorted(unknown))}")
        config = cls(**base)
        config.validate()
        return config

    def validate(self) -> None:
        if self.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline {self.pipeline!r}")
        for name in ("image_size", "batch_size", "epochs", "phantom_per_class"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pipeline == KIDNEY and self.finetune_epochs < 1:
            raise ValueError(f"finetune_epochs must be >= 1, got {self.finetune_epochs}")
        if self.finetune_unfreeze_top is not None and self.finetune_unfreeze_top < 0:
            raise ValueError(
                f"finetune_unfreeze_top must be >= 0 or None, got {self.finetune_unfreeze_top}"
            )
        for name in ("cam_weight", "outside_weight", "mask_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cam_method not in FOSTERING_CAM_METHODS:
            raise ValueError(
                f"cam_method must be one of {FOSTERING_CAM_METHODS}, got {self.cam_method!r}"
            )
        if self.crop not in (None, "body", "brain"):
            raise ValueError(f"crop must be body, brain or None, got {self.crop!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The quick presets. Kidney = ``kidney-tf demo``: ResNet-50 from scratch at 128 px on 1600 phantoms
# with lesions 4x their public-data size (at 1.0 a from-scratch network on a CPU stays near 0.5
# accuracy within the budget: a stone is then 2-3 px wide), BN momentum 0.9 (with the default 0.99
# the moving statistics lag far behind the weights in a short run from scratch and eval-mode
# accuracy stays at chance), then three epochs fostering the Grad-CAM++ map (closed form) with
# the backbone frozen. Fine-tuning the whole network sharpened the maps where the baseline
# already looked, mostly off the lesions (CAM mass in the lesion masks fell 8 %); the head alone
# can only re-weight the baseline's features, and then the mass in the masks rose 7 % at the
# same entropy drop. λ is large because only the 2048x4 head weights move.
QUICK: dict[str, dict[str, Any]] = {
    KIDNEY: {
        "image_size": 128,
        "batch_size": 16,
        "epochs": 7,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "patience": 0,
        "weights": None,
        "freeze_epochs": 0,
        "bn_momentum": 0.9,
        "finetune_epochs": 3,
        "finetune_lr": 3e-3,
        "finetune_unfreeze_top": 0,
        "cam_weight": 10.0,
        "cam_method": "gradcam++",
        "phantom_per_class": 400,
        "phantom_image_size": 160,
        "phantom_lesion_scale": 4.0,
        "max_cam_images": None,  # all 240 test images: 180 with a lesion mask
    },
    BRAIN: {
        "image_size": 128,
        "batch_size": 16,
        "epochs": 6,
        "lr": 1e-3,
        "lr_schedule": "cosine",
        "patience": 0,
        "weights": None,
        "freeze_epochs": 0,
        "bn_momentum": 0.9,
        "phantom_per_class": 60,
        "phantom_image_size": 160,
        "max_cam_images": 64,
    },
}


# ------------------------------------------------------------------------------------ stages
def _stage_data(config: ReproduceConfig, out: Path) -> dict[str, Any]:
    if config.data is None:
        from kidney_tf.data.phantoms import generate_phantoms

        kind = PHANTOM_KIND[config.pipeline]
        manifest = generate_phantoms(
            kind,
            out / "data" / kind,
            per_class=config.phantom_per_class,
            image_size=config.phantom_image_size,
            seed=config.seed,
            lesion_scale=config.phantom_lesion_scale,
        )
        root = Path(manifest).parent
        return {"root": str(root), "phantom": True, "kind": kind, "layout": "phantoms"}
    layout = find_dataset_root(config.data, config.pipeline)
    log.info("data: %s", layout.describe())
    return {"root": str(layout.root), "phantom": False, "layout": layout.kind}


def _stage_verify(config: ReproduceConfig, data: dict[str, Any], out: Path) -> dict[str, Any]:
    from kidney_tf.data.verify import verify_dataset

    manifest = None if data["phantom"] else DATASET_MANIFEST[config.pipeline]
    # Phantoms are independent renders of one anatomical template: perceptual hashes of two of
    # them often differ by only a few bits, so near-duplicate search would flag hundreds of
    # false pairs. Exact duplicates are still checked.
    options = {"max_distance": 0} if data["phantom"] else {}
    report = verify_dataset(data["root"], manifest, **options)
    path = report.write_json(out / "verify.json")
    for line in report.summary().splitlines():
        log.info("verify: %s", line)
    if not report.ok:
        log.warning("data verification found problems (see %s); continuing", path)
    return {
        "report": str(path),
        "ok": bool(report.ok),
        "n_images": int(report.n_images),
        "class_names": list(report.class_names),
        "errors": len(report.errors),
        "warnings": len(report.warnings),
    }


def _stage_crop(config: ReproduceConfig, root: str, out: Path) -> dict[str, Any]:
    """The brain paper's crop of every image file, once, before training (mirrored tree)."""
    from kidney_tf.data.crop import crop_folder

    dst = out / "data" / "cropped"
    summary = crop_folder(
        root,
        dst,
        mode="brain",
        size=config.image_size,
        overwrite=dst.exists(),  # a half-finished earlier attempt: crop_folder renames at the end
        progress=config.verbose not in (0, "0"),
    )
    for line in summary.format(max_items=5).splitlines():
        log.info("crop: %s", line)
    return {
        "root": str(dst),
        "cropped": summary.cropped,
        "masks": summary.masks,
        "fallback": len(summary.fallback),
        "skipped": len(summary.skipped),
    }


def _train(
    config: ReproduceConfig,
    data_root: str,
    run: Path,
    *,
    crop: str | None,
    same_split_as: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    from kidney_tf.training.trainer import TrainConfig, train

    settings: dict[str, Any] = {
        "out": str(run),
        "data": data_root,
        "arch": ARCH[config.pipeline],
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "weights": config.weights,
        "freeze_epochs": config.freeze_epochs,
        "patience": config.patience,
        "bn_momentum": config.bn_momentum,
        "seed": config.seed,
        "split": config.split,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "crop": crop,
        "verbose": config.verbose,
    }
    settings.update(kwargs)
    start = time.perf_counter()
    result = train(TrainConfig(**settings))
    seconds = time.perf_counter() - start
    if same_split_as is not None:
        _check_same_split(Path(same_split_as), run / "split.csv")
    epochs = len(next(iter(result.history.values()), []))
    return {
        "run": str(run),
        "model": str(run / "model.keras"),
        "split_csv": str(run / "split.csv"),
        "test_metrics": result.test_metrics,
        "epochs_run": epochs,
        "seconds": round(seconds, 2),
        "seconds_per_epoch": round(seconds / max(1, epochs), 2),
        "history": {k: [round(float(x), 6) for x in v] for k, v in result.history.items()},
    }


def _check_same_split(expected: Path, actual: Path) -> None:
    """The fine-tune rebuilds the split from the same data and seed; make sure it is identical.

    (``TrainConfig.split_csv`` cannot point at a split whose paths lie outside the run folder.)
    """
    if expected.read_text() != actual.read_text():
        raise RuntimeError(
            f"{actual}: the fine-tune's train/val/test split differs from the baseline's "
            f"{expected}; the comparison would not be on the same test images"
        )


def _evaluate(
    config: ReproduceConfig,
    model_path: str,
    split_csv: str,
    report: Path,
    *,
    data_root: str,
    crop: str | None,
    foreground: str,
) -> dict[str, Any]:
    from kidney_tf._loading import load_model
    from kidney_tf.evaluation.report import evaluate_model

    model = load_model(model_path)
    metrics = evaluate_model(
        model,
        split_csv,
        out_dir=report,
        split="test",
        method="gradcam++",
        crop=crop or "none",
        foreground=foreground,
        max_cam_images=config.max_cam_images,
        faithfulness_images=config.faithfulness_images,
        batch_size=config.batch_size,
        data_root=data_root,
    )
    result = headline(metrics)
    if config.native_grid_statistics and result.get("cam_images"):
        from kidney_tf.evaluation.report import model_input_size
        from kidney_tf.pipelines.native_grid import (
            native_grid_statistics,
            upsampled_entropy_floor,
        )

        result.update(
            native_grid_statistics(
                model,
                split_csv,
                data_root=data_root,
                crop=crop,
                max_images=config.max_cam_images,
                batch_size=config.batch_size,
            )
        )
        if result.get("cam_grid"):
            result["entropy_floor"] = upsampled_entropy_floor(
                tuple(result["cam_grid"]), model_input_size(model)
            )
    return {"report": str(report), "metrics": result}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers the summary shows, from an evaluation's ``metrics.json`` dict."""
    from kidney_tf.evaluation.schema import HEADLINE_METRICS, chance_value, metric_value

    values = {spec.key: metric_value(metrics, spec.key) for spec in HEADLINE_METRICS}
    chance = {spec.key: chance_value(metrics, spec.key) for spec in HEADLINE_METRICS}
    support = [row.get("support", 0) for row in (metrics.get("per_class") or {}).values()]
    cam = metrics.get("cam") or {}
    return {
        **values,
        "chance": {k: v for k, v in chance.items() if v is not None},
        "n_images": metrics.get("n_images"),
        "majority_fraction": (max(support) / sum(support)) if support and sum(support) else None,
        "cam_images": cam.get("n_images"),
        "cam_with_mask": cam.get("n_with_mask"),
        "cam_grid": cam.get("native_grid"),
        "shortcut_warnings": list(cam.get("shortcut_warnings") or []),
    }


def _compare(evaluations: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    from kidney_tf.evaluation.compare import compare_reports

    target = out / "reports" / "comparison"
    result = compare_reports(
        evaluations["baseline"]["report"],
        evaluations["fostered"]["report"],
        target,
        labels=("baseline", "fostered"),
        reference="kidney",
    )
    return {"comparison": str(target), "warnings": list(result.get("warnings") or [])}


def _export(model_path: str, out: Path, crop: str | None) -> dict[str, Any]:
    from kidney_tf._loading import load_model
    from kidney_tf.export.saved_model import export_saved_model

    target = out / "export" / "1"
    path = export_saved_model(
        load_model(model_path),
        target,
        crop=crop or "none",
        overwrite=target.exists(),
        source=model_path,
    )
    return {"export": str(path)}


# ---------------------------------------------------------------------------------- pipeline
def reproduce(
    pipeline: str,
    out: str | Path,
    *,
    quick: bool = False,
    data: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) a paper's pipeline; returns the summary dict also written to OUT.

    ``OUT/summary.json`` and ``OUT/summary.md`` hold the measured figures next to the paper's;
    ``OUT/reports/`` the evaluation reports; ``OUT/export/1`` the SavedModel.

    Usage: ``summary = reproduce("brain-mri-efficientnet", "runs/brain", quick=True)``.
    """
    config = ReproduceConfig.preset(
        pipeline, str(out), quick=quick, data=None if data is None else str(data), **overrides
    )
    out = ensure_writable_dir(config.out)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    params = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_KEYS}
    runner = StageRunner(out, params=params, resumable_keys=RESUMABLE_KEYS)
    kidney = config.pipeline == KIDNEY

    data_info = runner.run("data", lambda: _stage_data(config, out))  # refuses other settings
    write_json_atomic(out / "reproduce.json", {"quick": quick, **config.to_dict()})
    runner.run("verify", lambda: _stage_verify(config, data_info, out))
    root = data_info["root"]
    # Kidney: the body crop runs inside the tf.data pipeline (and in the SavedModel).
    # Brain: the paper crops the image files once; training then sees cropped files.
    train_crop, serving_crop, foreground = config.crop, config.crop, "body"
    if not kidney:
        foreground = "brain"
        if config.crop == "brain":
            root = runner.run("crop", lambda: _stage_crop(config, data_info["root"], out))["root"]
            train_crop = None

    baseline = runner.run(
        "train_baseline",
        # λ = 0; the CAM method only sets which map test_step's cam_entropy measures, so both
        # models report the entropy of the map the fine-tune penalises.
        lambda: _train(
            config,
            root,
            out / "baseline",
            crop=train_crop,
            cam_weight=0.0,
            cam_method=config.cam_method,
            cam_layer=config.cam_layer,
        ),
    )
    models = {"baseline" if kidney else "model": baseline}
    if kidney:
        models["fostered"] = runner.run(
            "train_fostered",
            lambda: _train(
                config,
                root,
                out / "fostered",
                crop=train_crop,
                init=baseline["model"],
                cam_weight=config.cam_weight,
                cam_method=config.cam_method,
                cam_layer=config.cam_layer,
                outside_weight=config.outside_weight,
                mask_weight=config.mask_weight,
                epochs=config.finetune_epochs,
                lr=config.finetune_lr,
                freeze_epochs=0,
                unfreeze_top=config.finetune_unfreeze_top,
                same_split_as=baseline["split_csv"],
            ),
        )
    evaluations = {
        name: runner.run(
            f"evaluate_{name}",
            lambda m=m, name=name: _evaluate(
                config,
                m["model"],
                baseline["split_csv"],
                out / "reports" / name,
                data_root=root,
                crop=train_crop,
                foreground=foreground,
            ),
        )
        for name, m in models.items()
    }
    comparison = runner.run("compare", lambda: _compare(evaluations, out)) if kidney else None
    final = models["fostered" if kidney else "model"]
    export = runner.run("export", lambda: _export(final["model"], out, serving_crop))

    summary = build_summary(
        config=config.to_dict(),
        quick=quick,
        data_info=data_info,
        trainings=models,
        evaluations=evaluations,
        comparison=comparison,
        export=export,
        stage_seconds=runner.seconds(),
        resumed=list(runner.skipped),
        wall_seconds=time.perf_counter() - started,
        cpu_seconds=_cpu_seconds() - cpu_started,
    )
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", summary_table(summary))
    return summary


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children, in seconds.

    On a shared machine wall time depends on the other load; CPU time does not, so the summary
    reports both (wall on N free cores ≈ CPU / N for TensorFlow's parallel kernels).
    """
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load_summary(out: str | Path) -> dict[str, Any]:
    """Read ``OUT/summary.json`` of a finished run."""
    path = Path(out) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no summary (the run has not finished)")
    return json.loads(path.read_text())
