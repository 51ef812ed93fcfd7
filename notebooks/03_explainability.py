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
# # Explainability: CAMs, their statistics, faithfulness and calibration
#
# **Description:** compare Grad-CAM, Grad-CAM++ and Score-CAM on a kidney-CT classifier, learn
# what the map statistics of the CAM-fostering paper (normalised entropy, radius, SNR)
# measure on maps whose answer we know, check localisation against chance, catch shortcut
# learning, test whether the maps are *faithful* to the model (deletion/insertion), and check
# whether its probabilities are calibrated.
#
# **Model.** Set `MODEL_PATH` to a saved kidney model (e.g. `fostered.keras` from
# `01_kidney_ct_cam_fostering.ipynb`, or `model.keras` from `kidney-tf train`). With
# `MODEL_PATH = None` the notebook trains a small ResNet-50 from scratch with
# `kidney_tf.training.trainer.train` — the function behind `kidney-tf train`.
#
# **Data.** `DATA_DIR = None` generates kidney-CT phantoms with lesion masks (the masks make
# the localisation metrics possible; the real dataset has none).

# %% tags=["parameters"]
# Parameters (papermill-style: this cell is tagged "parameters").
DATA_DIR = None  # CT-KIDNEY class folders; None -> synthetic phantoms under OUT_DIR/data
OUT_DIR = "runs/03_explainability"  # every file the notebook writes goes here
MODEL_PATH = None  # a saved kidney classifier (.keras); None -> train one here
QUICK = True  # True: CPU-sized settings; False: larger images, more epochs and images
EPOCHS = None  # training epochs when MODEL_PATH is None
IMAGE_SIZE = None  # model input in px when training here
PER_CLASS = None  # phantoms per class (only when DATA_DIR is None)
N_IMAGES = None  # test images explained
SEED = 42

# %% [markdown]
# ## Setup

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

import kidney_tf as ktf
from kidney_tf.data.crop import body_mask
from kidney_tf.evaluation.calibration import (
    apply_temperature,
    fit_temperature,
    reliability_data,
)
from kidney_tf.evaluation.figures import overlay_cam, plot_reliability_diagram
from kidney_tf.evaluation.report import predict_dataset
from kidney_tf.explain.statistics import snr_db

# kidney_tf's report figures select matplotlib's Agg backend on import; show plots inline.
# %matplotlib inline

preset = {
    True: dict(epochs=8, image_size=128, per_class=60, n_images=16, steps=16),
    False: dict(epochs=30, image_size=224, per_class=150, n_images=64, steps=32),
}[bool(QUICK)]
EPOCHS = EPOCHS or preset["epochs"]
IMAGE_SIZE = IMAGE_SIZE or preset["image_size"]
PER_CLASS = PER_CLASS or preset["per_class"]
N_IMAGES = N_IMAGES or preset["n_images"]
SCORECAM = "faster-scorecam" if QUICK else "scorecam"
out = Path(OUT_DIR)
out.mkdir(parents=True, exist_ok=True)


def show(path):
    """Display a PNG the package wrote (every figure is also kept under OUT_DIR)."""
    display(Image(filename=str(path)))


def fmt(value):
    if value is None:
        return "–"
    return f"{round(value, 4) + 0.0:.4f}" if isinstance(value, float) else str(value)


def table(header, rows):
    """Show rows as a Markdown table (floats with 4 decimals, None as a dash)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


# %% [markdown]
# ## The statistics on maps whose answer we know
#
# The CAM-fostering paper scores a map by its **normalised entropy** (the map summed to a
# probability distribution; Shannon entropy over `ln(H·W)`: uniform 1, one-hot 0), its
# **radius** (radius of gyration of the mass around its centroid, image coordinates in
# [0, 1]: uniform ≈ 0.408, one-hot 0) and its **SNR** (mean of the peak region — pixels
# ≥ half the maximum — over the mean of the rest). `kidney_tf.explain.statistics` is the
# single definition training, evaluation and export use. Analytic maps show what each
# number responds to: two distant blobs have a *low* entropy but a *large* radius.

# %%
size = 64
yy, xx = np.mgrid[0:size, 0:size] + 0.5


def blob(cy, cx, sigma):
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


one_hot = np.zeros((size, size))
one_hot[20, 40] = 1.0
analytic = {
    "uniform": np.ones((size, size)),
    "one-hot": one_hot,
    "blob, sigma 2 px": blob(32, 32, 2),
    "blob, sigma 8 px": blob(32, 32, 8),
    "blob, sigma 16 px": blob(32, 32, 16),
    "two blobs, sigma 4 px": blob(12, 12, 4) + blob(52, 52, 4),
}
stack = np.stack(list(analytic.values())).astype("float32")
entropy = ktf.normalized_entropy(stack).numpy()
radius = ktf.cam_radius(stack).numpy()
snr = ktf.cam_snr(stack).numpy()
table(
    ["map", "entropy", "radius", "SNR", "SNR [dB]"],
    [
        [name, float(h), float(r), float(s), float(d)]
        for name, h, r, s, d in zip(analytic, entropy, radius, snr, snr_db(snr).numpy())
    ],
)
fig, axes = plt.subplots(1, len(analytic), figsize=(2.4 * len(analytic), 2.8))
for ax, (name, cam), h, r in zip(axes, analytic.items(), entropy, radius):
    ax.imshow(cam, cmap="jet")
    ax.set_title(f"{name}\nH={h:.2f} r={r:.2f}", fontsize=8)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## A model and its test images
#
# Either the model from `MODEL_PATH` — its test split comes from the `split.csv` saved next
# to it, so we never explain images it was trained on — or a ResNet-50 trained here. The
# evaluation datasets yield the lesion masks next to the images (cropped with the same body
# box).

# %%
if MODEL_PATH is None:
    from kidney_tf.training.trainer import TrainConfig, train

    if DATA_DIR is None:
        manifest = ktf.generate_phantoms(
            "kidney-ct", out / "data" / "kidney-ct", per_class=PER_CLASS, image_size=160, seed=SEED
        )
        data_root = manifest.parent
    else:
        data_root = Path(DATA_DIR)
    run = train(
        TrainConfig(
            out=str(out / "run"),
            data=str(data_root),
            arch="resnet50",
            image_size=IMAGE_SIZE,
            epochs=EPOCHS,
            batch_size=16,
            lr=1e-3,
            weights=None,
            bn_momentum=0.9,
            crop="body",
            patience=0,
            seed=SEED,
            verbose=2,
        )
    )
    show(run.run_dir / "curves.png")
    model = ktf.load_model(run.run_dir / "model.keras")
    source, root = run.run_dir / "split.csv", data_root  # the exact split of training
else:
    model = ktf.load_model(MODEL_PATH)
    # Notebook 01 and `kidney-tf train` save the split next to the model: never explain
    # images the model was trained on.
    split_csv = Path(MODEL_PATH).with_name("split.csv")
    if split_csv.is_file():
        source, root = split_csv, DATA_DIR
    elif DATA_DIR is not None:
        source, root = Path(DATA_DIR), None  # split recomputed with the same seed
    else:
        raise ValueError(f"no split.csv next to {MODEL_PATH}: set DATA_DIR to its data")

image_size = int(model.inputs[0].shape[1])
crop = model.metadata.get("crop")
bundle = ktf.build_datasets(
    source,
    root=root,
    image_size=image_size,
    batch_size=16,
    seed=SEED,
    crop=crop,
    augment=False,
    cache=False,
    with_masks=True,
    class_names=model.class_names,
)
print(bundle.describe())

images, onehot, masks = (t.numpy() for t in next(iter(bundle.test.unbatch().batch(N_IMAGES))))
labels, masks = onehot.argmax(axis=1), masks[..., 0] > 0.5
foreground = np.stack([body_mask(image) for image in images])
class_names = model.class_names
print(f"{len(images)} test images, {int(masks.any(axis=(1, 2)).sum())} with a lesion mask")

# %% [markdown]
# ## Grad-CAM vs Grad-CAM++ vs Score-CAM
#
# All three weight the feature maps of `conv5_block3_out` and sum them; they differ in the
# weights. **Grad-CAM**: spatially averaged gradients of the class score. **Grad-CAM++**:
# higher-order gradient weighting, better with several instances of a class (the paper's
# evaluation method). **Score-CAM**: no gradients — each channel masks the input and the
# weight is the class score of the masked image (`faster-scorecam` in quick mode uses the
# 10 channels with the largest variance). Scores are taken *before* the softmax.

# %%
methods = ["gradcam", "gradcam++", SCORECAM]
shown = min(4, len(images))
# Grad-CAM++ for every test image (statistics below), the others for the images shown.
cams = {
    m: ktf.compute_cams(model, images[:shown], method=m, class_index=labels[:shown])
    for m in methods
    if m != "gradcam++"
}
cams["gradcam++"] = ktf.compute_cams(model, images, method="gradcam++", class_index=labels)
fig, axes = plt.subplots(shown, len(methods) + 1, figsize=(2.6 * (len(methods) + 1), 2.6 * shown))
for i, row in enumerate(np.atleast_2d(axes)):
    row[0].imshow(images[i].astype("uint8"))
    if masks[i].any():
        row[0].contour(masks[i], levels=[0.5], colors="lime", linewidths=1)
    lesion = " (lesion in green)" if masks[i].any() else ""
    row[0].set_title(f"true {class_names[labels[i]]}{lesion}", fontsize=8)
    for ax, m in zip(row[1:], methods):
        cam = cams[m][i : i + 1]
        ax.imshow(overlay_cam(images[i], cam[0]))
        h, r = ktf.normalized_entropy(cam).numpy()[0], ktf.cam_radius(cam).numpy()[0]
        ax.set_title(f"{m}: H={h:.2f} r={r:.2f}", fontsize=8)
    for ax in row:
        ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Statistics of the model's maps, and localisation vs chance
#
# `summarize_maps` computes everything for a batch. With lesion masks it adds the
# **pointing game** (does the maximum fall in the lesion?), the **energy in the mask**
# (fraction of CAM mass on the lesion) and the **IoU** of the peak region with the lesion,
# each next to what an uninformative map scores on the same masks (`chance_baselines`:
# a uniformly random point, a uniform map);
# *Normal* images have no lesion and are left out of these. The **outside-body fraction**
# needs no mask: CAM mass off the patient is evidence of a shortcut.

# %%
maps = cams["gradcam++"]
summary = ktf.summarize_maps(
    maps, masks=masks, foreground=foreground, labels=labels, class_names=class_names
)
names = [
    "entropy",
    "radius",
    "snr_db",
    "outside_fraction",
    "pointing_game",
    "energy_in_mask",
    "cam_iou",
]
table(
    ["statistic (Grad-CAM++)", "mean", "chance"],
    [[name, summary["mean"].get(name), summary["chance"].get(name)] for name in names],
)
print("shortcut warnings:", summary.get("warnings") or "none")

# %% [markdown]
# ### What a shortcut looks like
#
# Entropy, radius and SNR cannot tell a sharp right answer from a sharp wrong one. Maps of a
# model that learned a burned-in corner marker are *perfectly compact* — and
# `shortcut_warnings` flags them: most maps of the class peak in the same grid cell, outside
# the body.

# %%
n = max(len(images), 3)
corner = np.stack([blob(3, 3, 3)] * n).astype("float32")
fg = np.resize(foreground, (n, *foreground.shape[1:]))
print(
    f"entropy {ktf.normalized_entropy(corner).numpy().mean():.3f}, radius "
    f"{ktf.cam_radius(corner).numpy().mean():.3f}: looks excellent"
)
for warning in ktf.shortcut_warnings(corner, np.zeros(n, int), fg, class_names=class_names):
    print("WARNING:", warning)

# %% [markdown]
# ## Faithfulness: deletion and insertion
#
# A map is faithful if the pixels it ranks highest are the ones the model needs. Deleting
# them first (replacing them by a blurred copy) should make the class probability fall fast
# (**low deletion AUC**); inserting them first into the blurred image should make it rise
# fast (**high insertion AUC**). Both are compared with a random pixel order: a map is only
# informative where it beats random.

# %%
faith = ktf.deletion_insertion(model, images, maps, class_index=labels, steps=preset["steps"])
scores = faith.summary()
table(
    ["curve", "Grad-CAM++ AUC", "random order AUC"],
    [
        ["deletion (lower is better)", scores["deletion_auc"], scores["random_deletion_auc"]],
        ["insertion (higher is better)", scores["insertion_auc"], scores["random_insertion_auc"]],
    ],
)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for ax, kind in zip(axes, ("deletion", "insertion")):
    ax.plot(faith.fractions, getattr(faith, f"{kind}_curve").mean(0), label="Grad-CAM++ order")
    ax.plot(
        faith.fractions, getattr(faith, f"random_{kind}_curve").mean(0), "--", label="random order"
    )
    ax.set(title=kind, xlabel="fraction of pixels", ylabel="class probability")
    ax.legend()
plt.show()

# %% [markdown]
# ## Calibration
#
# Is a 0.9 confidence right 90 % of the time? The reliability diagram bins test predictions
# by confidence and compares accuracy with confidence; the **ECE** is the weighted gap.
# Temperature scaling (one scalar dividing the logits, fitted on the *validation* split)
# fixes over-confidence without changing any prediction. Store it with
# `fit_model_temperature(model, bundle.val, store=True)` so evaluation and export apply it.

# %%
val_probs, val_labels = predict_dataset(model, bundle.val)
test_probs, test_labels = predict_dataset(model, bundle.test)
temperature = fit_temperature(val_probs, val_labels)
before = reliability_data(test_probs, test_labels)
after = reliability_data(apply_temperature(test_probs, temperature), test_labels)
print(
    f"T = {temperature:.2f}; ECE {before.ece:.3f} -> {after.ece:.3f} "
    f"on {len(test_labels)} test images"
)
show(
    plot_reliability_diagram(
        before, out / "reliability.png", calibrated=after, temperature=temperature
    )
)

# %% [markdown]
# ## Next steps
#
# - `kidney-tf explain MODEL IMAGES...` writes overlays and these statistics per image;
#   `kidney-tf evaluate` writes all of the above for a whole split as one HTML report.
# - Compare two models' reports with `kidney-tf compare` (see notebook 01).
