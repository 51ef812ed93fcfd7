"""The shared vocabulary of kidney_tf, stated once, and the two papers' recipes.

Standard library only (no TensorFlow): the CLI's ``choices=``, the configs' ``validate`` and the
data/model/export checks all read these names, so a new crop mode or architecture is added here
and where it is implemented, nowhere else.

A **recipe** is one paper: its architecture, crop, phantoms, dataset manifest and named
**presets**. A preset is a mapping of overrides, each key one of

- a :class:`~kidney_tf.training.trainer.TrainConfig` field: the training of every stage
  (``cam_weight`` is the fostering stage's λ; the baseline is by definition λ = 0);
- ``finetune_<TrainConfig field>``: the CAM-fostering fine-tune only (recipes that foster);
- a reproduce setting: :data:`REPRODUCE_SETTINGS`.

``"paper"`` is the paper's settings; every other preset is applied on top of it, so a new preset
(say ``"real"``) is one entry of :data:`RECIPES`' ``presets`` with what differs from the paper.

Usage::

    from kidney_tf import recipes
    recipes.parse_crop("none")                      # None
    recipes.recipe("kidney-cam-fostering").settings("quick")["image_size"]   # 128
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# ------------------------------------------------------------------------------- crop modes
#: The papers' crops: ``brain`` (largest contour, brain MRI paper), ``body`` (CT body without the
#: scanner table). Each is implemented in ``data/crop.py`` (OpenCV) and ``data/crop_tf.py`` (TF).
CROP_MODES: tuple[str, ...] = ("brain", "body")
#: What a command line accepts for a crop (``none``: resize only).
CROP_CHOICES: tuple[str, ...] = (*CROP_MODES, "none")
#: The foreground a CAM's outside fraction is measured against: a crop mode's mask.
FOREGROUNDS: tuple[str, ...] = CROP_MODES


def parse_crop(value: str | None, *, what: str = "crop") -> str | None:
    """The one crop parser: ``None``/``"none"``/``""`` -> None; a crop mode -> itself.

    Raises ``ValueError`` naming the accepted values. Usage: ``parse_crop(args.crop)``.
    """
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    if value not in CROP_MODES:
        raise ValueError(f"{what} must be one of {', '.join(CROP_CHOICES)}, got {value!r}")
    return str(value)


# ---------------------------------------------------------------------------- architectures
#: Backbone -> its default (and the paper's) input size in px. Built in ``models/builders.py``.
ARCHITECTURES: Mapping[str, int] = MappingProxyType({"resnet50": 224, "efficientnetb1": 240})
DEFAULT_ARCH = "resnet50"


def parse_arch(value: str) -> str:
    """``"ResNet-50"``/``"resnet_50"``/``"resnet50"`` -> ``"resnet50"``; unknown: ``ValueError``."""
    key = str(value).lower().replace("-", "").replace("_", "")
    if key not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {value!r}; choose one of {sorted(ARCHITECTURES)}")
    return key


def default_image_size(arch: str) -> int:
    """The architecture's default input size (224 ResNet-50, 240 EfficientNetB1)."""
    return ARCHITECTURES[parse_arch(arch)]


# ------------------------------------------------------------------------------- CAM methods
#: Maps computed by tf-keras-vis (``explain/cams.py``): class-activation maps first, then the
#: input-gradient saliency methods.
EXPLAIN_METHODS: tuple[str, ...] = (
    "gradcam",
    "gradcam++",
    "layercam",
    "scorecam",
    "faster-scorecam",
    "saliency",
    "smoothgrad",
)
#: Class-activation maps (computed at a conv layer, upsampled to the input).
CAM_METHODS: tuple[str, ...] = EXPLAIN_METHODS[:5]
#: CAMs that only differentiate the score w.r.t. the CAM layer's output.
GRADIENT_CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++", "layercam")
#: Maps CAM fostering can penalise. ``exact`` (relu(features · class weights)) and ``gradcam++``
#: (its tf-keras-vis form for a GAP head) are closed forms; ``gradcam`` works for any head.
FOSTERING_CAM_METHODS: tuple[str, ...] = ("exact", "gradcam++", "gradcam")
CLOSED_FORM_METHODS: tuple[str, ...] = ("exact", "gradcam++")
#: CAM fostering's term weights (λ, λ_out, λ_mask, λ_alive): all 0 is plain training.
FOSTERING_WEIGHTS: tuple[str, ...] = ("cam_weight", "outside_weight", "mask_weight", "alive_weight")
#: Keys of the dict ``x`` that carries masks next to the image for CAM fostering's spatial terms
#: (``build_datasets(with_foreground=..., with_lesion_masks=...)``); the model's input is the image.
IMAGE_KEY, FOREGROUND_KEY, LESION_KEY = "image", "foreground", "lesion_mask"
#: Pixels the lesion mask is grown by before the lesion-mask term measures the mass off it.
DEFAULT_MASK_DILATION = 4
#: Which class a CAM explains in an evaluation.
CAM_TARGETS: tuple[str, ...] = ("predicted", "true")

# -------------------------------------------------------------------- training vocabulary
#: How records are split: the dataset's own folders, seeded stratified (the papers), grouped
#: (leakage-aware slice groups), ranges (held-out slice ranges), or auto (folders, then grouped
#: for CT slice names, else stratified).
SPLIT_METHODS: tuple[str, ...] = ("auto", "folders", "stratified", "grouped", "ranges")
#: Split methods for evaluation only: ``"all"`` puts every record in the test split (an external
#: test set, such as another hospital's scans or the official Testing folder).
EVAL_SPLIT_METHODS: tuple[str, ...] = ("all",)
SPLITS: tuple[str, ...] = ("train", "val", "test")
LR_SCHEDULES: tuple[str, ...] = ("plateau", "cosine", "constant")
#: In-model intensity normalisation (``None``: the backbone's own preprocessing only).
INPUT_NORMS: tuple[str | None, ...] = (None, "per-image")
#: ``tf.distribute`` strategies (``training/distribute.py``).
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")
#: Where the crop box is found inside ``tf.data``: OpenCV in a ``tf.numpy_function`` or pure TF.
CROP_BACKENDS: tuple[str, ...] = ("opencv", "tf")


def check_choice(value: Any, choices: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError("WHAT must be one of ..., got VALUE")`` unless ``value`` is a choice."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")


# ----------------------------------------------------------------------------------- recipes
#: Reproduce settings a preset may set besides TrainConfig fields (see the module docstring).
REPRODUCE_SETTINGS: tuple[str, ...] = (
    "phantom_per_class",
    "phantom_image_size",
    "phantom_lesion_scale",
    "max_cam_images",
    "faithfulness_images",
    "native_grid_statistics",
)
FINETUNE_PREFIX = "finetune_"


@dataclass(frozen=True)
class Recipe:
    """One paper: network, crop, data and named presets (overrides, module docstring).

    ``crop_files``: the paper crops the image files once before training (brain MRI) instead of
    cropping inside the input pipeline (kidney CT). ``fostering``: a CAM-fostering fine-tune
    follows the baseline.

    Usage: ``recipe("brain-mri-efficientnet").settings("quick")``.
    """

    name: str
    title: str
    arch: str
    crop: str | None
    phantom_kind: str
    dataset_manifest: str
    fostering: bool
    crop_files: bool = False
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return ARCHITECTURES[self.arch]

    @property
    def foreground(self) -> str:
        """The mask a CAM's outside fraction is measured against (the crop, else the body)."""
        return self.crop or "body"

    def settings(self, preset: str = "paper") -> dict[str, Any]:
        """The flat overrides of ``preset``: the recipe's own, the paper's, then the preset's."""
        if preset not in self.presets:
            raise ValueError(
                f"{self.name}: unknown preset {preset!r}; choose one of {', '.join(self.presets)}"
            )
        base = {"arch": self.arch, "image_size": self.image_size, "crop": self.crop}
        merged = {**base, **self.presets["paper"], **self.presets[preset]}
        # nested settings (augment) come back as plain dicts the caller may change
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in merged.items()}


def _frozen(presets: dict[str, dict[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(v) for k, v in presets.items()})


KIDNEY = "kidney-cam-fostering"
BRAIN = "brain-mri-efficientnet"

#: Training from scratch on a CPU, as every preset but "paper" does: Adam 1e-3 with a cosine
#: schedule to the last epoch, BN momentum 0.9 (with 0.99 the moving statistics lag the weights).
_FROM_SCRATCH: dict[str, Any] = {
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "patience": 0,
    "weights": None,
    "freeze_epochs": 0,
    "bn_momentum": 0.9,
}
#: The demo's fostering fine-tune: the head alone, 3 epochs at 3e-3, the Grad-CAM++ map, λ 10.
_HEAD_FOSTERING: dict[str, Any] = {
    "finetune_epochs": 3,
    "finetune_lr": 3e-3,
    "finetune_unfreeze_top": 0,
    "cam_weight": 10.0,
    "cam_method": "gradcam++",
}
#: The kidney real-data preset's levers (from scratch, 128 px, 2 CPU cores).
_REAL_BASE: dict[str, Any] = {
    **_FROM_SCRATCH,
    "image_size": 128,
    "batch_size": 32,
    "ema": 0.99,
    "label_smoothing": 0.1,
    "input_norm": "per-image",
    "augment": MappingProxyType(
        {
            "rotation": 15,
            "zoom": 0.15,
            "translation": 0.05,
            "brightness": 0.2,
            "contrast": 0.3,
            "gamma": 0.3,
        }
    ),
}

RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        KIDNEY: Recipe(
            name=KIDNEY,
            title="Kidney CT: ResNet-50 baseline vs CAM fostering",
            arch="resnet50",
            # Kidney CT keeps the body and drops the scanner table (an acquisition shortcut of
            # the public data), inside the input pipeline and the SavedModel.
            crop="body",
            phantom_kind="kidney-ct",
            dataset_manifest="ct_kidney",
            fostering=True,
            presets=_frozen(
                {
                    "paper": {
                        "epochs": 30,
                        "cam_weight": 0.1,
                        "finetune_epochs": 10,
                        "finetune_lr": 1e-4,
                        "finetune_unfreeze_top": None,
                    },
                    # The demo: ResNet-50 from scratch at 128 px on 1600 phantoms with lesions 4x
                    # their public-data size (at 1.0 a from-scratch network on a CPU stays near
                    # 0.5 accuracy: a stone is 2-3 px wide), BN momentum 0.9 (with 0.99 the
                    # moving statistics lag the weights in a short run and eval-mode accuracy
                    # stays at chance), then three epochs fostering the Grad-CAM++ map with the
                    # backbone frozen. Fine-tuning the whole network sharpened the maps where
                    # the baseline already looked, mostly off the lesions (CAM mass in the masks
                    # fell 8 %); the head alone can only re-weight the baseline's features, and
                    # the mass in the masks rose 7 % at the same entropy drop. λ is large because
                    # only the 2048x4 head weights move.
                    "quick": {
                        "image_size": 128,
                        "batch_size": 16,
                        "epochs": 7,
                        **_FROM_SCRATCH,
                        **_HEAD_FOSTERING,
                        "phantom_per_class": 400,
                        "phantom_image_size": 160,
                        "phantom_lesion_scale": 4.0,
                        "max_cam_images": None,  # all 240 test images: 180 with a lesion mask
                    },
                    # Real CT from scratch on 2 CPU cores (`kidney-tf train --recipe kidney-real`;
                    # measured in the README's "Real scans"): held-out slice ranges for the
                    # validation and test splits, each image's intensities standardised inside
                    # the model and jittered (gamma, contrast, brightness) so that the classes'
                    # different windowing is no shortcut, EMA weights against epoch-to-epoch
                    # swings, label smoothing, a cosine schedule; the fine-tune as in "quick".
                    "real": {
                        **_REAL_BASE,
                        "epochs": 15,
                        "split": "ranges",
                        **_HEAD_FOSTERING,
                        "max_cam_images": None,
                    },
                }
            ),
        ),
        BRAIN: Recipe(
            name=BRAIN,
            title="Brain MRI: brain-contour crop + EfficientNetB1",
            arch="efficientnetb1",
            crop="brain",  # the paper crops every image file to the brain's contour, once
            phantom_kind="brain-mri",
            dataset_manifest="brain_tumor_mri",
            fostering=False,
            crop_files=True,
            presets=_frozen(
                {
                    "paper": {"epochs": 20, "freeze_epochs": 3},
                    "quick": {
                        "image_size": 128,
                        "batch_size": 16,
                        "epochs": 6,
                        **_FROM_SCRATCH,
                        "phantom_per_class": 60,
                        "phantom_image_size": 160,
                        "max_cam_images": 64,
                    },
                    # Real MRI from scratch (`kidney-tf train --recipe brain-real`), chosen by
                    # measurement (README "Real scans"): the plain settings — default
                    # augmentation, no per-image standardisation, no EMA or label smoothing,
                    # Adam 1e-3 with the plateau schedule, 10 epochs — scored 0.830 on held-out
                    # images; the kidney recipe's levers underfit here (0.553 in 8 epochs).
                    # Hold out near-duplicates together (benchmarks/real_data.py writes such a
                    # split; pass --split-csv).
                    "real": {
                        "image_size": 128,
                        "batch_size": 32,
                        "epochs": 10,
                        "weights": None,
                        "freeze_epochs": 0,
                        "max_cam_images": None,
                    },
                }
            ),
        ),
    }
)
PIPELINES: tuple[str, ...] = tuple(RECIPES)


#: ``kidney-tf train --recipe NAME``: one model trained with a recipe's preset.
TRAIN_RECIPES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {"kidney-real": (KIDNEY, "real"), "brain-real": (BRAIN, "real")}
)
#: Settings of the fostering stage, not of the baseline a ``train --recipe`` run is.
_FOSTERING_SETTINGS = ("cam_weight", "cam_method")


def train_settings(name: str) -> dict[str, Any]:
    """The TrainConfig fields of a training recipe (fine-tune and reproduce settings left out).

    Usage: ``TrainConfig(out="runs/a", data="pool", **train_settings("kidney-real"))``.
    """
    if name not in TRAIN_RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(TRAIN_RECIPES)}")
    pipeline, preset = TRAIN_RECIPES[name]
    return {
        key: value
        for key, value in recipe(pipeline).settings(preset).items()
        if not key.startswith(FINETUNE_PREFIX)
        and key not in REPRODUCE_SETTINGS
        and key not in _FOSTERING_SETTINGS
    }


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; unknown names raise ``ValueError`` listing the recipes."""
    if name not in RECIPES:
        raise ValueError(f"unknown pipeline {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


__all__ = [
    "ARCHITECTURES",
    "BRAIN",
    "CAM_METHODS",
    "CAM_TARGETS",
    "CLOSED_FORM_METHODS",
    "CROP_BACKENDS",
    "CROP_CHOICES",
    "CROP_MODES",
    "DEFAULT_ARCH",
    "DEFAULT_MASK_DILATION",
    "EVAL_SPLIT_METHODS",
    "EXPLAIN_METHODS",
    "FINETUNE_PREFIX",
    "FOREGROUND_KEY",
    "FOREGROUNDS",
    "FOSTERING_CAM_METHODS",
    "FOSTERING_WEIGHTS",
    "GRADIENT_CAM_METHODS",
    "IMAGE_KEY",
    "KIDNEY",
    "LESION_KEY",
    "INPUT_NORMS",
    "LR_SCHEDULES",
    "PIPELINES",
    "RECIPES",
    "REPRODUCE_SETTINGS",
    "SPLITS",
    "SPLIT_METHODS",
    "STRATEGIES",
    "TRAIN_RECIPES",
    "Recipe",
    "check_choice",
    "default_image_size",
    "parse_arch",
    "parse_crop",
    "recipe",
    "train_settings",
]
