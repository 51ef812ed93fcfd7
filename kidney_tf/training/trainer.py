"""One training run, as the ``kidney-tf train`` command and the reproduce pipelines use it.

A run folder holds everything needed to understand and re-run it::

    RUN/config.json        the TrainConfig (absolute paths) + data summary + versions; written
                           before training starts; ``kidney-tf train --config`` re-runs it
    RUN/split.csv          the exact train/val/test split used
    RUN/model.keras        the final model (CamFosteringModel, loads with safe_mode=True)
    RUN/best.keras         the best model by validation loss (training loss without a val split)
    RUN/history.csv        one row per epoch (loss, ce_loss, cam_entropy, accuracy, val_*,
                           images_per_sec, learning_rate)
    RUN/curves.png         accuracy and loss curves, train and val
    RUN/test_metrics.json  loss/accuracy/cam_entropy on the test split
    RUN/backup/            the resumable state while the run is unfinished (see below)

Resuming: the same command (same settings) on the same folder continues an interrupted run
from its last backup (every ``backup_every`` steps and at each epoch end), mid-epoch included.
Training reads one endless, seeded stream of full batches (epoch ``e`` = batches
``e*n .. e*n+n-1``; a split's last partial batch is completed from the next shuffled pass);
with ``deterministic=True`` a resumed run replays the stream up to where it stopped (the data
pipeline runs again, the model does not) and enables TensorFlow op determinism, so it ends with
the same weights as an uninterrupted run. Without it, a resumed run continues with a freshly
shuffled stream (quicker to restart, statistically equivalent).

Distribution (``strategy``): see :mod:`kidney_tf.training.distribute`. ``batch_size`` is the
global batch. Deterministic resumption is exact on one device.

Usage::

    from kidney_tf.training.trainer import TrainConfig, train
    result = train(TrainConfig(data="phantoms/", out="runs/base", arch="resnet50",
                               image_size=128, epochs=5, weights=None))
    print(result.test_metrics)
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.recipes import (
    DEFAULT_ARCH,
    DEFAULT_MASK_DILATION,
    FOSTERING_CAM_METHODS,
    FOSTERING_WEIGHTS,
    INPUT_NORMS,
    LR_SCHEDULES,
    SPLIT_METHODS,
    STRATEGIES,
    check_choice,
    default_image_size,
    parse_crop,
)
from kidney_tf.utils.io import (
    atomic_path,
    check_output_dir,
    ensure_writable_dir,
    input_tree,
    mark_output_dir,
    write_json_atomic,
)
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

# Settings that may differ between an interrupted run and its resumption.
_RESUMABLE_KEYS = frozenset({"verbose", "backup_every", "out"})
_PATH_KEYS = ("out", "data", "init", "split_csv")


@dataclass
class TrainConfig:
    """Settings of one training run. Defaults reproduce the kidney paper's baseline.

    ``arch=None`` means ResNet-50, or the ``init`` model's architecture; ``crop=None`` likewise
    means no crop, or the ``init`` model's crop (``"none"`` turns an ``init`` model's crop off). ``image_size=None``
    means the architecture's default (224 / 240) or the ``init`` model's input size.
    ``lr=None`` picks 1e-3 for a new model and 1e-4 when fine-tuning ``init``.
    ``freeze_epochs`` > 0 trains the head alone first (transfer learning), then unfreezes
    ``unfreeze_top`` backbone blocks (all when None) at a tenth of the learning rate.
    Without a head phase (e.g. fine-tuning ``init``), ``unfreeze_top`` = N trains only the top
    N blocks and the head (0: the head alone; frozen BatchNorm stays in inference mode).
    ``backup_every`` > 0 also backs up every that many steps (0: at epoch ends only).
    ``deterministic`` makes a resumed run end exactly like an uninterrupted one (module doc).
    ``augment`` is True (the paper's augmentation), False, or an ``AugmentConfig`` dict.
    ``ema`` > 0 keeps an exponential moving average of the weights with that momentum (Adam's
    ``use_ema``): validation, ``best.keras`` and ``model.keras`` use the averaged weights.
    ``input_norm="per-image"`` standardises each image's intensities inside the model (so a
    global brightness/contrast difference between classes is no shortcut; from scratch only).
    ``progress_every`` > 0 prints a progress line every that many seconds when the output is
    not a terminal (logs of long runs); 0 turns it off.

    Usage: ``TrainConfig(data="phantoms", out="runs/a", image_size=64, epochs=2, weights=None)``.
    """

    out: str
    data: str | None = None
    arch: str | None = None
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float | None = None
    cam_weight: float = 0.0
    cam_method: str = "gradcam++"
    cam_layer: str | None = None
    outside_weight: float = 0.0
    mask_weight: float = 0.0
    mask_dilation: int = DEFAULT_MASK_DILATION
    alive_weight: float = 0.0
    init: str | None = None
    crop: str | None = None
    weights: str | None = "imagenet"
    strategy: str = "default"
    cpu_replicas: int | None = None
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
    label_smoothing: float = 0.0
    ema: float = 0.0
    input_norm: str | None = None
    progress_every: float = 60.0
    strict: bool = False
    cache: bool = True
    deterministic: bool = False
    backup_every: int = 0
    verbose: int | str = "auto"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fostering(self) -> bool:
        """Whether any CAM-fostering term (entropy, outside foreground, off lesion, alive) is on."""
        return any(getattr(self, name) > 0 for name in FOSTERING_WEIGHTS)

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights.strip().lower() == "none":
            self.weights = None

    def resolved_lr(self) -> float:
        """The learning rate used: ``lr``, else 1e-4 when fine-tuning ``init``, else 1e-3."""
        if self.lr is not None:
            return float(self.lr)
        return 1e-4 if self.init else 1e-3

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["head_units"] = list(self.head_units)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(sorted(unknown))}")
        data = dict(data)
        if data.get("head_units") is not None:
            data["head_units"] = tuple(int(u) for u in data["head_units"])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Settings of a previous run (``RUN/config.json``), with ``overrides`` applied.

        Usage: ``TrainConfig.from_json("runs/a/config.json", out="runs/b", epochs=50)``.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: run configuration not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        settings = data.get("train") if isinstance(data, dict) else None
        if not isinstance(settings, dict):
            raise ValueError(f"{path}: no 'train' settings (not a kidney-tf run config.json)")
        return cls.from_dict({**settings, **overrides})

    def normalized(self) -> TrainConfig:
        """A copy with absolute paths (so config.json stays valid from any folder)."""
        changes: dict[str, Any] = {}
        for key in _PATH_KEYS:
            value = getattr(self, key)
            if value:
                changes[key] = os.path.abspath(os.path.expanduser(str(value)))
        if self.weights not in (None, "imagenet"):
            changes["weights"] = os.path.abspath(os.path.expanduser(str(self.weights)))
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Check every setting and the input files; raise ``ValueError``/``FileNotFoundError``
        with a one-line reason (before anything expensive happens)."""
        self.check_settings()
        self.check_files()

    def check_settings(self) -> None:
        """Check the values alone (no file is looked at); ``ValueError`` with a one-line reason."""
        check_choice(self.strategy, STRATEGIES, "strategy")
        if self.cpu_replicas is not None and (self.strategy != "mirrored" or self.cpu_replicas < 1):
            raise ValueError(
                f"cpu_replicas ({self.cpu_replicas}) needs strategy 'mirrored' and must be >= 1"
            )
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        check_choice(self.cam_method, FOSTERING_CAM_METHODS, "cam_method")
        check_choice(self.split, SPLIT_METHODS, "split")
        for name in FOSTERING_WEIGHTS:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.mask_dilation < 0:
            raise ValueError(f"mask_dilation must be >= 0 pixels, got {self.mask_dilation}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.image_size is not None and self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be positive, got {self.steps_per_epoch}")
        if self.backup_every < 0 or self.freeze_epochs < 0 or self.patience < 0:
            raise ValueError("backup_every, freeze_epochs and patience must be >= 0")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be a momentum in [0, 1) (0: off), got {self.ema}")
        check_choice(self.input_norm, INPUT_NORMS, "input_norm")
        if self.progress_every < 0:
            raise ValueError(f"progress_every must be >= 0 seconds, got {self.progress_every}")
        if isinstance(self.augment, dict):
            from kidney_tf.data.augment import AugmentConfig

            if AugmentConfig.from_dict(self.augment).mixes and self.fostering:
                raise ValueError(
                    "augment: mixup/cutmix blend two images and their labels, so a mixed image "
                    "has no single true class or mask for CAM fostering; mix while training "
                    "the baseline and foster without it"
                )
        parse_crop(self.crop)  # None, "none" (explicit: no crop, even for an init model) or a mode
        if self.unfreeze_top is not None and self.unfreeze_top < 0:
            raise ValueError(f"unfreeze_top must be >= 0 or None, got {self.unfreeze_top}")

    def check_files(self) -> None:
        """Check the output folder is named and the input files exist."""
        if not self.out:
            raise ValueError("no output folder (--out)")
        if self.data is None:
            raise ValueError("no training data: pass a folder or a manifest CSV")
        if not Path(self.data).exists():
            raise FileNotFoundError(f"{self.data}: training data not found")
        if self.split_csv is not None and not Path(self.split_csv).is_file():
            raise FileNotFoundError(f"{self.split_csv}: split CSV not found")
        if self.init is not None and not Path(self.init).is_file():
            raise FileNotFoundError(f"{self.init}: --init model not found")
        weights = self.weights
        is_path = weights not in (None, "imagenet") and str(weights).lower() != "none"
        if is_path and not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: backbone weights file not found")


class TrainingDivergedError(ValueError):
    """The loss became NaN or infinite; the run stopped (its last good backup is kept)."""


class WorkerLostError(ConnectionError):
    """A multi-worker run stopped because another worker died or became unreachable."""


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, per-epoch history and test metrics."""

    run_dir: Path
    history: dict[str, list[float]]
    test_metrics: dict[str, float]
    class_names: list[str]
    resumed: bool = False
    epochs_run: int = 0
    seconds: float = 0.0


# ------------------------------------------------------------------------------ run folder
def prepare_run_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` (a folder) and check it is writable, with a clear one-line error.

    Usage: ``run = prepare_run_dir("runs/exp1")``.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: --out must be a folder, but a file is there")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"{path}: cannot create the run folder ({parent} is a file)"
                )
            break
    try:
        return ensure_writable_dir(path)
    except OSError as exc:
        raise PermissionError(
            f"{path}: run folder is not writable ({exc.strerror or exc})"
        ) from exc


def _check_resume(run_dir: Path, config: TrainConfig) -> bool:
    """True when ``run_dir`` holds an interrupted run of the same settings (a fresh run: False).

    Raises ``FileExistsError`` when the folder holds a finished run or a different one.
    """
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        if (run_dir / "model.keras").exists():
            raise FileExistsError(
                f"{run_dir}: holds a model.keras but no config.json; use a new --out"
            )
        return False
    try:
        saved = json.loads(config_path.read_text()).get("train", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{config_path}: unreadable run config ({exc}); use a new --out") from exc
    current = config.to_dict()
    # A setting added after the run was saved counts as its default (same run, newer version).
    defaults = TrainConfig(out="").to_dict()
    diff = sorted(
        k
        for k in set(saved) | set(current)
        if k not in _RESUMABLE_KEYS and saved.get(k, defaults.get(k)) != current.get(k)
    )
    if diff and not (run_dir / "backup").exists() and not (run_dir / "model.keras").exists():
        log.warning(
            "%s: replacing the settings of a run that stopped before its first backup (%s)",
            run_dir,
            ", ".join(diff),
        )
        return False
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
        "cwd": os.getcwd(),
    }


# ---------------------------------------------------------------------------------- models
ModelFn = Callable[[list[str], int], Any]


def _load_init(config: TrainConfig):
    """The ``init`` model, with its class names and input size checked against the settings."""
    from kidney_tf._loading import load_model

    base = load_model(config.init, compile=False)
    input_size = base.input_shape[1]
    if config.image_size is not None and input_size is not None and input_size != config.image_size:
        raise ValueError(
            f"{config.init}: model input is {input_size} px but --image-size is {config.image_size}"
        )
    arch = (getattr(base, "metadata", None) or {}).get("arch")
    if config.arch is not None and arch is not None and config.arch != arch:
        raise ValueError(f"{config.init}: model is a {arch}, not a {config.arch} (--arch)")
    if not getattr(base, "class_names", None):
        raise ValueError(f"{config.init}: model has no class names; cannot match them to the data")
    return base


def _check_init_classes(config: TrainConfig, init_names: list[str], source: str) -> None:
    """Fail fast (before decoding images) when the data has classes the init model lacks."""
    from kidney_tf.data.sources import load_source

    scan = load_source(source, validate=False) if not config.split_csv else None
    names = list(scan.class_names) if scan is not None else []
    unknown = sorted(set(names) - set(init_names))
    if unknown:
        raise ValueError(
            f"{config.init}: the data has classes {unknown} the model does not know "
            f"(model classes: {init_names})"
        )


def _rebuild_for_policy(base, class_names: list[str]):
    """Rebuild ``base`` under the current dtype policy (mixed precision) with its weights."""
    import keras

    from kidney_tf.models.builders import build_classifier
    from kidney_tf.models.heads import HeadConfig

    meta = getattr(base, "metadata", None) or {}
    try:
        model = build_classifier(
            meta["arch"],
            num_classes=len(class_names),
            image_size=base.input_shape[1],
            weights=None,
            head=HeadConfig.from_dict(meta.get("head") or {}),
            class_names=class_names,
        )
        model.set_weights(base.get_weights())
    except (KeyError, ValueError) as exc:
        raise ValueError(f"cannot rebuild the --init model for mixed precision: {exc}") from exc
    for new, old in zip(model.layers, base.layers):
        if isinstance(new, keras.layers.BatchNormalization):
            new.momentum = old.momentum
    model.metadata = {**meta, **model.metadata}
    return model


def resolved_crop(config: TrainConfig, base=None) -> str | None:
    """The crop a run uses: ``config.crop``, else the ``init`` model's (``"none"``: no crop)."""
    if config.crop is not None:
        return parse_crop(config.crop)
    if base is not None:
        return (getattr(base, "metadata", None) or {}).get("crop")
    return None


def _build_model(config: TrainConfig, base, class_names, image_size, model_fn):
    import keras

    from kidney_tf.training.fostering import CamFosteringModel

    crop = resolved_crop(config, base)
    metadata = {"arch": config.arch or DEFAULT_ARCH, "image_size": image_size, "crop": crop}
    if base is not None:
        metadata["arch"] = (base.metadata or {}).get("arch", metadata["arch"])
        if keras.mixed_precision.global_policy().name != "float32":
            base = _rebuild_for_policy(base, class_names)
    elif model_fn is not None:
        base = model_fn(list(class_names), image_size)
        # builders look layers up by a known "arch" in the metadata: keep the model's own, if any
        metadata.pop("arch")
    else:
        from kidney_tf.models.builders import build_classifier
        from kidney_tf.models.heads import HeadConfig

        head = HeadConfig(hidden_units=tuple(config.head_units), dropout=config.dropout)
        try:
            base = build_classifier(
                config.arch or DEFAULT_ARCH,
                num_classes=len(class_names),
                image_size=image_size,
                weights=config.weights,
                head=head,
                bn_momentum=config.bn_momentum,
                class_names=class_names,
                input_norm=config.input_norm,
            )
        except RuntimeError as exc:  # ImageNet weights unavailable (offline): a user error
            if config.weights != "imagenet":
                raise
            raise ValueError(f"{exc} (kidney-tf train: --weights none or a file)") from exc
    return CamFosteringModel.from_classifier(
        base,
        cam_weight=config.cam_weight,
        cam_method=config.cam_method,
        cam_layer=config.cam_layer or getattr(base, "cam_layer", None),
        outside_weight=config.outside_weight,
        mask_weight=config.mask_weight,
        mask_dilation=config.mask_dilation,
        alive_weight=config.alive_weight,
        class_names=list(class_names),
        metadata=metadata,
    )


def compile_model(
    model, config: TrainConfig, class_weights: dict[int, float], lr: float | None = None
) -> None:
    """Compile ``model`` as ``train`` does: Adam (EMA when ``config.ema``), class-weighted
    cross-entropy with ``config.label_smoothing``, accuracy; ``lr`` defaults to
    ``config.resolved_lr()``.

    Usage: ``compile_model(model, TrainConfig(out="runs/a"), {0: 1.0, 1: 2.5})``
    """
    import keras

    from kidney_tf.training.losses import WeightedCrossEntropy

    weights = [float(class_weights[i]) for i in range(len(class_weights))]
    ema = {"use_ema": True, "ema_momentum": config.ema} if config.ema else {}
    lr = config.resolved_lr() if lr is None else lr
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr, **ema),
        loss=WeightedCrossEntropy(weights, label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )


# ------------------------------------------------------------------------------------ data
def _data_root(data: str | None) -> str | None:
    """The folder a split CSV's absolute paths must lie in: the data folder or CSV's folder."""
    if data is None:
        return None
    return str(Path(data).parent) if Path(data).suffix.lower() == ".csv" else data


class _TrainStream:
    """The endless stream of full training batches, positioned at any global step.

    Deterministic: every segment gets a freshly built pipeline (fresh shuffle and augmentation
    random state) that skips ``position`` batches, so batch ``k`` is the same in every process.
    Otherwise the stream is reused and only the steps already done in the epoch are skipped.
    """

    def __init__(
        self,
        bundle,
        rebuild: Callable[[], Any],
        steps_per_epoch: int,
        exact: bool,
        batch_size: int,
    ):
        self._bundle_train = bundle.train
        self.batch_size = batch_size
        self._fresh = True
        self._rebuild = rebuild
        self.steps_per_epoch = steps_per_epoch
        self.exact = exact

    def dataset(self, epoch: int, step: int):
        if self.exact:
            position = epoch * self.steps_per_epoch + step
            train = self._bundle_train if self._fresh else self._rebuild()
            if position:
                log.info("Replaying %d batches of the training stream to resume exactly", position)
        else:
            position, train = step, self._bundle_train
        self._fresh = False
        # Full global batches only: the split's partial last batch is completed from the next
        # pass (rebatch = unbatch + batch), as tf.distribute's own rebatching does on several
        # workers, so one and many workers train on the same batches with the same shapes.
        stream = train.repeat().rebatch(self.batch_size)
        return shardable(stream.skip(position) if position else stream)


def shardable(dataset):
    """``dataset`` with auto-sharding by DATA (each worker takes every n-th batch).

    The default (FILE) policy cannot shard in-memory or cached datasets across workers.
    """
    import tensorflow as tf

    if dataset is None:
        return None
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@dataclass
class _Phase:
    name: str
    start: int
    end: int
    lr: float


def _phases(config: TrainConfig) -> list[_Phase]:
    lr = config.resolved_lr()
    head = min(config.freeze_epochs, config.epochs) if not config.init else 0
    phases = []
    if head > 0:
        phases.append(_Phase("head", 0, head, lr))
    if config.epochs > head:
        phases.append(_Phase("main", head, config.epochs, lr * 0.1 if head else lr))
    return phases


def _setup_phase(model, phase: _Phase, config: TrainConfig, class_weights):
    from kidney_tf.models.builders import set_backbone_trainable, unfreeze_top

    if phase.name == "head":
        set_backbone_trainable(model, False)
    elif config.unfreeze_top is not None:
        unfreeze_top(model, config.unfreeze_top)
    else:  # also thaws an ``init`` model saved with a frozen backbone
        set_backbone_trainable(model, True)
    compile_model(model, config, class_weights, phase.lr)


def _callbacks(config, phase: _Phase, out_dir: Path, restore_dir: Path, monitor: str, shared):
    """Callbacks of one phase; the backup callback comes last (it records the others' state)."""
    import keras

    from kidney_tf.training.callbacks import ResumableBackup, cosine_schedule

    stateful: list = []
    callbacks = [
        shared["throughput"],
        shared["nan"],
        *shared["empty"],
        *shared["ema"],
        shared["best"],
    ]
    if shared["progress"] is not None:
        callbacks.append(shared["progress"])
    if config.patience > 0:
        stateful.append(
            keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, verbose=1)
        )
    if config.lr_schedule == "plateau":
        stateful.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=0.5, patience=max(1, config.patience // 2), verbose=1
            )
        )
    elif config.lr_schedule == "cosine":
        callbacks.append(cosine_schedule(phase.lr, phase.end - phase.start, start=phase.start))
    backup = ResumableBackup(
        out_dir / "backup",
        save_freq=config.backup_every or "epoch",
        restore_dir=restore_dir,
        callbacks=[shared["best"], *stateful],
        phase=phase.name,
    )
    # CSVLogger after the LR callbacks (they add learning_rate to the logs), before the backup
    # (a kill between the two re-runs the epoch; history keeps its last row).
    return [*callbacks, *stateful, shared["csv"], backup], backup


def _dedupe_history(path: Path) -> dict[str, list[float]]:
    """Rewrite history.csv with one row per epoch (the last one logged) and return it."""
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_epoch: dict[int, dict[str, str]] = {}
    for row in rows:
        try:
            by_epoch[int(row.get("epoch", ""))] = row
        except ValueError:  # a repeated header
            continue
    ordered = [by_epoch[k] for k in sorted(by_epoch)]
    if ordered:
        fields = list(dict.fromkeys(k for row in ordered for k in row if k is not None))
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(ordered)
    history: dict[str, list[float]] = {}
    for row in ordered:
        for key, value in row.items():
            if key is None or key == "epoch" or value in (None, ""):
                continue
            try:
                history.setdefault(key, []).append(float(value))
            except ValueError:
                continue
    return history


# ------------------------------------------------------------------------------------ train
def train(config: TrainConfig, *, model_fn: ModelFn | None = None) -> TrainResult:
    """Run one training (resuming an interrupted one in the same folder) and return its result.

    ``model_fn(class_names, image_size) -> keras.Model`` replaces the built-in architectures
    with your own flat functional classifier (raw 0–255 input, a Dense ``"logits"`` layer
    followed by the softmax output); ``config.arch`` is then only a label.

    The global Keras dtype policy and TensorFlow op determinism are restored afterwards.

    Usage: ``train(TrainConfig(data="phantoms", out="runs/a", image_size=64, weights=None))``.
    """
    config = config.normalized()
    config.validate()
    inputs = [input_tree(config.data), config.init, config.split_csv]
    check_output_dir(config.out, "train", inputs=inputs, markers=("config.json",))
    run_dir = mark_output_dir(prepare_run_dir(config.out), "train")
    resumed = _check_resume(run_dir, config)

    import keras

    from kidney_tf.training.distribute import make_strategy

    policy = keras.mixed_precision.global_policy()
    determinism = _op_determinism_enabled()
    try:
        # The strategy first: a multi-worker strategy must exist before TensorFlow runs any op.
        strategy = make_strategy(config.strategy, cpu_replicas=config.cpu_replicas)
        if config.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        if config.deterministic:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        return _Run(config, run_dir, strategy, resumed, model_fn).execute()
    except _cluster_errors() as exc:
        if config.strategy != "multiworker":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkerLostError(
            f"{run_dir}: another worker stopped or is unreachable, so this one stops too "
            f"({type(exc).__name__}: {reason}). Restart every worker with the same command: "
            "the run resumes from its backup"
        ) from exc
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if config.deterministic and not determinism:
            _disable_op_determinism()


def _cluster_errors() -> tuple[type[BaseException], ...]:
    """TensorFlow errors a worker sees when a peer dies (aborted or timed-out collectives)."""
    import tensorflow as tf

    return (
        tf.errors.UnavailableError,
        tf.errors.DeadlineExceededError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
    )


def _op_determinism_enabled() -> bool:
    try:
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        return False


def _disable_op_determinism() -> None:
    try:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()
    except (ImportError, AttributeError):  # pragma: no cover - private API moved
        log.warning("could not switch TensorFlow op determinism off again")


class _Run:
    """The steps of :func:`train` after the settings and the run folder were checked."""

    def __init__(self, config: TrainConfig, run_dir: Path, strategy, resumed: bool, model_fn):
        from kidney_tf.training.distribute import is_chief, output_dir

        self.config = config
        self.run_dir = run_dir
        self.strategy = strategy
        self.resumed = resumed
        self.model_fn = model_fn
        self.chief = is_chief(strategy)
        self.out_dir = ensure_writable_dir(output_dir(run_dir, strategy))

    def execute(self) -> TrainResult:
        import keras

        config, strategy = self.config, self.strategy
        started = time.perf_counter()
        # Seed first: tf.data shuffles derive their seeds from the global seed, so every
        # pipeline this run builds (and rebuilds, to resume) must see the same global seed.
        keras.utils.set_random_seed(config.seed)
        base = None
        if config.init:
            with strategy.scope():
                base = _load_init(config)
        image_size = self._image_size(base)
        source = config.split_csv or config.data
        if base is not None:
            _check_init_classes(config, list(base.class_names), source)
        bundle = self._datasets(source, image_size, base)
        log.info(bundle.describe())
        if bundle.train is None:
            raise ValueError(f"{source}: the training split is empty")
        steps = self._steps_per_epoch(bundle)
        backup_dir = self.run_dir / "backup"
        history_csv = self.out_dir / "history.csv"
        # Settings match (checked) but no backup: killed before its first one, start afresh.
        self.resumed = self.resumed and self._has_backup(backup_dir)
        if not self.resumed:
            history_csv.unlink(missing_ok=True)

        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = _build_model(config, base, bundle.class_names, image_size, self.model_fn)
        if self.chief and not self.resumed:  # once the model exists: a run that will train
            self._write_config(bundle, image_size, steps)
        stream = _TrainStream(
            bundle,
            lambda: self._datasets(source, image_size, base, records=bundle).train,
            steps,
            exact=config.deterministic,
            batch_size=config.batch_size,
        )
        epochs_run = self._fit_phases(model, bundle, stream, history_csv, backup_dir)

        test_metrics: dict[str, float] = {}
        if bundle.test is not None:
            results = model.evaluate(shardable(bundle.test), verbose=0, return_dict=True)
            test_metrics = {k: float(v) for k, v in results.items()}
        from kidney_tf.training.callbacks import save_model_file

        save_model_file(model, self.out_dir / "model.keras")
        history = _dedupe_history(history_csv)
        if self.chief:
            write_json_atomic(self.run_dir / "test_metrics.json", test_metrics)
            if history:
                from kidney_tf.utils.plots import plot_history

                plot_history(history_csv, self.run_dir / "curves.png")
            shutil.rmtree(backup_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.out_dir, ignore_errors=True)
        return TrainResult(
            self.run_dir,
            history,
            test_metrics,
            list(bundle.class_names),
            self.resumed,
            epochs_run,
            time.perf_counter() - started,
        )

    # -------------------------------------------------------------------------------- pieces
    def _image_size(self, base) -> int:
        if self.config.image_size:
            return int(self.config.image_size)
        if base is not None and base.input_shape[1]:
            return int(base.input_shape[1])
        return default_image_size(self.config.arch or DEFAULT_ARCH)

    def _datasets(self, source: str, image_size: int, base, records=None):
        """The run's DataBundle; with ``records`` (a bundle), its train split rebuilt afresh."""
        from kidney_tf.data.pipeline import build_datasets
        from kidney_tf.data.records import ScanResult

        config = self.config
        kwargs: dict[str, Any] = {
            "image_size": image_size,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "crop": resolved_crop(config, base),
            "augment": config.augment,
            "cache": config.cache,
            # CAM fostering: masks next to the image (x as a dict) for the spatial terms; every
            # fostering run carries the foreground so history.csv reports cam_outside.
            "with_foreground": config.fostering,
            "with_lesion_masks": config.mask_weight > 0,
        }
        if records is not None:
            scan = ScanResult(list(records.records["train"]), list(records.class_names), [])
            return build_datasets(
                scan, split="folders", val_fraction=0.0, test_fraction=0.0, **kwargs
            )
        return build_datasets(
            source,
            split="folders" if config.split_csv else config.split,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            strict=config.strict,
            class_names=list(base.class_names) if base is not None else None,
            root=_data_root(config.data) if config.split_csv else None,
            **kwargs,
        )

    def _steps_per_epoch(self, bundle) -> int:
        if self.config.steps_per_epoch:
            return int(self.config.steps_per_epoch)
        steps = int(bundle.train.cardinality())
        if steps < 1:
            raise ValueError("the training dataset has no known length; set steps_per_epoch")
        return steps

    def _write_config(self, bundle, image_size: int, steps: int) -> None:
        from kidney_tf.data.splits import write_split_csv

        write_json_atomic(
            self.run_dir / "config.json",
            {
                "train": self.config.to_dict(),
                "image_size": image_size,
                "steps_per_epoch": steps,
                "class_names": bundle.class_names,
                "class_weights": {str(k): v for k, v in bundle.class_weights.items()},
                "counts": bundle.counts,
                "split_method": bundle.split_method,
                "bad_files": [dataclasses.asdict(b) for b in bundle.bad_files],
                "environment": _environment(),
                "rerun": f"kidney-tf train --config {self.run_dir / 'config.json'} --out NEW_RUN",
            },
        )
        write_split_csv(bundle.records, self.run_dir / "split.csv")

    def _has_backup(self, backup_dir: Path) -> bool:
        from kidney_tf.training.callbacks import read_backup_state

        own = self.out_dir / "backup"
        return read_backup_state(backup_dir) is not None or (
            own != backup_dir and read_backup_state(own) is not None
        )

    def _fit_phases(self, model, bundle, stream: _TrainStream, history_csv: Path, backup_dir):
        import keras

        from kidney_tf.training.callbacks import (
            AtomicBestCheckpoint,
            EmaWeights,
            EmptyMapsWarning,
            ProgressLines,
            StopOnNaN,
            Throughput,
            read_backup_state,
        )

        config, strategy = self.config, self.strategy
        monitor = "val_loss" if bundle.val is not None else "loss"
        ema = EmaWeights() if config.ema else None
        progress = None
        if config.progress_every and config.verbose != 0 and not sys.stdout.isatty():
            progress = ProgressLines(every=config.progress_every)
        shared = {
            "throughput": Throughput(config.batch_size),
            "nan": StopOnNaN(),
            "empty": [EmptyMapsWarning()] if config.fostering else [],
            "ema": [ema] if ema is not None else [],
            "progress": progress,
            "csv": keras.callbacks.CSVLogger(str(history_csv), append=True),
            "best": AtomicBestCheckpoint(self.out_dir / "best.keras", monitor=monitor, ema=ema),
        }
        state = read_backup_state(backup_dir) or read_backup_state(self.out_dir / "backup")
        phases = _phases(config)
        names = [p.name for p in phases]
        resume_at = names.index(state["phase"]) if state and state.get("phase") in names else 0
        epochs_run = 0
        for index, phase in enumerate(phases):
            if index < resume_at:
                continue
            with strategy.scope():
                _setup_phase(model, phase, config, bundle.class_weights)
            callbacks, backup = _callbacks(config, phase, self.out_dir, backup_dir, monitor, shared)
            epoch, step, stopped = phase.start, 0, False
            with strategy.scope():
                restored = backup.restore(model)
            if restored is not None:
                epoch, step = int(restored["epoch"]), int(restored["step"])
                stopped = bool(restored.get("stopped"))
            while epoch < phase.end and not stopped:
                end = epoch + 1 if step else phase.end
                backup.start_segment(epoch, step)
                model.fit(
                    stream.dataset(epoch, step),
                    initial_epoch=epoch,
                    epochs=end,
                    steps_per_epoch=stream.steps_per_epoch - step,
                    validation_data=shardable(bundle.val),
                    callbacks=callbacks,
                    shuffle=False,  # the stream is shuffled (seeded) by the pipeline
                    verbose=config.verbose,
                )
                epochs_run += end - epoch
                if shared["nan"].stopped_at is not None:
                    epoch_nan, batch_nan = shared["nan"].stopped_at
                    raise TrainingDivergedError(
                        f"training diverged: non-finite loss in epoch {epoch_nan + 1}, step "
                        f"{batch_nan + 1}; best.keras holds the best model so far. Try a lower "
                        "--lr (and a new --out folder)"
                    )
                stopped = bool(model.stop_training)
                epoch, step = end, 0
            if stopped and phase.name == "main":
                break
        return epochs_run
