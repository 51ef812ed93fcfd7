"""``kidney-tf compare``: side-by-side table and paired CAM overlays of two evaluation reports."""

from __future__ import annotations

import argparse

from kidney_tf.cli.main import add_common_arguments, at_least

EXAMPLES = """\
examples:
  # the kidney paper's main table: baseline vs CAM-fostered, with the published numbers
  kidney-tf compare reports/baseline reports/fostered --out reports/comparison \\
      --labels baseline fostered --reference kidney

Writes OUT/comparison.json, comparison.md, comparison.html (self-contained) and
paired_overlays.png (the same test images under both models, paired by file id through each
report's cam_examples.npz; no model is re-run). Relative change = (B - A) / |A|.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare two evaluation reports (table + paired CAM overlays)",
        description="Compare two folders written by 'kidney-tf evaluate': accuracy, macro-F1, "
        "ECE, CAM entropy/radius/SNR, outside-body fraction, pointing game, energy in mask, IoU "
        "and deletion/insertion AUC, with absolute and relative change.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("report_a", metavar="REPORT_A", help="first report folder (e.g. baseline)")
    p.add_argument("report_b", metavar="REPORT_B", help="second report folder (e.g. fostered)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--labels", nargs=2, metavar=("A", "B"), default=("A", "B"), help="names of the two models"
    )
    p.add_argument(
        "--reference",
        choices=("kidney", "none"),
        default="none",
        help="add the paper's published values as a reference column",
    )
    p.add_argument(
        "--max-pairs", type=at_least(0), default=8, help="rows of paired_overlays.png (0: none)"
    )
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kidney_tf.evaluation.compare import compare_reports
    from kidney_tf.utils.io import check_output_dir, mark_output_dir

    inputs = [args.report_a, args.report_b]
    check_output_dir(args.out, "compare", inputs=inputs, markers=("comparison.json",))
    mark_output_dir(args.out, "compare")
    result = compare_reports(
        args.report_a,
        args.report_b,
        args.out,
        labels=tuple(args.labels),
        reference=args.reference,
        max_pairs=args.max_pairs,
    )
    la, lb = result["labels"]
    if not args.quiet:
        print(f"{'metric':<28} {la:>12} {lb:>12} {'change':>9}  verdict (95 % paired bootstrap)")
        for row in result["rows"]:
            a = "–" if row["a"] is None else f"{row['a']:.4f}"
            b = "–" if row["b"] is None else f"{row['b']:.4f}"
            rel = "–" if row["rel_change"] is None else f"{100 * row['rel_change']:+.1f}%"
            verdict = row.get("verdict") or ""
            if row.get("vs_chance"):
                verdict += f"; {lb} {row['vs_chance']}"
            print(f"{row['key']:<28} {a:>12} {b:>12} {rel:>9}  {verdict}")
        for warning in result["warnings"]:
            print(f"warning: {warning}")
        print(f"comparison written to {args.out}")
    return 0
