"""Does CAM fostering localise? One baseline, five arms, every map statistic next to its chance.

Arms, all fine-tuned from ONE baseline (the demo's: ``kidney-tf demo``, ResNet-50 from scratch at
128 px on 1,600 kidney-CT phantoms with 4x lesions and their masks):

- ``baseline``: no fine-tune;
- ``head``: the same fine-tune with λ = 0 (the control: what re-fitting the head alone does);
- ``entropy``: the paper's penalty only (λ · CAM entropy);
- ``entropy+anatomy``: plus λ_out · CAM mass outside the body (no annotation needed);
- ``entropy+lesion``: plus λ_mask · CAM mass off the dilated lesion mask (lesion images);
- ``all``: all three terms.

Each arm fine-tunes the classifier head alone (the demo's preset: the backbone frozen; with
``--unfreeze-top 1`` also the last backbone stage, ResNet-50's ``conv5_*``), with
``CamFosteringModel``'s own ``train_step`` on the Grad-CAM++ closed form. With the backbone frozen
(BatchNorm in inference mode) the CAM layer's features of an image never change, so they are
computed once and the head is trained on them: the same loss, gradients and updates as
``kidney-tf train --init BASELINE --unfreeze-top 0`` without augmentation, in seconds instead of
a backbone pass per step. With ``--unfreeze-top N`` the features are cached at the input of the
first unfrozen stage instead (BatchNorm stays in inference mode, as ``unfreeze_top`` leaves it):
the same exactness, the top stages run at every step. The test statistics come from the same
cached features: the closed-form
Grad-CAM++ map of the predicted class (tf-keras-vis' map to 1e-4), upsampled as tf-keras-vis
does, through ``summarize_maps`` with the body and lesion masks and the pointing-game tolerance
``evaluate_model`` uses; ``--cross-check`` also runs ``evaluate_model`` on the baseline.

Columns: accuracy, entropy, radius, SNR, outside-body fraction, energy in mask, pointing game,
IoU, each with a 95 % bootstrap interval over test images and its chance value. Goals (#12):
energy in mask ≥ 2x the baseline's, pointing game ≥ 0.6, entropy down ≥ 30 % (penalised map,
native grid), accuracy within 1 point.

Usage::

    python benchmarks/fostering_localisation.py --out runs/localisation            # runs the demo
    python benchmarks/fostering_localisation.py --out runs/loc --demo-run runs/demo  # reuse one
    python benchmarks/fostering_localisation.py --out runs/loc-ct --run runs/real/kidney/recipe \
        --data ../shared/data/kidney_ct_pool --arms baseline,entropy,entropy+anatomy  # real CT
    python benchmarks/fostering_localisation.py --out runs/loc-ct5 --run RUN --data POOL \
        --unfreeze-top 1 --arms baseline,head,entropy,entropy+anatomy  # stage 5 + head
    python benchmarks/fostering_localisation.py --out runs/loc8 --demo-run runs/demo \
        --unfreeze-top 1 --cam-layer conv4_block6_out --cam-method gradcam \
        --weight 5 --alive-weight 5  # an 8x8 grid, its Grad-CAM maps kept from going empty
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ARMS: dict[str, dict[str, float]] = {
    "baseline": {},
    # the control: the same head-only fine-tune without any penalty (what re-fitting alone does)
    "head": {"cam_weight": 0.0},
    "entropy": {"cam_weight": 1.0},
    "entropy+anatomy": {"cam_weight": 1.0, "outside_weight": 1.0},
    "entropy+lesion": {"cam_weight": 1.0, "mask_weight": 1.0},
    "all": {"cam_weight": 1.0, "outside_weight": 1.0, "mask_weight": 1.0},
}
COLUMNS = (
    ("accuracy", "accuracy"),
    ("entropy", "entropy"),
    ("radius", "radius"),
    ("snr", "SNR"),
    ("outside_fraction", "outside body"),
    ("energy_in_mask", "energy in mask"),
    ("pointing_game", "pointing game"),
    ("iou", "IoU"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (arms, reports, table)")
    p.add_argument("--demo-run", help="a finished `kidney-tf demo --out DIR` to reuse (baseline)")
    p.add_argument(
        "--run",
        help="a finished `kidney-tf train` run on real scans (RUN/best.keras, RUN/split.csv) "
        "instead of the demo; needs --data; arms without lesion masks only",
    )
    p.add_argument("--data", help="the data folder of --run's split.csv (e.g. the real pool)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of the arms")
    p.add_argument("--weight", type=float, default=10.0, help="λ of every term that is on (10)")
    p.add_argument("--outside-weight", type=float, help="λ_out (default: --weight)")
    p.add_argument("--mask-weight", type=float, help="λ_mask (default: --weight)")
    p.add_argument("--mask-dilation", type=int, default=4, help="px (default 4)")
    p.add_argument(
        "--alive-weight",
        type=float,
        default=0.0,
        help="λ_alive added to every penalised arm: keeps Grad-CAM maps from going empty (0)",
    )
    p.add_argument("--epochs", type=int, default=3, help="fine-tune epochs (demo: 3)")
    p.add_argument("--lr", type=float, default=3e-3, help="fine-tune Adam rate, cosine (3e-3)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--baseline", help="baseline .keras (default: DEMO/baseline/model.keras)")
    p.add_argument(
        "--cross-check",
        action="store_true",
        help="also run evaluate_model on the baseline and print both (same maps, same numbers)",
    )
    p.add_argument(
        "--unfreeze-top",
        type=int,
        default=0,
        help="backbone stages fine-tuned with the head (0: head only; 1: ResNet-50 conv5_*)",
    )
    p.add_argument(
        "--cam-layer",
        help="layer the maps are fostered and measured on (default: the model's, ResNet-50 "
        "conv5_block3_out, 4x4 at 128 px; conv4_block6_out is 8x8 and needs --cam-method gradcam)",
    )
    p.add_argument(
        "--cam-method",
        choices=("gradcam++", "gradcam"),
        default="gradcam++",
        help="map fostered and measured (gradcam++: closed form on a GAP head; default)",
    )
    p.add_argument("--seed", type=int, default=42)
    return p.parse_args(argv)


# ----------------------------------------------------------------------------------- pieces
def demo_run(args: argparse.Namespace) -> Path:
    """The demo folder holding the baseline (run or resumed here when not given)."""
    if args.demo_run:
        run = Path(args.demo_run)
        if not (run / "baseline" / "split.csv").is_file():
            raise SystemExit(f"{run}: no baseline/split.csv (not a kidney-tf demo folder)")
        return run
    from kidney_tf.pipelines.reproduce import KIDNEY, reproduce

    run = Path(args.out) / "demo"
    reproduce(KIDNEY, run, quick=True, verbose=2)
    return run


def baseline_source(args: argparse.Namespace) -> tuple[Path, Path, str, str]:
    """``(model file, split.csv, data root, crop)`` of the baseline: ``--run``'s, else the demo's.

    The crop is the one the baseline was trained with (its ``config.json``), so the cached
    features see the images the model saw.
    """
    if args.run:
        run_dir = Path(args.run)
        data_root, model_file = args.data, "best.keras"
    else:
        run_dir = demo_run(args) / "baseline"
        stage = json.loads((run_dir.parent / "stages" / "data.json").read_text())
        data_root, model_file = stage["result"]["root"], "model.keras"
    model_path = Path(args.baseline) if args.baseline else run_dir / model_file
    train = json.loads((run_dir / "config.json").read_text())["train"]
    return model_path, run_dir / "split.csv", data_root, train.get("crop") or "none"


def cut_layer(model, unfreeze_top: int, cam_layer: str | None = None) -> str:
    """The layer whose output is cached: the CAM layer (head only), else the last layer before
    the first trainable one of a model frozen by ``unfreeze_top(model, unfreeze_top)``
    (``conv4_block6_out`` for ResNet-50's stage 5), whichever comes first."""
    names = [layer.name for layer in model.layers]
    cam = cam_layer or model.cam_layer
    if unfreeze_top == 0:
        return cam
    first = next(i for i, layer in enumerate(model.layers) if layer.trainable and layer.weights)
    return names[min(first - 1, names.index(cam))]


def features_and_masks(
    model, split_csv: Path, data_root: str, crop: str, split: str, cut: str | None = None
):
    """Features at ``cut`` (default: the CAM layer), one-hot labels, body and lesion masks of
    ``split`` (no augmentation)."""
    import keras
    import numpy as np

    from kidney_tf.data.pipeline import build_datasets

    size = int(model.input_shape[1])
    bundle = build_datasets(
        str(split_csv),
        image_size=size,
        batch_size=32,
        split="folders",
        crop=crop,
        augment=False,
        cache=False,
        with_foreground=True,
        with_lesion_masks=True,
        class_names=model.class_names,
        root=data_root,
    )
    trunk = keras.Model(model.inputs, model.get_layer(cut or model.cam_layer).output)
    parts: dict[str, list] = {"features": [], "labels": [], "foreground": [], "lesion_mask": []}
    for x, y in bundle.dataset(split):
        parts["features"].append(trunk(x["image"], training=False).numpy())
        parts["labels"].append(y.numpy())
        parts["foreground"].append(x["foreground"].numpy().astype(np.uint8))
        parts["lesion_mask"].append(x["lesion_mask"].numpy().astype(np.uint8))
    return {k: np.concatenate(v) for k, v in parts.items()}, bundle.class_weights


def head_model(model, cut: str | None = None, cam_layer: str | None = None):
    """``(classifier, CAM layer name)``: a CamFosteringModel-ready classifier over the features at
    ``cut`` (default: the CAM layer, whose features become the input ``"features"``, sharing the
    head's layers with ``model``). ``cam_layer`` defaults to the model's."""
    import keras

    from kidney_tf.models.builders import Classifier

    cam = cam_layer or model.cam_layer
    if cut not in (None, model.cam_layer) or cam != model.cam_layer:
        # The top stages and the head as a model of their own over an input "features": a copy
        # (Keras cannot rewire shared layers whose CAM-layer output is then asked for by name),
        # holding the model's current weights.
        sub = keras.Model(model.get_layer(cut).output, model.outputs[0])
        inputs = keras.Input(model.get_layer(cut).output.shape[1:], name="features")
        copy = keras.models.clone_model(sub, input_tensors=inputs)
        copy.set_weights(sub.get_weights())
        trainable = {layer.name: layer.trainable for layer in model.layers}
        for layer in copy.layers:  # clone_model rebuilds from configs: keep the frozen stages
            layer.trainable = trainable.get(layer.name, layer.trainable)
        names = list(model.class_names)
        head = Classifier(copy.inputs, copy.outputs[0], class_names=names, metadata={})
        return head, "features" if cam == cut else cam
    names = [layer.name for layer in model.layers]
    head = model.layers[names.index(model.cam_layer) + 1 :]
    inputs = keras.Input(model.get_layer(model.cam_layer).output.shape[1:], name="features")
    x = inputs
    for layer in head:
        x = layer(x)
    return Classifier(inputs, x, class_names=list(model.class_names), metadata={}), "features"


def fine_tune(head, data, class_weights, settings: dict[str, float], args) -> dict[str, Any]:
    """Train ``head_model``'s ``(classifier, CAM layer)`` in place with the arm's terms; returns
    the last epoch's logs."""
    import keras
    import tensorflow as tf

    from kidney_tf.training import CamFosteringModel, WeightedCrossEntropy
    from kidney_tf.training.callbacks import cosine_schedule

    # Seeded before the dataset is made, so an arm's shuffle order and result do not depend on
    # which arms ran before it (the global seed is part of tf.data's shuffle seed).
    keras.utils.set_random_seed(args.seed)
    head = CamFosteringModel.from_classifier(
        head[0],
        cam_method=args.cam_method,
        cam_layer=head[1],
        mask_dilation=args.mask_dilation,
        **settings,
    )
    head.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss=WeightedCrossEntropy([class_weights[i] for i in range(len(class_weights))]),
        metrics=["accuracy"],
    )
    x = {
        "image": data["features"],
        "foreground": data["foreground"].astype("float32"),
        "lesion_mask": data["lesion_mask"].astype("float32"),
    }
    ds = tf.data.Dataset.from_tensor_slices((x, data["labels"]))
    ds = ds.shuffle(len(data["labels"]), seed=args.seed).batch(16)
    history = head.fit(
        ds, epochs=args.epochs, callbacks=[cosine_schedule(args.lr, args.epochs)], verbose=0
    )
    return {k: float(v[-1]) for k, v in history.history.items()}


def arm_statistics(
    head, data, tolerance_px: float, cam_method: str = "gradcam++", class_names=None
) -> dict[str, Any]:
    """The evaluation's statistics from the cached features (identical maps, see the docstring).

    Grad-CAM++ of the predicted class in closed form (equal to tf-keras-vis' to 1e-4, tested in
    ``tests/test_fostering.py``; or Grad-CAM), upsampled to the input size as tf-keras-vis'
    ``zoom(order=1)`` does (``upsample_maps``), then ``summarize_maps`` with the body mask and
    the lesion masks, as ``evaluate_model`` calls it, and the report's shortcut warnings (maps
    grouped by predicted class, cells of the native CAM grid). Per-image arrays (NaN where not
    applicable).
    """
    import numpy as np

    from kidney_tf.explain.statistics import (
        normalized_entropy,
        shortcut_warnings,
        summarize_maps,
        upsample_maps,
    )
    from kidney_tf.training import CamFosteringModel

    head = CamFosteringModel.from_classifier(head[0], cam_method=cam_method, cam_layer=head[1])
    grid = tuple(int(d) for d in head.get_layer(head.cam_layer).output.shape[1:3])
    size = data["foreground"].shape[1:3]
    true = data["labels"].argmax(1)
    per_image: dict[str, list] = {}
    all_maps, predicted = [], []
    for i in range(0, len(true), 64):
        features = data["features"][i : i + 64]
        pred = head.predict(features, verbose=0).argmax(1)
        maps = upsample_maps(head.class_activation_maps(features, pred), tuple(size)).numpy()
        all_maps.append(maps.astype(np.float32))
        predicted.append(pred)
        summary = summarize_maps(
            maps,
            masks=data["lesion_mask"][i : i + 64, ..., 0] > 0,
            foreground=data["foreground"][i : i + 64, ..., 0] > 0,
            tolerance_px=tolerance_px,
        )
        own = normalized_entropy(head.class_activation_maps(features, true[i : i + 64]))
        values = {
            "accuracy": (pred == true[i : i + 64]).astype(float),
            "penalised_entropy": own.numpy(),
            **{
                ("iou" if k == "cam_iou" else k): np.ma.asarray(v).astype(float).filled(np.nan)
                for k, v in summary["per_image"].items()
            },
        }
        for key, value in values.items():
            per_image.setdefault(key, []).append(np.asarray(value, float))
    out = {k: np.concatenate(v) for k, v in per_image.items()}
    warnings = shortcut_warnings(
        np.concatenate(all_maps),
        np.concatenate(predicted),
        data["foreground"][..., 0] > 0,
        grid=grid,
        class_names=class_names,
        grouping="predicted class",
    )
    from kidney_tf.explain.statistics import chance_baselines

    chance = chance_baselines(data["lesion_mask"][..., 0] > 0, tolerance_px=tolerance_px)
    chance = {
        "accuracy": float(np.bincount(true).max() / len(true)),  # the majority class
        "entropy": 1.0,  # a uniform map
        "radius": float(np.sqrt(2 * (1 - 1 / size[0] ** 2) / 12)),
        "snr": 1.0,
        "outside_fraction": float(1 - (data["foreground"] > 0).mean()),
        "energy_in_mask": chance["energy_in_mask"],
        "pointing_game": chance["pointing_game"],  # a random point
        "iou": chance["cam_iou"],
        "penalised_entropy": 1.0,
    }
    return {
        "per_image": out,
        "chance": chance,
        "grid": grid,
        "single_cell": {
            w.class_name: round(w.fraction, 3) for w in warnings if w.kind == "same_cell"
        },
        "empty": {w.class_name: round(w.fraction, 3) for w in warnings if w.kind == "empty"},
        "warnings": [str(w) for w in warnings],
    }


def evaluate(model, out: Path, split_csv: Path, data_root: str, crop: str) -> dict[str, Any]:
    """``evaluate_model`` as the demo runs it (the cross-check of the feature path)."""
    from kidney_tf.evaluation.report import evaluate_model

    return evaluate_model(
        model,
        str(split_csv),
        out_dir=out,
        split="test",
        method="gradcam++",
        crop=crop,
        foreground="body",
        extra_methods=(),
        faithfulness_images=0,
        batch_size=16,
        data_root=data_root,
    )


COLUMNS_ALL = (*COLUMNS, ("penalised_entropy", "penalised entropy (native, true class)"))


def _mean(values) -> float | None:
    import numpy as np

    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def table(results: dict[str, dict[str, Any]], bootstrap: int, seed: int) -> str:
    """Markdown: one row per arm, mean [95 % bootstrap interval] per column, then chance."""
    from kidney_tf.evaluation.compare import bootstrap_interval

    lines = [
        "| arm | " + " | ".join(label for _, label in COLUMNS_ALL) + " |",
        "|---|" + "---|" * len(COLUMNS_ALL),
    ]
    for arm, result in results.items():
        cells = []
        for key, _ in COLUMNS_ALL:
            values = result["per_image"][key]
            mean = _mean(values)
            low, high = bootstrap_interval(values, resamples=bootstrap, seed=seed)
            cells.append("n/a" if mean is None else f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    chance = next(iter(results.values()))["chance"]
    cells = [f"{chance[k]:.3f}" if chance.get(k) is not None else "–" for k, _ in COLUMNS_ALL]
    lines.append("| chance | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_change(arm: dict[str, Any], baseline: dict[str, Any], seed: int = 0) -> str:
    """``"+1.7 pt [−0.4, +3.8]"``: the arm's accuracy change with a paired 95 % bootstrap
    interval over the test images (both arms scored the same images, in the same order)."""
    from kidney_tf.evaluation.compare import bootstrap_interval

    change = arm["per_image"]["accuracy"] - baseline["per_image"]["accuracy"]
    low, high = bootstrap_interval(change, seed=seed)
    return f"{100 * change.mean():+.1f} pt [{100 * low:+.1f}, {100 * high:+.1f}]"


def goals(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each arm against the issue's goals (relative to the baseline)."""
    base = {k: _mean(v) for k, v in results["baseline"]["per_image"].items()}
    lines = []
    for arm, result in results.items():
        if arm == "baseline":
            continue
        m = {k: _mean(v) for k, v in result["per_image"].items()}
        if base.get("energy_in_mask") is None:  # real scans: no lesion masks
            accuracy = m["accuracy"] - base["accuracy"]
            checks = {
                "outside-body mass ≤ 0.05": m["outside_fraction"] <= 0.05,
                "no class with > ½ of its maps in one cell": not result.get("single_cell"),
                "accuracy within 1 point": accuracy >= -0.01,
            }
            verdicts = ", ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in checks.items())
            lines.append(
                f"- {arm}: outside-body mass {m['outside_fraction']:.3f} (baseline "
                f"{base['outside_fraction']:.3f}), accuracy "
                f"{accuracy_change(result, results['baseline'])} → {verdicts}"
            )
            continue
        energy = m["energy_in_mask"] / base["energy_in_mask"]
        drop = 1 - m["penalised_entropy"] / base["penalised_entropy"]
        accuracy = m["accuracy"] - base["accuracy"]
        checks = {
            "energy ≥ 2× baseline": energy >= 2,
            "pointing game ≥ 0.6": m["pointing_game"] >= 0.6,
            "entropy down ≥ 30 %": drop >= 0.30,
            "accuracy within 1 point": accuracy >= -0.01,
        }
        verdicts = ", ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in checks.items())
        lines.append(
            f"- {arm}: energy in mask {energy:.2f}× the baseline's, pointing game "
            f"{m['pointing_game']:.3f}, penalised entropy {-drop:+.1%}, accuracy "
            f"{accuracy_change(result, results['baseline'])} → {verdicts}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or "baseline" not in arms:
        raise SystemExit(f"--arms: unknown {unknown} (choose from {list(ARMS)}, with baseline)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.run:
        if not args.data:
            raise SystemExit("--run needs --data (the folder its split.csv paths lie in)")
        if any(a in ("entropy+lesion", "all") for a in arms):
            raise SystemExit("--run: real scans have no lesion masks; use baseline,entropy,...")
    model_path, split_csv, data_root, crop = baseline_source(args)

    import keras
    import numpy as np

    from kidney_tf._loading import load_model
    from kidney_tf.evaluation.report import REFERENCE_INPUT_PX
    from kidney_tf.explain.statistics import PAPER_TOLERANCE_PX
    from kidney_tf.models.builders import unfreeze_top

    model = load_model(model_path)
    size = int(model.input_shape[1])
    tolerance = round(PAPER_TOLERANCE_PX * size / REFERENCE_INPUT_PX, 2)  # as evaluate_model
    baseline_weights = [w.copy() for w in model.get_weights()]
    if args.unfreeze_top or args.cam_layer:
        unfreeze_top(model, args.unfreeze_top)  # BatchNorm frozen: cached features stay exact
    if args.cam_layer and args.cam_method == "gradcam++" and args.cam_layer != model.cam_layer:
        raise SystemExit(
            f"--cam-layer {args.cam_layer}: the Grad-CAM++ closed form needs the layer before "
            f"the pooling ({model.cam_layer}); add --cam-method gradcam"
        )
    cut = cut_layer(model, args.unfreeze_top, args.cam_layer)
    print(f"{model_path}: features of the train/test splits at {cut} ...", flush=True)
    # reused by a rerun (other λ, arms) of the same model, layer and crop
    cached = out / f"features-{model_path.stem}-{cut}-{crop}.npz"
    if cached.is_file():
        with np.load(cached) as stored:
            train = {k[6:]: stored[k] for k in stored.files if k.startswith("train/")}
            test = {k[5:]: stored[k] for k in stored.files if k.startswith("test/")}
            class_weights = dict(enumerate(stored["class_weights"].tolist()))
    else:
        train, class_weights = features_and_masks(model, split_csv, data_root, crop, "train", cut)
        test, _ = features_and_masks(model, split_csv, data_root, crop, "test", cut)
        np.savez(
            cached,
            class_weights=np.array([class_weights[i] for i in range(len(class_weights))]),
            **{f"train/{k}": v for k, v in train.items()},
            **{f"test/{k}": v for k, v in test.items()},
        )
    print(f"features: {time.perf_counter() - started:.0f} s", flush=True)
    weight = {
        "cam_weight": args.weight,
        "outside_weight": args.outside_weight if args.outside_weight is not None else args.weight,
        "mask_weight": args.mask_weight if args.mask_weight is not None else args.weight,
    }
    results: dict[str, dict[str, Any]] = {}
    for arm in arms:
        arm_started = time.perf_counter()
        model.set_weights(baseline_weights)
        settings = {k: weight[k] * v for k, v in ARMS[arm].items()}
        if args.alive_weight and any(settings.values()):
            settings["alive_weight"] = args.alive_weight
        head = head_model(model, cut, args.cam_layer)  # shares the head, or copies the top
        logs = fine_tune(head, train, class_weights, settings, args) if settings else {}
        results[arm] = {
            "settings": settings,
            "train_logs": logs,
            **arm_statistics(head, test, tolerance, args.cam_method, list(model.class_names)),
            "seconds": round(time.perf_counter() - arm_started, 1),
        }
        means = {k: _mean(v) for k, v in results[arm]["per_image"].items()}
        print(f"{arm}: {json.dumps(means)}", flush=True)
    if args.cross_check:
        model.set_weights(baseline_weights)
        keras.utils.set_random_seed(args.seed)
        metrics = evaluate(model, out / "reports" / "baseline", split_csv, data_root, crop)
        cam = metrics.get("cam") or {}
        results["baseline"]["evaluate_model"] = {
            "accuracy": metrics["accuracy"],
            **{k: (cam.get(k) or {}).get("mean") for k, _ in COLUMNS[1:]},
        }
        print(f"cross-check, evaluate_model: {results['baseline']['evaluate_model']}", flush=True)
    tuned = (
        f"the top {args.unfreeze_top} stage(s) and the head" if args.unfreeze_top else "the head"
    )
    method = {"gradcam++": "Grad-CAM++", "gradcam": "Grad-CAM"}[args.cam_method]
    grid = next(iter(results.values()))["grid"]
    single = []
    for arm, r in results.items():
        cells = ", ".join(f"{k} {v:.0%}" for k, v in r["single_cell"].items()) or "none"
        empty = ", ".join(f"{k} {v:.0%}" for k, v in r["empty"].items())
        single.append(f"- {arm}: {cells}" + (f" (maps empty: {empty})" if empty else ""))
    n_masks = int((test["lesion_mask"].reshape(len(test["labels"]), -1) > 0).any(1).sum())
    text = "\n".join(
        [
            f"Baseline {model_path}; test split {len(test['labels'])} images ({n_masks} with a "
            f"lesion mask); λ {weight}, λ_alive {args.alive_weight:g}; fine-tune of {tuned} "
            f"(features cached at {cut}), {args.epochs} epochs, Adam "
            f"{args.lr:g} cosine, batch 16; {method} of the predicted class on the "
            f"{grid[0]}x{grid[1]} grid of {args.cam_layer or model.cam_layer}, upsampled to "
            f"{size} px; pointing-game tolerance {tolerance} px; 95 % bootstrap intervals over "
            "test images.",
            "",
            table(results, args.bootstrap, args.seed),
            "",
            *goals(results),
            "(accuracy: change against the baseline with a paired 95 % bootstrap interval over "
            "the test images)",
            "",
            "Classes with more than half of their maps peaking in one grid cell (by predicted "
            "class):",
            *single,
            "",
            f"wall {time.perf_counter() - started:.0f} s",
        ]
    )
    (out / "table.md").write_text(text + "\n")
    serialisable = {
        arm: {
            **{k: v for k, v in r.items() if k != "per_image"},
            "mean": {k: _mean(v) for k, v in r["per_image"].items()},
        }
        for arm, r in results.items()
    }
    (out / "results.json").write_text(json.dumps(serialisable, indent=2, default=float))
    np.savez(
        out / "per_image.npz",
        **{f"{a}/{k}": v for a in results for k, v in results[a]["per_image"].items()},
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
