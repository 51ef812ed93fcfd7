"""``evaluate_model``: classification, calibration and CAM evaluation of a model on one split.

Writes into ``out_dir`` (each file atomically):

==========================  =================================================================
``metrics.json``            accuracy, macro/weighted F1, per-class P/R/F1/support, confusion
                            matrix, calibration (ECE, temperature), ``cam`` statistics with
                            chance baselines, shortcut warnings, faithfulness (see ``schema``)
``classification_report.txt``  scikit-learn ``classification_report`` (digits=4)
``predictions.csv``         file, true, pred, confidence, probabilities, per-image CAM stats
``cam_examples.npz``        a few images, maps and stats, so ``compare`` can pair reports
``confusion_matrix.png``    counts and recall-normalised
``samples.png``             per-class sample grid with predictions
``cam_overlays_<m>.png``    image | heatmap | overlay per example, one file per CAM method
``cam_statistics.png``      entropy/radius/SNR/outside-fraction histograms per class
``reliability_diagram.png`` calibration (before/after temperature scaling)
``report.html``/``.md``     everything on one page (HTML self-contained, base64 images)
==========================  =================================================================

CAMs explain the *predicted* class by default (``cam_target="true"`` for the true class), are
computed for the first ``max_cam_images`` images of the split (all by default), upsampled to the
input size, and summarised with ``kidney_tf.explain.statistics``. The foreground for the
outside-body fraction is the brain mask when the model was trained with ``crop="brain"`` and the
body mask otherwise (``foreground=`` overrides).

Usage::

    import kidney_tf as ktf
    model = ktf.load_model("runs/fostered/model.keras")
    metrics = ktf.evaluate_model(model, "runs/baseline/split.csv", out_dir="reports/fostered")
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kidney_tf.evaluation.calibration import (
    apply_temperature,
    calibration_summary,
    fit_temperature,
    reliability_data,
)
from kidney_tf.evaluation.schema import (
    CAM_EXAMPLES_FILE,
    CAM_STATISTICS,
    LOCALISATION_STATISTICS,
    save_cam_examples,
)
from kidney_tf.recipes import parse_crop
from kidney_tf.utils.io import (
    atomic_path,
    ensure_writable_dir,
    write_json_atomic,
    write_text_atomic,
)
from kidney_tf.utils.logging import get_logger

log = get_logger(__name__)

SAMPLES_PER_CLASS = 4
DEFAULT_FAITHFULNESS_IMAGES = 16
REFERENCE_INPUT_PX = 224  # the pointing-game tolerance (15 px) is defined at 224 px


# ------------------------------------------------------------------------------- model facts
def model_metadata(model) -> dict[str, Any]:
    """The model's metadata dict (arch, image_size, crop, temperature...) or ``{}``."""
    meta = getattr(model, "metadata", None)
    return dict(meta) if isinstance(meta, dict) else {}


def model_class_names(model) -> list[str] | None:
    """Class names saved with the model (``Classifier``/``CamFosteringModel``), else None."""
    names = getattr(model, "class_names", None) or model_metadata(model).get("class_names")
    return [str(n) for n in names] if names else None


def model_input_size(model) -> tuple[int, int] | None:
    """``(H, W)`` of the model input, None when dynamic."""
    shape = tuple(model.inputs[0].shape[1:3])
    return None if None in shape else (int(shape[0]), int(shape[1]))


def _predict(model, images: np.ndarray, *, tta: bool = False) -> np.ndarray:
    """Class probabilities; with ``tta`` the mean over the image and its left-right mirror."""
    if tta:
        mirrored = np.ascontiguousarray(np.asarray(images)[:, :, ::-1])
        return 0.5 * (_predict(model, images) + _predict(model, mirrored))
    strategy = getattr(model, "distribute_strategy", None)
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # predict_on_batch would run the whole batch on every replica; predict splits it
        # across replicas (and gathers it across workers) in order.
        out = model.predict(images, batch_size=len(images), verbose=0)
    else:
        out = model.predict_on_batch(images)
    if isinstance(out, dict):
        out = out.get("probabilities", next(iter(out.values())))
    if isinstance(out, (list, tuple)):
        out = out[0]
    probs = np.asarray(out, dtype=np.float32)
    if probs.ndim != 2:
        raise ValueError(f"model output has shape {probs.shape}; expected [batch, classes]")
    return probs


# -------------------------------------------------------------------------------- the data
@dataclass
class EvalData:
    """A split ready to iterate: dataset of (images, one-hot labels[, masks]) and its file ids."""

    dataset: Any
    files: list[str] | None
    class_names: list[str]
    label_map: np.ndarray | None = None  # data label index -> model output index
    source: str = ""
    split_method: str = ""
    val_dataset: Any = None
    info: dict[str, Any] = field(default_factory=dict)


def _check_class_names(data_names: Sequence[str], names: Sequence[str], what: str) -> np.ndarray:
    unknown = [c for c in data_names if c not in names]
    if unknown:
        raise ValueError(
            f"{what}: classes {unknown} are unknown to the model (model classes: {list(names)})"
        )
    return np.array([list(names).index(c) for c in data_names], dtype=np.int64)


def resolve_data(
    data,
    *,
    split: str,
    class_names: Sequence[str] | None,
    image_size: int | None,
    batch_size: int,
    crop: str | None,
    seed: int = 42,
    split_method: str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    need_val: bool = False,
    data_root: str | os.PathLike | None = None,
    strict: bool = False,
) -> EvalData:
    """Turn a DataBundle, a ``tf.data.Dataset`` or a folder/CSV path into ``EvalData``.

    ``data_root`` is the data folder of a split CSV that holds absolute paths (a run's
    ``split.csv`` when the data lies outside the run folder).
    """
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        names = list(class_names) if class_names else None
        if names is None:
            raise ValueError("class_names are needed to evaluate a bare tf.data.Dataset")
        return EvalData(data, None, names, source="tf.data.Dataset")
    if hasattr(data, "dataset") and hasattr(data, "records"):  # a DataBundle
        return _from_bundle(data, split, class_names, image_size, need_val, source="DataBundle")
    if isinstance(data, (str, os.PathLike)):
        from kidney_tf.data.pipeline import build_datasets

        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{path}: data folder or manifest not found")
        try:
            bundle = build_datasets(
                path,
                image_size=image_size or 224,
                batch_size=batch_size,
                split=split_method,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                crop=crop,
                augment=False,
                cache=False,
                with_masks=True,
                class_names=class_names,
                root=data_root,
                strict=strict,
            )
        except ValueError as exc:
            if "not in class_names" in str(exc):
                raise ValueError(
                    f"{path}: the data has classes the model does not know ({exc})"
                ) from exc
            raise
        return _from_bundle(bundle, split, class_names, image_size, need_val, source=str(path))
    raise TypeError(
        f"data must be a DataBundle, a tf.data.Dataset or a folder/CSV path, got {type(data)}"
    )


def _from_bundle(bundle, split, class_names, image_size, need_val, *, source) -> EvalData:
    dataset = bundle.dataset(split)
    if dataset is None:
        raise ValueError(f"{source}: the {split!r} split is empty")
    if image_size is not None and getattr(bundle, "image_size", image_size) != image_size:
        raise ValueError(
            f"{source}: images are {bundle.image_size} px but the model expects {image_size} px"
        )
    names = list(class_names) if class_names else list(bundle.class_names)
    label_map = None
    if list(bundle.class_names) != names:
        label_map = _check_class_names(bundle.class_names, names, source)
    files = [r.path for r in bundle.records[split]]
    return EvalData(
        dataset,
        files,
        names,
        label_map=label_map,
        source=source,
        split_method=getattr(bundle, "split_method", ""),
        val_dataset=bundle.val if need_val else None,
        info={
            "counts": getattr(bundle, "counts", {}),
            "bad_files": [
                {"path": str(b.path), "reason": str(b.reason)}
                for b in getattr(bundle, "bad_files", [])
            ],
        },
    )


def _unpack(batch, label_map: np.ndarray | None, num_classes: int):
    images, labels, *rest = batch
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    y = labels.argmax(axis=1) if labels.ndim == 2 else labels.astype(np.int64).reshape(-1)
    if label_map is not None:
        y = label_map[y]
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels outside 0..{num_classes - 1} for a {num_classes}-class model")
    masks = np.asarray(rest[0]) if rest else None
    return images, y.astype(np.int64), masks


def predict_dataset(
    model, dataset, *, label_map: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, C], labels [N])`` for every element of ``dataset``."""
    num_classes = int(model.outputs[0].shape[-1])
    probs, labels = [], []
    for batch in dataset:
        images, y, _ = _unpack(batch, label_map, num_classes)
        probs.append(_predict(model, images))
        labels.append(y)
    if not probs:
        raise ValueError("the dataset is empty")
    return np.concatenate(probs), np.concatenate(labels)


def fit_model_temperature(
    model, dataset, *, label_map: np.ndarray | None = None, store: bool = False
) -> float:
    """Fit the temperature of ``model`` on a (validation) dataset of ``(images, labels[, masks])``.

    With ``store=True`` it is also written to ``model.metadata["temperature"]``, so it is saved
    by ``model.save`` and applied by ``evaluate_model`` and ``export_saved_model``.

    Usage: ``T = fit_model_temperature(model, bundle.val, store=True); model.save(path)``.
    """
    probs, labels = predict_dataset(model, dataset, label_map=label_map)
    temperature = fit_temperature(probs, labels)
    if store:
        if not hasattr(model, "metadata"):
            raise ValueError(
                f"model {getattr(model, 'name', '')!r} has no metadata to store the temperature in "
                "(build it with kidney_tf.build_classifier)"
            )
        model.metadata = {**model_metadata(model), "temperature": temperature}
    return temperature


# -------------------------------------------------------------------------------- main entry
def evaluate_model(
    model,
    data,
    *,
    out_dir: str | os.PathLike,
    split: str = "test",
    method: str = "gradcam++",
    class_names: Sequence[str] | None = None,
    max_cam_images: int | None = None,
    crop: str | None = None,
    batch_size: int = 32,
    extra_methods: Sequence[str] = ("gradcam",),
    temperature: float | str | None = None,
    foreground: str | None = "auto",
    cam_target: str = "predicted",
    layer: str | None = None,
    examples_per_class: int = 2,
    faithfulness_images: int = DEFAULT_FAITHFULNESS_IMAGES,
    seed: int = 42,
    split_method: str = "auto",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    data_root: str | os.PathLike | None = None,
    strict: bool = False,
    tta: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on one split of ``data`` and write the report folder ``out_dir``.

    ``data``: a ``DataBundle``, a ``tf.data.Dataset`` of ``(images, labels[, masks])`` (needs
    ``class_names`` unless the model carries them), or a folder/manifest CSV path (a run's
    ``split.csv`` reproduces its split; otherwise ``seed``/``split_method``/fractions must match
    training; ``data_root`` is the data folder of a split CSV holding absolute paths). ``crop``: None/"none", "brain" or "body" (default: the model's metadata), used to
    build datasets from a path and to pick the foreground. ``temperature``: None uses the model's
    metadata ``temperature`` if any, a number applies it, ``"fit"`` fits it on the validation
    split. ``max_cam_images=0`` skips CAMs. ``tta`` averages the probabilities of each image
    and its left-right mirror (test-time augmentation; CAMs explain the image as given).
    Returns the metrics dict also written as ``metrics.json``.

    Usage: ``metrics = evaluate_model(model, bundle, out_dir="reports/test")``.
    """
    from kidney_tf import __version__
    from kidney_tf.evaluation.metrics import classification_metrics

    out = ensure_writable_dir(out_dir)
    meta = model_metadata(model)
    crop = meta.get("crop") if crop is None else crop
    crop = parse_crop(crop)
    if foreground == "auto":
        foreground = crop or "body"
    names = _class_names(model, class_names)
    input_size = model_input_size(model)
    fit_t = isinstance(temperature, str)
    if fit_t and temperature != "fit":
        raise ValueError(f"temperature must be a number, None or 'fit', got {temperature!r}")
    ev = resolve_data(
        data,
        split=split,
        class_names=names,
        image_size=input_size[0] if input_size else meta.get("image_size"),
        batch_size=batch_size,
        crop=crop,
        seed=seed,
        split_method=split_method,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        need_val=fit_t,
        data_root=data_root,
        strict=strict,
    )
    names = ev.class_names
    num_outputs = int(model.outputs[0].shape[-1])
    if len(names) != num_outputs:
        raise ValueError(f"{len(names)} class names {names} for a model with {num_outputs} outputs")

    if fit_t:
        if ev.val_dataset is None:
            raise ValueError(
                "temperature='fit' needs a validation split (pass a DataBundle or path)"
            )
        temperature = fit_model_temperature(model, ev.val_dataset, label_map=ev.label_map)
        log.info("fitted temperature T=%.4f on the validation split", temperature)
    elif temperature is None:
        temperature = meta.get("temperature")
    temperature = None if temperature is None else float(temperature)

    cams = None
    if max_cam_images != 0:
        from kidney_tf.evaluation.cam_eval import CamAccumulator

        tolerance = 0.0
        if input_size:
            from kidney_tf.explain.statistics import PAPER_TOLERANCE_PX

            tolerance = PAPER_TOLERANCE_PX * input_size[0] / REFERENCE_INPUT_PX
        cams = CamAccumulator(
            model,
            names,
            method=method,
            layer=layer,
            target=cam_target,
            foreground=foreground,
            max_images=max_cam_images,
            examples_per_class=examples_per_class,
            faithfulness_images=faithfulness_images,
            tolerance_px=round(tolerance, 2),
            batch_size=min(batch_size, 16),
        )

    raw_probs, labels, files, samples = [], [], [], []
    # The map a CamFosteringModel fosters (its own method and layer, true class, native grid),
    # next to the evaluated one, so a report shows when the two diverge.
    own_maps = cams is not None and hasattr(model, "class_activation_maps")
    own_entropy: list[np.ndarray] = []
    n_seen = 0
    for batch in ev.dataset:
        images, y, masks = _unpack(batch, ev.label_map, num_outputs)
        probs = _predict(model, images, tta=tta)
        ids = (
            ev.files[n_seen : n_seen + len(y)]
            if ev.files is not None
            else [f"{split}/{i:05d}" for i in range(n_seen, n_seen + len(y))]
        )
        scaled = apply_temperature(probs, temperature)
        pred = scaled.argmax(axis=1)
        if cams is not None and cams.remaining():
            if own_maps:
                own_entropy.append(_own_entropy(model, images[: cams.remaining()], y))
            cams.add(images, true=y, pred=pred, files=ids, masks=masks)
        _keep_samples(samples, images, y, n_seen, len(names))
        raw_probs.append(probs)
        labels.append(y)
        files += ids
        n_seen += len(y)
    if not raw_probs:
        raise ValueError(f"{ev.source}: the {split!r} split has no images")
    raw = np.concatenate(raw_probs)
    y_true = np.concatenate(labels)
    probs = apply_temperature(raw, temperature)
    y_pred = probs.argmax(axis=1)

    block, report_text = classification_metrics(y_true, y_pred, names)
    metrics: dict[str, Any] = {
        "kidney_tf_version": __version__,
        "split": split,
        "tta": "horizontal flip" if tta else None,
        "data": {
            "source": ev.source,
            "split_method": ev.split_method,
            "skipped_bad_files": ev.info.get("bad_files", []),
        },
        "model": {
            "name": getattr(model, "name", ""),
            "arch": meta.get("arch"),
            "input_size": list(input_size) if input_size else None,
            "crop": crop,
        },
        **block,
        "calibration": calibration_summary(
            probs, y_true, temperature=temperature, raw_probabilities=raw
        ),
    }
    metrics["calibration"]["temperature_fitted_on"] = "val" if fit_t else None
    per_image: dict[str, np.ndarray] = {}
    if cams is not None:
        for extra in extra_methods or ():
            cams.add_extra_method(extra)
        metrics["cam"] = cams.summary()
        metrics["cam"].update(_faithfulness(model, cams))
        if own_entropy:
            values = np.concatenate(own_entropy)
            metrics["cam"]["fostering_entropy"] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "n": int(values.size),
                "method": getattr(model, "cam_method", None),
                "layer": getattr(model, "cam_layer", None),
                "target": "true",
                "grid": "native",
            }
        per_image = cams.per_image()
    else:
        metrics["cam"] = {"method": None, "n_images": 0}

    write_text_atomic(out / "classification_report.txt", report_text)
    _write_predictions(out / "predictions.csv", files, y_true, probs, names, cams, per_image)
    figures = _write_figures(out, metrics, probs, raw, y_true, names, samples, cams, per_image)
    if cams is not None and cams.examples:
        _write_examples(out / CAM_EXAMPLES_FILE, cams, names)
    metrics["files"] = {
        "figures": figures,
        "predictions": "predictions.csv",
        "classification_report": "classification_report.txt",
        "cam_examples": CAM_EXAMPLES_FILE if cams is not None and cams.examples else None,
        "html": "report.html",
        "markdown": "report.md",
    }
    write_json_atomic(out / "metrics.json", _jsonable(metrics))
    from kidney_tf.evaluation.render import report_document

    report_document(metrics, report_text).write(
        out / "report.html", out / "report.md", base_dir=out
    )
    log.info(
        "%s split: accuracy %.4f, macro-F1 %.4f; report in %s",
        split,
        metrics["accuracy"],
        metrics["macro_f1"],
        out,
    )
    return _jsonable(metrics)


def _own_entropy(model, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Entropy of a CamFosteringModel's own (penalised) map of the true class, native grid."""
    from kidney_tf.explain.statistics import normalized_entropy

    labels = np.asarray(labels[: len(images)], np.int32)
    return normalized_entropy(model.class_activation_maps(images, labels)).numpy()


def _class_names(model, class_names: Sequence[str] | None) -> list[str] | None:
    saved = model_class_names(model)
    if class_names is not None and saved is not None and list(class_names) != saved:
        raise ValueError(f"class_names {list(class_names)} differ from the model's {saved}")
    return list(class_names) if class_names is not None else saved


def _keep_samples(
    samples: list, images: np.ndarray, y: np.ndarray, offset: int, num_classes: int
) -> None:
    """Keep the first few images of each class, small, as ``(image, label, global index)``."""
    from kidney_tf.evaluation.cam_eval import SAMPLE_SIZE, resize_batch, to_uint8

    counts = np.bincount([s[1] for s in samples], minlength=num_classes)
    for i, label in enumerate(y):
        if counts[label] < SAMPLES_PER_CLASS:
            counts[label] += 1
            small = resize_batch(to_uint8(images[i : i + 1]), min(SAMPLE_SIZE, images.shape[1]))
            samples.append((small[0], int(label), offset + i))


def _faithfulness(model, cams, *, steps: int = 16) -> dict[str, Any]:
    """Deletion/insertion AUC (+ random-order baselines) on the capped CAM subset.

    Computed by ``kidney_tf.explain.faithfulness.deletion_insertion`` (blur baseline).
    """
    from kidney_tf.explain.faithfulness import deletion_insertion

    batch = cams.faithfulness_batch
    if not batch["images"]:
        return {}
    images = np.concatenate(batch["images"])
    result = deletion_insertion(
        model,
        images,
        np.concatenate(batch["maps"]),
        class_index=np.concatenate(batch["targets"]),
        steps=steps,
        # 4 images' deletion + insertion steps per predict call: few calls, bounded memory
        batch_size=8 * (steps + 1),
    )
    out: dict[str, Any] = {}
    for key in ("deletion", "insertion"):
        values = np.asarray(result.aucs[key], dtype=np.float64)
        out[f"{key}_auc"] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "median": float(np.median(values)),
            "n": int(values.size),
            "random": float(np.mean(result.aucs[f"random_{key}"])),
        }
    out["faithfulness"] = {
        "n_images": int(len(images)),
        "steps": steps,
        "baseline": result.baseline,
        "class": cams.target,
    }
    return out


def _write_predictions(path, files, y_true, probs, names, cams, per_image) -> None:
    stat_names = [s for s in (*CAM_STATISTICS, *LOCALISATION_STATISTICS) if s in per_image]
    index = {f: i for i, f in enumerate(cams.files)} if cams is not None else {}
    header = ["file", "true", "pred", "correct", "confidence"]
    header += [f"p_{c}" for c in names] + [f"cam_{s}" for s in stat_names]
    with atomic_path(path, suffix=".csv") as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, f in enumerate(files):
            pred = int(probs[i].argmax())
            row = [f, names[int(y_true[i])], names[pred], int(pred == y_true[i])]
            row += [f"{probs[i, pred]:.6f}"] + [f"{p:.6f}" for p in probs[i]]
            j = index.get(f)
            for s in stat_names:
                v = per_image[s][j] if j is not None else float("nan")
                row.append("" if not math.isfinite(v) else f"{v:.6f}")
            writer.writerow(row)


def _example_titles(ex, names, stats: dict[str, float]) -> tuple[str, str, str]:
    """(image, heatmap, overlay) column titles of one overlay row."""

    def f(key, digits=3):
        v = stats.get(key)
        return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"

    image = f"{Path(ex.file).name}\ntrue {names[ex.label]} | pred {names[ex.prediction]}"
    heat = f"H={f('entropy')}  r={f('radius')}\nSNR={f('snr', 2)} ({f('snr_db', 1)} dB)"
    overlay = []
    if "outside_fraction" in stats:
        overlay.append(f"outside body={f('outside_fraction', 2)}")
    if math.isfinite(stats.get("energy_in_mask", float("nan"))):
        overlay.append(f"in mask={f('energy_in_mask', 2)}")
    return image, heat, "\n".join(overlay)


def _write_figures(out, metrics, probs, raw, y_true, names, samples, cams, per_image) -> dict:
    from kidney_tf.evaluation import figures as fig

    written: dict[str, str] = {}
    fig.plot_confusion_matrix(
        np.array(metrics["confusion_matrix"]), names, out / "confusion_matrix.png"
    )
    written["confusion_matrix"] = "confusion_matrix.png"
    if samples:
        index = [s[2] for s in samples]
        fig.plot_samples(
            [s[0] for s in samples],
            [s[1] for s in samples],
            names,
            out / "samples.png",
            predictions=probs[index].argmax(axis=1),
            probabilities=probs[index].max(axis=1),
            per_class=SAMPLES_PER_CLASS,
            title=f"Samples per class ({metrics['split']} split)",
        )
        written["samples"] = "samples.png"
    temperature = metrics["calibration"]["temperature"]
    rel = reliability_data(probs, y_true)
    if temperature is not None:
        fig.plot_reliability_diagram(
            reliability_data(raw, y_true), out / "reliability_diagram.png",
            calibrated=rel, temperature=temperature,
        )  # fmt: skip
    else:
        fig.plot_reliability_diagram(rel, out / "reliability_diagram.png")
    written["reliability_diagram"] = "reliability_diagram.png"
    if cams is not None and cams.examples:
        methods = [cams.method] + [m for m in cams.examples[0].extra if m != cams.method]
        for m in methods:
            maps, titles = [], []
            for ex in cams.examples:
                cam, stats = (ex.cam, ex.stats) if m == cams.method else ex.extra[m]
                maps.append(cam)
                titles.append(_example_titles(ex, names, stats))
            name = f"cam_overlays_{m}.png"
            fig.plot_cam_overlays(
                [ex.image for ex in cams.examples],
                maps,
                out / name,
                titles=titles,
                method=m,
                masks=[ex.mask for ex in cams.examples],
            )
            written[f"cam_overlays_{m}"] = name
        if per_image and cams.n:
            true = np.asarray(cams.true)
            fig.plot_cam_statistics(
                per_image, true, names, out / "cam_statistics.png", method=cams.method
            )
            written["cam_statistics"] = "cam_statistics.png"
    return written


def _write_examples(path: Path, cams, names: Sequence[str]) -> None:
    from kidney_tf.evaluation.cam_eval import SAMPLE_SIZE, resize_batch

    images = np.stack([ex.image for ex in cams.examples])
    maps = np.stack([ex.cam for ex in cams.examples]).astype(np.float32)
    size = min(SAMPLE_SIZE, images.shape[1])
    save_cam_examples(
        path,
        files=[ex.file for ex in cams.examples],
        images=resize_batch(images, size),
        maps=resize_batch(maps, size),
        labels=[ex.label for ex in cams.examples],
        predictions=[ex.prediction for ex in cams.examples],
        class_names=list(names),
        method=cams.method,
        entropy=[ex.stats.get("entropy", np.nan) for ex in cams.examples],
        radius=[ex.stats.get("radius", np.nan) for ex in cams.examples],
        snr=[ex.stats.get("snr", np.nan) for ex in cams.examples],
        masks=resize_batch(
            np.stack([_mask_or_zeros(ex) for ex in cams.examples]), size, nearest=True
        ),
    )


def _mask_or_zeros(example) -> np.ndarray:
    shape = example.image.shape[:2]
    return (
        np.zeros(shape, np.uint8) if example.mask is None else (example.mask > 0).astype(np.uint8)
    )


def _jsonable(value: Any) -> Any:
    """NaN/inf -> None, NumPy -> Python, recursively (strict JSON for metrics.json)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "EvalData",
    "evaluate_model",
    "fit_model_temperature",
    "model_class_names",
    "model_input_size",
    "model_metadata",
    "predict_dataset",
    "resolve_data",
]
