"""``kidney-tf export``: write a trained model as a TensorFlow Serving SavedModel."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import add_common_arguments, at_least
from kidney_tf.recipes import CROP_CHOICES

EXAMPLES = """\
examples:
  # version 1 of the "kidney" servable (TF Serving loads BASE/<integer version>)
  kidney-tf export --model runs/fostered/model.keras --out serving/kidney/1

  # next free version number, brain MRI model with the paper's crop baked into the bytes signature
  kidney-tf export --model runs/brain/model.keras --out serving/brain --version auto --crop brain

  # explicit class names and temperature scaling, no explain signature
  kidney-tf export --model model.keras --out serving/kidney/2 --class-names Cyst,Normal,Stone,Tumor \\
      --temperature 1.7 --no-explain

signatures: serving_default (float32 images 0-255), predict_image_bytes (encoded JPEG/PNG),
explain (CAM of the predicted class and its normalised entropy). Serve with:
  docker run -p 8501:8501 -v "$PWD/serving/kidney:/models/kidney" -e MODEL_NAME=kidney \\
      tensorflow/serving
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a model as a TensorFlow Serving SavedModel",
        description="Export a .keras model as a self-contained SavedModel (TensorFlow only, no "
        "kidney_tf needed to serve it) with serving_default, predict_image_bytes and explain "
        "signatures, written atomically to DIR/<version>.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="trained model (.keras)")
    p.add_argument(
        "--out", required=True, help="version folder BASE/<N>, or BASE together with --version"
    )
    p.add_argument(
        "--version",
        help="write BASE/<VERSION> (a positive integer); 'auto' picks the next free number",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    p.add_argument("--no-explain", action="store_true", help="leave out the explain signature")
    p.add_argument("--class-names", help="comma-separated class names (default: from the model)")
    p.add_argument(
        "--crop",
        choices=CROP_CHOICES,
        help="crop in predict_image_bytes (default: the crop the model was trained with)",
    )
    p.add_argument("--image-size", type=int, help="input size for models built without one")
    p.add_argument("--temperature", type=float, help="divide logits by T (calibration)")
    p.add_argument(
        "--max-pixels",
        type=at_least(0),
        help="refuse PNG/GIF/BMP requests to predict_image_bytes with more pixels (read from "
        "the header; default: the limit the other commands read files with; 0: no limit)",
    )
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf._loading import check_model_file, load_model
    from kidney_tf.export.layout import (
        check_export_target,
        read_export_metadata,
        resolve_version_dir,
    )

    # Everything that needs no TensorFlow is checked before it is imported.
    check_model_file(args.model)
    class_names = None
    if args.class_names:
        class_names = [n.strip() for n in args.class_names.split(",") if n.strip()]
    target = resolve_version_dir(args.out, args.version)
    check_export_target(target, overwrite=args.overwrite, source=args.model)

    from kidney_tf.data.decode import max_pixels_limit

    max_pixels = max_pixels_limit() if args.max_pixels is None else (args.max_pixels or None)
    model = load_model(args.model, compile=False)  # names a file that is no model, before TF

    from kidney_tf.export.saved_model import export_saved_model

    path = export_saved_model(
        model,
        target,
        class_names=class_names,
        crop=args.crop,
        image_size=args.image_size,
        temperature=args.temperature,
        include_explain=not args.no_explain,
        overwrite=args.overwrite,
        source=args.model,
        max_pixels=max_pixels,
    )
    print(format_report(path, read_export_metadata(path)))
    return 0


def format_report(path, meta: dict) -> str:
    """What was written, its signatures and how to inspect and serve it."""
    from kidney_tf.export.saved_model import signature_summary

    base = path.parent.resolve()
    name = base.name or "model"
    size = "x".join(str(v) for v in meta["image_size"])
    max_pixels = f"{meta['max_pixels']:,}" if meta.get("max_pixels") else "any number of"
    lines = [
        f"SavedModel: {path}",
        f"classes: {', '.join(meta['class_names'])}; input {size}; crop {meta['crop'] or 'none'}; "
        f"temperature {meta['temperature'] or 'none'}; image_bytes up to "
        f"{max_pixels} pixels",
        "signatures:",
        signature_summary(meta["signatures"]),
        "inspect:",
        f"  saved_model_cli show --all --dir {path}",
        "serve:",
        f'  docker run -p 8501:8501 -v "{base}:/models/{name}" -e MODEL_NAME={name} '
        "tensorflow/serving",
    ]
    return "\n".join(lines)
