"""``kidney-tf evaluate``: metrics, calibration, CAM statistics and figures for a saved model."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kidney_tf.cli.main import CliError, add_common_arguments
from kidney_tf.recipes import (
    CAM_TARGETS,
    CROP_CHOICES,
    EVAL_SPLIT_METHODS,
    EXPLAIN_METHODS,
    SPLIT_METHODS,
    SPLITS,
    STRATEGIES,
)

COMMAND = "evaluate"

EXAMPLES = """\
examples:
  # evaluate on the exact test split used in training (RUN/split.csv next to the model)
  kidney-tf evaluate --model runs/fostered/model.keras --out reports/fostered

  # the same split for another run's model (e.g. the baseline and the fine-tuned model)
  kidney-tf evaluate --model runs/baseline/model.keras --split-csv runs/baseline/split.csv \\
      --out reports/baseline

  # an external test set: every image of the folder (no split, no temperature fit)
  kidney-tf evaluate --model runs/brain/best.keras --data Testing/ --split all --out reports/ext

  # the same on 2 CPU replicas (MirroredStrategy; GPUs: --strategy mirrored alone)
  kidney-tf evaluate --model runs/brain/best.keras --data Testing/ --split all --out reports/ext \\
      --strategy mirrored --cpu-replicas 2

  # brain MRI test folder, brain foreground, Grad-CAM++ on the first 200 images
  kidney-tf evaluate --model runs/brain/model.keras --data Testing/ --crop brain \\
      --max-cam-images 200 --out reports/brain

Which images are evaluated: --split-csv (a run's split.csv) reproduces a split exactly (its
absolute paths must lie in --data, default: the run's data folder from RUN/config.json); with
--data/--manifest the split is recomputed with the seed, split method and fractions of the run
(read from RUN/config.json next to the model; --seed/--split-method/--val-fraction/
--test-fraction override). Without any of them RUN/split.csv next to the model is used.
Outputs: metrics.json, classification_report.txt, predictions.csv, cam_examples.npz, PNG
figures, report.html (self-contained) and report.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a saved model: metrics, calibration, CAM statistics, report",
        description="Evaluate a .keras model on one split: accuracy, F1, confusion matrix, ECE "
        "(optionally temperature scaling), Grad-CAM++ entropy/radius/SNR next to the "
        "outside-body fraction, localisation vs chance with lesion masks, deletion/insertion "
        "AUC, figures and a one-page HTML/Markdown report.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="the .keras model to evaluate")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="class-folder tree (root/<class>/* or Training/Testing)")
    src.add_argument("--manifest", help="manifest CSV with columns path,label,split,mask_path")
    p.add_argument(
        "--split-csv",
        help="a run's split.csv: evaluate exactly that split (with --data: the data folder its "
        "absolute paths lie in)",
    )
    p.add_argument("--out", required=True, help="report folder (created)")
    p.add_argument(
        "--split",
        choices=(*SPLITS, *EVAL_SPLIT_METHODS),
        default="test",
        help="which split to evaluate (all: every image of --data/--manifest/--split-csv, "
        "e.g. an external test set; default test)",
    )
    p.add_argument(
        "--method", default="gradcam++", choices=EXPLAIN_METHODS, help="CAM method (gradcam++)"
    )
    p.add_argument(
        "--extra-methods",
        default="gradcam",
        help="comma-separated CAM methods drawn for the example overlays ('' for none)",
    )
    p.add_argument("--crop", choices=CROP_CHOICES, help="default: the model's")
    p.add_argument(
        "--foreground",
        choices=("auto", *CROP_CHOICES),
        default="auto",
        help="mask for the outside fraction (auto: brain if crop=brain, else body)",
    )
    p.add_argument("--cam-target", choices=CAM_TARGETS, default="predicted")
    p.add_argument(
        "--cam-layer",
        help="layer the CAMs are computed on (default: the model's own CAM layer, as trained)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average each image's probabilities with its mirror's",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-cam-images", type=int, help="CAMs for the first N images (0: none)")
    p.add_argument("--image-size", type=int, help="expected input size; checked against the model")
    p.add_argument("--strict", action="store_true", help="fail on the first unreadable image")
    p.add_argument("--temperature", help="a number, or 'fit' to fit it on the validation split")
    p.add_argument("--seed", type=int, help="split seed (default: the run's, else 42)")
    p.add_argument("--split-method", choices=SPLIT_METHODS)
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--test-fraction", type=float)
    hardware = p.add_argument_group("hardware")
    hardware.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="default",
        help="tf.distribute strategy for the predictions (default: one device); multiworker "
        "reads TF_CONFIG, every worker runs the same command and the chief writes --out",
    )
    hardware.add_argument(
        "--cpu-replicas",
        type=int,
        help="with --strategy mirrored on a machine without GPUs: split the CPU into N "
        "logical devices",
    )
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


def _run_config(model_path: Path) -> dict[str, Any]:
    """``train`` settings of the run the model came from (RUN/config.json), or {}."""
    path = model_path.parent / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}: not valid JSON ({exc})") from exc
    return dict(config.get("train") or {})


def _source(
    args: argparse.Namespace, model_path: Path, run_cfg: dict[str, Any]
) -> tuple[str, bool, str | None]:
    """``(source, is_split_csv, data_root)``: what to evaluate, whether it fixes the split, and
    the data folder a split CSV's absolute paths lie in (--data, else the run's data)."""
    split_csv = args.split_csv
    if split_csv is None and not (args.data or args.manifest):
        beside = model_path.parent / "split.csv"
        if not beside.is_file():
            raise CliError(
                f"no data given and no split.csv next to {model_path}; "
                "pass --data, --manifest or --split-csv"
            )
        split_csv = str(beside)
    if split_csv is None:
        return args.data or args.manifest, False, None
    root = args.data or args.manifest or run_cfg.get("data")
    if root is not None and Path(root).suffix.lower() == ".csv":
        root = str(Path(root).parent)
    return split_csv, True, root


def _pick(*values: Any) -> float:
    """The first value that is not None, as float."""
    return float(next(v for v in values if v is not None))


def _temperature(value: str | None) -> float | str | None:
    if value is None or value.lower() == "fit":
        return None if value is None else "fit"
    try:
        return float(value)
    except ValueError:
        raise CliError(f"--temperature must be a number or 'fit', got {value!r}") from None


def run(args: argparse.Namespace) -> int:
    from kidney_tf._loading import check_model_file, load_model
    from kidney_tf.evaluation.report import evaluate_model, model_input_size
    from kidney_tf.utils.io import check_output_dir, input_tree, mark_output_dir
    from kidney_tf.utils.logging import get_logger

    log = get_logger("kidney_tf.cli.evaluate")
    model_path = Path(args.model)
    check_model_file(model_path)
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.cpu_replicas is not None and (args.strategy != "mirrored" or args.cpu_replicas < 1):
        raise CliError(f"--cpu-replicas {args.cpu_replicas}: needs --strategy mirrored and N >= 1")
    run_cfg = _run_config(model_path)
    source, fixed_split, data_root = _source(args, model_path, run_cfg)
    temperature = _temperature(args.temperature)
    extra = tuple(m.strip() for m in args.extra_methods.split(",") if m.strip())
    unknown = [m for m in extra if m not in EXPLAIN_METHODS]
    if unknown:
        raise CliError(
            f"--extra-methods: unknown method(s) {', '.join(unknown)}; "
            f"choose from {', '.join(EXPLAIN_METHODS)}"
        )
    inputs = [model_path, source if fixed_split else input_tree(source), data_root]
    check_output_dir(args.out, COMMAND, inputs=inputs, markers=("metrics.json", "report.html"))

    from kidney_tf.training.distribute import is_chief, make_strategy

    strategy = make_strategy(args.strategy, cpu_replicas=args.cpu_replicas)
    with strategy.scope():
        model = load_model(model_path, compile=False)
    chief = is_chief(strategy)
    size = model_input_size(model)
    if args.image_size is not None and size is not None and args.image_size != size[0]:
        raise CliError(
            f"{model_path}: the model takes {size[0]}x{size[1]} px images but --image-size is "
            f"{args.image_size}"
        )
    split_method = (
        "folders" if fixed_split else (args.split_method or run_cfg.get("split") or "auto")
    )
    split = args.split
    if split == "all":
        if temperature == "fit":
            raise CliError("--temperature fit needs a validation split; --split all has none")
        split_method, split = "all", "test"
    seed = args.seed if args.seed is not None else int(run_cfg.get("seed", 42))
    val_fraction = _pick(args.val_fraction, run_cfg.get("val_fraction"), 0.15)
    test_fraction = _pick(args.test_fraction, run_cfg.get("test_fraction"), 0.15)
    log.info(
        "evaluating %s on the %s split of %s (split %s, seed %d)",
        model_path,
        args.split,
        source,
        split_method,
        seed,
    )
    # Every worker computes the same report (predictions are gathered across workers); only the
    # chief writes it to --out, the others into a temporary folder removed at the end.
    if chief:
        out_dir = mark_output_dir(args.out, COMMAND)
    else:
        out_dir = Path(tempfile.mkdtemp(prefix="kidney-tf-evaluate-worker-"))
    try:
        metrics = evaluate_model(
            model,
            source,
            out_dir=out_dir,
            split=split,
            method=args.method,
            max_cam_images=args.max_cam_images,
            crop=args.crop,
            batch_size=args.batch_size,
            extra_methods=extra,
            temperature=temperature,
            foreground=args.foreground,
            cam_target=args.cam_target,
            layer=args.cam_layer,
            seed=seed,
            split_method=split_method,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            data_root=data_root,
            strict=args.strict,
            tta=args.tta,
        )
    finally:
        if not chief:
            shutil.rmtree(out_dir, ignore_errors=True)
    if not chief:
        return 0
    skipped = metrics.get("data", {}).get("skipped_bad_files") or []
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s); see metrics.json data.skipped_bad_files")
    if not args.quiet:
        cam = metrics.get("cam") or {}
        print(
            f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
            f"ECE {metrics['calibration']['ece']:.4f}  ({metrics['n_images']} images)"
        )
        if cam.get("n_images"):
            parts = []
            for key in ("entropy", "radius", "snr_db", "outside_fraction", "pointing_game"):
                if isinstance(cam.get(key), dict):
                    parts.append(f"{key} {cam[key]['mean']:.4f}")
            print(f"{cam['method']}: " + "  ".join(parts))
        for warning in cam.get("shortcut_warnings") or []:
            print(f"warning: {warning}")
        print(f"report: {Path(args.out) / 'report.html'}")
    return 0
