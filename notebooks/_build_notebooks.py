"""Write the three example notebooks from the cell sources below (their single source of truth).

The committed ``.ipynb`` files are this script's output, stored without outputs. Edit the cells
here, then regenerate; ``tests/test_notebooks.py`` checks that the files are in sync.

Usage::

    python notebooks/_build_notebooks.py           # (re)write notebooks/*.ipynb
    python notebooks/_build_notebooks.py --check   # exit 1 if a notebook is out of date
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

Cell = tuple[str, str, list[str]]  # (kind, source, tags)


def md(source: str) -> Cell:
    return ("markdown", textwrap.dedent(source).strip("\n"), [])


def code(source: str, *tags: str) -> Cell:
    return ("code", textwrap.dedent(source).strip("\n"), list(tags))


# Shared cells ----------------------------------------------------------------------------------
SHOW_HELPER = code(
    '''
    def show(path):
        """Display a PNG the package wrote (every figure is also kept under OUT_DIR)."""
        display(Image(filename=str(path)))
    '''
)


# 01 kidney CT: CAM fostering ------------------------------------------------------------------
KIDNEY: list[Cell] = [
    md(
        """
        # Kidney CT classification with CAM fostering (ResNet-50)

        **Description:** train a ResNet-50 kidney-CT classifier (Cyst / Normal / Stone / Tumor) with
        class-weighted cross-entropy, fine-tune it with *CAM fostering*, and measure with Grad-CAM++
        whether its class activation maps became more compact — and whether they still look at the
        kidney.

        **The paper.** A ResNet-50 with a custom head is trained on the public CT-KIDNEY dataset with
        class-weighted cross-entropy. It is then fine-tuned with an extra loss term,
        `λ · normalised entropy of the true class's CAM` at the last convolutional block (gradients
        flow through the CAM), which rewards concentrated maps. Evaluated with Grad-CAM++, the mean
        normalised entropy fell from **0.6168 to 0.3313** and the radius (spread of the CAM mass
        around its centroid) from **0.4254 to 0.2394**.

        **What we add.** Entropy, radius and SNR only say how *compact* a map is, not *where* it is.
        We also measure the CAM mass outside the patient's body, and — on data with lesion masks —
        the energy inside the lesion and the pointing game, each next to its chance level.

        **Data.** With `DATA_DIR = None` the notebook generates synthetic CT phantoms with
        pixel-accurate lesion masks (`kidney_tf.data.phantoms`); point `DATA_DIR` to the
        CT-KIDNEY class folders (`Cyst/ Normal/ Stone/ Tumor/`) to run on the real scans.

        **Runtime.** `QUICK = True` uses the package's quick preset (`kidney-tf reproduce
        kidney-cam-fostering --quick`): 128-px images, ResNet-50 from scratch, a few CPU minutes.
        The test suite runs this notebook with even smaller settings as a smoke test; numbers
        from such a run mean nothing. `QUICK = False` uses the paper's settings (224 px, ImageNet
        weights, 30 + 10 epochs: use a GPU).
        """
    ),
    code(
        """
        # Parameters (papermill-style: this cell is tagged "parameters"; None = take the preset's).
        DATA_DIR = None  # CT-KIDNEY class folders; None -> synthetic phantoms under OUT_DIR/data
        OUT_DIR = "runs/01_kidney_ct"  # every file the notebook writes goes here
        QUICK = True  # True: CPU-sized quick preset; False: the paper's settings
        EPOCHS = None  # baseline epochs (paper: 30)
        FINETUNE_EPOCHS = None  # CAM-fostering fine-tune epochs (paper: 10)
        IMAGE_SIZE = None  # model input in px (paper: 224)
        BATCH_SIZE = None
        PER_CLASS = None  # phantoms per class (only when DATA_DIR is None)
        CAM_WEIGHT = None  # lambda, weight of the CAM-entropy term (quick preset: 10.0)
        SEED = 42
        """,
        "parameters",
    ),
    md(
        """
        ## Setup

        The settings come from the same preset as the `kidney-tf reproduce` command, so the
        notebook and the CLI run the same experiment; the parameters above override it.
        """
    ),
    code(
        """
        from pathlib import Path

        import keras
        import matplotlib.pyplot as plt
        import numpy as np
        import tensorflow as tf
        from IPython.display import Image, Markdown, display

        import kidney_tf as ktf
        from kidney_tf.data.crop import body_mask
        from kidney_tf.data.phantoms import PHANTOM_CLASSES
        from kidney_tf.data.splits import write_split_csv
        from kidney_tf.evaluation.compare import compare_reports
        from kidney_tf.evaluation.dataset_figures import dataset_figures
        from kidney_tf.utils.plots import plot_history
        from kidney_tf.pipelines.reproduce import PAPER_RESULTS, ReproduceConfig
        from kidney_tf.training.callbacks import cosine_schedule

        # kidney_tf's report figures select matplotlib's Agg backend on import; show plots inline.
        %matplotlib inline

        config = ReproduceConfig.preset(
            "kidney-cam-fostering",
            OUT_DIR,
            quick=QUICK,
            data=DATA_DIR,
            epochs=EPOCHS,
            finetune_epochs=FINETUNE_EPOCHS,
            image_size=IMAGE_SIZE,
            batch_size=BATCH_SIZE,
            phantom_per_class=PER_CLASS,
            cam_weight=CAM_WEIGHT,
            seed=SEED,
        )
        fostering = config.finetune_config()  # the CAM-fostering stage's TrainConfig
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(config.train.seed)
        print(
            f"{config.train.image_size} px, batch {config.train.batch_size}, {config.train.epochs} + "
            f"{fostering.epochs} epochs, weights={config.train.weights}, crop={config.train.crop}, "
            f"lambda={config.train.cam_weight}; writing to {out.resolve()}"
        )
        """
    ),
    SHOW_HELPER,
    md(
        """
        ## The data

        The phantoms are axial abdominal CT slices at kidney level, built in Hounsfield units and
        shown through an abdominal window like the public dataset, including the scanner table
        under the patient. Each image comes with its lesion mask (empty for *Normal*).
        `verify_dataset` checks that every file decodes and looks for (near-)duplicate images,
        the classic source of train/test leakage in the public kidney data.
        """
    ),
    code(
        """
        if config.data is None:
            manifest = ktf.generate_phantoms(
                "kidney-ct",
                out / "data" / "kidney-ct",
                per_class=config.phantom_per_class,
                image_size=config.phantom_image_size,
                seed=config.train.seed,
                lesion_scale=config.phantom_lesion_scale,
            )
            data_root = manifest.parent
        else:
            data_root = Path(config.data)
        print(ktf.verify_dataset(data_root).summary())
        """
    ),
    md("One phantom per class, lesion outlined in red:"),
    code(
        """
        classes = PHANTOM_CLASSES["kidney-ct"]
        fig, axes = plt.subplots(1, len(classes), figsize=(3.2 * len(classes), 3.4))
        for ax, name in zip(axes, classes):
            image, lesion = ktf.render_phantom(
                "kidney-ct",
                name,
                0,
                image_size=256,
                seed=config.train.seed,
                lesion_scale=config.phantom_lesion_scale,
            )
            ax.imshow(image, cmap="gray")
            if lesion.any():
                ax.contour(lesion, levels=[0.5], colors="red", linewidths=1)
            ax.set_title(f"{name}: lesion {int(lesion.sum())} px")
            ax.axis("off")
        plt.show()
        """
    ),
    md(
        """
        ### Class distribution and the body crop

        The split is the one training uses: stratified for the phantoms (independent images),
        leakage-aware for the real data (`split="auto"` keeps neighbouring slices of a scan in
        the same split). The class weights of the cross-entropy are scikit-learn's "balanced"
        weights of the training split.

        A network trained from scratch can put its CAM on the **scanner table** — the bright
        curve under the body is an acquisition shortcut. The body crop (`crop="body"`) keeps the
        largest body component, blanks everything else and crops to the body's box.
        """
    ),
    code(
        """
        summary = dataset_figures(
            data_root,
            out / "figures",
            crop=config.train.crop,
            image_size=config.train.image_size,
            split=config.train.split,
            seed=config.train.seed,
            per_class=1,
            n_augment=3,
        )
        show(out / "figures" / "class_distribution.png")

        image, _ = ktf.render_phantom("kidney-ct", "Tumor", 1, image_size=256, seed=config.train.seed)
        cropped = ktf.crop_body(image, size=config.train.image_size)
        panels = [
            ("slice (table at the bottom)", image),
            ("body mask", body_mask(image)),
            (f"body crop, {config.train.image_size} px", cropped.image),
        ]
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
        for ax, (title, panel) in zip(axes, panels):
            ax.imshow(panel, cmap="gray")
            ax.set_title(title)
            ax.axis("off")
        plt.show()
        show(out / "figures" / "crop_pairs.png")
        """
    ),
    md(
        """
        ## `tf.data` pipelines

        `build_datasets` reads, crops (in the graph), resizes, caches, shuffles and augments the
        training split; every element is `(images float32 0..255, one-hot labels)`, the models do
        their own preprocessing. The evaluation bundle has the same split, no augmentation, and
        also yields the lesion masks (cropped with the same box) for the localisation metrics.
        """
    ),
    code(
        """
        data_settings = dict(
            image_size=config.train.image_size,
            batch_size=config.train.batch_size,
            split=config.train.split,
            seed=config.train.seed,
            crop=config.train.crop,
        )
        bundle = ktf.build_datasets(data_root, **data_settings)
        eval_bundle = ktf.build_datasets(
            data_root, **data_settings, augment=False, with_masks=True, cache=False
        )
        print(bundle.describe())
        """
    ),
    md(
        """
        ## Baseline: ResNet-50 with class-weighted cross-entropy

        `build_classifier` returns a *flat* functional model (the backbone's layers are the
        model's own, so CAM tools can reach `conv5_block3_out`), taking raw 0–255 pixels. The head
        is the paper's: global average pooling and one dense layer. We wrap it in a
        `CamFosteringModel` with λ = 0 — exactly the standard Keras training step — so that the
        validation CAM entropy is logged from the first epoch.
        """
    ),
    code(
        """
        classifier = ktf.build_classifier(
            "resnet50",
            image_size=config.train.image_size,
            weights=config.train.weights,
            bn_momentum=config.train.bn_momentum,
            class_names=bundle.class_names,
        )
        model = ktf.CamFosteringModel.from_classifier(
            classifier, cam_weight=0.0, cam_method=config.train.cam_method, metadata={"crop": config.train.crop}
        )
        loss = ktf.WeightedCrossEntropy(bundle.class_weights)


        def schedule(base_lr, epochs):
            # the preset's per-epoch learning-rate schedule, as `kidney-tf train` applies it
            return [cosine_schedule(base_lr, epochs)] if config.train.lr_schedule == "cosine" else []


        model.compile(optimizer=keras.optimizers.Adam(config.train.lr or 1e-3), loss=loss, metrics=["accuracy"])
        callbacks = schedule(config.train.lr or 1e-3, config.train.epochs)
        if config.train.patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(patience=config.train.patience, restore_best_weights=True)
            )
        baseline_history = model.fit(
            bundle.train,
            validation_data=bundle.val,
            epochs=config.train.epochs,
            callbacks=callbacks,
            verbose=2,
        )
        show(plot_history(baseline_history, out / "baseline_curves.png", title="Baseline"))
        """
    ),
    md(
        """
        ### Grad-CAM++ evaluation of the baseline

        `evaluate_model` writes a complete report folder: metrics, confusion matrix,
        calibration, and the CAM statistics of the test split (maps upsampled to the input size, as
        in the paper), with chance baselines for the localisation metrics.
        """
    ),
    code(
        """
        eval_settings = dict(
            split="test", method="gradcam++", extra_methods=(), max_cam_images=config.max_cam_images
        )
        baseline_metrics = ktf.evaluate_model(
            model, eval_bundle, out_dir=out / "reports" / "baseline", **eval_settings
        )
        print(f"baseline accuracy {baseline_metrics['accuracy']:.3f}")
        show(out / "reports" / "baseline" / "cam_overlays_gradcam++.png")
        """
    ),
    md(
        """
        ## CAM fostering

        Same model, same layers: setting `cam_weight` (λ) adds `λ · H(CAM)` to the loss, where
        `H` is the normalised entropy of the true class's CAM at `conv5_block3_out`. For the
        paper's head (pooling + one dense layer) the CAM has a closed form computed from the same
        forward pass: `relu(features @ W[:, c])` (`cam_method="exact"`) or, as the quick preset
        uses, the map Grad-CAM++ gives for this head, `features @ relu(W[:, c])` shifted to a
        minimum of 0 (`cam_method="gradcam++"`), so the fine-tune lowers the very map the
        evaluation measures. The fine-tune starts from the baseline weights;
        `loss`, `ce_loss` and `cam_entropy` are logged separately. The quick preset trains the
        head alone (`unfreeze_top(model, 0)`): the penalty can then only re-weight the features
        the baseline learned, which on these phantoms moved CAM mass onto the lesions, where
        fine-tuning the whole network sharpened the maps in place, mostly off the lesions.
        """
    ),
    code(
        """
        model.cam_weight = fostering.cam_weight
        if fostering.unfreeze_top is not None:
            ktf.unfreeze_top(model, fostering.unfreeze_top)  # 0: the head alone
        model.compile(optimizer=keras.optimizers.Adam(fostering.lr), loss=loss, metrics=["accuracy"])
        fostered_history = model.fit(
            bundle.train,
            validation_data=bundle.val,
            epochs=fostering.epochs,
            callbacks=schedule(fostering.lr, fostering.epochs),
            verbose=2,
        )
        show(
            plot_history(
                fostered_history,
                out / "fostered_curves.png",
                title=f"CAM fostering (lambda = {fostering.cam_weight})",
            )
        )
        fostered_metrics = ktf.evaluate_model(
            model, eval_bundle, out_dir=out / "reports" / "fostered", **eval_settings
        )
        model.save(out / "fostered.keras")
        write_split_csv(bundle.records, out / "split.csv")  # the split, next to the model
        print(f"fostered accuracy {fostered_metrics['accuracy']:.3f}")
        """
    ),
    md(
        """
        ## Baseline vs fostered: the paper's table and figure

        `compare_reports` pairs the two reports metric by metric (direction-aware: lower entropy,
        radius and outside-body fraction are better) and draws the same test images under both
        models (Grad-CAM++). The localisation rows show the chance level next to each value: a
        pointing game of 0.3 means little if a random point scores 0.3. Keep the
        outside-body fraction in view — a CAM that collapses onto the table is *compact* (low
        entropy, small radius) and wrong.
        """
    ),
    code(
        """
        comparison_dir = out / "reports" / "comparison"
        comparison = compare_reports(
            out / "reports" / "baseline",
            out / "reports" / "fostered",
            comparison_dir,
            labels=("baseline", "fostered"),
            reference="kidney",
        )
        display(Markdown((comparison_dir / "comparison.md").read_text()))
        if (comparison_dir / "paired_overlays.png").is_file():
            show(comparison_dir / "paired_overlays.png")
        """
    ),
    code(
        """
        paper = PAPER_RESULTS["kidney-cam-fostering"]
        lines = ["| metric | ours: baseline → fostered | paper: baseline → fostered |", "|---|---|---|"]
        for row in comparison["rows"]:
            if row["key"] in ("entropy", "radius"):
                pa, pb = paper["baseline"][row["key"]], paper["fostered"][row["key"]]
                lines.append(
                    f"| {row['label']} | {row['a']:.4f} → {row['b']:.4f} ({row['rel_change']:+.1%}) "
                    f"| {pa:.4f} → {pb:.4f} ({(pb - pa) / pa:+.1%}) |"
                )
        display(Markdown("\\n".join(lines)))
        """
    ),
    md(
        """
        ## Export for TensorFlow Serving

        `export_saved_model` writes a self-contained SavedModel (loading it needs TensorFlow
        only). `serving_default` takes raw 0–255 images; `predict_image_bytes` takes encoded image
        files and runs decoding, the body crop and the resize inside the graph; `explain` also
        returns the predicted class's CAM and its entropy. Serve the folder with
        `tensorflow_model_server --model_base_path=.../export/kidney_ct`.
        """
    ),
    code(
        """
        export_dir = ktf.export_saved_model(model, out / "export" / "kidney_ct" / "1", overwrite=True)
        served = tf.saved_model.load(str(export_dir))
        print("signatures:", sorted(served.signatures))

        images, labels = next(iter(bundle.test))
        outputs = served.signatures["serving_default"](images=images)
        gap = np.abs(outputs["probabilities"].numpy() - model.predict(images, verbose=0)).max()
        print(f"SavedModel vs Keras model: max |difference| = {gap:.2e}")

        test_records = bundle.records["test"][:4]
        from_files = served.signatures["predict_image_bytes"](
            image_bytes=tf.constant([Path(r.path).read_bytes() for r in test_records])
        )
        for record, name, p in zip(
            test_records, from_files["class_name"].numpy(), from_files["probabilities"].numpy()
        ):
            print(
                f"{Path(record.path).name}: true {record.label}, predicted {name.decode()} ({p.max():.2f})"
            )
        """
    ),
    md(
        """
        ## Next steps

        - Run on the real data: `DATA_DIR = "CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone"`,
          `QUICK = False` (or `kidney-tf reproduce kidney-cam-fostering --data ...` from a shell;
          it resumes after an interruption).
        - `fostered.keras` (with `split.csv` beside it) feeds `03_explainability.ipynb`
          (`MODEL_PATH`) for Score-CAM, faithfulness and calibration.
        """
    ),
]

# 02 brain MRI: EfficientNetB1 -----------------------------------------------------------------
BRAIN: list[Cell] = [
    md(
        """
        # Brain-tumour MRI classification with EfficientNetB1

        **Description:** crop brain MRI slices to the brain's contour, augment them, and fine-tune
        an EfficientNetB1 to tell glioma, meningioma, pituitary tumour and no tumour apart; then
        read the confusion matrix, the classification report and Grad-CAM maps.

        **The paper.** Every image of the public brain-tumour MRI dataset is cropped to the brain
        by its largest contour (grayscale → Gaussian blur → threshold 45 → erode/dilate → extreme
        points of the largest contour), resized, augmented (rotation, zoom, shifts, flips,
        brightness) and fed to an ImageNet-pretrained EfficientNetB1 with a new classification
        head, trained first with a frozen backbone and then end to end. It reports ~99 % test
        accuracy.

        **Data.** `DATA_DIR = None` generates synthetic MRI phantoms (off-centre heads on black
        background, so the crop matters). Point `DATA_DIR` to the dataset folder holding
        `Training/` and `Testing/` to run on the real images.

        **Weights.** ImageNet weights need a download; `QUICK = True` trains from scratch
        (`weights=None`) so the notebook runs offline. With network access use
        `WEIGHTS = "imagenet"` (the `QUICK = False` default) — that is the paper's transfer learning.
        """
    ),
    code(
        """
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
        """,
        "parameters",
    ),
    md("## Setup"),
    code(
        """
        from pathlib import Path

        import keras
        from IPython.display import Image, display

        import kidney_tf as ktf
        from kidney_tf.evaluation.dataset_figures import dataset_figures
        from kidney_tf.utils.plots import plot_history
        from kidney_tf.models.builders import set_backbone_trainable
        from kidney_tf.pipelines.reproduce import PAPER_RESULTS, ReproduceConfig

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
            f"{config.train.epochs} epochs, weights={config.train.weights}; writing to {out.resolve()}"
        )
        """
    ),
    SHOW_HELPER,
    md(
        """
        ## The data

        The real dataset comes split into `Training/` and `Testing/`; the pipeline keeps that test
        split and carves a validation split out of `Training/`. Phantoms have no split folders and
        are split the same way as the kidney data.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        `dataset_figures` draws the paper's data figures: images per class and split, one sample per
        class, each sample before (crop box drawn) and after the brain crop, and a few
        training-time augmentations of the cropped image.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## `tf.data` pipelines

        The paper crops the image files once before training (`kidney-tf data crop` does that).
        Here the same recipe runs inside the `tf.data` graph (`crop="brain"`), so the pipeline
        reads the original files; the crops agree with the OpenCV ones. Augmentation (the paper's
        recipe, seeded) touches the training split only.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## EfficientNetB1 transfer learning

        A flat EfficientNetB1 (its rescaling and normalisation are layers of the model, so it takes
        raw 0–255 pixels) with a new head: pooling, dropout and the class layer. With pretrained
        weights the head is trained alone first (`set_backbone_trainable(model, False)`: frozen
        BatchNorm layers stay in inference mode), then the whole network at a tenth of the learning
        rate. A randomly initialised backbone has nothing to keep, so the quick preset skips the
        frozen phase.
        """
    ),
    code(
        """
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
        histories.append(model.fit(bundle.train, epochs=config.train.epochs, callbacks=callbacks, **fit_settings))
        keys = [k for k in histories[-1].history if all(k in h.history for h in histories)]
        history = {k: [v for h in histories for v in h.history[k]] for k in keys}
        show(plot_history(history, out / "curves.png", title="EfficientNetB1: accuracy and loss"))
        """
    ),
    md(
        """
        ## Evaluation on the test split

        Confusion matrix (counts and recall), scikit-learn's classification report and Grad-CAM
        overlays of the predicted class at `top_activation`, from one `evaluate_model` call. The
        paper's ~99 % needs the real data and pretrained weights; a quick run on phantoms is a
        smoke test.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## Next steps

        - Real data with pretrained weights: `DATA_DIR = "brain-tumor-mri-dataset"`,
          `QUICK = False`, or `kidney-tf reproduce brain-mri-efficientnet --data ...`.
        - Save and serve: `model.save("brain.keras")`, then `kidney-tf export brain.keras
          serving/brain/1`; its `predict_image_bytes` signature applies the brain crop in the graph.
        """
    ),
]

# 03 explainability ----------------------------------------------------------------------------
EXPLAIN: list[Cell] = [
    md(
        """
        # Explainability: CAMs, their statistics, faithfulness and calibration

        **Description:** compare Grad-CAM, Grad-CAM++ and Score-CAM on a kidney-CT classifier, learn
        what the map statistics of the CAM-fostering paper (normalised entropy, radius, SNR)
        measure on maps whose answer we know, check localisation against chance, catch shortcut
        learning, test whether the maps are *faithful* to the model (deletion/insertion), and check
        whether its probabilities are calibrated.

        **Model.** Set `MODEL_PATH` to a saved kidney model (e.g. `fostered.keras` from
        `01_kidney_ct_cam_fostering.ipynb`, or `model.keras` from `kidney-tf train`). With
        `MODEL_PATH = None` the notebook trains a small ResNet-50 from scratch with
        `kidney_tf.training.trainer.train` — the function behind `kidney-tf train`.

        **Data.** `DATA_DIR = None` generates kidney-CT phantoms with lesion masks (the masks make
        the localisation metrics possible; the real dataset has none).
        """
    ),
    code(
        """
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
        """,
        "parameters",
    ),
    md("## Setup"),
    code(
        """
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
        %matplotlib inline

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
            \"""Display a PNG the package wrote (every figure is also kept under OUT_DIR).\"""
            display(Image(filename=str(path)))


        def fmt(value):
            if value is None:
                return "–"
            return f"{round(value, 4) + 0.0:.4f}" if isinstance(value, float) else str(value)


        def table(header, rows):
            \"""Show rows as a Markdown table (floats with 4 decimals, None as a dash).\"""
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
            display(Markdown("\\n".join(lines)))
        """
    ),
    md(
        """
        ## The statistics on maps whose answer we know

        The CAM-fostering paper scores a map by its **normalised entropy** (the map summed to a
        probability distribution; Shannon entropy over `ln(H·W)`: uniform 1, one-hot 0), its
        **radius** (radius of gyration of the mass around its centroid, image coordinates in
        [0, 1]: uniform ≈ 0.408, one-hot 0) and its **SNR** (mean of the peak region — pixels
        ≥ half the maximum — over the mean of the rest). `kidney_tf.explain.statistics` is the
        single definition training, evaluation and export use. Analytic maps show what each
        number responds to: two distant blobs have a *low* entropy but a *large* radius.
        """
    ),
    code(
        """
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
            ax.set_title(f"{name}\\nH={h:.2f} r={r:.2f}", fontsize=8)
            ax.axis("off")
        plt.show()
        """
    ),
    md(
        """
        ## A model and its test images

        Either the model from `MODEL_PATH` — its test split comes from the `split.csv` saved next
        to it, so we never explain images it was trained on — or a ResNet-50 trained here. The
        evaluation datasets yield the lesion masks next to the images (cropped with the same body
        box).
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## Grad-CAM vs Grad-CAM++ vs Score-CAM

        All three weight the feature maps of `conv5_block3_out` and sum them; they differ in the
        weights. **Grad-CAM**: spatially averaged gradients of the class score. **Grad-CAM++**:
        higher-order gradient weighting, better with several instances of a class (the paper's
        evaluation method). **Score-CAM**: no gradients — each channel masks the input and the
        weight is the class score of the masked image (`faster-scorecam` in quick mode uses the
        10 channels with the largest variance). Scores are taken *before* the softmax.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## Statistics of the model's maps, and localisation vs chance

        `summarize_maps` computes everything for a batch. With lesion masks it adds the
        **pointing game** (does the maximum fall in the lesion?), the **energy in the mask**
        (fraction of CAM mass on the lesion) and the **IoU** of the peak region with the lesion,
        each next to what an uninformative map scores on the same masks (`chance_baselines`:
        a uniformly random point, a uniform map);
        *Normal* images have no lesion and are left out of these. The **outside-body fraction**
        needs no mask: CAM mass off the patient is evidence of a shortcut.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ### What a shortcut looks like

        Entropy, radius and SNR cannot tell a sharp right answer from a sharp wrong one. Maps of a
        model that learned a burned-in corner marker are *perfectly compact* — and
        `shortcut_warnings` flags them: most maps of the class peak in the same grid cell, outside
        the body.
        """
    ),
    code(
        """
        n = max(len(images), 3)
        corner = np.stack([blob(3, 3, 3)] * n).astype("float32")
        fg = np.resize(foreground, (n, *foreground.shape[1:]))
        print(
            f"entropy {ktf.normalized_entropy(corner).numpy().mean():.3f}, radius "
            f"{ktf.cam_radius(corner).numpy().mean():.3f}: looks excellent"
        )
        for warning in ktf.shortcut_warnings(corner, np.zeros(n, int), fg, class_names=class_names):
            print("WARNING:", warning)
        """
    ),
    md(
        """
        ## Faithfulness: deletion and insertion

        A map is faithful if the pixels it ranks highest are the ones the model needs. Deleting
        them first (replacing them by a blurred copy) should make the class probability fall fast
        (**low deletion AUC**); inserting them first into the blurred image should make it rise
        fast (**high insertion AUC**). Both are compared with a random pixel order: a map is only
        informative where it beats random.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## Calibration

        Is a 0.9 confidence right 90 % of the time? The reliability diagram bins test predictions
        by confidence and compares accuracy with confidence; the **ECE** is the weighted gap.
        Temperature scaling (one scalar dividing the logits, fitted on the *validation* split)
        fixes over-confidence without changing any prediction. Store it with
        `fit_model_temperature(model, bundle.val, store=True)` so evaluation and export apply it.
        """
    ),
    code(
        """
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
        """
    ),
    md(
        """
        ## Next steps

        - `kidney-tf explain MODEL IMAGES...` writes overlays and these statistics per image;
          `kidney-tf evaluate` writes all of the above for a whole split as one HTML report.
        - Compare two models' reports with `kidney-tf compare` (see notebook 01).
        """
    ),
]

NOTEBOOKS: dict[str, list[Cell]] = {
    "01_kidney_ct_cam_fostering.ipynb": KIDNEY,
    "02_brain_mri_efficientnetb1.ipynb": BRAIN,
    "03_explainability.ipynb": EXPLAIN,
}


def build(cells: list[Cell], stem: str) -> nbformat.NotebookNode:
    """A notebook without outputs, with stable cell ids (``<stem>-<index>``)."""
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, (kind, source, tags) in enumerate(cells):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = f"{stem}-{index:02d}"
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def build_notebook(name: str) -> nbformat.NotebookNode:
    """Notebook ``name`` (e.g. ``"03_explainability.ipynb"``) as its generator defines it."""
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; choose one of {', '.join(NOTEBOOKS)}")
    return build(NOTEBOOKS[name], "nb" + name.split("_", 1)[0])


def render(name: str) -> str:
    """The exact file text of notebook ``name``."""
    return nbformat.writes(build_notebook(name), version=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are in sync")
    args = parser.parse_args(argv)
    stale = []
    for name in NOTEBOOKS:
        path = HERE / name
        text = render(name)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run notebooks/_build_notebooks.py)")
        return 1
    if not args.check:
        print(f"wrote {len(stale)} notebook(s)" if stale else "notebooks up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
