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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kidney_tf.pipelines.layout import find_dataset_root
from kidney_tf.pipelines.stages import StageRunner
from kidney_tf.pipelines.summary import PAPER_RESULTS, build_summary, summary_table
from kidney_tf.recipes import (
    BRAIN,
    FINETUNE_PREFIX,
    FOSTERING_WEIGHTS,
    KIDNEY,
    PIPELINES,
    REPRODUCE_SETTINGS,
    Recipe,
    parse_crop,
    recipe,
)
from kidney_tf.utils.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from kidney_tf.utils.logging import get_logger

if TYPE_CHECKING:
    from kidney_tf.training.trainer import TrainConfig

log = get_logger(__name__)

# Settings that may change when a run is resumed (top level and inside the training configs).
RESUMABLE_KEYS = ("verbose", "out")

__all__ = [
    "BRAIN",
    "KIDNEY",
    "PAPER_RESULTS",
    "PIPELINES",
    "ReproduceConfig",
    "reproduce",
    "setting_names",
    "summary_table",
]


def setting_names() -> frozenset[str]:
    """Every key a preset or an override may set (``kidney_tf.recipes`` docstring)."""
    from kidney_tf.training.trainer import TrainConfig

    train = {f.name for f in dataclasses.fields(TrainConfig)}
    return frozenset(train | {FINETUNE_PREFIX + name for name in train} | set(REPRODUCE_SETTINGS))


@dataclass
class ReproduceConfig:
    """A reproduce run: a recipe's preset, as one :class:`TrainConfig` plus overrides.

    ``train`` holds the training settings of every stage (``out``/``data`` are filled in per
    stage; the baseline trains with λ = 0, ``train.cam_weight`` is the fostering stage's λ).
    ``finetune`` holds the TrainConfig fields the CAM-fostering fine-tune changes (recipes
    that foster); :meth:`finetune_config` applies them. The rest are the reproduce settings.
    Build one with :meth:`preset`.

    Usage: ``ReproduceConfig.preset("kidney-cam-fostering", "runs/k", quick=True).train.epochs``.
    """

    pipeline: str
    out: str
    train: TrainConfig
    data: str | None = None
    preset_name: str = "paper"
    finetune: dict[str, Any] = field(default_factory=dict)
    phantom_per_class: int = 150
    phantom_image_size: int = 256
    phantom_lesion_scale: float = 1.0
    max_cam_images: int | None = None
    faithfulness_images: int = 16
    native_grid_statistics: bool = True

    @property
    def recipe(self) -> Recipe:
        return recipe(self.pipeline)

    @classmethod
    def preset(
        cls,
        pipeline: str,
        out: str,
        *,
        quick: bool = False,
        preset: str | None = None,
        data: str | None = None,
        **overrides: Any,
    ) -> ReproduceConfig:
        """The recipe's ``preset`` (``quick=True``: ``"quick"``; default ``"paper"``), with
        ``overrides`` (keys as in presets; None values are ignored) applied."""
        from kidney_tf.training.trainer import TrainConfig

        name = preset or ("quick" if quick else "paper")
        settings = recipe(pipeline).settings(name)
        # Independent phantoms have no neighbouring slices: a stratified split is leak-free.
        settings.setdefault("split", "auto" if data is not None else "stratified")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(settings) - setting_names()
        if unknown:
            raise ValueError(f"unknown reproduce settings: {', '.join(sorted(unknown))}")
        own = {k: settings.pop(k) for k in REPRODUCE_SETTINGS if k in settings}
        finetune = {
            k[len(FINETUNE_PREFIX) :]: settings.pop(k)
            for k in list(settings)
            if k.startswith(FINETUNE_PREFIX)
        }
        config = cls(
            pipeline=pipeline,
            out=str(out),
            data=None if data is None else str(data),
            preset_name=name,
            train=TrainConfig(**{**settings, "out": str(out)}),
            finetune=finetune,
            **own,
        )
        config.validate()
        return config

    def finetune_config(self) -> TrainConfig:
        """The fostering stage's settings: ``train`` with ``finetune`` applied (no head phase)."""
        return dataclasses.replace(self.train, **{"freeze_epochs": 0, **self.finetune})

    def validate(self) -> None:
        fostering = recipe(self.pipeline).fostering
        self.train.check_settings()
        if self.phantom_per_class < 1:
            raise ValueError(f"phantom_per_class must be >= 1, got {self.phantom_per_class}")
        if not fostering:
            return
        epochs, top = self.finetune.get("epochs", 1), self.finetune.get("unfreeze_top")
        if epochs < 1:
            raise ValueError(f"finetune_epochs must be >= 1, got {epochs}")
        if top is not None and top < 0:
            raise ValueError(f"finetune_unfreeze_top must be >= 0 or None, got {top}")
        self.finetune_config().check_settings()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        return data


def _stage_params(config: ReproduceConfig) -> dict[str, Any]:
    """What a recorded stage must have run with (``RESUMABLE_KEYS`` left out at every level)."""
    data = config.to_dict()
    data["train"] = {k: v for k, v in data["train"].items() if k not in RESUMABLE_KEYS}
    return {k: v for k, v in data.items() if k not in RESUMABLE_KEYS}


# ------------------------------------------------------------------------------------ stages
def _stage_data(config: ReproduceConfig, out: Path) -> dict[str, Any]:
    if config.data is None:
        from kidney_tf.data.phantoms import generate_phantoms

        kind = config.recipe.phantom_kind
        manifest = generate_phantoms(
            kind,
            out / "data" / kind,
            per_class=config.phantom_per_class,
            image_size=config.phantom_image_size,
            seed=config.train.seed,
            lesion_scale=config.phantom_lesion_scale,
        )
        root = Path(manifest).parent
        return {"root": str(root), "phantom": True, "kind": kind, "layout": "phantoms"}
    layout = find_dataset_root(config.data, config.pipeline)
    log.info("data: %s", layout.describe())
    return {"root": str(layout.root), "phantom": False, "layout": layout.kind}


def _stage_verify(config: ReproduceConfig, data: dict[str, Any], out: Path) -> dict[str, Any]:
    from kidney_tf.data.verify import verify_dataset

    manifest = None if data["phantom"] else config.recipe.dataset_manifest
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
    """The paper's crop of every image file, once, before training (mirrored tree)."""
    from kidney_tf.data.crop import crop_folder

    dst = out / "data" / "cropped"
    summary = crop_folder(
        root,
        dst,
        mode=config.train.crop,
        size=config.train.image_size,
        overwrite=dst.exists(),  # a half-finished earlier attempt: crop_folder renames at the end
        progress=config.train.verbose not in (0, "0"),
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


def _train(settings: TrainConfig, *, same_split_as: str | None = None) -> dict[str, Any]:
    from kidney_tf.training.trainer import train

    run = Path(settings.out)
    start = time.perf_counter()
    result = train(settings)
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
        batch_size=config.train.batch_size,
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
                batch_size=config.train.batch_size,
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
    preset: str | None = None,
    data: str | Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Run (or resume) a paper's pipeline; returns the summary dict also written to OUT.

    ``preset`` names one of the recipe's presets (``quick=True`` is ``preset="quick"``; default
    ``"paper"``); ``overrides`` are preset keys (``kidney_tf.recipes``).

    ``OUT/summary.json`` and ``OUT/summary.md`` hold the measured figures next to the paper's;
    ``OUT/reports/`` the evaluation reports; ``OUT/export/1`` the SavedModel.

    Usage: ``summary = reproduce("brain-mri-efficientnet", "runs/brain", quick=True)``.
    """
    config = ReproduceConfig.preset(
        pipeline,
        str(out),
        quick=quick,
        preset=preset,
        data=None if data is None else str(data),
        **overrides,
    )
    quick = config.preset_name == "quick"
    out = ensure_writable_dir(config.out)
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    runner = StageRunner(out, params=_stage_params(config), resumable_keys=RESUMABLE_KEYS)
    fostering = config.recipe.fostering

    data_info = runner.run("data", lambda: _stage_data(config, out))  # refuses other settings
    write_json_atomic(out / "reproduce.json", {"quick": quick, **config.to_dict()})
    runner.run("verify", lambda: _stage_verify(config, data_info, out))
    root = data_info["root"]
    # Kidney: the body crop runs inside the tf.data pipeline (and in the SavedModel).
    # Brain: the paper crops the image files once; training then sees cropped files.
    train_crop = serving_crop = parse_crop(config.train.crop)
    foreground = config.recipe.foreground
    if config.recipe.crop_files and train_crop is not None:
        root = runner.run("crop", lambda: _stage_crop(config, data_info["root"], out))["root"]
        train_crop = None
    stage = dataclasses.replace(config.train, data=root, crop=train_crop)

    baseline = runner.run(
        "train_baseline",
        # λ = 0 (every fostering term off); the CAM method and layer only set which map test_step's cam_entropy measures, so both
        # models report the entropy of the map the fine-tune penalises.
        lambda: _train(
            dataclasses.replace(
                stage,
                out=str(out / "baseline"),
                **dict.fromkeys(FOSTERING_WEIGHTS, 0.0),
            )
        ),
    )
    models = {"baseline" if fostering else "model": baseline}
    if fostering:
        finetune = dataclasses.replace(
            config.finetune_config(), data=root, crop=train_crop, out=str(out / "fostered")
        )
        models["fostered"] = runner.run(
            "train_fostered",
            lambda: _train(
                dataclasses.replace(finetune, init=baseline["model"]),
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
    comparison = runner.run("compare", lambda: _compare(evaluations, out)) if fostering else None
    final = models["fostered" if fostering else "model"]
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
