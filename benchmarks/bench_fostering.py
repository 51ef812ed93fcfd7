"""Throughput cost of CAM fostering: images/s of plain training vs fostering training.

One classifier, one fixed in-memory batch, up to four training modes sharing the same layers:

- ``plain``: λ = 0 (the standard Keras train step),
- ``exact``: λ > 0 with the exact CAM (``relu(features @ W_c)``, from the same forward pass),
- ``gradcam++``: λ > 0 with the closed-form Grad-CAM++ map (``features @ relu(W_c)``, the demo's),
- ``gradcam``: λ > 0 with Grad-CAM (a nested gradient tape).

A mode may name its CAM layer: ``gradcam@conv4_block6_out`` fosters Grad-CAM on ResNet-50's
stage-4 output (8x8 at 128 px instead of 4x4; the closed forms need the layer right before the
GAP head, so a deeper grid needs ``gradcam``).

The measurement is ``kidney_bench.fostering.fostering_overhead`` (also the ``fostering``
section of ``kidney-tf benchmark``): after a warm-up ``fit`` each, the modes run interleaved
``fit`` blocks of ``--steps`` steps, round robin with the order rotating every round, so slow
drifts of a shared machine hit every mode alike. The overhead of a mode is the median over rounds
of its time ratio to ``plain`` minus 1 (goal for ``exact`` and ``gradcam++``: ≤ 10 %), by
wall-clock and by CPU time of the process (steadier on a CPU shared with other jobs).

Prints a table and one JSON line; ``--out FILE`` also writes the JSON.

Usage::

    python benchmarks/bench_fostering.py                          # ResNet-50, 64 px, CPU-sized
    python benchmarks/bench_fostering.py --image-size 224 --batch-size 32 --rounds 10 \\
        --mixed-precision --out bench.json                        # a GPU, paper-sized
    python benchmarks/bench_fostering.py --arch tiny --rounds 2 --steps 1   # smoke test
    python benchmarks/bench_fostering.py --image-size 128 --batch-size 16 \
        --modes gradcam++ gradcam gradcam@conv4_block6_out              # a finer CAM grid
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from kidney_tf.recipes import ARCHITECTURES
from kidney_tf.recipes import FOSTERING_CAM_METHODS as MODES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Images/s of plain vs CAM-fostering training (interleaved blocks, medians).",
        epilog=__doc__.split("Usage::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", default="resnet50", choices=(*ARCHITECTURES, "tiny"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed block")
    parser.add_argument("--rounds", type=int, default=8, help="timed blocks per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per mode first")
    parser.add_argument("--cam-weight", type=float, default=0.1, help="λ of the fostering modes")
    parser.add_argument(
        "--modes", nargs="+", default=list(MODES), help=f"of {MODES}, each optionally @LAYER"
    )
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    if min(args.steps, args.rounds, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--steps, --rounds and --batch-size must be >= 1, --warmup >= 0")
    if args.cam_weight <= 0:
        parser.error("--cam-weight must be > 0")
    bad = [m for m in args.modes if m.partition("@")[0] not in MODES]
    if bad:
        parser.error(f"--modes: unknown {bad}; choose from {MODES} (each optionally @LAYER)")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    import keras

    from kidney_bench.core import machine_info
    from kidney_bench.fostering import fostering_overhead
    from kidney_bench.models import ModelPool

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    pool = ModelPool(num_classes=args.classes, seed=args.seed)
    size, jit = args.image_size, args.jit_compile
    plain = pool.trainable(args.arch, size, 0.0, jit_compile=jit)
    fostered = {
        mode: pool.trainable(
            args.arch,
            size,
            args.cam_weight,
            cam_method=mode.partition("@")[0],
            cam_layer=mode.partition("@")[2] or None,
            jit_compile=jit,
        )
        for mode in args.modes
    }
    result = fostering_overhead(
        plain,
        fostered,
        batch_size=args.batch_size,
        image_size=size,
        rounds=args.rounds,
        steps=args.steps,
        warmup_steps=args.warmup,
    )
    settings = {"arch": args.arch, "mixed_precision": args.mixed_precision, "jit_compile": jit}
    return {**settings, **result, "machine": machine_info()}


def report(result: dict[str, Any]) -> str:
    weight = next(iter(result["cam_weight"].values()))
    lines = [
        f"{result['arch']} {result['image_size']} px, batch {result['batch_size']}, λ = {weight}, "
        f"{len(result['rounds'])} rounds x {result['steps_per_block']} steps",
        f"{'mode':<10} {'images/s':>9} {'overhead':>9}   {'img/CPU-s':>9} {'overhead':>9}",
    ]

    def pct(value: float | None) -> str:
        return f"{value:>8.1f}%" if value is not None else f"{'-':>9}"

    for mode, rates in result["images_per_sec"].items():
        overhead = result["overhead_percent"].get(mode, {})
        lines.append(
            f"{mode:<10} {rates['wall']:>9.2f} {pct(overhead.get('wall'))}   "
            f"{rates['cpu']:>9.2f} {pct(overhead.get('cpu'))}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = run(args)
    print(report(result))
    print(json.dumps(result, sort_keys=True, default=str))
    if args.out:
        from kidney_tf.utils.io import write_json_atomic

        write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
