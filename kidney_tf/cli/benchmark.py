"""``kidney-tf benchmark``: a thin entry point to the benchmark suite in ``benchmarks/``.

The suite (``benchmarks/kidney_bench``) lives in the source checkout, outside the installed
package, and is written over kidney_tf's public API. This command parses its options (without
TensorFlow), finds the suite (``--benchmarks-dir``, else ``$KIDNEY_TF_BENCHMARKS``, else an
importable ``kidney_bench``, else ``benchmarks/`` next to the package) and runs it.

Usage::

    kidney-tf benchmark --quick --out bench.json
    KIDNEY_TF_BENCHMARKS=~/src/kidney_tf/benchmarks kidney-tf benchmark --quick --out bench.json
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from kidney_tf.cli.main import CliError, add_common_arguments

BENCHMARKS_ENV = "KIDNEY_TF_BENCHMARKS"
SUITE_PACKAGE = "kidney_bench"

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
The suite is benchmarks/kidney_bench of a source checkout (not part of a wheel install).
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
        help="quick, full (default) or smoke (tiny CNN, seconds: checks the suite runs)",
    )
    p.add_argument(
        "--only",
        help="comma-separated sections to run (default all: pipeline, fostering, explain, "
        "stats, crop, memory)",
    )
    p.add_argument(
        "--image-size", type=int, help="input size for every model (default: each arch's)"
    )
    p.add_argument("--batch-size", type=int, help="batch for pipeline/training/fostering")
    p.add_argument(
        "--clock",
        default="auto",
        help="time the ratios use: wall (wall-clock), cpu (this process's CPU time; robust when "
        "the machine is shared) or auto (CPU time when the load average shows other work; "
        "default)",
    )
    p.add_argument("--workdir", help="keep the generated phantoms here (default: a temp folder)")
    p.add_argument(
        "--benchmarks-dir",
        help=f"the folder holding {SUITE_PACKAGE}/ (default: ${BENCHMARKS_ENV}, else the "
        "source checkout's benchmarks/)",
    )
    add_common_arguments(p)
    p.set_defaults(func=run)


def load_suite(folder: str | os.PathLike | None = None) -> ModuleType:
    """The benchmark suite package ``kidney_bench``, from ``folder`` (else
    ``$KIDNEY_TF_BENCHMARKS``, else wherever it is importable, as from ``python benchmarks/x.py``,
    else the source checkout's ``benchmarks/``); ``CliError`` in one line when it is absent.

    Usage: ``suite = load_suite("benchmarks"); suite.run_suite(suite.BenchSettings())``
    """
    given = "--benchmarks-dir" if folder else None
    if not folder and os.environ.get(BENCHMARKS_ENV):
        folder, given = os.environ[BENCHMARKS_ENV], f"${BENCHMARKS_ENV}"
    if not folder:
        if importlib.util.find_spec(SUITE_PACKAGE) is not None:
            return importlib.import_module(SUITE_PACKAGE)
        folder, given = Path(__file__).resolve().parents[2] / "benchmarks", "beside the package"
    root = Path(folder).expanduser().resolve()
    if not (root / SUITE_PACKAGE / "__init__.py").is_file():
        raise CliError(
            f"no benchmark suite in {root} ({given}): the benchmarks ship with the source "
            f"checkout, not the installed package; pass --benchmarks-dir CHECKOUT/benchmarks or "
            f"set {BENCHMARKS_ENV}"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return importlib.import_module(SUITE_PACKAGE)


def _sections(text: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    if not text:
        return known
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in known]
    if unknown or not names:
        raise CliError(
            f"--only: unknown section(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}"
        )
    return names


def run(args: argparse.Namespace) -> int:
    from kidney_tf.utils.io import (
        check_output_dir,
        check_output_file,
        ensure_writable_dir,
        mark_output_dir,
    )

    suite = load_suite(args.benchmarks_dir)
    preset = "quick" if args.quick else (args.preset or "full")
    overrides = {"sections": _sections(args.only, suite.SECTIONS), "clock": args.clock}
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    settings = suite.BenchSettings.from_preset(preset, **overrides)
    # before minutes of measuring: never onto a file of the user's, never into a folder of theirs
    check_output_file(args.out, is_own=suite.is_benchmark_report, what="benchmark report")
    if args.workdir:
        check_output_dir(args.workdir, "benchmark")
    ensure_writable_dir(Path(args.out).resolve().parent)
    if args.workdir:
        mark_output_dir(args.workdir, "benchmark")
    report = suite.run_suite(settings, out=args.out, workdir=args.workdir)
    if not args.quiet:
        print(suite.format_report(report))
        print(f"report: {args.out}")
    return 1 if report["summary"]["errors"] else 0
