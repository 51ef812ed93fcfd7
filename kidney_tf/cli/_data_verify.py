"""``kidney-tf data verify``: check a dataset (or a proposed split) against its manifest."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import CliError, add_common_arguments, at_least

EXAMPLES = """\
examples:
  # the kidney CT download (the folder that holds Cyst/ Normal/ Stone/ Tumor/, or its parent)
  kidney-tf data verify --root CT-KIDNEY-DATASET-Normal-Cyst-Tumor-Stone --manifest ct_kidney

  # the brain MRI download (Training/ and Testing/), JSON report for CI
  kidney-tf data verify --root brain-tumor-mri-dataset --manifest brain_tumor_mri \\
      --json reports/verify.json

  # a proposed split (CSV path,label,split written by a training run): cross-split duplicates
  kidney-tf data verify --root data/kidney --split-csv runs/exp1/split.csv --manifest ct_kidney

  # a manifest CSV directly, integrity and duplicates only, stricter near-duplicate threshold
  kidney-tf data verify --root phantoms/manifest.csv --max-distance 4

  kidney-tf data verify --list-manifests

exit status: 0 clean, 1 problems found (errors or warnings), 2 the check could not run.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check classes, counts, unreadable files and duplicates/leakage of a dataset",
        description="Verify a dataset against its manifest: missing/extra classes, count "
        "mismatches per split and class, unreadable or truncated files, unexpected file names, "
        "and exact/near-duplicate images across splits (leakage) and within splits.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root",
        help="dataset folder (class or split folders, or the folder holding the download) or a "
        "manifest CSV (path,label[,split][,mask_path])",
    )
    p.add_argument(
        "--manifest",
        help="expected dataset: a name (ct_kidney, brain_tumor_mri, phantom_kidney_ct, "
        "phantom_brain_mri) or a JSON path; omit to check integrity and duplicates only",
    )
    p.add_argument(
        "--split-csv",
        metavar="CSV",
        help="check this proposed split (path,label,split; paths relative to --root or absolute "
        "inside it) instead of the folder layout",
    )
    p.add_argument("--json", metavar="OUT", help="also write the full report as JSON (atomic)")
    p.add_argument(
        "--max-distance",
        type=int,
        default=None,
        metavar="N",
        help="perceptual-hash Hamming distance counted as near duplicate (default 6 of 64 bits)",
    )
    p.add_argument("--no-duplicates", action="store_true", help="skip the duplicate/leakage check")
    p.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable file (exit 2)"
    )
    p.add_argument(
        "--workers", type=at_least(1), default=None, help="reader threads (default: up to 8)"
    )
    p.add_argument(
        "--list-manifests", action="store_true", help="list the known dataset manifests and exit"
    )
    add_common_arguments(p, reads_images=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.data.duplicates import DEFAULT_MAX_DISTANCE
    from kidney_tf.data.manifests import list_manifests, load_manifest
    from kidney_tf.data.verify import is_verify_report, verify_dataset
    from kidney_tf.utils.io import check_output_file, input_tree

    if args.list_manifests:
        for name in list_manifests():
            manifest = load_manifest(name)
            total = manifest.total if manifest.total is not None else "any"
            print(f"{name:<20} {total!s:>6} images  {manifest.title}")
        return 0
    if not args.root:
        raise CliError("--root is required (a dataset folder or a manifest CSV)")
    max_distance = DEFAULT_MAX_DISTANCE if args.max_distance is None else args.max_distance
    if max_distance < 0:
        raise CliError(f"--max-distance must be >= 0, got {max_distance}")
    if args.no_duplicates and args.max_distance is not None:
        raise CliError("--max-distance has no effect with --no-duplicates")
    if args.json:  # before minutes of hashing: never onto an input or a file of the user's
        inputs = [input_tree(args.root), args.split_csv, args.manifest]
        check_output_file(args.json, inputs=inputs, is_own=is_verify_report, what="report")
    report = verify_dataset(
        args.root,
        args.manifest,
        split_csv=args.split_csv,
        max_distance=max_distance,
        strict=args.strict,
        check_duplicates=not args.no_duplicates,
        workers=args.workers,
    )
    print(report.summary())
    if args.json:
        path = report.write_json(args.json)
        print(f"Report written to {path}")
    return report.exit_code
