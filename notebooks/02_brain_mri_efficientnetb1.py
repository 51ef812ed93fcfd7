# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Brain-tumour MRI classification with EfficientNetB1
#
# **Description:** crop brain MRI slices to the brain's contour, augment them, and fine-tune
# an EfficientNetB1 to tell glioma, meningioma, pituitary tumour and no tumour apart; then
# read the confusion matrix, the classification report and Grad-CAM maps.
#
# **The paper.** Every image of the public brain-tumour MRI dataset is cropped to the brain
# by its largest contour (grayscale → Gaussian blur → threshold 45 → erode/dilate → extreme
# points of the largest contour), resized, augmented (rotation, zoom, shifts, flips,
# brightness) and fed to an ImageNet-pretrained EfficientNetB1 with a new classification
# head, trained first with a frozen backbone and then end to end. It reports ~99 % test
# accuracy.
#
# **Data.** `DATA_DIR = None` generates synthetic MRI phantoms (off-centre heads on black
# background, so the crop matters). Point `DATA_DIR` to the dataset folder holding
# `Training/` and `Testing/`, or to class folders (`glioma/ meningioma/ notumor/ pituitary/`),
# to run on the real images.
#
# **Weights.** ImageNet weights need a download; `QUICK = True` trains from scratch
# (`weights=None`) so the notebook runs offline. With network access use
# `WEIGHTS = "imagenet"` (the `QUICK = False` default) — that is the paper's transfer learning.

# %% tags=["parameters"]
# Parameters (papermill-style: this cell is tagged "parameters"; None = take the preset's).
DATA_DIR = None  # folder with Training/ and Testing/ (or class folders); None -> phantoms
OUT_DIR = "runs/02_brain_mri"  # every file the notebook writes goes here
QUICK = True  # True: CPU-sized quick preset; False: the paper's settings
EPOCHS = None  # end-to-end epochs (paper preset: 20)
FREEZE_EPOCHS = None  # head-only epochs before unfreezing (paper preset: 3)
IMAGE_SIZE = None  # model input in px (paper: 240)
BATCH_SIZE = None
PER_CLASS = None  # phantoms per class (only when DATA_DIR is None)
WEIGHTS = "auto"  # "auto": None when QUICK else "imagenet"; or None / "imagenet" / a path
SEED = 42

# %% [markdown]
# ## Setup

# %%
from pathlib import Path

import keras
from IPython.display import Image, display

import kidney_tf as ktf
from kidney_tf.evaluation.dataset_figures import dataset_figures
from kidney_tf.models.builders import set_backbone_trainable
from kidney_tf.pipelines.reproduce import PAPER_RESULTS, ReproduceConfig
from kidney_tf.utils.plots import plot_history

overrides = dict(
    epochs=EPOCHS,
    freeze_epochs=FREEZE_EPOCHS,
    image_size=IMAGE_SIZE,
    batch_size=BATCH_SIZE,
    phantom_per_class=PER_CLASS,
    seed=SEED,
)
if WEIGHTS != "auto":
    overrides["weights"] = WEIGHTS or "none"
config = ReproduceConfig.preset(
    "brain-mri-efficientnet", OUT_DIR, quick=QUICK, data=DATA_DIR, **overrides
)
out = Path(config.out)
out.mkdir(parents=True, exist_ok=True)
keras.utils.set_random_seed(config.train.seed)
print(
    f"{config.train.image_size} px, batch {config.train.batch_size}, {config.train.freeze_epochs} frozen + "
    f"{config.train.epochs} epochs, weights={config.train.weights}; writing to {out}"
)


# %%
def show(path):
    """Display a PNG the package wrote (every figure is also kept under OUT_DIR)."""
    display(Image(filename=str(path)))


# %% [markdown]
# ## The data
#
# The real dataset comes split into `Training/` and `Testing/`; the pipeline keeps that test
# split and carves a validation split out of `Training/`. Class folders alone (the phantoms,
# or a pool such as `brain_mri_pool/`) get a stratified random split. The public images hold
# many near-duplicates (`verify_dataset` counts them), so a random split overstates accuracy;
# `benchmarks/real_data.py` writes a split that keeps near-duplicate groups on one side.

# %%
if config.data is None:
    manifest = ktf.generate_phantoms(
        "brain-mri",
        out / "data" / "brain-mri",
        per_class=config.phantom_per_class,
        image_size=config.phantom_image_size,
        seed=config.train.seed,
        lesion_scale=config.phantom_lesion_scale,
    )
    data_root = manifest.parent
else:
    data_root = Path(config.data)
print(ktf.verify_dataset(data_root).summary())

# %% [markdown]
# `dataset_figures` draws the paper's data figures: images per class and split, one sample per
# class, each sample before (crop box drawn) and after the brain crop, and a few
# training-time augmentations of the cropped image.

# %%
figures = dataset_figures(
    data_root,
    out / "figures",
    crop="brain",
    image_size=config.train.image_size,
    split=config.train.split,
    seed=config.train.seed,
    per_class=1,
    n_augment=4,
)
for name in ("class_distribution", "samples", "crop_pairs", "augmentation"):
    show(out / "figures" / f"{name}.png")

# %% [markdown]
# ## `tf.data` pipelines
#
# The paper crops the image files once before training (`kidney-tf data crop` does that).
# Here the same recipe runs inside the `tf.data` graph (`crop="brain"`), so the pipeline
# reads the original files; the crops agree with the OpenCV ones. Augmentation (the paper's
# recipe, seeded) touches the training split only.

# %%
data_settings = dict(
    image_size=config.train.image_size,
    batch_size=config.train.batch_size,
    split=config.train.split,
    seed=config.train.seed,
    crop="brain",
)
bundle = ktf.build_datasets(data_root, **data_settings)
eval_bundle = ktf.build_datasets(data_root, **data_settings, augment=False, cache=False)
print(bundle.describe())

# %% [markdown]
# ## EfficientNetB1 transfer learning
#
# A flat EfficientNetB1 (its rescaling and normalisation are layers of the model, so it takes
# raw 0–255 pixels) with a new head: pooling, dropout and the class layer. With pretrained
# weights the head is trained alone first (`set_backbone_trainable(model, False)`: frozen
# BatchNorm layers stay in inference mode), then the whole network at a tenth of the learning
# rate. A randomly initialised backbone has nothing to keep, so the quick preset skips the
# frozen phase.

# %%
model = ktf.build_classifier(
    "efficientnetb1",
    image_size=config.train.image_size,
    weights=config.train.weights,
    bn_momentum=config.train.bn_momentum,
    head=ktf.HeadConfig(dropout=0.3),
    class_names=bundle.class_names,
)
model.metadata = {**model.metadata, "crop": "brain"}
print(f"{model.count_params():,} parameters; CAM layer: {ktf.last_conv_layer_name(model)}")

lr = config.train.lr or 1e-3
fit_settings = dict(validation_data=bundle.val, verbose=2)
histories = []
if config.train.freeze_epochs:
    set_backbone_trainable(model, False)
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    histories.append(model.fit(bundle.train, epochs=config.train.freeze_epochs, **fit_settings))
    set_backbone_trainable(model, True)
    lr /= 10
model.compile(
    optimizer=keras.optimizers.Adam(lr), loss="categorical_crossentropy", metrics=["accuracy"]
)
callbacks = [keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2)]
if config.train.patience:
    callbacks.append(
        keras.callbacks.EarlyStopping(patience=config.train.patience, restore_best_weights=True)
    )
histories.append(
    model.fit(bundle.train, epochs=config.train.epochs, callbacks=callbacks, **fit_settings)
)
keys = [k for k in histories[-1].history if all(k in h.history for h in histories)]
history = {k: [v for h in histories for v in h.history[k]] for k in keys}
show(plot_history(history, out / "curves.png", title="EfficientNetB1: accuracy and loss"))

# %% [markdown]
# ## Evaluation on the test split
#
# Confusion matrix (counts and recall), scikit-learn's classification report and Grad-CAM
# overlays of the predicted class at `top_activation`, from one `evaluate_model` call. The
# paper's ~99 % needs the real data and pretrained weights; a quick run on phantoms is a
# smoke test.

# %%
report_dir = out / "report"
metrics = ktf.evaluate_model(
    model,
    eval_bundle,
    out_dir=report_dir,
    split="test",
    method="gradcam",
    extra_methods=(),
    crop="brain",
    max_cam_images=config.max_cam_images,
)
paper_accuracy = PAPER_RESULTS["brain-mri-efficientnet"]["model"]["accuracy"]
print(f"test accuracy {metrics['accuracy']:.3f} (paper: {paper_accuracy:.2f})")
show(report_dir / "confusion_matrix.png")
print((report_dir / "classification_report.txt").read_text())
show(report_dir / "cam_overlays_gradcam.png")

# %% [markdown]
# ## Next steps
#
# - Real data with pretrained weights: `DATA_DIR = "brain-tumor-mri-dataset"`,
#   `QUICK = False`, or `kidney-tf reproduce brain-mri-efficientnet --data ...`.
# - Save and serve: `model.save("brain.keras")`, then `kidney-tf export brain.keras
#   serving/brain/1`; its `predict_image_bytes` signature applies the brain crop in the graph.
