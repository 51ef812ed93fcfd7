"""``kidney-tf explain``: CAM overlays and map statistics for individual images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kidney_tf.cli.main import CliError, add_common_arguments
from kidney_tf.recipes import CROP_CHOICES, EXPLAIN_METHODS, parse_crop

EXAMPLES = """\
examples:
  # Grad-CAM++ of the predicted class, cropped like the model was trained
  kidney-tf explain --model runs/fostered/model.keras --image "ct/Tumor- (12).jpg" --out explain/

  # every image in a folder, Grad-CAM of class Stone, body mask as foreground, maps kept
  kidney-tf explain --model model.keras --image ct_slices/ --method gradcam --class Stone \\
      --foreground body --save-maps --out explain/stone

  # a plain Keras model with a named layer and no crop
  kidney-tf explain --model plain.keras --image a.png b.png --layer conv2 --crop none --out out/

Writes per image OUT/<name>.<method>.png (image | heatmap | overlay, titled with the predicted
class and probability and the map's normalised entropy, radius and SNR) and OUT/explanations.json
(predictions, statistics, outside-foreground mass, shortcut warnings). Files are written atomically.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain",
        help="CAM / saliency overlays and map statistics for images",
        description="Explain a trained model's predictions on individual images with CAMs or "
        "saliency maps computed by tf-keras-vis (pre-softmax scores), and report each map's "
        "normalised entropy, radius, SNR and the fraction of its mass outside the body/brain.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="trained model (.keras)")
    p.add_argument(
        "--image", required=True, nargs="+", metavar="FILE", help="image files or folders"
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="gradcam++", choices=EXPLAIN_METHODS, help="map method")
    p.add_argument("--layer", help="layer to compute CAMs on (default: the model's CAM layer)")
    p.add_argument(
        "--class",
        dest="class_",
        metavar="NAME|INDEX",
        help="class to explain (default: the predicted class)",
    )
    p.add_argument(
        "--crop",
        choices=CROP_CHOICES,
        help="crop before resizing (default: the crop the model was trained with)",
    )
    p.add_argument(
        "--foreground",
        default="auto",
        choices=("auto", *CROP_CHOICES),
        help="mask for the outside-foreground statistic (auto: the crop mode, else none)",
    )
    p.add_argument("--image-size", type=int, help="input size for models built without one")
    p.add_argument("--batch-size", type=int, default=8, help="images per CAM batch (default 8)")
    p.add_argument("--save-maps", action="store_true", help="also write maps.npz (float32 maps)")
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------ inputs
def _image_paths(items: list[str]) -> list[Path]:
    from kidney_tf.data.decode import supported_extensions

    extensions = supported_extensions()
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")
            )
            if not found:
                raise FileNotFoundError(f"{path}: folder holds no images ({', '.join(extensions)})")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image file or folder")
    return paths


def _input_size(model, image_size: int | None) -> int:
    shape = tuple(model.inputs[0].shape[1:3])
    if None not in shape:
        if shape[0] != shape[1]:
            raise CliError(f"model input {shape[0]}x{shape[1]} is not square")
        if image_size is not None and image_size != shape[0]:
            raise CliError(f"--image-size {image_size} but the model takes {shape[0]} px")
        return int(shape[0])
    size = image_size or (getattr(model, "metadata", None) or {}).get("image_size")
    if not size:
        raise CliError("the model has no fixed input size; pass --image-size")
    return int(size)


def _class_index(value: str | None, class_names: list[str]) -> int | None:
    if value is None:
        return None
    if value in class_names:
        return class_names.index(value)
    if value.lstrip("-").isdigit():
        index = int(value)
        if 0 <= index < len(class_names):
            return index
        raise CliError(f"--class {index} out of range 0..{len(class_names) - 1}")
    raise CliError(f"--class {value!r} is not one of {', '.join(class_names)}")


def _prepare(image, size: int, crop: str | None, margin: int):
    """Crop and resize exactly as the training pipeline does; float32 0..255 rounded."""
    import numpy as np

    from kidney_tf.data.crop_tf import crop_resize

    out = crop_resize(image, size, crop, margin=margin)
    return np.clip(np.round(out.numpy()), 0, 255).astype(np.float32)


def _foreground(image, mode: str):
    import numpy as np

    from kidney_tf.data.crop import foreground_mask

    return foreground_mask(image.astype(np.uint8), mode)


def _output_names(paths: list[Path], method: str) -> list[str]:
    """``<stem>.<method>.png``, made unique when two inputs share a stem."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for path in paths:
        stem = path.stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}{f'-{count}' if count else ''}.{method}.png")
    return names


# ------------------------------------------------------------------------------------ figure
def _render(target: Path, image, cam, title: str, subtitle: str, foreground=None) -> None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from kidney_tf.utils.io import atomic_path

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    shown = image.astype(np.uint8)
    axes[0].imshow(shown)
    axes[0].set_title("image")
    heat = axes[1].imshow(cam, cmap="jet", vmin=0.0, vmax=1.0)
    axes[1].set_title("map")
    fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.02)
    axes[2].imshow(shown)
    axes[2].imshow(cam, cmap="jet", vmin=0.0, vmax=1.0, alpha=0.45)
    if foreground is not None and foreground.any():
        axes[2].contour(foreground, levels=[0.5], colors="white", linewidths=0.8)
    axes[2].set_title("overlay" + (" (white: foreground)" if foreground is not None else ""))
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(f"{title}\n{subtitle}", fontsize=10)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


# ------------------------------------------------------------------------------------ handler
def run(args: argparse.Namespace) -> int:
    import numpy as np

    from kidney_tf._loading import load_model
    from kidney_tf.data.decode import read_image
    from kidney_tf.utils.io import (
        atomic_path,
        check_output_dir,
        ensure_writable_dir,
        mark_output_dir,
        write_json_atomic,
    )
    from kidney_tf.utils.logging import get_logger

    log = get_logger("kidney_tf.cli.explain")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths = _image_paths(args.image)
    inputs = [args.model, *args.image]
    check_output_dir(args.out, "explain", inputs=inputs, markers=("explanations.json",))
    out_dir = mark_output_dir(ensure_writable_dir(args.out), "explain")
    names = _output_names(paths, args.method)
    inputs = {p.resolve() for p in paths}
    for name in (*names, "explanations.json", "maps.npz"):
        if (out_dir / name).resolve() in inputs:
            raise CliError(f"{out_dir / name}: output would overwrite an input image")
    raw = [read_image(p) for p in paths]  # fail fast on a bad file, before loading the model

    model = load_model(args.model, compile=False)
    # TensorFlow from here on: every argument, output and input file is checked above
    from kidney_tf.explain.cams import CamExplainer
    from kidney_tf.explain.statistics import shortcut_warnings, summarize_maps, to_jsonable

    metadata = dict(getattr(model, "metadata", None) or {})
    num_classes = int(model.outputs[0].shape[-1])
    class_names = list(getattr(model, "class_names", None) or metadata.get("class_names") or [])
    if len(class_names) != num_classes:
        class_names = [f"class_{i}" for i in range(num_classes)]
    size = _input_size(model, args.image_size)
    trained_crop = metadata.get("crop") or None
    crop = trained_crop if args.crop is None else parse_crop(args.crop)
    if args.crop is not None and (crop or None) != trained_crop and "crop" in metadata:
        log.warning(
            "cropping with %s but the model was trained with %s",
            crop or "no crop",
            trained_crop or "no crop",
        )
    fg_mode = crop if args.foreground == "auto" else args.foreground
    fg_mode = parse_crop(fg_mode, what="--foreground")
    margin = int(metadata.get("crop_margin", 0) or 0)
    class_index = _class_index(args.class_, class_names)

    images = np.stack([_prepare(image, size, crop, margin) for image in raw])
    foreground = np.stack([_foreground(im, fg_mode) for im in images]) if fg_mode else None
    log.info(
        "explaining %d image(s) with %s (%d px, crop %s)", len(images), args.method, size, crop
    )
    explainer = CamExplainer(
        model, method=args.method, layer=args.layer, batch_size=args.batch_size
    )
    result = explainer.explain(images, class_index=class_index)
    summary = summarize_maps(result.maps, foreground=foreground)
    per_image = summary["per_image"]
    predicted = result.probabilities.argmax(axis=1)
    warnings = [
        str(w)
        for w in shortcut_warnings(result.maps, predicted, foreground, class_names=class_names)
    ]
    for warning in warnings:
        log.warning("shortcut warning: %s", warning)

    records: list[dict[str, Any]] = []
    for i, (path, name) in enumerate(zip(paths, names)):
        pred, target = int(predicted[i]), int(result.class_index[i])
        stats = {key: float(values[i]) for key, values in per_image.items()}
        title = (
            f"{path.name}: predicted {class_names[pred]} ({result.probabilities[i, pred]:.2f})"
            + (f", explaining {class_names[target]}" if target != pred else "")
        )
        subtitle = (
            f"{args.method} on {result.layer or 'input'}: entropy {stats['entropy']:.3f}  "
            f"radius {stats['radius']:.3f}  SNR {stats['snr_db']:.1f} dB"
            + (
                f"  outside {fg_mode} {stats['outside_fraction']:.0%}"
                if "outside_fraction" in stats
                else ""
            )
        )
        fg = foreground[i] if foreground is not None else None
        _render(out_dir / name, images[i], result.maps[i], title, subtitle, fg)
        records.append(
            {
                "image": os.fspath(path),
                "overlay": name,
                "predicted": class_names[pred],
                "probability": float(result.probabilities[i, pred]),
                "explained_class": class_names[target],
                "explained_probability": float(result.probabilities[i, target]),
                "probabilities": dict(zip(class_names, result.probabilities[i].tolist())),
                "statistics": stats,
            }
        )
    if args.save_maps:
        with atomic_path(out_dir / "maps.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, maps=result.maps, class_index=result.class_index)
    report = {
        "model": os.fspath(args.model),
        "method": args.method,
        "layer": result.layer,
        "native_shape": list(result.native_shape),
        "image_size": size,
        "crop": crop,
        "foreground": fg_mode,
        "class_names": class_names,
        "statistics": "kidney_tf.explain.statistics on maps upsampled to the input size; "
        "SNR in dB is 10*log10",
        "mean": to_jsonable(summary["mean"]),
        "warnings": warnings,
        "images": records,
    }
    write_json_atomic(out_dir / "explanations.json", report)
    log.info("wrote %d overlay(s) and explanations.json to %s", len(records), out_dir)
    return 0
