"""``kidney-tf benchmark``: pipeline, crop, fostering, explanation, statistics and memory figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from kidney_tf.bench.suite import PRESETS, SECTIONS
from kidney_tf.cli.main import CliError, add_common_arguments

EXAMPLES = """\
examples:
  # every figure, small step counts (< 10 min on an idle 2-core machine)
  kidney-tf benchmark --quick --out bench.json

  # longer, steadier measurements; both architectures for memory
  kidney-tf benchmark --out bench-full.json

  # only the crop and statistics sections, phantoms kept in bench-data/
  kidney-tf benchmark --quick --only crop,stats --workdir bench-data --out crop.json

Figures and goals: pipeline images/s >= 5x training images/s (ResNet-50 on kidney-CT phantoms
with the body crop, EfficientNetB1 on brain-MRI phantoms with the brain crop; first epoch cold,
second cached); CAM-fostering fit overhead <= 10 %; Grad-CAM++ <= 3x the cost of a prediction;
map statistics <= 5 % of the explanation time; peak training RSS at batch 32 <= 8 GiB; TF vs
OpenCV crop speed (informational). Every timing is taken by wall clock and by this process's
CPU time; on a busy machine (load average above a quarter of the CPUs) the ratios use CPU time
(--clock). Models use weights=None (nothing is downloaded); data are generated phantoms.
Exit status: 0 when every section ran (missed goals included), 1 when a section failed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="measure pipeline/training throughput, fostering and explanation cost, memory",
        description="Measure, in one run on generated phantoms, the input pipeline's speed "
        "against training, the TF-graph crop against OpenCV, the CAM-fostering overhead, the "
        "cost of a Grad-CAM++ explanation against a prediction, the speed of the map statistics "
        "and the peak memory of training; print a table (figure, value, goal, pass/miss) and "
        "write the JSON report atomically.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="JSON report to write (atomically)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument(
        "--quick", action="store_true", help="small step counts (< 10 min on 2 idle cores)"
    )
    speed.add_argument(
        "--preset",
        choices=PRESETS,
        help="quick, full (default) or smoke (tiny CNN, seconds: checks the suite runs)",
    )
    p.add_argument(
        "--only",
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    p.add_argument(
        "--image-size", type=int, help="input size for every model (default: each arch's)"
    )
    p.add_argument("--batch-size", type=int, help="batch for pipeline/training/fostering")
    p.add_argument(
        "--clock",
        choices=("auto", "wall", "cpu"),
        default="auto",
        help="time the ratios use: wall-clock, this process's CPU time (robust when the machine "
        "is shared) or auto (CPU time when the load average shows other work; default)",
    )
    p.add_argument("--workdir", help="keep the generated phantoms here (default: a temp folder)")
    add_common_arguments(p)
    p.set_defaults(func=run)


def _sections(text: str | None) -> tuple[str, ...]:
    if not text:
        return SECTIONS
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SECTIONS]
    if unknown or not names:
        raise CliError(
            f"--only: unknown section(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SECTIONS)}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    from kidney_tf.bench.suite import BenchSettings, format_report, run_suite
    from kidney_tf.utils.io import ensure_writable_dir

    preset = "quick" if args.quick else (args.preset or "full")
    overrides = {"sections": _sections(args.only), "clock": args.clock}
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    settings = BenchSettings.from_preset(preset, **overrides)
    ensure_writable_dir(Path(args.out).resolve().parent)  # fail before minutes of measuring
    report = run_suite(settings, out=args.out, workdir=args.workdir)
    if not args.quiet:
        print(format_report(report))
        print(f"report: {args.out}")
    return 1 if report["summary"]["errors"] else 0
