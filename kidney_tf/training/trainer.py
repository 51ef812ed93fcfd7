"""One training run, as the ``kidney-tf train`` command and the reproduce pipelines use it.

A run folder holds everything needed to understand and re-run it::

    RUN/config.json     the TrainConfig (+ versions), written before training starts
    RUN/split.csv       the exact train/val/test split used
    RUN/model.keras     the final model (CamFosteringModel, loads with safe_mode=True)
    RUN/best.keras      the best model by validation loss
    RUN/history.csv     per-epoch metrics (loss, ce_loss, cam_entropy, accuracy, val_*, images/s)
    RUN/curves.png      accuracy and loss curves, train and val
    RUN/test_metrics.json  loss/accuracy/cam_entropy on the test split
    RUN/backup/         Keras BackupAndRestore state while a run is unfinished

Running the same command again after an interruption resumes from the last backup.

Usage::

    from kidney_tf.training.trainer import TrainConfig, train
    result = train(TrainConfig(data="phantoms/", out="runs/base", arch="resnet50",
                               image_size=128, epochs=5, weights=None))
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.utils.io import atomic_path, ensure_writable_dir, write_json_atomic
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")
LR_SCHEDULES = ("plateau", "cosine", "constant")
# Settings that may differ between an interrupted run and its resumption.
_RESUMABLE_KEYS = {"verbose"}


@dataclass
class TrainConfig:
    """Settings of one training run. Defaults reproduce the kidney paper's baseline.

    ``lr=None`` picks 1e-3 for a new model and 1e-4 when fine-tuning ``init``.
    ``freeze_epochs`` > 0 trains the head alone first (transfer learning), then unfreezes
    ``unfreeze_top`` backbone blocks (all when None) at a tenth of the learning rate.
    """

    out: str
    data: str | None = None
    arch: str = "resnet50"
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None
    cam_weight: float = 0.0
    cam_method: str = "exact"
    init: str | None = None
    crop: str | None = None
    weights: str | None = "imagenet"
    strategy: str = "default"
    mixed_precision: bool = False
    jit_compile: bool = False
    split: str = "auto"
    split_csv: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42
    augment: bool = True
    patience: int = 5
    lr_schedule: str = "plateau"
    freeze_epochs: int = 0
    unfreeze_top: int | None = None
    steps_per_epoch: int | None = None
    bn_momentum: float | None = None
    head_units: tuple[int, ...] = ()
    dropout: float = 0.0
    strict: bool = False
    cache: bool = True
    verbose: int | str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 1e-4 if self.init else 1e-3

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["head_units"] = list(self.head_units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "head_units" in data:
            data["head_units"] = tuple(data["head_units"])
        return cls(**data)

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.cam_weight < 0:
            raise ValueError(f"cam_weight must be >= 0, got {self.cam_weight}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.crop not in (None, "brain", "body"):
            raise ValueError(f"crop must be brain, body or None, got {self.crop!r}")
        if self.data is None:
            raise ValueError("no training data: pass a folder or a manifest CSV")
        if not Path(self.data).exists():
            raise FileNotFoundError(f"{self.data}: training data not found")
        if self.init is not None and not Path(self.init).is_file():
            raise FileNotFoundError(f"{self.init}: --init model not found")


@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    class_names: list[str]
    resumed: bool = False


def make_strategy(name: str):
    """The ``tf.distribute`` strategy for ``name`` (``multiworker`` reads ``TF_CONFIG``)."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """True on the worker that writes the run's outputs (always true without multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
    )


def _worker_dir(run_dir: Path, strategy) -> Path:
    """Non-chief workers write their (required, identical) saves into a private temp folder."""
    if is_chief(strategy):
        return run_dir
    resolver = strategy.cluster_resolver
    return run_dir / f".worker-{resolver.task_type}-{resolver.task_id}"


def _check_resume(run_dir: Path, config: TrainConfig) -> bool:
    """Return True when ``run_dir`` holds an interrupted run of the same config."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        if (run_dir / "model.keras").exists():
            raise FileExistsError(
                f"{run_dir}: holds a model.keras but no config.json; use a new --out"
            )
        return False
    saved = json.loads(config_path.read_text()).get("train", {})
    current = config.to_dict()
    diff = sorted(
        k
        for k in set(saved) | set(current)
        if k not in _RESUMABLE_KEYS and saved.get(k) != current.get(k)
    )
    if diff:
        raise FileExistsError(
            f"{run_dir}: holds a run with different settings ({', '.join(diff)}); "
            "use a new --out folder"
        )
    if (run_dir / "model.keras").is_file() and not (run_dir / "backup").exists():
        raise FileExistsError(
            f"{run_dir}: this run already finished (model.keras); use a new --out"
        )
    return True


def _environment() -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from kidney_tf import __version__

    return {
        "kidney_tf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": sys.version.split()[0],
        "command": sys.argv,
    }


def _build_model(config: TrainConfig, class_names: list[str], image_size: int):
    from kidney_tf._loading import load_model
    from kidney_tf.models.builders import build_classifier
    from kidney_tf.models.heads import HeadConfig
    from kidney_tf.training.fostering import CamFosteringModel

    metadata = {"arch": config.arch, "image_size": image_size, "crop": config.crop}
    if config.init:
        base = load_model(config.init, compile=False)
        saved_names = list(getattr(base, "class_names", None) or [])
        if saved_names and saved_names != list(class_names):
            raise ValueError(
                f"{config.init}: model classes {saved_names} differ from the data's {class_names}"
            )
        input_size = base.input_shape[1]
        if input_size is not None and input_size != image_size:
            raise ValueError(
                f"{config.init}: model input is {input_size} px but --image-size is {image_size}"
            )
        metadata = {**(getattr(base, "metadata", None) or {}), **metadata}
    else:
        head = HeadConfig(hidden_units=tuple(config.head_units), dropout=config.dropout)
        base = build_classifier(
            config.arch,
            num_classes=len(class_names),
            image_size=image_size,
            weights=config.weights,
            head=head,
            bn_momentum=config.bn_momentum,
            class_names=class_names,
        )
    return CamFosteringModel.from_classifier(
        base,
        cam_weight=config.cam_weight,
        cam_method=config.cam_method,
        class_names=list(class_names),
        metadata=metadata,
    )


def _compile(model, config: TrainConfig, class_weights: dict[int, float], lr: float) -> None:
    import keras

    from kidney_tf.training.losses import WeightedCrossEntropy

    weights = [float(class_weights[i]) for i in range(len(class_weights))]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=WeightedCrossEntropy(weights),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )


def _callbacks(config: TrainConfig, out_dir: Path, backup_dir: Path, epochs: int, lr: float):
    import keras

    from kidney_tf.training.callbacks import AtomicBestCheckpoint, StopOnNaN, Throughput

    callbacks = [
        keras.callbacks.BackupAndRestore(str(backup_dir)),
        Throughput(config.batch_size),
        StopOnNaN(),
        AtomicBestCheckpoint(out_dir / "best.keras", monitor="val_loss"),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
    ]
    if config.patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, verbose=1)
        )
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2), verbose=1
            )
        )
    elif config.lr_schedule == "cosine":
        import math

        def cosine(epoch, _lr):
            return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))

        callbacks.append(keras.callbacks.LearningRateScheduler(cosine))
    return callbacks


def _dedupe_history(path: Path) -> dict[str, list[float]]:
    """Read history.csv keeping the last row of each epoch (a resumed epoch is logged twice)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_epoch: dict[str, dict[str, str]] = {}
    for row in rows:
        if row.get("epoch") == "epoch":  # a repeated header after append
            continue
        by_epoch[row["epoch"]] = row
    ordered = [by_epoch[k] for k in sorted(by_epoch, key=lambda e: int(e))]
    if ordered:
        fields = list(ordered[0].keys())
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(ordered)
    history: dict[str, list[float]] = {}
    for row in ordered:
        for key, value in row.items():
            if key == "epoch" or value in (None, ""):
                continue
            history.setdefault(key, []).append(float(value))
    return history


def train(config: TrainConfig) -> TrainResult:
    """Run one training (resuming an interrupted one in the same folder) and return its result."""
    config.validate()
    run_dir = ensure_writable_dir(config.out)
    resumed = _check_resume(run_dir, config)

    import keras

    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    out_dir = ensure_writable_dir(_worker_dir(run_dir, strategy))
    keras.utils.set_random_seed(config.seed)

    from kidney_tf.data.pipeline import build_datasets
    from kidney_tf.data.splits import write_split_csv
    from kidney_tf.models.builders import ARCHITECTURES

    image_size = config.image_size or ARCHITECTURES[config.arch]["image_size"]
    source = config.split_csv or config.data
    bundle = build_datasets(
        source,
        image_size=image_size,
        batch_size=config.batch_size,
        split="folders" if config.split_csv else config.split,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        crop=config.crop,
        augment=config.augment,
        cache=config.cache,
        strict=config.strict,
    )
    log.info(bundle.describe())
    if chief:
        write_json_atomic(
            run_dir / "config.json",
            {
                "train": config.to_dict(),
                "image_size": image_size,
                "class_names": bundle.class_names,
                "class_weights": {str(k): v for k, v in bundle.class_weights.items()},
                "counts": bundle.counts,
                "bad_files": [dataclasses.asdict(b) for b in bundle.bad_files],
                "environment": _environment(),
            },
        )
        write_split_csv(bundle.records, run_dir / "split.csv")

    lr = config.resolved_lr()
    with strategy.scope():
        model = _build_model(config, bundle.class_names, image_size)
        _compile(model, config, bundle.class_weights, lr)

    fit_kwargs = {"validation_data": bundle.val, "verbose": config.verbose}
    if config.steps_per_epoch:
        fit_kwargs["steps_per_epoch"] = config.steps_per_epoch
    head_epochs = min(config.freeze_epochs, config.epochs) if not config.init else 0
    if head_epochs > 0:
        from kidney_tf.models.builders import set_backbone_trainable, unfreeze_top

        marker = run_dir / "head_phase.done"
        if not marker.exists():
            with strategy.scope():
                set_backbone_trainable(model, False)
                _compile(model, config, bundle.class_weights, lr)
            model.fit(
                bundle.train,
                epochs=head_epochs,
                callbacks=_callbacks(config, out_dir, out_dir / "backup" / "head", head_epochs, lr),
                **fit_kwargs,
            )
            model.save_weights(out_dir / "head_phase.weights.h5")
            if chief:
                marker.write_text("head phase finished\n")
        else:
            model.load_weights(run_dir / "head_phase.weights.h5")
        with strategy.scope():
            if config.unfreeze_top is None:
                set_backbone_trainable(model, True)
            else:
                unfreeze_top(model, config.unfreeze_top)
            lr = lr * 0.1
            _compile(model, config, bundle.class_weights, lr)

    if config.epochs > head_epochs:
        model.fit(
            bundle.train,
            initial_epoch=head_epochs,
            epochs=config.epochs,
            callbacks=_callbacks(config, out_dir, out_dir / "backup", config.epochs, lr),
            **fit_kwargs,
        )

    test_metrics: dict[str, float] = {}
    if bundle.test is not None:
        test_metrics = {
            k: float(v) for k, v in model.evaluate(bundle.test, verbose=0, return_dict=True).items()
        }
    with atomic_path(out_dir / "model.keras", suffix=".keras") as tmp:
        model.save(tmp)
    history = _dedupe_history(out_dir / "history.csv")
    if chief:
        write_json_atomic(run_dir / "test_metrics.json", test_metrics)
        _plot_curves(history, run_dir / "curves.png")
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
    else:
        shutil.rmtree(out_dir, ignore_errors=True)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("float32")
    return TrainResult(run_dir, history, test_metrics, list(bundle.class_names), resumed)


def _plot_curves(history: dict[str, list[float]], path: Path) -> None:
    if not history:
        return
    from kidney_tf.evaluation.figures import plot_history

    plot_history(history, path)
